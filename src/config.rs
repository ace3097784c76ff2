//! Settings: the TOML file (feedpub.toml) < environment (FEEDPUB_*) < command-line flags.

use crate::domain::{FeedScope, FieldLimits, Section, SectionSlug};
use chrono::FixedOffset;
use serde::Deserialize;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The sample configuration, used when no file is given and `./feedpub.toml` does not exist.
pub const EMBEDDED_CONFIG: &str = include_str!("../feedpub.toml");
/// Where the configuration is looked for when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "feedpub.toml";

/// Everything a running feedpub needs to know, after all sources are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the settings came from: a file's path, or the embedded sample.
    pub source: String,
    pub site: Site,
    pub server: Server,
    pub feeds: Feeds,
    pub websub: WebSub,
    pub log: Log,
    pub content: Content,
    pub limits: Limits,
    /// Configured sections, in configuration order.
    pub sections: Vec<Section>,
}

/// The site the feeds belong to.
#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    /// Absolute URL the site is reached at, always ending in `/`.
    pub base_url: Url,
    /// BCP 47 language tag.
    pub language: String,
    pub description: String,
    /// Offset dates are shown in (feeds carry the real offset, e.g. `+0800`).
    pub utc_offset: FixedOffset,
    /// Copyright statement, plain text (RSS `copyright`, Atom `rights`).
    pub rights: String,
    /// Small square image for the feed (Atom `icon`, JSON Feed `favicon`).
    pub icon: Option<Url>,
    /// Wide image for the feed (RSS `image`, Atom `logo`).
    pub logo: Option<Url>,
    /// Large square image readers show beside each item, as an avatar (JSON Feed `icon`).
    pub avatar: Option<Url>,
}

impl Site {
    /// The absolute URL of `path` (relative, e.g. `feeds/all/rss.xml`) on this site.
    pub fn url(&self, path: &str) -> String {
        self.base_url
            .join(path)
            .map(String::from)
            .unwrap_or_else(|_| format!("{}{path}", self.base_url))
    }

    /// The absolute URL of the built-in WebSub hub.
    pub fn hub_url(&self) -> String {
        self.url("websub")
    }
}

/// Addresses and folders of a running server.
#[derive(Debug, Clone)]
pub struct Server {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Holds the SQLite database (when no `database_url` is given).
    pub data_dir: PathBuf,
    /// The PostgreSQL database to use instead of SQLite in `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// Where generated feeds are written.
    pub feeds_dir: PathBuf,
    /// Certificate and key for TLS on both listeners; plain TCP when `None`.
    pub tls: Option<TlsFiles>,
}

/// The URL of a PostgreSQL database (`postgres://user:password@host/database`). Its
/// password is never printed: `Debug` and `redacted` show `***` in its place.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err(
                "the database URL is empty: name a postgres:// database, or give \
                        none for SQLite in the data folder"
                    .to_owned(),
            );
        }
        match Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => {
                Ok(Self(raw.to_owned()))
            }
            Ok(_) => Err(format!(
                "database URL {:?} must be a postgres:// URL (SQLite needs none: it lives in the data folder)",
                Self(raw.to_owned()).redacted()
            )),
            // Not shown: where it does not parse, its password cannot be told apart.
            Err(e) => Err(format!(
                "the database URL is not a valid URL ({e}; not shown, as it may hold a \
                 password): write postgres://user:password@host:port/database, or for a Unix \
                 socket postgres://user@localhost/database?host=/run/postgresql"
            )),
        }
    }

    /// The URL itself, password included, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password, if any, replaced by `***`: the one after the user name,
    /// and the value of a `password` query parameter.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = Url::parse(&self.0) else {
            return "(not a URL)".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let is_password = |key: &str| key.eq_ignore_ascii_case("password");
        if url.query_pairs().any(|(key, _)| is_password(&key)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if is_password(&key) {
                        "***".to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// PEM files of the certificate chain and private key that both listeners present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`[server] tls_cert`).
    pub cert: PathBuf,
    /// Private key, PKCS#8, PKCS#1 or SEC1 (`[server] tls_key`).
    pub key: PathBuf,
}

/// Limits that protect the service from large, many or abusive requests (`[limits]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sizes of article fields; larger ones are refused by name.
    pub fields: FieldLimits,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Calls per second each partner may make on average…
    pub requests_per_second: NonZeroU32,
    /// …and in a burst.
    pub burst: NonZeroU32,
    /// Author and tag feeds each partner may start in an hour (on SQLite, on the one
    /// server; on PostgreSQL, on every replica of the database together), all at once or
    /// spread out: an article whose names would start more is refused.
    pub new_names_per_hour: NonZeroU32,
    /// How long a gRPC call may run before it is cancelled.
    pub request_timeout: Duration,
    /// Most concurrent HTTP/2 streams on one gRPC connection.
    pub max_concurrent_streams: u32,
    /// Most WatchArticles streams one partner may have open on one server: each holds
    /// its own updates, up to some megabytes while its reader is slow.
    pub watch_streams: usize,
    /// An HTTP request head must arrive whole within this time (counted from the
    /// connection's start, or from its first byte on a kept-alive connection), and then
    /// its body; a gRPC
    /// connection must send the HTTP/2 preface within it (over TLS, from the end of its
    /// handshake).
    pub header_timeout: Duration,
    /// An HTTP connection waiting for its next request is closed after this long.
    pub idle_timeout: Duration,
    /// An HTTP response the client reads nothing of (or, over HTTP/2, lets nothing of be
    /// sent) for this long is abandoned and the connection closed.
    pub send_timeout: Duration,
    /// Most HTTP connections open at once. A further one takes the place of the one that
    /// has waited longest for its next request, which is closed, or is closed as soon as
    /// accepted when every one has a request under way.
    pub max_http_connections: usize,
    /// Most of those from one IP address, so that one client cannot take every place
    /// (past it, the same rule among the address's own connections).
    pub max_http_connections_per_peer: usize,
    /// Most gRPC connections open at once. A further one takes the place of the oldest
    /// that has made no authenticated call, which is closed, or is closed as soon as
    /// accepted when every place is held by one that has.
    pub max_grpc_connections: usize,
    /// Most of those from one IP address, so that one client cannot take every place
    /// (past it, the same rule among the address's own connections).
    pub max_grpc_connections_per_peer: usize,
}

/// How feeds are built and cached.
#[derive(Debug, Clone)]
pub struct Feeds {
    /// Most entries in one feed document.
    pub max_items: usize,
    /// `Cache-Control: max-age` of feeds, in seconds, unless a section sets its own.
    pub max_age: u32,
    /// Per-section `max_age`, for sections that set one.
    pub section_max_age: Vec<(SectionSlug, u32)>,
    /// How long a retracted article leaves a tombstone (RFC 6721 `at:deleted-entry`) in
    /// the Atom feeds that showed it (`tombstone_days`, default 7; zero: none).
    pub tombstone_window: chrono::TimeDelta,
    /// How many steps of `nice` below the process the threads that render, compress and
    /// write feeds run (`build_nice`, 0 to 19, default 10; zero: at the process's
    /// priority).
    pub build_nice: i32,
}

impl Feeds {
    /// `Cache-Control: max-age` for the feeds of `scope`, and its newest archive page: a
    /// section's own, or `[feeds] max_age`.
    pub fn max_age_of(&self, scope: &FeedScope) -> u32 {
        let FeedScope::Section(slug) = scope else {
            return self.max_age;
        };
        self.section_max_age
            .iter()
            .find(|(s, _)| s == slug)
            .map_or(self.max_age, |(_, age)| *age)
    }
}

