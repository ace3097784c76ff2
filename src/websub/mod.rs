//! The built-in WebSub hub (W3C WebSub Recommendation) at `POST /websub`: subscriptions
//! with verification of intent and bounded leases, stored durably; distribution of every
//! changed feed document to its subscribers, signed with their secret, with bounded
//! retries; pings to configured external hubs. Callbacks are only ever made to addresses
//! the configuration permits (see [`callback`]).

pub mod callback;
mod deliver;
mod hosts;
mod subscribe;
mod subscription;

pub use callback::{AddressPolicy, CallbackClient, CallbackError, address_key, is_public};
pub use deliver::signature;
pub use subscribe::{BadRequest, HubRequest, Intent, Mode, RequestRules};
pub use subscription::{Callback, Secret, Subscription, Topic};

use crate::config::{Settings, WebSub};
use crate::publication::{FeedChange, Publication};
use crate::storage::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, post};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

/// Most delivery requests in flight at once.
const MAX_CONCURRENT_DELIVERIES: usize = 64;
/// Most delivery requests in flight at once to hosts whose last delivery failed (see
/// [`hosts::FailingHosts`]), apart from [`MAX_CONCURRENT_DELIVERIES`]: hosts that hang
/// hold up the others for one request's time at most.
const MAX_CONCURRENT_DELIVERIES_TO_FAILING_HOSTS: usize = 16;
/// Most pings of external hubs in flight at once, apart from the deliveries: an external
/// hub that is slow or hangs delays no subscriber's delivery.
const MAX_CONCURRENT_PINGS: usize = 8;
/// Most pings waiting or in flight; past it a ping is dropped (pings are best effort: an
/// external hub that misses one still polls the feed), so that an external hub that hangs
/// while feeds change fast does not have them pile up in memory.
const MAX_QUEUED_PINGS: usize = 4096;
/// Most delivery requests in flight at once to one callback host (any port): subscribers
/// behind one slow or hanging host take no more of the shared slots than this.
const MAX_DELIVERIES_PER_HOST: usize = 4;
/// Most verifications of intent pending at once; more requests are answered 503.
const MAX_PENDING_VERIFICATIONS: usize = 256;
/// Most verifications of intent pending at once for callbacks of one host (any port): a
/// host that answers them slowly on purpose takes no more of the shared ones than this.
const MAX_PENDING_VERIFICATIONS_PER_HOST: usize = 16;
/// How often subscriptions whose lease ended are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Largest `POST /websub` body accepted.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebSubError {
    /// The HTTP client (TLS set-up included) could not be built.
    #[error("cannot build the HTTP client for callbacks")]
    Client(#[from] reqwest::Error),
    /// `site.base_url` cannot be joined with `websub` or `feeds/`.
    #[error("cannot derive the hub's URLs from site.base_url")]
    Url(#[from] url::ParseError),
}

/// Handle to the hub: its endpoint and its counters. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// Runs the hub's background work until shut down; returned by [`Hub::start`].
pub struct HubTasks {
    inner: Arc<Inner>,
    changes: broadcast::Receiver<FeedChange>,
}

struct Inner {
    store: Arc<dyn Store>,
    publication: Publication,
    settings: WebSub,
    /// How long a request's body may take to arrive whole once its head has (the head's
    /// own time, `[limits] header_timeout_seconds`): a body sent a byte at a time would
    /// otherwise hold its connection, and a server stopping, for as long as it goes on.
    body_deadline: std::time::Duration,
    client: CallbackClient,
    ping_client: reqwest::Client,
    /// This hub's URL (`{base_url}websub`), advertised with `rel="hub"`.
    hub_url: Url,
    /// `{base_url}feeds/`: topic URLs are this plus a feed path.
    feeds_base: Url,
    deliveries: Semaphore,
    /// The slots of deliveries to hosts whose last delivery failed.
    deliveries_to_failing: Semaphore,
    failing_hosts: hosts::FailingHosts,
    pings: Semaphore,
    /// A permit for each ping waiting or in flight.
    queued_pings: Arc<Semaphore>,
    verifications: Arc<Semaphore>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    stats: Stats,
    /// The newest delivery started per subscription, and how many of its deliveries have
    /// not ended: older ones stop retrying, even once the newest has ended.
    latest: Mutex<HashMap<(Topic, Callback), Latest>>,
    /// On a store of its own, per topic, the entity tag of the document each subscriber got
    /// from the last delivery this process started for it, once that delivery succeeded:
    /// the same bytes are not sent to it again while nothing newer is on its way (the
    /// feed's change at start and the delivery a stopped run left are the same document).
    /// Pruned to the topic's active subscriptions at each of its changes.
    sent: Mutex<HashMap<Topic, HashMap<Callback, String>>>,
    generations: AtomicU64,
    /// Delivery slots per callback host.
    delivery_hosts: hosts::HostShares,
    /// Verifications pending per callback host.
    verifying_hosts: hosts::HostShares,
    /// (Un)subscription requests in the order they came, per subscription: a verification
    /// that ends after a later request's was recorded is not recorded (the last intent wins).
    intents: tokio::sync::Mutex<HashMap<(Topic, Callback), Intents>>,
    requests: AtomicU64,
}

/// The newest delivery of one subscription's documents.
struct Latest {
    /// The newest delivery's generation: the older deliveries wait on it, and end as soon
    /// as it moves past theirs, whatever they wait for (a backoff, the lane, a slot).
    generation: watch::Sender<u64>,
    /// The entity tag of the newest document given to the subscription.
    etag: String,
    /// Deliveries to the subscription not ended yet, older ones included.
    open: usize,
    /// Held through each attempt: one request at a time to a subscription, so that a newer
    /// document is sent only once an older one's request has ended, and arrives last.
    lane: Arc<tokio::sync::Mutex<()>>,
}

/// One subscription's (un)subscription requests being verified.
#[derive(Default)]
struct Intents {
    /// Requests not yet verified or refused.
    pending: usize,
    /// The order number of the latest request recorded.
    recorded: u64,
}

#[derive(Default)]
struct Stats {
    deliveries_ok: AtomicU64,
    deliveries_failed: AtomicU64,
    deliveries_superseded: AtomicU64,
    deliveries_unsubscribed: AtomicU64,
    deliveries_in_flight: AtomicU64,
    verifications_ok: AtomicU64,
    verifications_failed: AtomicU64,
}

impl Stats {
    /// Counts one ended delivery or verification in `count`, and in `metric` as `result`.
    fn count(count: &AtomicU64, metric: &'static str, result: &'static str) {
        count.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(metric, "result" => result).increment(1);
    }
}

impl Hub {
    /// Builds the hub and subscribes it to the publication's changes (none is missed from
    /// now on); the returned tasks must be run for anything to be delivered.
    pub fn start(
        store: Arc<dyn Store>,
        settings: &Settings,
        publication: Publication,
    ) -> Result<(Self, HubTasks), WebSubError> {
        let base = &settings.site.base_url;
        let inner = Arc::new(Inner {
            store,
            settings: settings.websub.clone(),
            body_deadline: settings.limits.header_timeout,
            client: CallbackClient::new(settings.websub.allowed_callback_networks.clone())?,
            ping_client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(callback::REQUEST_TIMEOUT)
                .build()?,
            // The same URL the feeds advertise with rel="hub".
            hub_url: Url::parse(&settings.site.hub_url())?,
            feeds_base: base.join("feeds/")?,
            deliveries: Semaphore::new(MAX_CONCURRENT_DELIVERIES),
            deliveries_to_failing: Semaphore::new(MAX_CONCURRENT_DELIVERIES_TO_FAILING_HOSTS),
            failing_hosts: hosts::FailingHosts::default(),
            pings: Semaphore::new(MAX_CONCURRENT_PINGS),
            queued_pings: Arc::new(Semaphore::new(MAX_QUEUED_PINGS)),
            verifications: Arc::new(Semaphore::new(MAX_PENDING_VERIFICATIONS)),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            stats: Stats::default(),
            latest: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(0),
            delivery_hosts: hosts::HostShares::new(MAX_DELIVERIES_PER_HOST),
            verifying_hosts: hosts::HostShares::new(MAX_PENDING_VERIFICATIONS_PER_HOST),
            intents: tokio::sync::Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            publication,
        });
        let changes = inner.publication.subscribe();
        Ok((
            Self {
                inner: inner.clone(),
            },
            HubTasks { inner, changes },
        ))
    }

    /// The hub's URL, `{base_url}websub`.
    pub fn hub_url(&self) -> &Url {
        &self.inner.hub_url
    }

    /// The `POST /websub` endpoint, ready to mount on any router.
    pub fn endpoint<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        post(subscribe::handle)
            .with_state(self.clone())
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
    }

    /// Deliveries the subscriber acknowledged with 2xx.
    pub fn deliveries_ok(&self) -> u64 {
        self.inner.stats.deliveries_ok.load(Ordering::SeqCst)
    }

    /// Deliveries given up on: every attempt failed, the callback was refused, or the
    /// subscriber answered 410 Gone (which also ends its subscription).
    pub fn deliveries_failed(&self) -> u64 {
        self.inner.stats.deliveries_failed.load(Ordering::SeqCst)
    }

    /// Deliveries ended unsent because a newer document of the topic was on its way to
    /// the same subscriber, or the feed showed other bytes by the time of a retry.
    pub fn deliveries_superseded(&self) -> u64 {
        self.inner
            .stats
            .deliveries_superseded
            .load(Ordering::SeqCst)
    }

    /// Deliveries dropped unsent because their subscription ended (unsubscribed, or its
    /// lease over) while they waited.
    pub fn deliveries_unsubscribed(&self) -> u64 {
        self.inner
            .stats
            .deliveries_unsubscribed
            .load(Ordering::SeqCst)
    }

    /// Deliveries started and not finished yet (retries included).
    pub fn deliveries_in_flight(&self) -> u64 {
        self.inner.stats.deliveries_in_flight.load(Ordering::SeqCst)
    }

    /// Callback hosts whose last delivery failed: their deliveries share a smaller pool
    /// of slots until one succeeds.
    pub fn failing_hosts(&self) -> usize {
        self.inner.failing_hosts.count()
    }

    /// Verifications of intent the subscriber confirmed (and the hub recorded).
    pub fn verifications_ok(&self) -> u64 {
        self.inner.stats.verifications_ok.load(Ordering::SeqCst)
    }

    /// Verifications of intent that failed: refused address, error, wrong or no challenge.
    pub fn verifications_failed(&self) -> u64 {
        self.inner.stats.verifications_failed.load(Ordering::SeqCst)
    }
}

