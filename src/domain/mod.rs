//! Domain types: articles, sections and partners, as values that can only hold what feedpub accepts.

mod article;
mod ids;
mod lint;
mod media;
mod partner;
mod text;
mod violation;

pub use article::{
    Article, ArticleContent, ArticleDraft, ArticleState, Revision, Tombstone, ValidDraft,
};
pub use ids::{ArticleId, PartnerName, SectionSlug};
pub use media::{MAX_MEDIA, Media, MediaDraft};
pub use partner::{Partner, PartnerId, SectionGrant, Token, TokenHash};
pub use text::{HtmlPolicy, html_to_text, summarize, text_to_html};
pub use violation::{FieldViolation, Violations};

/// A configured section of the site, with feeds of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// URL-safe name used in feed paths.
    pub slug: SectionSlug,
    /// Human-readable title, plain text.
    pub title: String,
    /// One-sentence description, plain text.
    pub description: String,
}

/// The set of articles one feed carries: one section's, or every section's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedScope {
    /// Every section together, at `/feeds/all/…`.
    All,
    /// One section, at `/feeds/{slug}/…`.
    Section(SectionSlug),
}

impl FeedScope {
    /// The folder name of the scope's feeds under `feeds/`.
    pub fn path_segment(&self) -> &str {
        match self {
            Self::All => SectionSlug::ALL,
            Self::Section(slug) => slug.as_str(),
        }
    }
}
