//! Copying the write-ahead log into the database off the writer's path. A checkpoint copies
//! every page the log holds and then syncs the database file; run by the writer after a
//! commit (SQLite's automatic checkpoint), it holds up every caller waiting for the next
//! commit. Here a connection of its own copies what the writer commits, a little after it
//! commits, while the writer goes on. The writer's automatic checkpoint stays as the
//! backstop: when the log reaches its size, the writer copies what is left (by then little),
//! which lets the log start again from its beginning.

use super::StoreError;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long commits gather before their pages are copied: a page that several commits
/// changed is copied once.
const GATHER: Duration = Duration::from_millis(100);

/// The task that copies the log into the database after commits.
pub(super) struct Checkpoints {
    committed: Arc<Notify>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Checkpoints {
    /// Opens the connection that copies and starts its task.
    pub(super) async fn start(options: &SqliteConnectOptions) -> Result<Self, StoreError> {
        let conn = SqliteConnection::connect_with(options).await?;
        let committed = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(conn, committed.clone(), stop.clone()));
        Ok(Self {
            committed,
            stop,
            task: Some(task),
        })
    }

    /// Tells the task that the writer committed.
    pub(super) fn committed(&self) {
        self.committed.notify_one();
    }

    /// Ends the task, once a checkpoint in progress is done, and closes its connection.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Checkpoints {
    /// A writer that ends without closing the store (it was dropped) ends the task too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(mut conn: SqliteConnection, committed: Arc<Notify>, stop: CancellationToken) {
    // A failure is logged when it starts, not at every attempt: the writer's own commits
    // report a full or failing disk to the health checks.
    let mut failing = false;
    loop {
        tokio::select! {
            () = committed.notified() => {}
            () = stop.cancelled() => break,
        }
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = stop.cancelled() => break,
        }
        // PASSIVE: copies what no reader still needs from the log, waiting for nobody.
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot copy the write-ahead log into the database");
            }
            Err(_) => {}
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the write-ahead log is copied into the database again");
            }
            Ok(_) => {}
        }
    }
    let _ = conn.close().await;
}
