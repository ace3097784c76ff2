//! Content distribution (WebSub §7): every changed feed document is POSTed, byte for byte,
//! to each subscriber of its topic, signed with the subscriber's secret, each delivery in its
//! own task so a slow subscriber delays nobody; failures are retried with exponential
//! backoff a bounded number of times. Configured external hubs are pinged on each change.
//!
//! Replicas on one database all build the same documents: the one that claims a document
//! delivers it, renewing its claim (a lease) until every subscriber's delivery ended. A
//! replica that dies mid-delivery stops renewing; once its claim lapses another replica
//! takes it over and delivers the document again, so a change is delivered at least once
//! (twice to a subscriber the dead replica reached just before dying). On SQLite the claims
//! of documents with subscribers are recorded too, and the next run takes over those the
//! last one left, sending what each of their feeds shows then to every subscriber of its
//! topic: a restart does not drop a delivery that was waiting to retry.

use super::subscription::{Callback, Secret, Subscription, Topic};
use super::{Inner, Latest};
use crate::locks::lock;
use crate::publication::{FeedChange, FeedFile};
use crate::render::Format;
use axum::body::Bytes;
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LINK};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Attempts per delivery, the first included.
const MAX_ATTEMPTS: u32 = 5;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// `X-Hub-Signature` value for `body`: `sha256=` and the hex HMAC-SHA256 keyed with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Wait before attempt `attempt + 1`: `base`, then twice as long each time, capped.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// One changed document, ready to send to every subscriber of its topic.
struct Payload {
    body: Bytes,
    headers: HeaderMap,
    /// The document's entity tag.
    etag: String,
}

impl Payload {
    /// The headers to send the document with to a subscriber with `secret`: signed
    /// (`X-Hub-Signature`) when there is one.
    fn signed(&self, secret: Option<&Secret>) -> HeaderMap {
        let mut headers = self.headers.clone();
        if let Some(secret) = secret {
            let signed = signature(secret.expose(), &self.body);
            if let Ok(value) = HeaderValue::from_str(&signed) {
                headers.insert(HeaderName::from_static("x-hub-signature"), value);
            }
        }
        headers
    }
}

/// Lapsed claims taken over at once.
const TAKEOVERS: usize = 64;

/// A claimed document's deliveries: the last one to end marks the claim done.
struct Claim {
    topic: Topic,
    /// The document's [`delivery_key`].
    key: String,
    /// Deliveries not ended yet.
    open: AtomicUsize,
    /// Cancelled when the claim is done: its renewal stops.
    done: CancellationToken,
}

impl Claim {
    /// One delivery ended; the last one marks the claim done.
    async fn ended(&self, inner: &Inner) {
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.done.cancel();
            finish(inner, &self.topic, &self.key).await;
        }
    }
}

/// Marks the delivery of the document `key` of `topic` done.
async fn finish(inner: &Inner, topic: &Topic, key: &str) {
    if let Err(e) = inner.store.finish_delivery(topic, key).await {
        // The claim lapses and another replica delivers the document again.
        tracing::warn!(topic = topic.path(), error = %e, "cannot mark a WebSub delivery done");
    }
}

/// How long a claim lasts unless renewed.
fn lease(inner: &Inner) -> Duration {
    Duration::from_millis(inner.settings.delivery_lease_ms)
}

/// `now` plus the lease.
fn lease_end(inner: &Inner) -> chrono::DateTime<Utc> {
    let lease = chrono::TimeDelta::from_std(lease(inner)).unwrap_or(chrono::TimeDelta::MAX);
    Utc::now()
        .checked_add_signed(lease)
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC)
}

/// Renews `claim` a third of the way through each lease until it is done or the hub stops.
async fn keep_claim(inner: Arc<Inner>, claim: Arc<Claim>) {
    loop {
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            () = claim.done.cancelled() => return,
            () = tokio::time::sleep(lease(&inner) / 3) => {}
        }
        match inner
            .store
            .renew_delivery(&claim.topic, &claim.key, lease_end(&inner))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    topic = claim.topic.path(),
                    "a WebSub delivery claim was lost"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(topic = claim.topic.path(), error = %e, "cannot renew a WebSub delivery claim");
            }
        }
    }
}

