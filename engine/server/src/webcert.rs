//! The certificates browsers see: WebTransport clients (ALPN `h3`) get their own certificate on the server's one
//! UDP port, chosen per connection from the ALPN the client offers (`ByAlpn`).
//!
//! A browser accepts a self-signed certificate only through `serverCertificateHashes`, and then only one that is
//! ECDSA P-256 (or another non-RSA key) and valid for at most 14 days. So by default the server makes such a
//! certificate itself at start ([`WebCerts`]), valid for [`VALIDITY`], and rotates it: [`NEXT_AFTER`] after one
//! was made, the next one is made and published beside it, and [`SWITCH_AFTER`] after, the next one is served.
//! Pages fetch the published hashes (`locus.json` of the web server, `web.rs`) each time they connect, so a
//! page that fetched them at any time in the last [`SWITCH_AFTER`] − [`NEXT_AFTER`] before a switch still
//! connects after it. The certificates live in memory only: after a restart, pages fetch the new hashes.
//!
//! For a public deployment an operator gives a certificate from an authority instead (PEM files,
//! [`WebCertSource::Files`]): then nothing rotates and no hashes are published (browsers check it as any site's).
//!
//! Native clients (ALPN `locus/1`) always get the long-lived certificate they pin ([`crate::cert`]).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;

use crate::cert::fingerprint;

/// How long a made browser certificate is valid (from an hour before it was made, for clocks a little behind):
/// under the 14 days browsers allow for `serverCertificateHashes`.
pub const VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// After this, the next certificate is made and its hash published beside the current one.
pub const NEXT_AFTER: Duration = Duration::from_secs(6 * 24 * 3600);
/// After this, the next certificate is served (the current one has a day left: connections made with it are not
/// affected, the handshake is over).
pub const SWITCH_AFTER: Duration = Duration::from_secs(12 * 24 * 3600);
/// How far back a made certificate's validity starts.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Where the browsers' certificate comes from.
#[derive(Clone, Debug, Default)]
pub enum WebCertSource {
    /// Made by the server and rotated ([`WebCerts`]); clients trust it by the published hashes. The default.
    #[default]
    SelfSigned,
    /// A certificate chain and its private key, PEM files (e.g. from an authority, for a public deployment):
    /// browsers check it as any site's certificate. Read once at start.
    Files {
        /// The certificate chain (leaf first).
        cert: PathBuf,
        /// The private key (PKCS #8, PKCS #1 or SEC1).
        key: PathBuf,
    },
}

/// Why the browsers' certificate could not be made or loaded.
#[derive(Debug, Error)]
pub enum WebCertError {
    /// Generating a certificate failed.
    #[error("cannot generate the browsers' certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A clock before 1970 or after 9999.
    #[error("the system clock is out of range for a certificate")]
    Clock,
    /// A PEM file cannot be read or holds no certificate / key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not fit the certificate, or is of a kind TLS cannot use.
    #[error("the browsers' certificate and key cannot be used: {0}")]
    Key(#[from] rustls::Error),
}

/// One certificate and key made for browsers.
#[derive(Clone, Debug)]
pub struct WebCert {
    /// Ready for TLS.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of its DER: what a page passes as `serverCertificateHashes`.
    pub hash: [u8; 32],
    /// When it was made.
    pub made: SystemTime,
}

impl WebCert {
    /// Make one at `now`: ECDSA P-256, for the names `localhost` and `locus`, valid from an hour before
    /// `now` for [`VALIDITY`] in all.
    ///
    /// # Errors
    ///
    /// [`WebCertError`].
    pub fn make(now: SystemTime, provider: &CryptoProvider) -> Result<WebCert, WebCertError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "locus".to_owned()])?;
        let from = now
            .checked_sub(BACKDATE)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .ok_or(WebCertError::Clock)?;
        let from = time::OffsetDateTime::from_unix_timestamp(
            i64::try_from(from.as_secs()).map_err(|_| WebCertError::Clock)?,
        )
        .map_err(|_| WebCertError::Clock)?;
        params.not_before = from;
        params.not_after = from + VALIDITY;
        let cert = params.self_signed(&key)?;
        let der = CertificateDer::from(cert.der().to_vec());
        let hash = fingerprint(&der);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let key = CertifiedKey::from_der(vec![der], key, provider)?;
        Ok(WebCert {
            key: Arc::new(key),
            hash,
            made: now,
        })
    }
}

