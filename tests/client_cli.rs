//! End-to-end tests of the partner client: the real `feedpub` binary's `publish`, `get`,
//! `list` and `retract` against a real `feedpub serve` (and one in-process server over TLS),
//! checked through the gRPC API and the feeds.

mod common;

use common::binary::{
    DEADLINE, Running, ServeOptions, ServeProcess, feedpub, full_disk, run, run_within, text,
};
use common::{TestServer, Tokens, authed};
use feedpub::grpc::proto::{self, GetArticleRequest, ListArticlesRequest};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tonic::Code;

/// How long a publish of thousands of articles may take: a debug build on a busy machine is
/// slow, and this is no benchmark.
const LARGE: Duration = Duration::from_secs(240);

/// A `feedpub serve` with the partners `newsroom` and `county`, in a folder of its own.
struct Setup {
    dir: TempDir,
    _server: ServeProcess,
    running: Running,
    tokens: Tokens,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let tokens = common::add_partners(&data_dir).await;
    let mut server = ServeProcess::start(ServeOptions::new(&data_dir, &dir.path().join("feeds")));
    let running = server.wait_ready();
    Setup {
        dir,
        _server: server,
        running,
        tokens,
    }
}

impl Setup {
    fn server(&self) -> String {
        format!("http://{}", self.running.grpc)
    }

