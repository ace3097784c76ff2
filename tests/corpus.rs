//! Feeds every reader shows right, whatever partners send (issue 3, items 1, 11 and 12):
//! a hostile corpus of more than 200 articles goes in over gRPC, and every feed that comes
//! out over HTTP is parsed by feed-rs, scanned for forbidden characters and live markup,
//! and kept under `target/feed-samples/` for the independent validators `.ci/run` calls
//! (`tests/validate_feeds.py`: lxml, feedparser, a JSON Feed 1.1 schema). The binary renders
//! byte-identical feeds and ETags from the same store under any time zone and locale.

#[path = "corpus/binary.rs"]
mod binary;
mod common;
#[path = "corpus/determinism.rs"]
mod determinism;
#[path = "corpus/edges.rs"]
mod edges;
#[path = "corpus/hostile.rs"]
mod hostile;
#[path = "corpus/inspect.rs"]
mod inspect;

use common::{TestServer, all_feed_paths, authed};
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{SectionGrant, SectionSlug};
use feedpub::grpc::proto::{self, PublishArticleRequest};
use feedpub::publishing;
use feedpub::storage::{SqliteStore, Store};
use hostile::{Case, Expect, PARTNERS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tonic::Code;
use tonic_types::StatusExt;

/// Where the feeds a test produced are kept for the validators of `.ci/validate-feeds`.
fn samples_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/feed-samples")
        .join(name)
}

/// Parses a feed with feed-rs as it is, without feed-rs's own HTML sanitising, so that what
/// the checks see is what feedpub published.
fn parse(bytes: &[u8]) -> Result<feed_rs::model::Feed, feed_rs::parser::ParseFeedError> {
    feed_rs::parser::Builder::new()
        .sanitize_content(false)
        .build()
        .parse(bytes)
}

/// A feed fetched over HTTP.
struct Fetched {
    path: String,
    bytes: Vec<u8>,
    feed: feed_rs::model::Feed,
}

/// GETs every feed path (all and every section, in the three formats), parses each with
/// feed-rs (which must succeed), checks what every feed must satisfy, and writes the bytes
/// to `dir/<scope>/<file>`. Problems are collected into `problems`.
async fn fetch_all(server: &TestServer, dir: &Path, problems: &mut Vec<String>) -> Vec<Fetched> {
    let _ = std::fs::remove_dir_all(dir);
    let mut fetched = Vec::new();
    for path in all_feed_paths() {
        let bytes = server.get_bytes(&path).await;
        let file = dir.join(path.trim_start_matches("/feeds/"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let feed = match parse(&bytes) {
            Ok(feed) => feed,
            Err(e) => {
                problems.push(format!("{path}: feed-rs cannot parse it: {e}"));
                continue;
            }
        };
        problems.extend(
            document_problems(&path, &bytes, &feed)
                .into_iter()
                .map(|p| format!("{path}: {p}")),
        );
        fetched.push(Fetched { path, bytes, feed });
    }
    fetched
}

/// What every feed document must satisfy whatever went in: UTF-8, no forbidden character
/// (raw or as an XML reference) anywhere, the JSON Feed version URL, and entry content with
/// nothing that could run script in a reader.
fn document_problems(path: &str, bytes: &[u8], feed: &feed_rs::model::Feed) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(text) = std::str::from_utf8(bytes) else {
        return vec!["not UTF-8".into()];
    };
    if path.ends_with(".json") {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => {
                if value["version"] != "https://jsonfeed.org/version/1.1" {
                    problems.push(format!("version is {}", value["version"]));
                }
                let mut strings = Vec::new();
                inspect::json_strings(&value, &mut strings);
                for s in strings {
                    if inspect::forbidden_count(&s) > 0 {
                        problems.push(format!("forbidden character in JSON string {s:.80?}"));
                    }
                }
            }
            Err(e) => problems.push(format!("not JSON: {e}")),
        }
    } else {
        problems.extend(inspect::forbidden_in_document(text));
    }
    for entry in &feed.entries {
        if let Some(body) = entry.content.as_ref().and_then(|c| c.body.as_ref()) {
            for problem in inspect::unsafe_markup(body) {
                problems.push(format!("entry {}: {problem}", entry.id));
            }
            for problem in inspect::forbidden_in_document(body) {
                problems.push(format!("entry {}: content holds {problem}", entry.id));
            }
        }
    }
    problems
}

