//! The partner client: `feedpub publish | get | list | retract | watch` against a feedpub server
//! reached over gRPC (`--server`, `--token`). Every failure ends as one line on stderr and a
//! distinct exit code ([`exit`]), never a panic.

mod article_json;
mod publish;
mod show;
mod watch;

pub use publish::{PublishArgs, publish};
pub use show::{GetArgs, ListArgs, RetractArgs, get, list, retract};
pub use watch::{WatchArgs, watch};

use crate::grpc::proto::publisher_service_client::PublisherServiceClient;
use clap::Args;
use std::error::Error as _;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The client's exit codes (0: everything done).
pub mod exit {
    /// Something was refused (an article of a publish, a missing article, a failed etag
    /// precondition), or the output could not be written, as for the operator commands.
    pub const FAILED: u8 = 1;
    /// The command line or the input file is wrong (clap's usage errors are 2 as well).
    pub const USAGE: u8 = 2;
    /// No token, or the server refused it.
    pub const AUTH: u8 = 3;
    /// The server cannot be reached, or stayed unavailable through the retries.
    pub const UNREACHABLE: u8 = 4;
    /// Ctrl-C (SIGINT) stopped a publish or a watch, as a shell reports a process killed
    /// by it.
    pub const INTERRUPTED: u8 = 130;
    /// SIGTERM stopped a publish or a watch (128 + 15).
    pub const TERMINATED: u8 = 143;
    /// SIGHUP stopped a publish or a watch (128 + 1).
    pub const HUNG_UP: u8 = 129;
}

/// Where the server is and who the caller is.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// URL of the server's gRPC API; https:// connects with TLS
    #[arg(
        long,
        env = "FEEDPUB_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// The partner's token, from `feedpub partner add` (better in the environment: other
    /// users can see command lines)
    #[arg(long, env = "FEEDPUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that an https:// server's certificate must chain to, instead
    /// of the public web roots
    #[arg(long, env = "FEEDPUB_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

/// Why a command stopped, and the exit code that says so.
#[derive(Debug)]
pub struct ClientError {
    code: u8,
    message: String,
}

