//! Telemetry set-up: logs (text or JSON lines on stderr, filtered by `RUST_LOG`, default
//! `info`) and the Prometheus metrics recorder. Tests stay quiet unless `TEST_LOG` is set.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,sqlx=warn,h2=warn,hyper=warn";

/// Installs the global log subscriber for the binary.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A log line that stderr cannot take (a full disk, a reader gone) is lost, not reported
    // on stderr again, which would panic.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Installs a subscriber in tests only when `TEST_LOG` is set; safe to call many times.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("debug,sqlx=warn,h2=warn,hyper=warn"))
            .with_test_writer()
            .try_init();
    }
}

/// Latency buckets, in seconds, of every feedpub histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
        };
        let handle = builder().install_recorder().unwrap_or_else(|e| {
            // Another recorder is already global: keep an unregistered one so /metrics works.
            tracing::warn!(error = %e, "metrics recorder not installed");
            builder().build_recorder().handle()
        });
        describe();
        handle
    })
}

/// What a metric is, for its `# TYPE` line.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric feedpub exports: its `# HELP` text and, for a counter whose series are all
/// known at start, those series, shown at zero from the first scrape (a rate over a series
/// that appears only with its first event misses that event).
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// The label sets of the series shown at zero; `&[&[]]` for the one unlabelled series.
    zero: &'static [Labels],
}

/// The labels of one series.
type Labels = &'static [(&'static str, &'static str)];

/// Every metric feedpub exports. Series labelled by feed appear with their feed's first
/// regeneration or request; `feedpub_fault` is set per component by [`crate::health`].
const CATALOGUE: &[Metric] = &[
    Metric {
        name: "feedpub_http_requests_total",
        kind: Kind::Counter,
        help: "Feed requests answered, by feed, format and status (200, 304, 412, 404).",
        zero: &[],
    },
    Metric {
        name: "feedpub_http_response_bytes_total",
        kind: Kind::Counter,
        help: "Bytes of feed bodies sent, by feed, format and content coding.",
        zero: &[],
    },
    Metric {
        name: "feedpub_http_sendfile_responses_total",
        kind: Kind::Counter,
        help: "Feed bodies sent from their file under feeds/ with sendfile(2).",
        zero: &[&[]],
    },
    Metric {
        name: "feedpub_feed_regenerations_total",
        kind: Kind::Counter,
        help: "Feeds regenerated (RSS, Atom and JSON Feed together), by feed.",
        zero: &[],
    },
    Metric {
        name: "feedpub_feed_regeneration_seconds",
        kind: Kind::Histogram,
        help: "Time to regenerate one feed's three documents, by feed.",
        zero: &[],
    },
    Metric {
        name: "feedpub_feeds_settled",
        kind: Kind::Gauge,
        help: "1 when every acknowledged change is in the feeds and their files, else 0.",
        zero: &[],
    },
    Metric {
        name: "feedpub_publish_total",
        kind: Kind::Counter,
        help: "Articles published, by outcome: changed, unchanged, refused or failed.",
        zero: &[
            &[("outcome", "changed")],
            &[("outcome", "unchanged")],
            &[("outcome", "refused")],
            &[("outcome", "failed")],
        ],
    },
    Metric {
        name: "feedpub_publish_seconds",
        kind: Kind::Histogram,
        help: "Time to publish one article with PublishArticle, from its call to its durable acknowledgement (batch streams are not timed).",
        zero: &[],
    },
    Metric {
        name: "feedpub_grpc_authentications_total",
        kind: Kind::Counter,
        help: "Partner tokens looked_up in the database, or remembered from a lookup.",
        zero: &[&[("partner", "looked_up")], &[("partner", "remembered")]],
    },
    Metric {
        name: "feedpub_grpc_rate_limited_total",
        kind: Kind::Counter,
        help: "gRPC calls refused RESOURCE_EXHAUSTED for their partner's rate limit.",
        zero: &[&[]],
    },
    Metric {
        name: "feedpub_connections_refused_total",
        kind: Kind::Counter,
        help: "Connections closed at once for being over a listener's connection limits.",
        zero: &[&[("listener", "grpc")], &[("listener", "http")]],
    },
    Metric {
        name: "feedpub_connections_evicted_total",
        kind: Kind::Counter,
        help: "Connections closed for a newer one over the cap: on gRPC the oldest that had made no authenticated call, on HTTP the one idle longest.",
        zero: &[&[("listener", "grpc")], &[("listener", "http")]],
    },
    Metric {
        name: "feedpub_connection_timeouts_total",
        kind: Kind::Counter,
        help: "Connections closed because their peer stalled, by listener and reason.",
        zero: &[
            &[("listener", "grpc"), ("reason", "header")],
            &[("listener", "grpc"), ("reason", "idle")],
            &[("listener", "grpc"), ("reason", "send")],
            &[("listener", "http"), ("reason", "header")],
            &[("listener", "http"), ("reason", "idle")],
            &[("listener", "http"), ("reason", "send")],
        ],
    },
    Metric {
        name: "feedpub_fault",
        kind: Kind::Gauge,
        help: "1 while a component (storage, feeds, wal, replication) fails; alert on it.",
        zero: &[],
    },
    Metric {
        name: "feedpub_storage_probes_total",
        kind: Kind::Counter,
        help: "Writes that change nothing, tried while the storage fault stands, by outcome.",
        zero: &[
            &[("outcome", "ok")],
            &[("outcome", "failed")],
            &[("outcome", "closed")],
        ],
    },
    Metric {
        name: "feedpub_replica_events_followed_total",
        kind: Kind::Counter,
        help: "Events of other replicas followed from the shared database.",
        zero: &[],
    },
    Metric {
        name: "feedpub_websub_deliveries_total",
        kind: Kind::Counter,
        help: "WebSub content deliveries, by result: ok, failed (given up), gone (410), \
               superseded (a newer document on its way) or unsubscribed (the subscription \
               ended while it waited).",
        zero: &[
            &[("result", "ok")],
            &[("result", "failed")],
            &[("result", "gone")],
            &[("result", "superseded")],
            &[("result", "unsubscribed")],
        ],
    },
    Metric {
        name: "feedpub_websub_deliveries_taken_over_total",
        kind: Kind::Counter,
        help: "WebSub deliveries taken over from a run whose claim lapsed.",
        zero: &[&[]],
    },
    Metric {
        name: "feedpub_websub_failing_hosts",
        kind: Kind::Gauge,
        help: "WebSub callback hosts whose last delivery failed; until one succeeds, their \
               deliveries share 16 slots of their own.",
        zero: &[],
    },
    Metric {
        name: "feedpub_websub_verifications_total",
        kind: Kind::Counter,
        help: "WebSub verifications of intent, by result: ok or failed.",
        zero: &[&[("result", "ok")], &[("result", "failed")]],
    },
];

/// Gives every metric its `# HELP` line, and shows at zero the counters whose series are
/// known at start.
fn describe() {
    for metric in CATALOGUE {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
        for labels in metric.zero {
            metrics::counter!(metric.name, *labels).increment(0);
        }
    }
}
