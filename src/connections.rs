//! Bounds on client connections, shared by both listeners: a cap on how many are open at
//! once, and a watchdog that closes a connection whose peer stops sending or reading.

use crate::locks::lock;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// At most so many connections open at once on one listener, and, when asked, at most
/// so many of them from one IP address.
#[derive(Debug, Clone)]
pub struct Slots {
    all: Arc<Semaphore>,
    /// The cap `all` was made with.
    max: usize,
    per_peer: Option<(usize, Peers)>,
    /// When the cap evicts: which connection gives way, and the open connections it may be,
    /// oldest first (with some already closed or past eviction, dropped as they are met).
    evicting: Option<(Evicting, Open)>,
    /// The `listener` label of the refusals and evictions the cap decides, when counted.
    listener: Option<&'static str>,
}

/// Open connections, oldest first.
type Open = Arc<Mutex<VecDeque<Weak<Standing>>>>;

/// Which connection gives its place to a new one over the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evicting {
    /// The oldest that has not proven itself ([`Standing::prove`]).
    Unproven,
    /// The one waiting longest for its next request ([`Standing::idle`]).
    LongestIdle,
}

/// Open connections by IP address.
type Peers = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The `idle_since` of a connection whose place the cap took for a newer one.
const GIVEN_WAY: u64 = u64::MAX;

/// What [`Standing::idle`] times are counted from.
static EPOCH: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);

/// One open connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    standing: Arc<Standing>,
    /// Whether the cap may take its place for a newer connection.
    evictable: bool,
    /// Its peer's count, when one is kept.
    peer: Option<(Peers, IpAddr)>,
}

impl Slot {
    /// What the connection holding the slot has shown of itself, for its cap.
    pub fn standing(&self) -> &Arc<Standing> {
        &self.standing
    }

    /// Completes once the cap has taken the slot's place for a newer connection (a TLS
    /// handshake in progress is given up then).
    pub fn evicted(&self) -> impl Future<Output = ()> + Send + 'static {
        let standing = self.standing.clone();
        async move { standing.evicted().await }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(lock(&self.standing.permit).take());
        if let Some((peers, ip)) = &self.peer {
            let mut open = lock(peers);
            if let Some(count) = open.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

/// What a connection has shown of itself, under a cap that evicts
/// ([`Slots::evicting_unproven`], [`Slots::evicting_idle`]): what the cap's rule asks of it
/// ([`Rule`]), and whether the cap took its place for a newer connection.
#[derive(Debug, Default)]
pub struct Standing {
    rule: Rule,
    evicted: AtomicBool,
    /// The connection's task, waiting on its socket: woken when evicted.
    waker: Mutex<Option<Waker>>,
    /// Its place under the cap, until it closes or is evicted.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Its address, as its peer's share counts it.
    peer: Option<IpAddr>,
    /// Its answers ready to send that its protocol has not taken yet ([`Standing::answer`]).
    answers: Mutex<Answers>,
}

/// The answers a connection has ready, waiting for its protocol to take them: an HTTP/2
/// stream waits while its peer's flow-control window is shut.
#[derive(Debug, Default)]
struct Answers {
    /// Each waiting answer's number, and when it began to wait or was last taken from.
    /// Each answer has its own clock: answers that move on other streams do not hide one
    /// that never does.
    waiting: Vec<(u64, Instant)>,
    /// The next answer's number.
    next: u64,
}

/// One answer ready to send, waiting until dropped ([`Standing::answer`]).
#[derive(Debug)]
pub struct AnswerWaiting {
    standing: Arc<Standing>,
    number: u64,
}

impl AnswerWaiting {
    /// Part of the answer was taken; the rest waits, timed from now.
    pub fn taken(&self) {
        let mut answers = lock(&self.standing.answers);
        if let Some(entry) = answers.waiting.iter_mut().find(|(n, _)| *n == self.number) {
            entry.1 = Instant::now();
        }
    }
}

impl Drop for AnswerWaiting {
    fn drop(&mut self) {
        let mut answers = lock(&self.standing.answers);
        if let Some(at) = answers.waiting.iter().position(|(n, _)| *n == self.number) {
            answers.waiting.swap_remove(at);
        }
    }
}

/// What the cap's rule ([`Evicting`]) learns of a connection.
#[derive(Debug, Default)]
enum Rule {
    /// Under a cap that does not evict: nothing.
    #[default]
    Kept,
    /// [`Evicting::Unproven`]: whether it made an authenticated call.
    Proof(Proof),
    /// [`Evicting::LongestIdle`]: microseconds from [`EPOCH`] to when it began to wait for
    /// its next request, plus one; 0 while a request is under way; [`GIVEN_WAY`] once its
    /// place went to a newer connection.
    Waiting(AtomicU64),
}

/// What a connection has proven of itself under [`Evicting::Unproven`].
#[derive(Debug, Default)]
struct Proof {
    proven: AtomicBool,
    /// Calls whose caller is being authenticated ([`ConnectionInfo::proving`]).
    proving: AtomicUsize,
    /// A call on it was refused authentication: calls being authenticated keep its place
    /// no more (else calls with made-up tokens, one after another, would keep it for good).
    refused: AtomicBool,
}

impl Standing {
    /// The connection has made an authenticated call: under a cap that evicts the
    /// unproven, it keeps its place from now on.
    pub fn prove(&self) {
        if let Rule::Proof(proof) = &self.rule {
            proof.proven.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the connection has made an authenticated call (under a cap that evicts the
    /// unproven).
    pub fn is_proven(&self) -> bool {
        matches!(&self.rule, Rule::Proof(proof) if proof.proven.load(Ordering::Relaxed))
    }

    /// Whether a call's caller is being authenticated on a connection none of whose calls
    /// was refused: it keeps its place meanwhile.
    fn is_proving(&self) -> bool {
        matches!(&self.rule, Rule::Proof(proof)
            if proof.proving.load(Ordering::Acquire) > 0 && !proof.refused.load(Ordering::Acquire))
    }

    /// When the connection began to wait for its next request, as [`Rule::Waiting`] holds
    /// it; `None` under the other rules.
    fn waiting(&self) -> Option<&AtomicU64> {
        match &self.rule {
            Rule::Waiting(since) => Some(since),
            _ => None,
        }
    }

    /// Since when the connection has waited for its next request, under [`Rule::Waiting`];
    /// `None` while a request is under way (or under another rule).
    fn waiting_since(&self) -> Option<Instant> {
        let since = self.waiting()?.load(Ordering::Acquire);
        (since != 0 && since != GIVEN_WAY)
            .then(|| Instant::from_std(*EPOCH + Duration::from_micros(since - 1)))
    }

    /// The connection waits for its next request from now on: under a cap that evicts the
    /// longest idle, it may give its place to a new connection.
    pub fn idle(&self) {
        self.idle_after(Duration::ZERO);
    }

    /// The connection will wait for its next request `delay` from now, and is counted so
    /// meanwhile: over the cap, it gives way only after every connection waiting before
    /// then (a TLS handshake in progress, which has no request to send yet).
    pub fn idle_after(&self, delay: Duration) {
        let Some(waiting) = self.waiting() else {
            return;
        };
        let since = u64::try_from((EPOCH.elapsed() + delay).as_micros())
            .map_or(GIVEN_WAY - 1, |t| t.saturating_add(1).min(GIVEN_WAY - 1));
        // Not over the mark of a place given away.
        let _ = waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            (held != GIVEN_WAY).then_some(since)
        });
    }

    /// A request is under way: the connection keeps its place until it waits again. False
    /// when the place was given to a newer connection before this request began: the
    /// connection is closing, and must not answer.
    pub fn busy(&self) -> bool {
        self.waiting().is_none_or(|waiting| {
            waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held != GIVEN_WAY).then_some(0)
                })
                .is_ok()
        })
    }

