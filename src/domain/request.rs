//! Request ids (AIP-155): what makes a mutation safe to retry.

use sha2::{Digest, Sha256};

/// A partner's request id, with a fingerprint of the request it came with: a retry (same
/// id, same fingerprint) gets the first result; another request under the same id is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    id: String,
    fingerprint: String,
}

impl RequestKey {
    /// Longest accepted request id: a UUID's 36 characters.
    pub const MAX_LEN: usize = 36;

    /// The key of a request of `kind` (`publish`, `retract`) whose encoded payload, without
    /// its request id, is `payload`. `None` when `raw` is empty (the request is not
    /// identified); an error when it is not 1 to 36 printable ASCII characters.
    pub fn parse(raw: &str, kind: &str, payload: &[u8]) -> Result<Option<Self>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!(
                "is longer than {} characters (a UUID is recommended)",
                Self::MAX_LEN
            ));
        }
        if let Some(bad) = raw.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "contains {bad:?}; only printable ASCII characters other than the space are allowed"
            ));
        }
        let mut hash = Sha256::new();
        hash.update(kind.as_bytes());
        hash.update([0]);
        hash.update(payload);
        Ok(Some(Self {
            id: raw.to_owned(),
            fingerprint: hex::encode(hash.finalize()),
        }))
    }

    /// The id as the partner sent it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// SHA-256 (hex) of the kind and payload of the request.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A key as stored: the id and the fingerprint recorded with it.
    pub fn from_stored(id: String, fingerprint: String) -> Self {
        Self { id, fingerprint }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_has_the_same_fingerprint_and_another_one_not() {
        let a = RequestKey::parse("7f1c", "publish", b"x").unwrap().unwrap();
        let again = RequestKey::parse("7f1c", "publish", b"x").unwrap().unwrap();
        assert_eq!(a, again);
        let other_payload = RequestKey::parse("7f1c", "publish", b"y").unwrap().unwrap();
        let other_kind = RequestKey::parse("7f1c", "retract", b"x").unwrap().unwrap();
        assert_ne!(a.fingerprint(), other_payload.fingerprint());
        assert_ne!(a.fingerprint(), other_kind.fingerprint());
    }

    #[test]
    fn empty_ids_are_absent_and_malformed_ones_refused() {
        assert_eq!(RequestKey::parse("", "publish", b"x"), Ok(None));
        for bad in ["a b", "é", &"1".repeat(37), "tab\t"] {
            assert!(RequestKey::parse(bad, "publish", b"x").is_err(), "{bad:?}");
        }
        let uuid = "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a3b";
        assert!(RequestKey::parse(uuid, "publish", b"x").unwrap().is_some());
    }
}
