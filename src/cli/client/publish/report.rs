//! What `feedpub publish` tells: a progress bar on stderr while it runs (a line now and
//! then when stderr is not a terminal), and a summary at the end: counts, then every
//! refused line with its number, the reason and the fields to blame, then the warnings.

use super::super::article_json::LineError;
use crate::cli::tell;
use crate::grpc::proto::PublishArticleResult;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::pb::{BadRequest, ErrorInfo};

/// Counts and problems of a publish.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Lines read (blank ones aside).
    pub lines: usize,
    /// New articles stored.
    pub published: usize,
    /// Articles whose content changed.
    pub updated: usize,
    /// Articles already stored as they are (also by an earlier, interrupted run).
    pub unchanged: usize,
    /// The refused lines, in line order.
    pub failures: Vec<Failure>,
    pub warnings: Vec<Warning>,
    /// The first line not handled when the run stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<usize>,
    /// The first line of the batch being sent, until the server answers it.
    #[serde(skip)]
    pub unanswered_from: Option<usize>,
}

/// A refused line.
#[derive(Debug, Serialize)]
pub struct Failure {
    pub line: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The gRPC code, e.g. `INVALID_ARGUMENT`; `LOCAL` when the line was never sent.
    pub code: String,
    /// The server's `ErrorInfo` reason, e.g. `INVALID_FIELD`, or the client's own.
    pub reason: String,
    /// The fields to blame, named as in the JSON line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
    pub message: String,
}

/// One field of a refused line and what is wrong with it.
#[derive(Debug, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub description: String,
}

/// Something the server changed or noticed in a stored article.
#[derive(Debug, Serialize)]
pub struct Warning {
    pub line: usize,
    pub id: String,
    pub warning: String,
}

impl Summary {
    /// How many lines were refused.
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    /// The counts on one line: "2 lines: 1 published, 0 updated, 1 unchanged, 0 failed".
    pub fn counts(&self) -> String {
        format!(
            "{} {}: {} published, {} updated, {} unchanged, {} failed",
            self.lines,
            if self.lines == 1 { "line" } else { "lines" },
            self.published,
            self.updated,
            self.unchanged,
            self.failed()
        )
    }

    /// A line refused before it was sent.
    pub fn refused_here(&mut self, line: usize, id: String, error: LineError) {
        self.failures.push(Failure {
            line,
            id,
            code: "LOCAL".to_owned(),
            reason: error.reason.to_owned(),
            fields: error
                .field
                .iter()
                .map(|field| FieldProblem {
                    field: field.clone(),
                    description: error.message.clone(),
                })
                .collect(),
            message: error.message,
        });
    }

    /// The server's result for the article of `line`.
    pub fn record(&mut self, line: usize, id: String, result: PublishArticleResult) {
        let status = result.status.unwrap_or_default();
        if status.code != Code::Ok as i32 {
            self.failures.push(failure(line, id, status));
            return;
        }
        for warning in result.warnings {
            // The server names fields by their path in the request; the line has no `article.`.
            let warning = warning
                .strip_prefix("article.")
                .map_or(warning.clone(), str::to_owned);
            self.warnings.push(Warning {
                line,
                id: id.clone(),
                warning,
            });
        }
        match (result.changed, result.version) {
            (false, _) => self.unchanged += 1,
            (true, 1) => self.published += 1,
            (true, _) => self.updated += 1,
        }
    }

    /// Prints the summary on stdout: text, or one JSON object.
    pub fn print(&mut self, json: bool) -> std::io::Result<()> {
        self.failures.sort_by_key(|f| f.line);
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut out, self)?;
            writeln!(out)?;
            return out.flush();
        }
        writeln!(out, "{}", self.counts())?;
        if let Some(line) = self.stopped_at {
            writeln!(
                out,
                "stopped at line {line}: it and the lines after it may not be published; \
                 run the same command again to finish"
            )?;
        }
        if !self.failures.is_empty() {
            writeln!(out, "failed:")?;
        }
        for f in &self.failures {
            writeln!(
                out,
                "  line {}{}: {}: {}",
                f.line,
                of(&f.id),
                f.reason,
                f.text()
            )?;
        }
        if !self.warnings.is_empty() {
            writeln!(out, "warnings:")?;
        }
        for w in &self.warnings {
            writeln!(out, "  line {}{}: {}", w.line, of(&w.id), w.warning)?;
        }
        out.flush()
    }
}