/// What an accepted case must look like in every feed.
struct Shown {
    label: String,
    section: String,
    /// `None` when the field holds entity-like text (see `inspect::has_entity_like`).
    title: Option<String>,
    authors: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    /// The kicker (column name), which feeds may list as the first category.
    kicker: Option<String>,
}

/// Each name cleaned, the second of two equal ones dropped.
fn clean_names(raw: &[String]) -> Option<Vec<String>> {
    if raw.iter().any(|n| inspect::has_entity_like(n)) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for name in raw.iter().map(|n| inspect::name_line(n)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Some(names)
}

/// The fields of `article` holding forbidden characters, by the path warnings name them:
/// those that must be warned about (the character is there as sent), and those that may be
/// (a character reference to one, which ingest decodes in plain-text fields and removes).
fn fields_with_forbidden_characters(article: &proto::Article) -> (Vec<String>, Vec<String>) {
    let singles = [
        ("title", &article.title),
        ("subtitle", &article.subtitle),
        ("kicker", &article.kicker),
        ("summary", &article.summary),
        ("content_html", &article.content_html),
        ("content_text", &article.content_text),
    ]
    .map(|(name, value)| (format!("article.{name}"), value));
    let lists = [("authors", &article.authors), ("tags", &article.tags)]
        .into_iter()
        .flat_map(|(name, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, value)| (format!("article.{name}[{i}]"), value))
        });
    let (mut must, mut may) = (Vec::new(), Vec::new());
    for (field, value) in singles.into_iter().chain(lists) {
        if inspect::forbidden_count(value) > 0 {
            must.push(field);
        } else if inspect::refers_to_forbidden(value) {
            may.push(field);
        }
    }
    must.sort();
    (must, may)
}

/// When ingest derived the summary from a body whose text the test knows, checks that the
/// summary is that text's beginning, cut on a grapheme boundary (never inside an emoji
/// sequence, a combining sequence or a character) and marked with `…` when cut. `None` when
/// the test cannot tell; `Some(Ok(cut))` when the summary is right.
fn check_derived_summary(article: &proto::Article, summary: &str) -> Option<Result<bool, String>> {
    let plain = |t: &str| !t.contains(['<', '&']) && inspect::forbidden_count(t) == 0;
    let source = if !article.summary.is_empty() {
        return None;
    } else if !article.content_text.is_empty() && plain(&article.content_text) {
        article.content_text.clone()
    } else if let Some(inner) = article
        .content_html
        .strip_prefix("<p>")
        .and_then(|h| h.strip_suffix("</p>"))
        .filter(|inner| plain(inner))
    {
        inner.to_owned()
    } else {
        return None;
    };
    let folded = fold_as_a_summary(&source);
    // Direction controls a cut left open are closed at the end of the summary.
    let summary = summary.trim_end_matches(['\u{202c}', '\u{2069}']);
    let kept = match summary.strip_suffix('…') {
        Some(cut) => cut.trim_end(),
        None if summary == folded => return Some(Ok(false)),
        None => {
            return Some(Err(format!(
                "summary {summary:?} is not the body {folded:?}"
            )));
        }
    };
    let on_boundary =
        unicode_segmentation::UnicodeSegmentation::grapheme_indices(&folded[..], true)
            .any(|(at, _)| at == kept.len());
    if folded.starts_with(kept) && on_boundary {
        Some(Ok(true))
    } else {
        Some(Err(format!(
            "summary {summary:?} does not end on a grapheme boundary of {folded:?}"
        )))
    }
}

/// A body's text on one line, as a summary shows it: in NFC, every run of white space one
/// space, except a run with a line break (a line or paragraph separator too) between two
/// Chinese characters (ideographs, CJK
/// or full-width punctuation), which goes (CSS Text 3's segment break rule).
fn fold_as_a_summary(source: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let chinese = |c: char| matches!(c, '\u{3000}'..='\u{303f}' | '\u{4e00}'..='\u{9fff}' | '\u{ff00}'..='\u{ff60}');
    let source: String = source.nfc().collect();
    let mut folded = String::new();
    let mut rest = source.as_str();
    for word in source.split_whitespace() {
        let at = rest.find(word).unwrap_or(0);
        let gap = &rest[..at];
        rest = &rest[at + word.len()..];
        if !folded.is_empty() {
            let breaks = gap.contains(['\n', '\r', '\u{2028}', '\u{2029}']);
            let joins = breaks
                && folded.chars().next_back().is_some_and(chinese)
                && word.chars().next().is_some_and(chinese);
            if !joins {
                folded.push(' ');
            }
        }
        folded.push_str(word);
    }
    folded
}

