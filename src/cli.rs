//! Command-line interface: `feedpub serve` and `feedpub partner add`. Every flag can also
//! come from a `FEEDPUB_…` environment variable; flags win over the environment, which wins
//! over the configuration file.

use crate::app::Application;
use crate::config::{Overrides, Settings};
use crate::domain::{SectionGrant, SectionSlug};
use crate::publishing;
use crate::storage::SqliteStore;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// feedpub: publishes news as RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds.
#[derive(Debug, Parser)]
#[command(name = "feedpub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC API and the feed server.
    Serve(ServeArgs),
    /// Manage partners (the outlets that publish).
    #[command(subcommand)]
    Partner(PartnerCommand),
}

/// Where configuration and data live.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Configuration file [default: ./feedpub.toml, else the embedded sample]
    #[arg(long, env = "FEEDPUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder holding the SQLite database [default: ./data]
    #[arg(long, env = "FEEDPUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Options of `feedpub serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Folder the feeds are written to [default: ./feeds]
    #[arg(long, env = "FEEDPUB_FEEDS_DIR")]
    pub feeds_dir: Option<PathBuf>,
    /// Address of the gRPC API [default: 127.0.0.1:50051]
    #[arg(long, env = "FEEDPUB_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the HTTP feed server [default: 127.0.0.1:8080]
    #[arg(long, env = "FEEDPUB_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Publish the sample edition (朔州日报, 7 June 2023) at start
    #[arg(long, env = "FEEDPUB_DEMO")]
    pub demo: bool,
}

/// `feedpub partner …`
#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Create a partner and print its new token (shown once) on the last line.
    Add(PartnerAddArgs),
}

/// Options of `feedpub partner add`.
#[derive(Debug, Args)]
pub struct PartnerAddArgs {
    /// Unique name: a-z 0-9 -, 1 to 64 characters
    pub name: String,
    /// A section the partner may publish to (repeatable)
    #[arg(
        long = "section",
        value_name = "SLUG",
        required_unless_present = "all_sections"
    )]
    pub sections: Vec<String>,
    /// Let the partner publish to every section
    #[arg(long, conflicts_with = "sections")]
    pub all_sections: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Partner(PartnerCommand::Add(args)) => partner_add(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Listen for signals before start-up work, so a signal during it still stops cleanly.
    let stop = stop_signal()?;
    survive_file_size_limit()?;
    let settings = Settings::load(
        args.store.config.as_deref(),
        Overrides {
            data_dir: args.store.data_dir,
            feeds_dir: args.feeds_dir,
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
        },
    )?;
    crate::telemetry::init(settings.log.format);
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.grpc_addr(), "gRPC API listening on {}", app.grpc_addr());
    tracing::info!(addr = %app.http_addr(), "HTTP feeds listening on http://{}/", app.http_addr());
    if args.demo {
        let changed = app.publish_demo().await?;
        tracing::info!(changed, "sample edition published");
    }
    app.run_until_stopped(stop).await?;
    tracing::info!("stopped");
    Ok(())
}

/// A future that completes on SIGINT or SIGTERM; the handlers are installed at once.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Keeps SIGXFSZ from killing the process: a write past a file size limit (RLIMIT_FSIZE)
/// then fails with EFBIG like a write to a full disk, which the service reports and survives.
#[cfg(unix)]
fn survive_file_size_limit() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut exceeded =
        signal(SignalKind::from_raw(libc::SIGXFSZ)).context("cannot handle SIGXFSZ")?;
    tokio::spawn(async move {
        while exceeded.recv().await.is_some() {
            tracing::warn!("a write went past the file size limit (SIGXFSZ) and failed");
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn survive_file_size_limit() -> anyhow::Result<()> {
    Ok(())
}

/// A future that completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn partner_add(args: PartnerAddArgs) -> anyhow::Result<()> {
    crate::telemetry::init(crate::config::LogFormat::Text);
    let settings = Settings::load(
        args.store.config.as_deref(),
        Overrides {
            data_dir: args.store.data_dir,
            ..Overrides::default()
        },
    )?;
    let grant = if args.all_sections {
        SectionGrant::All
    } else {
        SectionGrant::Only(
            args.sections
                .iter()
                .map(|s| SectionSlug::parse(s).map_err(|e| anyhow::anyhow!("--section {s:?}: {e}")))
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let store = SqliteStore::open(&settings.server.data_dir)
        .await
        .with_context(|| {
            format!(
                "cannot open the store in {}",
                settings.server.data_dir.display()
            )
        })?;
    let result = publishing::add_partner(&store, &settings, &args.name, grant).await;
    crate::storage::Store::close(&store).await;
    let (partner, token) = result?;
    let rights = match &partner.grant {
        SectionGrant::All => "every section".to_owned(),
        SectionGrant::Only(sections) => sections
            .iter()
            .map(SectionSlug::as_str)
            .collect::<Vec<_>>()
            .join(", "),
    };
    println!(
        "partner {} created; it may publish to: {rights}",
        partner.name
    );
    println!("its token follows; it is shown only this once and stored only as a hash:");
    println!("{}", token.expose());
    Ok(())
}