impl ClientError {
    /// An error with this exit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: one_line(&message.into()),
        }
    }

    /// A refusal (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(exit::FAILED, message)
    }

    /// A bad command line or input (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }

    /// `what` (the output, the summary) could not be written (exit code 1).
    pub fn output(what: &str, e: &std::io::Error) -> Self {
        Self::failed(format!("cannot write the {what}: {e}"))
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Prints the error of a command, if any, as one line; the process's exit code.
pub fn finish(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            super::tell(&e);
            ExitCode::from(e.code)
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes, as one sentence: "transport error: tcp connect error: …".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// What to do about a TLS connection the client gave up (a certificate it refused, a
/// server that takes no TLS), when `causes` say why.
fn certificate_hint(causes: &str) -> Option<&'static str> {
    [
        (
            "CaUsedAsEndEntity",
            "the server's certificate is marked as a CA's, as openssl req -x509 makes them by \
             default: give --ca-cert the CA that signed the server's certificate, or make the \
             server's certificate with -addext basicConstraints=critical,CA:FALSE",
        ),
        (
            "UnknownIssuer",
            "no CA this client trusts signed the server's certificate: give that CA with --ca-cert",
        ),
        (
            "NotValidForName",
            "the server's certificate does not name the host of --server",
        ),
        ("Expired", "the server's certificate has expired"),
        // What rustls makes of the first bytes of an HTTP/2 server that takes no TLS.
        (
            "InvalidContentType",
            "the server answers without TLS there: give http://",
        ),
    ]
    .into_iter()
    .find(|(cause, _)| causes.contains(cause))
    .map(|(_, hint)| hint)
}

/// A connected client with the caller's token.
pub struct Remote {
    client: PublisherServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
    server: String,
}

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of a call that failed for a passing reason (unavailable, rate limited).
const ATTEMPTS: u32 = 6;

impl Remote {
    /// Checks the arguments and connects (TLS for https://).
    pub async fn connect(args: &ConnectArgs) -> Result<Self, ClientError> {
        let token = args.token.as_deref().map(str::trim).unwrap_or_default();
        if token.is_empty() {
            return Err(ClientError::new(
                exit::AUTH,
                "no token: pass --token or set FEEDPUB_TOKEN (`feedpub partner add` makes one)",
            ));
        }
        let authorization = format!("Bearer {token}").parse().map_err(|_| {
            ClientError::new(
                exit::AUTH,
                "the token is not valid: it must be printable ASCII",
            )
        })?;
        let server = args.server.trim().trim_end_matches('/').to_owned();
        let endpoint = Endpoint::from_shared(server.clone())
            .map_err(|e| ClientError::usage(format!("--server {server:?} is not a URL: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let endpoint = match endpoint.uri().scheme_str() {
            Some("https") => {
                let tls = match &args.ca_cert {
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            ClientError::usage(format!(
                                "cannot read --ca-cert {}: {e}",
                                path.display()
                            ))
                        })?;
                        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                    }
                    None => ClientTlsConfig::new().with_enabled_roots(),
                };
                endpoint.tls_config(tls).map_err(|e| {
                    ClientError::usage(format!("cannot set up TLS: {}", with_causes(&e)))
                })?
            }
            Some("http") if args.ca_cert.is_some() => {
                return Err(ClientError::usage(
                    "--ca-cert is for an https:// server; this one is http://",
                ));
            }
            Some("http") => endpoint,
            _ => {
                return Err(ClientError::usage(format!(
                    "the server URL {server:?} (--server or FEEDPUB_SERVER) must start with http:// or \
                     https://"
                )));
            }
        };
        let channel = endpoint.connect().await.map_err(|e| {
            let causes = with_causes(&e);
            let hint = certificate_hint(&causes).map_or(String::new(), |hint| format!(" ({hint})"));
            ClientError::new(
                exit::UNREACHABLE,
                format!("cannot reach the server at {server}: {causes}{hint}"),
            )
        })?;
        let client = PublisherServiceClient::new(channel)
            // The answers of a trusted server: a list page of long articles may be large.
            .max_decoding_message_size(1 << 30)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            client,
            authorization,
            server,
        })
    }

    /// A request carrying the caller's token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// A client to make calls with (cheap: the connection is shared).
    pub fn client(&self) -> PublisherServiceClient<Channel> {
        self.client.clone()
    }

    /// What a failed call means for the command: the exit code and one line that says why.
    pub fn error(&self, status: &Status) -> ClientError {
        let reason = status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default();
        let message = status.message();
        if let Some(answer) = not_grpc(status) {
            return ClientError::new(
                exit::UNREACHABLE,
                format!(
                    "the server at {} does not answer in gRPC ({answer}): is it the feeds' \
                     address? The API listens on the server's grpc_addr (127.0.0.1:50051 by \
                     default)",
                    self.server
                ),
            );
        }
        // A TLS server's first bytes read as an HTTP/2 frame make no sense to a plain client.
        if self.server.starts_with("http://")
            && matches!(status.code(), Code::Internal | Code::Unknown)
            && status_text(status).contains("h2 protocol error")
        {
            return ClientError::new(
                exit::UNREACHABLE,
                format!(
                    "the server at {} does not answer in plain HTTP/2 ({}): if it takes TLS, \
                     give https://",
                    self.server,
                    status_text(status)
                ),
            );
        }
        match status.code() {
            Code::Unauthenticated => ClientError::new(
                exit::AUTH,
                format!("the server refused the token: {message}"),
            ),
            Code::FailedPrecondition if reason == "PARTNER_REVOKED" => ClientError::new(
                exit::AUTH,
                format!("the server refused the token: {message}"),
            ),
            Code::Unavailable | Code::DeadlineExceeded => ClientError::new(
                exit::UNREACHABLE,
                format!(
                    "the server at {} is unavailable: {}",
                    self.server,
                    status_text(status)
                ),
            ),
            Code::Unknown | Code::Cancelled if status.source().is_some() => ClientError::new(
                exit::UNREACHABLE,
                format!(
                    "lost the connection to {}: {}",
                    self.server,
                    status_text(status)
                ),
            ),
            code => {
                let reason = if reason.is_empty() {
                    format!("{code:?}")
                } else {
                    reason
                };
                ClientError::failed(format!("{reason}: {}", status_text(status)))
            }
        }
    }

    /// Makes a call, again after a pause while it fails for a passing reason (unavailable,
    /// rate limited), at most [`ATTEMPTS`] times; `retrying` hears of each pause.
    pub async fn retrying<T, F, Fut>(
        &self,
        mut call: F,
        retrying: impl Fn(&Status, Duration),
    ) -> Result<T, Status>
    where
        F: FnMut(PublisherServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call(self.client()).await {
                Ok(answer) => return Ok(answer),
                Err(status) => match retry_delay(&status, attempt) {
                    Some(delay) if attempt < ATTEMPTS => {
                        retrying(&status, delay);
                        tokio::time::sleep(delay).await;
                    }
                    _ => return Err(status),
                },
            }
        }
    }
}