/// Delivers the documents whose claim lapsed unfinished (their replica died mid-delivery;
/// on a store of its own, an earlier run stopped with deliveries under way): at once, then
/// every half lease until the hub stops, or, on a store of its own, until none is left.
pub(super) async fn take_over_lapsed(inner: Arc<Inner>) {
    let shared = inner.store.is_shared();
    // On a store of its own a look drops what it finds: it looks again at once while it
    // finds as many as it takes and drops them all, and no more once it found fewer (one
    // server runs on it: no other process leaves records while this one runs).
    let mut again = true;
    // The topics this process has sent again: the records it finds are all an earlier
    // run's (one server runs on a store of its own), so once is enough, however many there
    // are and whether or not they could be dropped.
    let mut delivered: HashSet<Topic> = HashSet::new();
    // The author and tag feeds a start found are built after it listens: until they are,
    // a delivery of one would find no document, and be dropped as if its feed were gone.
    tokio::select! {
        () = inner.cancel.cancelled() => return,
        () = inner.publication.all_built() => {}
    }
    deliver_unclaimed(&inner).await;
    loop {
        let wait = if std::mem::take(&mut again) {
            Duration::ZERO
        } else {
            lease(&inner) / 2
        };
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let lapsed = match inner.store.lapsed_deliveries(Utc::now(), TAKEOVERS).await {
            Ok(lapsed) => lapsed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for lapsed WebSub deliveries");
                continue;
            }
        };
        if shared {
            for (topic, key) in lapsed {
                take_over(&inner, &topic, &key).await;
            }
            continue;
        }
        let full = lapsed.len() == TAKEOVERS;
        let mut by_topic: HashMap<Topic, Vec<String>> = HashMap::new();
        for (topic, key) in lapsed {
            by_topic.entry(topic).or_default().push(key);
        }
        let mut dropped = true;
        for (topic, keys) in by_topic {
            let first = delivered.insert(topic.clone());
            dropped &= deliver_left(&inner, &topic, keys, first).await;
        }
        if dropped && !full {
            // Every record an earlier run left is gone, and this run's are its own.
            return;
        }
        again = dropped;
    }
}

/// The feeds that show a later document than the last of their topic whose delivery was
/// claimed are sent to their subscribers: the process that built it was killed after
/// writing its files and before claiming its delivery, and as those files match what this
/// one built, no change of theirs is heard. On a shared database, a replica running beside
/// this one may be about to claim it: one of the two claims it ([`publish`]). One that
/// shows an earlier document than the claimed one (this replica started before another
/// built the next) sends nothing.
async fn deliver_unclaimed(inner: &Arc<Inner>) {
    let claims = match inner.store.last_claims().await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last WebSub claims");
            return;
        }
    };
    for (topic, key) in claims {
        let Some(file) = inner.publication.get(topic.path()) else {
            continue;
        };
        if unclaimed(&key, &delivery_key(&file)) {
            tracing::info!(
                topic = topic.path(),
                "delivering a WebSub topic whose last change the last run did not claim"
            );
            publish(inner, topic.path(), &file, true).await;
        }
    }
}

/// Whether the document `shown` (its [`delivery_key`]) still needs delivering when `claimed`
/// is the last whose delivery was claimed: other bytes, not of an earlier change.
fn unclaimed(claimed: &str, shown: &str) -> bool {
    let (etag, changed) = key_parts(claimed);
    let (shown_etag, shown_changed) = key_parts(shown);
    shown_etag != etag
        && !matches!((shown_changed, changed), (Some(shown), Some(claimed)) if shown < claimed)
}

/// What a replica does with another's lapsed claim.
#[derive(Debug, PartialEq, Eq)]
enum Lapsed {
    /// Deliver the document this replica shows: the claimed bytes. `done` when the claim
    /// named them under an earlier change, and is marked done besides.
    Deliver { done: bool },
    /// Leave it to a replica showing the claimed document, later than this one's.
    Leave,
    /// Mark it done: a document no replica shows any more (its topic gone, its bytes
    /// rendered anew) is not delivered, and one the feed has moved on from is superseded by
    /// its successor, delivered on its own.
    Done,
}

/// What to do with the lapsed claim `key` when this replica shows `shown` (its
/// [`delivery_key`]), if anything, at the topic.
fn lapsed(key: &str, shown: Option<&str>) -> Lapsed {
    let Some(shown) = shown else {
        return Lapsed::Done;
    };
    let (etag, changed) = key_parts(key);
    let (shown_etag, shown_changed) = key_parts(shown);
    if etag == shown_etag {
        return Lapsed::Deliver { done: key != shown };
    }
    match (changed, shown_changed) {
        (Some(claimed), Some(shown)) if claimed > shown => Lapsed::Leave,
        _ => Lapsed::Done,
    }
}

