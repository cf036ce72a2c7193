//! Which transport a client reaches the server over: QUIC (native builds) or WebTransport (native builds and the
//! browser).
//!
//! - **QUIC** ([`Transport::Quic`]): a QUIC connection with ALPN `locus/1` to [`ClientConfig::addr`], pinning the
//!   server's long-lived certificate ([`ClientConfig::trust`]). Native builds only: a browser cannot open a QUIC
//!   connection of its own.
//! - **WebTransport** ([`Transport::WebTransport`]): an HTTP/3 connection with ALPN `h3` to the same UDP port, and
//!   in it a WebTransport session opened by `CONNECT` to a URL `https://HOST:PORT/locus`. The server gives `h3`
//!   clients a short-lived certificate of their own (ECDSA P-256, valid for at most 14 days), which a client
//!   trusts by its SHA-256 hash, as browsers do with `serverCertificateHashes`. The server publishes the URL and
//!   the hashes of its current certificates in `GET /locus.json` on its web port
//!   ([`WebTransportConfig::from_locus_json`]); around a rotation there are two, and either is accepted.
//!
//! Over either transport the client opens one bidirectional stream and speaks the same protocol on it
//! (`engine/docs/protocol.md`), and protocol version 4's position datagrams arrive the same way (over WebTransport
//! as the session's datagrams). Everything above the transport (`Hello`/`Welcome`, the token, the cache) is the
//! same code.
//!
//! [`ClientConfig::addr`]: crate::ClientConfig::addr
//! [`ClientConfig::trust`]: crate::ClientConfig::trust

use thiserror::Error;
use url::Url;

use crate::trust::{ParseFingerprintError, parse_fingerprint};

/// The path of the server's WebTransport endpoint (`https://HOST:PORT/locus`); the server refuses any other with
/// status 404.
pub const WEB_PATH: &str = "/locus";

/// How a client reaches the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// QUIC with ALPN `locus/1` to [`ClientConfig::addr`](crate::ClientConfig::addr), pinning
    /// [`ClientConfig::trust`](crate::ClientConfig::trust). Native builds only.
    #[cfg(not(target_arch = "wasm32"))]
    Quic,
    /// A WebTransport session (HTTP/3, ALPN `h3`) at a URL, trusting certificates by their hashes.
    WebTransport(WebTransportConfig),
}

/// Where a WebTransport session is opened and which certificates are trusted.
///
/// Invariant (checked by the constructors, and again at connect for a value built by hand): the URL's scheme is
/// `https` and it names a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebTransportConfig {
    /// The session's URL, `https://HOST:PORT/locus` (port 443 if none is given). No default.
    pub url: Url,
    /// The SHA-256 hashes of the DER of the certificates to accept (any one of them); empty to verify the
    /// certificate against the authorities instead (browsers only: a native client accepts only a certificate
    /// whose hash it was given). No default.
    pub certificate_hashes: Vec<[u8; 32]>,
}

impl WebTransportConfig {
    /// A session at `url` trusting `certificate_hashes`.
    ///
    /// # Errors
    ///
    /// [`ParseWebTransportError`] if `url` is not an `https` URL with a host.
    pub fn new(
        url: &str,
        certificate_hashes: Vec<[u8; 32]>,
    ) -> Result<WebTransportConfig, ParseWebTransportError> {
        Ok(WebTransportConfig {
            url: parse_url(url)?,
            certificate_hashes,
        })
    }

    /// A session at `url` trusting the hashes in `certificate_hashes`: 64 hex digits each (as
    /// [`Trust::parse_fingerprint`](crate::Trust::parse_fingerprint) reads them), separated by commas and/or
    /// whitespace; an empty string is no hash.
    ///
    /// # Errors
    ///
    /// [`ParseWebTransportError`].
    pub fn parse(
        url: &str,
        certificate_hashes: &str,
    ) -> Result<WebTransportConfig, ParseWebTransportError> {
        WebTransportConfig::new(url, parse_certificate_hashes(certificate_hashes)?)
    }

    /// What the server's web port serves as `/locus.json`:
    /// `{"url": "https://HOST:PORT/locus", "certificate_hashes": ["<64 hex digits>", …]}` (other members are
    /// ignored; `certificate_hashes` may be missing or empty when the server has a certificate from an authority).
    ///
    /// # Errors
    ///
    /// [`ParseWebTransportError`].
    pub fn from_locus_json(json: &str) -> Result<WebTransportConfig, ParseWebTransportError> {
        #[derive(serde::Deserialize)]
        struct LocusJson {
            url: String,
            #[serde(default)]
            certificate_hashes: Vec<String>,
        }
        let parsed: LocusJson =
            serde_json::from_str(json).map_err(|e| ParseWebTransportError::Json(e.to_string()))?;
        let hashes = parsed
            .certificate_hashes
            .iter()
            .enumerate()
            .map(|(index, hash)| {
                parse_fingerprint(hash)
                    .map_err(|source| ParseWebTransportError::Hash { index, source })
            })
            .collect::<Result<_, _>>()?;
        WebTransportConfig::new(&parsed.url, hashes)
    }

    /// Check the invariant (for a value whose fields were set by hand).
    pub(crate) fn check(&self) -> Result<(), ParseWebTransportError> {
        check_url(&self.url)
    }
}