/// The built-in WebSub hub (W3C WebSub), at `POST /websub`.
#[derive(Debug, Clone)]
pub struct WebSub {
    /// Lease granted when a subscriber asks for none, in seconds (default 10 days).
    pub default_lease_seconds: u64,
    /// Longest lease granted, in seconds.
    pub max_lease_seconds: u64,
    /// Callback networks allowed even though they are loopback, private, link-local or
    /// otherwise not public. Empty by default: only public addresses are called back.
    pub allowed_callback_networks: Vec<ipnet::IpNet>,
    /// External hubs to ping (`hub.mode=publish`) when a feed changes.
    pub external_hubs: Vec<Url>,
    /// Delay before the first retry of a failed delivery, in milliseconds; each further
    /// retry waits twice as long (default 1000).
    pub retry_base_ms: u64,
    /// How long a replica's claim on delivering a document lasts unless renewed, in
    /// milliseconds (default 30000): the claimant renews it while it delivers, and when it
    /// dies mid-delivery another replica delivers the document once the claim lapses. Half
    /// of it is also how often the hub looks for such claims (on SQLite, for those a run
    /// left: at start, and again only while one cannot be dropped).
    pub delivery_lease_ms: u64,
    /// Most subscriptions held at once, every callback together (default 100000): past
    /// it, new subscriptions are refused (503); renewals are not.
    pub max_subscriptions: u64,
    /// Most subscriptions held at once by callbacks reached at one address (an IPv4
    /// address, or an IPv6 /64) when verified (default 10000): past it, a new one is
    /// denied after its verification; renewals are not.
    pub max_subscriptions_per_address: u64,
}

/// What partner HTML may contain beyond the built-in news allowlist.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// Hosts whose https pages may be embedded as (sandboxed) iframes, e.g. a video player.
    pub iframe_hosts: Vec<String>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
}

/// Values from the environment or flags that win over the file; `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub feeds_dir: Option<PathBuf>,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
}

impl Overrides {
    /// Data and feeds in `dir` (its `data` and `feeds` folders), and both listeners on free
    /// ports of the loopback interface: a service that shares nothing with any other on the
    /// machine, as tests and benchmarks run them.
    pub fn isolated_in(dir: &Path) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            data_dir: Some(dir.join("data")),
            feeds_dir: Some(dir.join("feeds")),
            grpc_addr: Some(any_port),
            http_addr: Some(any_port),
            database_url: None,
        }
    }
}

/// Why the configuration could not be loaded; the message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    site: FileSite,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    feeds: FileFeeds,
    #[serde(default)]
    websub: FileWebSub,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    content: FileContent,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    sections: Vec<toml::Spanned<FileSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLimits {
    max_message_bytes: NonZeroUsize,
    title_chars: NonZeroUsize,
    summary_chars: NonZeroUsize,
    content_bytes: NonZeroUsize,
    authors: NonZeroUsize,
    tags: NonZeroUsize,
    media: NonZeroUsize,
    requests_per_second: NonZeroU32,
    burst: NonZeroU32,
    new_names_per_hour: NonZeroU32,
    request_timeout_seconds: TimeoutSeconds,
    max_concurrent_streams: NonZeroU32,
    watch_streams: NonZeroUsize,
    header_timeout_seconds: TimeoutSeconds,
    idle_timeout_seconds: TimeoutSeconds,
    send_timeout_seconds: TimeoutSeconds,
    max_http_connections: NonZeroUsize,
    max_http_connections_per_peer: NonZeroUsize,
    max_grpc_connections: NonZeroUsize,
    max_grpc_connections_per_peer: NonZeroUsize,
}

impl Default for FileLimits {
    fn default() -> Self {
        let fields = FieldLimits::default();
        let n = |v: usize| NonZeroUsize::new(v).expect("default limits are not zero");
        Self {
            max_message_bytes: n(4 << 20),
            title_chars: n(fields.title_chars),
            summary_chars: n(fields.summary_chars),
            content_bytes: n(fields.content_bytes),
            authors: n(fields.authors),
            tags: n(fields.tags),
            media: n(fields.media),
            requests_per_second: NonZeroU32::new(50).expect("not zero"),
            burst: NonZeroU32::new(500).expect("not zero"),
            new_names_per_hour: NonZeroU32::new(1_000).expect("not zero"),
            request_timeout_seconds: TimeoutSeconds(30),
            max_concurrent_streams: NonZeroU32::new(100).expect("not zero"),
            watch_streams: n(16),
            header_timeout_seconds: TimeoutSeconds(10),
            idle_timeout_seconds: TimeoutSeconds(60),
            send_timeout_seconds: TimeoutSeconds(30),
            max_http_connections: n(1024),
            max_http_connections_per_peer: n(256),
            max_grpc_connections: n(256),
            max_grpc_connections_per_peer: n(64),
        }
    }
}

