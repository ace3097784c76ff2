//! WatchArticles: a partner follows the event log of the sections it may read, first
//! replaying what came after its cursor, then following new commits as they come, with no
//! gap and no duplicate (the log's sequence numbers are the cursor). The partner's token and
//! rights are read again before every read of the log, as a call looks them up: a stream ends once
//! its token is revoked or rotated, or a section it follows is denied, and stops carrying
//! embargoed articles once the embargo right is.

use super::{PublishError, Publisher};
use crate::domain::{
    ArticleEvent, Partner, PartnerId, SectionGrant, SectionSlug, TokenHash, Violations,
};
use crate::locks::lock;
use crate::storage::{EventFilter, Store};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Most events one update carries.
const PAGE: usize = 200;
/// How often a stream with nothing to send reads its token and rights again, so that a
/// revoked partner's idle stream ends too.
const RIGHTS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// One message of a watch stream: events in log order, and the cursor after them.
#[derive(Debug, Clone)]
pub struct WatchUpdate {
    pub events: Vec<ArticleEvent>,
    /// Where to continue from: every event up to here was considered.
    pub cursor: u64,
}

impl Publisher {
    /// Follows the events of `sections` (all the partner may read when empty) after
    /// `cursor` (from now when `None`; what was wrong with it when it could not be read,
    /// refused with every other bad field), for as long as the partner holds the token
    /// `token` and the rights to them. The first update comes at once, with no events and the
    /// cursor the stream starts from. The stream ends with an error when the server stops,
    /// the store fails or the token or a followed section's right is taken away, and when
    /// the receiver is dropped.
    pub async fn watch(
        &self,
        partner: &Partner,
        token: TokenHash,
        sections: &[String],
        cursor: Result<Option<u64>, Violations>,
    ) -> Result<mpsc::Receiver<Result<WatchUpdate, PublishError>>, PublishError> {
        let mut violations = Violations::default();
        let sections = sections
            .iter()
            .enumerate()
            .filter_map(|(i, raw)| {
                self.configured_section(raw)
                    .map_err(|e| violations.add(format!("sections[{i}]"), e))
                    .ok()
            })
            .collect();
        let head = self.store.event_head();
        let newest = *head.borrow();
        let start = cursor.and_then(|cursor| match cursor {
            Some(after) if after > newest => Err(Violations::one(
                "cursor",
                "is ahead of this server's events (not a cursor it gave)",
            )),
            Some(after) => Ok(after),
            None => Ok(newest),
        });
        let (sections, start) = Violations::both(violations.into_result(sections), start)?;
        let rights = Rights { token, sections };
        rights.filter(partner)?;
        let slot = WatchSlot::take(
            &self.watchers,
            partner.id,
            self.settings.limits.watch_streams,
        )?;
        let (tx, rx) = mpsc::channel(2);
        let store = self.store.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            follow(store, rights, start, head, tx, stopping).await;
            drop(slot);
        });
        Ok(rx)
    }
}

/// Open WatchArticles streams, by partner.
pub(super) type Watchers = Arc<std::sync::Mutex<HashMap<PartnerId, usize>>>;

/// One of a partner's open WatchArticles streams, counted until dropped.
struct WatchSlot {
    watchers: Watchers,
    partner: PartnerId,
}

impl WatchSlot {
    /// A place for one more stream of `partner`, unless it has `most` open already.
    fn take(watchers: &Watchers, partner: PartnerId, most: usize) -> Result<Self, PublishError> {
        let mut open = lock(watchers);
        let count = open.entry(partner).or_default();
        if *count >= most {
            return Err(PublishError::TooManyWatches(*count));
        }
        *count += 1;
        Ok(Self {
            watchers: watchers.clone(),
            partner,
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.watchers);
        if let Some(count) = open.get_mut(&self.partner) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.partner);
            }
        }
    }
}

/// What a stream was opened with, checked again before every read of the log.
struct Rights {
    token: TokenHash,
    /// The sections asked for; empty for all the partner may read.
    sections: Vec<SectionSlug>,
}

impl Rights {
    /// The events `partner` may read of the sections asked for, or why it may not follow
    /// one of them.
    fn filter(&self, partner: &Partner) -> Result<EventFilter, PublishError> {
        for section in &self.sections {
            partner.may_use_section(section)?;
        }
        let sections = match (&partner.grant, self.sections.is_empty()) {
            (_, false) => Some(self.sections.clone()),
            (SectionGrant::All, true) => None,
            (SectionGrant::Only(granted), true) => Some(granted.clone()),
        };
        Ok(EventFilter {
            sections,
            embargoed: partner.embargoed,
        })
    }

    /// The filter of the partner's rights as they are now.
    async fn current(&self, store: &dyn Store) -> Result<EventFilter, PublishError> {
        let partner =
            store
                .partner_by_token(&self.token)
                .await?
                .ok_or(PublishError::Unauthenticated(
                    "the token was revoked or rotated",
                ))?;
        self.filter(&partner)
    }
}

/// Sends updates after `after` until the receiver goes away, the server stops, the store
/// fails or the rights are gone: replays the log up to the newest committed event, then
/// waits for the next commit.
async fn follow(
    store: Arc<dyn Store>,
    rights: Rights,
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
            let read = async {
                let filter = rights.current(store.as_ref()).await?;
                Ok::<_, PublishError>(store.events(after, until, &filter, PAGE).await?)
            };
            let events = match read.await {
                Ok(events) => events,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
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
            // In updates a client can take in one message each: every one but the last
            // ends at its last event.
            let mut events = events;
            while !events.is_empty() {
                let fit = super::fitting(&events, |e| e.article.approx_bytes());
                let rest = events.split_off(fit);
                // `fitting` keeps at least one event.
                let last = events[events.len() - 1].seq;
                let update = WatchUpdate {
                    cursor: if rest.is_empty() { cursor } else { last },
                    events: std::mem::replace(&mut events, rest),
                };
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
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
            () = tokio::time::sleep(RIGHTS_CHECK) => {
                if let Err(e) = rights.current(store.as_ref()).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}
