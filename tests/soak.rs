//! Soak (issue 8, item 5): mixed publish, poll and watch traffic against the real
//! `feedpub serve` binary for 3 minutes, at a moderate fixed rate, after a preload of
//! 10,000 articles. The traffic is the benchmark program's (`feedpub-bench soak`, the same
//! driver the 30-minute benchmark runs; see BENCHMARKS.md): publishers publish, correct,
//! retract and send batches; pollers make conditional GETs of every section's and `all`'s
//! feeds and of their archive pages, checking every body against its ETag and parsing it;
//! watchers follow WatchArticles, reconnecting from their cursor, and check that every
//! event follows the previous one and that each saw every acknowledged write exactly once.
//!
//! This test reads the driver's JSON (every sample of feedpub's resident memory, open file
//! descriptors, WAL and database size, and every error counted) and makes its own verdicts
//! from the samples: zero errors, memory and descriptors flat, WAL bounded (see the bounds
//! below). `FEEDPUB_SOAK_SECS` sets the length (default 180).

use serde_json::Value;
use std::process::Command;

const DEFAULT_SECS: u64 = 180;
/// The first quarter of the samples is warm-up (the preload's end, caches filling).
const WARM_UP: f64 = 0.25;
/// Memory flat: the highest resident size of the last third of the samples after warm-up
/// at most the highest of the first third plus 16 MiB or 10 %, whichever is larger.
const RSS_GROWTH_MIB: f64 = 16.0;
const RSS_GROWTH_RATIO: f64 = 0.10;
/// Descriptors flat: the highest count of the last third at most the first third's + 8.
const FD_GROWTH: u64 = 8;
/// WAL bounded: never above 64 MiB (feedpub checkpoints it at about 40 MiB).
const WAL_MAX_MIB: f64 = 64.0;

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

#[test]
fn a_soak_of_mixed_traffic_keeps_memory_descriptors_and_wal_flat_without_an_error() {
    let secs = std::env::var("FEEDPUB_SOAK_SECS").map_or(DEFAULT_SECS, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("FEEDPUB_SOAK_SECS must be a number, not {v:?}"))
    });
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("soak.json");
    let status = Command::new(env!("CARGO_BIN_EXE_feedpub-bench"))
        .arg("soak")
        .args(["--minutes", &format!("{}", secs as f64 / 60.0)])
        .arg("--feedpub")
        .arg(env!("CARGO_BIN_EXE_feedpub"))
        .arg("--soak-json")
        .arg(&json_path)
        .env("TMPDIR", dir.path())
        .status()
        .expect("feedpub-bench runs");
    assert!(status.success(), "feedpub-bench soak failed: {status}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("the soak's JSON summary"))
            .expect("the summary is JSON");

    let samples = summary["samples"].as_array().expect("samples");
    println!("| t (s) | RSS (MiB) | fds | WAL (MiB) | WAL restarts | DB (MiB) | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    for s in samples {
        println!(
            "| {:.0} | {:.1} | {} | {:.1} | {} | {:.1} | {} |",
            number(s, "t_s"),
            number(s, "rss_kib") / 1024.0,
            s["fds"],
            mib(number(s, "wal_bytes")),
            s["wal_restarts"],
            mib(number(s, "db_bytes")),
            s["errors"]
        );
    }
    let totals = &summary["totals"];
    println!("totals: {totals}");
    println!("errors: {}", summary["errors"]);
    let expected_samples = (secs / 5).max(1) as usize;
    assert!(
        samples.len() >= expected_samples,
        "{} samples in {secs} s",
        samples.len()
    );

    // Zero errors, and every kind of traffic happened (in a run of a minute or more: the
    // first 304s and resumptions come after some 20 s).
    assert_eq!(
        summary["errors"]["total"], 0,
        "errors: {}",
        summary["errors"]
    );
    let kinds: &[&str] = if secs >= 60 {
        &[
            "published",
            "corrected",
            "retracted",
            "batches",
            "polls_200",
            "polls_304",
            "events",
            "reconnects",
        ]
    } else {
        &["published", "polls_200", "events"]
    };
    for &kind in kinds {
        assert!(number(totals, kind) > 0.0, "no {kind} in {totals}");
    }
    // Every watcher saw every acknowledged write's event (checked by the driver, counted
    // as an error otherwise): together at least one event per write.
    let writes = ["published", "corrected", "retracted", "batch_articles"]
        .iter()
        .map(|k| number(totals, k))
        .sum::<f64>();
    assert!(number(totals, "events") >= writes, "{totals}");

    // The verdicts, from the samples.
    let skip = ((samples.len() as f64 * WARM_UP).ceil() as usize).min(samples.len());
    let steady = &samples[skip..];
    assert!(steady.len() >= 3, "too few samples after warm-up");
    let third = steady.len() / 3;
    let (first, last) = (&steady[..third], &steady[steady.len() - third..]);
    let max = |s: &[Value], key: &str| s.iter().map(|s| number(s, key)).fold(0.0, f64::max);

    let rss_first = max(first, "rss_kib") / 1024.0;
    let rss_last = max(last, "rss_kib") / 1024.0;
    let allowed = rss_first + RSS_GROWTH_MIB.max(rss_first * RSS_GROWTH_RATIO);
    println!("RSS: {rss_first:.1} MiB in the first third, {rss_last:.1} in the last");
    assert!(rss_first > 0.0, "no resident size sampled");
    assert!(
        rss_last <= allowed,
        "memory grew: {rss_last:.1} MiB in the last third, {rss_first:.1} in the first \
         (at most {allowed:.1} allowed)"
    );

    let fds_first = max(first, "fds") as u64;
    let fds_last = max(last, "fds") as u64;
    println!("fds: {fds_first} in the first third, {fds_last} in the last");
    assert!(fds_first > 0, "no descriptors sampled");
    assert!(
        fds_last <= fds_first + FD_GROWTH,
        "descriptors grew: {fds_last} in the last third, {fds_first} in the first"
    );

    let wal_max = mib(max(samples, "wal_bytes"));
    println!("WAL: at most {wal_max:.1} MiB");
    assert!(
        wal_max <= WAL_MAX_MIB,
        "the WAL reached {wal_max:.1} MiB (at most {WAL_MAX_MIB} allowed)"
    );

    // The driver's own verdicts agree.
    assert_eq!(summary["verdicts"]["pass"], true, "{}", summary["verdicts"]);
}
