//! Scale (issue 6 item 5): publish latency, regeneration time and serve rate with 10 k,
//! 100 k and 1 M stored articles, which should stay within 1.2× of their value at 10 k;
//! peak resident memory (VmHWM) of feedpub at 1 M, at most 256 MB; database bytes per
//! article.
//!
//! Each data set is built once per suite, before feedpub starts on it. Its first 10,000
//! articles are written through feedpub's own `SqliteStore` (the `Store::publish` a
//! PublishArticle ends in, many calls in flight so that its writer commits them in batches):
//! articles of the sample edition's copy, 3 KB bodies cut from its paragraphs and its titles,
//! spread over the five sections and back in time five minutes apart. The rest are copies of
//! that block made inside SQLite (`INSERT … SELECT`, one transaction per copy), each with its
//! own ids, GUIDs and publish times: the same rows, faster than the Store API (no fsync
//! per commit). Every block of 10,000 articles shares a byline and a tag of its
//! own (特约记者NNN, 专题NNN), so each block's author and tag feed holds 10,000 articles at
//! every size and the number of such feeds grows with the store. The first articles of the
//! first block also carry the bylines and the tag of the articles each run publishes, until
//! each of those feeds is full (`Filling`; the first 355 articles with the sample edition),
//! so that every run changes feeds as large as the last run did. The databases are kept
//! between runs; every run measures each of them, in an order that alternates between runs.

