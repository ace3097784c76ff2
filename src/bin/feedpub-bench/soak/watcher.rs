//! The soak's watchers: WatchArticles streams resumed from their cursor, checked for gaps
//! and repeats.

use super::{Expected, Plan, Tally};
use crate::fixture::Fixture;
use anyhow::Context;
use feedpub::grpc::convert::position_from_cursor;
use feedpub::grpc::proto::{WatchArticlesRequest, WatchArticlesResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One watcher: follows every section from the first event, reconnecting from its cursor.
pub(super) struct Watcher {
    fixture: Arc<Fixture>,
    tally: Arc<Tally>,
    index: usize,
    stream: Option<tonic::Streaming<WatchArticlesResponse>>,
    /// The cursor of the last message, and the sequence numbers of the event before the
    /// first one followed and of the last event.
    cursor: String,
    start_seq: u64,
    last_seq: u64,
    seen: Expected,
}

impl Watcher {
    pub(super) fn new(fixture: Arc<Fixture>, tally: Arc<Tally>, index: usize) -> Self {
        Self {
            fixture,
            tally,
            index,
            stream: None,
            cursor: String::new(),
            start_seq: 0,
            last_seq: 0,
            seen: Expected::default(),
        }
    }

    /// Opens a stream after `cursor` (from now when `None`) and checks its first message:
    /// no events, and the position asked for.
    pub(super) async fn connect(&mut self, cursor: Option<String>) -> anyhow::Result<()> {
        let mut stream = self
            .fixture
            .client
            .clone()
            .watch_articles(WatchArticlesRequest {
                sections: Vec::new(),
                cursor: cursor.clone().unwrap_or_default(),
            })
            .await
            .context("WatchArticles")?
            .into_inner();
        let first = stream
            .message()
            .await
            .context("WatchArticles' first message")?
            .context("WatchArticles ended before its first message")?;
        anyhow::ensure!(first.events.is_empty(), "events in the first message");
        let at = seq_of(&first.cursor)?;
        if cursor.is_some() {
            anyhow::ensure!(
                at == self.last_seq,
                "resumed at {at}, not after event {}",
                self.last_seq
            );
        } else {
            (self.start_seq, self.last_seq) = (at, at);
        }
        self.cursor = first.cursor;
        self.stream = Some(stream);
        Ok(())
    }

    /// Reads until the soak stops, reconnecting from the cursor every so often.
    pub(super) async fn follow(mut self, plan: Plan) -> Self {
        // Watchers reconnect at different moments: 1×, 1.5× and 2× the plan's period.
        let period = plan.reconnect_every.mul_f64(1.0 + self.index as f64 * 0.5);
        let mut reconnect_at = Instant::now() + period;
        while !self.tally.stopping() {
            if Instant::now() >= reconnect_at {
                reconnect_at = Instant::now() + period;
                self.reconnect().await;
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                self.reconnect().await;
                continue;
            };
            let message = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            match message {
                Err(_) => {} // nothing new within half a second
                Ok(Ok(Some(update))) => self.take(update),
                Ok(Ok(None)) => {
                    self.tally.error("watch", "stream ended".into());
                    self.stream = None;
                }
                Ok(Err(status)) => {
                    self.tally.error("watch", format!("{status:?}"));
                    self.stream = None;
                }
            }
        }
        self
    }

    async fn reconnect(&mut self) {
        self.stream = None;
        Tally::bump(&self.tally.reconnects, 1);
        if let Err(e) = self.connect(Some(self.cursor.clone())).await {
            self.tally.error("watch", format!("reconnect: {e:#}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks that every event follows the previous one, and counts it.
    fn take(&mut self, update: WatchArticlesResponse) {
        for event in &update.events {
            match seq_of(&event.cursor) {
                Ok(seq) if seq == self.last_seq + 1 => self.last_seq = seq,
                Ok(seq) => {
                    self.tally.error(
                        "watch",
                        format!(
                            "watcher {}: event {seq} after event {}",
                            self.index, self.last_seq
                        ),
                    );
                    self.last_seq = self.last_seq.max(seq);
                }
                Err(e) => self.tally.error("watch", format!("{e:#}")),
            }
            self.seen.add(event.r#type());
            Tally::bump(&self.tally.events, 1);
        }
        self.cursor = update.cursor;
    }

    /// Reads until every acknowledged write's event has come (or 60 s have passed), and
    /// checks that exactly those events came.
    pub(super) async fn finish(mut self, expected: Expected) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.total() < expected.total() && Instant::now() < deadline {
            if self.stream.is_none() {
                self.connect(Some(self.cursor.clone())).await?;
            }
            let stream = self.stream.as_mut().context("no stream")?;
            match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
                Err(_) => {}
                Ok(Ok(Some(update))) => self.take(update),
                Ok(Ok(None)) => anyhow::bail!("stream ended"),
                Ok(Err(status)) => anyhow::bail!("{status:?}"),
            }
        }
        anyhow::ensure!(
            self.seen == expected && self.last_seq == self.start_seq + expected.total(),
            "watcher {} saw {:?}, events {} to {}; the writes acknowledged {expected:?}",
            self.index,
            self.seen,
            self.start_seq + 1,
            self.last_seq
        );
        Ok(())
    }
}

/// The event sequence number in a cursor.
fn seq_of(cursor: &str) -> anyhow::Result<u64> {
    position_from_cursor(cursor)
        .ok()
        .flatten()
        .with_context(|| format!("{cursor:?} is not a watch cursor"))
}
