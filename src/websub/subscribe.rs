//! `POST /websub`: subscription requests parsed into intents (400 naming the parameter when
//! one is wrong), answered 202, then verified asynchronously by calling the subscriber back
//! with a random challenge it must echo (WebSub §5.1–5.3).

use super::callback::{AddressPolicy, CallbackClient, address_key, read_limited};
use super::hosts::HostSlot;
use super::subscription::{Callback, Secret, Subscription, Topic};
use super::{Hub, Inner};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

/// The longest lease ever granted, whatever the configuration says: ten years.
const LEASE_CEILING: u64 = 10 * 365 * 24 * 3600;
/// A subscriber's answer to a verification longer than this cannot be the challenge.
const MAX_CHALLENGE_ANSWER: usize = 1024;

/// A request parameter that is missing or wrong; shown as `hub.topic: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct BadRequest {
    /// The parameter at fault, e.g. `hub.callback`.
    pub parameter: &'static str,
    /// What is wrong with it, in a sentence.
    pub reason: String,
}

fn bad(parameter: &'static str, reason: impl Into<String>) -> BadRequest {
    BadRequest {
        parameter,
        reason: reason.into(),
    }
}

/// Whether a subscriber asks to start or to stop receiving a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `hub.mode=subscribe`: start (or renew) deliveries.
    Subscribe,
    /// `hub.mode=unsubscribe`: stop them.
    Unsubscribe,
}

impl Mode {
    /// The `hub.mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
        }
    }
}

/// A well-formed (un)subscription request, to be verified with the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Subscribe or unsubscribe.
    pub mode: Mode,
    /// The feed asked for.
    pub topic: Topic,
    /// The topic URL as the request gave it, which the verification and a denial echo
    /// (WebSub §5.3: "the topic URL given in the corresponding subscription request"),
    /// however this hub writes it.
    pub topic_url: String,
    /// Where verification and deliveries go.
    pub callback: Callback,
    /// The lease granted, in seconds (requested, else the default; capped).
    pub lease_seconds: u64,
    /// Key for `X-Hub-Signature` (subscriptions only).
    pub secret: Option<Secret>,
}

/// What a valid `POST /websub` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubRequest {
    /// Subscribe or unsubscribe, once verified.
    Intent(Intent),
    /// A publisher's ping (`hub.mode=publish`) about one of our feeds: nothing to do, the
    /// hub learns of every change from the publication itself.
    Publish(Topic),
}

/// What a request is checked against.
pub struct RequestRules<'a> {
    /// `{base_url}feeds/`.
    pub feeds_base: &'a Url,
    /// True for feed paths that exist (`politics/atom.xml`).
    pub is_feed: &'a dyn Fn(&str) -> bool,
    /// Lease granted when none is asked for, in seconds.
    pub default_lease_seconds: u64,
    /// Longest lease granted, in seconds.
    pub max_lease_seconds: u64,
    /// Literal callback addresses are refused at once when the policy forbids them.
    pub policy: &'a AddressPolicy,
}

