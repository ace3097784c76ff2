//! `feedpub publish FILE`: articles as JSON lines, sent through PublishArticles a batch at a
//! time, in file order. Each line gets a request id derived from its article (id and
//! content), so that running the command again after an interruption stores nothing twice
//! and reports what the first run stored as unchanged. A bad line is reported with its
//! number and does not stop the others.

mod report;

use super::article_json::{LineError, parse_line};
use super::{ClientError, ConnectArgs, Remote, exit, finish, random_hex};
use crate::grpc::proto::{
    ListSectionsRequest, PublishArticleRequest, PublishArticleResult, PublishArticlesRequest,
};
use crate::lines::LineRead;
use clap::Args;
use prost::Message;
use report::{Progress, Summary};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Code, Status};

/// Options of `feedpub publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// JSON Lines file, one article per line; `-` reads standard input
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Articles per PublishArticles call (the server takes at most 10000)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Give each line a request id unique to this run instead of one derived from the line:
    /// to publish again content that other content replaced less than 24 hours ago
    #[arg(long)]
    pub new_request_ids: bool,
    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Bytes of articles put in one message of a stream (the server takes 4 MiB by default).
const MESSAGE_BYTES: usize = 1 << 20;
/// The largest article sent: one message must hold it, under the server's default limit.
const MAX_ARTICLE_BYTES: usize = (4 << 20) - 1024;
/// The longest line read: JSON may escape each character of an article's copy in six
/// bytes (`\u4e2d`), so a line of any article that one message can carry fits; a longer one
/// (a file with no newline at all, say) is refused without being held in memory.
const MAX_LINE_BYTES: usize = 8 * MAX_ARTICLE_BYTES;
/// Bytes of articles in one call at most, whatever `--batch-size` says: a batch of very long
/// articles is sent before it holds too much memory or outlasts the server's call timeout.
const BATCH_BYTES: usize = 32 << 20;
/// Lines read ahead of the batch being sent.
const READ_AHEAD: usize = 256;

/// One line of the input, read and parsed.
enum Input {
    Line(Box<Line>),
    /// The input could not be read further.
    Failed(String),
}

struct Line {
    number: usize,
    /// Bytes of the input read through this line.
    offset: u64,
    /// The article's id, when it could be read.
    id: String,
    request: Result<PublishArticleRequest, LineError>,
}

/// An article waiting in the batch.
struct Pending {
    number: usize,
    id: String,
    request: PublishArticleRequest,
}

/// Runs `feedpub publish`.
pub async fn publish(args: PublishArgs) -> ExitCode {
    let json = args.json;
    let mut summary = Summary::default();
    let result = tokio::select! {
        result = run(args, &mut summary) => result,
        stopped = super::signalled() => Err(ClientError::new(
            stopped.code,
            format!(
                "{stopped}: run the same command again to finish; \
                 what this run stored will be counted as unchanged"
            ),
        )),
    };
    if result.is_err() {
        summary.stopped_at = summary.unanswered_from;
    }
    // A run stopped before reading anything (no token, no server) has nothing to sum up.
    let printed = if result.is_ok() || summary.lines > 0 {
        summary.print(json)
    } else {
        Ok(())
    };
    let result = result.and(printed.map_err(|e| ClientError::output("summary", &e)));
    match result {
        Ok(()) if summary.failed() > 0 => ExitCode::from(exit::FAILED),
        result => finish(result),
    }
}

