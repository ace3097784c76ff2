//! Use-cases shared by the gRPC API, the CLI and the demo: authenticate, publish, read,
//! list, retract, and add partners.

use crate::config::Settings;
use crate::domain::{
    Article, ArticleDraft, ArticleId, HtmlPolicy, Partner, PartnerName, Section, SectionGrant,
    SectionSlug, Token, Violations,
};
use crate::health::{Component, Health};
use crate::publication::Publication;
use crate::storage::{ListCursor, NewPartner, Store, StoreError};
use chrono::Utc;
use std::sync::Arc;

/// Largest page `list_articles` returns, and the page size when none is asked for.
pub const MAX_PAGE_SIZE: usize = 500;
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Why a use-case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No token, or one that belongs to no active partner.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The partner may not publish to this section.
    #[error("partner {partner:?} may not publish to section {section:?}")]
    PermissionDenied { partner: String, section: String },
    /// One or more fields are invalid.
    #[error("{0}")]
    Invalid(Violations),
    /// The partner has no article with this id.
    #[error("no article with id {0:?}")]
    NotFound(String),
    /// A name that must be unique is taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Storage failed; nothing was acknowledged.
    #[error("storage failed: {0}")]
    Storage(StoreError),
    /// The operating system could not provide randomness for a token.
    #[error("cannot generate a token: {0}")]
    Randomness(getrandom::Error),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::AlreadyExists(what),
            other => Self::Storage(other),
        }
    }
}

impl From<Violations> for PublishError {
    fn from(v: Violations) -> Self {
        Self::Invalid(v)
    }
}

/// The result of a publish: the stored article and notes for the editor.
#[derive(Debug, Clone)]
pub struct Published {
    pub article: Article,
    pub warnings: Vec<String>,
    /// False when identical content was already published (nothing was regenerated).
    pub changed: bool,
}

/// A page of a partner's articles.
#[derive(Debug, Clone)]
pub struct ArticlePage {
    pub articles: Vec<Article>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListCursor>,
}

/// The publishing use-cases, over one store and one publication.
#[derive(Clone)]
pub struct Publisher {
    store: Arc<dyn Store>,
    settings: Arc<Settings>,
    publication: Publication,
    html_policy: Arc<HtmlPolicy>,
    health: Health,
}

impl Publisher {
    /// Use-cases over `store`, telling `publication` which feeds each change touches and
    /// `health` whether durable writes work.
    pub fn new(
        store: Arc<dyn Store>,
        settings: Arc<Settings>,
        publication: Publication,
        health: Health,
    ) -> Self {
        let html_policy = Arc::new(HtmlPolicy::new(&settings.content.iframe_hosts));
        Self {
            store,
            settings,
            publication,
            html_policy,
            health,
        }
    }

    /// Reports a failed durable write as a storage fault, and a completed one as recovery.
    fn note_write<T>(&self, result: &Result<T, PublishError>) {
        match result {
            Ok(_) => self.health.recovered(Component::Storage),
            // A store closing for shutdown is not a fault.
            Err(PublishError::Storage(StoreError::Closed)) => {}
            Err(PublishError::Storage(e)) => self.health.fault(Component::Storage, e),
            Err(_) => {}
        }
    }

    /// The partner holding `token`, if it is active.
    pub async fn authenticate(&self, token: &Token) -> Result<Partner, PublishError> {
        self.store
            .partner_by_token(&token.hash())
            .await?
            .ok_or(PublishError::Unauthenticated("unknown or revoked token"))
    }

    /// The configured sections, in configuration order.
    pub fn sections(&self) -> &[Section] {
        &self.settings.sections
    }

