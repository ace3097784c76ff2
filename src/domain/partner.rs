//! Partners (the outlets that publish), their section rights and their bearer tokens.

use super::{PartnerName, SectionSlug};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Database key of a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartnerId(pub i64);

/// The sections a partner may publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionGrant {
    /// Every configured section, present and future.
    All,
    /// Only these sections.
    Only(Vec<SectionSlug>),
}

impl SectionGrant {
    /// True when the grant covers `section`.
    pub fn allows(&self, section: &SectionSlug) -> bool {
        match self {
            Self::All => true,
            Self::Only(sections) => sections.contains(section),
        }
    }
}

/// A partner outlet, as authenticated by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// Database key.
    pub id: PartnerId,
    /// Unique name; part of every GUID the partner's articles get.
    pub name: PartnerName,
    /// Sections the partner may publish to, and read (follow) in WatchArticles.
    pub grant: SectionGrant,
    /// May see other partners' articles while their embargo runs (in WatchArticles);
    /// false unless granted.
    pub may_see_embargoed: bool,
}

/// A bearer token as handed to a partner once; only its hash is ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Prefix that makes feedpub tokens recognisable (in secret scanners, too).
    pub const PREFIX: &'static str = "fp_";

    /// Draws a new token with 256 bits of randomness from the operating system.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(Self(format!("{}{body}", Self::PREFIX)))
    }

    /// Wraps a token presented by a caller.
    pub fn from_presented(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The secret itself: show it once, to the partner, and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which the token is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// A short, non-secret prefix to tell tokens apart in listings.
    pub fn visible_prefix(&self) -> String {
        self.0.chars().take(Self::PREFIX.len() + 6).collect()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.visible_prefix())
    }
}

/// SHA-256 of a token, hex-encoded. Tokens carry 256 random bits, so a fast hash suffices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_hash_stably() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(Token::PREFIX));
        assert_eq!(a.hash(), Token::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn debug_output_never_shows_the_whole_token() {
        let token = Token::generate().unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.expose()));
    }
}
