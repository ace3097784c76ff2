//! The soak's sample table, JSON summary and report figures.

use super::{Outcome, Sample};
use crate::report::{Figure, Target};
use serde_json::json;
use std::fmt::Write as _;

const TABLE_HEADER: &str = "| t (s) | RSS (MiB) | fds | WAL (MiB) | WAL restarts | DB (MiB) | \
     published | corrected | retracted | batched | polls 200 | polls 304 | events | \
     reconnects | errors |";

pub(super) fn sample_row(s: &Sample) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let c = &s.counts;
    format!(
        "| {:.0} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        s.t.as_secs_f64(),
        s.rss_kib as f64 / 1024.0,
        s.fds,
        mib(s.wal_bytes),
        s.wal_restarts,
        mib(s.db_bytes),
        c.published,
        c.corrected,
        c.retracted,
        c.batch_articles,
        c.polls_200,
        c.polls_304,
        c.events,
        c.reconnects,
        c.errors
    )
}

impl Outcome {
    /// The samples as a Markdown table, then the verdicts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Soak: {:.0} s at {:?}\n",
            self.duration.as_secs_f64(),
            self.plan
        );
        let _ = writeln!(out, "{TABLE_HEADER}");
        let _ = writeln!(out, "{}", "|---".repeat(15) + "|");
        for s in &self.samples {
            let _ = writeln!(out, "{}", sample_row(s));
        }
        let t = &self.totals;
        let secs = self.duration.as_secs_f64().max(1.0);
        let writes = t.published + t.corrected + t.retracted + t.batch_articles;
        let _ = writeln!(
            out,
            "\nrates reached: {:.1} writes/s, {:.1} feed requests/s ({} events seen by \
             {} watchers)",
            writes as f64 / secs,
            (t.polls_200 + t.polls_304) as f64 / secs,
            t.events,
            self.plan.watchers
        );
        let v = &self.verdicts;
        let _ = writeln!(
            out,
            "memory flat: {} (max RSS {:.1} MiB in the last third, {:.1} in the first \
             after warm-up, at most {:.1} allowed)",
            v.memory_flat, v.rss_last_mib, v.rss_first_mib, v.rss_allowed_mib
        );
        let _ = writeln!(
            out,
            "fds flat: {} (max {} in the last third, {} in the first, at most +{})",
            v.fds_flat, v.fds_last, v.fds_first, self.bounds.fd_growth
        );
        let _ = writeln!(
            out,
            "WAL bounded: {} (max {:.1} MiB, at most {:.0})",
            v.wal_bounded, v.wal_max_mib, self.bounds.wal_max_mib
        );
        let _ = writeln!(out, "zero errors: {} ({:?})", v.zero_errors, self.errors);
        for e in &self.first_errors {
            let _ = writeln!(out, "  {e}");
        }
        out
    }

    /// The JSON summary: samples, totals, errors, bounds and verdicts.
    pub fn json(&self) -> serde_json::Value {
        let samples: Vec<_> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "t_s": s.t.as_secs_f64(),
                    "rss_kib": s.rss_kib,
                    "fds": s.fds,
                    "wal_bytes": s.wal_bytes,
                    "wal_restarts": s.wal_restarts,
                    "db_bytes": s.db_bytes,
                    "errors": s.counts.errors,
                })
            })
            .collect();
        let t = &self.totals;
        let v = &self.verdicts;
        let b = &self.bounds;
        json!({
            "duration_s": self.duration.as_secs_f64(),
            "sample_every_s": self.plan.sample_every.as_secs_f64(),
            "plan": format!("{:?}", self.plan),
            "bounds": {
                "warm_up": b.warm_up,
                "rss_growth_mib": b.rss_growth_mib,
                "rss_growth_ratio": b.rss_growth_ratio,
                "fd_growth": b.fd_growth,
                "wal_max_mib": b.wal_max_mib,
            },
            "samples": samples,
            "totals": {
                "published": t.published,
                "corrected": t.corrected,
                "retracted": t.retracted,
                "batches": t.batches,
                "batch_articles": t.batch_articles,
                "polls_200": t.polls_200,
                "polls_304": t.polls_304,
                "health": t.health,
                "events": t.events,
                "reconnects": t.reconnects,
            },
            "errors": {
                "total": t.errors,
                "by_kind": self.errors,
                "first": self.first_errors,
            },
            "verdicts": {
                "rss_first_mib": v.rss_first_mib,
                "rss_last_mib": v.rss_last_mib,
                "rss_allowed_mib": v.rss_allowed_mib,
                "memory_flat": v.memory_flat,
                "fds_first": v.fds_first,
                "fds_last": v.fds_last,
                "fds_flat": v.fds_flat,
                "wal_max_mib": v.wal_max_mib,
                "wal_bounded": v.wal_bounded,
                "zero_errors": v.zero_errors,
                "pass": v.pass(),
            },
        })
    }

    /// The figures of the benchmark report.
    pub fn figures(&self) -> Vec<Figure> {
        let v = &self.verdicts;
        let first = self.samples.first().copied().unwrap_or_default();
        let last = self.samples.last().copied().unwrap_or_default();
        let figure = |name: &str, unit, value, target| Figure {
            name: format!("Soak: {name}"),
            unit,
            feedpub: value,
            peer: None,
            target,
        };
        let minutes = self.duration.as_secs_f64() / 60.0;
        vec![
            figure(
                &format!("RSS growth, last third over first (of {minutes:.0} min)"),
                "MiB",
                v.rss_last_mib - v.rss_first_mib,
                Target::AtMost(v.rss_allowed_mib - v.rss_first_mib),
            ),
            figure(
                "RSS at the end",
                "MiB",
                last.rss_kib as f64 / 1024.0,
                Target::Info,
            ),
            figure(
                "open fds, growth last third over first",
                "fds",
                v.fds_last as f64 - v.fds_first as f64,
                Target::AtMost(self.bounds.fd_growth as f64),
            ),
            figure(
                "largest WAL",
                "MiB",
                v.wal_max_mib,
                Target::AtMost(self.bounds.wal_max_mib),
            ),
            figure(
                "database at the end",
                "MiB",
                last.db_bytes as f64 / (1024.0 * 1024.0),
                Target::Info,
            ),
            figure(
                "writes acknowledged",
                "writes",
                (self.totals.published
                    + self.totals.corrected
                    + self.totals.retracted
                    + self.totals.batch_articles) as f64,
                Target::Info,
            ),
            figure(
                "feed requests (200 and 304)",
                "requests",
                (self.totals.polls_200 + self.totals.polls_304) as f64,
                Target::Info,
            ),
            figure(
                "errors",
                "errors",
                self.totals.errors as f64,
                Target::AtMost(0.0),
            ),
            figure(
                "RSS at the start",
                "MiB",
                first.rss_kib as f64 / 1024.0,
                Target::Info,
            ),
        ]
    }
}