fn of(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" ({id})")
    }
}

impl Failure {
    /// The fields and what is wrong with them, else the message.
    fn text(&self) -> String {
        let described: Vec<_> = self
            .fields
            .iter()
            .filter(|f| !f.description.is_empty())
            .map(|f| format!("{}: {}", f.field, f.description))
            .collect();
        if described.is_empty() {
            self.message.clone()
        } else {
            described.join("; ")
        }
    }
}

/// A refusal from the server, with its reason and field violations read from the details.
fn failure(line: usize, id: String, status: tonic_types::pb::Status) -> Failure {
    let mut reason = String::new();
    let mut fields = Vec::new();
    for detail in &status.details {
        if detail.type_url.ends_with("/google.rpc.ErrorInfo") {
            if let Ok(info) = <ErrorInfo as prost::Message>::decode(&detail.value[..]) {
                reason = info.reason;
            }
        } else if detail.type_url.ends_with("/google.rpc.BadRequest")
            && let Ok(bad) = <BadRequest as prost::Message>::decode(&detail.value[..])
        {
            fields.extend(bad.field_violations.into_iter().map(|v| {
                FieldProblem {
                    // Paths are relative to the request: "article.title" is the line's "title".
                    field: v
                        .field
                        .strip_prefix("article.")
                        .unwrap_or(&v.field)
                        .to_owned(),
                    description: v.description,
                }
            }));
        }
    }
    let code = Code::from_i32(status.code);
    Failure {
        line,
        id,
        code: code_name(code),
        reason: if reason.is_empty() {
            code_name(code)
        } else {
            reason
        },
        fields,
        message: status.message,
    }
}

/// `INVALID_ARGUMENT` for `Code::InvalidArgument`.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The progress of a publish on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// When stderr is not a terminal: when the last line was written.
    last_line: Option<Instant>,
}

/// Time between two progress lines when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// A bar over `size` bytes of input (a spinner when the size is unknown) on a
    /// terminal, else occasional lines.
    pub fn new(size: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                last_line: Some(Instant::now()),
            };
        }
        let (bar, template) = match size {
            Some(size) => (
                ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr()),
                "{elapsed_precise} [{wide_bar}] {percent:>3}% ETA {eta}  {msg}",
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                "{spinner} {elapsed_precise} {bytes} read  {msg}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar: Some(bar),
            last_line: None,
        }
    }

    /// The input is handled through byte `offset`, with these results so far.
    pub fn update(&mut self, offset: u64, summary: &Summary) {
        if let Some(bar) = &self.bar {
            // Only the counts that are not zero, to leave the bar room on a narrow terminal.
            let counts = [
                (summary.published, "published"),
                (summary.updated, "updated"),
                (summary.unchanged, "unchanged"),
                (summary.failed(), "failed"),
            ];
            let counts: Vec<_> = counts
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            bar.set_position(offset);
            bar.set_message(counts.join(", "));
        } else if let Some(last) = self.last_line
            && last.elapsed() >= LINE_EVERY
        {
            tell(summary.counts());
            self.last_line = Some(Instant::now());
        }
    }

    /// A message above the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| tell(text)),
            None => tell(text),
        }
    }

    /// Takes the bar away.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    /// Also when the run stops half-way (Ctrl-C, an error): the summary replaces the bar.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_in_the_grpc_specification() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
    }

    #[test]
    fn results_are_counted_by_what_happened() {
        let mut summary = Summary::default();
        let ok = |changed, version| PublishArticleResult {
            status: Some(Default::default()),
            changed,
            version,
            ..Default::default()
        };
        summary.record(1, "a".into(), ok(true, 1));
        summary.record(2, "b".into(), ok(true, 2));
        summary.record(3, "c".into(), ok(false, 1));
        summary.record(
            4,
            "d".into(),
            PublishArticleResult {
                status: Some(tonic_types::pb::Status {
                    code: Code::NotFound as i32,
                    message: "gone".into(),
                    details: Vec::new(),
                }),
                ..Default::default()
            },
        );
        assert_eq!(
            (
                summary.published,
                summary.updated,
                summary.unchanged,
                summary.failed()
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(summary.failures[0].reason, "NOT_FOUND");
        assert_eq!(summary.failures[0].text(), "gone");
    }
}
