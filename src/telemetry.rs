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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
        builder().install_recorder().unwrap_or_else(|e| {
            // Another recorder is already global: keep an unregistered one so /metrics works.
            tracing::warn!(error = %e, "metrics recorder not installed");
            builder().build_recorder().handle()
        })
    })
}
