//! Upkeep of the partner API's records: logs each embargo's end when it comes (also those
//! that ended while the server was down), and forgets request ids once they are old.

use crate::storage::Store;
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a request id is honoured (AIP-155 leaves it to the API).
pub const REQUEST_ID_RETENTION: TimeDelta = TimeDelta::hours(24);
/// How often old request ids are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// The upkeep task; see [`Upkeep::run`].
pub struct Upkeep {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
}

impl Upkeep {
    pub(super) fn new(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Logs embargo lifts as they come and forgets old request ids, until `shutdown`
    /// turns true. Woken early when a publish starts an embargo.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut forget_at = tokio::time::Instant::now();
        loop {
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
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}
