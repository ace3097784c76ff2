//! Replicas (issue 7 item 6): what PostgreSQL costs against SQLite, and what a second
//! replica on the same PostgreSQL database does, for ingest and for serving; and how long a
//! publish acknowledged by one replica takes to show in the other's feed.
//!
//! Each run starts three set-ups in turn, each on a fresh store (a new PostgreSQL database,
//! dropped after): one feedpub on SQLite, one feedpub on PostgreSQL, two feedpubs on one
//! PostgreSQL database. On each: the data set of 50 articles, wrk on 200 identity and 304
//! (with two replicas, two wrk at once, the connections split between them, after checking
//! that both serve the same bytes under the same ETag), the replication lag (two replicas
//! only), then the Ingest load (its generator, frames and calls in flight; with two
//! replicas, two generators at once, the calls in flight split).

use crate::Mode;
use crate::fixture::{self, DATA_SET_ARTICLES, FEED_PATH, Fixture, SampleCopy};
use crate::freshness::percentile;
use crate::ingest::{self, PUBLISH_PATH};
use crate::loadgen::{self, Outcome};
use crate::report::{Figure, Target};
use anyhow::Context;
use feedpub::grpc::proto::PublishArticleRequest;
use reqwest::StatusCode;
use reqwest::header;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The store set-ups compared, in the order of the first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    Postgres1,
    Postgres2,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::Sqlite, Setup::Postgres1, Setup::Postgres2];

    fn label(self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, 1 replica",
            Setup::Postgres1 => "PostgreSQL, 1 replica",
            Setup::Postgres2 => "PostgreSQL, 2 replicas",
        }
    }
}

/// The peer every figure is compared with.
const BASELINE: &str = "SQLite";

/// What one set-up measured in one run.
#[derive(Debug, Default, Clone)]
struct Measured {
    ingest_rate: f64,
    ingest_p50: f64,
    ingest_p99: f64,
    ingest_failed: u64,
    identity: f64,
    not_modified: f64,
    /// Feeds (of the measured one, identity and gzip) that differ between the replicas.
    differing: usize,
    /// Replication lag p50 and p99, ms (two replicas only).
    lag: Option<(f64, f64)>,
}

/// The benchmark's settings.
pub struct Replicas {
    feedpub_bin: PathBuf,
    work: PathBuf,
    mode: Mode,
    log: Option<String>,
    admin_url: String,
    copy: SampleCopy,
}