/// Parse a list of certificate hashes: fingerprints of 64 hex digits (`:` between bytes and upper case allowed)
/// separated by commas and/or whitespace. An empty or blank string is the empty list.
///
/// # Errors
///
/// [`ParseWebTransportError::Hash`] naming the first hash that does not parse (counting from 0).
pub fn parse_certificate_hashes(s: &str) -> Result<Vec<[u8; 32]>, ParseWebTransportError> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .enumerate()
        .map(|(index, part)| {
            parse_fingerprint(part).map_err(|source| ParseWebTransportError::Hash { index, source })
        })
        .collect()
}

/// Why a WebTransport target cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ParseWebTransportError {
    /// The URL does not parse.
    #[error("not a URL: {0}")]
    Url(#[from] url::ParseError),
    /// The URL's scheme is not `https` (WebTransport runs over HTTP/3, which is always secure).
    #[error("a WebTransport URL is https://HOST:PORT/PATH, found scheme {scheme:?}")]
    NotHttps {
        /// The scheme found.
        scheme: String,
    },
    /// The URL names no host.
    #[error("the WebTransport URL names no host")]
    NoHost,
    /// A certificate hash is not 64 hex digits.
    #[error("certificate hash #{index}: {source}")]
    Hash {
        /// Which hash, counting from 0.
        index: usize,
        /// Why.
        #[source]
        source: ParseFingerprintError,
    },
    /// `locus.json` is not a JSON object with a string `url` (and a string array `certificate_hashes`).
    #[error("not a locus.json: {0}")]
    Json(String),
}

fn parse_url(s: &str) -> Result<Url, ParseWebTransportError> {
    let url = Url::parse(s.trim())?;
    check_url(&url)?;
    Ok(url)
}

fn check_url(url: &Url) -> Result<(), ParseWebTransportError> {
    if url.scheme() != "https" {
        return Err(ParseWebTransportError::NotHttps {
            scheme: url.scheme().to_owned(),
        });
    }
    if url.host().is_none() {
        return Err(ParseWebTransportError::NoHost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::fingerprint_hex;

    fn hash(seed: u8) -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_add(i as u8))
    }

    #[test]
    fn urls_must_be_https_with_a_host() {
        let web = WebTransportConfig::new("https://127.0.0.1:7878/locus", vec![]).unwrap();
        assert_eq!(web.url.port_or_known_default(), Some(7878));
        assert_eq!(web.url.path(), WEB_PATH);
        let default_port =
            WebTransportConfig::new(" https://play.example/locus\n", vec![]).unwrap();
        assert_eq!(default_port.url.port_or_known_default(), Some(443));
        assert_eq!(
            WebTransportConfig::new("http://127.0.0.1:7878/locus", vec![]),
            Err(ParseWebTransportError::NotHttps {
                scheme: "http".into()
            })
        );
        assert!(matches!(
            WebTransportConfig::new("127.0.0.1:7878", vec![]),
            Err(ParseWebTransportError::Url(_) | ParseWebTransportError::NotHttps { .. })
        ));
        assert!(matches!(
            WebTransportConfig::new("https://", vec![]),
            Err(ParseWebTransportError::Url(_) | ParseWebTransportError::NoHost)
        ));
        let mut by_hand = web.clone();
        by_hand.url = Url::parse("wss://127.0.0.1:7878/locus").unwrap();
        assert!(by_hand.check().is_err());
        assert!(web.check().is_ok());
    }

    #[test]
    fn hash_lists_split_on_commas_and_whitespace() {
        let (a, b) = (hash(1), hash(0xf0));
        let list = format!(
            "{}, {}\n",
            fingerprint_hex(&a),
            fingerprint_hex(&b).to_uppercase()
        );
        assert_eq!(parse_certificate_hashes(&list), Ok(vec![a, b]));
        assert_eq!(parse_certificate_hashes(""), Ok(vec![]));
        assert_eq!(parse_certificate_hashes(" , "), Ok(vec![]));
        let bad = format!("{},{}", fingerprint_hex(&a), &fingerprint_hex(&b)[..60]);
        assert_eq!(
            parse_certificate_hashes(&bad),
            Err(ParseWebTransportError::Hash {
                index: 1,
                source: ParseFingerprintError::WrongLength { found: 60 }
            })
        );
        let web = WebTransportConfig::parse("https://localhost:7878/locus", &list).unwrap();
        assert_eq!(web.certificate_hashes, [a, b]);
    }

    #[test]
    fn locus_json_gives_the_url_and_hashes() {
        let (a, b) = (hash(7), hash(9));
        let json = format!(
            r#"{{"url": "https://localhost:7878/locus", "certificate_hashes": ["{}", "{}"], "more": 1}}"#,
            fingerprint_hex(&a),
            fingerprint_hex(&b)
        );
        let web = WebTransportConfig::from_locus_json(&json).unwrap();
        assert_eq!(web.url.as_str(), "https://localhost:7878/locus");
        assert_eq!(web.certificate_hashes, [a, b]);
        // A certificate from an authority: no hashes.
        let web =
            WebTransportConfig::from_locus_json(r#"{"url": "https://play.example:443/locus"}"#)
                .unwrap();
        assert!(web.certificate_hashes.is_empty());
        assert!(matches!(
            WebTransportConfig::from_locus_json(r#"{"certificate_hashes": []}"#),
            Err(ParseWebTransportError::Json(_))
        ));
        assert!(matches!(
            WebTransportConfig::from_locus_json(
                r#"{"url": "https://h:1/locus", "certificate_hashes": ["zz"]}"#
            ),
            Err(ParseWebTransportError::Hash { index: 0, .. })
        ));
    }
}
