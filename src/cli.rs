//! Command-line interface: `feedpub serve`, `feedpub partner …`, `feedpub audit` and the
//! database commands `migrate`, `export` and `import` on the server's side; `feedpub publish
//! | get | list | retract`, the partner client, against a remote server. Every flag can also
//! come from a `FEEDPUB_…` environment variable; flags win over the environment, which wins
//! over the configuration file.

pub mod client;
mod partners;

use crate::app::Application;
use crate::config::{Overrides, Settings};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

pub use partners::{
    AuditArgs, PartnerAddArgs, PartnerCommand, PartnerNameArgs, PartnerRetractArgs, RightsArgs,
};

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
    /// Manage partners (the outlets that publish), also while the server runs.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Show the audit log: every publish, retraction and partner change, newest first.
    Audit(AuditArgs),
    /// Publish the articles of a JSON Lines file to a server (safe to run again).
    Publish(client::PublishArgs),
    /// Show one of your articles, or a past version of it.
    Get(client::GetArgs),
    /// List your articles, newest first.
    List(client::ListArgs),
    /// Take one of your articles out of every feed.
    Retract(client::RetractArgs),
    /// Follow the articles' events as they are stored (publishes, updates, retractions,
    /// embargo ends), resuming after a lost connection.
    Watch(client::WatchArgs),
    /// Bring the database's schema up to date (`serve` also does at start).
    Migrate(StoreArgs),
    /// Write every stored row to standard output as JSON lines, from one snapshot.
    Export(StoreArgs),
    /// Load an export into an empty database, in one transaction (e.g. SQLite to PostgreSQL).
    Import(ImportArgs),
}

/// Options of `feedpub import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export to load (`-` for standard input)
    pub file: PathBuf,
    /// Import even though the database already holds partners or articles
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Take HTML bodies as they are, not only as this configuration's sanitiser leaves
    /// them (for a database that lived through a change of the sanitiser or of
    /// `[content] iframe_hosts`); the other checks still run
    #[arg(long)]
    pub trust_html: bool,
    #[command(flatten)]
    pub store: StoreArgs,
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
    /// PostgreSQL database to use instead of SQLite (postgres://user:password@host/db)
    #[arg(
        long,
        env = "FEEDPUB_DATABASE_URL",
        hide_env_values = true,
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub database_url: Option<String>,
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
    #[arg(long, env = "FEEDPUB_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

/// Runs a parsed command line. The partner client reports its own errors, with exit codes
/// of their own ([`client::exit`]).
/// Parses the command line. A value from a `FEEDPUB_…` variable that is refused is named
/// by its variable, not by the flag it stands for, which the user may never have typed;
/// secret values (tokens, database URLs) are not repeated.
pub fn parse_args() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    Cli::try_parse_from(&args).unwrap_or_else(|error| {
        use clap::error::ErrorKind;
        // Help and version, asked for or shown for a command given alone, as clap prints them.
        if matches!(
            error.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            error.exit()
        }
        let message = from_environment(&error, &args).unwrap_or_else(|| one_line(&error));
        tell(message);
        std::process::exit(2)
    })
}

/// clap's message on one line, as feedpub's other errors are: what is wrong, its tips, and
/// the usage of the command at fault.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let (what, rest) = text.split_once("\n\nUsage: ").unwrap_or((&text, ""));
    let what = what.strip_prefix("error: ").unwrap_or(what);
    let what = what
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    match rest.lines().next().filter(|usage| !usage.is_empty()) {
        Some(usage) => format!("{what} (usage: {usage}; --help says more)"),
        None => what,
    }
}