async fn run(args: PublishArgs, summary: &mut Summary) -> Result<(), ClientError> {
    let (input, size) = open(&args.file)?;
    let remote = Remote::connect(&args.connect).await?;
    // A cheap call that checks the token before any line is read.
    remote
        .retrying(
            |mut client| {
                let request = remote.request(ListSectionsRequest {});
                async move { client.list_sections(request).await }
            },
            super::tell_retry,
        )
        .await
        .map_err(|status| remote.error(&status))?;
    let salt = if args.new_request_ids {
        random_hex()?
    } else {
        String::new()
    };
    let (lines, mut incoming) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || read_lines(input, &salt, &lines));
    let mut progress = Progress::new(size);
    let batch_size = usize::try_from(args.batch_size).unwrap_or(1000);
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    let (mut offset, mut batch_bytes) = (0, 0);
    let result = loop {
        let Some(input) = incoming.recv().await else {
            break send(&remote, &mut batch, summary, &mut progress, offset).await;
        };
        let line = match input {
            Input::Line(line) => *line,
            Input::Failed(error) => {
                let sent = send(&remote, &mut batch, summary, &mut progress, offset).await;
                break sent.and(Err(ClientError::usage(format!(
                    "cannot read {} after line {}: {error}",
                    args.file.display(),
                    summary.lines
                ))));
            }
        };
        summary.lines += 1;
        offset = line.offset;
        match line.request {
            Err(error) => summary.refused_here(line.number, line.id, error),
            Ok(request) if request.encoded_len() > MAX_ARTICLE_BYTES => summary.refused_here(
                line.number,
                line.id,
                LineError {
                    reason: "TOO_LARGE",
                    field: None,
                    message: format!(
                        "the article is {} bytes encoded: more than one message may carry \
                         under the server's default limit of 4 MiB",
                        request.encoded_len()
                    ),
                },
            ),
            Ok(request) => {
                if batch.is_empty() {
                    summary.unanswered_from = Some(line.number);
                    batch_bytes = 0;
                }
                batch_bytes += request.encoded_len();
                batch.push(Pending {
                    number: line.number,
                    id: line.id,
                    request,
                })
            }
        }
        if (batch.len() >= batch_size || batch_bytes >= BATCH_BYTES)
            && let Err(e) = send(&remote, &mut batch, summary, &mut progress, offset).await
        {
            break Err(e);
        }
    };
    progress.finish();
    result
}

/// The input and its size when known.
fn open(file: &PathBuf) -> Result<(Box<dyn Read + Send>, Option<u64>), ClientError> {
    if file.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let opened = std::fs::File::open(file)
        .map_err(|e| ClientError::usage(format!("cannot read {}: {e}", file.display())))?;
    let size = opened.metadata().ok().map(|m| m.len());
    Ok((Box::new(opened), size))
}

/// Reads, parses and identifies lines on a thread of its own, ahead of the batch being sent.
fn read_lines(input: Box<dyn Read + Send>, salt: &str, lines: &mpsc::Sender<Input>) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut bytes = Vec::new();
    let (mut number, mut offset) = (0, 0u64);
    loop {
        let (mut read, taken) =
            match crate::lines::read_line(&mut reader, MAX_LINE_BYTES, &mut bytes) {
                Ok(None) => return,
                Ok(Some(read)) => read,
                Err(e) => {
                    let _ = lines.blocking_send(Input::Failed(e.to_string()));
                    return;
                }
            };
        let too_long = taken != LineRead::Whole;
        if taken == (LineRead::TooLong { ended: false }) {
            // The rest of the line is skipped, not kept.
            match reader.skip_until(b'\n') {
                Ok(skipped) => read += skipped,
                Err(e) => {
                    let _ = lines.blocking_send(Input::Failed(e.to_string()));
                    return;
                }
            }
        }
        number += 1;
        offset += read as u64;
        let refused = |reason, message| {
            let refusal = LineError {
                reason,
                field: None,
                message,
            };
            (String::new(), Err(refusal))
        };
        let (id, request) = if too_long {
            refused(
                "TOO_LARGE",
                format!(
                    "the line is longer than {MAX_LINE_BYTES} bytes: no article one message \
                     can carry is written so long"
                ),
            )
        } else {
            match std::str::from_utf8(&bytes).map(|t| t.trim_start_matches('\u{feff}').trim()) {
                Err(e) => refused("NOT_UTF8", format!("the line is not UTF-8 text: {e}")),
                Ok("") => continue,
                Ok(text) => {
                    let request = parse_line(text).map(|article| PublishArticleRequest {
                        request_id: request_id(&article, salt),
                        article: Some(article),
                    });
                    let id = match &request {
                        Ok(r) => r.article.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
                        Err(_) => id_in(text),
                    };
                    (id, request)
                }
            }
        };
        let line = Line {
            number,
            offset,
            id,
            request,
        };
        if lines.blocking_send(Input::Line(Box::new(line))).is_err() {
            return;
        }
    }
}

