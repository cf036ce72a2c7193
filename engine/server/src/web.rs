//! The web client's HTTP side (`locus serve --web ADDR`): what a page needs before it can open a WebTransport
//! session, and the page itself.
//!
//! - `GET /locus.json`: `{"url": "https://HOST:PORT/locus", "certificate_hashes": ["<64 hex digits>", …]}`. `HOST`
//!   is the host the request was sent to (its `Host` header), `PORT` the server's UDP port. The hashes are those
//!   of [`crate::webcert::WebCerts::hashes`], current at the request: a page fetches them each time it connects.
//!   Sent with `Access-Control-Allow-Origin: *` (a page served elsewhere may read it) and `Cache-Control:
//!   no-store`.
//! - Any other path: a file of the web root (`index.html` for a directory), by `hyper-staticfile` (which keeps
//!   paths inside the root and sets content types, `.wasm` as `application/wasm`); 404 without a web root.
//!
//! Browsers open WebTransport sessions only from secure contexts: a page served over plain HTTP qualifies on
//! `localhost` and `127.0.0.1`, not on other hosts (serve it over HTTPS from elsewhere there).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use http_body_util::{Either, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::cert::hex;
use crate::net::WEB_PATH;
use crate::webcert::WebCerts;

/// What the web server answers from.
pub(crate) struct Site {
    pub(crate) certs: Arc<RwLock<WebCerts>>,
    /// The server's UDP port (WebTransport and native QUIC).
    pub(crate) quic_port: u16,
    /// The web client's files.
    pub(crate) root: Option<PathBuf>,
}

type Body = Either<Full<Bytes>, hyper_staticfile::Body>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]` or `[v6]:port`), if it is only a host name or
/// address.
fn host_of(header: &str) -> Option<&str> {
    let host = if header.starts_with('[') {
        &header[..=header.find(']')?]
    } else {
        header.rsplit_once(':').map_or(header, |(host, _)| host)
    };
    let fine = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    fine.then_some(host)
}

impl Site {
    /// `locus.json` for a request sent to `host`.
    pub(crate) fn locus_json(&self, host: &str) -> String {
        let hashes: Vec<String> = self
            .certs
            .read()
            .expect("web certificates lock")
            .hashes()
            .iter()
            .map(|h| hex(h))
            .collect();
        serde_json::json!({
            "url": format!("https://{host}:{}{WEB_PATH}", self.quic_port),
            "certificate_hashes": hashes,
        })
        .to_string()
    }

    /// The answer to one request.
    pub(crate) async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if req.uri().path() == "/locus.json" {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(host_of)
                .unwrap_or("127.0.0.1");
            let mut response =
                Response::new(Either::Left(Full::new(Bytes::from(self.locus_json(host)))));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        let Some(root) = &self.root else {
            return text(
                StatusCode::NOT_FOUND,
                "no web client is served here (only /locus.json)\n",
            );
        };
        match hyper_staticfile::Static::new(root).serve(req).await {
            Ok(response) => response.map(Either::Right),
            Err(e) => {
                tracing::warn!(%e, "serving a web client file failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_from_the_host_header_without_its_port() {
        assert_eq!(host_of("localhost:8080"), Some("localhost"));
        assert_eq!(host_of("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_of("[::1]"), Some("[::1]"));
        assert_eq!(host_of("evil\"}:80"), None, "nothing but a host name");
        assert_eq!(host_of("[::1"), None);
        assert_eq!(host_of(":80"), None);
    }
}
