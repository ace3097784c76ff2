//! Feeds kept current with the writes of other processes on a shared database: every event
//! another replica commits (a publish, correction, retraction or embargo end) marks the
//! feeds of the article, before and after the change, as stale here too, so that every
//! replica serves the same feeds soon after any of them acknowledges a write. A replica
//! skips the events it logged itself: the write that logged them marked their feeds stale
//! already, and reading them back would rebuild the same feeds twice. A server on a store of
//! its own (SQLite) follows only the events operators' commands announce beside it.

use super::Publication;
use crate::domain::{ArticleEvent, EventKind};
use crate::storage::{EventFilter, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events read at once.
const PAGE: usize = 512;

/// Marks the feeds of every event after `seen` as stale, as the store's event head moves,
/// until `shutdown` turns true, and up to the head then. Only for stores shared with other
/// processes: on a store of its own, each write marks its feeds itself.
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
        embargoed: true,
    };
    let mut stopping = false;
    loop {
        let until = *head.borrow_and_update();
        while seen < until {
            let events = match store.events_of_others(seen, until, &every, PAGE).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the other replicas' events");
                    if *shutdown.borrow() {
                        return;
                    }
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
                touch_feeds_of(store.as_ref(), &publication, event).await;
            }
            seen = last;
        }
        if stopping {
            return;
        }
        // A last look as it stops, up to the head it knows then.
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => stopping = true,
        }
    }
}

/// Marks the feeds `event` changed as stale: those of its article, and those of the
/// version before a correction, which may have moved it out of a section or a name.
async fn touch_feeds_of(store: &dyn Store, publication: &Publication, event: &ArticleEvent) {
    let article = &event.article;
    publication.touch_scopes(article.name_scopes());
    publication.touch(std::slice::from_ref(&article.content.section));
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

/// How often a server on a store of its own looks for events an operator's command logged
/// beside it.
pub const ANNOUNCED_POLL: Duration = Duration::from_secs(1);

/// On a store of its own, marks the feeds of the events that operators' commands announced
/// after `seen` (a takedown of a partner's article) as stale, looking every
/// [`ANNOUNCED_POLL`], and moves the event head on so that streams following the log see
/// them, until `shutdown` turns true, and once more then.
pub async fn follow_announced(
    store: Arc<dyn Store>,
    publication: Publication,
    mut seen: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = EventFilter {
        sections: None,
        embargoed: true,
    };
    let mut stopping = false;
    while !stopping {
        // A last look as it stops: an operator's takedown made just before is in the
        // feeds the server leaves.
        tokio::select! {
            () = tokio::time::sleep(ANNOUNCED_POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => stopping = true,
        }
        let announced = match store.announced_events(seen, PAGE).await {
            Ok(announced) => announced,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the events operators' commands logged");
                continue;
            }
        };
        for seq in announced {
            match store.events(seq.saturating_sub(1), seq, &every, 1).await {
                Ok(events) => {
                    for event in &events {
                        touch_feeds_of(store.as_ref(), &publication, event).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, seq, "cannot read an event an operator's command logged");
                    break;
                }
            }
            store.note_event(seq);
            seen = seq;
        }
    }
}
