//! Partners (the outlets that publish), their rights and their bearer tokens.

use super::{Article, ArticleContent, PartnerName, SectionSlug};
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;

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

    /// The sections, comma-separated, or "every section".
    pub fn describe(&self) -> String {
        match self {
            Self::All => "every section".to_owned(),
            Self::Only(sections) if sections.is_empty() => "no section".to_owned(),
            Self::Only(sections) => sections
                .iter()
                .map(SectionSlug::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Everything a partner may do beyond reading and changing its own articles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// Sections the partner may publish to (and change its articles in).
    pub sections: SectionGrant,
    /// Whether the partner may publish under embargo and see its embargoed articles.
    pub embargoed: bool,
}

impl From<SectionGrant> for Rights {
    /// Section rights alone, without the embargo right.
    fn from(sections: SectionGrant) -> Self {
        Self {
            sections,
            embargoed: false,
        }
    }
}

/// One right that `partner grant` gives or `partner deny` takes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Right {
    /// Publishing to one section.
    Section(SectionSlug),
    /// Publishing to every section, present and future.
    AllSections,
    /// Publishing under embargo and seeing embargoed articles.
    Embargoed,
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Section(slug) => write!(f, "section {slug}"),
            Self::AllSections => f.write_str("every section"),
            Self::Embargoed => f.write_str("embargoed articles"),
        }
    }
}

/// Rights to give (`grant`) or take away (`deny`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsChange {
    /// True to give the rights, false to take them away.
    pub grant: bool,
    pub rights: Vec<Right>,
}

impl Rights {
    /// These rights after `change`; `configured` are the sections that exist, so that
    /// denying one section to a partner with every section leaves it all the others.
    pub fn changed(&self, change: &RightsChange, configured: &[SectionSlug]) -> Rights {
        let mut rights = self.clone();
        for right in &change.rights {
            match (change.grant, right) {
                (true, Right::Embargoed) => rights.embargoed = true,
                (false, Right::Embargoed) => rights.embargoed = false,
                (true, Right::AllSections) => rights.sections = SectionGrant::All,
                (false, Right::AllSections) => rights.sections = SectionGrant::Only(Vec::new()),
                (true, Right::Section(slug)) => {
                    if let SectionGrant::Only(sections) = &mut rights.sections
                        && !sections.contains(slug)
                    {
                        sections.push(slug.clone());
                    }
                }
                (false, Right::Section(slug)) => {
                    let remaining = match &rights.sections {
                        SectionGrant::All => configured.to_vec(),
                        SectionGrant::Only(sections) => sections.clone(),
                    };
                    rights.sections =
                        SectionGrant::Only(remaining.into_iter().filter(|s| s != slug).collect());
                }
            }
        }
        rights
    }
}

impl fmt::Display for RightsChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rights: Vec<String> = self.rights.iter().map(Right::to_string).collect();
        f.write_str(&rights.join(", "))
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
    /// Whether the partner may publish under embargo and see embargoed articles: its own,
    /// and other partners' in WatchArticles.
    pub embargoed: bool,
}

/// Why a partner's rights do not cover what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The partner has no rights to this section (to publish to it, to change an article
    /// in it, or to follow it).
    #[error("partner {partner:?} is not granted section {section:?}")]
    SectionNotGranted { partner: String, section: String },
    /// The partner may not publish under embargo nor see or change embargoed articles.
    #[error("partner {partner:?} may not publish or see embargoed articles")]
    EmbargoNotGranted { partner: String },
}

impl Partner {
    /// The partner's rights.
    pub fn rights(&self) -> Rights {
        Rights {
            sections: self.grant.clone(),
            embargoed: self.embargoed,
        }
    }

    /// True when the partner holds every section and the embargo right: nothing it asks
    /// needs checking against its rights.
    pub fn is_unrestricted(&self) -> bool {
        matches!(self.grant, SectionGrant::All) && self.embargoed
    }

    /// Refuses unless the partner holds `section`.
    pub fn may_use_section(&self, section: &SectionSlug) -> Result<(), Refusal> {
        if self.grant.allows(section) {
            Ok(())
        } else {
            Err(Refusal::SectionNotGranted {
                partner: self.name.to_string(),
                section: section.to_string(),
            })
        }
    }

    /// Refuses unless the partner may publish under embargo and see embargoed articles.
    pub fn may_see_embargoed(&self) -> Result<(), Refusal> {
        if self.embargoed {
            Ok(())
        } else {
            Err(Refusal::EmbargoNotGranted {
                partner: self.name.to_string(),
            })
        }
    }

    /// Refuses `content` unless the partner holds its section and, if its embargo still
    /// runs at `now`, the embargo right: what a partner may publish, and what it may change.
    pub fn may_publish(&self, content: &ArticleContent, now: DateTime<Utc>) -> Result<(), Refusal> {
        self.may_use_section(&content.section)?;
        if content.is_embargoed(now) {
            self.may_see_embargoed()?;
        }
        Ok(())
    }

