//! Calling subscribers back without being turned against the hub's own network: only public
//! addresses (or configured networks) are connected to, checked on the address actually used.
//!
//! Literal IP callbacks are checked before connecting; host names go through a resolver that
//! drops every address the policy refuses, so a name resolving to 127.0.0.1 is never
//! connected to. Proxies from the environment are ignored (they would hide the real target)
//! and redirects are not followed (the caller counts a 3xx as a failure).

use axum::body::Bytes;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// Longest a callback request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a callback request was not made or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The callback's literal address is not public and not in an allowed network.
    #[error("address {0} is not allowed (loopback, private, link-local or otherwise not public)")]
    AddressNotAllowed(IpAddr),
    /// Every address the callback's host name resolves to is refused.
    #[error("{0} resolves to no allowed address")]
    NoAllowedAddress(String),
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// The callback's host name.
        host: String,
        /// What the system resolver said.
        error: std::io::Error,
    },
    /// The request failed (connection, timeout, protocol).
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
}

impl CallbackError {
    /// True when the callback was refused by the address policy (no connection was made).
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::AddressNotAllowed(_) | Self::NoAllowedAddress(_))
    }
}

/// Which addresses may be called back: public ones, and those in the allowed networks.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Public addresses plus every address inside `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// True when the hub may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let allowed = |ip: IpAddr| self.allowed.iter().any(|net| net.contains(&ip));
        allowed(ip) || embedded.is_some_and(allowed) || is_public(ip)
    }

    /// Checks the literal address of `url`, if it has one (host names are checked when
    /// resolved).
    pub fn check_literal(&self, url: &Url) -> Result<(), CallbackError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(CallbackError::AddressNotAllowed(ip))
        }
    }
}

/// True for globally routable unicast addresses: not loopback, private (RFC 1918,
/// fc00::/7), link-local, unspecified, multicast, broadcast, documentation, CGNAT
/// (100.64.0.0/10), benchmarking or reserved; IPv6 forms embedding an IPv4 address
/// (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    if let Some(v4) = embedded_ipv4(ip) {
        return is_public_v4(v4);
    }
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0                                  // "this network", 0.0.0.0
        || a == 10                                        // RFC 1918
        || (a == 100 && (64..128).contains(&b))           // CGNAT, RFC 6598
        || a == 127                                       // loopback
        || (a == 169 && b == 254)                         // link-local
        || (a == 172 && (16..32).contains(&b))            // RFC 1918
        || (a == 192 && b == 0 && c == 0)                 // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // RFC 1918
        || (a == 198 && (18..20).contains(&b))            // benchmarking
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Only 2000::/3 is global unicast; everything else (::, ::1, fc00::/7, fe80::/10,
    // fec0::/10, ff00::/8, 100::/64, …) is refused.
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let refused = match s[0] {
        // IETF protocol assignments and Teredo (2001::/23), documentation (2001:db8::/32).
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // Documentation, RFC 9637 (3fff::/20).
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    global_unicast && !refused
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low(hi, lo)),
        // ::1 and :: are IPv6 loopback and unspecified; the other compatible forms embed v4.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// Resolves host names and keeps only the addresses the policy permits.
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|error| CallbackError::Resolve {
                    host: host.clone(),
                    error,
                })?;
            let permitted: Vec<SocketAddr> =
                found.filter(|addr| policy.permits(addr.ip())).collect();
            if permitted.is_empty() {
                return Err(CallbackError::NoAllowedAddress(host).into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client that only connects to addresses the policy permits and follows no
/// redirects. Cheap to clone.
#[derive(Clone)]
pub struct CallbackClient {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl CallbackClient {
    /// A client that permits public addresses and those in `allowed`.
    pub fn new(allowed: Vec<IpNet>) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(AddressPolicy::new(allowed));
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .no_proxy()
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("feedpub-websub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// `GET url`, if its address is permitted.
    pub async fn get(&self, url: &Url) -> Result<reqwest::Response, CallbackError> {
        self.policy.check_literal(url)?;
        self.client
            .get(url.clone())
            .send()
            .await
            .map_err(lift_refusal)
    }

    /// `POST url` with these headers and body, if its address is permitted.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, CallbackError> {
        self.policy.check_literal(url)?;
        self.client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(lift_refusal)
    }
}

/// A refusal by the resolver surfaces deep inside reqwest's error; bring it back up.
fn lift_refusal(error: reqwest::Error) -> CallbackError {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<CallbackError>() {
            match refused {
                CallbackError::NoAllowedAddress(host) => {
                    return CallbackError::NoAllowedAddress(host.clone());
                }
                CallbackError::AddressNotAllowed(ip) => {
                    return CallbackError::AddressNotAllowed(*ip);
                }
                _ => break,
            }
        }
        source = cause.source();
    }
    CallbackError::Request(error)
}

/// What one host is known by among addresses: an IPv4 address is itself, however it is
/// written (IPv4-mapped, IPv4-compatible, NAT64 or 6to4: the IPv4 host they reach, as
/// [`AddressPolicy::permits`] judges them), and another IPv6 address counts with the rest
/// of its /64, which one host commonly holds whole.
pub fn address_key(ip: IpAddr) -> String {
    if let Some(v4) = embedded_ipv4(ip) {
        return v4.to_string();
    }
    match ip {
        IpAddr::V6(v6) => format!(
            "{}/64",
            Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))
        ),
        v4 => v4.to_string(),
    }
}