impl Replicas {
    /// Checks that the PostgreSQL server at `admin_url` accepts the role.
    pub async fn setup(
        feedpub_bin: &Path,
        work: &Path,
        mode: &Mode,
        log: Option<&str>,
        admin_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        crate::serve::require_tool("wrk", &["-v"])?;
        let admin_url = admin_url
            .context(
                "the replicas benchmark needs a PostgreSQL server whose role may create \
                 databases: --database-url or FEEDPUB_BENCH_DATABASE_URL",
            )?
            .to_owned();
        PgConnection::connect(&admin_url)
            .await
            .context("cannot connect to the PostgreSQL server of --database-url")?
            .close()
            .await?;
        let dir = work.join("replicas");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            feedpub_bin: feedpub_bin.to_owned(),
            work: dir,
            mode: mode.clone(),
            log: log.map(str::to_owned),
            admin_url,
            copy: SampleCopy::load(),
        })
    }

    /// What the figures were measured with, for the report header.
    pub fn peer_versions(&self) -> String {
        format!(
            "replicas: feedpub on SQLite, on PostgreSQL, and 2 feedpubs on one PostgreSQL \
             database (a fresh one per run); ingest {} in flight for {} s per set-up (split \
             over 2 generators for 2 replicas); wrk -t{} -c{} for {} s per scenario (2 wrk of \
             -c{} at once for 2 replicas); lag over {} publishes, one every {} ms",
            self.mode.ingest_in_flight,
            self.ingest_time().as_secs_f64(),
            self.mode.wrk_threads,
            self.mode.wrk_connections,
            self.wrk_seconds(),
            split(self.mode.wrk_connections as usize, 2)[0],
            self.lag_publishes(),
            LAG_INTERVAL.as_millis(),
        )
    }

    fn ingest_time(&self) -> Duration {
        self.mode.ingest_slice * self.mode.ingest_slices as u32
    }

    fn wrk_seconds(&self) -> u64 {
        (self.mode.wrk_duration.as_secs() / 2).max(1)
    }

    fn lag_publishes(&self) -> usize {
        if self.mode.quick { 30 } else { 100 }
    }

    /// One run: the three set-ups, in an order that turns with the run.
    pub async fn run(&self, run: usize) -> anyhow::Result<Vec<Figure>> {
        let mut measured: [Measured; 3] = Default::default();
        for k in 0..Setup::ALL.len() {
            let index = (k + run) % Setup::ALL.len();
            let setup = Setup::ALL[index];
            measured[index] = self.measure(setup, run).await?;
        }
        let [sqlite, pg1, pg2] = measured;
        eprintln!(
            "replicas run {}: ingest {:.0} / {:.0} / {:.0} calls/s, 200 identity {:.0} / {:.0} \
             / {:.0} req/s, 304 {:.0} / {:.0} / {:.0} req/s (SQLite / PostgreSQL / 2 \
             replicas); lag p50 {:.1} ms, p99 {:.1} ms",
            run + 1,
            sqlite.ingest_rate,
            pg1.ingest_rate,
            pg2.ingest_rate,
            sqlite.identity,
            pg1.identity,
            pg2.identity,
            sqlite.not_modified,
            pg1.not_modified,
            pg2.not_modified,
            pg2.lag.map_or(f64::NAN, |l| l.0),
            pg2.lag.map_or(f64::NAN, |l| l.1),
        );
        Ok(figures(&self.mode, &sqlite, &pg1, &pg2))
    }

    /// One set-up on a fresh store.
    async fn measure(&self, setup: Setup, run: usize) -> anyhow::Result<Measured> {
        let dir = self.work.join(format!(
            "run{}-{}",
            run + 1,
            match setup {
                Setup::Sqlite => "sqlite",
                Setup::Postgres1 => "postgres1",
                Setup::Postgres2 => "postgres2",
            }
        ));
        std::fs::create_dir_all(&dir)?;
        let database = match setup {
            Setup::Sqlite => None,
            _ => Some(Database::create(&self.admin_url).await?),
        };
        let result = self.measure_on(setup, run, &dir, database.as_ref()).await;
        if let Some(database) = database {
            database.drop_it().await?;
        }
        result
    }

    async fn measure_on(
        &self,
        setup: Setup,
        run: usize,
        dir: &Path,
        database: Option<&Database>,
    ) -> anyhow::Result<Measured> {
        let url = database.map(|d| d.url.as_str());
        let bin = &self.feedpub_bin;
        // In replica A's data folder: where it finds the partner on SQLite.
        let token = fixture::add_partner_to(bin, &dir.join("a"), url)?;
        let log = self.log.as_deref();
        for replica in ["a", "b"] {
            std::fs::create_dir_all(dir.join(replica))?;
        }
        let mut replicas =
            vec![Fixture::serve_on(bin, &dir.join("a"), token.clone(), log, false, url).await?];
        if setup == Setup::Postgres2 {
            replicas.push(Fixture::serve_on(bin, &dir.join("b"), token, log, false, url).await?);
        }
        let result = self.measure_replicas(setup, run, dir, &replicas).await;
        for replica in replicas {
            replica.stop()?;
        }
        result
    }

    async fn measure_replicas(
        &self,
        setup: Setup,
        run: usize,
        dir: &Path,
        replicas: &[Fixture],
    ) -> anyhow::Result<Measured> {
        let mut measured = Measured::default();
        replicas[0].publish_data_set().await?;
        let (tag, differing) = same_feed(replicas).await?;
        measured.differing = differing;
        eprintln!(
            "replicas run {} {}: {FEED_PATH} ETag {tag} on {} replica(s), {differing} \
             differing",
            run + 1,
            setup.label(),
            replicas.len()
        );

        // Serve: 200 identity and 304, the connections split over the replicas.
        let seconds = self.wrk_seconds();
        let connections = split(self.mode.wrk_connections as usize, replicas.len());
        for (scenario, headers) in [
            ("identity", vec![]),
            (
                "304",
                vec![
                    "Accept-Encoding: gzip".to_owned(),
                    format!("If-None-Match: {tag}"),
                ],
            ),
        ] {
            let mut loads = Vec::new();
            for (i, (replica, &c)) in replicas.iter().zip(&connections).enumerate() {
                let mode = Mode {
                    wrk_connections: c as u32,
                    ..self.mode.clone()
                };
                let out = dir.join(format!("wrk-{scenario}-{i}.txt"));
                let url = replica.url(FEED_PATH);
                let headers = headers.clone();
                loads.push(tokio::spawn(async move {
                    crate::serve::wrk(&mode, seconds, &url, &headers, &out).await
                }));
            }
            let mut rate = 0.0;
            for load in loads {
                rate += load.await??.0;
            }
            for replica in replicas {
                replica.ensure_running()?;
            }
            match scenario {
                "identity" => measured.identity = rate,
                _ => measured.not_modified = rate,
            }
        }

        // Replication lag: published on A, shown by B.
        if let [a, b] = replicas {
            measured.lag = Some(self.lag(a, b, run).await?);
        }

        // Ingest: the Ingest benchmark's load, the calls in flight split over the replicas.
        let frames = ingest::publish_frames(&self.copy, &format!("replicas-r{}", run + 1))?;
        let in_flight = split(self.mode.ingest_in_flight, replicas.len());
        let duration = self.ingest_time();
        let mut loads = Vec::new();
        for (replica, &n) in replicas.iter().zip(&in_flight) {
            let (addr, token, frames) = (replica.grpc_addr, replica.token.clone(), frames.clone());
            loads.push(tokio::spawn(async move {
                loadgen::run(addr, PUBLISH_PATH, &token, frames, n, duration).await
            }));
        }
        let mut total = Outcome::default();
        let mut rate = 0.0;
        for load in loads {
            let outcome = load.await??;
            rate += outcome.rate();
            ingest::merge(&mut total, outcome);
        }
        for replica in replicas {
            replica.ensure_running()?;
        }
        if let Some(failure) = &total.first_failure {
            eprintln!(
                "replicas run {} {}: {} calls failed, the first: {failure}",
                run + 1,
                setup.label(),
                total.failed
            );
        }
        measured.ingest_rate = rate;
        measured.ingest_p50 = percentile(&mut total.latencies_ms, 50.0);
        measured.ingest_p99 = percentile(&mut total.latencies_ms, 99.0);
        measured.ingest_failed = total.failed;
        Ok(measured)
    }

    /// Publishes on `a`, one at a time every [`LAG_INTERVAL`], and measures the time from
    /// each answer to the first answer of `b`'s feed that shows the article: p50 and p99, ms.
    async fn lag(&self, a: &Fixture, b: &Fixture, run: usize) -> anyhow::Result<(f64, f64)> {
        let mut lags = Vec::new();
        let url = b.url(FEED_PATH);
        let mut etag: Option<header::HeaderValue> = None;
        for n in 0..self.lag_publishes() {
            let started = Instant::now();
            let marker = format!("lag-r{}-{n:04}", run + 1);
            let article = a.article(marker.clone(), &format!("（{marker}）"), n);
            a.client
                .clone()
                .publish_article(PublishArticleRequest {
                    article: Some(article),
                    ..Default::default()
                })
                .await
                .context("PublishArticle on replica A")?;
            let acked = Instant::now();
            let deadline = acked + Duration::from_secs(10);
            loop {
                let mut request = b.http.get(&url);
                if let Some(tag) = &etag {
                    request = request.header(header::IF_NONE_MATCH, tag.clone());
                }
                let response = request.send().await.context("polling replica B")?;
                let at = Instant::now();
                match response.status() {
                    StatusCode::NOT_MODIFIED => {}
                    StatusCode::OK => {
                        etag = response.headers().get(header::ETAG).cloned();
                        if response.text().await?.contains(&marker) {
                            lags.push(at.duration_since(acked).as_secs_f64() * 1000.0);
                            break;
                        }
                    }
                    status => anyhow::bail!("polling replica B: {status}"),
                }
                b.ensure_running()?;
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{marker}, acknowledged by replica A, is not in replica B's feed after 10 s"
                );
                tokio::time::sleep(LAG_POLL).await;
            }
            tokio::time::sleep(LAG_INTERVAL.saturating_sub(started.elapsed())).await;
        }
        Ok((percentile(&mut lags, 50.0), percentile(&mut lags, 99.0)))
    }
}

