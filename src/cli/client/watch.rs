//! `feedpub watch`: follows WatchArticles, one line per event (a JSON line with `--json`).
//! A stream lost to a restart or a network fault is opened again after the last event
//! printed, so nothing is missed or printed twice; stopped, it says the cursor to resume
//! from.

use super::article_json::{ArticleJson, rfc3339};
use super::{
    ATTEMPTS, ClientError, ConnectArgs, Remote, finish, retry_delay, signalled, tell_retry,
};
use crate::cli::tell;
use crate::grpc::proto::{self, ArticleEventType, WatchArticlesRequest};
use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Options of `feedpub watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this section's events (repeat for more); every section you may read when none
    #[arg(long = "section", value_name = "SLUG", value_parser = NonEmptyStringValueParser::new())]
    pub sections: Vec<String>,
    /// Continue after this point (a cursor an earlier watch printed); none: from now on
    // An empty value is refused, not taken for none: a script whose saved cursor is lost
    // (`--cursor "$CURSOR"`) would otherwise start from now and miss what came between.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub cursor: Option<String>,
    /// Stop after this many events; 0 follows until interrupted
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    /// Print JSON lines: type, partner, event_time, cursor and the article as `get --json`
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// One event as `--json` prints it.
#[derive(Serialize)]
struct EventJson<'a> {
    r#type: &'static str,
    partner: &'a str,
    event_time: String,
    cursor: &'a str,
    /// As `get --json` prints it; for `left`, only what the event carries: id, guid and
    /// the section it left.
    article: Option<serde_json::Value>,
}

/// Runs `feedpub watch`.
pub async fn watch(args: WatchArgs) -> ExitCode {
    // A cursor the server gave (where the stream started, or the last event printed): the
    // one to continue from, however the watch ends.
    let mut resume = None;
    let result = tokio::select! {
        result = follow(&args, &mut resume) => result,
        stopped = signalled() => Err(stopped),
    };
    if let Some(cursor) = resume {
        tell(format_args!(
            "to continue after the last event shown, pass --cursor {cursor}"
        ));
    }
    finish(result)
}

/// Prints events until `--limit` or an error; `resume` follows the cursors the server gives.
async fn follow(args: &WatchArgs, resume: &mut Option<String>) -> Result<(), ClientError> {
    let remote = Remote::connect(&args.connect).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut failures = 0u32;
    let mut told = false;
    loop {
        let cursor = resume.clone().or_else(|| args.cursor.clone());
        let request = remote.request(WatchArticlesRequest {
            sections: args.sections.clone(),
            cursor: cursor.unwrap_or_default(),
        });
        let opened = remote.client().watch_articles(request).await;
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                wait_to_retry(&remote, &status, &mut failures).await?;
                continue;
            }
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                // The server ended the stream (it is stopping): open it again.
                Ok(None) => {
                    let ended = tonic::Status::unavailable("the server ended the stream");
                    wait_to_retry(&remote, &ended, &mut failures).await?;
                    break;
                }
                Err(status) => {
                    wait_to_retry(&remote, &status, &mut failures).await?;
                    break;
                }
            };
            failures = 0;
            if !told {
                told = true;
                tell(format_args!("watching from cursor {}", response.cursor));
            }
            if resume.is_none() && !response.cursor.is_empty() && response.events.is_empty() {
                *resume = Some(response.cursor.clone());
            }
            for event in &response.events {
                let line = if args.json {
                    print_json(&mut out, event)
                } else {
                    print_line(&mut out, event)
                };
                match line.and_then(|()| out.flush()) {
                    // A reader that stopped reading (`feedpub watch | head`) ends the watch.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    done => done.map_err(|e| ClientError::output("output", &e))?,
                }
                *resume = Some(event.cursor.clone());
                printed += 1;
                if args.limit > 0 && printed >= args.limit {
                    return Ok(());
                }
            }
            if !response.cursor.is_empty() {
                *resume = Some(response.cursor.clone());
            }
        }
    }
}

/// Waits before opening the stream again after a passing failure (the server restarting,
/// unavailable, rate limiting), the pause growing with each in a row, at most `ATTEMPTS`
/// in a row; any other failure, or one too many, ends the watch with its exit code.
async fn wait_to_retry(
    remote: &Remote,
    status: &tonic::Status,
    failures: &mut u32,
) -> Result<(), ClientError> {
    *failures += 1;
    match retry_delay(status, *failures).filter(|_| *failures <= ATTEMPTS) {
        Some(delay) => {
            tell_retry(status, delay);
            tokio::time::sleep(delay).await;
            Ok(())
        }
        None => Err(remote.error(status)),
    }
}

fn type_name(event: &proto::ArticleEvent) -> &'static str {
    match event.r#type() {
        ArticleEventType::Published => "published",
        ArticleEventType::Updated => "updated",
        ArticleEventType::Retracted => "retracted",
        ArticleEventType::EmbargoLifted => "embargo_lifted",
        ArticleEventType::Left => "left",
        ArticleEventType::Unspecified => "unspecified",
    }
}

fn print_json(out: &mut impl Write, event: &proto::ArticleEvent) -> std::io::Result<()> {
    let line = EventJson {
        r#type: type_name(event),
        partner: &event.partner,
        event_time: event.event_time.as_ref().map(rfc3339).unwrap_or_default(),
        cursor: &event.cursor,
        article: event.article.as_ref().map(|a| match event.r#type() {
            ArticleEventType::Left => serde_json::json!({
                "id": a.id, "guid": a.guid, "section": a.section,
            }),
            _ => serde_json::to_value(ArticleJson::from_proto(a)).unwrap_or_default(),
        }),
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

/// One line: event time, type, partner, section, id, title.
fn print_line(out: &mut impl Write, event: &proto::ArticleEvent) -> std::io::Result<()> {
    let article = event.article.clone().unwrap_or_default();
    writeln!(
        out,
        "{}  {:<14}  {:<12}  {:<16}  {}  {}",
        event.event_time.as_ref().map(rfc3339).unwrap_or_default(),
        type_name(event),
        event.partner,
        article.section,
        article.id,
        article.title
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LEFT event carries only the article's id, GUID and the section it left: its JSON
    /// line says no more (no version 0 or state a script could take for real ones).
    #[test]
    fn a_left_event_prints_only_what_it_carries() {
        let event = proto::ArticleEvent {
            r#type: ArticleEventType::Left.into(),
            article: Some(proto::Article {
                id: "a-1".into(),
                guid: "tag:example.com,2023:a-1".into(),
                section: "politics".into(),
                ..Default::default()
            }),
            partner: "newsroom".into(),
            cursor: "c".into(),
            ..Default::default()
        };
        let mut out = Vec::new();
        print_json(&mut out, &event).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["type"], "left");
        assert_eq!(
            line["article"],
            serde_json::json!({"id": "a-1", "guid": "tag:example.com,2023:a-1", "section": "politics"})
        );
    }
}