/// What an answer that is not gRPC's was ("HTTP 404 Not Found, text/plain"), when the
/// status says the server answered in plain HTTP: a gRPC server answers HTTP 200 with a
/// `content-type` of `application/grpc`, whatever the call's outcome.
fn not_grpc(status: &Status) -> Option<String> {
    let content_type = status
        .metadata()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    // tonic names the HTTP status of an answer it could not read as gRPC.
    let http = status
        .message()
        .split_once("while receiving response with status: ")
        .map(|(_, http)| http.trim());
    match (http, content_type) {
        (_, Some(grpc)) if grpc.starts_with("application/grpc") => None,
        (Some(http), Some(kind)) => Some(format!("HTTP {http}, {kind}")),
        (Some(http), None) => Some(format!("HTTP {http}")),
        (None, Some(kind)) => Some(format!("content-type {kind}")),
        (None, None) => None,
    }
}

/// The message of a status, with the transport error under it when there is one.
fn status_text(status: &Status) -> String {
    match status.source() {
        Some(source) if !status.message().contains(&source.to_string()) => {
            format!("{}: {}", status.message(), with_causes(source))
        }
        _ => status.message().to_owned(),
    }
}

/// How long to wait before trying a failed call again; `None` when trying again cannot help.
fn retry_delay(status: &Status, attempt: u32) -> Option<Duration> {
    let backoff = Duration::from_millis(500 * 2u64.pow(attempt.saturating_sub(1).min(5)));
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            Some(backoff)
        }
        Code::ResourceExhausted => {
            let info = status.get_details_retry_info()?;
            Some(info.retry_delay.unwrap_or(backoff).max(backoff / 4))
        }
        _ => None,
    }
}

/// A signal that stops a publish or a watch (interrupt, terminate, hang-up), as the error whose exit
/// code a shell reports for a process it killed: 128 and the signal's number.
pub(super) async fn signalled() -> ClientError {
    use tokio::signal::unix::{SignalKind, signal};
    let on = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut signals) => {
                signals.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ClientError::new(exit::INTERRUPTED, "interrupted"),
        () = on(SignalKind::terminate()) => ClientError::new(exit::TERMINATED, "terminated"),
        () = on(SignalKind::hangup()) => ClientError::new(exit::HUNG_UP, "hung up"),
    }
}

/// Tells the user on stderr that a call is tried again.
fn tell_retry(status: &Status, delay: Duration) {
    super::tell(format_args!(
        "{}; trying again in {:.1} s",
        one_line(&status_text(status)),
        delay.as_secs_f64()
    ));
}

/// 16 random bytes as hex, for ids unique to one run.
fn random_hex() -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| ClientError::failed(format!("no randomness available: {e}")))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn passing_failures_are_tried_again_after_growing_pauses_and_refusals_are_not() {
        let unavailable = Status::unavailable("stopping");
        assert_eq!(
            retry_delay(&unavailable, 1),
            Some(Duration::from_millis(500))
        );
        assert_eq!(retry_delay(&unavailable, 3), Some(Duration::from_secs(2)));
        for refusal in [
            Status::unauthenticated("no"),
            Status::invalid_argument("bad"),
            Status::not_found("gone"),
            Status::aborted("etag"),
            Status::resource_exhausted("too many articles"),
        ] {
            assert_eq!(retry_delay(&refusal, 1), None, "{refusal:?}");
        }
        let rate_limited = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(retry_delay(&rate_limited, 1), Some(Duration::from_secs(3)));
    }

    #[test]
    fn errors_are_one_line() {
        let error = ClientError::failed("first\nsecond\r\n  third");
        assert_eq!(error.to_string(), "first second third");
        assert_eq!(error.code(), exit::FAILED);
    }
}