impl HubTasks {
    /// Distributes feed changes and removes expired leases until `shutdown` turns true,
    /// then records the deliveries of the changes announced by then (the service tells it
    /// once the feeds have written their last changes: the next start delivers what this
    /// run could not), stops every verification and delivery in progress and waits for
    /// them.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let inner = self.inner;
        let draining = CancellationToken::new();
        let distributing = tokio::spawn(deliver::distribute(
            inner.clone(),
            self.changes,
            draining.clone(),
        ));
        inner.tasks.spawn(sweep_expired(inner.clone()));
        inner.tasks.spawn(deliver::take_over_lapsed(inner.clone()));
        // A dropped sender means the service is going away too.
        let _ = shutdown.wait_for(|stop| *stop).await;
        // The deliveries of the changes written at the stop are recorded (the next start
        // makes those it finds unmade), for `AT_EXIT` at most: a database out of reach
        // makes each wait for a connection.
        draining.cancel();
        let mut distributing = distributing;
        match tokio::time::timeout(AT_EXIT, &mut distributing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the WebSub distribution task failed"),
            Err(_) => {
                distributing.abort();
                let _ = distributing.await;
                tracing::warn!(
                    "WebSub deliveries of the last changes left unrecorded after {} s",
                    AT_EXIT.as_secs()
                );
            }
        }
        // Every task stops at its next step, before the store closes.
        inner.cancel.cancel();
        inner.tasks.close();
        if tokio::time::timeout(AT_EXIT, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "WebSub tasks still running {} s after the stop",
                AT_EXIT.as_secs()
            );
        }
    }
}

/// How long the hub's tasks may take to finish at shutdown, each step.
const AT_EXIT: Duration = Duration::from_secs(10);

/// Removes subscriptions whose lease ended (they already get no deliveries).
async fn sweep_expired(inner: Arc<Inner>) {
    loop {
        match inner.store.delete_expired_subscriptions(Utc::now()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired WebSub subscriptions removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove expired WebSub subscriptions"),
        }
        tokio::select! {
            () = inner.cancel.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
    }
}