/// The `id` of a line that is JSON but not a valid article, for the report.
fn id_in(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The request id of an article: the same article sent again gets the same one, so the
/// server answers a repeat with the first result and stores nothing twice. At most 36
/// characters, as the server requires.
fn request_id(article: &crate::grpc::proto::Article, salt: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"feedpub publish\0");
    hash.update(salt.as_bytes());
    hash.update([0]);
    hash.update(article.id.as_bytes());
    hash.update([0]);
    hash.update(article.encode_to_vec());
    format!("cli-{}", &hex::encode(hash.finalize())[..32])
}

/// Sends the batch as one PublishArticles call (again while the server is unavailable or
/// rate limits: the request ids make that safe) and records each article's result. The
/// articles the server could not store for a while (its database out of reach: a result
/// of `UNAVAILABLE`) are sent again, as a call would be, and recorded once answered
/// otherwise; still unavailable after the last attempt, they end the run as a call that
/// failed throughout does, for a run later to publish them and the lines after.
async fn send(
    remote: &Remote,
    batch: &mut Vec<Pending>,
    summary: &mut Summary,
    progress: &mut Progress,
    offset: u64,
) -> Result<(), ClientError> {
    let mut attempt = 0;
    while !batch.is_empty() {
        attempt += 1;
        let results = call(remote, batch, progress).await?;
        let (first, last) = lines_of(batch);
        summary.unanswered_from = None;
        let mut again = Vec::new();
        let mut wait: Option<(Duration, Status)> = None;
        for (pending, result) in batch.drain(..).zip(results) {
            let status = result.status.clone().unwrap_or_default();
            let status = Status::with_details(
                Code::from(status.code),
                status.message.clone(),
                status.encode_to_vec().into(),
            );
            match super::retry_delay(&status, attempt) {
                Some(delay) if status.code() == Code::Unavailable => {
                    summary.unanswered_from = summary.unanswered_from.or(Some(pending.number));
                    again.push(pending);
                    if wait.as_ref().is_none_or(|(longest, _)| delay > *longest) {
                        wait = Some((delay, status));
                    }
                }
                _ => summary.record(pending.number, pending.id, result),
            }
        }
        if let Some((_, status)) = wait.as_ref()
            && attempt >= super::ATTEMPTS
        {
            let (first, last) = lines_of(&again);
            return Err(ClientError::new(
                exit::UNREACHABLE,
                format!(
                    "the server could not store {} of lines {first}-{last} in {} attempts: {}",
                    again.len(),
                    super::ATTEMPTS,
                    super::one_line(status.message())
                ),
            ));
        }
        if let Some((delay, status)) = wait {
            progress.note(&format!(
                "{} of lines {first}-{last}: {}; sending them again in {:.1} s",
                again.len(),
                super::one_line(status.message()),
                delay.as_secs_f64()
            ));
            tokio::time::sleep(delay).await;
        }
        *batch = again;
    }
    progress.update(offset, summary);
    Ok(())
}

/// The numbers of the first and the last line of `batch`.
fn lines_of(batch: &[Pending]) -> (usize, usize) {
    (
        batch.first().map_or(0, |p| p.number),
        batch.last().map_or(0, |p| p.number),
    )
}

/// Sends `batch` as one PublishArticles call, again while the server is unavailable or rate
/// limits; one result for each of its articles.
async fn call(
    remote: &Remote,
    batch: &[Pending],
    progress: &Progress,
) -> Result<Vec<PublishArticleResult>, ClientError> {
    let messages = messages(batch);
    let (first, last) = lines_of(batch);
    let answer = remote
        .retrying(
            |mut client| {
                let request = remote.request(tokio_stream::iter(messages.clone()));
                async move { client.publish_articles(request).await }
            },
            |status, delay| {
                progress.note(&format!(
                    "lines {first}-{last}: {}; sending them again in {:.1} s",
                    super::one_line(&super::status_text(status)),
                    delay.as_secs_f64()
                ));
            },
        )
        .await;
    let results = match answer {
        Ok(answer) => answer.into_inner().results,
        Err(status) => {
            let error = remote.error(&status);
            return Err(match status.code() {
                // The server's call timeout cut the call short, again and again.
                Code::Cancelled | Code::DeadlineExceeded => ClientError::new(
                    error.code(),
                    format!("{error} (a smaller --batch-size makes shorter calls)"),
                ),
                _ => error,
            });
        }
    };
    if results.len() != batch.len() {
        return Err(ClientError::failed(format!(
            "the server answered {} results for the {} articles of lines {first}-{last}",
            results.len(),
            batch.len()
        )));
    }
    Ok(results)
}