impl HubRequest {
    /// Parses an `application/x-www-form-urlencoded` body. Unknown parameters are ignored
    /// (WebSub §5.1); a `hub.*` parameter given twice is an error.
    pub fn parse(body: &[u8], rules: &RequestRules<'_>) -> Result<Self, BadRequest> {
        let params = parse_form(body)?;
        let text = |name: &'static str| -> Result<Option<&str>, BadRequest> {
            params
                .get(name)
                .map(|v| std::str::from_utf8(v).map_err(|_| bad(name, "must be UTF-8 text")))
                .transpose()
        };
        let required = |name: &'static str| {
            text(name)?
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(name, "is required"))
        };
        let mode = match text("hub.mode")? {
            Some("subscribe") => Mode::Subscribe,
            Some("unsubscribe") => Mode::Unsubscribe,
            Some("publish") => {
                let (name, url) = match text("hub.url")?.filter(|v| !v.is_empty()) {
                    Some(url) => ("hub.url", url),
                    None => (
                        "hub.topic",
                        required("hub.topic").map_err(|_| {
                            bad("hub.url", "is required (the URL of the feed that changed)")
                        })?,
                    ),
                };
                return parse_topic(name, url, rules).map(Self::Publish);
            }
            Some(other) if !other.is_empty() => {
                return Err(bad(
                    "hub.mode",
                    format!("{other:?} is not one of subscribe, unsubscribe, publish"),
                ));
            }
            _ => return Err(bad("hub.mode", "is required (subscribe or unsubscribe)")),
        };
        let callback = Callback::parse(required("hub.callback")?)
            .map_err(|reason| bad("hub.callback", reason))?;
        rules
            .policy
            .check_literal(callback.url())
            .map_err(|e| bad("hub.callback", e.to_string()))?;
        let topic_url = required("hub.topic")?;
        let topic = parse_topic("hub.topic", topic_url, rules)?;
        let topic_url = topic_url.to_owned();
        // A positive decimal integer (WebSub §5.1), however large: the lease granted is
        // capped anyway. Meaningless for an unsubscribe, which ignores it.
        let requested = match mode {
            Mode::Subscribe => text("hub.lease_seconds")?.filter(|v| !v.is_empty()),
            Mode::Unsubscribe => None,
        };
        let lease_seconds = match requested {
            None => rules.default_lease_seconds,
            Some(raw)
                if raw.bytes().all(|b| b.is_ascii_digit()) && raw.bytes().any(|b| b != b'0') =>
            {
                raw.parse::<u64>().unwrap_or(u64::MAX)
            }
            Some(raw) => {
                return Err(bad(
                    "hub.lease_seconds",
                    format!("{raw:?} is not a whole number of seconds from 1"),
                ));
            }
        }
        .min(rules.max_lease_seconds)
        .min(LEASE_CEILING);
        // Sent empty, as some libraries send every field: left out, as the lease is.
        let secret = match (mode, params.get("hub.secret")) {
            (Mode::Subscribe, Some(raw)) if !raw.is_empty() => {
                Some(Secret::new(raw.clone()).map_err(|reason| bad("hub.secret", reason))?)
            }
            _ => None,
        };
        Ok(Self::Intent(Intent {
            mode,
            topic,
            topic_url,
            callback,
            lease_seconds,
            secret,
        }))
    }
}

fn parse_topic(
    parameter: &'static str,
    raw: &str,
    rules: &RequestRules<'_>,
) -> Result<Topic, BadRequest> {
    let refuse = || {
        bad(
            parameter,
            format!(
                "must be the URL of one of this hub's feeds, such as {}all/atom.xml",
                rules.feeds_base
            ),
        )
    };
    let url = Url::parse(raw).map_err(|_| refuse())?;
    let path = url
        .as_str()
        .strip_prefix(rules.feeds_base.as_str())
        .filter(|path| (rules.is_feed)(path))
        .ok_or_else(refuse)?;
    Topic::new(path).map_err(|_| refuse())
}

/// Decodes form pairs into bytes (`+` is a space); keys must be UTF-8.
fn parse_form(body: &[u8]) -> Result<HashMap<String, Vec<u8>>, BadRequest> {
    let decode = |raw: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced).collect()
    };
    let mut params = HashMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let Ok(key) = String::from_utf8(decode(key)) else {
            continue;
        };
        if !key.starts_with("hub.") {
            continue;
        }
        if params.contains_key(&key) {
            let name = static_name(&key);
            return Err(bad(name, "is given more than once"));
        }
        params.insert(key, decode(value));
    }
    Ok(params)
}

