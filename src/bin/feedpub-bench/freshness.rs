//! Freshness (issue 6 item 3): the time from a PublishArticle answer to the first moment
//! an HTTP GET of the section feed shows the new entry.
//!
//! A poller GETs the feed every millisecond with `If-None-Match`; for every new version it notes
//! when its headers arrived and which benchmark titles it holds. Publishes are spawned
//! open-loop at their scheduled times (1,000/s, many in flight), then one at a time, each
//! waiting until the previous one is shown. An article pushed out of the 50-item feed before
//! any version showed it counts as never shown: it is slower than any figure, so it enters
//! the percentiles as infinitely late.

use crate::Mode;
use crate::fixture::{FEED_PATH, Fixture, SECTION, timestamp};
use crate::report::{Figure, Target};
use anyhow::Context;
use feedpub::grpc::proto::PublishArticleRequest;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Marks a benchmark title: `〔FP-<key>〕`, where the key is unique across runs.
const MARK_OPEN: &str = "〔FP-";
const MARK_CLOSE: char = '〕';
/// How long to wait for an article to show before calling it never shown.
const SHOW_TIMEOUT: Duration = Duration::from_secs(5);

/// What the poller has seen: the first time each key was shown.
#[derive(Default)]
struct Seen {
    first: Mutex<HashMap<String, Instant>>,
    versions: Mutex<u64>,
    changed: Notify,
    stop: AtomicBool,
}

impl Seen {
    fn at(&self, key: &str) -> Option<Instant> {
        self.first.lock().expect("seen lock").get(key).copied()
    }

    /// Waits until `key` is shown, or `deadline` passes.
    async fn wait_for(&self, key: &str, deadline: Instant) -> Option<Instant> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(at) = self.at(key) {
                return Some(at);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, changed).await;
        }
    }
}

/// One run: the open-loop phase, then the one-in-flight phase.
pub async fn run(fixture: &Fixture, mode: &Mode, run: usize) -> anyhow::Result<Vec<Figure>> {
    let before = regeneration_totals(fixture).await;
    let seen = Arc::new(Seen::default());
    let poller = tokio::spawn(poll(
        fixture.http.clone(),
        fixture.url(FEED_PATH),
        seen.clone(),
        mode.poll_interval,
    ));
    let result = async {
        fixture.profile(true)?;
        let figures = measure(fixture, mode, run, &seen).await;
        fixture.profile(false)?;
        figures
    }
    .await;
    seen.stop.store(true, Ordering::SeqCst);
    let polled = poller.await.context("the poller panicked")?;
    let mut figures = result?;
    polled?;
    // Where the time goes: feedpub's own regeneration timings over this run, when it
    // exports them.
    let after = regeneration_totals(fixture).await;
    for feed in [SECTION, "all"] {
        if let (Some(b), Some(a)) = (before.get(feed), after.get(feed))
            && a.1 > b.1
        {
            figures.push(Figure {
                name: format!("Freshness: mean regeneration of feeds/{feed}/ (3 formats)"),
                unit: "ms",
                feedpub: (a.0 - b.0) / (a.1 - b.1) * 1000.0,
                peer: None,
                target: Target::Info,
            });
        }
    }
    Ok(figures)
}

/// Per feed, the sum of seconds and the count of regenerations from feedpub's `/metrics`
/// (`feedpub_feed_regeneration_seconds`); empty when it is not exported.
pub async fn regeneration_totals(fixture: &Fixture) -> HashMap<String, (f64, f64)> {
    let mut totals: HashMap<String, (f64, f64)> = HashMap::new();
    let Ok(response) = fixture.http.get(fixture.url("/metrics")).send().await else {
        return totals;
    };
    if response.status() != StatusCode::OK {
        return totals;
    }
    let text = response.text().await.unwrap_or_default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("feedpub_feed_regeneration_seconds_") else {
            continue;
        };
        let Some((kind, rest)) = rest.split_once("{feed=\"") else {
            continue;
        };
        let Some((feed, value)) = rest.split_once("\"}") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = totals.entry(feed.to_owned()).or_default();
        match kind {
            "sum" => entry.0 = value,
            "count" => entry.1 = value,
            _ => {}
        }
    }
    totals
}

