//! Feeds kept current with the writes of other processes on a shared database: every event
//! another replica commits (a publish, correction, retraction or embargo end) marks the
//! feeds of the article, before and after the change, as stale here too, so that every
//! replica serves the same feeds soon after any of them acknowledges a write. A replica
//! skips the events it logged itself: the write that logged them marked their feeds stale
//! already, and reading them back would rebuild the same feeds twice.

use super::Publication;
use crate::domain::{EventKind, PartnerId};
use crate::storage::{EventFilter, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read at once.
const PAGE: usize = 512;

/// Marks the feeds of every event after `seen` as stale, as the store's event head moves,
/// until `shutdown` turns true. Only for stores shared with other processes: on a store of
/// its own, each write marks its feeds itself.
pub async fn follow(
    store: Arc<dyn Store>,
    publication: Publication,
    mut seen: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut head = store.event_head();
    let followed = metrics::counter!("feedpub_replica_events_followed_total");
    // Shown from the start, at zero, so that a replica that followed nothing says so.
    followed.increment(0);
    // Every event, embargoed or not, of every partner.
    let every = EventFilter {
        sections: None,
        reader: PartnerId(0),
        embargoed: true,
    };
    loop {
        let until = *head.borrow_and_update();
        while seen < until {
            let events = match store.events_of_others(seen, until, &every, PAGE).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the other replicas' events");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                seen = until;
                break;
            };
            followed.increment(events.len() as u64);
            for event in &events {
                let article = &event.article;
                publication.touch_scopes(article.name_scopes());
                publication.touch(std::slice::from_ref(&article.content.section));
                // A correction may have moved the article out of a section or a name.
                if event.kind == EventKind::Updated && article.version > 1 {
                    let before = store
                        .article_version(article.partner, &article.id, article.version - 1)
                        .await;
                    if let Ok(Some(before)) = before {
                        publication.touch_scopes(before.name_scopes());
                        publication.touch(std::slice::from_ref(&before.content.section));
                    }
                }
            }
            seen = last;
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