/// The batch as stream messages of about [`MESSAGE_BYTES`] each.
fn messages(batch: &[Pending]) -> Vec<PublishArticlesRequest> {
    let mut messages = Vec::new();
    let mut current = PublishArticlesRequest::default();
    let mut bytes = 0;
    for pending in batch {
        let size = pending.request.encoded_len();
        if !current.requests.is_empty() && bytes + size > MESSAGE_BYTES {
            messages.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.requests.push(pending.request.clone());
    }
    if !current.requests.is_empty() {
        messages.push(current);
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::Article;

    /// A line longer than any article's is refused, and the lines after it are read; its
    /// bytes still count towards the offset a resumed publish starts from.
    #[test]
    fn a_line_too_long_for_any_article_is_refused_and_the_next_read() {
        let long = MAX_LINE_BYTES as u64 + 10;
        let valid = r#"{"id":"a-2","section":"politics","title":"T","content_text":"x"}"#;
        let input = std::io::repeat(b' ')
            .take(long)
            .chain(std::io::Cursor::new(format!("\n{valid}\n").into_bytes()));
        let (sender, mut receiver) = mpsc::channel(4);
        std::thread::spawn(move || read_lines(Box::new(input), "", &sender));
        let mut read = Vec::new();
        while let Some(Input::Line(line)) = receiver.blocking_recv() {
            read.push(*line);
        }
        assert_eq!(read.len(), 2);
        let error = read[0].request.as_ref().expect_err("refused");
        assert_eq!((read[0].number, error.reason), (1, "TOO_LARGE"));
        assert_eq!(read[0].offset, long + 1);
        assert_eq!(read[1].number, 2);
        assert_eq!(read[1].id, "a-2");
        assert!(read[1].request.is_ok());
    }

    fn pending(id: &str, body_bytes: usize) -> Pending {
        let article = Article {
            id: id.into(),
            content_text: "x".repeat(body_bytes),
            ..Default::default()
        };
        Pending {
            number: 1,
            id: id.into(),
            request: PublishArticleRequest {
                request_id: request_id(&article, ""),
                article: Some(article),
            },
        }
    }

    #[test]
    fn request_ids_follow_the_article_and_fit_the_server_limit() {
        let a = pending("a", 10).request;
        let again = pending("a", 10).request;
        let edited = pending("a", 11).request;
        assert_eq!(a.request_id, again.request_id);
        assert_ne!(a.request_id, edited.request_id);
        assert_eq!(a.request_id.len(), 36);
        let article = a.article.unwrap();
        assert_ne!(request_id(&article, ""), request_id(&article, "salt"));
    }

    #[test]
    fn a_batch_is_cut_into_messages_of_about_a_mebibyte_in_order() {
        let batch: Vec<_> = (0..10).map(|i| pending(&i.to_string(), 300_000)).collect();
        let messages = messages(&batch);
        assert_eq!(messages.len(), 4);
        let ids: Vec<_> = messages
            .iter()
            .flat_map(|m| &m.requests)
            .map(|r| r.article.as_ref().unwrap().id.clone())
            .collect();
        assert_eq!(ids, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(
            messages
                .iter()
                .all(|m| m.encoded_len() <= MESSAGE_BYTES + 1024)
        );
        let big = messages_of_one(pending("big", 3 << 20));
        assert_eq!(big, 1);
    }

    fn messages_of_one(p: Pending) -> usize {
        messages(&[p]).len()
    }
}