async fn measure(
    fixture: &Fixture,
    mode: &Mode,
    run: usize,
    seen: &Seen,
) -> anyhow::Result<Vec<Figure>> {
    // The poller must hold the current version before the first publish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *seen.versions.lock().expect("versions lock") == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the poller never got the feed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Open loop: publish i is sent at start + i / rate, whatever the previous ones do.
    let n = mode.fresh_publishes;
    let period = Duration::from_secs(1) / mode.fresh_rate;
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{}-L{i:05}", run + 1);
        let mut article = fixture.article(
            format!("fresh-{key}"),
            &format!(" {MARK_OPEN}{key}{MARK_CLOSE}"),
            i,
        );
        let mut client = fixture.client.clone();
        tokio::time::sleep_until((start + period * i as u32).into()).await;
        tasks.push(tokio::spawn(async move {
            article.publish_time = Some(timestamp(SystemTime::now()));
            let sent = Instant::now();
            let answer = client
                .publish_article(PublishArticleRequest {
                    article: Some(article),
                    ..Default::default()
                })
                .await;
            (key, sent, Instant::now(), answer.map(|_| ()))
        }));
    }
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        let (key, sent, answered, result) = task.await?;
        result.with_context(|| format!("PublishArticle {key} failed"))?;
        answers.push((key, sent, answered));
    }
    let first_sent = answers.iter().map(|a| a.1).min().expect("n > 0");
    let last_sent = answers.iter().map(|a| a.1).max().expect("n > 0");
    let achieved = (n - 1) as f64 / (last_sent - first_sent).as_secs_f64().max(1e-9);
    let mut rpc_ms: Vec<f64> = answers.iter().map(|a| ms(a.2 - a.1)).collect();

    // Wait until every article has shown, or nothing new has shown for SHOW_TIMEOUT.
    let last_answer = answers.iter().map(|a| a.2).max().expect("n > 0");
    for (key, _, _) in &answers {
        if seen
            .wait_for(key, last_answer + SHOW_TIMEOUT)
            .await
            .is_none()
        {
            break;
        }
    }
    let mut early = 0;
    let mut loaded: Vec<f64> = answers
        .iter()
        .map(|(key, _, answered)| match seen.at(key) {
            Some(at) if at < *answered => {
                early += 1;
                0.0
            }
            Some(at) => ms(at - *answered),
            None => f64::INFINITY,
        })
        .collect();
    let never = loaded.iter().filter(|l| l.is_infinite()).count();
    let mut shown: Vec<f64> = loaded.iter().copied().filter(|l| l.is_finite()).collect();
    fixture.ensure_running()?;

    // One in flight: publish, wait until shown, next.
    let before = regeneration_totals(fixture).await;
    let mut single = Vec::with_capacity(mode.fresh_sequential);
    for i in 0..mode.fresh_sequential {
        let key = format!("{}-S{i:05}", run + 1);
        let article = fixture.article(
            format!("fresh-{key}"),
            &format!(" {MARK_OPEN}{key}{MARK_CLOSE}"),
            i,
        );
        fixture
            .client
            .clone()
            .publish_article(PublishArticleRequest {
                article: Some(article),
                ..Default::default()
            })
            .await
            .with_context(|| format!("PublishArticle {key} failed"))?;
        let answered = Instant::now();
        single.push(match seen.wait_for(&key, answered + SHOW_TIMEOUT).await {
            Some(at) => ms(at.saturating_duration_since(answered)),
            None => f64::INFINITY,
        });
    }
    // What each of those publishes cost in regenerations, over every feed it touched.
    let after = regeneration_totals(fixture).await;
    let (mut regenerations, mut seconds) = (0.0, 0.0);
    for (feed, (sum, count)) in &after {
        let (sum0, count0) = before.get(feed).copied().unwrap_or_default();
        seconds += sum - sum0;
        regenerations += count - count0;
    }
    let publishes = mode.fresh_sequential.max(1) as f64;
    let versions = *seen.versions.lock().expect("versions lock");
    eprintln!(
        "freshness run {}: {n} publishes at {achieved:.0}/s, {never} never shown, {early} shown \
         before their answer arrived; {} one at a time; {versions} feed versions polled",
        run + 1,
        mode.fresh_sequential
    );

    let rate = mode.fresh_rate;
    let info = |name: String, unit, value| Figure {
        name,
        unit,
        feedpub: value,
        peer: None,
        target: Target::Info,
    };
    let mut figures = vec![
        info(
            format!("Freshness at {rate}/s: p50"),
            "ms",
            percentile(&mut loaded, 50.0),
        ),
        Figure {
            target: Target::AtMost(50.0),
            ..info(
                format!("Freshness at {rate}/s: p99"),
                "ms",
                percentile(&mut loaded, 99.0),
            )
        },
        info(
            format!("Freshness at {rate}/s: max"),
            "ms",
            percentile(&mut loaded, 100.0),
        ),
        info(
            format!("Freshness at {rate}/s: p50 of the articles shown"),
            "ms",
            percentile(&mut shown, 50.0),
        ),
        info(
            format!("Freshness at {rate}/s: never shown"),
            "articles",
            never as f64,
        ),
        info(
            format!("Freshness at {rate}/s: publish rate reached"),
            "/s",
            achieved,
        ),
        info(
            format!("Freshness at {rate}/s: PublishArticle p99"),
            "ms",
            percentile(&mut rpc_ms, 99.0),
        ),
        info(
            "Freshness, 1 in flight: p50".into(),
            "ms",
            percentile(&mut single, 50.0),
        ),
        info(
            "Freshness, 1 in flight: p99".into(),
            "ms",
            percentile(&mut single, 99.0),
        ),
        info(
            "Freshness, 1 in flight: max".into(),
            "ms",
            percentile(&mut single, 100.0),
        ),
    ];
    if regenerations > 0.0 {
        figures.push(info(
            "Freshness, 1 in flight: feeds regenerated per publish".into(),
            "feeds",
            regenerations / publishes,
        ));
        figures.push(info(
            "Freshness, 1 in flight: regeneration time per publish, all feeds".into(),
            "ms",
            seconds * 1000.0 / publishes,
        ));
    }
    Ok(figures)
}