/// What to say instead of clap's message when `error` is about a value that came from the
/// environment: the flag it names is not among the arguments and its variable is set.
fn from_environment(error: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split(' ').next()?;
    let long = flag.strip_prefix("--")?;
    let typed = args.iter().skip(1).any(|a| {
        a.to_str().is_some_and(|a| {
            a == flag
                || a.strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    });
    if typed {
        return None;
    }
    let command = <Cli as clap::CommandFactory>::command();
    let found = env_arg(&command, long)?;
    let variable = found.get_env()?.to_string_lossy().into_owned();
    let value = std::env::var_os(&variable)?;
    // An empty value gives away no secret.
    let shown = if found.is_hide_env_values_set() && !value.is_empty() {
        String::new()
    } else {
        format!(" {:?}", value.to_string_lossy())
    };
    let reason = match std::error::Error::source(error) {
        // The flags of `[server]` keys leave an unset value to the file.
        _ if value.is_empty()
            && [
                "data-dir",
                "database-url",
                "feeds-dir",
                "grpc-addr",
                "http-addr",
            ]
            .contains(&long) =>
        {
            ": it is empty (unset it to leave the setting to the configuration file)".to_owned()
        }
        _ if value.is_empty() => ": it is empty (unset it for the default)".to_owned(),
        Some(source) => format!(": {source}"),
        None => match error.get(ContextKind::ValidValue) {
            Some(valid) if !valid.to_string().is_empty() => format!(": expected one of {valid}"),
            _ => String::new(),
        },
    };
    Some(format!(
        "{variable}{shown} is not a valid value for {flag}{reason}"
    ))
}

/// The argument `--long` of `command` or of any of its subcommands, when it has a variable.
fn env_arg(command: &clap::Command, long: &str) -> Option<clap::Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long) && a.get_env().is_some())
        .cloned()
        .or_else(|| command.get_subcommands().find_map(|sub| env_arg(sub, long)))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let result = match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Partner(command) => partners::run(command).await.map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => partners::audit(args).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate(args) => migrate(args).await.map(|()| ExitCode::SUCCESS),
        Command::Export(args) => export(args).await.map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import(args).await.map(|()| ExitCode::SUCCESS),
        Command::Publish(args) => Ok(client::publish(args).await),
        Command::Get(args) => Ok(client::get(args).await),
        Command::List(args) => Ok(client::list(args).await),
        Command::Retract(args) => Ok(client::retract(args).await),
        Command::Watch(args) => Ok(client::watch(args).await),
    };
    match result {
        Err(e) => match e.downcast_ref::<OutputError>() {
            Some(output) => Ok(output.report()),
            // One message on stderr, its causes after it (`feedpub: cannot … : …`), as the
            // client's commands report theirs, and exit code 1.
            None => {
                tell(format_args!("{e:#}"));
                Ok(ExitCode::FAILURE)
            }
        },
        done => done,
    }
}

/// Standard output could not take what a command printed (a full disk, a closed pipe).
/// `done` says what the command had already changed, for it is not undone.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output: {error}{done}")]
pub struct OutputError {
    error: std::io::Error,
    done: String,
}

impl OutputError {
    /// The same failure, after the command changed something: `done` says what, and how
    /// to get what the lost output held.
    fn after(mut self, done: String) -> Self {
        self.done = format!("; {done}");
        self
    }

    /// Reports the failure as one line on stderr, and the exit code. A reader that stopped
    /// reading (`feedpub audit | head`) is no error when nothing was changed: the command
    /// ends quietly, as when it printed everything.
    fn report(&self) -> ExitCode {
        if self.done.is_empty() && self.error.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        tell(self);
        ExitCode::FAILURE
    }
}

/// Tells the user `message` on one line of stderr, after `feedpub: `. A stderr that cannot
/// take it (a full disk, a closed pipe) loses the line, and the command goes on: its exit
/// code still says how it ended.
pub(crate) fn tell(message: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "feedpub: {message}");
}

/// Writes `text` to standard output at once and flushes it; an error is the command's.
fn write_out(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| OutputError {
            error,
            done: String::new(),
        })
}