/// The fields named by "removed … character(s)" warnings.
fn fields_warned_about_removals(warnings: &[String]) -> Vec<String> {
    let mut fields: Vec<String> = warnings
        .iter()
        // Of characters: relative URLs removed from a body without a base are warned of
        // too, and are no character.
        .filter(|w| w.contains("removed") && !w.contains("relative URL"))
        .filter_map(|w| w.split_once(':').map(|(field, _)| field.to_owned()))
        .collect();
    fields.sort();
    fields
}

/// Adds the partners `wire` (every section) and `campus` (features, party-building) to the
/// running server's store, and returns the token of every partner of [`PARTNERS`].
async fn partner_tokens(server: &TestServer) -> Vec<String> {
    let settings = Settings::parse("embedded sample", EMBEDDED_CONFIG, Overrides::default())
        .expect("the sample configuration loads");
    let store = SqliteStore::open(&server.dir.path().join("data"))
        .await
        .unwrap();
    let mut tokens = vec![server.tokens.newsroom.clone(), server.tokens.county.clone()];
    for partner in &PARTNERS[2..] {
        let grant = SectionGrant::Only(
            partner
                .sections
                .iter()
                .map(|s| SectionSlug::parse(s).unwrap())
                .collect(),
        );
        let (_, token) = publishing::add_partner(&store, &settings, partner.name, grant)
            .await
            .unwrap();
        tokens.push(token.expose().to_owned());
    }
    store.close().await;
    tokens
}

/// Checks the entries of every fetched feed against what the accepted cases must show.
fn entry_problems(
    fetched: &[Fetched],
    shown: &HashMap<String, Shown>,
    batch: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    for Fetched { path, feed, .. } in fetched {
        let scope = path
            .trim_start_matches("/feeds/")
            .split('/')
            .next()
            .unwrap();
        for guid in batch {
            let expected = &shown[guid];
            if (scope == "all" || scope == expected.section)
                && !feed.entries.iter().any(|e| &e.id == guid)
            {
                problems.push(format!("{path}: {:?} is missing", expected.label));
            }
        }
        for entry in &feed.entries {
            let Some(expected) = shown.get(&entry.id) else {
                continue;
            };
            let at = format!("{path}: {:?}", expected.label);
            let title = entry.title.as_ref().map(|t| t.content.as_str());
            if let Some(want) = &expected.title
                && title != Some(want.as_str())
            {
                problems.push(format!("{at}: title {title:?}, expected {want:?}"));
            }
            let authors: Vec<&str> = entry.authors.iter().map(|p| p.name.as_str()).collect();
            if let Some(want) = &expected.authors
                && authors != *want
            {
                problems.push(format!("{at}: authors {authors:?}, expected {want:?}"));
            }
            // The tags, in order, optionally after the kicker (column name).
            let terms: Vec<&str> = entry.categories.iter().map(|c| c.term.as_str()).collect();
            if let (Some(tags), Some(kicker)) = (&expected.tags, &expected.kicker) {
                let with_kicker: Vec<&str> = std::iter::once(kicker.as_str())
                    .filter(|k| !k.is_empty())
                    .chain(tags.iter().map(String::as_str))
                    .collect();
                if terms != *tags && terms != with_kicker {
                    problems.push(format!(
                        "{at}: categories {terms:?}, expected {with_kicker:?}"
                    ));
                }
            }
            if entry
                .content
                .as_ref()
                .and_then(|c| c.body.as_ref())
                .is_none()
            {
                problems.push(format!("{at}: no content"));
            }
        }
    }
    problems
}

/// Accepted articles published between two rounds of checks: every one of them is then
/// among the newest 50 of the `all` feeds and of its section's feeds.
const ROUND: usize = 40;