    /// An answer is ready to send and waits until the returned guard is dropped, when its
    /// protocol takes it. When an answer has waited for the send timeout with nothing of it
    /// taken, a [`Watched`] connection is closed ([`Stall::Send`]): a peer that keeps an
    /// HTTP/2 stream's window shut, pinging or asking for other things to look alive, would
    /// otherwise keep that request under way, and its place, for good (nginx bounds that
    /// wait by `send_timeout` too). An answer's body of several frames is taken frame by
    /// frame ([`AnswerWaiting::taken`]).
    pub fn answer(self: &Arc<Self>) -> AnswerWaiting {
        let mut answers = lock(&self.answers);
        let number = answers.next;
        answers.next += 1;
        answers.waiting.push((number, Instant::now()));
        AnswerWaiting {
            standing: self.clone(),
            number,
        }
    }

    /// Since when the answer that has waited longest with nothing taken has waited; `None`
    /// when none waits.
    fn answers_waiting_since(&self) -> Option<Instant> {
        lock(&self.answers)
            .waiting
            .iter()
            .map(|&(_, since)| since)
            .min()
    }

    /// Completes once the cap has taken the connection's place for a newer one.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            if self.evicted_or_wake(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Whether the cap took the connection's place for a newer one.
    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Marks the connection evicted and wakes its task, which then closes it.
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    /// Whether the connection was evicted; if not yet, `waker` is woken when it is.
    fn evicted_or_wake(&self, waker: &Waker) -> bool {
        {
            let mut held = lock(&self.waker);
            if !held.as_ref().is_some_and(|held| held.will_wake(waker)) {
                *held = Some(waker.clone());
            }
        }
        // Read after the waker is in place: an eviction either finds it or is seen here.
        self.is_evicted()
    }
}

