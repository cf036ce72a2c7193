//! The cost of the transport alone: what a server's threads spend, per client per tick, to send each of N QUIC
//! connections one stream write a tick (about what a standard-crowd client is sent) and take its ACKs, with no
//! world behind it: quinn as `locus serve` uses it (two tokio network threads, writes from one plain thread as the
//! release thread makes them), beside the same packets as plain UDP datagrams, one answered per packet as an ACK
//! would be (the kernel's share: the floor under any UDP transport).
//!
//! ```text
//! cargo run --release -p locus-server --example quic_floor -- [CONNECTIONS=1000] [SECONDS=10] [BYTES=150]
//! ```
//!
//! The clients run in this process on threads of their own; only the server side's threads (`floor-srv*`) are
//! counted, from `/proc/self/task/*/stat` (Linux).

#![allow(
    clippy::print_stdout,
    reason = "an example that reports what it measured"
)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use locus_protocol::ALPN;

/// 20 Hz.
const TICK: Duration = Duration::from_millis(50);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (n, secs, bytes) = (arg(1, 1_000) as usize, arg(2, 10), arg(3, 150) as usize);
    println!(
        "{n} connections, {bytes} bytes each per tick at 20 Hz, {secs} s measured; server threads' CPU per connection per tick:"
    );
    let udp = udp_floor(n, secs, bytes)?;
    println!("  plain UDP (one datagram each way, the kernel's share): {udp:.2} µs");
    let quic = quic_floor(n, secs, bytes)?;
    println!(
        "  QUIC (quinn, one stream write a tick, its ACKs):        {quic:.2} µs ({:.1}× the UDP floor)",
        quic / udp
    );
    Ok(())
}

/// CPU seconds (utime + stime) of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime, in USER_HZ (100 a second).
        total += (field(11) + field(12)) as f64 / 100.0;
    }
    total
}

/// Run `tick` every [`TICK`] on this thread for `secs` seconds after a 2 s warm-up, and return the CPU the
/// `floor-srv` threads spent per connection per tick (µs) over the measured part.
fn measure(n: usize, secs: u64, mut tick: impl FnMut()) -> f64 {
    let start = Instant::now();
    let warm = start + Duration::from_secs(2);
    let end = warm + Duration::from_secs(secs);
    let (mut cpu0, mut ticks) = (None, 0u64);
    let mut next = start;
    while Instant::now() < end {
        if cpu0.is_none() && Instant::now() >= warm {
            cpu0 = Some(threads_cpu("floor-srv"));
        }
        tick();
        if cpu0.is_some() {
            ticks += 1;
        }
        next += TICK;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let cpu = threads_cpu("floor-srv") - cpu0.unwrap_or(0.0);
    cpu * 1e6 / (n as f64 * ticks.max(1) as f64)
}

/// Plain UDP: each tick the server sends `n` datagrams of `bytes` bytes (one per client); clients answer each with
/// 30 bytes, which a server thread receives.
fn udp_floor(n: usize, secs: u64, bytes: usize) -> std::io::Result<f64> {
    const CLIENT_SOCKETS: usize = 8;
    let server = UdpSocket::bind("127.0.0.1:0")?;
    server.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let mut threads = Vec::new();
    for i in 0..CLIENT_SOCKETS {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        clients.push(sock.local_addr()?);
        let (stop, to) = (stop.clone(), server.local_addr()?);
        threads.push(
            std::thread::Builder::new()
                .name(format!("floor-cli{i}"))
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        if sock.recv(&mut buf).is_ok() {
                            let _ = sock.send_to(&buf[..30], to);
                        }
                    }
                })?,
        );
    }
    let acks = server.try_clone()?;
    {
        let (stop, received) = (stop.clone(), received.clone());
        threads.push(
            std::thread::Builder::new()
                .name("floor-srv-rx".into())
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        if acks.recv(&mut buf).is_ok() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?,
        );
    }
    let payload = vec![7u8; bytes];
    let sent = Arc::new(AtomicU64::new(0));
    let cpu = {
        let (sent, stop, server) = (sent.clone(), stop.clone(), server.try_clone()?);
        std::thread::Builder::new()
            .name("floor-srv-tick".into())
            .spawn(move || {
                let result = measure(n, secs, || {
                    for c in 0..n {
                        if server
                            .send_to(&payload, clients[c % CLIENT_SOCKETS])
                            .is_ok()
                        {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                stop.store(true, Ordering::Relaxed);
                result
            })?
            .join()
            .expect("the UDP tick thread")
    };
    for t in threads {
        let _ = t.join();
    }
    let (sent, received) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    println!("  (UDP: {sent} datagrams sent, {received} answers received)");
    Ok(cpu)
}

/// QUIC with quinn: `n` connections, each with one bidirectional stream; each tick a plain thread writes `bytes`
/// bytes into every stream without waiting (as `locus serve`'s release thread does), and two tokio threads
/// (`floor-srv`) drive the endpoint and connections.
fn quic_floor(n: usize, secs: u64, bytes: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let identity = locus_server::cert::load_or_create(dir.path())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    config.transport_config(Arc::new(transport));

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("floor-srv")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("floor-cli")
        .enable_all()
        .build()?;
    let endpoint = {
        let _guard = server_rt.enter();
        quinn::Endpoint::server(config, SocketAddr::from(([127, 0, 0, 1], 0)))?
    };
    let addr = endpoint.local_addr()?;
    let streams: Arc<Mutex<Vec<quinn::SendStream>>> = Arc::default();
    {
        let streams = streams.clone();
        server_rt.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let streams = streams.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let Ok((send, mut recv)) = conn.accept_bi().await else {
                        return;
                    };
                    let mut hello = [0u8; 1];
                    if recv.read_exact(&mut hello).await.is_ok() {
                        streams.lock().expect("streams").push(send);
                    }
                    // Keep the connection until the client goes.
                    conn.closed().await;
                });
            }
        });
    }
    let client_config = locus_client::quic_client_config(identity.fingerprint())?;
    let conns = client_rt.block_on(async {
        let mut endpoints = Vec::new();
        for _ in 0..8 {
            let mut e = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            e.set_default_client_config(client_config.clone());
            endpoints.push(e);
        }
        let mut conns = Vec::new();
        for i in 0..n {
            let conn = endpoints[i % endpoints.len()]
                .connect(addr, "locus")?
                .await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&[1]).await?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(Some(_)) = recv.read(&mut buf).await {}
            });
            conns.push((conn, send));
        }
        Ok::<_, Box<dyn std::error::Error>>((endpoints, conns))
    })?;
    while streams.lock().expect("streams").len() < n {
        std::thread::sleep(Duration::from_millis(10));
    }
    let payload = vec![7u8; bytes];
    let cpu = {
        let streams = streams.clone();
        std::thread::Builder::new()
            .name("floor-srv-tick".into())
            .spawn(move || {
                measure(n, secs, || {
                    for send in streams.lock().expect("streams").iter_mut() {
                        let _ = send.write(&payload).now_or_never();
                    }
                })
            })?
            .join()
            .expect("the QUIC tick thread")
    };
    drop(conns);
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(cpu)
}
