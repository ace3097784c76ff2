//! Domain types: articles, sections and partners, as values that can only hold what feedpub accepts.

mod article;
mod audit;
mod event;
mod ids;
mod lint;
mod media;
mod name_slug;
pub mod nesting;
mod partner;
mod request;
pub mod stored;
mod text;
mod violation;

pub use article::{
    Article, ArticleContent, ArticleDraft, ArticleState, FieldLimits, Revision, Seen, SentContent,
    Tombstone, ValidDraft, entities_decoded, same_html,
};
pub use audit::{Actor, AuditEntry, AuditFilter, AuditOperation, Outcome};
pub use event::{ArticleEvent, EventKind, VersionSummary};
pub use ids::{ArticleId, PartnerName, SectionSlug, canonical_language_tag, check_language_tag};
pub use media::{MAX_MEDIA, Media, MediaDraft};
pub use name_slug::name_slug;
pub use partner::{
    Caller, Partner, PartnerId, PartnerRecord, Refusal, Right, Rights, RightsChange, SectionGrant,
    Token, TokenHash,
};
pub use request::RequestKey;
pub use text::{HtmlPolicy, Sanitized, html_to_text, one_line, summarize, text_to_html};
pub(crate) use text::{escape_html_text, floor_char_boundary};
pub(crate) use text::{is_blank, is_forbidden};
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

/// The set of articles one feed carries: one section's, every section's, or those of one
/// author or one tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedScope {
    /// Every section together, at `/feeds/all/…`.
    All,
    /// One section, at `/feeds/{slug}/…`.
    Section(SectionSlug),
    /// Every article one author signed, at `/feeds/authors/{slug}/…`.
    Author(NamedScope),
    /// Every article with one tag, at `/feeds/tags/{slug}/…`.
    Tag(NamedScope),
}

/// The exact name of an author or a tag, with its slug and its feeds' folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedScope {
    name: String,
    slug: String,
    path: String,
}

impl NamedScope {
    fn new(folder: &str, name: &str) -> Self {
        let slug = name_slug(name);
        Self {
            path: format!("{folder}/{slug}"),
            name: name.to_owned(),
            slug,
        }
    }

    /// The name exactly as articles carry it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name's URL slug (see [`name_slug`]).
    pub fn slug(&self) -> &str {
        &self.slug
    }
}

impl FeedScope {
    /// Folder of the author feeds under `feeds/`; no section may take the name.
    pub const AUTHORS: &'static str = "authors";
    /// Folder of the tag feeds under `feeds/`; no section may take the name.
    pub const TAGS: &'static str = "tags";

    /// The feeds of the author with exactly this name.
    pub fn author(name: &str) -> Self {
        Self::Author(NamedScope::new(Self::AUTHORS, name))
    }

    /// The feeds of the tag with exactly this name.
    pub fn tag(name: &str) -> Self {
        Self::Tag(NamedScope::new(Self::TAGS, name))
    }

    /// The name of an author or a tag scope, exactly as articles carry it.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::All | Self::Section(_) => None,
            Self::Author(named) | Self::Tag(named) => Some(named.name()),
        }
    }

    /// The folder of the scope's feeds under `feeds/`: `all`, a section slug, or
    /// `authors/{slug}` and `tags/{slug}`.
    pub fn path_segment(&self) -> &str {
        match self {
            Self::All => SectionSlug::ALL,
            Self::Section(slug) => slug.as_str(),
            Self::Author(named) | Self::Tag(named) => &named.path,
        }
    }

    /// The `feed` label of the scope's metrics: its folder, or `author` and `tag` for the
    /// (many) author and tag feeds.
    pub fn metric_label(&self) -> &str {
        Self::metric_label_of(self.path_segment())
    }

    /// The `feed` metric label of a feed path under `/feeds/` such as `politics/rss.xml`
    /// or `authors/wu-yue-lin-94eb01/atom.xml`.
    pub fn metric_label_of(path: &str) -> &str {
        match path.split('/').next().unwrap_or("") {
            Self::AUTHORS => "author",
            Self::TAGS => "tag",
            first => first,
        }
    }
}