impl Slots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            all: Arc::new(Semaphore::new(max)),
            max,
            per_peer: None,
            evicting: None,
            listener: None,
        }
    }

    /// Counts the connections the cap refuses (`feedpub_connections_refused_total`) and
    /// evicts (`feedpub_connections_evicted_total`) with this `listener` label, where it
    /// decides.
    pub fn counted_as(mut self, listener: &'static str) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Counts a connection closed at once, as over the cap (one the caller cannot place,
    /// such as one without a peer address).
    pub fn refuse(&self) {
        if let Some(listener) = self.listener {
            metrics::counter!("feedpub_connections_refused_total", "listener" => listener)
                .increment(1);
        }
    }

    /// `slot`, or the refusal counted.
    fn counted(&self, slot: Option<Slot>) -> Option<Slot> {
        if slot.is_none() {
            self.refuse();
        }
        slot
    }

    /// Room for `max` connections, at most `per_peer` of them from one IP address (none are
    /// counted when that is all of them).
    pub fn per_peer(max: usize, per_peer: usize) -> Self {
        Self {
            per_peer: (per_peer < max).then(|| (per_peer, Arc::default())),
            ..Self::new(max)
        }
    }

    /// When every place is taken, a new connection takes the place of the oldest open one
    /// that has not proven itself ([`Standing::prove`]), which is closed; when its address
    /// has its whole share, the place of its address's oldest such connection. Connections
    /// that make no authenticated call, however many addresses open them, cannot keep out
    /// the callers that do, even those that share an address with them (behind a NAT or a
    /// load balancer). Connections that have proven themselves keep their places.
    pub fn evicting_unproven(mut self) -> Self {
        self.evicting = Some((Evicting::Unproven, Arc::default()));
        self
    }

    /// When every place is taken, a new connection takes the place of the open one that
    /// has waited longest for its next request ([`Standing::idle`]; a new connection waits
    /// for its first until it sends a byte), which is closed (as nginx reuses idle
    /// connections when it runs out): connections held open between requests, or opened
    /// and left silent, cannot keep new clients out. Connections under way (a request being
    /// read or answered) keep their places; when all are, the newcomer is refused.
    pub fn evicting_idle(mut self) -> Self {
        self.evicting = Some((Evicting::LongestIdle, Arc::default()));
        self
    }

    /// A place for one more connection, unless all are taken (and none can be evicted): the
    /// caller then closes the connection at once rather than keep it waiting (its peer sees
    /// the close and may retry, and nothing queues up inside the server).
    pub fn try_take(&self) -> Option<Slot> {
        let slot = self.place().map(|permit| self.slot(permit, None));
        self.counted(slot)
    }

    /// [`Slots::try_take`] for a connection from `ip`, unless its address has as many
    /// open as it may (and none of them can be evicted). An IPv6 address counts with the
    /// rest of its /64, which one host commonly holds whole (an IPv4 address written as
    /// IPv6 counts as itself).
    pub fn try_take_from(&self, ip: IpAddr) -> Option<Slot> {
        let Some((most, peers)) = &self.per_peer else {
            return self.try_take();
        };
        let ip = match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
            v4 => v4,
        };
        let mut open = lock(peers);
        let permit = if open.get(&ip).is_some_and(|count| count >= most) {
            // At its share: only in place of one of its own.
            self.evict(Some(ip))
        } else {
            self.place()
        };
        let slot = permit.map(|permit| {
            // Counted only once it has a place: a refused address leaves nothing behind.
            *open.entry(ip).or_default() += 1;
            self.slot(permit, Some((peers.clone(), ip)))
        });
        drop(open);
        self.counted(slot)
    }

    /// A free place, or the place of the oldest unproven connection, evicted for it.
    fn place(&self) -> Option<OwnedSemaphorePermit> {
        match self.all.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => self.evict(None),
        }
    }

    /// The place of the connection that gives way ([`Evicting`]; from `peer`, when given),
    /// which is evicted; `None` when there is none or the cap does not evict.
    fn evict(&self, peer: Option<IpAddr>) -> Option<OwnedSemaphorePermit> {
        let (evicting, open) = self.evicting.as_ref()?;
        let mut open = lock(open);
        let of_peer = |standing: &Standing| peer.is_none_or(|peer| standing.peer == Some(peer));
        loop {
            let at = match evicting {
                Evicting::Unproven => {
                    let mut at = 0;
                    loop {
                        let standing = open.get(at)?.upgrade().filter(|s| !s.is_proven());
                        match standing {
                            // Closed, or proven for good.
                            None => drop(open.remove(at)),
                            // Not one whose caller is being authenticated, nor another
                            // address's when over the share.
                            Some(standing) if of_peer(&standing) && !standing.is_proving() => {
                                break at;
                            }
                            Some(_) => at += 1,
                        }
                    }
                }
                Evicting::LongestIdle => {
                    open.retain(|o| o.strong_count() > 0);
                    // Each read once: one that turns busy meanwhile is not taken for idle.
                    let idle_since = |at: usize| {
                        open[at]
                            .upgrade()
                            .filter(|s| of_peer(s))
                            .and_then(|s| s.waiting().map(|since| since.load(Ordering::Relaxed)))
                            .unwrap_or(0)
                    };
                    let (since, at) = (0..open.len())
                        .filter_map(|at| Some((idle_since(at), at)).filter(|(since, _)| *since > 0))
                        .min()?;
                    // Taken only if still idle since then: one that turns busy meanwhile
                    // learns from `busy` that it lost its place, or keeps it.
                    let taken = open[at].upgrade().is_some_and(|s| {
                        s.waiting().is_some_and(|waiting| {
                            waiting
                                .compare_exchange(
                                    since,
                                    GIVEN_WAY,
                                    Ordering::AcqRel,
                                    Ordering::Relaxed,
                                )
                                .is_ok()
                        })
                    });
                    if !taken {
                        continue;
                    }
                    at
                }
            };
            let Some(standing) = open.remove(at).and_then(|o| o.upgrade()) else {
                continue;
            };
            // None: closing already, its place on its way back.
            if let Some(permit) = lock(&standing.permit).take() {
                standing.evict();
                if let Some(listener) = self.listener {
                    metrics::counter!("feedpub_connections_evicted_total", "listener" => listener)
                        .increment(1);
                }
                return Some(permit);
            }
        }
    }

    /// The slot holding `permit`, counted among the connections that may give way when the
    /// cap evicts.
    fn slot(&self, permit: OwnedSemaphorePermit, peer: Option<(Peers, IpAddr)>) -> Slot {
        let rule = match &self.evicting {
            None => Rule::Kept,
            Some((Evicting::Unproven, _)) => Rule::Proof(Proof::default()),
            Some((Evicting::LongestIdle, _)) => Rule::Waiting(AtomicU64::new(0)),
        };
        let standing = Arc::new(Standing {
            rule,
            permit: Mutex::new(Some(permit)),
            peer: peer.as_ref().map(|(_, ip)| *ip),
            ..Standing::default()
        });
        // A connection that has sent nothing yet waits for its first request.
        standing.idle();
        if let Some((_, open)) = &self.evicting {
            let mut open = lock(open);
            // Connections that closed (or proved themselves) while the cap had room are
            // dropped from the queue before it holds more than twice the cap.
            if open.len() >= 2 * self.max {
                open.retain(|o| o.upgrade().is_some_and(|s| !s.is_proven()));
            }
            open.push_back(Arc::downgrade(&standing));
        }
        Slot {
            standing,
            evictable: self.evicting.is_some(),
            peer,
        }
    }
}

/// Open files feedpub may hold besides its client connections: the database's files and
/// connections, listeners, feeds being written, WebSub deliveries, with room to spare (256),
/// and the documents' files kept open for responses to be sent from (shared by every
/// connection that sends them).
const FILES_BESIDE_CONNECTIONS: u64 = 256 + crate::publication::MAX_DOCUMENT_FILES as u64;

