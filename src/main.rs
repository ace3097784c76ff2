//! The `feedpub` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    // Before the runtime spawns a thread.
    feedpub::heap::cap_arenas();
    let cli = feedpub::cli::parse_args();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(feedpub::cli::run(cli))
}