/// The browsers' certificates: the one served and, in the overlap before a switch, the next one.
///
/// Sans-IO: [`WebCerts::rotate`] is given the time and makes what is due.
///
/// # Invariants
///
/// - [`WebCerts::hashes`] always holds the served certificate's hash first, and the next one's once it exists, so
///   a page holding hashes fetched at any time since the next one was made connects after the switch.
/// - With a self-signed source, the served certificate is at most [`SWITCH_AFTER`] old after every `rotate`, so it
///   is valid for a day more at least; certificates from files never change.
#[derive(Debug)]
pub struct WebCerts {
    current: WebCert,
    next: Option<WebCert>,
    /// Certificates from files: no hash published, no rotation.
    fixed: bool,
}

impl WebCerts {
    /// The certificates for `source` at `now`.
    ///
    /// # Errors
    ///
    /// [`WebCertError`].
    pub fn new(
        source: &WebCertSource,
        now: SystemTime,
        provider: &CryptoProvider,
    ) -> Result<WebCerts, WebCertError> {
        match source {
            WebCertSource::SelfSigned => Ok(WebCerts {
                current: WebCert::make(now, provider)?,
                next: None,
                fixed: false,
            }),
            WebCertSource::Files { cert, key } => {
                let pem = |path: &PathBuf, e: &dyn std::fmt::Display| WebCertError::Pem {
                    path: path.clone(),
                    message: e.to_string(),
                };
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem(cert, &e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem(cert, &e))?;
                let Some(leaf) = chain.first() else {
                    return Err(pem(cert, &"no CERTIFICATE in the file"));
                };
                let hash = fingerprint(leaf);
                let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, &e))?;
                Ok(WebCerts {
                    current: WebCert {
                        key: Arc::new(CertifiedKey::from_der(chain, private, provider)?),
                        hash,
                        made: now,
                    },
                    next: None,
                    fixed: true,
                })
            }
        }
    }

    /// Make the next certificate or switch to it if it is due at `now`; whether the served one changed.
    ///
    /// # Errors
    ///
    /// [`WebCertError`] if a new certificate cannot be made (the current one stays; try again later).
    pub fn rotate(
        &mut self,
        now: SystemTime,
        provider: &CryptoProvider,
    ) -> Result<bool, WebCertError> {
        if self.fixed {
            return Ok(false);
        }
        let age = |cert: &WebCert| now.duration_since(cert.made).unwrap_or_default();
        let mut switched = false;
        if age(&self.current) >= SWITCH_AFTER {
            self.current = match self.next.take() {
                Some(next) if age(&next) < SWITCH_AFTER => next,
                // Missed the overlap (the server was stopped, or the clock jumped): a new one now.
                _ => WebCert::make(now, provider)?,
            };
            switched = true;
        }
        if self.next.is_none() && age(&self.current) >= NEXT_AFTER {
            self.next = Some(WebCert::make(now, provider)?);
        }
        Ok(switched)
    }

    /// The certificate served now.
    #[must_use]
    pub fn current(&self) -> &WebCert {
        &self.current
    }

    /// The hashes a page passes as `serverCertificateHashes`: the served certificate's, then the next one's; none
    /// for a certificate from files (browsers check it against their authorities).
    #[must_use]
    pub fn hashes(&self) -> Vec<[u8; 32]> {
        if self.fixed {
            return Vec::new();
        }
        std::iter::once(&self.current)
            .chain(&self.next)
            .map(|c| c.hash)
            .collect()
    }
}

/// Chooses the certificate per connection: the browsers' one for a client that offers ALPN `h3`, else the
/// native one that `locus/1` clients pin.
#[derive(Debug)]
pub(crate) struct ByAlpn {
    pub(crate) native: Arc<CertifiedKey>,
    pub(crate) web: Arc<RwLock<WebCerts>>,
}