/// Reads at most `limit` bytes of a response body; `None` when it is longer or breaks off.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One IPv4 host is one address however an IPv6 address embeds it; other IPv6
    /// addresses count by their /64.
    #[test]
    fn an_address_is_known_by_the_host_it_reaches() {
        for same in [
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2002:808:808:ffff::2",
        ] {
            assert_eq!(address_key(ip(same)), "8.8.8.8", "{same}");
        }
        assert_eq!(address_key(ip("64:ff9b::1.1.1.1")), "1.1.1.1");
        assert_eq!(address_key(ip("2001:db8:1:2::9")), "2001:db8:1:2::/64");
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff::1")),
            address_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:3::9")),
            address_key(ip("2001:db8:1:2::9"))
        );
    }

    #[test]
    fn only_public_addresses_are_public() {
        let table = [
            ("127.0.0.1", false),
            ("127.255.0.9", false),
            ("0.0.0.0", false),
            ("10.0.0.1", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.254", false),
            ("192.0.2.1", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("198.18.0.1", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("fe80::1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.1.1", false),
            ("::127.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("2002:7f00:1::1", false),
            ("2001::1", false),
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("100.63.255.255", true),
            ("100.128.0.1", true),
            ("172.32.0.1", true),
            ("93.184.216.34", true),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001::200e", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
        ];
        for (address, public) in table {
            assert_eq!(is_public(ip(address)), public, "{address}");
        }
    }

    #[test]
    fn allowed_networks_admit_their_addresses_in_every_form() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(!policy.permits(ip("::1")));
        assert!(policy.permits(ip("8.8.8.8")));
    }

    #[test]
    fn literal_callbacks_are_checked_before_any_connection() {
        let policy = AddressPolicy::default();
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let url = Url::parse(url).unwrap();
            assert!(policy.check_literal(&url).is_err(), "{url}");
        }
        let by_name = Url::parse("http://localhost:9/").unwrap();
        assert!(
            policy.check_literal(&by_name).is_ok(),
            "names are checked on resolution"
        );
        let public = Url::parse("https://8.8.8.8/").unwrap();
        assert!(policy.check_literal(&public).is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused_without_connecting() {
        let client = CallbackClient::new(Vec::new()).unwrap();
        let url = Url::parse("http://localhost:9/").unwrap();
        let error = client.get(&url).await.unwrap_err();
        assert!(error.is_refused(), "{error}");
    }
}
