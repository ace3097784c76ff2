//! What a person sees: the index page and a styled feed, loaded in headless Chromium
//! (Debian's `chromium`, installed by `.ci/run`).

mod common;

use common::TestServer;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The only console message allowed: Chromium's notice that XSLT is deprecated.
const XSLT_DEPRECATION: &str = "XSLT Processing Instructions have been deprecated";

/// The page's DOM after load, and every console message, from headless Chromium.
fn load(url: &str, profile: &Path) -> (String, Vec<String>) {
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Both pipes are read while Chromium runs, so that a page or a log larger than a pipe's
    // buffer cannot block it.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let Ok(output) = finished.recv_timeout(Duration::from_secs(60)) else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("chromium did not finish loading {url}");
    };
    let output = output.unwrap();
    assert!(output.status.success(), "chromium failed on {url}");
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8(output.stdout).unwrap(), console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_and_a_styled_feed_show_the_chinese_headlines_without_console_errors() {
    if !Path::new(CHROMIUM).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium");
        eprintln!("skipped: {CHROMIUM} is not installed (apt-get install chromium)");
        return;
    }
    let server = TestServer::start().await;
    server.publish_sample_edition().await;
    let profile = tempfile::tempdir().unwrap();
    let pages = [
        ("/", "<h1>朔州日报</h1>"),
        ("/feeds/all/rss.xml", "<h1>朔州日报</h1>"),
        ("/feeds/rural/atom.xml", "<h1>朔州日报 · 乡村振兴</h1>"),
    ];
    for (path, heading) in pages {
        let url = server.url(path);
        let (dom, console) = tokio::task::spawn_blocking({
            let profile = profile.path().to_owned();
            move || load(&url, &profile)
        })
        .await
        .unwrap();
        assert!(dom.contains(heading), "{path}: {dom}");
        if path.starts_with("/feeds/") {
            // The transformed document, not raw XML: entries, the note for people, bylines.
            assert!(
                dom.contains("<article>") && dom.contains("这是一个订阅源"),
                "{path}: {dom}"
            );
            assert!(dom.contains(" · 刘磊 · 张智宙"), "{path}: {dom}");
        }
        assert!(dom.contains("右玉县农旅融合助力乡村振兴"), "{path}: {dom}");
        assert!(!dom.contains("&lt;p&gt;"), "{path}: markup shown as text");
        let unexpected: Vec<_> = console
            .iter()
            .filter(|l| !l.contains(XSLT_DEPRECATION))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{path}: console messages {unexpected:#?}"
        );
    }
}