/// GETs the feed back to back (or `interval` apart) with the last ETag until told to stop,
/// recording when each benchmark title first showed.
async fn poll(
    http: reqwest::Client,
    url: String,
    seen: Arc<Seen>,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut etag: Option<reqwest::header::HeaderValue> = None;
    while !seen.stop.load(Ordering::SeqCst) {
        let mut request = http.get(&url);
        if let Some(tag) = &etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, tag.clone());
        }
        let response = request.send().await.context("polling the feed")?;
        let at = Instant::now();
        match response.status() {
            StatusCode::NOT_MODIFIED => {}
            StatusCode::OK => {
                etag = response.headers().get(reqwest::header::ETAG).cloned();
                let body = response.text().await?;
                {
                    let mut first = seen.first.lock().expect("seen lock");
                    for key in marked_keys(&body) {
                        first.entry(key.to_owned()).or_insert(at);
                    }
                }
                *seen.versions.lock().expect("versions lock") += 1;
                seen.changed.notify_waiters();
            }
            status => anyhow::bail!("polling {url}: {status}"),
        }
        if interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(())
}

/// The keys of every benchmark title in a feed document.
fn marked_keys(body: &str) -> impl Iterator<Item = &str> {
    body.split(MARK_OPEN)
        .skip(1)
        .filter_map(|rest| rest.split_once(MARK_CLOSE).map(|(key, _)| key))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile (100: the maximum); sorts `values`.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
