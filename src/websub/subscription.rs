//! WebSub subscriptions as values that can only hold what the hub accepts: a topic that is
//! one of this server's feeds, an absolute http(s) callback, a secret under 200 bytes.

use chrono::{DateTime, Utc};
use std::fmt;
use url::Url;

/// Longest callback URL accepted, in bytes.
pub const MAX_CALLBACK_LEN: usize = 2048;
/// A secret must be shorter than this, in bytes (WebSub §5.1).
pub const SECRET_LIMIT: usize = 200;

/// A topic of this hub: one feed document, by its path under `/feeds/` (`politics/atom.xml`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic(String);

impl Topic {
    /// A feed path as the publication keys it: non-empty, relative, made of
    /// `a-z A-Z 0-9 - _ . /` and without `..` segments.
    pub fn new(path: &str) -> Result<Self, String> {
        let safe = path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        let segments_ok = path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
        if path.is_empty() || path.len() > 256 || !safe || !segments_ok {
            return Err(format!("{path:?} is not a feed path"));
        }
        Ok(Self(path.to_owned()))
    }

    /// The feed path, e.g. `politics/atom.xml`.
    pub fn path(&self) -> &str {
        &self.0
    }

    /// The topic URL: the feed's absolute URL under `feeds_base` (which ends in `feeds/`).
    pub fn url(&self, feeds_base: &Url) -> String {
        format!("{feeds_base}{}", self.0)
    }
}

/// Where a subscriber wants deliveries: an absolute http or https URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Callback(Url);

impl Callback {
    /// Parses a callback URL a subscriber sent; the reason says what is wrong with it. Its
    /// length is measured as sent and as stored: normalising writes a character outside
    /// ASCII as up to three `%XX`, nine bytes where UTF-8 took two to four. A fragment
    /// (`#…`) is left out: it is never sent in a request, so callbacks that differ by it
    /// alone are one callback, given one delivery, not one for each.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_CALLBACK_LEN {
            return Err(format!("must be at most {MAX_CALLBACK_LEN} bytes long"));
        }
        let mut callback = Self::stored(raw)?;
        callback.0.set_fragment(None);
        let stored = callback.as_str().len();
        if stored > MAX_CALLBACK_LEN {
            return Err(format!(
                "must be at most {MAX_CALLBACK_LEN} bytes long as a URL writes it ({stored}: \
                 characters outside ASCII take three bytes or more each)"
            ));
        }
        Ok(callback)
    }

    /// A callback as stored: checked as [`Callback::parse`] checks one, but for its
    /// length, which versions before measured only as sent (a subscription they took is
    /// still delivered to).
    pub fn stored(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("must be an absolute URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        if url.host().is_none() {
            return Err("must name a host".into());
        }
        Ok(Self(url))
    }

    /// The callback URL as logged: without the user name and password it may carry.
    pub fn logged(&self) -> String {
        let mut url = self.0.clone();
        // Only a URL that cannot have them refuses them: a callback is http(s).
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.into()
    }

    /// The callback URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The callback URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The key a subscriber gave to sign deliveries with: 1 to 199 bytes, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Accepts 1 to 199 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("must not be empty".into());
        }
        if bytes.len() >= SECRET_LIMIT {
            return Err(format!("must be shorter than {SECRET_LIMIT} bytes"));
        }
        Ok(Self(bytes))
    }

    /// The key bytes, for signing.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A verified subscription: deliveries of `topic` go to `callback` until `expire_time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The feed subscribed to.
    pub topic: Topic,
    /// Where its new versions are POSTed.
    pub callback: Callback,
    /// Signs deliveries (`X-Hub-Signature`) when present.
    pub secret: Option<Secret>,
    /// When the subscriber last confirmed its intent.
    pub verify_time: DateTime<Utc>,
    /// When the lease ends: no deliveries from then on.
    pub expire_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_paths_are_topics_and_traversals_are_not() {
        assert!(Topic::new("politics/atom.xml").is_ok());
        assert!(Topic::new("all/feed.json").is_ok());
        for bad in [
            "",
            "/politics/atom.xml",
            "a/../b",
            "a//b",
            "a/./b",
            "a b",
            "a?x",
        ] {
            assert!(Topic::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn callbacks_must_be_absolute_http_urls() {
        assert!(Callback::parse("https://reader.example/cb?id=1").is_ok());
        assert!(Callback::parse("http://127.0.0.1:9/").is_ok());
        for fragment in [
            "https://reader.example/cb?id=1#a",
            "https://reader.example/cb?id=1#",
        ] {
            assert_eq!(
                Callback::parse(fragment).unwrap().as_str(),
                "https://reader.example/cb?id=1"
            );
        }
        for bad in ["/cb", "ftp://x/", "mailto:a@b", "http://", "not a url"] {
            assert!(Callback::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://x/{}", "a".repeat(MAX_CALLBACK_LEN));
        assert!(Callback::parse(&long).is_err());
        // Short as sent, three times longer as a URL writes it: refused, as it would be
        // stored; read back from storage all the same.
        let wide = format!("https://r.example/{}", "é".repeat(1000));
        assert!(wide.len() <= MAX_CALLBACK_LEN);
        let refused = Callback::parse(&wide).unwrap_err();
        assert!(refused.contains("as a URL writes it (6018"), "{refused}");
        let stored = Callback::stored(&wide).unwrap();
        assert_eq!(Callback::stored(stored.as_str()).unwrap(), stored);
        // Logged without the credentials it may carry, which it is still called with.
        let with_credentials = Callback::parse("https://user:pass@reader.example/cb").unwrap();
        assert_eq!(with_credentials.logged(), "https://reader.example/cb");
        assert_eq!(
            with_credentials.as_str(),
            "https://user:pass@reader.example/cb"
        );
    }

    #[test]
    fn secrets_are_one_to_199_bytes_and_never_printed() {
        assert!(Secret::new(Vec::new()).is_err());
        assert!(Secret::new(vec![b'a'; 199]).is_ok());
        assert!(Secret::new(vec![b'a'; 200]).is_err());
        let secret = Secret::new(b"hunter2".to_vec()).unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
