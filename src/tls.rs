//! Optional TLS (rustls with ring) for both listeners: the PEM certificate and key of
//! `[server] tls_cert` / `tls_key`, checked at start-up, and handshakes run concurrently
//! ([`Handshakes`]) beside the accept loops.

use crate::config::TlsFiles;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {message}")]
    Key { path: PathBuf, message: String },
    #[error("{path} is not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the certificate {cert} and the key {key} cannot be used together: {message}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// A certificate chain and its private key, checked and ready for both listeners.
#[derive(Clone)]
pub struct TlsIdentity {
    http: Arc<ServerConfig>,
    grpc: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

impl TlsIdentity {
    /// Reads and checks the PEM files: at least one certificate, a private key that matches
    /// the first one.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        // Configurations built from rustls's defaults (tonic's) take the process-wide one.
        let _ = ring::default_provider().install_default();
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: files.cert.clone(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: files.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
            path: files.key.clone(),
            message: e.to_string(),
        })?;
        let mut http = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|config| config.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| TlsError::Config {
                cert: files.cert.clone(),
                key: files.key.clone(),
                message: e.to_string(),
            })?;
        // gRPC is HTTP/2 only.
        let mut grpc = http.clone();
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            http: Arc::new(http),
            grpc: Arc::new(grpc),
        })
    }

    /// The HTTP port's handshakes (ALPN: HTTP/2 and HTTP/1.1), each carrying `T` along.
    pub fn http_handshakes<T: Send + 'static>(&self) -> Handshakes<T> {
        Handshakes::new(self.http.clone())
    }

    /// The gRPC port's handshakes (ALPN: HTTP/2), each carrying `T` along.
    pub fn grpc_handshakes<T: Send + 'static>(&self) -> Handshakes<T> {
        Handshakes::new(self.grpc.clone())
    }
}

/// TLS handshakes in progress on one port, run concurrently so that a slow client never
/// holds up the others, each given [`HANDSHAKE_TIMEOUT`]; each carries a `T` (its place
/// under the port's cap, which bounds how many run) to the connection it becomes.
pub struct Handshakes<T> {
    acceptor: TlsAcceptor,
    running: JoinSet<Option<(TlsStream<TcpStream>, T)>>,
}

impl<T: Send + 'static> Handshakes<T> {
    fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            running: JoinSet::new(),
        }
    }

    /// Starts the handshake of `io`, from `addr`; given up, the connection closed, if
    /// `abandon` completes first (its place under the cap was taken, say).
    pub fn start(
        &mut self,
        io: TcpStream,
        addr: SocketAddr,
        abandon: impl Future<Output = ()> + Send + 'static,
        with: T,
    ) {
        let accepting =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(io).into_fallible());
        self.running.spawn(async move {
            let mut abandon = std::pin::pin!(abandon);
            let accepted = tokio::select! {
                biased;
                () = &mut abandon => {
                    tracing::debug!(%addr, "TLS handshake abandoned");
                    return None;
                }
                accepted = accepting => accepted,
            };
            match accepted {
                Ok(Ok(stream)) => Some((stream, with)),
                Ok(Err((error, mut io))) => {
                    tracing::debug!(%addr, %error, "TLS handshake failed");
                    // The alert that says why, written as it failed, is left for the
                    // client to read: closed with its bytes unread (a plain HTTP/2
                    // request, say), the socket would answer with a reset.
                    tokio::select! {
                        biased;
                        () = abandon => {}
                        () = crate::connections::linger(&mut io, None) => {}
                    }
                    None
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }

    /// The next handshake to succeed; never completes while none is in progress.
    pub async fn next(&mut self) -> (TlsStream<TcpStream>, T) {
        loop {
            match self.running.join_next().await {
                Some(Ok(Some(done))) => return done,
                Some(_) => {}
                None => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let error = TlsIdentity::load(&TlsFiles {
            cert: missing.clone(),
            key: empty.clone(),
        })
        .unwrap_err();
        assert!(error.to_string().contains("missing.pem"), "{error}");
        let error = TlsIdentity::load(&TlsFiles {
            cert: empty.clone(),
            key: empty,
        })
        .unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    }
}
