//! The server's TLS certificate: self-signed, made on first start, kept in the data directory.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// File names in the data directory.
pub const CERT_FILE: &str = "cert.der";
/// The private key (PKCS #8 DER), readable by the owner only.
pub const KEY_FILE: &str = "key.der";

/// Why the certificate could not be loaded or made.
#[derive(Debug, Error)]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Generating the certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The certificate and key the server presents.
#[derive(Debug)]
pub struct Identity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// Where the certificate is (clients may be given this file).
    pub cert_path: PathBuf,
    /// Whether it was made just now.
    pub created: bool,
}

impl Identity {
    /// SHA-256 of the certificate's DER bytes: what clients pin.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&self.cert)
    }
}

/// SHA-256 of a certificate's DER bytes.
#[must_use]
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    Sha256::digest(cert).into()
}

/// A fingerprint as 64 lowercase hex digits.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Load the certificate from `dir`, or make and store one (for the names `locus` and `localhost`).
///
/// # Errors
///
/// A [`CertError`].
pub fn load_or_create(dir: &Path) -> Result<Identity, CertError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read(&cert_path).map_err(io(&cert_path))?;
        let key = std::fs::read(&key_path).map_err(io(&key_path))?;
        return Ok(Identity {
            cert: CertificateDer::from(cert),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            cert_path,
            created: false,
        });
    }
    let made =
        rcgen::generate_simple_self_signed(vec!["locus".to_owned(), "localhost".to_owned()])?;
    let cert = made.cert.der().to_vec();
    let key = made.signing_key.serialize_der();
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, &cert).map_err(io(&cert_path))?;
    Ok(Identity {
        cert: CertificateDer::from(cert),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        cert_path,
        created: true,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
