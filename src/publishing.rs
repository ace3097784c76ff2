//! Use-cases shared by the gRPC API and the demo: authenticate, publish, read, list and
//! retract. Partner management lives in [`crate::partners`].

use crate::config::Settings;
use crate::domain::{
    Actor, Article, ArticleDraft, ArticleId, AuditEntry, AuditOperation, Caller, HtmlPolicy,
    Outcome, Partner, Section, SectionSlug, Token, Violations,
};
use crate::publication::Publication;
use crate::storage::{ListCursor, Store, StoreError};
use chrono::Utc;
use std::sync::Arc;

pub use crate::partners::add_partner;

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
    /// The partner may not publish under embargo nor see embargoed articles.
    #[error("partner {partner:?} may not publish or see embargoed articles")]
    EmbargoNotGranted { partner: String },
    /// No partner has this name.
    #[error("no partner is named {0:?}")]
    UnknownPartner(String),
    /// The partner is revoked: it can no longer be changed.
    #[error("partner {0:?} is revoked")]
    PartnerRevoked(String),
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

impl PublishError {
    /// How the audit log records a mutation refused with this error; `None` for failures
    /// that are not the caller's (storage) or that no partner made (authentication).
    fn refusal(&self) -> Option<Outcome> {
        match self {
            Self::Invalid(_) => Some(Outcome::InvalidArgument),
            Self::PermissionDenied { .. } | Self::EmbargoNotGranted { .. } => {
                Some(Outcome::PermissionDenied)
            }
            Self::NotFound(_) => Some(Outcome::NotFound),
            Self::PartnerRevoked(_) => Some(Outcome::Revoked),
            Self::Unauthenticated(_)
            | Self::UnknownPartner(_)
            | Self::AlreadyExists(_)
            | Self::Storage(_)
            | Self::Randomness(_) => None,
        }
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
}

impl Publisher {
    /// Use-cases over `store`, telling `publication` which feeds each change touches.
    pub fn new(store: Arc<dyn Store>, settings: Arc<Settings>, publication: Publication) -> Self {
        let html_policy = Arc::new(HtmlPolicy::new(&settings.content.iframe_hosts));
        Self {
            store,
            settings,
            publication,
            html_policy,
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

    /// Validates and durably stores the caller's article, then marks its feeds stale.
    /// Returns only once the article and its audit entry are committed.
    pub async fn publish(
        &self,
        caller: &Caller,
        draft: ArticleDraft,
    ) -> Result<Published, PublishError> {
        let started = std::time::Instant::now();
        let raw_id = draft.id.clone();
        let result = self.publish_now(caller, draft).await;
        let outcome = match &result {
            Ok(p) if p.changed => "changed",
            Ok(_) => "unchanged",
            Err(e) if e.refusal().is_some() => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("feedpub_publish_total", "outcome" => outcome).increment(1);
        metrics::histogram!("feedpub_publish_seconds").record(started.elapsed().as_secs_f64());
        self.audit_refusal(caller, AuditOperation::Publish, &raw_id, result)
            .await
    }

    async fn publish_now(
        &self,
        caller: &Caller,
        draft: ArticleDraft,
    ) -> Result<Published, PublishError> {
        let partner = &caller.partner;
        let valid =
            draft.validate_within("article.", &self.html_policy, self.settings.limits.fields)?;
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
        may_publish_to(partner, section)?;
        let now = Utc::now();
        if valid.content.is_embargoed(now) {
            may_see_embargoed(partner)?;
        }
        // A correction may move an article between sections: the partner needs the right to
        // the section it leaves too.
        if let Some(existing) = self.store.article(partner.id, &valid.id).await? {
            may_change(partner, &existing, now)?;
        }
        let guid = self.guid(partner, &valid.id, &valid.content.publish_time);
        let revision = self
            .store
            .publish(
                partner.id,
                valid.id,
                valid.content,
                guid,
                now,
                &Actor::from(caller),
            )
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

    /// One of the partner's articles, in any state (embargoed ones only with that right).
    pub async fn get(&self, partner: &Partner, id: &str) -> Result<Article, PublishError> {
        let id = parse_id(id)?;
        let article = self
            .store
            .article(partner.id, &id)
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        if article.content.is_embargoed(Utc::now()) {
            may_see_embargoed(partner)?;
        }
        Ok(article)
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
        // A partner without the embargo right does not see its embargoed articles; the
        // page may then be shorter than asked, and the next one still starts after it.
        if !partner.embargoed {
            let now = Utc::now();
            articles.retain(|a| !a.content.is_embargoed(now));
        }
        Ok(ArticlePage { articles, next })
    }

    /// Takes the caller's article out of every feed; retracting twice is harmless.
    pub async fn retract(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<Article, PublishError> {
        let result = self.retract_now(caller, id, reason).await;
        self.audit_refusal(caller, AuditOperation::Retract, id, result)
            .await
    }

    async fn retract_now(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<Article, PublishError> {
        let partner = &caller.partner;
        let id = parse_id(id)?;
        let now = Utc::now();
        let existing = self
            .store
            .article(partner.id, &id)
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        may_change(partner, &existing, now)?;
        let reason = crate::domain::one_line(reason, 1000);
        let (article, changed) = self
            .store
            .retract(partner.id, id.clone(), reason, now, &Actor::from(caller))
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        if changed {
            self.publication.touch_scopes(article.name_scopes());
            self.publication
                .touch(std::slice::from_ref(&article.content.section));
        }
        Ok(article)
    }
}

impl Publisher {
    /// Records a refused mutation in the audit log (accepted ones are recorded with the
    /// change, in its transaction), and passes the result on.
    async fn audit_refusal<T>(
        &self,
        caller: &Caller,
        operation: AuditOperation,
        article_id: &str,
        result: Result<T, PublishError>,
    ) -> Result<T, PublishError> {
        if let Err(error) = &result
            && let Some(outcome) = error.refusal()
        {
            let entry = AuditEntry::new(
                &Actor::from(caller),
                operation,
                Some(article_id),
                outcome,
                Utc::now(),
            )
            .with_detail(error.to_string());
            if let Err(e) = self.store.record_audit(entry).await {
                tracing::error!(error = %e, "cannot record a refused call in the audit log");
            }
        }
        result
    }
}

fn may_publish_to(partner: &Partner, section: &SectionSlug) -> Result<(), PublishError> {
    if partner.grant.allows(section) {
        Ok(())
    } else {
        Err(PublishError::PermissionDenied {
            partner: partner.name.to_string(),
            section: section.to_string(),
        })
    }
}

fn may_see_embargoed(partner: &Partner) -> Result<(), PublishError> {
    if partner.embargoed {
        Ok(())
    } else {
        Err(PublishError::EmbargoNotGranted {
            partner: partner.name.to_string(),
        })
    }
}

/// A partner changes only its own articles (the store looks them up by partner), in the
/// sections it holds, and embargoed ones only with that right.
fn may_change(
    partner: &Partner,
    existing: &Article,
    now: chrono::DateTime<Utc>,
) -> Result<(), PublishError> {
    debug_assert_eq!(existing.partner, partner.id);
    may_publish_to(partner, &existing.content.section)?;
    if existing.content.is_embargoed(now) {
        may_see_embargoed(partner)?;
    }
    Ok(())
}

fn parse_id(raw: &str) -> Result<ArticleId, PublishError> {
    ArticleId::parse(raw).map_err(|e| Violations::one("id", e).into())
}