/// Open files the connection caps may need: each connection's socket (a TLS handshake in
/// progress holds its connection's place) and the files beside them.
pub fn files_needed(max_http_connections: usize, max_grpc_connections: usize) -> u64 {
    let http = u64::try_from(max_http_connections).unwrap_or(u64::MAX);
    let grpc = u64::try_from(max_grpc_connections).unwrap_or(u64::MAX);
    http.saturating_add(grpc)
        .saturating_add(FILES_BESIDE_CONNECTIONS)
}

/// What to do with the open-file limit: `soft` and `hard` as the process has them (`None`:
/// unlimited), `needed` as [`files_needed`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimitPlan {
    /// The soft limit to set, when it should rise.
    pub raise_to: Option<u64>,
    /// The soft limit the process will run with.
    pub resulting: Option<u64>,
}

impl FileLimitPlan {
    /// The soft limit goes up to the hard one (a soft limit of 1,024 is many systems'
    /// default, and below what the default caps need). An unlimited hard limit is not
    /// taken as such (Linux refuses an unlimited soft limit on open files): the soft limit
    /// then rises to what is needed.
    pub fn new(soft: Option<u64>, hard: Option<u64>, needed: u64) -> Self {
        let target = hard.unwrap_or(needed);
        let raise_to = soft.filter(|&soft| soft < target).map(|_| target);
        Self {
            raise_to,
            resulting: raise_to.or(soft),
        }
    }

    /// True when the process would run with fewer open files than the caps may need.
    pub fn short_of(&self, needed: u64) -> bool {
        self.resulting.is_some_and(|files| files < needed)
    }
}

/// Raises the soft limit on open files as [`FileLimitPlan`] says, and warns when even the
/// hard limit leaves the connection caps short: past it, accepting a connection fails
/// (EMFILE) before the cap refuses it, and so can opening the database or a feed.
#[cfg(unix)]
pub fn raise_open_file_limit(limits: &crate::config::Limits) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = files_needed(limits.max_http_connections, limits.max_grpc_connections);
    let now = getrlimit(Resource::Nofile);
    let mut plan = FileLimitPlan::new(now.current, now.maximum, needed);
    if let Some(raise_to) = plan.raise_to {
        let raised = Rlimit {
            current: Some(raise_to),
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(from = now.current, to = raise_to, "open-file limit raised"),
            Err(error) => {
                plan.resulting = now.current;
                tracing::warn!(%error, from = now.current, to = raise_to, "cannot raise the open-file limit");
            }
        }
    }
    if plan.short_of(needed) {
        tracing::warn!(
            limit = plan.resulting,
            needed,
            "the open-file limit is below what max_http_connections and max_grpc_connections \
             may need: raise the hard limit (LimitNOFILE= under systemd, ulimit -Hn) or lower the caps"
        );
    }
}

#[cfg(not(unix))]
pub fn raise_open_file_limit(_limits: &crate::config::Limits) {}

/// When a [`Watched`] connection is closed for want of progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    /// The peer must have sent this many bytes within this time of the connection's start
    /// (the HTTP/2 connection preface, say).
    pub start: Option<(usize, Duration)>,
    /// Nothing moved in either direction for this long while the server waited to read;
    /// under a cap that evicts the longest idle, for this long since the connection began
    /// to wait for its next request, whatever the peer sent meanwhile (HTTP/2 pings keep no
    /// connection open, as in nginx).
    pub idle: Option<Duration>,
    /// Nothing moved for this long while the server waited to write: the peer stopped
    /// reading. Or an answer was ready and nothing of it was taken for this long
    /// ([`Standing::answer`]): the peer kept its flow-control window shut.
    pub send: Option<Duration>,
    /// Closing, after shutting its sending side: read and drop what the peer still sends
    /// until it closes its own, for at most this long. Closed with bytes unread, a socket
    /// answers them with a reset, which can make the peer's system discard the end of a
    /// response before the peer reads it (RFC 9112 §9.6, nginx's `lingering_close`).
    pub linger: Option<Duration>,
}

/// How long a connection the HTTP port ends may take to close its own side ([`Watch`]).
pub const LINGER: Duration = Duration::from_secs(5);

/// A connection that fails its next read or write with [`io::ErrorKind::TimedOut`] once
/// its peer makes no progress as [`Watch`] says, and holds its [`Slot`] while open.
///
/// One timer per connection, re-armed only when it fires early or must fire earlier:
/// progress itself costs a clock read, not a timer.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: Watch,
    started: Instant,
    /// Bytes read so far, counted up to the `start` requirement only.
    read: usize,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
    on_timeout: fn(Stall),
    /// Why it was closed, once it was: reported to `on_timeout` once.
    closed: Option<Stall>,
    slot: Option<Slot>,
    /// Until when it lingers, once its sending side is shut ([`Watch::linger`]).
    lingering: Option<Instant>,
}

/// Counts a connection of `listener` (`grpc`, `http`) closed because its peer stalled, in
/// `feedpub_connection_timeouts_total`.
pub fn count_closed(listener: &'static str, stall: Stall) {
    metrics::counter!(
        "feedpub_connection_timeouts_total",
        "listener" => listener,
        "reason" => stall.label()
    )
    .increment(1);
}

/// Why a [`Watched`] connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The first bytes (a request head, the HTTP/2 preface) did not arrive in time.
    Header,
    /// Nothing read (nor written) for the idle timeout.
    Idle,
    /// Nothing written for the send timeout.
    Send,
    /// Over the cap, a newer connection took its place ([`Slots::evicting_unproven`],
    /// [`Slots::evicting_idle`]).
    Evicted,
}

impl Stall {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Idle => "idle",
            Self::Send => "send",
            Self::Evicted => "evicted",
        }
    }
}