/// The `'static` name of a known parameter, for messages (`hub.*` otherwise).
fn static_name(key: &str) -> &'static str {
    const KNOWN: [&str; 7] = [
        "hub.mode",
        "hub.topic",
        "hub.callback",
        "hub.lease_seconds",
        "hub.secret",
        "hub.url",
        "hub.challenge",
    ];
    KNOWN.into_iter().find(|k| *k == key).unwrap_or("hub.*")
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// 503 saying `why`, to retry after `seconds`.
fn unavailable(why: &str, seconds: &'static str) -> Response {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}; retry later\n"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

/// `POST /websub`: 202 and verification for a valid (un)subscription, 202 for a ping,
/// 400 naming the parameter at fault, 415 for a body that is not a form, 408 for one that
/// does not arrive whole in time.
pub(super) async fn handle(State(hub): State<Hub>, request: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    let inner = &hub.inner;
    if !is_form(request.headers()) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the hub.* parameters as application/x-www-form-urlencoded\n".into(),
        );
    }
    let body =
        match tokio::time::timeout(inner.body_deadline, Bytes::from_request(request, &())).await {
            Ok(Ok(body)) => body,
            Ok(Err(refused)) => return refused.into_response(),
            Err(_) => {
                let mut response = plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request's body did not arrive whole within {} s\n",
                        inner.body_deadline.as_secs()
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        };
    let parsed = {
        let publication = inner.publication.clone();
        // A feed found at start and not built yet is a feed already.
        // The feeds' stylesheet is served beside them, but announced to no one.
        let is_feed = move |path: &str| {
            path != crate::render::STYLESHEET_FILE
                && (publication.get(path).is_some() || publication.is_unbuilt_document(path))
        };
        let rules = RequestRules {
            feeds_base: &inner.feeds_base,
            is_feed: &is_feed,
            default_lease_seconds: inner.settings.default_lease_seconds,
            max_lease_seconds: inner.settings.max_lease_seconds,
            policy: inner.client.policy(),
        };
        HubRequest::parse(&body, &rules)
    };
    let intent = match parsed {
        Ok(HubRequest::Intent(intent)) => intent,
        Ok(HubRequest::Publish(_)) => {
            return plain(
                StatusCode::ACCEPTED,
                "noted; this hub distributes every change of its own feeds by itself\n".into(),
            );
        }
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Ok(permit) = inner.verifications.clone().try_acquire_owned() else {
        return unavailable("too many verifications pending", "60");
    };
    // A host answering its verifications slowly holds no more than its share of them.
    let Some(host_slot) = inner.verifying_hosts.try_acquire(&intent.callback) else {
        return unavailable(
            "too many verifications pending for this callback's host",
            "60",
        );
    };
    // Looked at under the permit: the requests that cost a look at the store are bounded
    // like the verifications.
    if intent.mode == Mode::Subscribe
        && let Err(full) = room(inner, &intent, None, Utc::now()).await
    {
        return unavailable(&full, "3600");
    }
    let mode = intent.mode;
    let order = inner.requests.fetch_add(1, Ordering::SeqCst) + 1;
    inner
        .intents
        .lock()
        .await
        .entry((intent.topic.clone(), intent.callback.clone()))
        .or_default()
        .pending += 1;
    inner
        .tasks
        .spawn(verify(inner.clone(), intent, order, (permit, host_slot)));
    plain(
        StatusCode::ACCEPTED,
        format!(
            "accepted; the {} will be verified with the callback\n",
            mode.as_str()
        ),
    )
}

/// Asks the callback to confirm the intent; records the subscription (or its end) only when
/// the callback echoes the challenge with a 2xx. A failed unsubscribe keeps the
/// subscription. `order` numbers the request among all the hub received: when a later
/// request for the same subscription was recorded first (its callback answered sooner), this
/// one is not recorded, so the subscriber's last confirmed intent is the one that holds.
async fn verify(
    inner: Arc<Inner>,
    intent: Intent,
    order: u64,
    _permits: (OwnedSemaphorePermit, HostSlot),
) {
    if inner.cancel.is_cancelled() {
        return;
    }
    let callback = intent.callback.logged();
    let outcome = tokio::select! {
        () = inner.cancel.cancelled() => return,
        outcome = confirm(&inner.client, &intent) => outcome,
    };
    // Held while recording, so that two verified requests are recorded in their order, and
    // two new subscriptions cannot both take the last place left.
    let mut intents = inner.intents.lock().await;
    // One instant for the check and the record: a lease that ends between them makes no
    // renewal of a new subscription.
    let now = Utc::now();
    let key = (intent.topic.clone(), intent.callback.clone());
    let superseded = intents
        .get(&key)
        .is_some_and(|entry| entry.recorded > order);
    // A request a later one superseded is not recorded, nor denied.
    let mut denied = false;
    let outcome = match outcome {
        Ok(address) if intent.mode == Mode::Subscribe && !superseded => {
            match room(&inner, &intent, Some(&address), now).await {
                Ok(()) => Ok(address),
                Err(full) => {
                    denied = true;
                    Err(full)
                }
            }
        }
        outcome => outcome,
    };
    if let Some(entry) = intents.get_mut(&key) {
        entry.pending -= 1;
        if outcome.is_ok() && !superseded {
            entry.recorded = order;
        }
        if entry.pending == 0 {
            intents.remove(&key);
        }
    }
    let address = match outcome {
        Ok(address) => address,
        Err(reason) => {
            drop(intents);
            inner.count_verification(false);
            tracing::info!(%callback, topic = intent.topic.path(), mode = intent.mode.as_str(), %reason,
                "WebSub verification of intent failed");
            if denied {
                deny(&inner, &intent, &reason).await;
            }
            return;
        }
    };
    if superseded {
        inner.count_verification(true);
        tracing::info!(%callback, topic = intent.topic.path(), mode = intent.mode.as_str(),
            "WebSub intent verified after a later request for the same subscription; not recorded");
        return;
    }
    let stored = match intent.mode {
        Mode::Subscribe => {
            let lease = i64::try_from(intent.lease_seconds).unwrap_or(i64::MAX);
            let expire_time = TimeDelta::try_seconds(lease)
                .and_then(|lease| now.checked_add_signed(lease))
                .unwrap_or(now);
            let subscription = Subscription {
                topic: intent.topic.clone(),
                callback: intent.callback,
                secret: intent.secret,
                verify_time: now,
                expire_time,
            };
            inner
                .store
                .save_subscription(subscription, &address, now)
                .await
        }
        Mode::Unsubscribe => inner
            .store
            .delete_subscription(&intent.topic, &intent.callback)
            .await
            .map(drop),
    };
    match stored {
        Ok(()) => {
            inner.count_verification(true);
            tracing::info!(%callback, topic = intent.topic.path(), mode = intent.mode.as_str(),
                lease_seconds = intent.lease_seconds, "WebSub intent verified");
        }
        Err(e) => {
            inner.count_verification(false);
            tracing::error!(%callback, error = %e, "cannot record a verified WebSub intent");
        }
    }
}

impl Inner {
    /// Counts one verification of intent that ended: confirmed, or failed.
    fn count_verification(&self, confirmed: bool) {
        let (count, result) = if confirmed {
            (&self.stats.verifications_ok, "ok")
        } else {
            (&self.stats.verifications_failed, "failed")
        };
        super::Stats::count(count, "feedpub_websub_verifications_total", result);
    }
}

/// Whether a subscription of `intent` can be held: always when it renews one leased at `now`;
/// a new one only while the hub holds fewer than `max_subscriptions` in all and, once its
/// callback's `address` is known (when verified), fewer than
/// `max_subscriptions_per_address` reached there. A store that cannot tell does not stop
/// it (recording it will tell). The reason says which limit it met.
async fn room(
    inner: &Inner,
    intent: &Intent,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let store = &inner.store;
    let renewal = store
        .active_subscriptions(&intent.topic, Some(&intent.callback), now)
        .await
        .is_ok_and(|found| !found.is_empty());
    if renewal {
        return Ok(());
    }
    let settings = &inner.settings;
    let full = |count: Result<u64, _>, most: u64| count.is_ok_and(|count| count >= most);
    if full(
        store.count_subscriptions(None, now).await,
        settings.max_subscriptions,
    ) {
        return Err(format!(
            "this hub holds the most subscriptions it takes ({})",
            settings.max_subscriptions
        ));
    }
    if let Some(address) = address
        && full(
            store.count_subscriptions(Some(address), now).await,
            settings.max_subscriptions_per_address,
        )
    {
        return Err(format!(
            "callbacks at {address} hold the most subscriptions one address may ({})",
            settings.max_subscriptions_per_address
        ));
    }
    Ok(())
}

/// Tells the callback its subscription was denied (WebSub §5.2):
/// `GET callback?hub.mode=denied&hub.topic=…&hub.reason=…`; its answer is not read. Made
/// under the verification's permit, so that denials are bounded as verifications are.
async fn deny(inner: &Inner, intent: &Intent, reason: &str) {
    let mut url = intent.callback.url().clone();
    url.query_pairs_mut()
        .append_pair("hub.mode", "denied")
        .append_pair("hub.topic", &intent.topic_url)
        .append_pair("hub.reason", reason);
    let sent = tokio::select! {
        () = inner.cancel.cancelled() => return,
        sent = inner.client.get(&url) => sent,
    };
    if let Err(e) = sent {
        tracing::info!(callback = intent.callback.logged(), error = %e,
            "cannot tell a WebSub callback its subscription was denied");
    }
}

/// `GET callback?hub.mode=…&hub.topic=…&hub.challenge=…[&hub.lease_seconds=…]`: confirmed
/// by a 2xx whose body is exactly the challenge. Redirects are failures.
/// Returns where the callback was reached ([`address_key`]; its host as written when the
/// connection does not tell).
async fn confirm(client: &CallbackClient, intent: &Intent) -> Result<String, String> {
    let challenge = new_challenge()?;
    let mut url = intent.callback.url().clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("hub.mode", intent.mode.as_str())
            .append_pair("hub.topic", &intent.topic_url)
            .append_pair("hub.challenge", &challenge);
        if intent.mode == Mode::Subscribe {
            query.append_pair("hub.lease_seconds", &intent.lease_seconds.to_string());
        }
    }
    let response = client.get(&url).await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the callback answered {status}"));
    }
    let address = match response.remote_addr() {
        Some(peer) => address_key(peer.ip()),
        None => intent
            .callback
            .url()
            .host_str()
            .unwrap_or_default()
            .to_owned(),
    };
    match read_limited(response, MAX_CHALLENGE_ANSWER).await {
        Some(body) if body == challenge.as_bytes() => Ok(address),
        Some(_) => Err("the callback did not echo the challenge".into()),
        None => Err("the callback's answer is too long or broke off".into()),
    }
}