/// A replica's take-over of another's lapsed claim on `key` (see [`lapsed`]).
async fn take_over(inner: &Arc<Inner>, topic: &Topic, key: &str) {
    let file = inner.publication.get(topic.path());
    let shown = file.as_deref().map(delivery_key);
    match (lapsed(key, shown.as_deref()), file) {
        (Lapsed::Deliver { done }, Some(file)) => {
            tracing::info!(
                topic = topic.path(),
                "taking over a WebSub delivery whose claim lapsed"
            );
            metrics::counter!("feedpub_websub_deliveries_taken_over_total").increment(1);
            publish(inner, topic.path(), &file, false).await;
            if done {
                finish(inner, topic, key).await;
            }
        }
        (Lapsed::Leave, _) => {}
        (Lapsed::Done | Lapsed::Deliver { .. }, _) => finish(inner, topic, key).await,
    }
}

/// On a store of its own, the documents of `topic` whose deliveries an earlier run left
/// (`keys`): the subscribers get the document the feed shows now, once (it may be one of
/// them, or one the feed came to show while no run served it, which nothing else would
/// send), and the records go once it is recorded as this run's. Only this process's `first`
/// look at the topic delivers. False when a record could not be dropped.
async fn deliver_left(inner: &Arc<Inner>, topic: &Topic, keys: Vec<String>, first: bool) -> bool {
    let file = inner.publication.get(topic.path());
    let started = match &file {
        Some(file) if first => publish(inner, topic.path(), file, true).await,
        _ => false,
    };
    if started {
        tracing::info!(
            topic = topic.path(),
            "delivering again a WebSub topic whose deliveries the last run left"
        );
        metrics::counter!("feedpub_websub_deliveries_taken_over_total").increment(1);
    }
    let current = file.as_deref().map(delivery_key);
    let mut dropped = true;
    for key in keys {
        // On its way now, the document's record is (or is about to be) this run's again.
        if started && current.as_ref() == Some(&key) {
            continue;
        }
        if let Err(e) = inner.store.finish_delivery(topic, &key).await {
            tracing::warn!(topic = topic.path(), error = %e, "cannot drop a WebSub delivery the last run left");
            dropped = false;
        }
    }
    dropped
}

/// The entity tag and the stored change (Unix nanoseconds) a [`delivery_key`] names.
fn key_parts(key: &str) -> (&str, Option<i64>) {
    match key.rsplit_once(' ') {
        Some((etag, changed)) => (etag, changed.parse().ok()),
        None => (key, None),
    }
}

/// How one delivery ended.
enum Outcome {
    Delivered,
    GaveUp(String),
    /// 410 Gone: the subscriber wants no more (WebSub §7); its subscription is removed.
    Gone,
    /// A newer version of the document is on its way to the same subscriber.
    Superseded,
    /// The subscription ended (unsubscribed, or its lease over) while the delivery waited.
    Unsubscribed,
    Cancelled,
}

/// Forwards every feed change to the subscribers of its topic until `draining` is
/// cancelled; then takes the changes announced by then, and returns once each one's
/// deliveries are recorded (their claims written), for the next run to make if this one
/// cannot.
pub(super) async fn distribute(
    inner: Arc<Inner>,
    mut changes: tokio::sync::broadcast::Receiver<FeedChange>,
    draining: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            biased;
            change = changes.recv() => change,
            () = draining.cancelled() => break,
        };
        if !forward(&inner, change, false).await {
            return;
        }
    }
    loop {
        let change = match changes.try_recv() {
            Ok(change) => Ok(change),
            Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        };
        if !forward(&inner, change, true).await {
            return;
        }
    }
}

/// Publishes one received change (see [`publish`] for `recorded`); false when no more
/// will come.
async fn forward(
    inner: &Arc<Inner>,
    change: Result<FeedChange, RecvError>,
    recorded: bool,
) -> bool {
    match change {
        Ok(change) => {
            publish(inner, &change.path, &change.file, recorded).await;
        }
        Err(RecvError::Lagged(missed)) => {
            // Some changes were missed; their documents are superseded anyway, so send
            // every current document to its subscribers.
            tracing::warn!(
                missed,
                "WebSub distribution fell behind; resending all feeds"
            );
            let named = inner.publication.named_scopes();
            for scope in inner.publication.scopes().into_iter().chain(named) {
                for format in Format::ALL {
                    let path = format!("{}/{}", scope.path_segment(), format.file_name());
                    if let Some(file) = inner.publication.get(&path) {
                        publish(inner, &path, &file, recorded).await;
                    }
                }
            }
        }
        Err(RecvError::Closed) => return false,
    }
    true
}