    /// Refuses a change of `existing`, one of the partner's own articles, unless the
    /// partner may publish what it holds now ([`Self::may_publish`]). (A partner changes
    /// only its own articles: the stores look them up by partner.)
    pub fn may_change(&self, existing: &Article, now: DateTime<Utc>) -> Result<(), Refusal> {
        debug_assert_eq!(existing.partner, self.id);
        self.may_publish(&existing.content, now)
    }
}

/// A partner as the operator sees it: rights, token prefix and history, revoked or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerRecord {
    pub partner: Partner,
    /// The visible start of the current token, e.g. `fp_Xy3k9QbZ`.
    pub token_prefix: String,
    pub create_time: DateTime<Utc>,
    /// When the token was last replaced, if ever.
    pub rotate_time: Option<DateTime<Utc>>,
    /// When the partner was revoked; its token is refused from then on.
    pub revoke_time: Option<DateTime<Utc>>,
}

/// An authenticated call: the partner, and the address it called from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub partner: Partner,
    /// Remote address of the connection; `None` for the CLI and the demo.
    pub peer: Option<SocketAddr>,
    /// The hash of the caller's token when `partner` was remembered from an earlier call
    /// rather than looked up for this one: its write checks the partner's row again.
    pub remembered: Option<TokenHash>,
    /// The hash of the token the call presented; `None` for the CLI and the demo. A batch's
    /// writes check the partner's row against it (the batch may outlast a revocation).
    pub token: Option<TokenHash>,
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

    /// A short, non-secret prefix to tell tokens apart in listings: `fp_` and the first
    /// eight characters (48 of the 256 random bits; the other 208 stay secret).
    pub fn visible_prefix(&self) -> String {
        self.0.chars().take(Self::PREFIX.len() + 8).collect()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.visible_prefix())
    }
}

/// SHA-256 of a token, hex-encoded. Tokens carry 256 random bits, so a fast hash suffices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_is_refused_what_its_rights_do_not_cover() {
        let politics = SectionSlug::parse("politics").unwrap();
        let rural = SectionSlug::parse("rural").unwrap();
        let partner = |grant, embargoed| Partner {
            id: PartnerId(7),
            name: PartnerName::parse("wire").unwrap(),
            grant,
            embargoed,
        };
        let limited = partner(SectionGrant::Only(vec![politics.clone()]), false);
        assert_eq!(limited.may_use_section(&politics), Ok(()));
        assert_eq!(
            limited.may_use_section(&rural),
            Err(Refusal::SectionNotGranted {
                partner: "wire".into(),
                section: "rural".into()
            })
        );
        assert_eq!(
            limited.may_see_embargoed(),
            Err(Refusal::EmbargoNotGranted {
                partner: "wire".into()
            })
        );
        assert!(!limited.is_unrestricted());
        assert!(!partner(SectionGrant::All, false).is_unrestricted());
        let unrestricted = partner(SectionGrant::All, true);
        assert!(unrestricted.is_unrestricted());
        assert_eq!(unrestricted.may_use_section(&rural), Ok(()));
        assert_eq!(unrestricted.may_see_embargoed(), Ok(()));
    }

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
    fn visible_prefixes_show_eight_characters_after_fp() {
        let token = Token::generate().unwrap();
        let prefix = token.visible_prefix();
        assert_eq!(prefix.len(), 11);
        assert!(token.expose().starts_with(&prefix));
    }

    fn slugs(names: &[&str]) -> Vec<SectionSlug> {
        names
            .iter()
            .map(|n| SectionSlug::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn granting_and_denying_change_only_the_rights_named() {
        let configured = slugs(&["politics", "rural", "features"]);
        let some = Rights::from(SectionGrant::Only(slugs(&["rural"])));
        let change = |grant, rights| RightsChange { grant, rights };
        let granted = some.changed(
            &change(
                true,
                vec![
                    Right::Section(configured[0].clone()),
                    Right::Section(configured[1].clone()),
                    Right::Embargoed,
                ],
            ),
            &configured,
        );
        assert_eq!(
            granted.sections,
            SectionGrant::Only(slugs(&["rural", "politics"]))
        );
        assert!(granted.embargoed);
        let denied = granted.changed(
            &change(
                false,
                vec![Right::Section(configured[1].clone()), Right::Embargoed],
            ),
            &configured,
        );
        assert_eq!(denied.sections, SectionGrant::Only(slugs(&["politics"])));
        assert!(!denied.embargoed);
        // Denying one section of "every section" leaves every other configured one.
        let all = Rights::from(SectionGrant::All);
        let but_rural = all.changed(
            &change(false, vec![Right::Section(configured[1].clone())]),
            &configured,
        );
        assert_eq!(
            but_rural.sections,
            SectionGrant::Only(slugs(&["politics", "features"]))
        );
        assert_eq!(
            but_rural
                .changed(&change(true, vec![Right::AllSections]), &configured)
                .sections,
            SectionGrant::All
        );
    }

    #[test]
    fn debug_output_never_shows_the_whole_token() {
        let token = Token::generate().unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.expose()));
    }
}
