//! The soak's pollers: conditional GETs of every feed and archive page, each checked.

use super::{FORMATS, Plan, SECTIONS, Tally};
use crate::fixture::Fixture;
use reqwest::StatusCode;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One poller: the feeds of every section and of `all` in turn, each with the ETag of the
/// last body it got; `/healthz` (`/metrics` for the first poller) after every round.
pub(super) async fn poll(fixture: Arc<Fixture>, tally: Arc<Tally>, index: usize, plan: Plan) {
    let mut paths: Vec<String> = SECTIONS
        .iter()
        .chain(&["all"])
        .flat_map(|scope| FORMATS.iter().map(move |f| format!("/feeds/{scope}/{f}")))
        .collect();
    let start = index * 5 % paths.len();
    paths.rotate_left(start);
    let currents = paths.len();
    let mut etags: HashMap<String, String> = HashMap::new();
    // The newest archive page of each feed, as its current RSS document links it.
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let mut ticker = tokio::time::interval(plan.poll_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0;
    while !tally.stopping() {
        ticker.tick().await;
        if next == paths.len() {
            // Next round: every current document, then the oldest and the newest archive
            // page of each feed that has some, in this poller's format: the oldest never
            // changes (a 304 once fetched), the newest gains its `next` link when the
            // page after it fills.
            paths.truncate(currents);
            let format = FORMATS[index % FORMATS.len()];
            for (feed, &page) in &newest {
                paths.push(format!("/feeds/{feed}/archive/1/{format}"));
                if page > 1 {
                    paths.push(format!("/feeds/{feed}/archive/{page}/{format}"));
                }
            }
            next = 0;
            // And the service endpoints: /healthz, and /metrics as a Prometheus scrape.
            let endpoint = if index == 0 { "/metrics" } else { "/healthz" };
            match fixture.http.get(fixture.url(endpoint)).send().await {
                Ok(r) if r.status() == StatusCode::OK => match r.text().await {
                    Ok(body)
                        if body == "ok\n"
                            || (index == 0 && body.contains("feedpub_publish_total")) =>
                    {
                        Tally::bump(&tally.health, 1)
                    }
                    Ok(body) => tally.error("http", format!("{endpoint}: {body:.200}")),
                    Err(e) => tally.error("http", format!("{endpoint}: {e}")),
                },
                Ok(r) => tally.error("http", format!("{endpoint}: {}", r.status())),
                Err(e) => tally.error("http", format!("{endpoint}: {e}")),
            }
            continue;
        }
        let path = &paths[next];
        next += 1;
        match poll_one(&fixture, &tally, path, &mut etags).await {
            Ok(Some(page)) => {
                let feed = path
                    .trim_start_matches("/feeds/")
                    .trim_end_matches("/rss.xml");
                newest.insert(feed.to_owned(), page);
            }
            Ok(None) => {}
            Err((kind, e)) => tally.error(kind, format!("{path}: {e}")),
        }
    }
}

/// One conditional GET, checked; for a current RSS document, the number of the newest
/// archive page it links to.
async fn poll_one(
    fixture: &Fixture,
    tally: &Tally,
    path: &str,
    etags: &mut HashMap<String, String>,
) -> Result<Option<u64>, (&'static str, String)> {
    let mut request = fixture.http.get(fixture.url(path));
    if let Some(etag) = etags.get(path) {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.map_err(|e| ("http", e.to_string()))?;
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .bytes()
        .await
        .map_err(|e| ("http", e.to_string()))?;
    match status {
        StatusCode::NOT_MODIFIED => {
            if !body.is_empty() {
                return Err(("http", format!("304 with {} bytes", body.len())));
            }
            Tally::bump(&tally.polls_304, 1);
            Ok(None)
        }
        StatusCode::OK => {
            let etag = etag.ok_or(("http", "200 without an ETag".to_owned()))?;
            // Hashing and parsing a 200 KB document off the runtime's one worker thread,
            // which the publishers and watchers share: they keep their rate.
            let owned = path.to_owned();
            let (hashed, parsed) = tokio::task::spawn_blocking(move || {
                let hashed = format!("\"{}\"", hex::encode(&blake3::hash(&body).as_bytes()[..16]));
                (hashed, parse_feed(&owned, &body))
            })
            .await
            .map_err(|e| ("parse", e.to_string()))?;
            if etag != hashed {
                return Err(("etag", format!("ETag {etag}, body hashes to {hashed}")));
            }
            let newest = parsed.map_err(|e| ("parse", e))?;
            etags.insert(path.to_owned(), etag);
            Tally::bump(&tally.polls_200, 1);
            Ok(newest.filter(|_| !path.contains("/archive/")))
        }
        other => Err(("http", format!("status {other}"))),
    }
}

/// Parses a feed body as its format and checks it holds no more items than a current
/// document may (see below); for
/// RSS, returns the number of the archive page it links as `prev-archive`.
fn parse_feed(path: &str, body: &[u8]) -> Result<Option<u64>, String> {
    let mut prev_archive = None;
    let items = if path.ends_with("rss.xml") {
        let channel = rss::Channel::read_from(body).map_err(|e| format!("RSS: {e}"))?;
        prev_archive = channel
            .atom_ext()
            .and_then(|atom| atom.links().iter().find(|l| l.rel() == "prev-archive"))
            .map(|link| archive_page(link.href()))
            .transpose()?;
        channel.items().len()
    } else if path.ends_with("atom.xml") {
        atom_syndication::Feed::read_from(body)
            .map_err(|e| format!("Atom: {e}"))?
            .entries()
            .len()
    } else {
        let feed: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("JSON Feed: {e}"))?;
        if feed["version"] != "https://jsonfeed.org/version/1.1" {
            return Err(format!("JSON Feed version {}", feed["version"]));
        }
        feed["items"]
            .as_array()
            .ok_or("JSON Feed without items")?
            .len()
    };
    // The newest `max_items` (the soak runs with the default), and in `all` and the
    // sections fewer than `max_items` more of the open archive page filed behind them and
    // at most `max_items` corrected or come into view since the oldest of the newest.
    const MAX_ITEMS: usize = feedpub::config::DEFAULT_MAX_ITEMS;
    if items >= 3 * MAX_ITEMS {
        return Err(format!(
            "{items} items in a {MAX_ITEMS}-item feed (with at most {} of its open page and \
             {MAX_ITEMS} changed since its oldest)",
            MAX_ITEMS - 1
        ));
    }
    Ok(prev_archive)
}

/// The page number in an archive page's URL (`…/archive/<n>/rss.xml`).
fn archive_page(href: &str) -> Result<u64, String> {
    href.split_once("/archive/")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("prev-archive {href:?} is not an archive page"))
}