/// Time between two publishes of the lag measurement.
const LAG_INTERVAL: Duration = Duration::from_millis(100);
/// Pause between two polls of replica B's feed.
const LAG_POLL: Duration = Duration::from_millis(1);

/// The strong ETag of the measured feed (gzip, as aggregators ask) on the first replica,
/// after waiting until every replica shows the data set; and how many of the feed's two
/// representations differ between the replicas (bytes or ETag).
async fn same_feed(replicas: &[Fixture]) -> anyhow::Result<(String, usize)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answers = Vec::new();
    for replica in replicas {
        loop {
            let mut got = Vec::new();
            for gzip in [false, true] {
                let mut request = replica.http.get(replica.url(FEED_PATH));
                if gzip {
                    request = request.header(header::ACCEPT_ENCODING, "gzip");
                }
                let response = request.send().await?;
                anyhow::ensure!(
                    response.status() == StatusCode::OK,
                    "{FEED_PATH}: {}",
                    response.status()
                );
                let tag = response
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                got.push((tag, response.bytes().await?.to_vec()));
            }
            let items = String::from_utf8_lossy(&got[0].1).matches("<item>").count();
            if items == DATA_SET_ARTICLES {
                answers.push(got);
                break;
            }
            replica.ensure_running()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "a replica's {FEED_PATH} shows {items} items, not {DATA_SET_ARTICLES}, after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let tag = answers[0][1].0.clone();
    anyhow::ensure!(!tag.is_empty(), "feedpub sent no ETag with gzip");
    Ok((tag, differing(&answers)))
}

/// How many representations (by position) differ in ETag or bytes between the first
/// replica's answers and any other's.
fn differing(answers: &[Vec<(String, Vec<u8>)>]) -> usize {
    let Some((first, others)) = answers.split_first() else {
        return 0;
    };
    (0..first.len())
        .filter(|&i| others.iter().any(|o| o.get(i) != first.get(i)))
        .count()
}

/// `total` split into `parts` shares as even as can be, the larger first (64 over 2: 32, 32;
/// 65 over 2: 33, 32); every share at least 1.
fn split(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| (total / parts + usize::from(i < total % parts)).max(1))
        .collect()
}