fn new_challenge() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a challenge: {e}"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, policy: &AddressPolicy) -> Result<HubRequest, BadRequest> {
        let base = Url::parse("https://news.example/feeds/").unwrap();
        let is_feed = |path: &str| path == "politics/atom.xml";
        let rules = RequestRules {
            feeds_base: &base,
            is_feed: &is_feed,
            default_lease_seconds: 864_000,
            max_lease_seconds: 2_592_000,
            policy,
        };
        HubRequest::parse(body.as_bytes(), &rules)
    }

    const TOPIC: &str = "hub.topic=https%3A%2F%2Fnews.example%2Ffeeds%2Fpolitics%2Fatom.xml";

    #[test]
    fn a_subscription_gets_the_default_lease_or_a_capped_one_and_keeps_its_secret_bytes() {
        let policy = AddressPolicy::default();
        let body = format!(
            "hub.mode=subscribe&{TOPIC}&hub.callback=https%3A%2F%2F8.8.8.8%2Fcb&hub.secret=a+b%FF&x=1"
        );
        let Ok(HubRequest::Intent(intent)) = parse(&body, &policy) else {
            panic!("valid request refused");
        };
        assert_eq!(intent.mode, Mode::Subscribe);
        assert_eq!(intent.topic.path(), "politics/atom.xml");
        assert_eq!(intent.callback.as_str(), "https://8.8.8.8/cb");
        assert_eq!(intent.lease_seconds, 864_000);
        assert_eq!(intent.secret.unwrap().expose(), b"a b\xff");
        let long = format!("{body}&hub.lease_seconds=99999999");
        let Ok(HubRequest::Intent(intent)) = parse(&long, &policy) else {
            panic!("valid request refused");
        };
        assert_eq!(intent.lease_seconds, 2_592_000);
        // Past what 64 bits hold is still a positive whole number: capped the same way.
        let huge = format!("{body}&hub.lease_seconds=999999999999999999999999");
        let Ok(HubRequest::Intent(intent)) = parse(&huge, &policy) else {
            panic!("a lease too large for 64 bits refused");
        };
        assert_eq!(intent.lease_seconds, 2_592_000);
        // An unsubscribe has no lease: whatever it says of one is not its fault.
        let leaving = "hub.mode=unsubscribe&hub.topic=https%3A%2F%2Fnews.example%2Ffeeds%2Fpolitics%2Fatom.xml&hub.callback=https%3A%2F%2F8.8.8.8%2Fcb&hub.lease_seconds=abc";
        let Ok(HubRequest::Intent(intent)) = parse(leaving, &policy) else {
            panic!("an unsubscribe refused for its lease");
        };
        assert_eq!(intent.mode, Mode::Unsubscribe);
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let policy = AddressPolicy::default();
        let cb = "hub.callback=https%3A%2F%2F8.8.8.8%2Fcb";
        let table = [
            (format!("{TOPIC}&{cb}"), "hub.mode"),
            (format!("hub.mode=watch&{TOPIC}&{cb}"), "hub.mode"),
            (format!("hub.mode=subscribe&{cb}"), "hub.topic"),
            (
                format!(
                    "hub.mode=subscribe&hub.topic=https%3A%2F%2Fnews.example%2Ffeeds%2Fnone.xml&{cb}"
                ),
                "hub.topic",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{TOPIC}&{cb}"),
                "hub.topic",
            ),
            (format!("hub.mode=subscribe&{TOPIC}"), "hub.callback"),
            (
                format!("hub.mode=subscribe&{TOPIC}&hub.callback=%2Fcb"),
                "hub.callback",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&hub.callback=http%3A%2F%2F10.0.0.1%2F"),
                "hub.callback",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{cb}&hub.lease_seconds=0"),
                "hub.lease_seconds",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{cb}&hub.lease_seconds=-1"),
                "hub.lease_seconds",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{cb}&hub.lease_seconds=000"),
                "hub.lease_seconds",
            ),
            (
                format!("hub.mode=subscribe&{TOPIC}&{cb}&hub.lease_seconds=%2B5"),
                "hub.lease_seconds",
            ),
            (
                format!(
                    "hub.mode=subscribe&{TOPIC}&{cb}&hub.secret={}",
                    "s".repeat(200)
                ),
                "hub.secret",
            ),
            ("hub.mode=publish".to_owned(), "hub.url"),
        ];
        for (body, parameter) in table {
            let error = parse(&body, &policy).unwrap_err();
            assert_eq!(error.parameter, parameter, "{body}: {error}");
        }
    }

    #[test]
    fn a_publish_ping_about_our_feed_is_understood() {
        let policy = AddressPolicy::default();
        let body =
            "hub.mode=publish&hub.url=https%3A%2F%2Fnews.example%2Ffeeds%2Fpolitics%2Fatom.xml";
        assert!(matches!(parse(body, &policy), Ok(HubRequest::Publish(_))));
    }
}
