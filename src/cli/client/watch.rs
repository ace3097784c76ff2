//! `feedpub watch`: follows WatchArticles, one line per event (a JSON line with `--json`).
//! A stream lost to a restart or a network fault is opened again after the last event
//! printed, so nothing is missed or printed twice; stopped, it says the cursor to resume
//! from.

use super::article_json::{ArticleJson, rfc3339};
use super::{ATTEMPTS, ClientError, ConnectArgs, Remote, exit, finish, retry_delay, tell_retry};
use crate::grpc::proto::{self, ArticleEventType, WatchArticlesRequest};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Options of `feedpub watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this section's events (repeat for more); every section you may read when none
    #[arg(long = "section", value_name = "SLUG")]
    pub sections: Vec<String>,
    /// Continue after this point (a cursor an earlier watch printed); none: from now on
    #[arg(long)]
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
    article: Option<ArticleJson>,
}

/// Runs `feedpub watch`.
pub async fn watch(args: WatchArgs) -> ExitCode {
    let mut cursor = args.cursor.clone().unwrap_or_default();
    let result = tokio::select! {
        result = follow(&args, &mut cursor) => result,
        _ = tokio::signal::ctrl_c() => Err(ClientError::new(exit::INTERRUPTED, "interrupted")),
    };
    if result.as_ref().is_err_and(|e| e.code() != exit::USAGE) && !cursor.is_empty() {
        eprintln!("feedpub: to continue after the last event shown, pass --cursor {cursor}");
    }
    finish(result)
}

/// Prints events until `--limit` or an error; `cursor` follows the last one printed.
async fn follow(args: &WatchArgs, cursor: &mut String) -> Result<(), ClientError> {
    let remote = Remote::connect(&args.connect).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut failures = 0u32;
    let mut told = false;
    loop {
        let request = remote.request(WatchArticlesRequest {
            sections: args.sections.clone(),
            cursor: cursor.clone(),
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
                eprintln!("feedpub: watching from cursor {}", response.cursor);
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
                    done => done
                        .map_err(|e| ClientError::usage(format!("cannot write the output: {e}")))?,
                }
                cursor.clone_from(&event.cursor);
                printed += 1;
                if args.limit > 0 && printed >= args.limit {
                    return Ok(());
                }
            }
            if !response.cursor.is_empty() {
                cursor.clone_from(&response.cursor);
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
        article: event.article.as_ref().map(ArticleJson::from_proto),
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
