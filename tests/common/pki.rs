//! A test certificate authority and a server certificate it issued (rcgen), as PEM files.

use feedpub::config::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tempfile::TempDir;

/// A test CA and a certificate it issued for `localhost` and 127.0.0.1, as PEM files.
pub struct Pki {
    _dir: TempDir,
    pub ca_pem: String,
    pub files: TlsFiles,
    /// A key that is not the certificate's.
    pub other_key: std::path::PathBuf,
}

pub fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "feedpub test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    Pki {
        _dir: dir,
        ca_pem: ca.pem(),
        files,
        other_key,
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 marked as a CA's, as
/// `openssl req -x509` makes them by default, with its key: files under `dir`.
pub fn self_signed_ca_for_a_server(dir: &std::path::Path) -> TlsFiles {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let files = TlsFiles {
        cert: dir.join("self-signed-ca.pem"),
        key: dir.join("self-signed-ca-key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