impl<S> Watched<S> {
    /// Watches `inner`, which holds `slot` until dropped; `on_timeout` learns why it was
    /// closed when its peer stalled (for metrics).
    pub fn new(inner: S, watch: Watch, slot: Option<Slot>, on_timeout: fn(Stall)) -> Self {
        let now = Instant::now();
        Self {
            inner,
            watch,
            started: now,
            read: 0,
            last_progress: now,
            // Armed on the first wait; a far deadline until then.
            timer: Box::pin(tokio::time::sleep_until(now + Duration::from_secs(86_400))),
            on_timeout,
            closed: None,
            slot,
            lingering: None,
        }
    }

    /// The watched connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn progressed(&mut self, n: usize) {
        if n > 0 {
            self.last_progress = Instant::now();
        }
    }

    /// The earliest deadline that applies while waiting to read (`reading`) or to write,
    /// with its reason.
    fn deadline(&self, reading: bool) -> Option<(Instant, Stall)> {
        let start = self
            .watch
            .start
            .filter(|&(bytes, _)| self.read < bytes)
            .map(|(_, within)| (self.started + within, Stall::Header));
        let standing = self.slot.as_ref().map(|slot| &*slot.standing);
        let stalled = if reading {
            let waiting = standing.and_then(Standing::waiting_since);
            let from = waiting.unwrap_or(self.last_progress);
            self.watch.idle.map(|t| (from + t, Stall::Idle))
        } else {
            self.watch
                .send
                .map(|t| (self.last_progress + t, Stall::Send))
        };
        // Answers the peer does not let the server send, whatever else it sends meanwhile.
        // Checked when the connection next waits (a ping re-polls it; a silent peer meets
        // the idle timeout first).
        // Without a send timeout (the gRPC port) the lock is not taken at all.
        let answers = self.watch.send.and_then(|t| {
            let since = standing?.answers_waiting_since()?;
            Some((since + t, Stall::Send))
        });
        [start, stalled, answers]
            .into_iter()
            .flatten()
            .min_by_key(|&(at, _)| at)
    }

    /// Called when the inner connection is not ready: an error once the deadline passed
    /// or the connection was evicted, else `Pending` with the timer armed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<io::Error> {
        if let Some(stall) = self.closed {
            return Poll::Ready(closed_for(stall));
        }
        if self
            .slot
            .as_ref()
            .is_some_and(|slot| slot.evictable && slot.standing.evicted_or_wake(cx.waker()))
        {
            return Poll::Ready(self.close(Stall::Evicted));
        }
        let Some((at, stall)) = self.deadline(reading) else {
            return Poll::Pending;
        };
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(self.close(stall))
    }

    /// The error that closes the connection for `stall`, reported to `on_timeout` the
    /// first time unless it is an eviction (counted where the cap decides it,
    /// [`Slots::counted_as`]).
    fn close(&mut self, stall: Stall) -> io::Error {
        if self.closed.is_none() {
            self.closed = Some(stall);
            if stall != Stall::Evicted {
                (self.on_timeout)(stall);
            }
        }
        closed_for(stall)
    }
}

/// The error a [`Watched`] connection closed for `stall` fails with.
fn closed_for(stall: Stall) -> io::Error {
    match stall {
        Stall::Evicted => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed to make room for a newer connection",
        ),
        _ => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("peer made no progress ({})", stall.label()),
        ),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if self.watch.start.is_some_and(|(bytes, _)| self.read < bytes) {
                    self.read += n;
                }
                // Bytes read are not a request under way (an HTTP/2 ping, a TLS record):
                // those who serve the requests say when one is (`Standing::busy`).
                self.progressed(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_deadline(cx, true).map(Err),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.progressed(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_deadline(cx, false).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                self.progressed(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_deadline(cx, false).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.poll_deadline(cx, false).map(Err),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.lingering.is_none() {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Pending => return self.poll_deadline(cx, false).map(Err),
                Poll::Ready(Ok(())) => {}
                done => return done,
            }
            let Some(linger) = self.watch.linger else {
                return Poll::Ready(Ok(()));
            };
            // Nothing more to answer: the place may go to a newer connection meanwhile.
            if let Some(slot) = &self.slot {
                slot.standing.idle();
            }
            self.lingering = Some(Instant::now() + linger);
        }
        self.poll_linger(cx).map(Ok)
    }
}

impl<S: AsyncRead + Unpin> Watched<S> {
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let until = self.lingering.unwrap_or_else(Instant::now);
        let standing = self.slot.as_ref().filter(|slot| slot.evictable);
        poll_linger(
            &mut self.inner,
            standing.map(|slot| &*slot.standing),
            until,
            self.timer.as_mut(),
            cx,
        )
    }
}

/// How long a listener pauses after an error accepting that would repeat at once.
pub const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Whether an error accepting a connection concerns that client only: the next accept
/// may succeed at once. Others (too many open files, say) repeat until something changes.
/// Linux also passes on the network errors pending on the new socket, which accept(2)
/// says to treat as a retry.
pub fn concerns_one_client(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) || error.raw_os_error().is_some_and(pending_network_error)
}

/// The network errors Linux's accept(2) passes on from the new socket.
#[cfg(target_os = "linux")]
fn pending_network_error(code: i32) -> bool {
    [
        libc::ENETDOWN,
        libc::EPROTO,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::ENONET,
        libc::EHOSTUNREACH,
        libc::EOPNOTSUPP,
        libc::ENETUNREACH,
    ]
    .contains(&code)
}

#[cfg(not(target_os = "linux"))]
fn pending_network_error(_code: i32) -> bool {
    false
}

/// Closes the sending side of `stream`, then lingers ([`poll_linger`]) for up to
/// [`LINGER`]: a socket closed with bytes unread answers them with a reset, which can make
/// the peer's system discard what was sent last (a response's end, a TLS alert).
pub async fn linger(stream: &mut tokio::net::TcpStream, standing: Option<&Standing>) {
    use tokio::io::AsyncWriteExt;
    if stream.shutdown().await.is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut timer = std::pin::pin!(tokio::time::sleep_until(until));
    std::future::poll_fn(|cx| poll_linger(stream, standing, until, timer.as_mut(), cx)).await;
}