impl From<FileLimits> for Limits {
    fn from(file: FileLimits) -> Self {
        Self {
            fields: FieldLimits {
                title_chars: file.title_chars.get(),
                summary_chars: file.summary_chars.get(),
                content_bytes: file.content_bytes.get(),
                authors: file.authors.get(),
                tags: file.tags.get(),
                media: file.media.get(),
            },
            max_message_bytes: file.max_message_bytes.get(),
            requests_per_second: file.requests_per_second,
            burst: file.burst,
            new_names_per_hour: file.new_names_per_hour,
            request_timeout: file.request_timeout_seconds.duration(),
            max_concurrent_streams: file.max_concurrent_streams.get(),
            watch_streams: file.watch_streams.get(),
            header_timeout: file.header_timeout_seconds.duration(),
            idle_timeout: file.idle_timeout_seconds.duration(),
            send_timeout: file.send_timeout_seconds.duration(),
            max_http_connections: file.max_http_connections.get(),
            max_http_connections_per_peer: file.max_http_connections_per_peer.get(),
            max_grpc_connections: file.max_grpc_connections.get(),
            max_grpc_connections_per_peer: file.max_grpc_connections_per_peer.get(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebSub {
    /// Not zero: a subscription would expire as it is verified.
    #[serde(default = "default_lease")]
    default_lease_seconds: NonZeroU64,
    /// Not zero: no subscription could be granted.
    #[serde(default = "max_lease")]
    max_lease_seconds: NonZeroU64,
    #[serde(default)]
    allowed_callback_networks: Vec<CallbackNetwork>,
    #[serde(default)]
    external_hubs: Vec<HubUrl>,
    #[serde(default = "default_retry_base_ms")]
    retry_base_ms: u64,
    #[serde(default = "default_delivery_lease_ms")]
    delivery_lease_ms: DeliveryLeaseMs,
    #[serde(default = "default_max_subscriptions")]
    max_subscriptions: u64,
    #[serde(default = "default_max_subscriptions_per_address")]
    max_subscriptions_per_address: u64,
}

/// How long a delivery claim lasts unless renewed, in ms: at least 300, as it is renewed a
/// third of the way through and a lease shorter than a few renewals is no lease.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct DeliveryLeaseMs(u64);

impl TryFrom<i64> for DeliveryLeaseMs {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        match u64::try_from(raw) {
            Ok(ms) if ms >= 300 => Ok(Self(ms)),
            _ => Err(format!(
                "delivery_lease_ms must be at least 300 (the claim is renewed a third of the way through), not {raw}"
            )),
        }
    }
}

impl Default for FileWebSub {
    fn default() -> Self {
        Self {
            default_lease_seconds: default_lease(),
            max_lease_seconds: max_lease(),
            allowed_callback_networks: Vec::new(),
            external_hubs: Vec::new(),
            retry_base_ms: default_retry_base_ms(),
            delivery_lease_ms: default_delivery_lease_ms(),
            max_subscriptions: default_max_subscriptions(),
            max_subscriptions_per_address: default_max_subscriptions_per_address(),
        }
    }
}

fn default_max_subscriptions() -> u64 {
    100_000
}

fn default_max_subscriptions_per_address() -> u64 {
    10_000
}

fn default_retry_base_ms() -> u64 {
    1000
}

fn default_delivery_lease_ms() -> DeliveryLeaseMs {
    DeliveryLeaseMs(30_000)
}

fn default_lease() -> NonZeroU64 {
    NonZeroU64::new(10 * 24 * 3600).expect("not zero")
}

fn max_lease() -> NonZeroU64 {
    NonZeroU64::new(30 * 24 * 3600).expect("not zero")
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileContent {
    #[serde(default)]
    iframe_hosts: Vec<IframeHost>,
}

/// A host whose pages may be embedded: a name (`www.youtube.com`) or an address, without
/// scheme, port or path, which would match no iframe's host.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct IframeHost(String);

impl TryFrom<String> for IframeHost {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        // As an iframe's URL gives its host: a name in ASCII and lower case, an address
        // written the short way.
        match url::Host::parse(&raw) {
            Ok(host)
                if host.to_string() == raw.to_ascii_lowercase()
                    && !raw.ends_with('.')
                    && raw
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)) =>
            {
                Ok(Self(raw))
            }
            _ => Err(format!(
                "iframe host {raw:?} must be a host name such as \"www.youtube.com\" (in \
                 ASCII: xn-- for other scripts), without scheme, port or path"
            )),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLog {
    #[serde(default)]
    format: LogFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSite {
    title: toml::Spanned<FeedText>,
    base_url: BaseUrl,
    language: Language,
    #[serde(default)]
    description: FeedText,
    #[serde(default)]
    utc_offset: Offset,
    #[serde(default)]
    rights: FeedText,
    icon: Option<ImageUrl>,
    logo: Option<ImageUrl>,
    avatar: Option<ImageUrl>,
}

/// Text the feeds carry (a title, a description, the rights): refused when it holds a
/// character partner copy is cleaned of: a control character other than tab and line
/// breaks (XML cannot carry C0 controls, which would make every RSS, Atom and OPML
/// document unreadable), C1 controls, U+007F and the non-characters (U+FDD0–U+FDEF,
/// U+nFFFE, U+nFFFF).
#[derive(Deserialize, Default)]
#[serde(try_from = "String")]
struct FeedText(String);

impl TryFrom<String> for FeedText {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        match raw.chars().find(|&c| crate::domain::is_forbidden(c)) {
            Some(c) => Err(format!(
                "{raw:?} holds U+{:04X}, which feeds (XML) cannot carry",
                u32::from(c)
            )),
            None => Ok(Self(raw)),
        }
    }
}

/// An absolute http(s) URL of an image.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct ImageUrl(Url);

impl TryFrom<String> for ImageUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        match Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Self(url)),
            _ => Err(format!(
                "image URL {raw:?} must be an absolute http or https URL"
            )),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    grpc_addr: Option<toml::Spanned<SocketAddr>>,
    http_addr: Option<toml::Spanned<SocketAddr>>,
    data_dir: Option<PathBuf>,
    database_url: Option<toml::Spanned<String>>,
    feeds_dir: Option<PathBuf>,
    tls_cert: Option<toml::Spanned<PathBuf>>,
    tls_key: Option<toml::Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFeeds {
    #[serde(default = "default_max_items")]
    max_items: MaxItems,
    #[serde(default = "default_max_age")]
    max_age: u32,
    tombstone_days: Option<TombstoneDays>,
    /// The tombstone window in seconds instead of `tombstone_days` (not both): so that a
    /// window can be seen to end (tests, a rehearsal).
    tombstone_seconds: Option<toml::Spanned<TombstoneSeconds>>,
    #[serde(default = "default_build_nice")]
    build_nice: BuildNice,
}

impl Default for FileFeeds {
    fn default() -> Self {
        Self {
            max_items: default_max_items(),
            max_age: default_max_age(),
            tombstone_days: None,
            tombstone_seconds: None,
            build_nice: default_build_nice(),
        }
    }
}

/// Longest tombstone window: ten years.
const MAX_TOMBSTONE_DAYS: i64 = 3650;

fn default_tombstone_days() -> TombstoneDays {
    TombstoneDays(7)
}

/// The longest `[limits]` timeout: a day. Far beyond any use, and far from the overflow
/// of an `Instant` that a deadline near `u64::MAX` seconds away would cause.
const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// A `[limits]` timeout in seconds: 1 to [`MAX_TIMEOUT_SECONDS`].
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct TimeoutSeconds(u64);

impl TimeoutSeconds {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl TryFrom<i64> for TimeoutSeconds {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        match u64::try_from(raw) {
            Ok(n) if (1..=MAX_TIMEOUT_SECONDS).contains(&n) => Ok(Self(n)),
            _ => Err(format!(
                "a timeout must be between 1 and {MAX_TIMEOUT_SECONDS} seconds, not {raw}"
            )),
        }
    }
}

/// Days a tombstone stays: 0 to 3650.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct TombstoneDays(i64);

impl TryFrom<i64> for TombstoneDays {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        if (0..=MAX_TOMBSTONE_DAYS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!(
                "tombstone_days must be between 0 and {MAX_TOMBSTONE_DAYS}, not {raw}"
            ))
        }
    }
}

/// Seconds a tombstone stays: 0 to ten years.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct TombstoneSeconds(i64);

impl TryFrom<i64> for TombstoneSeconds {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        let max = MAX_TOMBSTONE_DAYS * 24 * 3600;
        if (0..=max).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!(
                "tombstone_seconds must be between 0 and {max}, not {raw}"
            ))
        }
    }
}

fn default_max_age() -> u32 {
    60
}

fn default_build_nice() -> BuildNice {
    BuildNice(10)
}

/// Steps of `nice` below the process for the feed builders: 0 to 19.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct BuildNice(i32);

impl TryFrom<i64> for BuildNice {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        match i32::try_from(raw) {
            Ok(n) if (0..=19).contains(&n) => Ok(Self(n)),
            _ => Err(format!("build_nice must be between 0 and 19, not {raw}")),
        }
    }
}

/// Items in each feed document, and articles on each archive page, unless `[feeds]
/// max_items` says otherwise.
pub const DEFAULT_MAX_ITEMS: usize = 50;

fn default_max_items() -> MaxItems {
    MaxItems(DEFAULT_MAX_ITEMS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    slug: ConfigSlug,
    title: FeedText,
    #[serde(default)]
    description: FeedText,
    /// `Cache-Control: max-age` of this section's feeds, in seconds.
    max_age: Option<u32>,
}

/// A section slug, with errors that name the key.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct ConfigSlug(SectionSlug);

impl TryFrom<String> for ConfigSlug {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        SectionSlug::parse(&raw)
            .map(Self)
            .map_err(|e| format!("slug {raw:?} {e}"))
    }
}

/// An absolute http(s) URL with a host, normalised to end in `/`; `key` names it in errors.
fn folder_url(raw: &str, key: &str) -> Result<Url, String> {
    let mut url = http_url(raw, key)?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An absolute http(s) URL with a host, as given.
fn http_url(raw: &str, key: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{key} must be an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{key} must be an http or https URL with a host"));
    }
    Ok(url)
}

/// The site's public URL (`[site] base_url`).
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct BaseUrl(Url);

impl TryFrom<String> for BaseUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let url = folder_url(&raw, "base_url")?;
        // Every feed id, link and self URL is built from it: anything but a folder would be
        // copied into each of them.
        let extra = if !url.username().is_empty() || url.password().is_some() {
            Some("a user name or password")
        } else if url.query().is_some() {
            Some("a query (?…)")
        } else if url.fragment().is_some() {
            Some("a fragment (#…)")
        } else {
            None
        };
        match extra {
            Some(extra) => Err(format!(
                "base_url must not hold {extra}: every feed id and link is built from it"
            )),
            None => Ok(Self(url)),
        }
    }
}

/// A network callbacks may be in (`[websub] allowed_callback_networks`): `10.0.0.0/8`, or
/// one address alone (`/32` or `/128`).
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct CallbackNetwork(ipnet::IpNet);

impl TryFrom<String> for CallbackNetwork {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse::<ipnet::IpNet>()
            .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Self)
            .map_err(|_| {
                format!(
                    "allowed_callback_networks: {raw:?} is neither a network such as \"10.0.0.0/8\" nor an IP address"
                )
            })
    }
}