/// What replicas claim a document's delivery by: its entity tag and the stored change it
/// shows, the same on every replica. The tag alone is not enough: a feed can go back to
/// bytes it had before (a JSON Feed, which carries no date, after a retraction), and that
/// change must be delivered again.
fn delivery_key(file: &FeedFile) -> String {
    match file.changed {
        Some(changed) => format!(
            "{} {}",
            file.etag,
            changed.timestamp_nanos_opt().unwrap_or(i64::MAX)
        ),
        None => file.etag.clone(),
    }
}

/// Claims the delivery of `topic`'s document `key`: false when another process holds it or
/// delivered it. A claim that cannot be made is delivered anyway.
async fn claim_delivery(inner: &Inner, topic: &Topic, key: &str) -> bool {
    match inner
        .store
        .claim_delivery(topic, key, Utc::now(), lease_end(inner))
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(topic = topic.path(), error = %e, "cannot claim the WebSub delivery; delivering it");
            true
        }
    }
}

/// Starts one delivery per active subscriber of the feed at `path`, and the pings; true
/// when deliveries of the document are under way. On a store of its own, with `recorded`, returns once the
/// document's claim is written rather than leave the write to the deliveries' task.
async fn publish(inner: &Arc<Inner>, path: &str, file: &Arc<FeedFile>, recorded: bool) -> bool {
    let Ok(topic) = Topic::new(path) else {
        tracing::warn!(path, "a changed feed has no topic path");
        return false;
    };
    let key = delivery_key(file);
    // Replicas on one database all regenerate this document: one of them delivers it, and
    // pings the external hubs. A store of its own has one process, which claims only the
    // documents it has subscribers for (below): the claim is a write, kept until their
    // deliveries end so that the next run delivers again what this one leaves unfinished.
    let shared = inner.store.is_shared();
    if shared && !claim_delivery(inner, &topic, &key).await {
        return false;
    }
    let topic_url = topic.url(&inner.feeds_base);
    ping_external_hubs(inner, &topic_url);
    let subscriptions = match inner
        .store
        .active_subscriptions(&topic, None, Utc::now())
        .await
    {
        Ok(subscriptions) => subscriptions,
        Err(e) => {
            tracing::error!(topic = path, error = %e, "cannot read WebSub subscriptions; change not delivered");
            return false;
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    let link = format!(
        "<{}>; rel=\"hub\", <{topic_url}>; rel=\"self\"",
        inner.hub_url
    );
    if let Ok(link) = HeaderValue::from_str(&link) {
        headers.insert(LINK, link);
    }
    let payload = Arc::new(Payload {
        body: file.bytes().clone(),
        headers,
        etag: file.etag.clone(),
    });
    let (deliveries, on_their_way) = enlist(inner, &topic, file, subscriptions, &payload);
    if deliveries.is_empty() {
        // What is on its way ends its own claim.
        if shared && on_their_way == 0 {
            finish(inner, &topic, &key).await;
        }
        return on_their_way > 0;
    }
    let claim = Arc::new(Claim {
        topic: topic.clone(),
        key: key.clone(),
        open: AtomicUsize::new(deliveries.len()),
        done: CancellationToken::new(),
    });
    if shared {
        inner.tasks.spawn(keep_claim(inner.clone(), claim.clone()));
    }
    let start = {
        let inner = inner.clone();
        async move {
            if !shared {
                claim_delivery(&inner, &claim.topic, &claim.key).await;
            }
            for (subscription, delivery) in deliveries {
                inner.tasks.spawn(deliver(
                    inner.clone(),
                    subscription,
                    delivery,
                    claim.clone(),
                ));
            }
        }
    };
    if shared || recorded {
        start.await;
    } else {
        // The claim's write, committed before the first attempt, waits outside the loop
        // that distributes the changes: it waits for the writer, which may be storing a
        // batch of publishes.
        inner.tasks.spawn(start);
    }
    true
}

/// Gives each of `subscriptions` a delivery of `payload` (the document `file` of `topic`)
/// and counts it in flight; also how many were left out because their newest delivery,
/// still under way, is of these very bytes (the same change heard twice: at start and from
/// a takeover, say). On a store of its own, a subscription whose last delivery started
/// brought it these bytes, with nothing on its way, is left out too ([`need`]). Generations
/// are given under the lock of the newest ones, and only while the feed still shows these
/// bytes (re-dated or not): a document whose turn came late (taken over, or resent) never
/// supersedes the one that followed it.
fn enlist(
    inner: &Inner,
    topic: &Topic,
    file: &FeedFile,
    subscriptions: Vec<Subscription>,
    payload: &Arc<Payload>,
) -> (Vec<(Subscription, Delivery)>, usize) {
    // The subscriptions were read just before.
    let read_at = Instant::now();
    let mut latest = inner.latest_lock();
    let shown = inner.publication.get(topic.path());
    if shown.as_ref().is_none_or(|shown| shown.etag != file.etag) {
        if shown.is_none() {
            inner.sent_lock().remove(topic); // a feed no longer served
        }
        return (Vec::new(), 0);
    }
    let mut sent = inner.sent_lock();
    // What was sent to subscriptions no longer active is forgotten.
    let mut here = sent.remove(topic).unwrap_or_default();
    if !here.is_empty() {
        let active: HashSet<&Callback> = subscriptions.iter().map(|s| &s.callback).collect();
        here.retain(|callback, _| active.contains(callback));
    }
    let (mut deliveries, mut on_their_way) = (Vec::new(), 0);
    for subscription in subscriptions {
        let key = (subscription.topic.clone(), subscription.callback.clone());
        let on_its_way = latest.get(&key).map(|newest| newest.etag.as_str());
        let last_sent = here.get(&subscription.callback).map(String::as_str);
        match need(on_its_way, last_sent, &file.etag) {
            Need::OnItsWay => {
                on_their_way += 1;
                continue;
            }
            Need::Has => continue,
            // What it has is known again once this delivery succeeds.
            Need::Send => {
                here.remove(&subscription.callback);
            }
        }
        let generation = inner.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let newest = latest.entry(key).or_insert_with(|| Latest {
            generation: watch::Sender::new(generation),
            etag: String::new(),
            open: 0,
            lane: Arc::default(),
        });
        // The older delivery waiting, if any, ends now: one document waits at most.
        newest.generation.send_replace(generation);
        newest.etag.clone_from(&file.etag);
        newest.open += 1;
        let lane = newest.lane.clone();
        let newest_generation = newest.generation.subscribe();
        // Counted before it starts, so "nothing in flight" means every delivery has ended.
        inner
            .stats
            .deliveries_in_flight
            .fetch_add(1, Ordering::SeqCst);
        let delivery = Delivery {
            payload: payload.clone(),
            generation,
            newest: newest_generation,
            lane,
            read_at,
        };
        deliveries.push((subscription, delivery));
    }
    if !here.is_empty() {
        sent.insert(topic.clone(), here);
    }
    (deliveries, on_their_way)
}

/// What one subscription needs of a document.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// The same bytes are on their way to it.
    OnItsWay,
    /// It has them: they are what it was last sent, and nothing is on its way.
    Has,
    Send,
}

/// What a subscription needs of the document with `etag`: `on_its_way` is the entity tag
/// of the newest document on its way to it, `last_sent` that of the last one it was sent
/// (while nothing newer was on its way).
fn need(on_its_way: Option<&str>, last_sent: Option<&str>, etag: &str) -> Need {
    match on_its_way {
        Some(newest) if newest == etag => Need::OnItsWay,
        // A newer document than the one last sent is on its way: these bytes come after it.
        Some(_) => Need::Send,
        None if last_sent == Some(etag) => Need::Has,
        None => Need::Send,
    }
}

impl Delivery {
    /// A newer document of the topic is on its way to the same subscriber.
    fn is_superseded(&self) -> bool {
        *self.newest.borrow() > self.generation
    }

    /// Resolves once [`Self::is_superseded`].
    async fn superseded(&self) {
        let mut newest = self.newest.clone();
        if newest.wait_for(|g| *g > self.generation).await.is_err() {
            // The subscription's entry outlives every delivery of it: never.
            std::future::pending::<()>().await;
        }
    }
}

/// One document on its way to one subscriber.
struct Delivery {
    payload: Arc<Payload>,
    /// Its place among the deliveries started: a later one supersedes it (the newest
    /// one's entity tag is [`Latest::etag`]).
    generation: u64,
    /// The newest generation of the subscription ([`Latest::generation`]).
    newest: watch::Receiver<u64>,
    /// The subscription's lane ([`Latest::lane`]).
    lane: Arc<tokio::sync::Mutex<()>>,
    /// When the subscription was read.
    read_at: Instant,
}

async fn deliver(
    inner: Arc<Inner>,
    subscription: Subscription,
    delivery: Delivery,
    claim: Arc<Claim>,
) {
    let outcome = attempt(&inner, &subscription, &delivery).await;
    // A delivery stopped by shutdown is left to the claim's lapse, and to another replica.
    let ended = !matches!(outcome, Outcome::Cancelled);
    let callback = &subscription.callback.logged();
    let topic = subscription.topic.path();
    let stats = &inner.stats;
    let counted = match outcome {
        Outcome::Delivered => Some((&stats.deliveries_ok, "ok")),
        Outcome::GaveUp(_) => Some((&stats.deliveries_failed, "failed")),
        Outcome::Gone => Some((&stats.deliveries_failed, "gone")),
        Outcome::Superseded => Some((&stats.deliveries_superseded, "superseded")),
        Outcome::Unsubscribed => Some((&stats.deliveries_unsubscribed, "unsubscribed")),
        Outcome::Cancelled => None,
    };
    if let Some((count, result)) = counted {
        super::Stats::count(count, "feedpub_websub_deliveries_total", result);
    }
    match outcome {
        Outcome::Delivered => {
            inner.note_sent(&subscription, &delivery);
            tracing::debug!(callback, topic, "WebSub delivery acknowledged");
        }
        Outcome::GaveUp(reason) => {
            tracing::warn!(callback, topic, %reason, "WebSub delivery given up");
        }
        Outcome::Gone => {
            tracing::info!(
                callback,
                topic,
                "WebSub subscriber answered 410 Gone; unsubscribed"
            );
            if let Err(e) = inner
                .store
                .delete_subscription(&subscription.topic, &subscription.callback)
                .await
            {
                tracing::warn!(callback, error = %e, "cannot remove a gone WebSub subscription");
            }
        }
        Outcome::Unsubscribed => {
            tracing::debug!(
                callback,
                topic,
                "WebSub delivery dropped: the subscription ended"
            );
        }
        Outcome::Superseded | Outcome::Cancelled => {}
    }
    inner.finish(&subscription.topic, &subscription.callback);
    // Its bytes are let go before the claim's end is written.
    drop(delivery);
    if ended {
        claim.ended(&inner).await;
    }
    inner
        .stats
        .deliveries_in_flight
        .fetch_sub(1, Ordering::SeqCst);
}

/// What `wait` gives, unless the hub stops or a newer document is on its way to the
/// delivery's subscriber first: whatever a delivery waits for, it ends then (and holds no
/// task nor bytes).
async fn waited<T>(
    inner: &Inner,
    delivery: &Delivery,
    wait: impl Future<Output = T>,
) -> Result<T, Outcome> {
    tokio::select! {
        () = inner.cancel.cancelled() => Err(Outcome::Cancelled),
        () = delivery.superseded() => Err(Outcome::Superseded),
        got = wait => Ok(got),
    }
}

/// How long a subscription as read is taken as it is: past this, it is read again before an
/// attempt.
const REREAD_AFTER: Duration = Duration::from_millis(100);

/// `subscription` as the store has it now: `None` once it ended; `Err` when the store
/// cannot tell (it is taken as it was).
async fn reread(inner: &Inner, subscription: &Subscription) -> Result<Option<Subscription>, ()> {
    let (topic, callback) = (&subscription.topic, &subscription.callback);
    match inner
        .store
        .active_subscriptions(topic, Some(callback), Utc::now())
        .await
    {
        Ok(found) => Ok(found.into_iter().next()),
        Err(e) => {
            tracing::warn!(topic = topic.path(), error = %e,
                "cannot read a WebSub subscription again; taking it as it was");
            Err(())
        }
    }
}

/// Whether the feed no longer shows the document `payload` carries: its successor is
/// delivered on its own, by this process or, on a shared database, maybe by another
/// replica, whose delivery this one does not see.
fn moved_on(inner: &Inner, subscription: &Subscription, payload: &Payload) -> bool {
    let shown = inner.publication.get(subscription.topic.path());
    shown.is_some_and(|file| file.etag != payload.etag)
}

async fn attempt(inner: &Inner, subscription: &Subscription, delivery: &Delivery) -> Outcome {
    let Delivery {
        payload,
        lane,
        read_at,
        ..
    } = delivery;
    let mut read_at = *read_at;
    let mut secret = subscription.secret.clone();
    let mut headers = payload.signed(secret.as_ref());
    let base = Duration::from_millis(inner.settings.retry_base_ms);
    let mut last_failure = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            if let Err(ended) = waited(
                inner,
                delivery,
                tokio::time::sleep(backoff(base, attempt - 1)),
            )
            .await
            {
                return ended;
            }
            if moved_on(inner, subscription, payload) {
                return Outcome::Superseded;
            }
        }
        // The subscription's own request, if any, ends first (not held through a backoff).
        let _lane = match waited(inner, delivery, lane.lock()).await {
            Ok(lane) => lane,
            Err(ended) => return ended,
        };
        if delivery.is_superseded() {
            return Outcome::Superseded;
        }
        // A slot of the callback's host next, so that deliveries waiting on a slow host
        // hold none of the slots every other subscriber shares.
        let host_slot = match waited(
            inner,
            delivery,
            inner.delivery_hosts.acquire(&subscription.callback),
        )
        .await
        {
            Ok(slot) => slot,
            Err(ended) => return ended,
        };
        // Hosts whose last delivery failed share fewer slots: a host that hangs holds up
        // the others for one request's time, not at every retry.
        let failing = inner.failing_hosts.is_failing(&subscription.callback);
        let slots = if failing {
            &inner.deliveries_to_failing
        } else {
            &inner.deliveries
        };
        let permit = match waited(inner, delivery, slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Outcome::Cancelled,
            Err(ended) => return ended,
        };
        // The subscription as it is now, unless read a moment ago: after a backoff or a
        // wait behind another request, one that ended (unsubscribed, its lease over) gets
        // nothing, and one renewed with another secret gets the document signed with that.
        if read_at.elapsed() >= REREAD_AFTER {
            match reread(inner, subscription).await {
                Ok(Some(now)) => {
                    if now.secret != secret {
                        secret = now.secret;
                        headers = payload.signed(secret.as_ref());
                    }
                    read_at = Instant::now();
                }
                Ok(None) => return Outcome::Unsubscribed,
                Err(()) => {}
            }
        }
        // Last, with nothing to wait for before the request: a newer document started
        // meanwhile goes instead, and so does one another replica delivers (a first
        // attempt may have waited long for the lane or a slot).
        if delivery.is_superseded() || moved_on(inner, subscription, payload) {
            return Outcome::Superseded;
        }
        let sent = inner.client.post(
            subscription.callback.url(),
            headers.clone(),
            payload.body.clone(),
        );
        let result = tokio::select! {
            () = inner.cancel.cancelled() => return Outcome::Cancelled,
            result = sent => result,
        };
        drop((permit, host_slot));
        if !matches!(&result, Err(e) if e.is_refused()) {
            let answered = result.as_ref().is_ok_and(|response| {
                response.status().is_success() || response.status() == StatusCode::GONE
            });
            inner.failing_hosts.record(&subscription.callback, answered);
        }
        match result {
            Ok(response) if response.status().is_success() => return Outcome::Delivered,
            Ok(response) if response.status() == StatusCode::GONE => return Outcome::Gone,
            // Anything else, redirects included, is a failure (WebSub §7).
            Ok(response) => last_failure = format!("the callback answered {}", response.status()),
            Err(e) if e.is_refused() => return Outcome::GaveUp(e.to_string()),
            Err(e) => last_failure = e.to_string(),
        }
        tracing::debug!(callback = subscription.callback.logged(), attempt, reason = %last_failure,
            "WebSub delivery attempt failed");
    }
    Outcome::GaveUp(format!(
        "{MAX_ATTEMPTS} attempts failed; last: {last_failure}"
    ))
}