/// The settings of the configuration file and the store flags.
fn store_settings(args: &StoreArgs) -> anyhow::Result<Settings> {
    Ok(Settings::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            ..Overrides::default()
        },
    )?)
}

async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let settings = store_settings(&args)?;
    let location = crate::storage::location(&settings.server);
    let version = crate::storage::transfer::migrate(&settings.server)
        .await
        .with_context(|| format!("cannot migrate the database in {location}"))?;
    write_out(&format!(
        "the database in {location} is up to date (schema version {version})\n"
    ))?;
    Ok(())
}

async fn export(args: StoreArgs) -> anyhow::Result<()> {
    let settings = store_settings(&args)?;
    let location = crate::storage::location(&settings.server);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let counts = match crate::storage::transfer::export(&settings.server, &mut out).await {
        // It names the file it looked for.
        Err(e) if e.names_the_database() => return Err(e.into()),
        exported => {
            exported.with_context(|| format!("cannot export the database in {location}"))?
        }
    };
    let _ = writeln!(
        std::io::stderr(),
        "exported from {location}: {}",
        describe(&counts)
    );
    Ok(())
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let settings = store_settings(&args.store)?;
    let location = crate::storage::location(&settings.server);
    // Held until the import ends: a server running on the folder would never show what is
    // imported (it learns of its own writes only), and none may start meanwhile.
    let _folder = crate::app::lock_data_folder(&settings.server).map_err(|e| match e {
        crate::app::AppError::DataFolderInUse(path) => anyhow::anyhow!(
            "a feedpub serve is running on the data folder {path:?}: stop it before importing \
             (it would not show what is imported)"
        ),
        e => e.into(),
    })?;
    let input: Box<dyn std::io::BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    // Rows are checked against what publishing stores, with the site's own HTML policy.
    let policy =
        (!args.trust_html).then(|| crate::domain::HtmlPolicy::new(&settings.content.iframe_hosts));
    let counts = crate::storage::transfer::import(
        &settings.server,
        policy.as_ref(),
        &settings.limits,
        input,
        args.allow_non_empty,
    )
    .await
    .with_context(|| format!("cannot import into the database in {location}"))?;
    let imported = format!("imported into {location}: {}", describe(&counts));
    write_out(&format!("{imported}\n")).map_err(|e| e.after(imported))?;
    Ok(())
}