/// The URL of the database `name` on the server of `admin_url` (same role, host and
/// options).
fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url).context("--database-url is not a URL")?;
    anyhow::ensure!(
        matches!(url.scheme(), "postgres" | "postgresql"),
        "--database-url is not a postgres:// URL"
    );
    url.set_path(name);
    Ok(url.to_string())
}

/// A database of its own on the benchmark's server, dropped after the set-up.
struct Database {
    url: String,
    admin: String,
    name: String,
}

impl Database {
    async fn create(admin: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("feedpub_bench_{}_{nanos}", std::process::id());
        let mut conn = PgConnection::connect(admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .context("CREATE DATABASE (the role must be allowed to create databases)")?;
        conn.close().await?;
        Ok(Self {
            url: database_url(admin, &name)?,
            admin: admin.to_owned(),
            name,
        })
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin).await?;
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .with_context(|| format!("DROP DATABASE {}", self.name))?;
        conn.close().await?;
        Ok(())
    }
}

/// The figures of one run: each PostgreSQL set-up against one feedpub on SQLite.
fn figures(mode: &Mode, sqlite: &Measured, pg1: &Measured, pg2: &Measured) -> Vec<Figure> {
    let in_flight = mode.ingest_in_flight;
    let mut figures = Vec::new();
    let against = |name: String, unit, ours: f64, theirs: f64| Figure {
        name,
        unit,
        feedpub: ours,
        peer: Some((BASELINE, theirs)),
        target: Target::Info,
    };
    let setups = [
        (Setup::Postgres1.label(), pg1),
        (Setup::Postgres2.label(), pg2),
    ];
    // Each figure's name is "Replicas, <what>, <set-up><after>"; the ingest figures of both
    // set-ups come first, then the serve figures.
    type Value = fn(&Measured) -> f64;
    let ingest = format!("ingest {in_flight} in flight");
    let groups: [Vec<(&str, &str, &'static str, Value)>; 2] = [
        vec![
            (&ingest, ": rate", "calls/s", |m| m.ingest_rate),
            (&ingest, ": p50 latency", "ms", |m| m.ingest_p50),
            (&ingest, ": p99 latency", "ms", |m| m.ingest_p99),
        ],
        vec![
            ("serve 200 identity", "", "req/s", |m| m.identity),
            ("serve 304", "", "req/s", |m| m.not_modified),
        ],
    ];
    for group in &groups {
        for (label, pg) in setups {
            for &(what, after, unit, value) in group {
                figures.push(against(
                    format!("Replicas, {what}, {label}{after}"),
                    unit,
                    value(pg),
                    value(sqlite),
                ));
            }
        }
    }
    let (lag_p50, lag_p99) = pg2.lag.unwrap_or((f64::NAN, f64::NAN));
    figures.extend([
        Figure {
            name: "Replicas: failed ingest calls, all set-ups".into(),
            unit: "calls",
            feedpub: (sqlite.ingest_failed + pg1.ingest_failed + pg2.ingest_failed) as f64,
            peer: None,
            target: Target::AtMost(0.0),
        },
        Figure {
            name: "Replicas: representations of the measured feed differing between the 2 replicas"
                .into(),
            unit: "of 2",
            feedpub: pg2.differing as f64,
            peer: None,
            target: Target::AtMost(0.0),
        },
        Figure {
            name: "Replicas: lag from A's answer to the entry in B's feed, p50".into(),
            unit: "ms",
            feedpub: lag_p50,
            peer: None,
            target: Target::Info,
        },
        Figure {
            name: "Replicas: lag from A's answer to the entry in B's feed, p99".into(),
            unit: "ms",
            feedpub: lag_p99,
            peer: None,
            target: Target::AtMost(1000.0),
        },
    ]);
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_shares_evenly_larger_first_never_zero() {
        assert_eq!(split(64, 1), vec![64]);
        assert_eq!(split(64, 2), vec![32, 32]);
        assert_eq!(split(65, 2), vec![33, 32]);
        assert_eq!(split(1, 2), vec![1, 1]);
        assert_eq!(split(7, 0), vec![7]);
        assert_eq!(split(65, 2).iter().sum::<usize>(), 65);
    }

    #[test]
    fn database_url_keeps_role_host_and_options_and_changes_the_name() {
        assert_eq!(
            database_url("postgres://u:p@127.0.0.1/feedpub", "feedpub_bench_1").unwrap(),
            "postgres://u:p@127.0.0.1/feedpub_bench_1"
        );
        assert_eq!(
            database_url("postgresql://u@db:5433/x?sslmode=disable", "b").unwrap(),
            "postgresql://u@db:5433/b?sslmode=disable"
        );
        assert!(database_url("mysql://u@h/x", "b").is_err());
        assert!(database_url("not a url", "b").is_err());
    }

    #[test]
    fn differing_counts_representations_that_differ_on_any_replica() {
        let same = vec![
            ("\"a\"".to_owned(), b"x".to_vec()),
            ("\"g\"".to_owned(), b"y".to_vec()),
        ];
        assert_eq!(differing(&[same.clone(), same.clone()]), 0);
        let mut other_tag = same.clone();
        other_tag[1].0 = "\"h\"".to_owned();
        assert_eq!(differing(&[same.clone(), other_tag]), 1);
        let mut other_bytes = same.clone();
        other_bytes[0].1 = b"z".to_vec();
        other_bytes[1].1 = b"w".to_vec();
        assert_eq!(differing(&[same.clone(), other_bytes]), 2);
        assert_eq!(differing(&[same]), 0);
        assert_eq!(differing(&[]), 0);
    }

    #[test]
    fn figures_compare_each_postgres_setup_with_sqlite() {
        use clap::Parser;
        let mode = Mode::from_args(&crate::Args::parse_from([
            "feedpub-bench",
            "--in-flight",
            "64",
        ]));
        let sqlite = Measured {
            ingest_rate: 1000.0,
            identity: 4000.0,
            ..Measured::default()
        };
        let pg1 = Measured {
            ingest_rate: 500.0,
            identity: 3000.0,
            ..Measured::default()
        };
        let pg2 = Measured {
            ingest_rate: 600.0,
            lag: Some((5.0, 20.0)),
            differing: 1,
            ..Measured::default()
        };
        let figures = figures(&mode, &sqlite, &pg1, &pg2);
        let find = |name: &str| {
            figures
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no figure {name}"))
        };
        let rate = find("Replicas, ingest 64 in flight, PostgreSQL, 1 replica: rate");
        assert_eq!((rate.feedpub, rate.peer), (500.0, Some(("SQLite", 1000.0))));
        let rate = find("Replicas, ingest 64 in flight, PostgreSQL, 2 replicas: rate");
        assert_eq!(rate.feedpub, 600.0);
        let serve = find("Replicas, serve 200 identity, PostgreSQL, 1 replica");
        assert_eq!(
            (serve.feedpub, serve.peer),
            (3000.0, Some(("SQLite", 4000.0)))
        );
        assert_eq!(
            find("Replicas: lag from A's answer to the entry in B's feed, p99").feedpub,
            20.0
        );
        assert_eq!(
            find("Replicas: representations of the measured feed differing between the 2 replicas")
                .feedpub,
            1.0
        );
    }
}