/// Best-effort `hub.mode=publish` pings to the configured external hubs, apart from the
/// deliveries to subscribers (see [`super::MAX_CONCURRENT_PINGS`]).
fn ping_external_hubs(inner: &Arc<Inner>, topic_url: &str) {
    for hub in &inner.settings.external_hubs {
        let inner_task = inner.clone();
        let hub = hub.clone();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("hub.mode", "publish")
            .append_pair("hub.url", topic_url)
            .finish();
        // Held until the ping ends.
        let Ok(queued) = inner.queued_pings.clone().try_acquire_owned() else {
            tracing::debug!(%hub, "too many pings of external hubs waiting; one dropped");
            continue;
        };
        inner.tasks.spawn(async move {
            let inner = inner_task;
            let _queued = queued;
            let Ok(_permit) = inner.pings.acquire().await else {
                return;
            };
            let sent = inner
                .ping_client
                .post(hub.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
                .send();
            let result = tokio::select! {
                () = inner.cancel.cancelled() => return,
                result = sent => result,
            };
            match result {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(%hub, "external hub pinged");
                }
                Ok(response) => {
                    tracing::warn!(%hub, status = %response.status(), "external hub refused the ping");
                }
                Err(e) => tracing::warn!(%hub, error = %e, "cannot ping the external hub"),
            }
        });
    }
}

