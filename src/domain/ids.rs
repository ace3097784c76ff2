//! Identifier newtypes: article ids, section slugs and partner names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A partner-chosen article id: 1 to 128 of `A-Z a-z 0-9 . _ ~ -`, scoped to its partner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ArticleId(String);

impl ArticleId {
    /// Accepts an id made only of URL-unreserved characters, 1 to 128 of them.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > 128 {
            return Err(format!(
                "is {} characters long; at most 128 are allowed",
                raw.chars().count()
            ));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
        {
            return Err(format!(
                "contains {bad:?}; only A-Z a-z 0-9 . _ ~ - are allowed"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArticleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `raw` has the shape of a BCP 47 language tag: `zh-CN`, `en`, `zh-Hans-CN`.
pub fn check_language_tag(raw: &str) -> Result<(), String> {
    let mut parts = raw.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "{raw:?} is not a BCP 47 language tag such as \"zh-CN\" or \"en\""
        ))
    }
}

/// `raw`, a BCP 47 language tag (see [`check_language_tag`]), in the case RFC 5646
/// §2.1.1 recommends: tags are case-insensitive, so `zh-cn` names the site's `zh-CN`, and
/// one spelling lets them be compared and shown alike. Two-letter subtags after the first
/// upper case (a region), four-letter ones title case (a script), every other lower case,
/// and all of them after a singleton (`x-`, `u-`: extensions and private use).
pub fn canonical_language_tag(raw: &str) -> Result<String, String> {
    check_language_tag(raw)?;
    let mut after_singleton = false;
    let mut tag = String::with_capacity(raw.len());
    for (i, subtag) in raw.split('-').enumerate() {
        let lower = subtag.to_ascii_lowercase();
        let shaped = match subtag.len() {
            _ if i == 0 || after_singleton => lower,
            1 => {
                after_singleton = true;
                lower
            }
            2 => subtag.to_ascii_uppercase(),
            4 => lower[..1].to_ascii_uppercase() + &lower[1..],
            _ => lower,
        };
        if i > 0 {
            tag.push('-');
        }
        tag.push_str(&shaped);
    }
    Ok(tag)
}

/// Checks the `[a-z0-9-]{1,64}` shape shared by section slugs and partner names.
fn check_slug_shape(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("is required".into());
    }
    if raw.len() > 64 {
        return Err("is longer than 64 characters".into());
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("contains {bad:?}; only a-z 0-9 - are allowed"));
    }
    Ok(())
}

/// A section slug: `[a-z0-9-]`, 1 to 64 characters, never the reserved `all`, `authors`
/// or `tags`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SectionSlug(String);

impl SectionSlug {
    /// The name of the feed that carries every section; no section may take it.
    pub const ALL: &'static str = "all";

    /// Accepts a slug of `[a-z0-9-]{1,64}` other than `all`, `authors` and `tags`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        check_slug_shape(raw)?;
        if raw == Self::ALL {
            return Err("is reserved for the feed of every section".into());
        }
        if raw == super::FeedScope::AUTHORS || raw == super::FeedScope::TAGS {
            return Err(format!("is reserved for the folder of the {raw} feeds"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SectionSlug {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<SectionSlug> for String {
    fn from(slug: SectionSlug) -> String {
        slug.0
    }
}

impl fmt::Display for SectionSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A partner's name: `[a-z0-9-]`, 1 to 64 characters; it appears in article GUIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartnerName(String);

impl PartnerName {
    /// Accepts a name of `[a-z0-9-]{1,64}`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        check_slug_shape(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartnerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_take_the_case_bcp_47_recommends() {
        for (sent, canonical) in [
            ("zh-CN", "zh-CN"),
            ("zh-cn", "zh-CN"),
            ("ZH-hans-cn", "zh-Hans-CN"),
            ("EN", "en"),
            ("es-419", "es-419"),
            ("sl-ROZAJ-biske", "sl-rozaj-biske"),
            ("en-ca-X-CA", "en-CA-x-ca"),
            ("de-CH-u-co-PHONEBK", "de-CH-u-co-phonebk"),
            ("zh-x-hans", "zh-x-hans"),
        ] {
            assert_eq!(
                canonical_language_tag(sent).as_deref(),
                Ok(canonical),
                "{sent}"
            );
        }
        assert!(canonical_language_tag("zh_CN").is_err());
        assert!(canonical_language_tag("").is_err());
    }

    #[test]
    fn article_ids_accept_unreserved_characters_only() {
        assert!(ArticleId::parse("2023-06-07.a_b~c").is_ok());
        assert!(ArticleId::parse(&"x".repeat(128)).is_ok());
        for bad in ["", "a b", "a/b", "文章", &"x".repeat(129)] {
            assert!(ArticleId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn section_slugs_reject_all_uppercase_and_overlong() {
        assert_eq!(SectionSlug::parse("rural").unwrap().as_str(), "rural");
        for bad in [
            "",
            "all",
            "authors",
            "tags",
            "Rural",
            "a_b",
            &"a".repeat(65),
        ] {
            assert!(SectionSlug::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
