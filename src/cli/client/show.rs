//! `feedpub get`, `feedpub list` and `feedpub retract`: one article, the caller's articles
//! page after page, a retraction. Human-readable by default; `--json` prints the article
//! lines `feedpub publish` reads.

use super::article_json::{ArticleJson, rfc3339, state_name};
use super::{ClientError, ConnectArgs, Remote, finish, random_hex, tell_retry};
use crate::grpc::proto::{self, GetArticleRequest, ListArticlesRequest, RetractArticleRequest};
use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use std::io::Write;
use std::process::ExitCode;

/// Options of `feedpub get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The article's id
    pub id: String,
    /// A past version (see the article's `version`) instead of the current one
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub version: Option<i32>,
    /// Print the article as one JSON line, which `feedpub publish` takes back
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Options of `feedpub list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this section's articles
    #[arg(long, value_name = "SLUG", value_parser = NonEmptyStringValueParser::new())]
    pub section: Option<String>,
    /// At most this many articles, newest first; 0 for all
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Print JSON lines (one article each, with its body), which `feedpub publish` takes back
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Options of `feedpub retract`.
#[derive(Debug, Args)]
pub struct RetractArgs {
    /// The article's id
    pub id: String,
    /// Retract only if the article's etag is still this one (it was not changed since)
    #[arg(long)]
    pub etag: Option<String>,
    /// Why (kept with the article, never published)
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Articles asked for per ListArticles call.
const PAGE_SIZE: u64 = 100;

/// Runs `feedpub get`.
pub async fn get(args: GetArgs) -> ExitCode {
    finish(get_article(args).await)
}

async fn get_article(args: GetArgs) -> Result<(), ClientError> {
    let remote = Remote::connect(&args.connect).await?;
    let message = GetArticleRequest {
        id: args.id,
        version: args.version.unwrap_or(0),
    };
    let article = remote
        .retrying(
            |mut client| {
                let request = remote.request(message.clone());
                async move { client.get_article(request).await }
            },
            tell_retry,
        )
        .await
        .map_err(|status| remote.error(&status))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &article)
    } else {
        print_article(&mut out, &article)
    }
    .or_else(quiet_when_closed)
    .map_err(output_error)
}

/// Runs `feedpub list`.
pub async fn list(args: ListArgs) -> ExitCode {
    finish(list_articles(args).await)
}

async fn list_articles(args: ListArgs) -> Result<(), ClientError> {
    let remote = Remote::connect(&args.connect).await?;
    let limit = if args.limit == 0 {
        u64::MAX
    } else {
        args.limit
    };
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    let mut page_token = String::new();
    loop {
        let message = ListArticlesRequest {
            section: args.section.clone().unwrap_or_default(),
            page_size: i32::try_from(PAGE_SIZE.min(limit - shown)).unwrap_or(100),
            page_token: page_token.clone(),
        };
        let page = remote
            .retrying(
                |mut client| {
                    let request = remote.request(message.clone());
                    async move { client.list_articles(request).await }
                },
                tell_retry,
            )
            .await
            .map_err(|status| remote.error(&status))?
            .into_inner();
        for article in &page.articles {
            let printed = if args.json {
                print_json(&mut out, article)
            } else {
                print_row(&mut out, article)
            };
            match printed {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                printed => printed.map_err(output_error)?,
            }
            shown += 1;
        }
        page_token = page.next_page_token;
        if page_token.is_empty() || page.articles.is_empty() {
            break;
        }
        if shown >= limit {
            crate::cli::tell("more articles follow; --limit 0 lists them all");
            break;
        }
    }
    out.flush().or_else(quiet_when_closed).map_err(output_error)
}

/// Runs `feedpub retract`.
pub async fn retract(args: RetractArgs) -> ExitCode {
    finish(retract_article(args).await)
}

async fn retract_article(args: RetractArgs) -> Result<(), ClientError> {
    let remote = Remote::connect(&args.connect).await?;
    // Unique to this run, so that the retries of this run are safe; one derived from the
    // arguments would make a later retraction of the same article, republished in between,
    // answer with the first one's result and retract nothing.
    let message = RetractArticleRequest {
        id: args.id,
        reason: args.reason,
        etag: args.etag.unwrap_or_default(),
        request_id: random_hex()?,
    };
    let article = remote
        .retrying(
            |mut client| {
                let request = remote.request(message.clone());
                async move { client.retract_article(request).await }
            },
            tell_retry,
        )
        .await
        .map_err(|status| remote.error(&status))?
        .into_inner();
    // The reason kept: an article retracted already keeps its first one.
    writeln!(
        std::io::stdout(),
        "retracted {} at {} (etag {}), reason: {}",
        article.id,
        article
            .retract_time
            .as_ref()
            .map(rfc3339)
            .unwrap_or_default(),
        article.etag,
        article.retract_reason
    )
    .or_else(quiet_when_closed)
    .map_err(output_error)
}

fn output_error(e: std::io::Error) -> ClientError {
    ClientError::output("output", &e)
}

/// A reader that stopped reading (`feedpub list | head`) is no error.
fn quiet_when_closed(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

fn print_json(out: &mut impl Write, article: &proto::Article) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &ArticleJson::from_proto(article))?;
    writeln!(out)
}

/// One line of `list`: publish time, state, version, section, id, title.
/// A time for people: in this machine's time zone (`TZ`), to the second, with its offset
/// (`--json` keeps UTC, as the API sends it).
fn local_time(t: &Option<prost_types::Timestamp>) -> String {
    let Some(ts) = t else {
        return String::new();
    };
    crate::grpc::convert::instant(ts).ok().map_or_else(
        || rfc3339(ts),
        |t| {
            t.with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        },
    )
}

/// The state as a reader sees it now: a published article still to come (its publish
/// time ahead, or under embargo) is `scheduled` or `embargoed`.
fn state_now(a: &proto::Article) -> String {
    let now = chrono::Utc::now().timestamp();
    let ahead = |t: &Option<prost_types::Timestamp>| t.as_ref().is_some_and(|t| t.seconds > now);
    if a.state != proto::ArticleState::Published as i32 {
        state_name(a.state)
    } else if ahead(&a.embargo_time) {
        "embargoed".into()
    } else if ahead(&a.publish_time) {
        "scheduled".into()
    } else {
        state_name(a.state)
    }
}

fn print_row(out: &mut impl Write, a: &proto::Article) -> std::io::Result<()> {
    writeln!(
        out,
        "{}  {:<9}  v{:<3}  {:<16}  {}  {}",
        local_time(&a.publish_time),
        state_now(a),
        a.version,
        a.section,
        a.id,
        a.title
    )
}

/// `get`: every field by name, then the body.
fn print_article(out: &mut impl Write, a: &proto::Article) -> std::io::Result<()> {
    let time = local_time;
    let rows = [
        ("id", a.id.clone()),
        ("title", a.title.clone()),
        ("subtitle", a.subtitle.clone()),
        ("kicker", a.kicker.clone()),
        ("section", a.section.clone()),
        ("state", state_now(a)),
        ("version", a.version.to_string()),
        ("etag", a.etag.clone()),
        ("guid", a.guid.clone()),
        ("authors", a.authors.join(", ")),
        ("tags", a.tags.join(", ")),
        ("language", a.language.clone()),
        ("canonical_url", a.canonical_url.clone()),
        ("publish_time", time(&a.publish_time)),
        ("update_time", time(&a.update_time)),
        ("expire_time", time(&a.expire_time)),
        ("embargo_time", time(&a.embargo_time)),
        ("create_time", time(&a.create_time)),
        ("retract_time", time(&a.retract_time)),
        ("retract_reason", a.retract_reason.clone()),
        ("summary", a.summary.clone()),
    ];
    for (name, value) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        writeln!(out, "{name:<15} {value}")?;
    }
    for m in &a.media {
        let mut about = vec![m.mime_type.clone()];
        if m.width > 0 && m.height > 0 {
            about.push(format!("{}x{}", m.width, m.height));
        }
        if m.length > 0 {
            about.push(format!("{} bytes", m.length));
        }
        writeln!(out, "{:<15} {} ({})", "media", m.url, about.join(", "))?;
        if !m.caption.is_empty() {
            writeln!(out, "{:<15} {}", "", m.caption)?;
        }
    }
    let body = if a.content_text.is_empty() {
        &a.content_html
    } else {
        &a.content_text
    };
    writeln!(out)?;
    writeln!(out, "{body}")
}