use crate::Mode;
use crate::fixture::{self, BENCH_TAG, FEED_PATH, Fixture, SECTION, SampleCopy};
use crate::freshness::{percentile, regeneration_totals};
use crate::report::{Figure, Target};
use anyhow::Context;
use chrono::{TimeDelta, TimeZone, Utc};
use feedpub::config::{EMBEDDED_CONFIG, Overrides, Settings};
use feedpub::domain::{Actor, ArticleContent, ArticleId, HtmlPolicy, PartnerName, SectionSlug};
use feedpub::grpc::proto::PublishArticleRequest;
use feedpub::storage::{ArticleWrite, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Articles that share one byline and one tag in a data set.
const NAME_BLOCK: usize = 10_000;
/// Distinct bodies the data set's articles cycle through.
const TEMPLATES: usize = 64;
/// Store calls the loader keeps in flight (the writer commits up to 512 at once).
const LOAD_IN_FLIGHT: usize = 1024;
/// feedpub's database in its data folder.
const DATABASE_FILE: &str = "feedpub.sqlite3";
/// The size whose figures the others are compared with.
const BASE: usize = 10_000;
/// Peak resident memory allowed at the largest size, in MB.
const MAX_RSS_MB: f64 = 256.0;
/// The size the memory target applies to.
const MEMORY_TARGET_SIZE: usize = 1_000_000;

/// One data set and the feedpub serving it.
struct DataSet {
    articles: usize,
    fixture: Fixture,
    dir: PathBuf,
    build: Duration,
    /// From `feedpub serve` to its listening lines.
    listening: Duration,
    /// From `feedpub serve` to `feedpub_feeds_settled 1`: every feed built.
    start_up: Duration,
    db_bytes: u64,
}

/// Every data set, each with its running feedpub.
pub struct Scale {
    sets: Vec<DataSet>,
    mode: Mode,
}

impl Scale {
    /// Builds the data set of every size and starts a feedpub on each.
    pub async fn setup(
        bin: &Path,
        work: &Path,
        mode: &Mode,
        log: Option<&str>,
    ) -> anyhow::Result<Self> {
        crate::serve::require_tool("wrk", &["-v"])?;
        let mut sets = Vec::new();
        for &articles in &mode.scale_sizes {
            anyhow::ensure!(
                articles > 0 && (articles <= NAME_BLOCK || articles % NAME_BLOCK == 0),
                "a Scale size above {NAME_BLOCK} must be a multiple of it, not {articles}"
            );
            let dir = work.join(format!("scale-{}", label(articles)));
            let token = fixture::add_partner(bin, &dir)?;
            let started = Instant::now();
            load(&dir.join("data"), articles).await?;
            let build = started.elapsed();
            let db_bytes = database_bytes(&dir.join("data"))?;
            eprintln!(
                "scale: {} articles stored in {:.0} s ({:.0}/s), {:.0} bytes per article",
                articles,
                build.as_secs_f64(),
                articles as f64 / build.as_secs_f64(),
                db_bytes as f64 / articles as f64
            );
            let started = Instant::now();
            let fixture = Fixture::serve(bin, &dir, token, log, false).await?;
            let listening = started.elapsed();
            // The author and tag feeds are built after the ports open.
            let deadline = Instant::now() + Duration::from_secs(600);
            if !poll_until(&fixture, deadline, Duration::from_millis(20), async || {
                fixture.settled().await
            })
            .await?
            {
                anyhow::bail!("feedpub on {articles} articles did not build its feeds in 600 s");
            }
            let start_up = started.elapsed();
            eprintln!(
                "scale: feedpub on {} articles listening after {:.1} s, every feed built after {:.1} s",
                articles,
                listening.as_secs_f64(),
                start_up.as_secs_f64()
            );
            sets.push(DataSet {
                articles,
                fixture,
                dir,
                build,
                listening,
                start_up,
                db_bytes,
            });
        }
        Ok(Self {
            sets,
            mode: mode.clone(),
        })
    }

    /// One run: every data set, the smallest first in even runs and last in odd ones.
    pub async fn run(&self, run: usize) -> anyhow::Result<Vec<Figure>> {
        let mut order: Vec<&DataSet> = self.sets.iter().collect();
        if run % 2 == 1 {
            order.reverse();
        }
        let mut measured = Vec::new();
        for set in order {
            measured.push((set, self.measure(set, run).await?));
        }
        measured.sort_by_key(|(set, _)| set.articles);
        let base = measured
            .iter()
            .find(|(set, _)| set.articles == BASE)
            .map(|(_, m)| *m);
        let mut figures = Vec::new();
        for (set, m) in &measured {
            let at = label(set.articles);
            // Compared with 10 k: within 1.2× (a rate at least 1/1.2 of it).
            let flat = |name: &str, unit, value: f64, base: Option<f64>, higher_is_better| {
                let compared = base.filter(|_| set.articles != BASE);
                Figure {
                    name: format!("Scale: {name} at {at}"),
                    unit,
                    feedpub: value,
                    peer: compared.map(|b| ("at 10k", b)),
                    target: match (compared, higher_is_better) {
                        (None, _) => Target::Info,
                        (Some(_), true) => Target::RatioAtLeast(1.0 / 1.2),
                        (Some(_), false) => Target::RatioAtMost(1.2),
                    },
                }
            };
            figures.push(flat(
                "PublishArticle p50, 1 in flight",
                "ms",
                m.publish_p50,
                base.map(|b| b.publish_p50),
                false,
            ));
            figures.push(flat(
                "regeneration of feeds/politics/",
                "ms",
                m.regeneration_section,
                base.map(|b| b.regeneration_section),
                false,
            ));
            figures.push(flat(
                "regeneration of feeds/all/",
                "ms",
                m.regeneration_all,
                base.map(|b| b.regeneration_all),
                false,
            ));
            figures.push(flat(
                "serve 200 gzip",
                "req/s",
                m.serve_rate,
                base.map(|b| b.serve_rate),
                true,
            ));
        }
        for (set, m) in &measured {
            figures.push(Figure {
                name: format!(
                    "Scale: feedpub's peak resident memory at {}",
                    label(set.articles)
                ),
                unit: "MB",
                feedpub: m.peak_rss_mb,
                peer: None,
                target: if set.articles == MEMORY_TARGET_SIZE {
                    Target::AtMost(MAX_RSS_MB)
                } else {
                    Target::Info
                },
            });
        }
        // Once per suite: how the data sets were made.
        if run == 0 {
            for (set, _) in &measured {
                let at = label(set.articles);
                figures.push(info(
                    format!("Scale: database bytes per article at {at}"),
                    "bytes",
                    set.db_bytes as f64 / set.articles as f64,
                ));
                figures.push(info(
                    format!("Scale: feedpub start-up (listening) at {at}"),
                    "s",
                    set.listening.as_secs_f64(),
                ));
                figures.push(info(
                    format!("Scale: feedpub start-up (every feed built) at {at}"),
                    "s",
                    set.start_up.as_secs_f64(),
                ));
                figures.push(info(
                    format!("Scale: building the data set at {at}"),
                    "articles/s",
                    set.articles as f64 / set.build.as_secs_f64(),
                ));
            }
        }
        Ok(figures)
    }

    /// Publishes articles one at a time and waits until the section feed shows the last,
    /// reading feedpub's regeneration timings over that time; then, once the feeds have
    /// settled, loads the section feed with wrk; then reads feedpub's peak resident memory.
    async fn measure(&self, set: &DataSet, run: usize) -> anyhow::Result<Measured> {
        let fixture = &set.fixture;
        let before = regeneration_totals(fixture).await;
        let mut latencies = Vec::with_capacity(self.mode.scale_publishes);
        let mut last_title = String::new();
        for i in 0..self.mode.scale_publishes {
            let mark = format!("〔S-{}-{i}〕", run + 1);
            let article = fixture.article(format!("scale-r{}-{i:04}", run + 1), &mark, i);
            last_title = article.title.clone();
            let sent = Instant::now();
            fixture
                .client
                .clone()
                .publish_article(PublishArticleRequest {
                    article: Some(article),
                    ..Default::default()
                })
                .await
                .context("PublishArticle failed")?;
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        // The section feed is rebuilt last; once it shows the last article, every
        // regeneration the publishes caused is done. A store on which that takes longer than
        // the mode allows gets the regenerations that finished, or ∞ when none did.
        let deadline = Instant::now() + self.mode.scale_show_timeout;
        let late = |what: &str| {
            eprintln!(
                "scale run {} at {}: {what} within {} s",
                run + 1,
                label(set.articles),
                self.mode.scale_show_timeout.as_secs()
            )
        };
        let shown = poll_until(fixture, deadline, Duration::from_millis(5), async || {
            let body = fixture.http.get(fixture.url(FEED_PATH)).send().await?;
            Ok(body.text().await?.contains(&last_title))
        })
        .await?;
        if !shown {
            late(&format!("{FEED_PATH} did not show the last article"));
        }
        let after = regeneration_totals(fixture).await;
        // Served once the publishes' feeds are compressed and written, as a feed is between
        // changes: the rate of serving, not of serving beside the compression.
        if shown
            && !poll_until(fixture, deadline, Duration::from_millis(20), async || {
                fixture.settled().await
            })
            .await?
        {
            late("the feeds did not settle (loaded anyway)");
        }
        let mean_ms = |feed: &str| {
            let (sum0, count0) = before.get(feed).copied().unwrap_or_default();
            match after.get(feed) {
                Some((sum, count)) if *count > count0 => (sum - sum0) / (count - count0) * 1000.0,
                _ if !shown => f64::INFINITY,
                _ => f64::NAN,
            }
        };
        let out = set
            .dir
            .join(format!("wrk-run{}-{}.txt", run + 1, label(set.articles)));
        let (serve_rate, _) = crate::serve::wrk(
            &self.mode,
            self.mode.scale_wrk_seconds,
            &fixture.url(FEED_PATH),
            &["Accept-Encoding: gzip".to_owned()],
            &out,
        )
        .await?;
        fixture.ensure_running()?;
        let measured = Measured {
            publish_p50: percentile(&mut latencies, 50.0),
            regeneration_section: mean_ms(SECTION),
            regeneration_all: mean_ms("all"),
            serve_rate,
            peak_rss_mb: peak_rss_mb(fixture.pid())?,
        };
        eprintln!(
            "scale run {} at {}: publish p50 {:.2} ms, regeneration politics {:.1} ms, all {:.1} ms; \
             serve {:.0} req/s; peak RSS {:.0} MB",
            run + 1,
            label(set.articles),
            measured.publish_p50,
            measured.regeneration_section,
            measured.regeneration_all,
            measured.serve_rate,
            measured.peak_rss_mb
        );
        Ok(measured)
    }

    /// Stops every feedpub.
    pub fn stop(self) -> anyhow::Result<()> {
        for set in self.sets {
            set.fixture.stop()?;
        }
        Ok(())
    }
}

/// One data set's figures in one run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    publish_p50: f64,
    regeneration_section: f64,
    regeneration_all: f64,
    serve_rate: f64,
    peak_rss_mb: f64,
}

/// Polls `done` every `every` until it holds (true) or `deadline` passes (false), failing
/// when `done` fails or, between polls, when feedpub has stopped.
async fn poll_until(
    fixture: &Fixture,
    deadline: Instant,
    every: Duration,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    loop {
        if done().await? {
            return Ok(true);
        }
        fixture.ensure_running()?;
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

fn info(name: String, unit: &'static str, value: f64) -> Figure {
    Figure {
        name,
        unit,
        feedpub: value,
        peer: None,
        target: Target::Info,
    }
}

/// "10k", "1M".
fn label(articles: usize) -> String {
    match articles {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Stores `articles` articles of the partner `bench` in the database in `data_dir`: the
/// first block through feedpub's `SqliteStore`, then copies of it (see the module's doc).
async fn load(data_dir: &Path, articles: usize) -> anyhow::Result<()> {
    store_first_block(data_dir, articles.min(NAME_BLOCK)).await?;
    if articles > NAME_BLOCK {
        copy_first_block(data_dir, articles.div_ceil(NAME_BLOCK)).await?;
    }
    checkpoint(data_dir).await
}

/// Copies the write-ahead log into the database and empties it, so that the bytes per
/// article are the database's at every size: the Store API leaves up to 64 MiB of log
/// (its `journal_size_limit`), which is most of a 10 k store's bytes.
async fn checkpoint(data_dir: &Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(data_dir.join(DATABASE_FILE));
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Stores `articles` articles of the partner `bench` in the database in `data_dir` through
/// feedpub's `SqliteStore`, then closes it.
async fn store_first_block(data_dir: &Path, articles: usize) -> anyhow::Result<()> {
    let settings = Settings::parse("sample", EMBEDDED_CONFIG, Overrides::default())?;
    let sections: Vec<SectionSlug> = settings.sections.iter().map(|s| s.slug.clone()).collect();
    let store = Arc::new(SqliteStore::open(data_dir).await?);
    let partner = store
        .partner_by_name(&PartnerName::parse("bench").map_err(anyhow::Error::msg)?)
        .await?
        .context("the partner bench is missing")?;
    let templates = templates(&SampleCopy::load())?;
    // 2023-06-07T07:00:00+08:00, going back five minutes per article.
    let page = Utc
        .timestamp_opt(1_686_092_400, 0)
        .single()
        .expect("a valid time");
    let actor = Actor {
        partner: partner.name.clone(),
        peer: None,
    };
    let mut filling = Filling::new(settings.feeds.max_items);
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..articles {
        while calls.len() >= LOAD_IN_FLIGHT {
            calls.join_next().await.expect("calls in flight")??;
        }
        let mut content = templates[i % TEMPLATES].clone();
        content.title = format!("{}（{}）", content.title, i + 1);
        content.section = sections[i % sections.len()].clone();
        (content.authors, content.tags) = filling.names(i, &content.authors);
        content.publish_time = page - TimeDelta::minutes(5 * i as i64);
        let id = ArticleId::parse(&format!("scale-{i:07}")).map_err(anyhow::Error::msg)?;
        let guid = format!(
            "tag:127.0.0.1,{}:bench/{id}",
            content.publish_time.format("%Y-%m-%d")
        );
        let (store, partner, actor) = (store.clone(), partner.id, actor.clone());
        calls.spawn(async move {
            let write = ArticleWrite::new(id, content, guid);
            store
                .publish(partner, write, Utc::now(), &actor)
                .await
                .map(drop)
                .context("storing a data set article failed")
        });
    }
    while let Some(done) = calls.join_next().await {
        done??;
    }
    store.close().await;
    let unfilled = filling.unfilled();
    if !unfilled.is_empty() {
        eprintln!(
            "scale: {articles} articles leave feeds the runs publish to below {} articles: {}; \
             their regeneration times will grow from run to run",
            settings.feeds.max_items,
            unfilled.join(", ")
        );
    }
    eprintln!(
        "scale: {articles} articles stored through the Store API ({:.0}/s)",
        articles as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `TEMPLATES` article contents the first block cycles through, validated as a
/// PublishArticle's would be (names normalised as feedpub stores them).
fn templates(copy: &SampleCopy) -> anyhow::Result<Vec<ArticleContent>> {
    (0..TEMPLATES)
        .map(|n| validated(copy, format!("t{n}"), n))
        .collect()
}

/// Article `n` of the sample edition's series ([`SampleCopy::article`]) with the id `id`,
/// validated as feedpub validates a PublishArticle's.
fn validated(copy: &SampleCopy, id: String, n: usize) -> anyhow::Result<ArticleContent> {
    let draft = feedpub::grpc::convert::draft_from_proto(Some(copy.article(id, "", n)))
        .map_err(|v| anyhow::anyhow!("{v}"))?;
    Ok(draft
        .validate("article.", &HtmlPolicy::default())
        .map_err(|v| anyhow::anyhow!("{v}"))?
        .content)
}

/// Counts the first block's articles that carry the bylines and the tag of the measured
/// publishes ([`SampleCopy::article`]) besides the block's own, until each of those names
/// has a full feed. Each run's publishes then change feeds that are already full, as large
/// in the first run as in the last: with empty ones, every run rendered more than the run
/// before (the author feeds filling up), and the regeneration times grew from run to run.
struct Filling {
    full: usize,
    carried: std::collections::HashMap<String, usize>,
}

impl Filling {
    fn new(full: usize) -> Self {
        Self {
            full,
            carried: std::collections::HashMap::new(),
        }
    }

    /// The bylines and tags of article `i` of a data set, whose template has `bylines`:
    /// its block's byline and tag, and the template's bylines and the bench tag while
    /// [`Self::wants`] them.
    fn names(&mut self, i: usize, bylines: &[String]) -> (Vec<String>, Vec<String>) {
        let mut authors = vec![format!("特约记者{:03}", i / NAME_BLOCK)];
        let mut tags = vec![format!("专题{:03}", i / NAME_BLOCK)];
        if self.wants(bylines) {
            authors.extend(bylines.iter().cloned());
            tags.push(BENCH_TAG.to_owned());
        }
        (authors, tags)
    }

    /// The names counted that have fewer articles than a full feed, sorted.
    fn unfilled(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.carried.iter())
            .filter(|(_, n)| **n < self.full)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether an article of the sample edition with these bylines should carry them and
    /// the tag, counting it if so: while the tag's feed or one of the bylines' is not full.
    fn wants(&mut self, bylines: &[String]) -> bool {
        let names = || bylines.iter().map(String::as_str).chain([BENCH_TAG]);
        if names().all(|name| self.carried.get(name).is_some_and(|n| *n >= self.full)) {
            return false;
        }
        for name in names() {
            *self.carried.entry(name.to_owned()).or_default() += 1;
        }
        true
    }
}

/// Adds copies 1 to `blocks` - 1 of the first block of articles (ids `scale-0000000` to
/// `scale-0009999`) in the closed database in `data_dir`: copy k has ids `scale-<k·10000+n>`,
/// GUIDs made from them, publish times k · 10,000 · 5 minutes earlier, and the byline and
/// tag of block k; every other column is copied as it is, whatever the schema holds.
/// Durability is off while copying (the data set is rebuilt if lost); `load` checkpoints
/// the log into the database at the end.
async fn copy_first_block(data_dir: &Path, blocks: usize) -> anyhow::Result<()> {
    use sqlx::Connection;
    // A page cache of 1 GiB: each copy inserts into every index of a table that grows to
    // gigabytes, and with the default 2 MiB many of those inserts read their page back
    // from the file.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join(DATABASE_FILE))
        .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
        .pragma("cache_size", "-1048576");
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let started = Instant::now();
    let step_ns = TimeDelta::minutes(5 * NAME_BLOCK as i64)
        .num_nanoseconds()
        .expect("in range");
    // Every column copied as it is, except those that make each copy an article of its own.
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('articles')")
        .fetch_all(&mut conn)
        .await?;
    // Every row is the partner's: naming it lets each block be found through the primary
    // key, where `article_id` alone would scan the whole table once per block.
    let partner: i64 = sqlx::query_scalar("SELECT id FROM partners WHERE name = 'bench'")
        .fetch_one(&mut conn)
        .await?;
    let time = "publish_time - ?2";
    let id = "printf('scale-%07d', CAST(substr(article_id, 7) AS INTEGER) + ?1)";
    let values: Vec<String> = columns
        .iter()
        .map(|column| match column.as_str() {
            "article_id" => id.to_owned(),
            "publish_time" | "updated" => time.to_owned(),
            "guid" => format!(
                "'tag:127.0.0.1,' || strftime('%Y-%m-%d', ({time}) / 1000000000, 'unixepoch') \
                 || ':bench/' || {id}"
            ),
            "authors" => "json_array(printf('特约记者%03d', ?3))".to_owned(),
            "tags" => "json_array(printf('专题%03d', ?3))".to_owned(),
            other => format!("\"{other}\""),
        })
        .collect();
    let copy_articles = format!(
        "INSERT INTO articles ({}) SELECT {} FROM articles
         WHERE partner_id = ?4 AND article_id BETWEEN 'scale-0000000' AND 'scale-0009999'",
        columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        values.join(", ")
    );
    for k in 1..blocks {
        let mut tx = conn.begin().await?;
        sqlx::query(&copy_articles)
            .bind((k * NAME_BLOCK) as i64)
            .bind(step_ns * k as i64)
            .bind(k as i64)
            .bind(partner)
            .execute(&mut *tx)
            .await?;
        for (table, name) in [("article_authors", "特约记者"), ("article_tags", "专题")] {
            sqlx::query(&format!(
                // Each name row carries its article's feed columns: copied from the block
                // of article rows just written.
                "INSERT INTO {table} (name, partner_id, article_id, guid, state, publish_time,
                     expire_time, embargo_time, change_time, retract_time, shown_change_time,
                     create_time)
                 SELECT printf('{name}%03d', ?2), partner_id, article_id, guid, state,
                        publish_time, expire_time, embargo_time, change_time, retract_time,
                        shown_change_time, create_time
                 FROM articles WHERE partner_id = ?3
                                 AND article_id BETWEEN printf('scale-%07d', ?1)
                                                    AND printf('scale-%07d', ?1 + 9999)"
            ))
            .bind((k * NAME_BLOCK) as i64)
            .bind(k as i64)
            .bind(partner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if (k + 1) % 10 == 0 {
            eprintln!(
                "scale: {} of {} articles stored ({:.0}/s copying)",
                (k + 1) * NAME_BLOCK,
                blocks * NAME_BLOCK,
                (k * NAME_BLOCK) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    conn.close().await?;
    Ok(())
}

/// Bytes of the database files in `data_dir` (with its write-ahead log, if any).
fn database_bytes(data_dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(DATABASE_FILE)
        {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Peak resident memory of a process (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let kib = feedpub::heap::status_kib(pid, "VmHWM").context("no VmHWM in /proc/<pid>/status")?;
    Ok(kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_labelled_as_the_issue_writes_them() {
        assert_eq!(label(10_000), "10k");
        assert_eq!(label(100_000), "100k");
        assert_eq!(label(1_000_000), "1M");
        assert_eq!(label(12_345), "12345");
    }

    #[test]
    fn the_names_of_measured_publishes_are_carried_until_each_feed_is_full() {
        let bylines = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut filling = Filling::new(3);
        let (a, ab) = (bylines(&["甲"]), bylines(&["甲", "乙"]));
        // 甲 and the tag fill first; 乙 still wants two more, and only articles naming it
        // carry the names from then on.
        assert!(filling.wants(&a));
        assert!(filling.wants(&a));
        assert!(filling.wants(&ab));
        assert!(!filling.wants(&a));
        assert!(filling.wants(&ab));
        assert!(filling.wants(&ab));
        assert!(!filling.wants(&ab));
        assert!(!filling.wants(&a));
        assert_eq!(filling.carried["乙"], 3);
        assert_eq!(filling.carried[BENCH_TAG], 5);
        assert!(filling.unfilled().is_empty());
    }

    #[test]
    fn a_first_block_fills_every_feed_the_measured_publishes_change() {
        let copy = SampleCopy::load();
        let templates = templates(&copy).unwrap();
        let full = Settings::parse("sample", EMBEDDED_CONFIG, Overrides::default())
            .unwrap()
            .feeds
            .max_items;
        // What the loader stores, name by name.
        let mut stored: std::collections::HashMap<String, usize> = Default::default();
        let mut filling = Filling::new(full);
        let mut carrying = 0;
        for i in 0..NAME_BLOCK {
            let (authors, tags) = filling.names(i, &templates[i % TEMPLATES].authors);
            if tags.len() > 1 {
                carrying = i + 1;
            }
            for name in authors.into_iter().chain(tags) {
                *stored.entry(name).or_default() += 1;
            }
        }
        assert!(filling.unfilled().is_empty());
        // The figures BENCHMARKS.md gives for the sample edition: its first 355 articles
        // carry the names, 257 of them the tag.
        assert_eq!((carrying, stored[BENCH_TAG]), (355, 257));
        // Every byline the runs' publishes carry, normalised as feedpub stores it, and the
        // tag: each has a full feed before the first run.
        let args = <crate::Args as clap::Parser>::parse_from(["feedpub-bench"]);
        for n in 0..crate::Mode::from_args(&args).scale_publishes {
            let content = validated(&copy, format!("m{n}"), n).unwrap();
            for name in content.authors.iter().chain(&content.tags) {
                let carried = stored.get(name).copied().unwrap_or(0);
                assert!(carried >= full, "{name}: {carried} of {full}");
            }
        }
        // The block's own names are on every article of it.
        assert_eq!(stored[&format!("特约记者{:03}", 0)], NAME_BLOCK);
        assert_eq!(stored[&format!("专题{:03}", 0)], NAME_BLOCK);
    }
}
