//! The `feedpub` binary: parse the command line, start logging, dispatch.

use clap::Parser;
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let cli = feedpub::cli::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(feedpub::cli::run(cli))
}