#[tokio::test]
async fn a_hostile_corpus_gives_valid_safe_feeds_with_the_expected_warnings_and_errors() {
    let server = TestServer::start().await;
    let tokens = partner_tokens(&server).await;
    let mut client = server.client().await;
    let cases = hostile::cases();
    let accepted = cases
        .iter()
        .filter(|c| c.expect == Expect::Accepted)
        .count();
    assert!(
        cases.len() >= 200 && accepted >= 200,
        "{} cases",
        cases.len()
    );

    let samples = samples_dir("corpus");
    let _ = std::fs::remove_dir_all(&samples);
    let mut problems = Vec::new();
    let mut shown: HashMap<String, Shown> = HashMap::new();
    let mut round: Vec<String> = Vec::new();
    let mut rounds = 0;
    let mut cut_summaries = 0;
    for (i, case) in cases.iter().enumerate() {
        let Case {
            label,
            partner,
            article,
            expect,
        } = case;
        let request = authed(
            &tokens[*partner],
            PublishArticleRequest {
                article: Some(article.clone()),
                ..Default::default()
            },
        );
        let outcome = client.publish_article(request).await;
        match (expect, outcome) {
            (Expect::Accepted, Ok(response)) => {
                let response = response.into_inner();
                let stored = response.article.expect("the stored article");
                let (want_warned, may_warn) = fields_with_forbidden_characters(article);
                let mut warned = fields_warned_about_removals(&response.warnings);
                warned.retain(|field| !may_warn.contains(field));
                if warned != want_warned {
                    problems.push(format!(
                        "{label:?}: removal warnings name {warned:?}, expected {want_warned:?} ({:?})",
                        response.warnings
                    ));
                }
                let expected = Shown {
                    label: label.clone(),
                    section: article.section.clone(),
                    title: (!inspect::has_entity_like(&article.title))
                        .then(|| inspect::clean_line(&article.title)),
                    authors: clean_names(&article.authors),
                    tags: clean_names(&article.tags),
                    kicker: (!inspect::has_entity_like(&article.kicker))
                        .then(|| inspect::clean_line(&article.kicker)),
                };
                match check_derived_summary(article, &stored.summary) {
                    Some(Ok(true)) => cut_summaries += 1,
                    Some(Err(problem)) => problems.push(format!("{label:?}: {problem}")),
                    _ => {}
                }
                if let Some(title) = &expected.title
                    && &stored.title != title
                {
                    problems.push(format!(
                        "{label:?}: stored title {:?}, expected {title:?}",
                        stored.title
                    ));
                }
                shown.insert(stored.guid.clone(), expected);
                round.push(stored.guid);
            }
            (Expect::Invalid(field), Err(status)) => {
                let fields: Vec<String> = status
                    .get_details_bad_request()
                    .map(|d| d.field_violations.into_iter().map(|v| v.field).collect())
                    .unwrap_or_default();
                if status.code() != Code::InvalidArgument
                    || !fields.iter().any(|f| f == field)
                    || !status.message().contains(field)
                {
                    problems.push(format!(
                        "{label:?}: expected INVALID_ARGUMENT naming {field}, got {:?} {:?} {fields:?}",
                        status.code(),
                        status.message()
                    ));
                }
            }
            (Expect::Accepted, Err(status)) => problems.push(format!(
                "{label:?}: refused with {:?} {:?}",
                status.code(),
                status.message()
            )),
            (Expect::Invalid(field), Ok(_)) => problems.push(format!(
                "{label:?}: accepted, expected {field} to be refused"
            )),
        }
        if round.len() == ROUND || (i + 1 == cases.len() && !round.is_empty()) {
            rounds += 1;
            server.settle().await;
            let dir = samples.join(format!("round-{rounds:02}"));
            let fetched = fetch_all(&server, &dir, &mut problems).await;
            problems.extend(entry_problems(&fetched, &shown, &round));
            round.clear();
        }
    }
    assert!(rounds >= 5, "{rounds} rounds of checks");
    assert!(
        cut_summaries >= 20,
        "only {cut_summaries} cut summaries checked"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) in the hostile corpus:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn the_sample_edition_feeds_are_kept_for_the_validators() {
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    let mut problems = Vec::new();
    let fetched = fetch_all(&server, &samples_dir("sample-edition"), &mut problems).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let all = fetched
        .iter()
        .find(|f| f.path == "/feeds/all/rss.xml")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&all.bytes).contains("右玉县农旅融合助力乡村振兴"),
        "the rural report is in the all feed"
    );
    assert_eq!(
        all.feed.entries.len(),
        6,
        "every visible article of the page"
    );
}
