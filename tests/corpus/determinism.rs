//! Determinism (issue 3, item 11): the same store renders byte-identical feeds and ETags
//! under `TZ=UTC` and `TZ=Asia/Shanghai`, whatever the locale.

use super::{binary, parse};
use crate::common::all_feed_paths;
use crate::common::binary::{DEADLINE, Running, ServeOptions, ServeProcess};
use feedpub::demo::sample_edition;
use feedpub::grpc::proto;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the feed server answers for one path and `Accept-Encoding`.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    etag: String,
    last_modified: String,
    content_type: String,
    bytes: Vec<u8>,
}

/// Every feed path in every coding, once the demo's articles are all in.
async fn answers(served: &Running) -> BTreeMap<String, Answer> {
    let http = reqwest::Client::new();
    let mut answers = BTreeMap::new();
    for path in all_feed_paths() {
        for coding in ["identity", "gzip", "br"] {
            let response = http
                .get(served.url(&path))
                .header("accept-encoding", coding)
                .send()
                .await
                .unwrap();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let answer = Answer {
                status: response.status().as_u16(),
                etag: header("etag"),
                last_modified: header("last-modified"),
                content_type: header("content-type"),
                bytes: Vec::new(),
            };
            let bytes = response.bytes().await.unwrap().to_vec();
            answers.insert(format!("{path} ({coding})"), Answer { bytes, ..answer });
        }
    }
    answers
}

/// Waits until every feed shows the final state of the demo's store: each scope lists all
/// its visible sample articles, and every feed's `Last-Modified` has moved off the epoch
/// (the `notices` feeds list nothing, but their date moves when the expired notice is stored).
async fn wait_for_demo_feeds(served: &Running) {
    let visible: Vec<proto::Article> = sample_edition()
        .into_iter()
        .filter(|a| a.expire_time.is_none())
        .collect();
    let deadline = Instant::now() + DEADLINE;
    for path in all_feed_paths() {
        let scope = path
            .trim_start_matches("/feeds/")
            .split('/')
            .next()
            .unwrap();
        let mut want: Vec<&str> = visible
            .iter()
            .filter(|a| scope == "all" || a.section == scope)
            .map(|a| a.title.as_str())
            .collect();
        want.sort();
        loop {
            let response = reqwest::get(served.url(&path)).await.unwrap();
            let modified = response
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
            let bytes = response.bytes().await.unwrap();
            let mut titles: Vec<String> = parse(&bytes)
                .map(|f| {
                    f.entries
                        .into_iter()
                        .filter_map(|e| e.title.map(|t| t.content))
                        .collect()
                })
                .unwrap_or_default();
            titles.sort();
            if titles == want
                && modified.is_some_and(|m| m.timestamp() > 0)
                && settled(served).await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never showed the sample edition: {titles:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// True once every change is in the feeds and their files, compressed with the full levels
/// (`feedpub_feeds_settled`): a feed is served as soon as it is rendered, and compressed
/// (fast during a burst, then again fully) afterwards.
async fn settled(served: &Running) -> bool {
    let http = reqwest::Client::new();
    crate::common::metric(&http, &served.url("/metrics"), "feedpub_feeds_settled").await == 1.0
}

/// `feedpub serve --demo` on free ports with `root/data` and `root/feeds`, in `root` (which
/// holds no `feedpub.toml`, so the embedded sample configuration applies), with `env` set.
fn serve_demo(root: &Path, env: &[(&str, &str)]) -> (ServeProcess, Running) {
    let mut server = ServeProcess::start(ServeOptions {
        args: &["--demo"],
        env,
        ..ServeOptions::new(&root.join("data"), &root.join("feeds"))
    });
    let running = server.wait_ready();
    (server, running)
}

#[tokio::test]
async fn the_same_store_renders_identical_feeds_and_etags_in_any_time_zone_and_locale() {
    let first = tempfile::tempdir().unwrap();
    let (mut utc, on_utc) = serve_demo(
        first.path(),
        &[("TZ", "UTC"), ("LANG", "C"), ("LC_ALL", "C")],
    );
    let changed = utc.wait_for_log("the demo's publication", |l| {
        l.contains("sample edition published")
            .then(|| l.contains("stored=7"))
    });
    assert!(changed, "a fresh store takes the whole sample edition");
    wait_for_demo_feeds(&on_utc).await;
    let utc_answers = answers(&on_utc).await;
    // Stopped first: a server writes what it serves before it exits.
    utc.stop();
    let utc_files = binary::files_under(&utc.feeds_dir);

    // The second server reads a copy of the first one's store (the same stored times), in
    // another time zone and locale, into an empty feeds folder; its `--demo` finds every
    // article already there and changes nothing.
    let second = tempfile::tempdir().unwrap();
    binary::copy_folder(&first.path().join("data"), &second.path().join("data"));
    let (mut shanghai, on_shanghai) = serve_demo(
        second.path(),
        &[
            ("TZ", "Asia/Shanghai"),
            ("LANG", "zh_CN.UTF-8"),
            ("LC_ALL", "zh_CN.UTF-8"),
        ],
    );
    let changed = shanghai.wait_for_log("the demo's publication", |l| {
        l.contains("sample edition published")
            .then(|| l.contains("stored=0"))
    });
    assert!(changed, "publishing the same edition again changes nothing");
    wait_for_demo_feeds(&on_shanghai).await;
    let shanghai_answers = answers(&on_shanghai).await;
    // Stopped first: a server writes what it serves before it exits.
    shanghai.stop();
    let shanghai_files = binary::files_under(&shanghai.feeds_dir);

    assert_eq!(utc_answers.len(), 18 * 3);
    for (key, utc) in &utc_answers {
        let other = &shanghai_answers[key];
        assert_eq!(utc.status, 200, "{key}");
        assert!(!utc.etag.is_empty(), "{key}: no ETag");
        assert_eq!(utc.etag, other.etag, "{key}: ETag");
        assert_eq!(
            utc.last_modified, other.last_modified,
            "{key}: Last-Modified"
        );
        assert_eq!(utc.content_type, other.content_type, "{key}: Content-Type");
        assert!(
            utc.bytes == other.bytes,
            "{key}: the bytes differ between TZ=UTC and TZ=Asia/Shanghai:\n{}\n---\n{}",
            String::from_utf8_lossy(&utc.bytes),
            String::from_utf8_lossy(&other.bytes)
        );
    }
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&utc_files),
        names(&shanghai_files),
        "the files in feeds/"
    );
    for ((name, utc), (_, other)) in utc_files.iter().zip(&shanghai_files) {
        assert!(utc == other, "feeds/{name} differs between the two runs");
    }
    assert!(
        utc_files.iter().any(|(name, _)| name.ends_with("rss.xml")),
        "{:?}",
        names(&utc_files)
    );
}