    /// Validates and durably stores the partner's article, then marks its feeds stale.
    /// Returns only once the article is committed.
    pub async fn publish(
        &self,
        partner: &Partner,
        draft: ArticleDraft,
    ) -> Result<Published, PublishError> {
        let started = std::time::Instant::now();
        let result = self.publish_now(partner, draft).await;
        self.note_write(&result);
        let outcome = match &result {
            Ok(p) if p.changed => "changed",
            Ok(_) => "unchanged",
            Err(PublishError::Invalid(_) | PublishError::PermissionDenied { .. }) => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("feedpub_publish_total", "outcome" => outcome).increment(1);
        metrics::histogram!("feedpub_publish_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn publish_now(
        &self,
        partner: &Partner,
        draft: ArticleDraft,
    ) -> Result<Published, PublishError> {
        let valid = draft.validate("article.", &self.html_policy)?;
        let section = &valid.content.section;
        if self.settings.section(section).is_none() {
            return Err(Violations::one(
                "article.section",
                format!(
                    "{:?} is not a configured section (see ListSections)",
                    section.as_str()
                ),
            )
            .into());
        }
        if !partner.grant.allows(section) {
            return Err(PublishError::PermissionDenied {
                partner: partner.name.to_string(),
                section: section.to_string(),
            });
        }
        let guid = self.guid(partner, &valid.id, &valid.content.publish_time);
        let revision = self
            .store
            .publish(partner.id, valid.id, valid.content, guid, Utc::now())
            .await?;
        // Author and tag feeds first, so that they are current once the section's is.
        self.publication.touch_scopes(revision.touched_names());
        let touched = revision.touched_sections();
        self.publication.touch(&touched);
        Ok(Published {
            article: revision.article().clone(),
            warnings: valid.warnings,
            changed: !touched.is_empty(),
        })
    }

    /// A permanent tag URI (RFC 4151): authority from the site URL, the date of first
    /// publication in the site's offset, then partner and id, which are unique together.
    fn guid(
        &self,
        partner: &Partner,
        id: &ArticleId,
        publish_time: &chrono::DateTime<Utc>,
    ) -> String {
        let host = self
            .settings
            .site
            .base_url
            .host_str()
            .unwrap_or("localhost");
        let date = publish_time.with_timezone(&self.settings.site.utc_offset);
        format!(
            "tag:{host},{}:{}/{}",
            date.format("%Y-%m-%d"),
            partner.name,
            id
        )
    }

    /// One of the partner's articles, in any state.
    pub async fn get(&self, partner: &Partner, id: &str) -> Result<Article, PublishError> {
        let id = parse_id(id)?;
        self.store
            .article(partner.id, &id)
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))
    }

    /// A page of the partner's articles, newest first, optionally of one section.
    pub async fn list(
        &self,
        partner: &Partner,
        section: Option<SectionSlug>,
        page_size: usize,
        after: Option<ListCursor>,
    ) -> Result<ArticlePage, PublishError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut articles = self
            .store
            .list_articles(partner.id, section.as_ref(), after.as_ref(), size + 1)
            .await?;
        let next = if articles.len() > size {
            articles.truncate(size);
            articles.last().map(|a| ListCursor {
                publish_time: a.content.publish_time,
                id: a.id.clone(),
            })
        } else {
            None
        };
        Ok(ArticlePage { articles, next })
    }

    /// Takes the partner's article out of every feed; retracting twice is harmless.
    pub async fn retract(
        &self,
        partner: &Partner,
        id: &str,
        reason: &str,
    ) -> Result<Article, PublishError> {
        let id = parse_id(id)?;
        let reason = crate::domain::one_line(reason, 1000);
        let retracted = self
            .store
            .retract(partner.id, id.clone(), reason, Utc::now())
            .await
            .map_err(PublishError::from);
        self.note_write(&retracted);
        let (article, changed) =
            retracted?.ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        if changed {
            self.publication.touch_scopes(article.name_scopes());
            self.publication
                .touch(std::slice::from_ref(&article.content.section));
        }
        Ok(article)
    }
}

fn parse_id(raw: &str) -> Result<ArticleId, PublishError> {
    ArticleId::parse(raw).map_err(|e| Violations::one("id", e).into())
}

/// Creates a partner with rights to `grant` and returns it with its token, which is
/// shown once and stored only as a hash.
pub async fn add_partner(
    store: &dyn Store,
    settings: &Settings,
    name: &str,
    grant: SectionGrant,
) -> Result<(Partner, Token), PublishError> {
    let name = PartnerName::parse(name).map_err(|e| Violations::one("name", e))?;
    let grant = match grant {
        SectionGrant::Only(mut sections) => {
            let mut seen = std::collections::HashSet::new();
            sections.retain(|s| seen.insert(s.clone()));
            SectionGrant::Only(sections)
        }
        all => all,
    };
    if let SectionGrant::Only(sections) = &grant {
        let mut violations = Violations::default();
        if sections.is_empty() {
            violations.add(
                "section",
                "name at least one section, or grant all sections",
            );
        }
        for slug in sections {
            if settings.section(slug).is_none() {
                violations.add(
                    "section",
                    format!("{:?} is not a configured section", slug.as_str()),
                );
            }
        }
        violations.into_result(())?;
    }
    let token = Token::generate().map_err(PublishError::Randomness)?;
    let partner = store
        .add_partner(
            NewPartner {
                name,
                grant,
                token_hash: token.hash(),
                token_prefix: token.visible_prefix(),
            },
            Utc::now(),
        )
        .await?;
    Ok((partner, token))
}
