//! Use-cases shared by the gRPC API and the demo: authenticate, publish (one or a batch),
//! read, list, retract and follow. Partner management lives in [`crate::partners`].

mod batch;
mod large_bodies;
mod new_names;
mod remembered;
mod upkeep;
mod watch;

pub use batch::{Batch, MAX_BATCH_ARTICLES};
pub use upkeep::Upkeep;
pub use watch::WatchUpdate;

use crate::config::Settings;
use crate::domain::{
    Actor, Article, ArticleContent, ArticleDraft, ArticleId, AuditEntry, AuditOperation, Caller,
    HtmlPolicy, Outcome, Partner, Refusal, RequestKey, Revision, Section, SectionSlug, Token,
    TokenHash, ValidDraft, VersionSummary, Violations,
};
use crate::health::{Component, Health};
use crate::publication::Publication;
use crate::storage::{self, ArticleWrite, ListCursor, Retraction, Store, StoreError, WriteChecks};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use unicode_segmentation::UnicodeSegmentation;

pub use crate::partners::add_partner;

/// HTML bodies from this size on are validated off the runtime (see `Publisher::validate`).
const LARGE_BODY: usize = 64 << 10;

/// Largest page `list_articles` returns, and the page size when none is asked for.
pub const MAX_PAGE_SIZE: usize = 500;
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Why a use-case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No token, or one that belongs to no active partner.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The partner's rights do not cover what it asked.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No partner has this name.
    #[error("no partner is named {0:?}")]
    UnknownPartner(String),
    /// The partner is revoked: it can no longer be changed.
    #[error("partner {0:?} is revoked")]
    PartnerRevoked(String),
    /// One or more fields are invalid.
    #[error("{0}")]
    Invalid(Violations),
    /// The request id was already used for a different request (`request_id` named).
    #[error("{0}")]
    RequestIdReused(Violations),
    /// The partner has no article with this id.
    #[error("no article with id {0:?}")]
    NotFound(String),
    /// The partner's article has no such version.
    #[error("article {id:?} has no version {version}")]
    VersionNotFound { id: String, version: u32 },
    /// A precondition failed: the article changed since the caller read its etag.
    #[error("{0}")]
    Aborted(String),
    /// The server is stopping: a stream ends here, to be resumed elsewhere or later.
    #[error("the server is shutting down; reconnect (with the last cursor) and retry")]
    ShuttingDown,
    /// A batch carries more articles than one call takes.
    #[error(
        "a PublishArticles stream carries at most {MAX_BATCH_ARTICLES} articles: those were \
         handled (the valid ones stored), the call ended at the next one"
    )]
    TooManyArticles,
    /// A partner has as many WatchArticles streams open on this server as it may.
    #[error(
        "{0} WatchArticles streams of this partner are open on this server, as many as it \
         may open: close one first (one stream follows every section it asks for)"
    )]
    TooManyWatches(usize),
    /// A name that must be unique is taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Storage failed; nothing was acknowledged.
    #[error("storage failed: {0}")]
    Storage(StoreError),
    /// The article would start more author and tag feeds than its partner may now.
    #[error(transparent)]
    NewNames(#[from] new_names::NewNamesRefused),
    /// The operating system could not provide randomness for a token.
    #[error("cannot generate a token: {0}")]
    Randomness(getrandom::Error),
    /// Validating the article failed unexpectedly (a fault of feedpub, not the request).
    #[error("validation failed: {0}")]
    Validation(String),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::AlreadyExists(what),
            StoreError::EtagMismatch(why) => Self::Aborted(why),
            StoreError::Refused(refusal) => Self::Refused(refusal),
            // The row no longer holds the token the partner was remembered by.
            StoreError::CredentialChanged => Self::Unauthenticated("unknown or revoked token"),
            StoreError::RequestIdReused(id) => Self::RequestIdReused(Violations::one(
                "request_id",
                format!("{id:?} was already used for a different request; use a new request id"),
            )),
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
    /// A storage failure worth retrying (the database out of reach, busy or closing), as
    /// opposed to one that says the data is damaged or a rule refused the write: what a
    /// partner is answered `UNAVAILABLE` for (`grpc::status` matches the same variants).
    pub fn storage_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Storage(StoreError::Database(_) | StoreError::Closed)
        )
    }

    /// How the audit log records a mutation refused with this error; `None` for failures
    /// that are not the caller's (storage) or that no partner made (authentication).
    fn refusal(&self) -> Option<Outcome> {
        match self {
            Self::Invalid(_) | Self::RequestIdReused(_) => Some(Outcome::InvalidArgument),
            Self::Refused(_) => Some(Outcome::PermissionDenied),
            Self::NotFound(_) | Self::VersionNotFound { .. } => Some(Outcome::NotFound),
            Self::PartnerRevoked(_) => Some(Outcome::Revoked),
            Self::NewNames(_) => Some(Outcome::ResourceExhausted),
            Self::Unauthenticated(_)
            | Self::Aborted(_)
            | Self::ShuttingDown
            | Self::TooManyArticles
            | Self::TooManyWatches(_)
            | Self::UnknownPartner(_)
            | Self::AlreadyExists(_)
            | Self::Storage(_)
            | Self::Validation(_)
            | Self::Randomness(_) => None,
        }
    }
}

