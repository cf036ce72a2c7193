//! How a client recognises its server: a pinned certificate fingerprint.
//!
//! A Locus server makes a self-signed certificate on first start, so there is no certificate authority to ask.
//! Instead the client pins the server's certificate: its **fingerprint** is the SHA-256 of the end-entity
//! certificate's DER bytes, written as 64 lowercase hex digits (`:` separators and upper case are accepted when
//! parsing, as `openssl x509 -fingerprint -sha256` prints them). The client accepts exactly the certificate with
//! that fingerprint; the name in it and its validity period are not looked at. The TLS 1.3 handshake signature is
//! still verified, so whoever answers must hold the certificate's private key.
//!
//! A native WebTransport client trusts the server's web certificate the same way, by the hashes it was given
//! ([`WebTransportConfig::certificate_hashes`](crate::WebTransportConfig::certificate_hashes), any one of them);
//! in a browser the browser checks them. [`Trust`] is for native QUIC only; fingerprints and their parsing exist
//! in every build.

#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
#[cfg(not(target_arch = "wasm32"))]
use std::sync::{Arc, Mutex, PoisonError};

#[cfg(not(target_arch = "wasm32"))]
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
#[cfg(not(target_arch = "wasm32"))]
use rustls::crypto::CryptoProvider;
#[cfg(not(target_arch = "wasm32"))]
use rustls::pki_types::pem::PemObject;
#[cfg(not(target_arch = "wasm32"))]
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
#[cfg(not(target_arch = "wasm32"))]
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use thiserror::Error;

#[cfg(not(target_arch = "wasm32"))]
/// How the client decides that the server it reached is the right one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Accept only the certificate whose SHA-256 fingerprint (of its DER bytes) is this.
    Fingerprint([u8; 32]),
    /// Accept only the certificate in this file (DER, or PEM: the first `CERTIFICATE` block), pinning its
    /// fingerprint. The file is read at every connect.
    CertFile(PathBuf),
}

#[cfg(not(target_arch = "wasm32"))]
impl Trust {
    /// Parse a fingerprint: 64 hex digits, upper or lower case, optionally with `:` between bytes; surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`ParseFingerprintError`] if it is not 32 bytes of hex.
    pub fn parse_fingerprint(s: &str) -> Result<Trust, ParseFingerprintError> {
        parse_fingerprint(s).map(Trust::Fingerprint)
    }

    /// The fingerprint to pin: the given one, or the certificate file's (read now).
    ///
    /// # Errors
    ///
    /// [`CertFileError`] if the file cannot be read or holds no certificate.
    pub fn pinned(&self) -> Result<[u8; 32], CertFileError> {
        match self {
            Trust::Fingerprint(fp) => Ok(*fp),
            Trust::CertFile(path) => cert_file_fingerprint(path),
        }
    }
}

/// Why a string is not a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseFingerprintError {
    /// Not 64 hex digits (separators aside).
    #[error("a fingerprint is 64 hex digits, found {found}")]
    WrongLength {
        /// Hex digits found.
        found: usize,
    },
    /// A character that is neither a hex digit nor a `:` separator.
    #[error("a fingerprint holds only hex digits and `:`, found {found:?}")]
    NotHex {
        /// The offending character.
        found: char,
    },
}

#[cfg(not(target_arch = "wasm32"))]
/// Why a certificate file cannot be pinned.
#[derive(Debug, Error)]
pub enum CertFileError {
    /// The file cannot be read.
    #[error("cannot read the certificate file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is PEM but holds no well-formed `CERTIFICATE` block, or it is empty.
    #[error("no certificate in {}: {reason}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The SHA-256 fingerprint of a certificate's DER bytes.
#[must_use]
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// A fingerprint as 64 lowercase hex digits (the form servers print and clients are given).
#[must_use]
pub fn fingerprint_hex(fingerprint: &[u8; 32]) -> String {
    use std::fmt::Write;
    fingerprint
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parse one fingerprint (see [`Trust::parse_fingerprint`]).
pub(crate) fn parse_fingerprint(s: &str) -> Result<[u8; 32], ParseFingerprintError> {
    let mut digits = Vec::with_capacity(64);
    for c in s.trim().chars().filter(|&c| c != ':') {
        let d = c
            .to_digit(16)
            .ok_or(ParseFingerprintError::NotHex { found: c })?;
        digits.push(d as u8);
    }
    if digits.len() != 64 {
        return Err(ParseFingerprintError::WrongLength {
            found: digits.len(),
        });
    }
    let mut out = [0; 32];
    for (b, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *b = pair[0] << 4 | pair[1];
    }
    Ok(out)
}

#[cfg(not(target_arch = "wasm32"))]
/// The fingerprint of the certificate in a DER or PEM file.
fn cert_file_fingerprint(path: &Path) -> Result<[u8; 32], CertFileError> {
    let bytes = std::fs::read(path).map_err(|source| CertFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let no_cert = |reason: String| CertFileError::NoCertificate {
        path: path.to_owned(),
        reason,
    };
    if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        let cert = CertificateDer::pem_slice_iter(&bytes)
            .next()
            .ok_or_else(|| no_cert("no CERTIFICATE block".into()))?
            .map_err(|e| no_cert(e.to_string()))?;
        Ok(fingerprint(&cert))
    } else if bytes.is_empty() {
        Err(no_cert("the file is empty".into()))
    } else {
        Ok(fingerprint(&bytes))
    }
}

/// A rustls verifier that accepts exactly the end-entity certificates whose fingerprints are pinned (one for QUIC's
/// [`Trust`], the given hashes for WebTransport) and checks TLS 1.3 handshake signatures with the provider's
/// algorithms. It remembers the fingerprint of a refused certificate, so the caller can say which one was
/// presented.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub(crate) struct PinnedCertVerifier {
    pinned: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    refused: Mutex<Option<[u8; 32]>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl PinnedCertVerifier {
    pub(crate) fn new(pinned: Vec<[u8; 32]>, provider: Arc<CryptoProvider>) -> PinnedCertVerifier {
        PinnedCertVerifier {
            pinned,
            provider,
            refused: Mutex::new(None),
        }
    }

    /// The fingerprint of the last certificate refused, if one was.
    pub(crate) fn refused(&self) -> Option<[u8; 32]> {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = fingerprint(end_entity);
        if self.pinned.contains(&found) {
            Ok(ServerCertVerified::assertion())
        } else {
            *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is offered (QUIC requires it), so this is never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_common_spelling() {
        let fp: [u8; 32] = std::array::from_fn(|i| (i * 7 + 0xa0) as u8);
        let hex = fingerprint_hex(&fp);
        assert_eq!(hex.len(), 64);
        assert_eq!(Trust::parse_fingerprint(&hex), Ok(Trust::Fingerprint(fp)));
        let colons = fp
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            Trust::parse_fingerprint(&format!("  {colons}\n")),
            Ok(Trust::Fingerprint(fp))
        );
        assert_eq!(
            Trust::parse_fingerprint(&hex[..62]),
            Err(ParseFingerprintError::WrongLength { found: 62 })
        );
        assert_eq!(
            Trust::parse_fingerprint(&format!("{}g", &hex[..63])),
            Err(ParseFingerprintError::NotHex { found: 'g' })
        );
    }

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_der_bytes() {
        // SHA-256 of the empty string.
        assert_eq!(
            fingerprint_hex(&fingerprint(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
