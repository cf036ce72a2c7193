//! Browsers' side of the server, from native code: WebTransport sessions on the QUIC port (ALPN `h3`, by
//! `web-transport-quinn`'s client, which speaks the HTTP/3 a browser does), their certificate, and the web port's
//! `locus.json` and files. The protocol spoken over a WebTransport session is tested over both transports in
//! `server.rs`; a real browser is driven in `client-demo/tests/web.rs` and the SDK's browser tests.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[expect(dead_code, reason = "the helpers this file does not use")]
mod common;

use common::{DEMO, WAIT};
use locus_protocol::{
    ClientMessage, FrameReader, MAX_SERVER_FRAME, PROTOCOL_VERSION, ServerMessage,
};
use locus_server::{Server, ServerConfig, cert};
use web_transport_quinn as wt;

/// One HTTP/1.1 GET of `path` sent to `addr` as `host`: the status line, the headers (lowercase names) and the
/// body.
fn get(addr: SocketAddr, host: &str, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("the web port takes connections");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, response[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A WebTransport client that trusts `hashes` (what a page passes as `serverCertificateHashes`).
fn web_client(hashes: &[[u8; 32]]) -> wt::Client {
    wt::ClientBuilder::new()
        .with_server_certificate_hashes(hashes.iter().map(|h| h.to_vec()).collect())
        .expect("a WebTransport client")
}

/// Open a session to `url`, send a `Hello` on its stream, and return the first server message.
async fn hello_over(
    client: &wt::Client,
    url: &str,
) -> Result<(wt::Session, ServerMessage), String> {
    let url = url::Url::parse(url).unwrap();
    let session = client.connect(url).await.map_err(|e| e.to_string())?;
    let (mut send, mut recv) = session.open_bi().await.map_err(|e| e.to_string())?;
    let mut frame = Vec::new();
    locus_protocol::encode_frame(
        &ClientMessage::Hello {
            versions: vec![PROTOCOL_VERSION],
            token: None,
        },
        &mut frame,
    );
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(MAX_SERVER_FRAME);
    let mut buf = vec![0; 64 * 1024];
    loop {
        if let Some(payload) = reader.next_frame().map_err(|e| e.to_string())? {
            let message = locus_protocol::decode_frame(payload).map_err(|e| e.to_string())?;
            return Ok((session, message));
        }
        match recv.read(&mut buf).await.map_err(|e| e.to_string())? {
            Some(n) => reader.push(&buf[..n]),
            None => return Err("the stream ended".into()),
        }
    }
}

#[test]
fn browsers_reach_the_quic_port_over_webtransport_with_a_certificate_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("index.html"),
        "<!doctype html><p>the demo</p>",
    )
    .unwrap();
    std::fs::write(root.path().join("game.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.web = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.web_root = Some(root.path().to_owned());
    let server = Server::start(config).expect("the server starts");
    let web = server.web_addr().expect("the web port");
    let port = server.local_addr().port();
    let hashes = server.web_certificate_hashes();
    assert_eq!(hashes.len(), 1, "one certificate until the first rotation");
    assert_ne!(
        hashes[0],
        server.fingerprint(),
        "browsers get a certificate of their own"
    );

    // locus.json: the WebTransport URL on the host the page was loaded from, and the hashes.
    let (status, headers, body) = get(web, &format!("localhost:{}", web.port()), "/locus.json");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["url"], format!("https://localhost:{port}/locus"));
    assert_eq!(
        json["certificate_hashes"],
        serde_json::json!([cert::hex(&hashes[0])])
    );
    // The page's files, with their content types; nothing outside the root.
    let (status, headers, body) = get(web, "127.0.0.1", "/");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, b"<!doctype html><p>the demo</p>");
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let (_, headers, _) = get(web, "127.0.0.1", "/game.wasm");
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    let (status, _, body) = get(web, "127.0.0.1", "/%2e%2e/Cargo.toml");
    assert!(
        !status.contains(" 200 "),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("https://127.0.0.1:{port}/locus");
        // A session with the published hashes speaks the protocol: Hello, then Welcome.
        let (session, first) = tokio::time::timeout(WAIT, hello_over(&web_client(&hashes), &url))
            .await
            .expect("in time")
            .expect("a WebTransport session");
        assert!(
            matches!(&first, ServerMessage::Welcome(w) if w.version == PROTOCOL_VERSION),
            "{first:?}"
        );
        let chain = session
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .expect("the server's certificate");
        assert_eq!(cert::fingerprint(&chain[0]), hashes[0]);
        session.close(0, b"done");
        // The native certificate's hash is not accepted for `h3`, nor is any other.
        let other =
            tokio::time::timeout(WAIT, hello_over(&web_client(&[server.fingerprint()]), &url))
                .await
                .expect("in time");
        assert!(other.is_err(), "the native certificate was given to h3");
        // Another path is refused.
        let refused = tokio::time::timeout(
            WAIT,
            hello_over(
                &web_client(&hashes),
                &format!("https://127.0.0.1:{port}/other"),
            ),
        )
        .await
        .expect("in time");
        let refused = refused.expect_err("only /locus is served");
        assert!(refused.contains("404"), "{refused}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    // Natives keep their pinned certificate on the same port (every other test connects that way).
    let mut native = locus_client::Client::connect(locus_client::ClientConfig::new(
        server.local_addr(),
        locus_client::Trust::Fingerprint(server.fingerprint()),
    ))
    .expect("a native client connects");
    native.poll();
    server.shutdown();
}