/// A publish as asked: the draft, and what makes it safe to retry and to race.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    pub draft: ArticleDraft,
    /// Replace the article only if this is its etag (the one partners see).
    pub expected_etag: Option<String>,
    /// A retry with this key gets the first result.
    pub request: Option<RequestKey>,
}

/// A retraction as asked.
#[derive(Debug, Clone, Default)]
pub struct RetractRequest {
    /// The partner's article id, as sent.
    pub id: String,
    pub reason: String,
    /// Retract only if this is the article's etag.
    pub expected_etag: Option<String>,
    /// A retry with this key gets the first result.
    pub request: Option<RequestKey>,
    /// What was found wrong before (a request id that could not be read): the retraction
    /// is refused with it and every other bad field.
    pub prior_violations: Violations,
}

/// The notes for the editor on a validated article, until it is stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Warnings {
    list: Vec<String>,
    /// The summary as decoded, when the summary as sent was kept beside it (see
    /// [`crate::domain::SentContent`]): the revision may store neither, and then the note
    /// that its entities were decoded says nothing of what was stored.
    decoded_summary: Option<String>,
}

impl Warnings {
    fn of(valid: &mut ValidDraft) -> Self {
        Self {
            list: std::mem::take(&mut valid.warnings),
            decoded_summary: (valid.summary_as_sent.is_some())
                .then(|| valid.content.summary.clone()),
        }
    }