/// A hub pinged on every change (`[websub] external_hubs`).
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct HubUrl(Url);

impl TryFrom<String> for HubUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        // Pinged at exactly that URL: a hub's endpoint is not a folder (`…/hub`).
        http_url(&raw, "external_hubs").map(Self)
    }
}

/// A BCP 47 tag in its common shape: `zh-CN`, `en`, `zh-Hans-CN`; in the case BCP 47
/// recommends (`zh-cn` is `zh-CN`), as articles' own are.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Language(String);

impl TryFrom<String> for Language {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        crate::domain::canonical_language_tag(&raw)
            .map(Self)
            .map_err(|e| format!("language {e}"))
    }
}

/// A fixed UTC offset such as `+08:00`.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Offset(FixedOffset);

impl Default for Offset {
    fn default() -> Self {
        Self(FixedOffset::east_opt(0).expect("zero is a valid offset"))
    }
}

impl TryFrom<String> for Offset {
    type Error = String;
    /// `±HH:MM` or `±HHMM`, and nothing after it: chrono's parser ignores what follows
    /// (the seconds of `+08:00:30`, which feeds could not write anyway).
    fn try_from(raw: String) -> Result<Self, String> {
        let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
        let shaped = match raw.as_bytes() {
            [b'+' | b'-', h @ .., b':', m1, m2] => h.len() == 2 && digits(h) && digits(&[*m1, *m2]),
            [b'+' | b'-', hm @ ..] => hm.len() == 4 && digits(hm),
            _ => false,
        };
        shaped
            .then(|| raw.parse::<FixedOffset>().ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| {
                format!(
                    "utc_offset {raw:?} is not an offset such as \"+08:00\" (hours and minutes)"
                )
            })
    }
}

/// Entries per feed: 1 to 1000.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct MaxItems(usize);

impl TryFrom<i64> for MaxItems {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        match usize::try_from(raw) {
            Ok(n) if (1..=1000).contains(&n) => Ok(Self(n)),
            _ => Err(format!("max_items must be between 1 and 1000, not {raw}")),
        }
    }
}

impl Settings {
    /// Loads `path` (or `./feedpub.toml`, or the embedded sample when neither exists) and applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            Some(path) => (path.display().to_string(), read(path)?),
            // Anything by that name is the configuration, even a link to nothing or a file
            // that cannot be read: the sample in its place would run another site.
            None if !matches!(
                std::fs::symlink_metadata(DEFAULT_CONFIG_PATH),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            ) =>
            {
                (
                    DEFAULT_CONFIG_PATH.to_owned(),
                    read(Path::new(DEFAULT_CONFIG_PATH))?,
                )
            }
            None => (
                "the embedded sample configuration".to_owned(),
                EMBEDDED_CONFIG.to_owned(),
            ),
        };
        Self::parse(&origin, &text, overrides)
    }

    /// The embedded sample configuration, run isolated in `dir` ([`Overrides::isolated_in`]).
    pub fn isolated_sample(dir: &Path) -> Result<Self, ConfigError> {
        Self::parse(
            "embedded sample",
            EMBEDDED_CONFIG,
            Overrides::isolated_in(dir),
        )
    }

    /// Parses configuration text; `origin` names it in error messages.
    pub fn parse(origin: &str, text: &str, overrides: Overrides) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        // The line a value of the file was given on.
        let line_of = |span: std::ops::Range<usize>| text[..span.start].matches('\n').count() + 1;

        let mut sections: Vec<Section> = Vec::with_capacity(file.sections.len());
        let mut section_max_age = Vec::new();
        for spanned in file.sections {
            let line = line_of(spanned.span());
            let section = spanned.into_inner();
            let slug = section.slug.0;
            if sections.iter().any(|s| s.slug == slug) {
                return Err(invalid(format!(
                    "line {line}: sections.slug {:?} is configured twice",
                    slug.as_str()
                )));
            }
            // Zero-width spaces and the like make no title a reader sees, as for articles.
            if crate::domain::is_blank(&section.title.0) {
                return Err(invalid(format!(
                    "line {line}: sections.title must not be empty or invisible"
                )));
            }
            if let Some(age) = section.max_age {
                section_max_age.push((slug.clone(), age));
            }
            sections.push(Section {
                slug,
                title: section.title.0,
                description: section.description.0,
            });
        }
        let title_line = line_of(file.site.title.span());
        let site_title = file.site.title.into_inner().0;
        if crate::domain::is_blank(&site_title) {
            return Err(invalid(format!(
                "line {title_line}: site.title must not be empty or invisible"
            )));
        }

        let tls = match (file.server.tls_cert, file.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into_inner(),
                key: key.into_inner(),
            }),
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                return Err(invalid(format!(
                    "line {}: server.tls_cert and server.tls_key must be given together",
                    line_of(one.span())
                )));
            }
        };
        // Named where it was given: the flag or the environment wins over the file.
        let database_url = match overrides.database_url {
            // Empty, it would quietly put SQLite in place of the file's PostgreSQL.
            Some(url) => {
                Some(
                    DatabaseUrl::parse(&url).map_err(|message| ConfigError::Invalid {
                        origin: "--database-url (or FEEDPUB_DATABASE_URL)".to_owned(),
                        message,
                    })?,
                )
            }
            None => file
                .server
                .database_url
                .filter(|url| !url.get_ref().is_empty())
                .map(|url| {
                    DatabaseUrl::parse(url.get_ref()).map_err(|message| {
                        invalid(format!(
                            "line {}: server.database_url: {message}",
                            line_of(url.span())
                        ))
                    })
                })
                .transpose()?,
        };
        // The line of each address, when the file gave the one taken.
        let file_line = |overridden: bool, spanned: &Option<toml::Spanned<SocketAddr>>| {
            (!overridden)
                .then(|| spanned.as_ref().map(|a| line_of(a.span())))
                .flatten()
        };
        let address_lines = (
            file_line(overrides.grpc_addr.is_some(), &file.server.grpc_addr),
            file_line(overrides.http_addr.is_some(), &file.server.http_addr),
        );
        let server = Server {
            grpc_addr: overrides
                .grpc_addr
                .or(file.server.grpc_addr.map(toml::Spanned::into_inner))
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            http_addr: overrides
                .http_addr
                .or(file.server.http_addr.map(toml::Spanned::into_inner))
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: folder(
                overrides
                    .data_dir
                    .or(file.server.data_dir)
                    .unwrap_or_else(|| PathBuf::from("data")),
            ),
            database_url,
            feeds_dir: folder(
                overrides
                    .feeds_dir
                    .or(file.server.feeds_dir)
                    .unwrap_or_else(|| PathBuf::from("feeds")),
            ),
            tls,
        };
        if let Some(port) = shared_port(server.grpc_addr, server.http_addr) {
            let lines = match address_lines {
                (Some(grpc), Some(http)) => format!("lines {grpc} and {http}: "),
                (Some(line), None) | (None, Some(line)) => format!("line {line}: "),
                (None, None) => String::new(),
            };
            return Err(invalid(format!(
                "{lines}server.grpc_addr ({}) and server.http_addr ({}) (or --grpc-addr and \
                 --http-addr, FEEDPUB_GRPC_ADDR and FEEDPUB_HTTP_ADDR) share port {port}: the \
                 gRPC API and the feeds each need a port of their own",
                server.grpc_addr, server.http_addr
            )));
        }
        // The data folder holds nothing when the store is PostgreSQL: any value is taken.
        let uses_data_dir = server.database_url.is_none();
        for (path, key, flag, used) in [
            (
                &server.data_dir,
                "data_dir",
                "--data-dir, FEEDPUB_DATA_DIR",
                uses_data_dir,
            ),
            (
                &server.feeds_dir,
                "feeds_dir",
                "--feeds-dir, FEEDPUB_FEEDS_DIR",
                true,
            ),
        ] {
            if used && path.as_os_str().is_empty() {
                return Err(invalid(format!(
                    "server.{key} (or {flag}) is empty: name a folder"
                )));
            }
        }
        Ok(Settings {
            source: origin.to_owned(),
            site: Site {
                title: site_title,
                base_url: file.site.base_url.0,
                language: file.site.language.0,
                description: file.site.description.0,
                utc_offset: file.site.utc_offset.0,
                rights: file.site.rights.0,
                icon: file.site.icon.map(|u| u.0),
                logo: file.site.logo.map(|u| u.0),
                avatar: file.site.avatar.map(|u| u.0),
            },
            server,
            feeds: Feeds {
                max_items: file.feeds.max_items.0,
                max_age: file.feeds.max_age,
                section_max_age,
                tombstone_window: match (file.feeds.tombstone_days, file.feeds.tombstone_seconds) {
                    (Some(_), Some(seconds)) => {
                        return Err(invalid(format!(
                            "line {}: feeds.tombstone_days and feeds.tombstone_seconds are both \
                             set: set one of them",
                            line_of(seconds.span())
                        )));
                    }
                    (None, Some(seconds)) => chrono::TimeDelta::seconds(seconds.into_inner().0),
                    (days, None) => {
                        chrono::TimeDelta::days(days.unwrap_or_else(default_tombstone_days).0)
                    }
                },
                build_nice: file.feeds.build_nice.0,
            },
            websub: WebSub {
                // The longest lease granted bounds the one given by default too.
                default_lease_seconds: file
                    .websub
                    .default_lease_seconds
                    .min(file.websub.max_lease_seconds)
                    .get(),
                max_lease_seconds: file.websub.max_lease_seconds.get(),
                allowed_callback_networks: file
                    .websub
                    .allowed_callback_networks
                    .into_iter()
                    .map(|n| n.0)
                    .collect(),
                external_hubs: file.websub.external_hubs.into_iter().map(|u| u.0).collect(),
                retry_base_ms: file.websub.retry_base_ms,
                delivery_lease_ms: file.websub.delivery_lease_ms.0,
                max_subscriptions: file.websub.max_subscriptions,
                max_subscriptions_per_address: file.websub.max_subscriptions_per_address,
            },
            log: Log {
                format: file.log.format,
            },
            content: Content {
                iframe_hosts: file.content.iframe_hosts.into_iter().map(|h| h.0).collect(),
            },
            limits: file.limits.into(),
            sections,
        })
    }

    /// The configured section with this slug.
    pub fn section(&self, slug: &SectionSlug) -> Option<&Section> {
        self.sections.iter().find(|s| &s.slug == slug)
    }

    /// What the configuration allows that may not work as its author meant, one line each,
    /// for `serve` to log at start.
    pub fn doubts(&self) -> Vec<String> {
        let mut doubts = Vec::new();
        if self.sections.is_empty() {
            doubts.push(
                "no [[sections]] is configured: every article is refused, and only the feed \
                 of every section is served"
                    .to_owned(),
            );
        }
        if self.limits.fields.content_bytes > 1 << 20 {
            doubts.push(format!(
                "[limits] content_bytes is {}: an answer holding such an article may pass \
                 4 MiB, which gRPC clients refuse by default",
                self.limits.fields.content_bytes
            ));
        }
        for (key, most) in [
            ("max_subscriptions", self.websub.max_subscriptions),
            (
                "max_subscriptions_per_address",
                self.websub.max_subscriptions_per_address,
            ),
        ] {
            if most == 0 {
                doubts.push(format!(
                    "[websub] {key} is 0: every new subscription is refused"
                ));
            }
        }
        if self.websub.retry_base_ms == 0 {
            doubts.push(
                "[websub] retry_base_ms is 0: failed deliveries are tried again without a \
                 pause"
                    .to_owned(),
            );
        }
        doubts
    }
}

