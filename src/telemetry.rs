//! Logging set-up: text lines on stderr, filtered by `RUST_LOG` (default `info`).
//! Tests stay quiet unless `TEST_LOG` is set.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber for the binary.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
