//! The server's TLS certificate: self-signed, made on first start, kept in the data directory.

use std::path::{Path, PathBuf};

use locus_client::token_file::write_atomic;
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
/// Both files are written atomically ([`locus_client::token_file::write_atomic`]), the key (owner-only) before the
/// certificate, and a pair is loaded only when both files exist: a crash while making them leaves no file or a
/// lone key, and the next start makes a new pair. Temporary files a crash left behind are ignored.
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
    write_atomic(&key_path, &key, true).map_err(io(&key_path))?;
    write_atomic(&cert_path, &cert, false).map_err(io(&cert_path))?;
    Ok(Identity {
        cert: CertificateDer::from(cert),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        cert_path,
        created: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_while_making_the_pair_does_not_stop_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash between the two renames leaves: the key alone, and a partial temporary certificate.
        std::fs::write(dir.path().join(KEY_FILE), b"a key without its certificate").unwrap();
        std::fs::write(dir.path().join(".cert.der.tmp-1"), b"partial").unwrap();
        let made = load_or_create(dir.path()).unwrap();
        assert!(made.created, "a new pair replaces the lone key");
        let PrivateKeyDer::Pkcs8(key) = &made.key else {
            panic!("a PKCS #8 key")
        };
        // The pair on disk is the one returned, and it is what the next start loads.
        assert_eq!(
            std::fs::read(dir.path().join(KEY_FILE)).unwrap(),
            key.secret_pkcs8_der()
        );
        assert_eq!(
            std::fs::read(dir.path().join(CERT_FILE)).unwrap(),
            made.cert.as_ref()
        );
        let loaded = load_or_create(dir.path()).unwrap();
        assert!(!loaded.created);
        assert_eq!(loaded.fingerprint(), made.fingerprint());
        // The key matches the certificate: TLS accepts the pair.
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![loaded.cert], loaded.key)
        .expect("the key belongs to the certificate");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
            assert_eq!(key.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn the_key_and_the_certificate_are_replaced_by_a_rename_never_written_in_place() {
        // A file written in place changes every hard link to it; one renamed over it leaves them alone. So no
        // crash can leave a half-written key or certificate behind the names the next start reads.
        for lone in [KEY_FILE, CERT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            let other = dir.path().join("other");
            std::fs::write(&other, b"old bytes").unwrap();
            std::fs::hard_link(&other, dir.path().join(lone)).unwrap();
            let made = load_or_create(dir.path()).unwrap();
            assert!(made.created);
            assert_eq!(std::fs::read(&other).unwrap(), b"old bytes", "{lone}");
        }
    }
}