    /// The notes the stored `article` bears out.
    pub(crate) fn settled(self, article: &Article) -> Vec<String> {
        let mut list = self.list;
        if self
            .decoded_summary
            .is_some_and(|decoded| decoded != article.content.summary)
        {
            let decoded = crate::domain::entities_decoded("article.summary");
            list.retain(|warning| *warning != decoded);
        }
        list
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

/// A page of an article's versions.
#[derive(Debug, Clone)]
pub struct VersionPage {
    /// Newest first.
    pub versions: Vec<VersionSummary>,
    /// The version the next page continues below; `None` on the last page.
    pub next: Option<u32>,
}

/// A version of an article, and the article as it is now (its state, retraction and
/// rights are those of now).
#[derive(Debug, Clone)]
pub struct ArticleRead {
    pub article: Article,
    pub current: Article,
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
    /// Large bodies are validated off the runtime, one at a time per partner (see
    /// [`LARGE_BODY`]).
    large_bodies: Arc<large_bodies::LargeBodies>,
    /// Wakes the upkeep task when an embargo that it does not know of starts.
    upkeep: Arc<Notify>,
    /// Cancelled when the server stops: ends every watch stream.
    stopping: CancellationToken,
    health: Health,
    /// Partners remembered by their tokens for PublishArticle ([`Self::authenticate`]).
    remembered: Arc<remembered::Remembered>,
    /// WatchArticles streams open, by partner.
    watchers: watch::Watchers,
    /// Partners' allowances of new author and tag feeds.
    new_names: Arc<new_names::NewNames>,
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
        let new_names = Arc::new(new_names::NewNames::new(settings.limits.new_names_per_hour));
        Self {
            store,
            settings,
            publication,
            html_policy,
            large_bodies: Arc::new(large_bodies::LargeBodies::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            )),
            upkeep: Arc::new(Notify::new()),
            stopping: CancellationToken::new(),
            health,
            remembered: Arc::default(),
            watchers: Arc::default(),
            new_names,
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

    /// [`Self::publish`] up to its answer: the article validated, permitted to the caller
    /// and stored.
    async fn publish_prepared(
        &self,
        caller: &mut std::borrow::Cow<'_, Caller>,
        request: PublishRequest,
    ) -> Result<Published, PublishError> {
        let (write, warnings) = self.prepare(&caller.partner, request).await?;
        let now = Utc::now();
        if let Err(refused) = caller.partner.may_publish(&write.sent.content, now) {
            if caller.remembered.is_none() {
                return Err(refused.into());
            }
            // The rights remembered may be older than the partner's.
            self.reconfirm(caller).await?;
            caller.partner.may_publish(&write.sent.content, now)?;
        }
        self.charge_new_names(&caller.partner, &write.sent.content)
            .await?;
        let (article, changed) = self.store_one(caller, write, now).await?;
        Ok(Published {
            warnings: warnings.settled(&article),
            article,
            changed,
        })
    }

    /// The background task that logs embargo lifts and forgets old request ids.
    pub fn upkeep(&self) -> Upkeep {
        Upkeep::new(self.store.clone(), self.upkeep.clone(), self.health.clone())
    }

    /// The faults the service reports (`/healthz`, `feedpub_fault`).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// How long a PublishArticles stream may stay open: a little less than the calls'
    /// `request_timeout_seconds`, or than the client's own deadline when that is sooner
    /// (`client`, from `grpc-timeout`): a quarter less, at most 5 s, so that the call
    /// stores what it received and answers before either cancels it.
    pub fn stream_deadline(&self, client: Option<std::time::Duration>) -> std::time::Duration {
        let timeout = client.map_or(self.settings.limits.request_timeout, |client| {
            client.min(self.settings.limits.request_timeout)
        });
        timeout.saturating_sub((timeout / 4).min(std::time::Duration::from_secs(5)))
    }

    /// Ends every watch stream (with `ShuttingDown`): the server is stopping.
    pub fn stop_watching(&self) {
        self.stopping.cancel();
    }

    /// The partner holding `token`, if it is active, and the token's hash when the partner
    /// was remembered rather than looked up for this call. Only a call that may `remember`
    /// gets a remembered partner (PublishArticle, whose write reads the partner's row
    /// again): the one the token's last successful lookup found, by a call of any kind.
    pub async fn authenticate(
        &self,
        token: &Token,
        remember: bool,
    ) -> Result<(Partner, Option<TokenHash>), PublishError> {
        let hash = token.hash();
        if remember && let Some(partner) = self.remembered.get(&hash) {
            metrics::counter!("feedpub_grpc_authentications_total", "partner" => "remembered")
                .increment(1);
            return Ok((partner, Some(hash)));
        }
        Ok((self.look_up(&hash).await?, None))
    }

    /// The caller of a call made for a remembered partner, as its token stands now: the
    /// partner looked up again, or `Unauthenticated` when the token no longer authenticates
    /// (revoked, or rotated).
    pub async fn confirm(&self, caller: &Caller) -> Result<Caller, PublishError> {
        let Some(token) = &caller.remembered else {
            return Ok(caller.clone());
        };
        Ok(Caller {
            partner: self.look_up(token).await?,
            peer: caller.peer,
            remembered: None,
            token: caller.token.clone(),
        })
    }

    /// After a remembered caller's call failed: the caller as its token stands now (looked
    /// up again), or the refusal of a token that no longer authenticates, which is the
    /// call's answer then, whatever else it asked. A caller looked up for this call stays.
    async fn reconfirm(
        &self,
        caller: &mut std::borrow::Cow<'_, Caller>,
    ) -> Result<(), PublishError> {
        if caller.remembered.is_some() {
            *caller = std::borrow::Cow::Owned(self.confirm(caller).await?);
        }
        Ok(())
    }

    /// The active partner holding the token with this hash, looked up in the store and
    /// remembered (or forgotten) for later calls.
    async fn look_up(&self, hash: &TokenHash) -> Result<Partner, PublishError> {
        metrics::counter!("feedpub_grpc_authentications_total", "partner" => "looked_up")
            .increment(1);
        match self.store.partner_by_token(hash).await? {
            Some(partner) => {
                self.remembered.keep(hash, &partner);
                Ok(partner)
            }
            None => {
                self.remembered.forget(hash);
                Err(PublishError::Unauthenticated("unknown or revoked token"))
            }
        }
    }

    /// True when other processes share the store, and with it the partners' call rates.
    pub fn shares_call_rates(&self) -> bool {
        self.store.is_shared()
    }

    /// Takes one of `partner`'s calls from the allowance shared by every process on the
    /// store: `None` when admitted, else how long until a call would be.
    pub async fn take_shared_call(
        &self,
        partner: crate::domain::PartnerId,
        rate: crate::storage::CallRate,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        self.store.take_call(partner, rate, Utc::now()).await
    }

    /// The configured sections, in configuration order.
    pub fn sections(&self) -> &[Section] {
        &self.settings.sections
    }

    /// Validates and durably stores the caller's article, then marks its feeds stale.
    /// Returns only once the article and its audit entry are committed.
    ///
    /// A caller whose partner was remembered from an earlier call ([`Caller::remembered`])
    /// is answered as if its token had been looked up for this call: its write reads the
    /// partner's row in its own transaction ([`WriteChecks::Remembered`]), and a call that
    /// fails looks the token up again before it is answered (refused as unauthenticated
    /// when the token no longer is) or decided again with the partner's rights as they are.
    pub async fn publish(
        &self,
        caller: &Caller,
        request: PublishRequest,
    ) -> Result<Published, PublishError> {
        let started = std::time::Instant::now();
        let raw_id = request.draft.id.clone();
        let mut caller = std::borrow::Cow::Borrowed(caller);
        let mut result = self.publish_prepared(&mut caller, request).await;
        // Whatever refused or failed the call, a token that no longer authenticates is
        // refused as such (at most one lookup: a caller confirmed above stays); but not
        // looked up in a database out of reach, which would only keep the partner waiting
        // for a second connection to learn the same.
        if let Err(e) = result {
            result = if e.storage_unavailable() {
                Err(e)
            } else {
                self.reconfirm(&mut caller).await.and(Err(e))
            };
        }
        self.note_write(&result);
        count_outcome(&result);
        metrics::histogram!("feedpub_publish_seconds").record(started.elapsed().as_secs_f64());
        self.audit_refusal(&caller, AuditOperation::Publish, &raw_id, result)
            .await
    }

    /// Stores a write the caller's rights permit, and marks the feeds it changed stale: the
    /// stored article, and whether any feed changed.
    async fn store_one(
        &self,
        caller: &Caller,
        write: ArticleWrite,
        now: DateTime<Utc>,
    ) -> Result<(Article, bool), PublishError> {
        let partner = &caller.partner;
        let checks = WriteChecks::of(partner, caller.remembered.as_ref());
        let revision = self
            .store
            .publish_checked(partner.id, &checks, vec![write], now, &Actor::from(caller))
            .await
            .and_then(storage::only_result)?;
        let touched = self.touch(&revision);
        Ok((revision.into_article(), touched))
    }

    /// Validates a draft of `partner`. An HTML body of [`LARGE_BODY`] or more is sanitised
    /// on the blocking pool, during which a runtime worker would serve no other call: one
    /// at a time per partner, as many at once as there are cores, and to the end even if
    /// the call is given up (a call given up while it waits for its turn takes none). A
    /// partner sending many such bodies (a megabyte of misnested markup takes seconds)
    /// queues behind its own, not in front of other partners'.
    async fn validate(
        &self,
        partner: crate::domain::PartnerId,
        draft: ArticleDraft,
    ) -> Result<ValidDraft, PublishError> {
        let limits = self.settings.limits.fields;
        if draft.content_html.len() < LARGE_BODY {
            return Ok(draft.validate_within("article.", &self.html_policy, limits)?);
        }
        let policy = self.html_policy.clone();
        let turn = self
            .large_bodies
            .turn(partner)
            .await
            .map_err(|e| PublishError::Validation(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            draft.validate_within("article.", &policy, limits)
        })
        .await
        .map_err(|e| PublishError::Validation(e.to_string()))?
        .map_err(PublishError::from)
    }

    /// Validates a publish: what to store, and the warnings for the editor. The caller checks
    /// the partner's rights to it ([`Partner::may_publish`]).
    async fn prepare(
        &self,
        partner: &Partner,
        mut request: PublishRequest,
    ) -> Result<(ArticleWrite, Warnings), PublishError> {
        let mut draft = std::mem::take(&mut request.draft);
        // Named with every other violation, not only once the rest is right.
        if let Ok(slug) = SectionSlug::parse(&draft.section)
            && let Err(why) = self.configured(slug)
        {
            draft.prior_violations.add("article.section", why);
        }
        let mut valid = self.validate(partner.id, draft).await?;
        let guid = self.guid(partner, &valid.id, &valid.content.publish_time);
        let warnings = Warnings::of(&mut valid);
        let mut write = ArticleWrite::new(valid.id.clone(), valid, guid);
        write.expected_etag = request.expected_etag;
        write.request = request.request;
        Ok((write, warnings))
    }

    /// Charges `partner`'s allowance of new author and tag feeds for the names of `content`
    /// that have none yet, or refuses the article when they are more than it has left:
    /// the allowance every replica shares on a shared store.
    async fn charge_new_names(
        &self,
        partner: &Partner,
        content: &ArticleContent,
    ) -> Result<(), PublishError> {
        let unshown = self.publication.without_feeds(content.name_scopes());
        let shared = self.store.is_shared().then_some(&*self.store);
        Ok(self.new_names.charge(partner, unshown, shared).await?)
    }

    /// Marks the feeds a revision changed as stale and wakes the upkeep for a new embargo;
    /// false when nothing changed.
    fn touch(&self, revision: &Revision) -> bool {
        // Author and tag feeds first, so that they are current once the section's is.
        self.publication.touch_scopes(revision.touched_names());
        let touched = revision.touched_sections();
        self.publication.touch(&touched);
        self.notice_embargo(revision);
        !touched.is_empty()
    }

    /// Wakes the upkeep task when a revision starts an embargo, so that its lift is logged
    /// when it ends.
    fn notice_embargo(&self, revision: &Revision) {
        let content = &revision.article().content;
        if !matches!(revision, Revision::Unchanged(_)) && content.is_embargoed(Utc::now()) {
            self.upkeep.notify_one();
        }
    }

    /// A permanent tag URI (RFC 4151): authority from the site URL, the date of first
    /// publication in the site's offset (today's for an article scheduled ahead: a tag is
    /// never dated in the future), then partner and id, which are unique together.
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
        let minted = (*publish_time).min(Utc::now());
        let date = minted.with_timezone(&self.settings.site.utc_offset);
        format!(
            "tag:{host},{}:{}/{}",
            date.format("%Y-%m-%d"),
            partner.name,
            id
        )
    }

    /// One of the partner's articles, in any state: its current version, or a past one,
    /// with the article as it is now, which the partner must be allowed to read.
    pub async fn get(
        &self,
        partner: &Partner,
        id: &str,
        version: Option<u32>,
    ) -> Result<ArticleRead, PublishError> {
        let id = parse_id(id)?;
        let current = self.readable(partner, &id).await?;
        let article = match version {
            None => current.clone(),
            Some(version) => self
                .store
                .article_version(partner.id, &id, version)
                .await?
                .ok_or_else(|| PublishError::VersionNotFound {
                    id: id.to_string(),
                    version,
                })?,
        };
        Ok(ArticleRead { article, current })
    }

    /// The configured section `raw` names, or why it names none.
    pub(crate) fn configured_section(&self, raw: &str) -> Result<SectionSlug, String> {
        self.configured(SectionSlug::parse(raw).map_err(|e| e.to_string())?)
    }

    /// `slug`, if it is a configured section, or why not.
    fn configured(&self, slug: SectionSlug) -> Result<SectionSlug, String> {
        match self.settings.section(&slug) {
            Some(_) => Ok(slug),
            None => Err(format!(
                "{:?} is not a configured section (see ListSections)",
                slug.as_str()
            )),
        }
    }

    /// One of the partner's articles as it is now, if the partner may read it: it holds the
    /// article's section and, while its embargo runs, the embargo right.
    async fn readable(&self, partner: &Partner, id: &ArticleId) -> Result<Article, PublishError> {
        let current = self
            .store
            .article(partner.id, id)
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        partner.may_use_section(&current.content.section)?;
        if current.content.is_embargoed(Utc::now()) {
            partner.may_see_embargoed()?;
        }
        Ok(current)
    }

    /// A page of the versions of one of the partner's articles, newest first, below
    /// `before`.
    pub async fn versions(
        &self,
        partner: &Partner,
        id: &str,
        page_size: usize,
        before: Option<u32>,
    ) -> Result<VersionPage, PublishError> {
        let id = parse_id(id)?;
        self.readable(partner, &id).await?;
        let size = page_len(page_size);
        let mut versions = self
            .store
            .article_versions(partner.id, &id, before, size + 1)
            .await?;
        let next = if versions.len() > size {
            versions.truncate(size);
            versions.last().map(|v| v.version)
        } else {
            None
        };
        Ok(VersionPage { versions, next })
    }

    /// A page of the partner's articles, newest first, optionally of one section.
    pub async fn list(
        &self,
        partner: &Partner,
        section: &str,
        page_size: usize,
        after: Option<ListCursor>,
    ) -> Result<ArticlePage, PublishError> {
        let section = match section {
            "" => None,
            raw => {
                let slug = self
                    .configured_section(raw)
                    .map_err(|e| Violations::one("section", e))?;
                partner.may_use_section(&slug)?;
                Some(slug)
            }
        };
        let size = page_len(page_size);
        let mut articles = self
            .store
            .list_articles(partner.id, section.as_ref(), after.as_ref(), size + 1)
            .await?;
        // At most `size`, and fewer when they are large.
        let size = fitting(&articles[..articles.len().min(size)], |a| a.approx_bytes());
        let next = if articles.len() > size {
            articles.truncate(size);
            articles.last().map(|a| ListCursor {
                publish_time: a.content.publish_time,
                id: a.id.clone(),
            })
        } else {
            None
        };
        // A partner sees its articles only in the sections it holds, and its embargoed ones
        // only with the embargo right; the page may then be shorter than asked, and the
        // next one still starts after it.
        let now = Utc::now();
        articles.retain(|a| {
            partner.grant.allows(&a.content.section)
                && (partner.embargoed || !a.content.is_embargoed(now))
        });
        Ok(ArticlePage { articles, next })
    }

    /// Takes the caller's article out of every feed; retracting twice is harmless.
    pub async fn retract(
        &self,
        caller: &Caller,
        request: RetractRequest,
    ) -> Result<Article, PublishError> {
        let id = request.id.clone();
        let result = self.retract_now(caller, request).await;
        self.audit_refusal(caller, AuditOperation::Retract, &id, result)
            .await
    }

    async fn retract_now(
        &self,
        caller: &Caller,
        request: RetractRequest,
    ) -> Result<Article, PublishError> {
        let partner = &caller.partner;
        let ((id, reason), ()) = Violations::both(
            Violations::both(parse_id(&request.id), retraction_reason(&request.reason)),
            request.prior_violations.into_result(()),
        )?;
        let now = Utc::now();
        let existing = self
            .store
            .article(partner.id, &id)
            .await?
            .ok_or_else(|| PublishError::NotFound(id.to_string()))?;
        partner.may_change(&existing, now)?;
        let retraction = Retraction {
            id: id.clone(),
            reason,
            expected_etag: request.expected_etag,
            request: request.request,
            by_operator: false,
        };
        let retracted = self
            .store
            .retract(partner.id, retraction, now, &Actor::from(caller))
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

/// A retraction's reason as it is kept: one line, white space folded. Kept whole, or
/// refused: a reason cut short would say less than its writer meant. Counted as it is kept,
/// in characters and bytes.
pub(crate) fn retraction_reason(raw: &str) -> Result<String, Violations> {
    let reason = crate::domain::one_line(raw, usize::MAX);
    let reason_chars = reason.graphemes(true).count();
    if reason_chars > MAX_REASON_CHARS || reason.len() > MAX_REASON_BYTES {
        return Err(Violations::one(
            "reason",
            format!(
                "is longer than {MAX_REASON_CHARS} characters or {MAX_REASON_BYTES} bytes \
                 ({reason_chars} characters, {} bytes)",
                reason.len()
            ),
        ));
    }
    Ok(reason)
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

pub(crate) fn parse_id(raw: &str) -> Result<ArticleId, Violations> {
    ArticleId::parse(raw).map_err(|e| Violations::one("id", e))
}

/// Most characters (graphemes) of a retraction's reason, and most bytes (a character may
/// stack any number of marks).
const MAX_REASON_CHARS: usize = 1000;
const MAX_REASON_BYTES: usize = 16 << 10;

/// Most bytes of articles one answer carries (by [`Article::approx_bytes`]): under the
/// 4 MiB a gRPC client takes in one message unless told otherwise, so that no page of
/// ListArticles and no update of WatchArticles is one the client cannot read.
const ANSWER_BYTES: usize = 3 << 20;

/// How many of `items`, from the first, fit in [`ANSWER_BYTES`] by `bytes`; at least one
/// (an article alone is within it: its bodies are held to `content_bytes`).
fn fitting<T>(items: &[T], bytes: impl Fn(&T) -> usize) -> usize {
    let mut total = 0;
    items
        .iter()
        .position(|item| {
            total += bytes(item);
            total > ANSWER_BYTES
        })
        .map_or(items.len(), |over| over.max(1))
}

/// The page length for a requested page size: 0 means the default.
fn page_len(page_size: usize) -> usize {
    match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// Counts a publish by outcome in `feedpub_publish_total`.
fn count_outcome(result: &Result<Published, PublishError>) {
    let outcome = match result {
        Ok(p) if p.changed => "changed",
        Ok(_) => "unchanged",
        Err(e) if e.refusal().is_some() => "refused",
        // A remembered partner's token found revoked or rotated by the write.
        Err(
            PublishError::Aborted(_)
            | PublishError::TooManyArticles
            | PublishError::Unauthenticated(_),
        ) => "refused",
        Err(_) => "failed",
    };
    metrics::counter!("feedpub_publish_total", "outcome" => outcome).increment(1);
}
