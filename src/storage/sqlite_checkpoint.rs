//! Copying the write-ahead log into the database off the writer's path. A checkpoint copies
//! the newest version of every page the log holds that is not yet in the database, syncing
//! the log before and the database after; run by the writer after a commit (SQLite's
//! automatic checkpoint), it holds up every caller waiting for the next commit. Here a
//! connection of its own copies what the writer commits, a little after it commits, while
//! the writer goes on.
//!
//! The log starts again from its beginning only at the start of a write transaction that
//! finds every frame copied. With the writer committing while this connection copies, that
//! may not happen for a while; the writer's automatic checkpoint, when the log reaches its
//! size, copies what is left (by then little), and the log restarts at its next
//! transaction. That checkpoint gives way at once while this connection is copying and is
//! tried again at the next commit.

use super::StoreError;
use crate::health::{Component, Health};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long commits gather before their pages are copied: a page that several commits
/// changed is copied once.
const GATHER: Duration = Duration::from_millis(100);

/// How soon a copy that failed is tried again, commits or not, so that the fault clears
/// once the disk lets it even if nothing is written meanwhile.
const RETRY: Duration = Duration::from_secs(1);

/// Where a failure to copy is reported, once the service has said.
pub(super) type FaultReport = Arc<OnceLock<Health>>;

/// The connection that copies, opened with the writer's, before its task starts.
pub(super) struct Copier {
    conn: SqliteConnection,
    faults: FaultReport,
}

impl Copier {
    /// Opens the connection that copies; failures go to `faults` once it is set.
    pub(super) async fn open(
        options: &SqliteConnectOptions,
        faults: FaultReport,
    ) -> Result<Self, StoreError> {
        let conn = SqliteConnection::connect_with(options).await?;
        Ok(Self { conn, faults })
    }

    /// Starts copying, on the runtime of the caller: the writer's, so that the task lives
    /// exactly as long as the writer does.
    pub(super) fn start(self) -> Checkpoints {
        let committed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(self, committed.clone(), stop.clone()));
        Checkpoints {
            committed,
            stop,
            task: Some(task),
        }
    }
}

/// The task that copies the log into the database after commits.
pub(super) struct Checkpoints {
    committed: Arc<Notify>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Checkpoints {
    /// Tells the task that the writer committed.
    pub(super) fn committed(&self) {
        self.committed.notify_one();
    }

    /// Ends the task, once a checkpoint in progress is done (a passive checkpoint waits for
    /// no lock), and closes its connection.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Checkpoints {
    /// A writer that ends without closing the store (it was dropped) ends the task too; the
    /// writer's runtime, which ends right after, drops it anyway.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(copier: Copier, committed: Arc<Notify>, stop: CancellationToken) {
    let Copier { mut conn, faults } = copier;
    // Commits only write the log: one that cannot be copied (the database file cannot be
    // written past a size, say) leaves it growing with every write while every write
    // succeeds, so the failure is a fault of its own, reported until a copy takes the
    // whole log again.
    let mut failing = false;
    loop {
        tokio::select! {
            () = committed.notified() => {}
            () = tokio::time::sleep(RETRY), if failing => {}
            () = stop.cancelled() => break,
        }
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = stop.cancelled() => break,
        }
        // PASSIVE: copies the frames every reader's snapshot already holds, waiting for
        // no lock; a row says whether it gave way to another checkpoint (busy: nothing
        // copied), how many frames the log holds and how many of them are now copied.
        let copied: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        match copied {
            Ok((busy, log, done)) => {
                tracing::debug!(busy, log, done, "copied the write-ahead log");
                // Only a copy of the whole log shows that copying works again: one that gave
                // way, or stopped at a reader's snapshot, may have written nothing.
                if failing && busy == 0 && done == log {
                    failing = false;
                    if let Some(health) = faults.get() {
                        health.recovered(Component::Wal);
                    }
                }
            }
            Err(e) => {
                let started = !std::mem::replace(&mut failing, true);
                let message = format!("cannot copy the write-ahead log into the database: {e}");
                match faults.get() {
                    // Logged by the health checks when it starts.
                    Some(health) => health.fault(Component::Wal, message),
                    None if started => tracing::warn!("{message}"),
                    None => {}
                }
            }
        }
    }
    let _ = conn.close().await;
}