impl Inner {
    fn latest_lock(&self) -> MutexGuard<'_, HashMap<(Topic, Callback), Latest>> {
        // The map only holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        lock(&self.latest)
    }

    /// What was sent, per topic and subscriber (`Inner::sent`).
    fn sent_lock(&self) -> MutexGuard<'_, HashMap<Topic, HashMap<Callback, String>>> {
        // Entries are whole strings: a panic elsewhere cannot leave one half made.
        lock(&self.sent)
    }

    /// `delivery` reached the subscriber: on a store of its own, its bytes are what the
    /// subscriber has, unless a newer document was started for it meanwhile (which decides
    /// then; starting one forgets these, see `enlist`).
    fn note_sent(&self, subscription: &Subscription, delivery: &Delivery) {
        // Replicas each deliver some of a topic's documents: what one of them sent last
        // is not what the subscriber has.
        if self.store.is_shared() {
            return;
        }
        // Taken in the order `enlist` takes them.
        let latest = self.latest_lock();
        let key = (subscription.topic.clone(), subscription.callback.clone());
        // Still the newest delivery: the entity tag of the newest is its own.
        if let Some(newest) = latest
            .get(&key)
            .filter(|newest| *newest.generation.borrow() == delivery.generation)
        {
            self.sent_lock()
                .entry(key.0)
                .or_default()
                .insert(key.1, newest.etag.clone());
        }
    }

    /// One delivery to the subscription ended; the entry goes with the last one, so that
    /// an older delivery still waiting to retry learns it was superseded even after the
    /// newest one ended.
    fn finish(&self, topic: &Topic, callback: &Callback) {
        let mut latest = self.latest_lock();
        let key = (topic.clone(), callback.clone());
        if let Some(entry) = latest.get_mut(&key) {
            entry.open -= 1;
            if entry.open == 0 {
                latest.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replica_delivers_lapsed_claims_on_what_it_shows_and_drops_those_nobody_will() {
        // The same bytes: delivered, and a claim under an earlier change marked done too.
        assert_eq!(
            lapsed("\"a\" 10", Some("\"a\" 10")),
            Lapsed::Deliver { done: false }
        );
        assert_eq!(
            lapsed("\"a\" 10", Some("\"a\" 20")),
            Lapsed::Deliver { done: true }
        );
        // A later document than the one shown here: another replica's to deliver.
        assert_eq!(lapsed("\"b\" 30", Some("\"a\" 20")), Lapsed::Leave);
        // Superseded, rendered anew (other bytes, same change), without a change to
        // compare, or at a topic this replica does not show: done.
        assert_eq!(lapsed("\"b\" 10", Some("\"a\" 20")), Lapsed::Done);
        assert_eq!(lapsed("\"b\" 20", Some("\"a\" 20")), Lapsed::Done);
        assert_eq!(lapsed("\"b\"", Some("\"a\"")), Lapsed::Done);
        assert_eq!(lapsed("\"b\" 10", None), Lapsed::Done);
    }

    use super::*;

    #[test]
    fn a_start_delivers_what_a_feed_shows_past_its_last_claim_and_nothing_earlier() {
        // Built, written, never claimed: delivered.
        assert!(unclaimed("\"a\" 10", "\"b\" 20"));
        assert!(unclaimed("\"a\"", "\"b\""));
        assert!(unclaimed("\"a\" 10", "\"b\""));
        // The bytes claimed last, re-dated or not: nothing owed.
        assert!(!unclaimed("\"a\" 10", "\"a\" 10"));
        assert!(!unclaimed("\"a\" 10", "\"a\" 20"));
        // Rendered anew at the same change: delivered (another version's bytes).
        assert!(unclaimed("\"a\" 20", "\"b\" 20"));
        // An earlier change than the one another replica claimed since: nothing.
        assert!(!unclaimed("\"b\" 30", "\"a\" 20"));
    }

    #[test]
    fn a_subscription_is_not_sent_the_bytes_it_has_or_awaits() {
        assert_eq!(need(None, None, "a"), Need::Send);
        assert_eq!(need(None, Some("a"), "a"), Need::Has);
        assert_eq!(need(None, Some("b"), "a"), Need::Send);
        assert_eq!(need(Some("a"), None, "a"), Need::OnItsWay);
        assert_eq!(need(Some("a"), Some("b"), "a"), Need::OnItsWay);
        // The feed went from a to b and back: b is on its way, a must follow it.
        assert_eq!(need(Some("b"), Some("a"), "a"), Need::Send);
    }

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(signature(b"Jefe", b"x"), signature(b"Jeff", b"x"));
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=4).map(|a| backoff(base, a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }
}