/// Lingering on a connection whose sending side is shut ([`Watch::linger`]), for both of
/// the HTTP port's paths: reads and drops what the peer still sends, until it closes its
/// side, `until` passes (on `timer`) or the cap takes the place of `standing` for a newer
/// connection.
pub fn poll_linger<S: AsyncRead + Unpin>(
    inner: &mut S,
    standing: Option<&Standing>,
    until: Instant,
    mut timer: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut unread = [0; 4096];
    loop {
        let mut buf = ReadBuf::new(&mut unread);
        match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => break,
        }
    }
    if standing.is_some_and(|standing| standing.evicted_or_wake(cx.waker())) {
        return Poll::Ready(());
    }
    if timer.deadline() != until {
        timer.as_mut().reset(until);
    }
    timer.poll(cx)
}

/// What a call learns of its [`Watched`] connection: the inner connection's information,
/// and the connection's [`Standing`] under its cap.
#[derive(Debug, Clone)]
pub struct ConnectionInfo<C> {
    /// The inner connection's information (its addresses).
    pub inner: C,
    standing: Option<Arc<Standing>>,
}

impl<C> ConnectionInfo<C> {
    /// The same connection, its inner information mapped by `f` (to the TCP addresses under
    /// TLS, say).
    pub fn map<D>(&self, f: impl FnOnce(&C) -> D) -> ConnectionInfo<D> {
        ConnectionInfo {
            inner: f(&self.inner),
            standing: self.standing.clone(),
        }
    }

    /// The connection has made an authenticated call: a cap that evicts keeps its place.
    pub fn prove(&self) {
        if let Some(standing) = &self.standing {
            standing.prove();
        }
    }

    /// A call's caller is being authenticated: until the returned guard is dropped, a cap
    /// that evicts keeps the connection's place (a partner's first call on a new channel
    /// waits for the store; its channel must not be taken meanwhile).
    pub fn proving(&self) -> Option<Proving> {
        let standing = self.standing.clone()?;
        let Rule::Proof(proof) = &standing.rule else {
            return None;
        };
        proof.proving.fetch_add(1, Ordering::AcqRel);
        Some(Proving(standing))
    }
}

/// A call being authenticated on a connection ([`ConnectionInfo::proving`]), whose
/// standing follows [`Rule::Proof`].
pub struct Proving(Arc<Standing>);

impl Proving {
    fn proof(&self) -> Option<&Proof> {
        match &self.0.rule {
            Rule::Proof(proof) => Some(proof),
            _ => None,
        }
    }

    /// The call's caller was refused: calls being authenticated on the connection keep
    /// its place no more.
    pub fn refused(self) {
        if let Some(proof) = self.proof() {
            proof.refused.store(true, Ordering::Release);
        }
    }
}

