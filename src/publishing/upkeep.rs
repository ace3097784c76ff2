//! Upkeep of the partner API's records: logs each embargo's end when it comes (also those
//! that ended while the server was down), and forgets request ids once they are old. While
//! the storage fault stands, it tries a write every few seconds, so that the fault clears
//! once writes work again even when no partner writes.

use crate::health::{Component, Health};
use crate::storage::Store;
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a request id is honoured (AIP-155 leaves it to the API).
pub const REQUEST_ID_RETENTION: TimeDelta = TimeDelta::hours(24);
/// How often old request ids are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);
/// How often a write is tried while the storage fault stands.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The upkeep task; see [`Upkeep::run`].
pub struct Upkeep {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    health: Health,
}

impl Upkeep {
    pub(super) fn new(store: Arc<dyn Store>, wake: Arc<Notify>, health: Health) -> Self {
        Self {
            store,
            wake,
            health,
        }
    }

    /// Logs embargo lifts as they come, forgets old request ids and, while the storage
    /// fault stands, tries a write every [`PROBE_EVERY`], until `shutdown` turns true.
    /// Woken early when a publish starts an embargo, and when a fault starts.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut forget_at = tokio::time::Instant::now();
        let mut faults = self.health.subscribe();
        let mut probe_at = None;
        loop {
            let failing = faults.borrow_and_update().contains_key(&Component::Storage);
            let now = tokio::time::Instant::now();
            probe_at = match (failing, probe_at) {
                (false, _) => None,
                (true, None) => Some(now + PROBE_EVERY),
                (true, Some(at)) if at <= now => {
                    // A probe may wait long (behind a batch's chunk, or for a connection):
                    // the server's stop does not wait for it.
                    tokio::select! {
                        () = self.probe() => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    Some(tokio::time::Instant::now() + PROBE_EVERY)
                }
                (true, at) => at,
            };
            if tokio::time::Instant::now() >= forget_at {
                match self
                    .store
                    .forget_requests(Utc::now() - REQUEST_ID_RETENTION)
                    .await
                {
                    Ok(n) if n > 0 => tracing::debug!(forgotten = n, "old request ids forgotten"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot forget old request ids"),
                }
                forget_at += FORGET_EVERY;
            }
            let mut wait = forget_at - tokio::time::Instant::now();
            if let Some(at) = probe_at {
                wait = wait.min(at - tokio::time::Instant::now());
            }
            match self.store.next_embargo_lift().await {
                Ok(Some(at)) if at <= Utc::now() => {
                    match self.store.lift_embargoes(Utc::now()).await {
                        Ok(n) => {
                            tracing::debug!(lifted = n, "embargo lifts logged");
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot log embargo lifts; retrying");
                            wait = wait.min(Duration::from_secs(1));
                        }
                    }
                }
                Ok(Some(at)) => {
                    wait = wait.min((at - Utc::now()).to_std().unwrap_or_default());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up the next embargo lift");
                    wait = wait.min(Duration::from_secs(1));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                // Only the storage fault starting or ending: other faults (a feed's files
                // failing, one scope after another) would wake this loop for nothing.
                _ = faults.wait_for(|f| f.contains_key(&Component::Storage) != failing) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Tries a write: the storage fault ends when it commits, and stands, with what the
    /// store said, when it fails. Counted in `feedpub_storage_probes_total` by outcome.
    async fn probe(&self) {
        let outcome = match self.store.probe_write().await {
            Ok(()) => {
                self.health.recovered(Component::Storage);
                "ok"
            }
            // A store closing for shutdown is not a fault.
            Err(crate::storage::StoreError::Closed) => "closed",
            Err(e) => {
                tracing::debug!(error = %e, "storage still failing");
                self.health.fault(Component::Storage, e);
                "failed"
            }
        };
        metrics::counter!("feedpub_storage_probes_total", "outcome" => outcome).increment(1);
    }
}