/// The configuration file's text; one that is not UTF-8 is refused naming the line and
/// column of its first byte that is not part of a character.
fn read(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| {
        // A link whose target is gone says which target.
        let error = match std::fs::read_link(path) {
            Ok(target) if error.kind() == std::io::ErrorKind::NotFound => std::io::Error::new(
                error.kind(),
                format!("it is a link to {}, which does not exist", target.display()),
            ),
            _ => error,
        };
        ConfigError::Read {
            path: path.to_owned(),
            error,
        }
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = valid
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let column = String::from_utf8_lossy(&valid[start..]).chars().count() + 1;
        ConfigError::Invalid {
            origin: path.display().to_string(),
            message: format!(
                "line {line}, column {column}: not UTF-8 text (save the file as UTF-8)"
            ),
        }
    })
}

/// A folder's path without its `.` components but a leading one (`data/.` is `data`):
/// making a missing folder by the path as given fails on them.
fn folder(path: PathBuf) -> PathBuf {
    path.components().collect()
}

/// The port two listening addresses would both bind, if they would: the same port (other
/// than 0, any free one) on the same address, on one and every address of its family, or
/// on every IPv6 address, which takes IPv4's too (as Linux binds `[::]` by default).
fn shared_port(a: SocketAddr, b: SocketAddr) -> Option<u16> {
    let same_family = a.is_ipv4() == b.is_ipv4();
    let every = |ip: std::net::IpAddr| ip.is_unspecified() && (same_family || ip.is_ipv6());
    let overlap = a.ip() == b.ip() || every(a.ip()) || every(b.ip());
    (a.port() == b.port() && a.port() != 0 && overlap).then_some(a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        Settings::parse("test.toml", text, Overrides::default())
            .unwrap_err()
            .to_string()
    }

    /// A site or section title that a reader would not see (blanks, zero-width spaces, a
    /// Hangul filler) is refused as an empty one is, naming its line, as an article's is.
    #[test]
    fn an_invisible_title_is_refused_as_an_empty_one() {
        let site = |title: &str| {
            format!("[site]\ntitle = \"{title}\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n")
        };
        for title in ["", "  ", "\\u200B\\u200B", "\\u3164", "\\u2800 \\u00AD"] {
            let message = error_of(&site(title));
            assert!(
                message.contains("line 2: site.title must not be empty or invisible"),
                "{title}: {message}"
            );
            let section = format!(
                "{}[[sections]]\nslug = \"politics\"\ntitle = \"{title}\"\n",
                site("日报")
            );
            let message = error_of(&section);
            assert!(
                message.contains("sections.title must not be empty or invisible"),
                "{title}: {message}"
            );
        }
        assert!(Settings::parse("test.toml", &site("\\u200B日报"), Overrides::default()).is_ok());
    }

    /// Text the feeds carry is refused, naming its line and key, when XML cannot carry a
    /// character of it; tabs and line breaks are text.
    #[test]
    fn feed_text_xml_cannot_carry_is_refused_naming_its_key() {
        let site = |extra: &str| {
            format!(
                "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n{extra}"
            )
        };
        let message = error_of(&site("description = \"朔州日报\\u0001各版\"\n"));
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("description"), "{message}");
        assert!(message.contains("U+0001"), "{message}");
        let message = error_of(&site("rights = \"© \\uFFFE\"\n"));
        assert!(
            message.contains("rights") && message.contains("U+FFFE"),
            "{message}"
        );
        let message = error_of(&site("rights = \"© \\u0085\"\n"));
        assert!(
            message.contains("rights") && message.contains("U+0085"),
            "{message}"
        );
        let message =
            error_of("[site]\ntitle = \"t\\b\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n");
        assert!(
            message.contains("title") && message.contains("U+0008"),
            "{message}"
        );
        let message = error_of(&site(
            "[[sections]]\nslug = \"politics\"\ntitle = \"时政\\u0008\"\n",
        ));
        assert!(
            message.contains("title") && message.contains("U+0008"),
            "{message}"
        );
        let kept = Settings::parse(
            "t",
            &site("description = \"甲\\t乙\\n丙\"\n"),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(kept.site.description, "甲\t乙\n丙");
    }

    /// The password of a database URL is never shown, whether after the user name or as a
    /// query parameter; the rest of the URL is.
    #[test]
    fn a_database_url_is_shown_without_its_password_wherever_it_is() {
        for raw in [
            "postgres://u:hunter2@h/db?sslmode=require",
            "postgres://u@h/db?password=hunter2&sslmode=require",
            "postgresql://u@h/db?sslmode=require&PASSWORD=hunter2",
        ] {
            let url = DatabaseUrl::parse(raw).unwrap();
            for shown in [url.redacted(), format!("{url:?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
                assert!(
                    shown.contains("***") && shown.contains("sslmode=require"),
                    "{shown}"
                );
            }
        }
        let refused = error_of(
            "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n[server]\ndatabase_url = \"mysql://u@h/db?password=hunter2\"\n",
        );
        assert!(refused.contains("postgres://"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    /// A bad database URL is named where it was given (the file's line, or the flag and its
    /// variable), and one that does not parse says why, without showing it.
    #[test]
    fn a_bad_database_url_is_named_where_it_was_given_and_says_why() {
        let site = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        let in_file = error_of(&format!(
            "{site}[server]\ndatabase_url = \"mysql://u@h/db\"\n"
        ));
        assert!(
            in_file.contains("test.toml: line 6: server.database_url")
                && in_file.contains("must be a postgres:// URL"),
            "{in_file}"
        );
        let bad_port = error_of(&format!(
            "{site}[server]\ndatabase_url = \"postgres://u:hunter2@h:99999/db\"\n"
        ));
        assert!(
            bad_port.contains("line 6")
                && bad_port.contains("invalid port number")
                && !bad_port.contains("must be a postgres://")
                && !bad_port.contains("hunter2"),
            "{bad_port}"
        );
        let overrides = Overrides {
            database_url: Some("mysql://u@h/db".to_owned()),
            ..Overrides::default()
        };
        let flag = Settings::parse("test.toml", site, overrides)
            .unwrap_err()
            .to_string();
        assert!(
            flag.contains("--database-url (or FEEDPUB_DATABASE_URL)")
                && !flag.contains("test.toml"),
            "{flag}"
        );
        let tls = error_of(&format!("{site}[server]\ntls_key = \"key.pem\"\n"));
        assert!(
            tls.contains("line 6: server.tls_cert and server.tls_key must be given together"),
            "{tls}"
        );
    }

    /// The base URL is a folder: one with a user name or password, a query or a fragment,
    /// which every feed id and link would carry, is refused by name.
    #[test]
    fn a_base_url_with_user_info_a_query_or_a_fragment_is_refused() {
        for (base_url, says) in [
            ("http://user:pw@example.com/news/", "user name or password"),
            ("http://user@example.com/news/", "user name or password"),
            ("http://example.com/news?x=1", "query"),
            ("http://example.com/news/?", "query"),
            ("http://example.com/news#frag", "fragment"),
        ] {
            let refused = error_of(&format!(
                "[site]\ntitle = \"t\"\nbase_url = \"{base_url}\"\nlanguage = \"zh-CN\"\n"
            ));
            assert!(
                refused.contains("base_url must not hold") && refused.contains(says),
                "{base_url}: {refused}"
            );
        }
    }

    /// A callback network is a prefix or one address alone; anything else is named by key.
    #[test]
    fn a_callback_network_may_be_a_bare_address() {
        let networks = |list: &str| {
            Settings::parse(
                "test.toml",
                &format!("{EMBEDDED_CONFIG}\n[websub]\nallowed_callback_networks = {list}\n"),
                Overrides::default(),
            )
            .map(|s| s.websub.allowed_callback_networks)
            .map_err(|e| e.to_string())
        };
        let read = networks(r#"["10.0.0.0/8", "192.168.1.20", "::1"]"#).unwrap();
        let shown: Vec<String> = read.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.20/32", "::1/128"]);
        let refused = networks(r#"["10.0.0.0/33"]"#).unwrap_err();
        assert!(
            refused.contains("allowed_callback_networks: \"10.0.0.0/33\""),
            "{refused}"
        );
    }

    /// An external hub that is not a URL is named as such, not as the site's base URL.
    #[test]
    fn a_bad_external_hub_is_named_by_its_key() {
        for hub in ["notaurl", "ftp://hub.example/"] {
            let refused = error_of(&format!(
                "{EMBEDDED_CONFIG}\n[websub]\nexternal_hubs = [\"{hub}\"]\n"
            ));
            assert!(refused.contains("external_hubs must be"), "{refused}");
            assert!(!refused.contains("base_url"), "{refused}");
        }
        // A hub's endpoint is pinged as given, not taken for a folder.
        let settings = Settings::parse(
            "test.toml",
            &format!(
                "{EMBEDDED_CONFIG}\n[websub]\nexternal_hubs = [\"https://hub.example/hub\"]\n"
            ),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            settings.websub.external_hubs[0].as_str(),
            "https://hub.example/hub"
        );
    }

    #[test]
    fn the_embedded_sample_configuration_loads() {
        let settings = Settings::parse("sample", EMBEDDED_CONFIG, Overrides::default()).unwrap();
        assert_eq!(settings.site.language, "zh-CN");
        assert_eq!(settings.site.utc_offset.local_minus_utc(), 8 * 3600);
        assert_eq!(settings.feeds.max_items, 50);
        assert_eq!(settings.sections.len(), 5);
        assert_eq!(settings.websub.retry_base_ms, 1000);
        assert_eq!(settings.feeds.tombstone_window, chrono::TimeDelta::days(7));
    }

    #[test]
    fn the_sites_language_takes_the_case_bcp_47_recommends() {
        let lower = EMBEDDED_CONFIG.replace("language = \"zh-CN\"", "language = \"zh-hans-cn\"");
        assert_ne!(lower, EMBEDDED_CONFIG);
        let settings = Settings::parse("test.toml", &lower, Overrides::default()).unwrap();
        assert_eq!(settings.site.language, "zh-Hans-CN");
    }

    /// The `[feeds]` settings of a minimal file whose `[feeds]` table holds `lines`, or the
    /// error that file gets.
    fn feeds_with(lines: &str) -> Result<Feeds, String> {
        let text = format!(
            "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n[feeds]\n{lines}\n"
        );
        Settings::parse("t", &text, Overrides::default())
            .map(|settings| settings.feeds)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_tombstone_window_is_read_in_days_or_in_seconds_and_bounded() {
        let window = |lines: &str| feeds_with(lines).unwrap().tombstone_window;
        assert_eq!(window("tombstone_days = 30"), chrono::TimeDelta::days(30));
        assert_eq!(window("tombstone_days = 0"), chrono::TimeDelta::zero());
        assert_eq!(
            window("tombstone_seconds = 2"),
            chrono::TimeDelta::seconds(2)
        );
        // One of them, not both: the other would be silently ignored.
        let both = feeds_with("tombstone_days = 30\ntombstone_seconds = 2").unwrap_err();
        assert!(
            both.contains("t: line 7: feeds.tombstone_days and"),
            "{both}"
        );
        for bad in [
            "tombstone_days = -1",
            "tombstone_days = 3651",
            "tombstone_seconds = -5",
        ] {
            let message = feeds_with(bad).unwrap_err();
            assert!(
                message.contains(bad.split(' ').next().unwrap()),
                "{message}"
            );
        }
    }

    #[test]
    fn the_feed_builders_niceness_defaults_to_ten_and_is_bounded() {
        let nice = |lines: &str| feeds_with(lines).unwrap().build_nice;
        assert_eq!(nice(""), 10);
        assert_eq!(nice("build_nice = 0"), 0);
        assert_eq!(nice("build_nice = 19"), 19);
        for bad in ["build_nice = -1", "build_nice = 20"] {
            let message = feeds_with(bad).unwrap_err();
            assert!(
                message.contains("build_nice must be between 0 and 19"),
                "{message}"
            );
        }
    }

    #[test]
    fn websub_cache_and_log_settings_are_read() {
        let text = format!(
            "{EMBEDDED_CONFIG}\n[websub]\nallowed_callback_networks = [\"127.0.0.0/8\"]\nretry_base_ms = 25\nmax_subscriptions_per_address = 50\n[log]\nformat = \"json\"\n"
        )
        .replace("slug = \"rural\"", "slug = \"rural\"\nmax_age = 300");
        let settings = Settings::parse("t", &text, Overrides::default()).unwrap();
        assert_eq!(settings.websub.allowed_callback_networks.len(), 1);
        assert_eq!(settings.websub.default_lease_seconds, 864_000);
        assert_eq!(settings.websub.retry_base_ms, 25);
        assert_eq!(settings.websub.max_subscriptions_per_address, 50);
        assert_eq!(settings.websub.max_subscriptions, 100_000);
        assert_eq!(settings.log.format, LogFormat::Json);
        let rural = SectionSlug::parse("rural").unwrap();
        let politics = SectionSlug::parse("politics").unwrap();
        assert_eq!(settings.feeds.max_age_of(&FeedScope::Section(rural)), 300);
        assert_eq!(settings.feeds.max_age_of(&FeedScope::Section(politics)), 60);
        assert_eq!(settings.feeds.max_age_of(&FeedScope::All), 60);
        assert_eq!(settings.feeds.max_age_of(&FeedScope::author("刘磊")), 60);
    }

    #[test]
    fn the_optional_sections_documented_in_the_sample_are_valid() {
        let uncommented: String = EMBEDDED_CONFIG
            .lines()
            .filter(|line| !line.starts_with("# #"))
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(uncommented.contains("\n[websub]\n"), "{uncommented}");
        let settings = Settings::parse("sample", &uncommented, Overrides::default()).unwrap();
        assert_eq!(settings.websub.max_lease_seconds, 2_592_000);
        assert_eq!(settings.limits.max_message_bytes, 4 << 20);
        assert_eq!(settings.limits.fields, FieldLimits::default());
        assert!(settings.server.tls.is_some());
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero() {
        let base = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        let defaults = Settings::parse("t", base, Overrides::default())
            .unwrap()
            .limits;
        assert_eq!(defaults.fields, FieldLimits::default());
        assert_eq!(defaults.max_message_bytes, 4 << 20);
        assert_eq!(
            (
                defaults.header_timeout,
                defaults.idle_timeout,
                defaults.send_timeout
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(30)
            )
        );
        assert_eq!(
            (
                defaults.max_http_connections,
                defaults.max_http_connections_per_peer,
                defaults.max_grpc_connections,
                defaults.max_grpc_connections_per_peer
            ),
            (1024, 256, 256, 64)
        );
        let set = Settings::parse(
            "t",
            &format!("{base}[limits]\nmax_http_connections_per_peer = 1024\n"),
            Overrides::default(),
        )
        .unwrap()
        .limits;
        assert_eq!(set.max_http_connections_per_peer, 1024);
        let message = error_of(&format!(
            "{base}[limits]\nmax_http_connections_per_peer = 0\n"
        ));
        assert!(
            message.contains("max_http_connections_per_peer"),
            "{message}"
        );
        let set = Settings::parse(
            "t",
            &format!("{base}[limits]\ntitle_chars = 20\nburst = 3\nrequests_per_second = 1\n"),
            Overrides::default(),
        )
        .unwrap()
        .limits;
        assert_eq!(set.fields.title_chars, 20);
        assert_eq!((set.burst.get(), set.requests_per_second.get()), (3, 1));
        assert_eq!(set.fields.tags, FieldLimits::default().tags);
        let message = error_of(&format!("{base}[limits]\ntags = 0\n"));
        assert!(message.contains("tags"), "{message}");
        let set = Settings::parse(
            "t",
            &format!("{base}[limits]\nauthors = 3\n"),
            Overrides::default(),
        )
        .unwrap()
        .limits;
        assert_eq!((set.fields.authors, set.fields.tags), (3, 100));
        let message = error_of(&format!("{base}[limits]\nauthors = 0\n"));
        assert!(message.contains("authors"), "{message}");
    }

    /// A timeout far in the future would overflow the deadline `Instant` of every
    /// connection (each would panic as it started), and a lease of zero would end every
    /// subscription as it is verified: both are refused at start-up, naming the key.
    #[test]
    fn timeouts_are_at_most_a_day_and_leases_not_zero() {
        let base = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        for key in [
            "request_timeout_seconds",
            "header_timeout_seconds",
            "idle_timeout_seconds",
            "send_timeout_seconds",
        ] {
            let limits = |value: &str| format!("{base}[limits]\n{key} = {value}\n");
            let set = Settings::parse("t", &limits("86400"), Overrides::default())
                .unwrap()
                .limits;
            let kept = match key {
                "request_timeout_seconds" => set.request_timeout,
                "header_timeout_seconds" => set.header_timeout,
                "idle_timeout_seconds" => set.idle_timeout,
                _ => set.send_timeout,
            };
            assert_eq!(kept, Duration::from_secs(86_400), "{key} = 86400 is kept");
            for bad in ["86401", "9223372036854775807", "0", "-1"] {
                let message = error_of(&limits(bad));
                assert!(message.contains(key), "{key} = {bad}: {message}");
                assert!(message.contains("between 1 and 86400"), "{message}");
            }
        }
        let message = error_of(&format!("{base}[websub]\ndefault_lease_seconds = 0\n"));
        assert!(message.contains("default_lease_seconds"), "{message}");
        // Refused by name, never silently changed.
        for (setting, key) in [
            ("max_lease_seconds = 0", "max_lease_seconds"),
            ("delivery_lease_ms = 0", "delivery_lease_ms"),
            ("delivery_lease_ms = 299", "delivery_lease_ms"),
        ] {
            let message = error_of(&format!("{base}[websub]\n{setting}\n"));
            assert!(message.contains(key), "{setting}: {message}");
        }
        // The longest lease granted bounds the default one.
        let file =
            format!("{base}[websub]\ndefault_lease_seconds = 7200\nmax_lease_seconds = 3600\n");
        let settings = Settings::parse("test.toml", &file, Overrides::default()).unwrap();
        assert_eq!(settings.websub.max_lease_seconds, 3600);
        assert_eq!(settings.websub.default_lease_seconds, 3600);
    }

    #[test]
    fn tls_needs_both_a_certificate_and_a_key() {
        let base = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        let both = Settings::parse(
            "t",
            &format!("{base}[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            both.server.tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        let message = error_of(&format!("{base}[server]\ntls_cert = \"c.pem\"\n"));
        assert!(message.contains("tls_key"), "{message}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let overrides = Overrides {
            data_dir: Some("/elsewhere".into()),
            ..Overrides::default()
        };
        let settings = Settings::parse("sample", EMBEDDED_CONFIG, overrides).unwrap();
        assert_eq!(settings.server.data_dir, PathBuf::from("/elsewhere"));
        assert_eq!(settings.server.feeds_dir, PathBuf::from("feeds"));
    }

    #[test]
    fn a_bad_value_is_reported_with_file_line_and_key() {
        let message = error_of(
            "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n\n[[sections]]\nslug = \"Bad Slug\"\ntitle = \"t\"\n",
        );
        assert!(message.contains("test.toml"), "{message}");
        assert!(message.contains("line 7"), "{message}");
        assert!(message.contains("slug"), "{message}");
    }

    /// The gRPC API and the feeds on one port are refused at once, naming both keys, rather
    /// than at start as "address already in use" by the second to bind. Port 0 (any free
    /// one) for both is taken, and so is one port on two different addresses.
    #[test]
    fn the_two_listeners_on_one_port_are_refused_naming_both() {
        let on = |grpc: &str, http: &str| {
            let overrides = Overrides {
                grpc_addr: Some(grpc.parse().unwrap()),
                http_addr: Some(http.parse().unwrap()),
                ..Overrides::default()
            };
            Settings::parse("test.toml", EMBEDDED_CONFIG, overrides)
                .err()
                .map(|e| e.to_string())
        };
        for (grpc, http) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::1]:8080", "[::]:8080"),
            ("[::]:8080", "0.0.0.0:8080"),
            ("127.0.0.1:8080", "[::]:8080"),
        ] {
            let refused = on(grpc, http).unwrap_or_default();
            assert!(
                refused.contains("server.grpc_addr")
                    && refused.contains("server.http_addr")
                    && refused.contains("share port 8080"),
                "{grpc} {http}: {refused}"
            );
        }
        // Given in the file, each named by its line.
        let in_file = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n\
                       [server]\ngrpc_addr = \"127.0.0.1:8080\"\nhttp_addr = \"127.0.0.1:8080\"\n";
        let refused = Settings::parse("test.toml", in_file, Overrides::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused
                .starts_with("invalid configuration in test.toml: lines 6 and 7: server.grpc_addr"),
            "{refused}"
        );
        for (grpc, http) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("127.0.0.1:50051", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "[::1]:8080"),
        ] {
            assert_eq!(on(grpc, http), None, "{grpc} {http}");
        }
    }

    /// A file that is not UTF-8 is refused naming where: in a file of Chinese titles, the
    /// line and the character, not only that the stream was not UTF-8.
    #[test]
    fn a_file_that_is_not_utf8_is_refused_naming_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedpub.toml");
        // GBK, as an editor set to a Chinese locale may save it: 新闻 on line 3.
        let text = [
            &b"[site]\ntitle = \"\xe6\x97\xa5\xe6\x8a\xa5\"\n"[..],
            b"description = \"\xd0\xc2\xce\xc5\"\n",
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let refused = Settings::load(Some(&path), Overrides::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains(path.to_str().unwrap())
                && refused.contains("line 3, column 16: not UTF-8 text"),
            "{refused}"
        );
    }

    #[test]
    fn a_utc_offset_is_taken_in_hours_and_minutes_only() {
        let with = |offset: &str| {
            let text = EMBEDDED_CONFIG.replacen(
                "utc_offset = \"+08:00\"",
                &format!("utc_offset = \"{offset}\""),
                1,
            );
            assert_ne!(text, EMBEDDED_CONFIG);
            Settings::parse("test.toml", &text, Overrides::default())
                .map(|s| s.site.utc_offset.local_minus_utc())
                .map_err(|e| e.to_string())
        };
        assert_eq!(with("+05:45"), Ok(5 * 3600 + 45 * 60));
        assert_eq!(with("-03:30"), Ok(-(3 * 3600 + 30 * 60)));
        assert_eq!(with("+0800"), Ok(8 * 3600));
        // Seconds (which feeds cannot write) and whatever else follows are not dropped.
        for bad in [
            "+08:00:30",
            "+08:00 x",
            "+8:00",
            "+08",
            "+08:60",
            "eight",
            "",
        ] {
            let refused = with(bad).unwrap_err();
            assert!(refused.contains("is not an offset"), "{bad}: {refused}");
        }
    }

    #[test]
    fn empty_folders_are_refused_by_name() {
        let refused = |text: &str, overrides: Overrides| {
            Settings::parse("test.toml", text, overrides)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let empty_feeds = EMBEDDED_CONFIG.replacen("feeds_dir = \"feeds\"", "feeds_dir = \"\"", 1);
        assert_ne!(empty_feeds, EMBEDDED_CONFIG);
        assert!(refused(&empty_feeds, Overrides::default()).contains("server.feeds_dir"));
        let empty_data = Overrides {
            data_dir: Some(PathBuf::new()),
            ..Overrides::default()
        };
        assert!(refused(EMBEDDED_CONFIG, empty_data).contains("--data-dir"));
        // With PostgreSQL the data folder holds nothing: an empty one is taken.
        let on_postgres = Overrides {
            data_dir: Some(PathBuf::new()),
            database_url: Some("postgres://feedpub@db.example/feedpub".to_owned()),
            ..Overrides::default()
        };
        assert_eq!(refused(EMBEDDED_CONFIG, on_postgres), "");
        // A `.` that the folders end with (a shell's `$DIR/.`) is left out.
        let dotted = Overrides {
            data_dir: Some("n1/.".into()),
            feeds_dir: Some("./n2/./".into()),
            ..Overrides::default()
        };
        let server = Settings::parse("test.toml", EMBEDDED_CONFIG, dotted)
            .unwrap()
            .server;
        assert_eq!(server.data_dir, PathBuf::from("n1"));
        assert_eq!(server.feeds_dir, PathBuf::from("./n2"));
        // An empty database URL given over the file's is refused, not taken for SQLite.
        let on_file = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n\
                       [server]\ndatabase_url = \"postgres://feedpub@db.example/feedpub\"\n";
        for empty in ["", " "] {
            let emptied = Overrides {
                database_url: Some(empty.to_owned()),
                ..Overrides::default()
            };
            assert!(refused(on_file, emptied).contains("--database-url (or FEEDPUB_DATABASE_URL)"));
        }
    }

    #[test]
    fn settings_that_may_not_work_as_meant_are_doubted_at_start() {
        let sample = Settings::parse("test.toml", EMBEDDED_CONFIG, Overrides::default());
        assert_eq!(sample.unwrap().doubts(), Vec::<String>::new());
        let doubted = format!(
            "{EMBEDDED_CONFIG}\n[limits]\ncontent_bytes = 8388608\n[websub]\nretry_base_ms = 0\nmax_subscriptions_per_address = 0\n"
        );
        let doubts = Settings::parse("test.toml", &doubted, Overrides::default())
            .unwrap()
            .doubts();
        assert_eq!(doubts.len(), 3, "{doubts:?}");
        assert!(doubts[0].contains("content_bytes is 8388608"), "{doubts:?}");
        assert!(
            doubts[1].contains("max_subscriptions_per_address is 0"),
            "{doubts:?}"
        );
        assert!(doubts[2].contains("retry_base_ms is 0"), "{doubts:?}");
        let base = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        let doubts = Settings::parse("test.toml", base, Overrides::default())
            .unwrap()
            .doubts();
        assert!(doubts[0].starts_with("no [[sections]]"), "{doubts:?}");
    }

    #[test]
    fn iframe_hosts_are_host_names_without_scheme_port_or_path() {
        let with =
            |host: &str| format!("{EMBEDDED_CONFIG}\n[content]\niframe_hosts = [{host:?}]\n");
        for good in [
            "www.youtube.com",
            "player.example",
            "203.0.113.7",
            "[2001:db8::1]",
        ] {
            let settings = Settings::parse("test.toml", &with(good), Overrides::default());
            assert_eq!(settings.unwrap().content.iframe_hosts, [good]);
        }
        for bad in [
            "https://www.youtube.com",
            "www.youtube.com/embed",
            "x.example:443",
            "",
            "*.youtube.com",
            "www.youtube.com.",
            "1.2.3",
            "[2001:db8:0::1]",
            "视频.example",
        ] {
            let message = error_of(&with(bad));
            assert!(message.contains("iframe_hosts"), "{bad}: {message}");
            assert!(
                message.contains("without scheme, port or path"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn reserved_duplicate_and_unknown_keys_are_refused() {
        let base = "[site]\ntitle = \"t\"\nbase_url = \"http://x/\"\nlanguage = \"zh-CN\"\n";
        assert!(
            error_of(&format!(
                "{base}[[sections]]\nslug = \"all\"\ntitle = \"t\"\n"
            ))
            .contains("reserved")
        );
        let twice = format!(
            "{base}[[sections]]\nslug = \"a\"\ntitle = \"t\"\n[[sections]]\nslug = \"a\"\ntitle = \"t\"\n"
        );
        assert!(error_of(&twice).contains("line 8"));
        assert!(error_of(&format!("{base}colour = 1\n")).contains("colour"));
        assert!(
            error_of("[site]\ntitle = \"t\"\nbase_url = \"relative/\"\nlanguage = \"zh-CN\"\n")
                .contains("base_url")
        );
    }
}