    /// `feedpub ARGS… --server URL --token NEWSROOM`.
    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = feedpub(self.dir.path());
        cmd.args(args)
            .args(["--server", &self.server(), "--token", &self.tokens.newsroom]);
        cmd
    }

    /// Writes `lines` to a file in the test's folder and returns its path.
    fn file(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    /// Every article of `newsroom`, through ListArticles page after page.
    async fn stored(&self) -> Vec<proto::Article> {
        let mut client = self.running.client().await;
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_articles(authed(
                    &self.tokens.newsroom,
                    ListArticlesRequest {
                        page_size: 500,
                        page_token,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.articles);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }

    async fn get(&self, id: &str) -> Result<proto::Article, tonic::Status> {
        self.running
            .client()
            .await
            .get_article(authed(
                &self.tokens.newsroom,
                GetArticleRequest {
                    id: id.into(),
                    version: 0,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }
}

/// `count` articles made from the sample edition, as JSON lines in the documented shape:
/// each page article again and again, with ids and titles numbered, one minute apart.
fn edition_lines(count: usize) -> Vec<String> {
    let edition = feedpub::demo::sample_edition();
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (0..count)
        .map(|n| {
            let a = &edition[n % edition.len()];
            let seconds = a.publish_time.unwrap().seconds - 60 * n as i64;
            let publish = chrono::DateTime::from_timestamp(seconds, 0)
                .unwrap()
                .with_timezone(&beijing)
                .to_rfc3339();
            json!({
                "id": format!("{}-{n}", a.id),
                "section": a.section,
                "title": format!("{}（{n}）", a.title),
                "subtitle": a.subtitle,
                "kicker": a.kicker,
                "authors": a.authors,
                "tags": a.tags,
                "content_text": a.content_text,
                "publish_time": publish,
            })
            .to_string()
        })
        .collect()
}

/// The summary `publish --json` printed, after checking the exit code.
fn summary(output: &Output, code: i32) -> Value {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)))
}

/// published, updated, unchanged, failed.
fn counts(summary: &Value) -> [u64; 4] {
    let n = |k: &str| summary[k].as_u64().unwrap_or(u64::MAX);
    [
        n("published"),
        n("updated"),
        n("unchanged"),
        summary["failures"].as_array().map_or(0, Vec::len) as u64,
    ]
}

/// The body of `url` once `ready` accepts it.
async fn body_when(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body = response.text().await.unwrap();
        if ready(&body) {
            return body;
        }
        assert!(start.elapsed() < DEADLINE, "{url} never got ready:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn thousands_of_articles_are_published_once_and_found_unchanged_the_second_time() {
    let setup = setup().await;
    let lines = edition_lines(3000);
    let file = setup.file("edition.jsonl", &lines);
    let file = file.to_str().unwrap();

    // 700 per call: five calls, the last one short.
    let first = run_within(
        &mut setup.client(&["publish", file, "--batch-size", "700"]),
        LARGE,
    );
    let stdout = common::binary::stdout_of(&first);
    assert_eq!(
        stdout.lines().next(),
        Some("3000 lines: 3000 published, 0 updated, 0 unchanged, 0 failed"),
        "{stdout}"
    );

    let stored = setup.stored().await;
    assert_eq!(stored.len(), 3000);
    assert!(stored.iter().all(|a| a.version == 1));
    let newest = stored.iter().find(|a| a.section == "politics").unwrap();
    assert_eq!(newest.id, "2023-06-07-daji-sicai-lanwa-1");
    assert_eq!(
        newest.title,
        "何向荣主持召开全市打击私采滥挖工作推进会（1）"
    );
    assert_eq!(newest.authors, ["赵福胜"]);
    // "2023-06-07T06:58:00+08:00": one minute before the sample's own time.
    assert_eq!(newest.publish_time.unwrap().seconds, 1_686_092_280);
    body_when(&setup.running.url("/feeds/politics/feed.json"), |b| {
        b.contains("何向荣主持召开全市打击私采滥挖工作推进会（1）")
    })
    .await;

    let again = run_within(&mut setup.client(&["publish", file, "--json"]), LARGE);
    assert_eq!(counts(&summary(&again, 0)), [0, 0, 3000, 0]);
    assert_eq!(setup.stored().await.len(), 3000);
}

#[tokio::test]
async fn bad_lines_are_reported_with_their_number_and_field_and_the_rest_is_stored() {
    let setup = setup().await;
    let good = |id: &str| {
        json!({"id": id, "section": "politics", "title": "研讨会召开",
               "content_text": "本报讯 6月6日，研讨会召开。",
               "publish_time": "2023-06-07T07:00:00+08:00"})
        .to_string()
    };
    let lines = [
        good("good-1"),
        r#"{"id": "broken", "title": "#.to_owned(),
        json!({"id": "untitled", "section": "politics", "content_text": "正文。",
               "publish_time": "2023-06-07T07:00:00+08:00"})
        .to_string(),
        json!({"id": "long", "section": "politics", "title": "长".repeat(501),
               "content_text": "正文。", "publish_time": "2023-06-07T07:00:00+08:00"})
        .to_string(),
        json!({"id": "when", "section": "politics", "title": "T", "content_text": "正文。",
               "publish_time": "7 June 2023"})
        .to_string(),
        String::new(),
        json!({"id": "typo", "titel": "T"}).to_string(),
        good("good-2"),
        // Over the 4 MiB a message may carry: refused before it is sent.
        json!({"id": "huge", "section": "politics", "title": "T",
               "content_text": "长".repeat(1_500_000),
               "publish_time": "2023-06-07T07:00:00+08:00"})
        .to_string(),
    ];
    let file = setup.file("mixed.jsonl", &lines);
    let file = file.to_str().unwrap();

    let output = run(&mut setup.client(&["publish", file]));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = text(&output.stdout);
    assert!(
        report.starts_with("8 lines: 2 published, 0 updated, 0 unchanged, 6 failed"),
        "{report}"
    );
    for expected in [
        "line 2: INVALID_JSON: EOF while parsing",
        "line 3 (untitled): INVALID_FIELD: title: is required",
        "line 4 (long): INVALID_FIELD: title: ",
        "line 5 (when): INVALID_FIELD: publish_time: is not an RFC 3339 time",
        "line 7 (typo): INVALID_FIELD: titel: unknown field `titel`",
        "line 9 (huge): TOO_LARGE: the article is ",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }

    let output = run(&mut setup.client(&["publish", file, "--json"]));
    let summary = summary(&output, 1);
    assert_eq!(counts(&summary), [0, 0, 2, 6]);
    let failures = summary["failures"].as_array().unwrap();
    let at = |line: u64| {
        failures
            .iter()
            .find(|f| f["line"] == line)
            .unwrap_or_else(|| panic!("no failure of line {line}: {summary}"))
    };
    assert_eq!(at(3)["code"], "INVALID_ARGUMENT");
    assert_eq!(at(3)["fields"][0]["field"], "title");
    assert_eq!(at(4)["reason"], "INVALID_FIELD");
    assert_eq!(at(4)["fields"][0]["field"], "title");
    assert!(
        at(4)["fields"][0]["description"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{}",
        at(4)
    );
    assert_eq!(at(2)["reason"], "INVALID_JSON");

    for id in ["good-1", "good-2"] {
        assert_eq!(setup.get(id).await.unwrap().version, 1);
    }
    for id in ["untitled", "long", "when", "huge"] {
        assert_eq!(setup.get(id).await.unwrap_err().code(), Code::NotFound);
    }
}

#[tokio::test]
async fn a_publish_killed_part_way_is_finished_by_running_it_again() {
    let setup = setup().await;
    let lines = edition_lines(2000);
    let file = setup.file("edition.jsonl", &lines);

    // The same lines through a pipe, of which the client gets 1250: two calls of 500 are
    // made, 250 lines wait for more input when the client is killed.
    let mut client = setup
        .client(&["publish", "-", "--batch-size", "500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all((lines[..1250].join("\n") + "\n").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let last_sent = "2023-06-07-shaoxiandui-zongshu-999";
    let start = Instant::now();
    while setup.get(last_sent).await.is_err() {
        assert!(start.elapsed() < LARGE, "line 1000 was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.kill().unwrap();
    client.wait().unwrap();
    drop(stdin);
    assert_eq!(setup.stored().await.len(), 1000);

    let output = run_within(
        &mut setup.client(&["publish", file.to_str().unwrap(), "--json"]),
        LARGE,
    );
    let summary = summary(&output, 0);
    assert_eq!(counts(&summary), [1000, 0, 1000, 0], "{summary}");
    let stored = setup.stored().await;
    assert_eq!(stored.len(), 2000);
    assert!(
        stored.iter().all(|a| a.version == 1),
        "an article was stored twice"
    );
    let mut ids: Vec<_> = stored.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2000);
}

#[tokio::test]
async fn ctrl_c_stops_a_publish_with_a_summary_of_what_was_done_and_exit_code_130() {
    a_signal_stops_a_publish_with_a_summary("INT", 130, "interrupted").await;
}

#[tokio::test]
async fn sigterm_stops_a_publish_with_a_summary_of_what_was_done_and_exit_code_143() {
    a_signal_stops_a_publish_with_a_summary("TERM", 143, "terminated").await;
}

#[tokio::test]
async fn sighup_stops_a_publish_with_a_summary_of_what_was_done_and_exit_code_129() {
    a_signal_stops_a_publish_with_a_summary("HUP", 129, "hung up").await;
}

/// `signal` stops a publish mid-way: the summary of what was done and where to start
/// again is printed, the exit code is the shell's for the signal, and a second run
/// finishes the work.
async fn a_signal_stops_a_publish_with_a_summary(signal: &str, code: i32, says: &str) {
    let setup = setup().await;
    let lines = edition_lines(30);
    let mut client = setup
        .client(&["publish", "-", "--batch-size", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all((lines[..25].join("\n") + "\n").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    while setup
        .get("2023-06-07-shaoxiandui-zongshu-19")
        .await
        .is_err()
    {
        assert!(start.elapsed() < DEADLINE, "line 20 was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(client.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    // The input stays open until the client is gone: closed at once, its end could reach
    // the client before the signal does, and lines 21-25 be sent as a last batch.
    let output = client.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
    // The first call's answer is counted, unless the signal came between the server's
    // commit and the client's reading of the answer. The client counts the lines it had
    // read: the first batch's 20, or up to the 25 written, as its reader got to them.
    let report = text(&output.stdout);
    let read = report
        .split_once(" lines: ")
        .and_then(|(count, _)| count.parse::<usize>().ok())
        .unwrap_or(0);
    assert!((20..=25).contains(&read), "{report}");
    let rest = report.split_once(" lines: ").map_or("", |(_, rest)| rest);
    let answered = rest.starts_with("20 published, 0 updated, 0 unchanged, 0 failed")
        && report.contains("stopped at line 21:");
    let unanswered = rest.starts_with("0 published, 0 updated, 0 unchanged, 0 failed")
        && report.contains("stopped at line 1:");
    assert!(answered || unanswered, "{report}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("feedpub: {says}: run the same command again")),
        "{stderr}"
    );

    let file = setup.file("all.jsonl", &lines);
    let output = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [10, 0, 20, 0]);
}

#[tokio::test]
async fn a_publish_of_a_file_killed_wherever_it_was_is_finished_by_running_it_again() {
    let setup = setup().await;
    let lines = edition_lines(1500);
    let file = setup.file("edition.jsonl", &lines);
    let file = file.to_str().unwrap();

    // Killed as soon as anything is stored: wherever the client was (reading, sending,
    // waiting for an answer), the rerun must come out right.
    let mut client = setup
        .client(&["publish", file, "--batch-size", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = "2023-06-07-xingfu-xinlinli-0";
    let start = Instant::now();
    while setup.get(first).await.is_err() {
        assert!(start.elapsed() < LARGE, "nothing was ever stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.kill().unwrap();
    client.wait().unwrap();
    let before = setup.stored().await.len() as u64;
    assert!(before >= 1);

    let output = run_within(&mut setup.client(&["publish", file, "--json"]), LARGE);
    let [published, updated, unchanged, failed] = counts(&summary(&output, 0));
    assert_eq!((updated, failed), (0, 0));
    assert_eq!(published + unchanged, 1500);
    // A batch the server was storing when the client died is stored all the same.
    assert!(
        unchanged >= before,
        "{unchanged} unchanged, {before} stored before"
    );
    let stored = setup.stored().await;
    assert_eq!(stored.len(), 1500);
    assert!(stored.iter().all(|a| a.version == 1));
}

#[tokio::test]
async fn get_list_and_retract_round_trip_and_an_edited_get_is_published_as_a_correction() {
    let setup = setup().await;
    let lines = edition_lines(7);
    let file = setup.file("page.jsonl", &lines);
    let published = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&published, 0)), [7, 0, 0, 0]);

    // list: newest first, human rows or JSON lines, by section, with a limit.
    let rows = common::binary::stdout_of(&run(&mut setup.client(&["list"])));
    assert_eq!(rows.lines().count(), 7, "{rows}");
    assert!(
        rows.lines()
            .next()
            .unwrap()
            .contains("2023-06-07-xingfu-xinlinli-0")
    );
    let politics = common::binary::stdout_of(&run(&mut setup.client(&[
        "list",
        "--section",
        "politics",
        "--json",
    ])));
    let politics: Vec<Value> = politics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(politics.len(), 3);
    assert!(politics.iter().all(|a| a["section"] == "politics"));
    let limited = run(&mut setup.client(&["list", "--limit", "3"]));
    assert_eq!(common::binary::stdout_of(&limited).lines().count(), 3);
    assert!(text(&limited.stderr).contains("--limit 0"));

    // get --json, published back unchanged: nothing changes.
    let id = "2023-06-07-daji-sicai-lanwa-1";
    let got = common::binary::stdout_of(&run(&mut setup.client(&["get", id, "--json"])));
    let mut article: Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(article["version"], 1);
    assert_eq!(article["state"], "published");
    let v1_etag = article["etag"].as_str().unwrap().to_owned();
    let same = setup.file("same.jsonl", &[got.trim().to_owned()]);
    let output = run(&mut setup.client(&["publish", same.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [0, 0, 1, 0]);

    // Every field a partner sets survives the trip: an article with all of them (but
    // update_time, which a stored line leaves to the server), read back with get --json
    // and published again, is unchanged.
    let rich = json!({
        "id": "rich-1", "section": "rural", "kicker": "乡村振兴", "title": "农旅融合",
        "subtitle": "右玉县：", "authors": ["刘淑花", "王文"], "tags": ["农旅", "右玉"],
        "summary": "右玉县推进农旅融合。", "canonical_url": "https://example.com/rich-1",
        "language": "zh-CN", "content_html": "<p>右玉县<b>推进</b>农旅融合。</p>",
        "publish_time": "2023-06-07T06:00:00+08:00",
        "expire_time": "2099-01-01T00:00:00Z",
        "embargo_time": "2023-06-07T06:30:00.250+08:00",
        "media": [{"url": "https://example.com/a.jpg", "mime_type": "image/jpeg",
                   "length": 48213, "caption": "田间", "width": 1200, "height": 800}]
    });
    let file = setup.file("rich.jsonl", &[rich.to_string()]);
    let output = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [1, 0, 0, 0]);
    let got = common::binary::stdout_of(&run(&mut setup.client(&["get", "rich-1", "--json"])));
    let got_json: Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(got_json["media"], rich["media"]);
    assert_eq!(got_json["embargo_time"], "2023-06-06T22:30:00.250Z");
    let file = setup.file("rich-again.jsonl", &[got.trim().to_owned()]);
    let output = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [0, 0, 1, 0]);

    // A text edited in what get --json printed (no HTML, the summary made from the stored
    // text): the summary is made from the edit, as the HTML is.
    let plain = json!({
        "id": "text-1", "section": "rural", "title": "供暖",
        "content_text": "本报讯 全市供暖面积达5000万平方米。",
        "publish_time": "2023-06-07T06:00:00+08:00"
    });
    let file = setup.file("text.jsonl", &[plain.to_string()]);
    run(&mut setup.client(&["publish", file.to_str().unwrap()]));
    let got = common::binary::stdout_of(&run(&mut setup.client(&["get", "text-1", "--json"])));
    let mut edited: Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(edited["summary"], "本报讯 全市供暖面积达5000万平方米。");
    assert_eq!(edited.get("content_html"), None, "{edited}");
    edited["content_text"] = json!("本报讯 全市供暖面积达4800万平方米。");
    let file = setup.file("text-edited.jsonl", &[edited.to_string()]);
    let output = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [0, 1, 0, 0]);
    let stored = setup.get("text-1").await.unwrap();
    assert_eq!(stored.summary, "本报讯 全市供暖面积达4800万平方米。");

    // People read times in their own zone, and an article still to come as scheduled.
    let ahead = json!({
        "id": "sched-1", "section": "rural", "title": "预告", "content_text": "正文。",
        "publish_time": "2099-01-01T08:00:00+08:00"
    });
    let file = setup.file("sched.jsonl", &[ahead.to_string()]);
    run(&mut setup.client(&["publish", file.to_str().unwrap()]));
    let human =
        common::binary::stdout_of(&run(setup.client(&["get", "sched-1"]).env("TZ", "CST-8")));
    assert!(human.contains("state           scheduled\n"), "{human}");
    assert!(
        human.contains("publish_time    2099-01-01T08:00:00+08:00\n"),
        "{human}"
    );
    let rows = common::binary::stdout_of(&run(setup
        .client(&["list", "--section", "rural"])
        .env("TZ", "UTC0")));
    assert!(
        rows.lines()
            .any(|r| r.starts_with("2099-01-01T00:00:00+00:00  scheduled") && r.contains("sched-1")),
        "{rows}"
    );

    // Edited: a correction, version 2, with the time of the edit.
    article["title"] = json!("何向荣主持召开全市打击私采滥挖工作推进会（更正）");
    let corrected = setup.file("corrected.jsonl", &[article.to_string()]);
    let output = run(&mut setup.client(&["publish", corrected.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&output, 0)), [0, 1, 0, 0]);
    let stored = setup.get(id).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored.title,
        "何向荣主持召开全市打击私采滥挖工作推进会（更正）"
    );
    assert!(
        stored.update_time.unwrap().seconds > stored.publish_time.unwrap().seconds,
        "the correction kept the old update_time"
    );
    let human = common::binary::stdout_of(&run(&mut setup.client(&["get", id])));
    assert!(
        human.contains("（更正）") && human.contains("version         2"),
        "{human}"
    );
    let old = common::binary::stdout_of(&run(&mut setup.client(&[
        "get",
        id,
        "--version",
        "1",
        "--json",
    ])));
    let old: Value = serde_json::from_str(old.trim()).unwrap();
    assert_eq!(
        old["title"],
        "何向荣主持召开全市打击私采滥挖工作推进会（1）"
    );

    // Another edit of the same read: its etag precondition fails, nothing changes.
    article["title"] = json!("另一处修改");
    let stale = setup.file("stale.jsonl", &[article.to_string()]);
    let output = run(&mut setup.client(&["publish", stale.to_str().unwrap(), "--json"]));
    let failed = summary(&output, 1);
    assert_eq!(failed["failures"][0]["reason"], "ETAG_MISMATCH", "{failed}");
    assert_eq!(setup.get(id).await.unwrap().version, 2);

    // Retract: refused with the old etag, done with the current one.
    let refused = run(&mut setup.client(&["retract", id, "--etag", &v1_etag]));
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("ETAG_MISMATCH"));
    let etag = setup.get(id).await.unwrap().etag;
    let retracted =
        run(&mut setup.client(&["retract", id, "--etag", &etag, "--reason", "重复稿件"]));
    assert!(common::binary::stdout_of(&retracted).starts_with(&format!("retracted {id}")));
    let stored = setup.get(id).await.unwrap();
    assert_eq!(stored.state, proto::ArticleState::Retracted as i32);
    assert_eq!(stored.retract_reason, "重复稿件");
    // Retracted again with another reason: the first is kept, and said, and the audit
    // log records the one given again beside it.
    let again = run(&mut setup.client(&["retract", id, "--reason", "数据有误"]));
    assert!(
        common::binary::stdout_of(&again)
            .trim_end()
            .ends_with("reason: 重复稿件"),
        "{}",
        text(&again.stdout)
    );
    let audit = common::binary::stdout_of(&run(feedpub(setup.dir.path())
        .args(["audit", "--limit", "1", "--data-dir"])
        .arg(setup.dir.path().join("data"))));
    assert!(
        audit.contains("重复稿件 (retracted already; the reason given again, not kept: 数据有误)"),
        "{audit}"
    );
    body_when(&setup.running.url("/feeds/politics/feed.json"), |b| {
        !b.contains(id) && b.contains("2023-06-07-gonglu-guihua-tiaozheng-2")
    })
    .await;
}

#[tokio::test]
async fn content_replaced_within_a_day_comes_back_only_with_new_request_ids() {
    let setup = setup().await;
    let version = |title: &str| {
        json!({"id": "a-1", "section": "politics", "title": title, "content_text": "正文。",
               "publish_time": "2023-06-07T07:00:00+08:00"})
        .to_string()
    };
    let a = setup.file("a.jsonl", &[version("A")]);
    let b = setup.file("b.jsonl", &[version("B")]);
    let publish = |file: &PathBuf, extra: &[&str]| {
        let mut args = vec!["publish", file.to_str().unwrap(), "--json"];
        args.extend(extra);
        counts(&summary(&run(&mut setup.client(&args)), 0))
    };
    assert_eq!(publish(&a, &[]), [1, 0, 0, 0]);
    assert_eq!(publish(&b, &[]), [0, 1, 0, 0]);
    // The server answers A's request id with its first result and stores nothing.
    assert_eq!(publish(&a, &[]), [0, 0, 1, 0]);
    assert_eq!(setup.get("a-1").await.unwrap().title, "B");
    assert_eq!(publish(&a, &["--new-request-ids"]), [0, 1, 0, 0]);
    let stored = setup.get("a-1").await.unwrap();
    assert_eq!((stored.title.as_str(), stored.version), ("A", 3));
}

#[tokio::test]
async fn a_missing_or_refused_token_and_an_unreachable_server_each_end_in_one_line_and_a_code() {
    let setup = setup().await;
    let one_line = |output: &Output, code: i32, expected: &str| {
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "no {expected:?} in {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let lines = edition_lines(3);
    let file = setup.file("page.jsonl", &lines);
    let file = file.to_str().unwrap();
    let server = setup.server();

    let output = run(feedpub(setup.dir.path()).args(["publish", file, "--server", &server]));
    one_line(&output, 3, "no token");
    let output = run(feedpub(setup.dir.path()).args([
        "publish",
        file,
        "--server",
        &server,
        "--token",
        "fp_not-a-token",
    ]));
    one_line(&output, 3, "refused the token");
    let output = run(feedpub(setup.dir.path())
        .args(["get", "x", "--server", &server])
        .env("FEEDPUB_TOKEN", "fp_not-a-token"));
    one_line(&output, 3, "refused the token");
    assert_eq!(setup.stored().await.len(), 0);

    // The token from the environment works.
    let output = run(feedpub(setup.dir.path())
        .args(["publish", file, "--server", &server])
        .env("FEEDPUB_TOKEN", &setup.tokens.newsroom));
    assert!(common::binary::stdout_of(&output).starts_with("3 lines: 3 published"));

    // A port nobody listens on: port 1 (tcpmux), below the range the other tests' servers
    // draw from, so no test binds it between here and the connection, as one could a port
    // picked and freed.
    let output = run(feedpub(setup.dir.path()).args([
        "list",
        "--server",
        "http://127.0.0.1:1",
        "--token",
        &setup.tokens.newsroom,
    ]));
    one_line(&output, 4, "cannot reach the server");

    // https:// to the API that takes no TLS: the scheme to use.
    let output = run(feedpub(setup.dir.path()).args([
        "list",
        "--server",
        &server.replace("http://", "https://"),
        "--token",
        &setup.tokens.newsroom,
    ]));
    one_line(
        &output,
        4,
        "the server answers without TLS there: give http://",
    );

    // The feeds' HTTP address, mistaken for the API's: it answers, but not in gRPC.
    let feeds = format!("http://{}", setup.running.http);
    for args in [&["list"][..], &["get", "x"], &["watch", "--limit", "1"]] {
        let output = run(feedpub(setup.dir.path()).args(args).args([
            "--server",
            &feeds,
            "--token",
            &setup.tokens.newsroom,
        ]));
        one_line(&output, 4, "does not answer in gRPC (HTTP 404 Not Found");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("the feeds' address"), "{stderr}");
    }

    let output = run(&mut setup.client(&["publish", "missing.jsonl"]));
    one_line(&output, 2, "cannot read missing.jsonl");
    let output = run(&mut setup.client(&["get", "nowhere"]));
    one_line(&output, 1, "ARTICLE_NOT_FOUND");
    let output = run(&mut setup.client(&["get", "x", "--server", "ftp://example.com"]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_publishes_over_tls_to_a_server_it_trusts_through_ca_cert() {
    let pki = common::pki::pki();
    let files = pki.files.clone();
    let server = TestServer::start_with(|settings| settings.server.tls = Some(files)).await;
    let ca = server.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let lines = edition_lines(7);
    let file = server.dir.path().join("page.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let url = format!("https://127.0.0.1:{}", server.grpc_addr.port());
    let token = server.tokens.newsroom.clone();
    let run_client = |args: Vec<String>| {
        let cwd = server.dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || run(feedpub(&cwd).args(args)))
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--server".into(),
            url.clone(),
            "--token".into(),
            token.clone(),
        ]);
        all
    };

    let file = file.to_str().unwrap();
    let ca = ca.to_str().unwrap();
    let output = run_client(args(&["publish", file, "--ca-cert", ca]))
        .await
        .unwrap();
    assert!(
        common::binary::stdout_of(&output).starts_with("7 lines: 7 published"),
        "{}",
        text(&output.stderr)
    );
    let mut client = tls_client(server.grpc_addr, &pki.ca_pem).await;
    let got = client
        .get_article(authed(
            &server.tokens.newsroom,
            GetArticleRequest {
                id: "2023-06-07-xingfu-xinlinli-0".into(),
                version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.authors, ["武跃林"]);

    // Without the CA, the certificate is not trusted: the server is not reached.
    let output = run_client(args(&["get", "2023-06-07-xingfu-xinlinli-0"]))
        .await
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot reach the server")
            && stderr.contains("no CA this client trusts signed the server's certificate"),
        "{stderr}"
    );

    // Plain HTTP/2 to the TLS port: unreachable as such, with the scheme to use.
    let plain = format!("http://127.0.0.1:{}", server.grpc_addr.port());
    let output = run_client(vec![
        "get".into(),
        "2023-06-07-xingfu-xinlinli-0".into(),
        "--server".into(),
        plain,
        "--token".into(),
        server.tokens.newsroom.clone(),
    ])
    .await
    .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("if it takes TLS, give https://"),
        "{stderr}"
    );
}

/// A server whose certificate is self-signed and marked as a CA's (`openssl req -x509`'s
/// default), given to the client as its CA, is refused with a message that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_certificate_on_the_server_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let files = common::pki::self_signed_ca_for_a_server(dir.path());
    let ca = files.cert.clone();
    let server = TestServer::start_with(|settings| settings.server.tls = Some(files)).await;
    let url = format!("https://127.0.0.1:{}", server.grpc_addr.port());
    let (cwd, token) = (
        server.dir.path().to_path_buf(),
        server.tokens.newsroom.clone(),
    );
    let output = tokio::task::spawn_blocking(move || {
        run(feedpub(&cwd)
            .args(["list", "--server", &url, "--token", &token, "--ca-cert"])
            .arg(&ca))
    })
    .await
    .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("basicConstraints=critical,CA:FALSE"),
        "{stderr}"
    );
}

/// A PublisherService client over TLS to `addr`, trusting `ca_pem`.
async fn tls_client(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> proto::publisher_service_client::PublisherServiceClient<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    proto::publisher_service_client::PublisherServiceClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refused_over_the_rate_limit_are_sent_again_when_the_server_says() {
    // One call a second: the client's token check takes it, each batch then waits its turn.
    let server = TestServer::start_with(|settings| {
        settings.limits.requests_per_second = std::num::NonZeroU32::new(1).unwrap();
        settings.limits.burst = std::num::NonZeroU32::new(1).unwrap();
    })
    .await;
    let file = server.dir.path().join("page.jsonl");
    std::fs::write(&file, edition_lines(15).join("\n")).unwrap();
    let mut cmd = feedpub(server.dir.path());
    cmd.args(["publish", file.to_str().unwrap(), "--batch-size", "5"])
        .args(["--server", &format!("http://{}", server.grpc_addr)])
        .args(["--token", &server.tokens.newsroom]);
    let output = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    let stdout = common::binary::stdout_of(&output);
    assert!(
        stdout.starts_with("15 lines: 15 published, 0 updated, 0 unchanged, 0 failed"),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("rate limit") && stderr.contains("sending them again"),
        "{stderr}"
    );
    // The test is held to the same limit: it waits its turn as the server says.
    let mut client = server.client().await;
    let start = Instant::now();
    let page = loop {
        let answer = client
            .list_articles(authed(
                &server.tokens.newsroom,
                ListArticlesRequest {
                    page_size: 50,
                    ..Default::default()
                },
            ))
            .await;
        match answer {
            Ok(page) => break page.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(start.elapsed() < DEADLINE, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    assert_eq!(page.articles.len(), 15);
}

/// `list --json --limit 0` of everything, published again, does not bring a retracted
/// article back: its line is refused, naming `state`, and the others are published.
#[tokio::test]
async fn a_retracted_article_read_back_is_not_published_again_unless_its_state_is_removed() {
    let setup = setup().await;
    let file = setup.file("page.jsonl", &edition_lines(3));
    let published = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    assert_eq!(counts(&summary(&published, 0)), [3, 0, 0, 0]);
    let id = "2023-06-07-xingfu-xinlinli-0";
    common::binary::stdout_of(&run(&mut setup.client(&["retract", id])));
    let listed =
        common::binary::stdout_of(&run(&mut setup.client(&["list", "--json", "--limit", "0"])));
    let lines: Vec<String> = listed.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{listed}");

    let again = setup.file("again.jsonl", &lines);
    let output = run(&mut setup.client(&["publish", again.to_str().unwrap(), "--json"]));
    let report = summary(&output, 1);
    assert_eq!(counts(&report), [0, 0, 2, 1], "{report}");
    let failure = report["failures"][0].to_string();
    assert!(
        failure.contains("state") && failure.contains("remove"),
        "{failure}"
    );
    let stored = setup.get(id).await.unwrap();
    assert_eq!(stored.state, proto::ArticleState::Retracted as i32);

    // Without its state, the line publishes the article again, as documented.
    let retracted = lines.iter().find(|l| l.contains(id)).unwrap();
    let mut line: Value = serde_json::from_str(retracted).unwrap();
    line.as_object_mut().unwrap().remove("state");
    let file = setup.file("republish.jsonl", &[line.to_string()]);
    let output = run(&mut setup.client(&["publish", file.to_str().unwrap(), "--json"]));
    summary(&output, 0);
    let stored = setup.get(id).await.unwrap();
    assert_eq!(stored.state, proto::ArticleState::Published as i32);
}

/// `feedpub watch` prints each event as it is stored (a JSON line with `--json`), stops
/// after `--limit`, and a watch given the cursor of an event printed goes on after it.
#[tokio::test]
async fn watch_prints_events_as_they_come_and_resumes_after_a_cursor() {
    let setup = setup().await;
    let (child, stderr) =
        start_watch(setup.client(&["watch", "--json", "--limit", "2", "--section", "politics"]));
    for (id, section) in [("rural-elsewhere", "rural"), ("watched-1", "politics")] {
        publish_brief(&setup.running, &setup.tokens, id, section).await;
    }
    let mut client = setup.running.client().await;
    let token = &setup.tokens.newsroom;
    let request = proto::RetractArticleRequest {
        id: "watched-1".into(),
        reason: "测试".into(),
        ..Default::default()
    };
    client
        .retract_article(authed(token, request))
        .await
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "published");
    assert_eq!(lines[0]["partner"], "newsroom");
    assert_eq!(
        lines[0]["article"]["id"], "watched-1",
        "only the section asked for"
    );
    assert_eq!(lines[0]["article"]["title"], "快讯 watched-1");
    assert_eq!(lines[1]["type"], "retracted");
    assert_eq!(lines[1]["article"]["state"], "retracted");
    // Retracted copy is told as which article it was, not what it said.
    assert_eq!(lines[1]["article"]["id"], "watched-1");
    assert_eq!(lines[1]["article"]["title"], "", "{}", lines[1]);
    // Stopped by its limit, it says where to continue: after the last event printed.
    let said = stderr.join().unwrap();
    let resume = format!("pass --cursor {}", lines[1]["cursor"].as_str().unwrap());
    assert!(said.contains(&resume), "{said}");

    // From the first event's cursor: the second, and nothing before it.
    let cursor = lines[0]["cursor"].as_str().unwrap();
    let resumed = run(&mut setup.client(&[
        "watch",
        "--json",
        "--limit",
        "1",
        "--section",
        "politics",
        "--cursor",
        cursor,
    ]));
    assert!(resumed.status.success(), "{resumed:?}");
    let again: Value = serde_json::from_str(text(&resumed.stdout).trim()).unwrap();
    assert_eq!(again, lines[1]);
    // Human-readable by default: the event's type, section, id and title on one line (a
    // retraction has no title to show).
    let plain = run(&mut setup.client(&["watch", "--limit", "1", "--cursor", cursor]));
    let line = text(&plain.stdout);
    for part in ["retracted", "newsroom", "politics", "watched-1"] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!line.contains("快讯"), "{line}");
}

/// A command whose output cannot be written (a full disk) fails with one line saying so
/// and exit code 1, as the operator commands do: not 2, which says the command line or the
/// input file was wrong.
#[tokio::test]
async fn a_client_command_that_cannot_write_its_output_says_so_with_exit_code_1() {
    let setup = setup().await;
    let file = setup.file("page.jsonl", &edition_lines(2));
    let file = file.to_str().unwrap();
    let said = |args: &[&str], output: Output| {
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write the"), "{args:?}: {stderr}");
    };
    // The first article of the file, which the publish stores before its summary is lost.
    let first = format!("{}-0", feedpub::demo::sample_edition()[0].id);
    for args in [&["publish", file][..], &["list"], &["get", &first]] {
        let output = setup.client(args).stdout(full_disk()).output().unwrap();
        said(args, output);
    }
    // A watch fails at its first event.
    let (mut watch, stderr) = start_watch_into(setup.client(&["watch"]), full_disk());
    publish_brief(&setup.running, &setup.tokens, "watched-1", "politics").await;
    let rest = stderr.join().unwrap();
    let status = watch.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    // Where to continue (the event not written comes again from there), then why it ended.
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 2, "{rest}");
    assert!(lines[0].contains("pass --cursor "), "{rest}");
    assert!(
        lines[1].starts_with("feedpub: cannot write the output: "),
        "{rest}"
    );
}

/// A watch outlives a restart of the server: it opens the stream again after the last
/// event it printed, and goes on with what comes after, nothing missed or repeated.
// Several threads: `stop` blocks this one while the server closes this test's idle gRPC
// connection, which another thread must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_goes_on_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let feeds_dir = dir.path().join("feeds");
    let tokens = common::add_partners(&data_dir).await;
    // A port of its own, that the server listens on again after its restart.
    let grpc_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let options = || ServeOptions {
        grpc_addr: Some(grpc_addr),
        ..ServeOptions::new(&data_dir, &feeds_dir)
    };
    let mut server = ServeProcess::start(options());
    let running = server.wait_ready();
    let mut watch = feedpub(dir.path());
    watch
        .args(["watch", "--json", "--limit", "2"])
        .args(["--server", &format!("http://{grpc_addr}")])
        .args(["--token", &tokens.newsroom]);
    let (mut child, _stderr) = start_watch(watch);
    publish_brief(&running, &tokens, "before-restart", "politics").await;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["article"]["id"], "before-restart");

    server.stop();
    let mut server = ServeProcess::start(options());
    let running = server.wait_ready();
    publish_brief(&running, &tokens, "after-restart", "politics").await;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let second: Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(second["type"], "published");
    assert_eq!(second["article"]["id"], "after-restart");
    drop(server);
}

/// Starts a `feedpub watch` and returns once its stream is open (it says so on stderr):
/// only then is a publish sure to come after its start. With it, the rest of its stderr,
/// once it has ended.
fn start_watch(command: Command) -> (std::process::Child, std::thread::JoinHandle<String>) {
    start_watch_into(command, Stdio::piped())
}

/// [`start_watch`] writing its events to `stdout`.
fn start_watch_into(
    mut command: Command,
    stdout: Stdio,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = command
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(
        first.starts_with("feedpub: watching from cursor "),
        "{first}"
    );
    // Read as it comes (retries, the cursor at the end): a pipe left full or closed would
    // fail the writes.
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    (child, rest)
}

/// Publishes a short article (a [`common::brief`] titled `快讯 {id}`) as `newsroom`.
async fn publish_brief(running: &Running, tokens: &Tokens, id: &str, section: &str) {
    let request = proto::PublishArticleRequest {
        article: Some(proto::Article {
            section: section.into(),
            ..common::brief(id, &format!("快讯 {id}"))
        }),
        ..Default::default()
    };
    let mut client = running.client().await;
    client
        .publish_article(authed(&tokens.newsroom, request))
        .await
        .unwrap();
}

/// Stopped by SIGTERM (as `kill`, systemd and CI stop a process), a watch says the cursor to
/// continue from and exits 143, as a shell reports it.
#[tokio::test]
async fn a_watch_stopped_by_a_signal_says_where_to_continue() {
    let setup = setup().await;
    let (child, stderr) = start_watch(setup.client(&["watch", "--json"]));
    publish_brief(&setup.running, &setup.tokens, "signalled", "politics").await;
    let pid = child.id().to_string();
    let output = {
        let mut child = child;
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        (line, child.wait().unwrap())
    };
    let (line, status) = output;
    assert_eq!(status.code(), Some(143), "{status:?}");
    let event: Value = serde_json::from_str(&line).unwrap();
    let said = stderr.join().unwrap();
    let resume = format!("pass --cursor {}", event["cursor"].as_str().unwrap());
    assert!(said.contains(&resume), "{said}");
}