impl ResolvesServerCert for ByAlpn {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let h3 = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == b"h3"));
        if h3 {
            Some(
                self.web
                    .read()
                    .expect("web certificates lock")
                    .current()
                    .key
                    .clone(),
            )
        } else {
            Some(self.native.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    /// What a browser requires of a certificate it accepts by hash: ECDSA P-256, a validity of at most 14 days,
    /// and now within it.
    #[test]
    fn a_made_certificate_is_what_browsers_accept_by_hash() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cert = WebCert::make(now, &provider()).unwrap();
        let der = &cert.key.cert[0];
        assert_eq!(cert.hash, fingerprint(der));
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        let validity = parsed.validity();
        let from = validity.not_before.timestamp();
        let to = validity.not_after.timestamp();
        assert!(to - from <= 14 * 24 * 3600, "{from}..{to}");
        let at = 1_800_000_000;
        assert!(from < at && at < to, "now is within the validity");
        assert_eq!(
            parsed.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = parsed
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .unwrap();
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    }

    /// The rotation against a model: the next certificate appears after `NEXT_AFTER` (published beside the
    /// current one), is served after `SWITCH_AFTER`, and any hash list fetched during an overlap still names the
    /// served certificate after the switch. The served certificate is always valid at `now`.
    #[test]
    fn rotation_publishes_the_next_certificate_before_it_is_served() {
        let p = provider();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut certs = WebCerts::new(&WebCertSource::SelfSigned, t0, &p).unwrap();
        let first = certs.current().hash;
        assert_eq!(certs.hashes(), vec![first]);
        let mut fetched_at_day_7 = Vec::new();
        let mut switches = 0;
        // Looked at every 6 hours for 40 days.
        for step in 1..=160u32 {
            let now = t0 + DAY / 4 * step;
            let before = certs.current().hash;
            let switched = certs.rotate(now, &p).unwrap();
            assert_eq!(switched, certs.current().hash != before);
            switches += u32::from(switched);
            let hashes = certs.hashes();
            assert_eq!(hashes[0], certs.current().hash, "the served one first");
            let age = now.duration_since(certs.current().made).unwrap();
            assert!(age < SWITCH_AFTER, "served a certificate {age:?} old");
            assert!(age + BACKDATE < VALIDITY);
            assert_eq!(hashes.len(), 1 + usize::from(age >= NEXT_AFTER));
            if step == 28 {
                fetched_at_day_7 = hashes.clone();
                assert_eq!(hashes.len(), 2, "the next one is published by day 7");
            }
            if switched && switches == 1 {
                assert!(
                    fetched_at_day_7.contains(&certs.current().hash),
                    "a page that fetched the hashes on day 7 connects after the switch"
                );
                assert_ne!(certs.current().hash, first);
            }
        }
        // The first certificate is served 12 days, each later one from 6 to 12 days old (it was published from
        // birth): switches on days 12, 18, 24, 30 and 36.
        assert_eq!(switches, 5);
        // A server stopped across a whole overlap switches to a fresh certificate at once.
        let late = t0 + DAY * 100;
        assert!(certs.rotate(late, &p).unwrap());
        assert_eq!(certs.current().made, late);
        assert_eq!(certs.hashes().len(), 1);
    }

    #[test]
    fn certificates_from_files_never_rotate_and_publish_no_hash() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["game.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let p = provider();
        let t0 = SystemTime::now();
        let source = WebCertSource::Files {
            cert: cert_path.clone(),
            key: key_path,
        };
        let mut certs = WebCerts::new(&source, t0, &p).unwrap();
        assert_eq!(certs.current().hash, fingerprint(cert.der()));
        assert!(!certs.rotate(t0 + DAY * 30, &p).unwrap());
        assert!(certs.hashes().is_empty());
        // A key file that holds no key: a clear error naming the file.
        let wrong = WebCertSource::Files {
            cert: cert_path.clone(),
            key: cert_path.clone(),
        };
        let err = WebCerts::new(&wrong, t0, &p).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
    }
}
