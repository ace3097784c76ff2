//! WatchArticles: a partner follows the event log of the sections it may read, first
//! replaying what came after its cursor, then following new commits as they come, with no
//! gap and no duplicate (the log's sequence numbers are the cursor).

use super::{PublishError, Publisher};
use crate::domain::{ArticleEvent, Partner, SectionGrant, SectionSlug, Violations};
use crate::storage::{EventFilter, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Most events one update carries.
const PAGE: usize = 200;

/// One message of a watch stream: events in log order, and the cursor after them.
#[derive(Debug, Clone)]
pub struct WatchUpdate {
    pub events: Vec<ArticleEvent>,
    /// Where to continue from: every event up to here was considered.
    pub cursor: u64,
}

impl Publisher {
    /// Follows the events of `sections` (all the partner may read when empty) after
    /// `cursor` (from now when `None`). The first update comes at once, with no events and
    /// the cursor the stream starts from. The stream ends with an error when the server
    /// stops or the store fails, and when the receiver is dropped.
    pub async fn watch(
        &self,
        partner: &Partner,
        sections: Vec<SectionSlug>,
        cursor: Option<u64>,
    ) -> Result<mpsc::Receiver<Result<WatchUpdate, PublishError>>, PublishError> {
        let mut violations = Violations::default();
        for (i, slug) in sections.iter().enumerate() {
            if self.settings.section(slug).is_none() {
                violations.add(
                    format!("sections[{i}]"),
                    format!(
                        "{:?} is not a configured section (see ListSections)",
                        slug.as_str()
                    ),
                );
            }
        }
        violations.into_result(())?;
        for section in &sections {
            partner.may_use_section(section)?;
        }
        let sections = match (&partner.grant, sections.is_empty()) {
            (_, false) => Some(sections),
            (SectionGrant::All, true) => None,
            (SectionGrant::Only(granted), true) => Some(granted.clone()),
        };
        let filter = EventFilter {
            sections,
            reader: partner.id,
            embargoed: partner.embargoed,
        };
        let head = self.store.event_head();
        let newest = *head.borrow();
        let start = match cursor {
            Some(after) if after > newest => {
                return Err(Violations::one(
                    "cursor",
                    "is ahead of this server's events (not a cursor it gave)",
                )
                .into());
            }
            Some(after) => after,
            None => newest,
        };
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(follow(
            self.store.clone(),
            filter,
            start,
            head,
            tx,
            self.stopping.clone(),
        ));
        Ok(rx)
    }
}

/// Sends updates after `after` until the receiver goes away, the server stops or the store
/// fails: replays the log up to the newest committed event, then waits for the next commit.
async fn follow(
    store: Arc<dyn Store>,
    filter: EventFilter,
    mut after: u64,
    mut head: watch::Receiver<u64>,
    tx: mpsc::Sender<Result<WatchUpdate, PublishError>>,
    stopping: CancellationToken,
) {
    let start = WatchUpdate {
        events: Vec::new(),
        cursor: after,
    };
    if tx.send(Ok(start)).await.is_err() {
        return;
    }
    loop {
        if stopping.is_cancelled() {
            let _ = tx.send(Err(PublishError::ShuttingDown)).await;
            return;
        }
        // Every event up to `until` is committed, so reading up to it leaves no gap.
        let until = *head.borrow_and_update();
        if until > after {
            let events = match store.events(after, until, &filter, PAGE).await {
                Ok(events) => events,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            // A full page may stop short of `until`; otherwise everything up to it (also
            // what the filter left out) has been considered.
            let cursor = match events.last() {
                Some(last) if events.len() == PAGE => last.seq,
                _ => until,
            };
            after = cursor;
            if !events.is_empty() && tx.send(Ok(WatchUpdate { events, cursor })).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() {
                // The store closed: the server is stopping.
                let _ = tx.send(Err(PublishError::ShuttingDown)).await;
                return;
            },
            () = stopping.cancelled() => {}
            () = tx.closed() => return,
        }
    }
}