/// `12 partners, 3400 articles, …`: the rows moved, by table.
fn describe(counts: &crate::storage::transfer::Counts) -> String {
    counts
        .iter()
        .map(|(table, count)| format!("{count} {table}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `serve` logs, one line each, before the gRPC and the HTTP address it listens on.
/// Programs that start `feedpub serve` read the addresses back with [`listening_in`].
pub const GRPC_LISTENING: &str = "gRPC API listening on ";
pub const HTTP_LISTENING: &str = "HTTP feeds listening on ";

/// Announces both listeners in the log, the HTTP one as the URL it answers at.
fn log_listening(grpc: SocketAddr, http: SocketAddr, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    tracing::info!(addr = %grpc, "{GRPC_LISTENING}{grpc}");
    tracing::info!(addr = %http, "{HTTP_LISTENING}{scheme}://{http}/");
}

/// Feeds link to `[site] base_url`: when it names this machine (a loopback address or
/// `localhost`) on another port than the HTTP listener's, as after `--http-addr` alone, no
/// link in them reaches this server; nor do they under a path, where no proxy stands
/// between (this server answers at its root); says so. A base URL of another host is a
/// proxy's, which may serve it under a path.
fn links_elsewhere(base_url: &url::Url, http: SocketAddr) -> Option<String> {
    if !names_this_machine(base_url)? {
        return None;
    }
    // The listener must take this machine's loopback connections, at that port.
    let reached = (http.ip().is_loopback() || http.ip().is_unspecified())
        && base_url.port_or_known_default() == Some(http.port());
    if !reached {
        return Some(format!(
            "the feeds link to [site] base_url {base_url}, but this server's HTTP address is \
             {http}: set base_url to the address readers use"
        ));
    }
    (base_url.path() != "/").then(|| {
        format!(
            "the feeds link to [site] base_url {base_url}, under {}, but this server answers \
             at the root of {http} ({}feeds/): set base_url to the address readers use, \
             without the path unless a proxy serves it",
            base_url.path(),
            base_url
                .join("/")
                .map_or_else(|_| base_url.to_string(), String::from)
        )
    })
}

/// A server that speaks only TLS on its HTTP port whose feeds link to an `http://` base URL
/// on this machine: every self link and hub link in them points at plain HTTP on a port that
/// does not speak it; says so. A base URL of another host is a proxy's, which may well
/// speak plain HTTP to readers.
fn plain_links_to_tls(base_url: &url::Url, tls: bool) -> Option<String> {
    let local = names_this_machine(base_url)?;
    (tls && local && base_url.scheme() == "http").then(|| {
        format!(
            "the feeds link to [site] base_url {base_url}, plain HTTP, but this server speaks \
             only TLS: set base_url to the https:// address readers use"
        )
    })
}

/// Whether `base_url` names this machine: a loopback address or `localhost` (`None` without
/// a host).
fn names_this_machine(base_url: &url::Url) -> Option<bool> {
    Some(match base_url.host()? {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    })
}

/// A listener `serve` announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    Grpc(SocketAddr),
    Http(SocketAddr),
}

impl Listening {
    /// The address of the gRPC listener.
    pub fn grpc(self) -> Option<SocketAddr> {
        match self {
            Self::Grpc(addr) => Some(addr),
            Self::Http(_) => None,
        }
    }

    /// The address of the HTTP listener.
    pub fn http(self) -> Option<SocketAddr> {
        match self {
            Self::Http(addr) => Some(addr),
            Self::Grpc(_) => None,
        }
    }
}

/// The listener one line of `serve`'s log (text or JSON) announces, if it announces one.
pub fn listening_in(line: &str) -> Option<Listening> {
    let address = |marker: &str| -> Option<SocketAddr> {
        let (_, rest) = line.split_once(marker)?;
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| rest.strip_prefix(scheme))
            .unwrap_or(rest);
        rest.split(|c: char| c.is_whitespace() || c == '/' || c == '"')
            .next()?
            .parse()
            .ok()
    };
    address(GRPC_LISTENING)
        .map(Listening::Grpc)
        .or_else(|| address(HTTP_LISTENING).map(Listening::Http))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Listen for signals before start-up work, so a signal during it still stops cleanly.
    let stop = stop_signal()?;
    survive_file_size_limit()?;
    let settings = Settings::load(
        args.store.config.as_deref(),
        Overrides {
            data_dir: args.store.data_dir,
            database_url: args.store.database_url,
            feeds_dir: args.feeds_dir,
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
        },
    )?;
    crate::telemetry::init(settings.log.format);
    // A server started in the wrong folder runs the embedded sample there: said at once.
    tracing::info!(
        feeds = %settings.server.feeds_dir.display(),
        "configuration from {}",
        settings.source
    );
    crate::connections::raise_open_file_limit(&settings.limits);
    let base_url = settings.site.base_url.clone();
    for doubt in settings.doubts() {
        tracing::warn!("{doubt}");
    }
    // A signal during start-up (a database that does not answer yet, feeds being built)
    // stops it there: what start-up leaves half done is as safe as after a crash.
    tokio::pin!(stop);
    let app = tokio::select! {
        app = Application::build(settings) => app?,
        () = &mut stop => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    log_listening(app.grpc_addr(), app.http_addr(), app.serves_tls());
    let warnings = [
        links_elsewhere(&base_url, app.http_addr()),
        plain_links_to_tls(&base_url, app.serves_tls()),
    ];
    for warning in warnings.into_iter().flatten() {
        tracing::warn!("{warning}");
    }
    if args.demo {
        let stored = app.publish_demo().await?;
        tracing::info!(stored, "sample edition published");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_base_url_on_this_machine_at_another_port_is_warned_of() {
        let http: SocketAddr = "127.0.0.1:48093".parse().unwrap();
        let warned = |base: &str| links_elsewhere(&url::Url::parse(base).unwrap(), http);
        let warning = warned("http://127.0.0.1:8080/").expect("another port");
        assert!(warning.contains("127.0.0.1:48093"), "{warning}");
        assert!(warned("http://localhost:8080/").is_some());
        assert!(warned("http://[::1]:8080/").is_some());
        assert_eq!(warned("http://127.0.0.1:48093/"), None, "the same port");
        // The same port under a path: this server answers at its root, so nothing is there.
        let warning = warned("http://127.0.0.1:48093/news/").expect("under a path");
        assert!(
            warning.contains("under /news/") && warning.contains("http://127.0.0.1:48093/feeds/"),
            "{warning}"
        );
        assert_eq!(warned("https://news.example.com/site/"), None, "a proxy's");
        assert_eq!(warned("https://news.example.com/"), None, "a proxy's");
        let elsewhere: SocketAddr = "192.0.2.5:48093".parse().unwrap();
        let base = url::Url::parse("http://127.0.0.1:48093/").unwrap();
        assert!(
            links_elsewhere(&base, elsewhere).is_some(),
            "not on loopback"
        );
        let everywhere: SocketAddr = "0.0.0.0:48093".parse().unwrap();
        assert_eq!(links_elsewhere(&base, everywhere), None);
        let on_80: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(
            links_elsewhere(&url::Url::parse("http://localhost/").unwrap(), on_80),
            None
        );
    }

    #[test]
    fn plain_http_links_to_a_server_speaking_only_tls_are_warned_of() {
        let warned = |base: &str, tls| plain_links_to_tls(&url::Url::parse(base).unwrap(), tls);
        let warning = warned("http://127.0.0.1:8080/", true).expect("plain links to TLS");
        assert!(warning.contains("https://"), "{warning}");
        assert!(warned("http://localhost:8443/", true).is_some());
        assert_eq!(warned("https://127.0.0.1:8080/", true), None);
        assert_eq!(warned("http://127.0.0.1:8080/", false), None, "no TLS");
        assert_eq!(warned("http://news.example.com/", true), None, "a proxy's");
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log_listening` writes in the given format.
    fn logged(json: bool, tls: bool) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let grpc = "127.0.0.1:50051".parse().unwrap();
        let http = "[::1]:8080".parse().unwrap();
        if json {
            tracing::subscriber::with_default(builder.json().finish(), || {
                log_listening(grpc, http, tls)
            });
        } else {
            tracing::subscriber::with_default(builder.finish(), || log_listening(grpc, http, tls));
        }
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_listening_lines_serve_logs_give_back_both_addresses_in_text_and_json() {
        for (json, tls) in [(false, false), (true, false), (false, true), (true, true)] {
            let lines = logged(json, tls);
            let found: Vec<Listening> = lines.iter().filter_map(|l| listening_in(l)).collect();
            assert_eq!(
                found,
                [
                    Listening::Grpc("127.0.0.1:50051".parse().unwrap()),
                    Listening::Http("[::1]:8080".parse().unwrap()),
                ],
                "{lines:?}"
            );
            // The HTTP line gives the URL the feeds answer at.
            let url = if tls {
                "https://[::1]:8080/"
            } else {
                "http://[::1]:8080/"
            };
            assert!(lines[1].contains(url), "{lines:?}");
        }
    }

    #[test]
    fn other_lines_announce_no_listener() {
        assert_eq!(listening_in("INFO feedpub: stopped"), None);
        assert_eq!(listening_in("gRPC API listening on nowhere"), None);
    }
}
