//! Micro (run only when named: `feedpub-bench micro`): in process, the costs behind two
//! choices BENCHMARKS.md explains under "Thousands of author and tag feeds from one call".
//!
//! - The snapshot (every served document by path) is a persistent map, so that putting one
//!   feed's documents in does not copy the others: a lookup in it, against the standard
//!   library's map with the same keys, at 30, 1,000 and 30,000 documents.
//! - Brotli at quality 5 sets up a 32 MiB hash table per call with a window of 16 bits or
//!   less: feedpub's window (never below 18 bits) against a 16-bit one, per call, on
//!   documents of 1, 3, 30 and 60 KB of the sample edition's copy. And what one document's
//!   two codings at the full levels cost (`FeedFile::compress`), at those sizes.

use crate::Mode;
use crate::fixture::SampleCopy;
use crate::report::{Figure, Target};
use feedpub::publication::{FeedFile, Links};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Documents in the snapshots looked up in.
const SNAPSHOT_SIZES: [usize; 3] = [30, 1_000, 30_000];
/// Document sizes compressed, in KB.
const DOCUMENT_KB: [usize; 4] = [1, 3, 30, 60];
/// The smallest window feedpub gives brotli, and the one that sets up the large table.
const FEEDPUB_WINDOW: u32 = 18;
const SMALL_WINDOW: u32 = 16;

/// One run: every figure, each timed for about `budget`.
pub fn run(mode: &Mode) -> Vec<Figure> {
    let budget = Duration::from_secs_f64(mode.render_seconds / 2.0);
    let mut figures = Vec::new();
    for size in SNAPSHOT_SIZES {
        let (persistent, standard) = lookups(size, budget);
        figures.push(Figure {
            name: format!("Micro: snapshot lookup, {size} documents"),
            unit: "ns",
            feedpub: persistent,
            peer: Some(("std HashMap", standard)),
            target: Target::Info,
        });
    }
    let copy = SampleCopy::load();
    for kb in DOCUMENT_KB {
        let text = copy.text_of(kb * 1024);
        let per_call = |window| {
            time_per_call(budget, || {
                let mut out = Vec::with_capacity(text.len() / 3);
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, window);
                writer.write_all(text.as_bytes()).expect("into memory");
                drop(writer);
                black_box(out);
            })
        };
        figures.push(Figure {
            name: format!("Micro: brotli q5, {kb} KB, one call"),
            unit: "ms",
            feedpub: per_call(FEEDPUB_WINDOW) * 1e3,
            peer: Some(("16-bit window", per_call(SMALL_WINDOW) * 1e3)),
            target: Target::Info,
        });
        let file = FeedFile::uncompressed(
            text.clone().into_bytes(),
            "application/rss+xml",
            chrono::Utc::now(),
            60,
            &Links {
                self_url: "http://127.0.0.1/feeds/bench/rss.xml".into(),
                hub_url: None,
            },
        );
        let compress = time_per_call(budget, || {
            black_box(file.compress(feedpub::publication::Compression::Full));
        });
        figures.push(Figure {
            name: format!("Micro: gzip 6 + brotli 5 of a {kb} KB document"),
            unit: "ms",
            feedpub: compress * 1e3,
            peer: None,
            target: Target::Info,
        });
    }
    figures
}

/// Nanoseconds per lookup of a present key in a persistent map and in a standard one of
/// `size` documents keyed as the snapshot is (`tags/{slug}/rss.xml`).
fn lookups(size: usize, budget: Duration) -> (f64, f64) {
    let keys: Vec<String> = (0..size)
        .map(|i| {
            let format = ["rss.xml", "atom.xml", "feed.json"][i % 3];
            format!(
                "tags/tag-{:05}-{:06x}/{format}",
                i / 3,
                i * 2_654_435_761 % (1 << 24)
            )
        })
        .collect();
    let mut persistent = rpds::HashTrieMapSync::new_sync();
    let mut standard = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        persistent.insert_mut(key.clone(), Arc::new(i));
        standard.insert(key.clone(), Arc::new(i));
    }
    // The same walk through the keys for both: a fixed stride, so that neither finds the
    // next key in a cache line the last one brought.
    let order: Vec<&str> = (0..keys.len())
        .map(|i| keys[i * 7_919 % keys.len()].as_str())
        .collect();
    let per_lookup = |get: &dyn Fn(&str) -> bool| {
        let mut looked_up = 0usize;
        let started = Instant::now();
        while started.elapsed() < budget {
            for key in &order {
                assert!(get(black_box(key)), "every key is present");
            }
            looked_up += order.len();
        }
        started.elapsed().as_secs_f64() * 1e9 / looked_up as f64
    };
    (
        per_lookup(&|key| persistent.contains_key(key)),
        per_lookup(&|key| standard.contains_key(key)),
    )
}

/// Seconds per call of `call`, called until `budget` has passed (at least 3 times).
fn time_per_call(budget: Duration, mut call: impl FnMut()) -> f64 {
    let mut calls = 0u32;
    let started = Instant::now();
    while calls < 3 || started.elapsed() < budget {
        call();
        calls += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(calls)
}