impl Drop for Proving {
    fn drop(&mut self) {
        if let Some(proof) = self.proof() {
            proof.proving.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Watched<S> {
    type ConnectInfo = ConnectionInfo<S::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            inner: self.inner.connect_info(),
            standing: self.slot.as_ref().map(|slot| slot.standing.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_soft_file_limit_rises_to_the_hard_one() {
        let plan = FileLimitPlan::new(Some(1024), Some(524_288), 2_560);
        assert_eq!(plan.raise_to, Some(524_288));
        assert!(!plan.short_of(2_560));
        // Already there: nothing to do.
        let plan = FileLimitPlan::new(Some(524_288), Some(524_288), 2_560);
        assert_eq!(plan.raise_to, None);
        assert_eq!(plan.resulting, Some(524_288));
    }

    #[test]
    fn an_unlimited_hard_limit_raises_the_soft_one_to_what_is_needed() {
        let plan = FileLimitPlan::new(Some(1024), None, 2_560);
        assert_eq!(plan.raise_to, Some(2_560));
        assert!(!plan.short_of(2_560));
        // Unlimited both: nothing to do, nothing short.
        let plan = FileLimitPlan::new(None, None, 2_560);
        assert_eq!(plan.raise_to, None);
        assert!(!plan.short_of(2_560));
    }

    #[test]
    fn a_hard_limit_below_the_caps_is_short() {
        let plan = FileLimitPlan::new(Some(256), Some(512), 2_560);
        assert_eq!(plan.raise_to, Some(512));
        assert!(plan.short_of(2_560));
        assert!(!plan.short_of(512));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn accept_errors_of_one_client_are_told_from_those_that_repeat() {
        for code in [libc::ECONNABORTED, libc::EPROTO, libc::ENETUNREACH] {
            assert!(
                concerns_one_client(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                !concerns_one_client(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn the_default_caps_need_more_than_1024_files() {
        // 1,024 HTTP connections, 256 gRPC, 256 beside, and the documents' files.
        assert_eq!(files_needed(1024, 256), 1024 + 256 + 256 + 512);
        assert!(
            files_needed(1024, 256) > 1024,
            "the usual soft limit is short"
        );
        assert_eq!(files_needed(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let _b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none());
        drop(a);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn one_peer_takes_at_most_its_share() {
        let slots = Slots::per_peer(3, 2);
        let (one, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let a = slots.try_take_from(one).expect("first of one");
        // The same address written as IPv6 is the same peer.
        let one_too: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _b = slots.try_take_from(one_too).expect("second of one");
        assert!(slots.try_take_from(one).is_none(), "one's share is taken");
        let c = slots
            .try_take_from(other)
            .expect("another peer still gets in");
        assert!(slots.try_take_from(other).is_none(), "every place is taken");
        drop(c);
        // Another address of the same /64 is the same peer.
        let other_too: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _c = slots.try_take_from(other_too).expect("other's second");
        assert!(
            slots.try_take_from(other).is_none(),
            "other's share is taken"
        );
        drop(_c);
        assert!(
            slots.try_take_from(one).is_none(),
            "one's share is still taken"
        );
        drop(a);
        let _again = slots
            .try_take_from(one)
            .expect("a place of one's given back");
        let _d = slots.try_take_from(other).expect("the last place");
        // Refused for the cap as a whole: no count is kept for it.
        let third: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(slots.try_take_from(third).is_none());
        let (most, peers) = slots.per_peer.as_ref().unwrap();
        assert_eq!(*most, 2);
        let open = peers.lock().unwrap();
        assert_eq!(open.get(&third), None);
        assert_eq!(open.get(&one), Some(&2));
        assert_eq!(open.len(), 2, "{open:?}");
    }

    #[test]
    fn unproven_connections_give_way_to_newer_ones_and_proven_ones_keep_their_places() {
        let slots = Slots::new(3).evicting_unproven();
        let a = slots.try_take().expect("a");
        let b = slots.try_take().expect("b");
        let c = slots.try_take().expect("c");
        b.standing.prove();
        let d = slots.try_take().expect("d, in a's place");
        assert!(a.standing.is_evicted());
        assert!(!b.standing.is_evicted() && !c.standing.is_evicted());
        let e = slots.try_take().expect("e, in c's place (b is proven)");
        assert!(c.standing.is_evicted() && !b.standing.is_evicted());
        e.standing.prove();
        let f = slots.try_take().expect("f, in d's place");
        assert!(d.standing.is_evicted());
        f.standing.prove();
        assert!(slots.try_take().is_none(), "every place is proven");
        assert!(!b.standing.is_evicted() && !e.standing.is_evicted());
        // An evicted connection still open holds nothing: closing it frees no place.
        drop((a, c, d));
        assert!(slots.try_take().is_none());
        drop(e);
        assert!(
            slots.try_take().is_some(),
            "a proven connection's place, when it closes"
        );
        // Without eviction, a full cap refuses.
        let plain = Slots::new(1);
        let _only = plain.try_take().expect("only");
        assert!(plain.try_take().is_none());
    }

    /// A connection whose caller is being authenticated keeps its place meanwhile, and is
    /// the oldest unproven again if the caller is refused.
    #[test]
    fn a_connection_keeps_its_place_while_its_caller_is_authenticated() {
        let slots = Slots::new(2).evicting_unproven();
        let a = slots.try_take().expect("a");
        let b = slots.try_take().expect("b");
        let info = |slot: &Slot| ConnectionInfo {
            inner: (),
            standing: Some(slot.standing.clone()),
        };
        let proving = info(&a).proving();
        let c = slots.try_take().expect("c, in b's place");
        assert!(b.standing.is_evicted() && !a.standing.is_evicted());
        drop(proving);
        let d = slots
            .try_take()
            .expect("d, in a's place: refused, it proved nothing");
        assert!(a.standing.is_evicted() && !c.standing.is_evicted());
        // One of its calls refused, a connection is not kept by the next being
        // authenticated, nor by any still being.
        let still = info(&c).proving();
        info(&c).proving().expect("c's").refused();
        let _again = info(&c).proving();
        let _e = slots.try_take().expect("e, in c's place");
        assert!(c.standing.is_evicted() && !d.standing.is_evicted());
        drop(still);
    }

    #[test]
    fn a_peer_at_its_share_takes_the_place_of_its_own_oldest_unproven_connection() {
        let slots = Slots::per_peer(4, 2).evicting_unproven();
        let (one, other): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        let other_1 = slots.try_take_from(other).expect("other's first");
        let one_1 = slots.try_take_from(one).expect("one's first");
        let one_2 = slots.try_take_from(one).expect("one's second");
        let one_3 = slots
            .try_take_from(one)
            .expect("one's third, in its first's place");
        assert!(one_1.standing.is_evicted(), "one's oldest gave way");
        assert!(
            !other_1.standing.is_evicted(),
            "not the older connection of another"
        );
        one_2.standing.prove();
        one_3.standing.prove();
        assert!(
            slots.try_take_from(one).is_none(),
            "one's share is all proven"
        );
        assert!(!one_2.standing.is_evicted() && !one_3.standing.is_evicted());
        // The evicted connection's count goes when it closes.
        drop(one_1);
        let (_, peers) = slots.per_peer.as_ref().unwrap();
        assert_eq!(lock(peers).get(&one), Some(&2));
        drop(one_2);
        let _one_4 = slots
            .try_take_from(one)
            .expect("a place of one's given back");
    }

    #[test]
    fn a_peer_at_its_share_takes_the_place_of_its_own_longest_idle_connection() {
        let slots = Slots::per_peer(4, 2).evicting_idle();
        let (one, other): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        let take = |ip: IpAddr| {
            // Each waits for its first request from when it was taken.
            std::thread::sleep(Duration::from_millis(2));
            slots.try_take_from(ip)
        };
        let other_1 = take(other).expect("other's first, idle longest");
        let one_1 = take(one).expect("one's first");
        let one_2 = take(one).expect("one's second");
        let one_3 = take(one).expect("one's third, in its first's place");
        assert!(one_1.standing.is_evicted(), "one's longest idle gave way");
        assert!(!other_1.standing.is_evicted(), "not another's, idle longer");
        assert!(!one_2.standing.is_evicted());
        drop(one_1);
        one_2.standing.busy();
        one_3.standing.busy();
        assert!(
            take(one).is_none(),
            "one's share is all under way, though a place is free"
        );
        let _other_2 = take(other).expect("the free place");
    }

    #[test]
    fn the_queue_of_unproven_connections_stays_near_the_cap() {
        let slots = Slots::new(4).evicting_unproven();
        let _kept = slots.try_take().expect("one held throughout");
        for _ in 0..1_000 {
            let slot = slots.try_take().expect("room");
            slot.standing.prove();
        }
        let queued = lock(&slots.evicting.as_ref().unwrap().1).len();
        assert!(queued <= 8, "{queued} queued");
    }

    #[test]
    fn over_an_idle_evicting_cap_the_connection_idle_longest_gives_way() {
        let slots = Slots::new(3).evicting_idle();
        let a = slots.try_take().expect("a");
        let b = slots.try_take().expect("b");
        let c = slots.try_take().expect("c");
        // A new connection waits for its first request: the oldest gives way.
        let fresh = slots.try_take().expect("in a's place");
        assert!(a.standing.is_evicted() && !b.standing.is_evicted());
        drop((a, fresh));
        let a = slots.try_take().expect("a again");
        for slot in [&a, &b, &c] {
            slot.standing.busy();
        }
        assert!(slots.try_take().is_none(), "none waits: refused");
        b.standing.idle();
        std::thread::sleep(Duration::from_millis(2));
        a.standing.idle();
        let d = slots.try_take().expect("d, in b's place: idle longest");
        assert!(b.standing.is_evicted());
        assert!(!a.standing.is_evicted() && !c.standing.is_evicted());
        d.standing.busy();
        // Under way again: it keeps its place.
        a.standing.busy();
        assert!(slots.try_take().is_none());
        c.standing.idle();
        let _e = slots.try_take().expect("e, in c's place");
        assert!(c.standing.is_evicted() && !a.standing.is_evicted());
        assert!(!d.standing.is_evicted());
        // A request that begins on a connection whose place was taken is not answered, and
        // it stays given away however it waits again.
        assert!(!c.standing.busy());
        c.standing.idle();
        assert!(!c.standing.busy());
        assert!(a.standing.busy());
    }

    #[tokio::test]
    async fn an_evicted_connection_fails_its_pending_reads_and_is_no_timeout() {
        static TIMEOUTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let (_client, server) = tokio::io::duplex(64);
        let slots = Slots::new(1).evicting_unproven();
        let slot = slots.try_take().expect("the only place");
        let watch = Watch {
            idle: Some(Duration::from_secs(60)),
            ..Watch::default()
        };
        let mut watched = Watched::new(server, watch, Some(slot), |_| {
            TIMEOUTS.fetch_add(1, Ordering::Relaxed);
        });
        let read = tokio::spawn(async move {
            let mut buf = [0; 8];
            let first = watched.read(&mut buf).await.unwrap_err();
            let again = watched.read(&mut buf).await.unwrap_err();
            (first.kind(), again.kind())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!read.is_finished(), "waiting to read");
        let _newer = slots
            .try_take()
            .expect("the newer connection takes its place");
        let kinds = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("woken by the eviction")
            .unwrap();
        assert_eq!(
            kinds,
            (
                io::ErrorKind::ConnectionAborted,
                io::ErrorKind::ConnectionAborted
            )
        );
        // Evictions are counted by the cap (`Slots::counted_as`), not as timeouts.
        assert_eq!(TIMEOUTS.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_peer_that_sends_too_little_at_the_start_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let watch = Watch {
            start: Some((4, Duration::from_millis(50))),
            ..Watch::default()
        };
        let mut watched = Watched::new(server, watch, None, |_| {});
        let mut client = client;
        client.write_all(b"ab").await.unwrap();
        let mut buf = [0; 8];
        assert_eq!(watched.read(&mut buf).await.unwrap(), 2);
        let error = watched.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn progress_keeps_an_idle_watch_from_firing() {
        let (mut client, server) = tokio::io::duplex(64);
        let watch = Watch {
            idle: Some(Duration::from_secs(2)),
            ..Watch::default()
        };
        let mut watched = Watched::new(server, watch, None, |_| {});
        let mut buf = [0; 8];
        // 3 s in all, longer than the idle timeout, with no gap near it.
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(watched.read(&mut buf).await.unwrap(), 1);
        }
        let error = watched.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn answers_that_wait_too_long_close_the_connection_whatever_the_peer_sends() {
        static SENDS: AtomicUsize = AtomicUsize::new(0);
        let (mut client, server) = tokio::io::duplex(64);
        let slots = Slots::new(1).evicting_idle();
        let slot = slots.try_take().expect("the only place");
        let standing = slot.standing().clone();
        assert!(standing.busy(), "a request under way");
        let watch = Watch {
            idle: Some(Duration::from_secs(60)),
            send: Some(Duration::from_secs(1)),
            ..Watch::default()
        };
        let mut watched = Watched::new(server, watch, Some(slot), |stall| {
            if stall == Stall::Send {
                SENDS.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The peer sends a byte every 100 ms; how its connection then waits to read.
        let mut buf = [0; 8];
        let mut step = async || {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(watched.read(&mut buf).await.unwrap(), 1);
            tokio::time::timeout(Duration::from_millis(20), watched.read(&mut buf))
                .await
                .err()
                .map(|_| ())
                .ok_or(())
        };
        // Past the send timeout, an answer taken bit by bit keeps the connection open, and
        // so does one taken whole.
        let waiting = standing.answer();
        for _ in 0..12 {
            waiting.taken();
            assert_eq!(step().await, Ok(()), "open while the answer moves");
        }
        drop(waiting);
        for _ in 0..12 {
            assert_eq!(step().await, Ok(()), "open with no answer waiting");
        }
        // One nothing of which is taken closes it after the send timeout, though another
        // moves meanwhile.
        let _stuck = standing.answer();
        let moving = standing.answer();
        let mut steps = 0;
        while step().await.is_ok() {
            moving.taken();
            steps += 1;
            assert!(steps < 40, "still open after 4 s");
        }
        assert_eq!(SENDS.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_out_the_write() {
        let (_client, server) = tokio::io::duplex(16);
        let watch = Watch {
            send: Some(Duration::from_millis(50)),
            ..Watch::default()
        };
        let mut watched = Watched::new(server, watch, None, |_| {});
        let error = watched.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
