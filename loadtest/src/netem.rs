//! A lossy, slow link between the bots and the server: `--netem "loss 2% delay 50ms"`.
//!
//! **What it sets.** Every UDP datagram between a bot and the server, in each direction, is dropped with
//! probability `loss` and otherwise delivered `delay` later. The delay is one way: a round trip gains 2 × `delay`
//! (`delay 50ms` gives a 100 ms RTT), because on loopback a packet crosses `lo` once each way and `tc netem` on
//! `lo` delays it each time. Losses are independent (no bursts), the delay is constant (no jitter, no
//! reordering): the two impairments a reliable stream's head-of-line blocking turns into latency.
//!
//! **How** ([`NetemVia`]):
//! - `namespace` (the default): the load tester runs itself again under `unshare --net`, in a fresh network
//!   namespace that holds only its own loopback, and there runs `ip link set dev lo up` and
//!   [`Netem::tc_args`] (`tc qdisc add dev lo root netem limit 1000000 delay <D> loss <P>%`) before anything else.
//!   The server child and the bots then both live in that namespace, and the kernel impairs every packet on its
//!   `lo`. Needs root, `unshare` (util-linux), `ip` and `tc` (iproute2) and a kernel with netem
//!   (`CONFIG_NET_SCH_NETEM`); each missing piece is a [`NamespaceError`] that says so. netem's queue limit is
//!   raised from its default of 1,000 packets, which at 50 ms holds only 20,000 packets a second and would add
//!   tail drops of its own to a large run.
//! - `relay`: the bots talk to a UDP relay in the load tester's own process ([`Relay`]) that forwards to the
//!   server, dropping and delaying datagrams itself: any kernel, no root, and an external `--server` works too.
//!   Its drops come from a generator seeded with `--seed` (the k-th datagram each way is dropped or not the same
//!   in every run); its delay is exact to tokio's 1 ms timer; its CPU counts as the bots'.
//!
//! Invariant: a run either has the impairment it names or does not start (no silent fallback from one way to the
//! other).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::RunArgs;

/// Set in the environment of the run inside the namespace, so it impairs its loopback instead of re-running itself.
const INSIDE: &str = "LOCUS_LOADTEST_NETNS";

/// netem's queue limit, packets (its default, 1,000, is too small for a large run: see the module docs).
const NETEM_LIMIT: u32 = 1_000_000;

/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;

/// Receive and send buffers asked for each relay socket (a few hundred connections share one).
const RELAY_BUFFER: usize = 8 << 20;

/// The impairment `--netem` asks for: per datagram and per direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Netem {
    /// Probability of dropping a datagram, percent, in [0, 100).
    pub(crate) loss_percent: f64,
    /// One-way delay of every datagram not dropped.
    pub(crate) delay: Duration,
}

/// How `--netem` impairs the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum NetemVia {
    /// The whole run (server child and bots) in a fresh network namespace with `tc netem` on its loopback.
    Namespace,
    /// A UDP relay in the load tester's process, between the bots and the server.
    Relay,
}

impl Netem {
    /// Parse `loss P%` and/or `delay D` in either order (`"loss 2% delay 50ms"`); `D` needs a unit (`us`, `ms`,
    /// `s`: tc would read a bare number as microseconds, this parser's siblings as seconds).
    pub(crate) fn parse(spec: &str) -> Result<Netem, String> {
        let mut loss = None;
        let mut delay = None;
        let mut words = spec.split_whitespace();
        while let Some(key) = words.next() {
            let value = words
                .next()
                .ok_or_else(|| format!("`{key}` needs a value in {spec:?}"))?;
            match key {
                "loss" if loss.is_none() => {
                    let n: f64 = value
                        .strip_suffix('%')
                        .unwrap_or(value)
                        .parse()
                        .map_err(|_| format!("not a percentage: {value:?} (try 2%)"))?;
                    if !(0.0..100.0).contains(&n) {
                        return Err(format!(
                            "loss must be at least 0% and below 100%: {value:?}"
                        ));
                    }
                    loss = Some(n);
                }
                "delay" if delay.is_none() => delay = Some(parse_delay(value)?),
                "loss" | "delay" => return Err(format!("`{key}` given twice in {spec:?}")),
                other => {
                    return Err(format!(
                        "unknown netem setting `{other}` in {spec:?}: only `loss P%` and `delay D` (e.g. \
                         \"loss 2% delay 50ms\"), which both ways of --netem-via implement"
                    ));
                }
            }
        }
        if loss.is_none() && delay.is_none() {
            return Err(
                "empty: give `loss P%` and/or `delay D` (e.g. \"loss 2% delay 50ms\")".into(),
            );
        }
        Ok(Netem {
            loss_percent: loss.unwrap_or(0.0),
            delay: delay.unwrap_or(Duration::ZERO),
        })
    }

    /// The arguments of the `tc` command that impairs the namespace's loopback.
    pub(crate) fn tc_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["qdisc", "add", "dev", "lo", "root", "netem", "limit"]
            .map(String::from)
            .into();
        args.push(NETEM_LIMIT.to_string());
        args.push("delay".into());
        args.push(format!("{}us", self.delay.as_micros()));
        args.push("loss".into());
        args.push(format!("{}%", self.loss_percent));
        args
    }

    /// One line for the report: what the link does, per direction and per round trip.
    pub(crate) fn describe(&self, via: NetemVia) -> String {
        let how = match via {
            NetemVia::Namespace => "tc netem on lo in a network namespace",
            NetemVia::Relay => "a UDP relay in the load tester",
        };
        format!(
            "link: {}% loss and {:.1} ms delay per datagram each way (round trip +{:.1} ms), by {how}",
            self.loss_percent,
            self.delay.as_secs_f64() * 1e3,
            2.0 * self.delay.as_secs_f64() * 1e3
        )
    }

    fn loss_probability(&self) -> f64 {
        self.loss_percent / 100.0
    }
}

/// `50ms`, `0.5s`, `250us`.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("delay {s:?} needs a unit: us, ms or s (e.g. 50ms)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a delay: {s:?} (try 50ms)"))?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        other => {
            return Err(format!(
                "unknown unit {other:?} in delay {s:?}: us, ms or s"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=10.0).contains(&secs) {
        return Err(format!("delay must be between 0 and 10 s: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why the run could not be moved into an impaired network namespace.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NamespaceError {
    /// Not root: making a network namespace and adding a qdisc need root.
    #[error(
        "--netem-via namespace needs root (to make a network namespace and add a qdisc to its loopback); run as \
         root, or use --netem-via relay"
    )]
    NotRoot,
    /// An external server is outside the namespace (which holds only its own loopback).
    #[error(
        "--netem-via namespace cannot reach an external --server (the namespace holds only its own loopback); use \
         --netem-via relay"
    )]
    ExternalServer,
    /// A tool the namespace needs is not installed.
    #[error("`{tool}` not found ({source}); install {package}, or use --netem-via relay")]
    Missing {
        /// The command.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
        /// The error of starting it.
        source: io::Error,
    },
    /// The kernel has no netem qdisc (`CONFIG_NET_SCH_NETEM` off, or its module not loadable).
    #[error(
        "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); tc said: {stderr}; use --netem-via relay, which \
         impairs the link in the load tester instead"
    )]
    NoNetem {
        /// What tc printed.
        stderr: String,
    },
    /// A command failed for another reason.
    #[error("`{command}` failed ({status}): {stderr}; or use --netem-via relay")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Under `--netem` with `--netem-via namespace`, get the run into an impaired namespace. Outside the namespace, this
/// runs the same command line again inside a new one (`unshare --net`) and returns how that ended: the caller
/// exits with it and does nothing else. Inside it, it impairs the loopback and returns `None`: go on with the run.
/// Without `--netem`, or with `--netem-via relay`, it does nothing and returns `None`.
///
/// # Errors
///
/// A [`NamespaceError`] names what is missing (root, a tool, the kernel's netem).
pub(crate) fn enter_namespace(args: &RunArgs) -> Result<Option<ExitStatus>, NamespaceError> {
    let Some(netem) = args.netem else {
        return Ok(None);
    };
    if args.netem_via != NetemVia::Namespace {
        return Ok(None);
    }
    if args.server.is_some() {
        return Err(NamespaceError::ExternalServer);
    }
    if std::env::var_os(INSIDE).is_some() {
        impair_loopback(&netem)?;
        return Ok(None);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if effective_uid(&status) != Some(0) {
        return Err(NamespaceError::NotRoot);
    }
    let exe = std::env::current_exe().map_err(|source| NamespaceError::Missing {
        tool: "loadtest",
        package: "nothing (this binary's own path is unreadable)",
        source,
    })?;
    Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .status()
        .map(Some)
        .map_err(|source| NamespaceError::Missing {
            tool: "unshare",
            package: "util-linux",
            source,
        })
}

/// The effective user id in the text of `/proc/self/status` (the second number of its `Uid:` line).
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
}

/// Inside the fresh namespace: bring `lo` up and add the netem qdisc.
fn impair_loopback(netem: &Netem) -> Result<(), NamespaceError> {
    run_tool("ip", &["link", "set", "dev", "lo", "up"].map(String::from))?;
    run_tool("tc", &netem.tc_args())
}

/// Run `ip` or `tc` (both iproute2) and turn a failure into the [`NamespaceError`] that explains it.
fn run_tool(tool: &'static str, args: &[String]) -> Result<(), NamespaceError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| NamespaceError::Missing {
            tool,
            package: "iproute2",
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(tool_failure(
        format!("{tool} {}", args.join(" ")),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

/// The error for a failed `ip`/`tc` command: tc names an unknown qdisc kind when the kernel lacks netem.
fn tool_failure(command: String, status: ExitStatus, stderr: String) -> NamespaceError {
    if command.starts_with("tc ") && stderr.contains("qdisc kind is unknown") {
        NamespaceError::NoNetem { stderr }
    } else {
        NamespaceError::Failed {
            command,
            status,
            stderr,
        }
    }
}

/// Datagrams forwarded and dropped by a [`Relay`], each way.
#[derive(Debug, Default)]
struct RelayCounts {
    up_forwarded: AtomicU64,
    up_dropped: AtomicU64,
    down_forwarded: AtomicU64,
    down_dropped: AtomicU64,
}

/// A datagram waiting in a delay line.
struct Delayed {
    /// When to send it.
    at: Instant,
    bytes: Vec<u8>,
    /// To whom (`None`: the socket's connected peer).
    to: Option<SocketAddr>,
}

/// A UDP relay between the bots and the server that drops and delays datagrams ([`Netem`]), on a thread of its own.
///
/// The bots send to [`Relay::addr`]. Each bot socket (address) gets a socket of its own towards the server, so the
/// server sees one peer per bot socket as it would without the relay. Each direction has its own seeded generator
/// for the drops and its own FIFO delay line (the delay is constant, so FIFO is deadline order). Dropping the relay
/// stops it.
pub(crate) struct Relay {
    addr: SocketAddr,
    netem: Netem,
    counts: Arc<RelayCounts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Start relaying to `server`; the drops are drawn from generators seeded with `seed`.
    ///
    /// # Errors
    ///
    /// Binding the relay's socket or starting its thread failed.
    pub(crate) fn start(server: SocketAddr, netem: Netem, seed: u64) -> io::Result<Relay> {
        let front = bind(if server.is_ipv4() {
            (Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (Ipv6Addr::LOCALHOST, 0).into()
        })?;
        let addr = front.local_addr()?;
        let counts = Arc::new(RelayCounts::default());
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("loadtest-relay".into())
            .spawn({
                let counts = counts.clone();
                move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "the relay's runtime did not start");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        tokio::select! {
                            _ = stopped => {}
                            r = forward(front, server, netem, seed, counts) => {
                                if let Err(e) = r {
                                    tracing::error!(error = %e, "the relay stopped");
                                }
                            }
                        }
                    });
                }
            })?;
        Ok(Relay {
            addr,
            netem,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where the bots send (a loopback address).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One line for the report: the datagrams forwarded and dropped each way.
    pub(crate) fn describe(&self) -> String {
        let c = &self.counts;
        let way = |fwd: &AtomicU64, drop: &AtomicU64| {
            let (f, d) = (fwd.load(Ordering::Relaxed), drop.load(Ordering::Relaxed));
            let pct = if f + d == 0 {
                0.0
            } else {
                100.0 * d as f64 / (f + d) as f64
            };
            format!("{d} of {} datagrams dropped ({pct:.2}%)", f + d)
        };
        format!(
            "relay ({}% loss, {:.1} ms each way): up {}, down {}",
            self.netem.loss_percent,
            self.netem.delay.as_secs_f64() * 1e3,
            way(&c.up_forwarded, &c.up_dropped),
            way(&c.down_forwarded, &c.down_dropped)
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A nonblocking UDP socket on `addr` with large buffers.
fn bind(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort (the kernel caps them at net.core.rmem_max / wmem_max).
    let _ = socket.set_recv_buffer_size(RELAY_BUFFER);
    let _ = socket.set_send_buffer_size(RELAY_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The drops of one direction.
struct Loss {
    rng: ChaCha8Rng,
    p: f64,
}

impl Loss {
    /// Direction `stream` (0: every bot → server; 1 + k: server → the k-th bot socket) of the run seeded `seed`.
    fn new(seed: u64, stream: u64, netem: &Netem) -> Loss {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7465_6d00);
        rng.set_stream(stream);
        Loss {
            rng,
            p: netem.loss_probability(),
        }
    }

    fn drops(&mut self) -> bool {
        self.p > 0.0 && self.rng.random_bool(self.p)
    }
}

/// The relay's loop: read the bots' datagrams, open a socket towards the server for each new bot socket, drop or
/// queue each datagram.
async fn forward(
    front: StdUdpSocket,
    server: SocketAddr,
    netem: Netem,
    seed: u64,
    counts: Arc<RelayCounts>,
) -> io::Result<()> {
    let front = Arc::new(UdpSocket::from_std(front)?);
    let upstream_bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut flows: HashMap<SocketAddr, mpsc::UnboundedSender<Delayed>> = HashMap::new();
    let mut up_loss = Loss::new(seed, 0, &netem);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match front.recv_from(&mut buf).await {
            Ok(r) => r,
            // An ICMP error for an earlier send to a bot that has gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        if !flows.contains_key(&from) {
            let upstream = Arc::new(UdpSocket::from_std(bind(upstream_bind)?)?);
            upstream.connect(server).await?;
            let (up_tx, up_rx) = mpsc::unbounded_channel();
            tokio::spawn(deliver(up_rx, upstream.clone()));
            tokio::spawn(from_server(
                upstream,
                from,
                front.clone(),
                Loss::new(seed, 1 + flows.len() as u64, &netem),
                netem.delay,
                counts.clone(),
            ));
            flows.insert(from, up_tx);
        }
        if up_loss.drops() {
            counts.up_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.up_forwarded.fetch_add(1, Ordering::Relaxed);
        if let Some(flow) = flows.get(&from) {
            let _ = flow.send(Delayed {
                at: Instant::now() + netem.delay,
                bytes: buf[..n].to_vec(),
                to: None,
            });
        }
    }
}

/// The server → bot direction of one bot socket: read the server's datagrams and drop or queue each for the bot.
async fn from_server(
    upstream: Arc<UdpSocket>,
    bot: SocketAddr,
    front: Arc<UdpSocket>,
    mut loss: Loss,
    delay: Duration,
    counts: Arc<RelayCounts>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(deliver(rx, front));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match upstream.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(error = %e, %bot, "the relay stopped reading the server for a bot socket");
                return;
            }
        };
        if loss.drops() {
            counts.down_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.down_forwarded.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Delayed {
            at: Instant::now() + delay,
            bytes: buf[..n].to_vec(),
            to: Some(bot),
        });
    }
}

/// A delay line: send each datagram at its time, in order.
async fn deliver(mut rx: mpsc::UnboundedReceiver<Delayed>, socket: Arc<UdpSocket>) {
    while let Some(d) = rx.recv().await {
        if d.at > Instant::now() {
            tokio::time::sleep_until(d.at.into()).await;
        }
        // A send that fails (a full buffer, a peer gone) is a lost datagram, as on a real link.
        let _ = match d.to {
            Some(to) => socket.send_to(&d.bytes, to).await,
            None => socket.send(&d.bytes).await,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_in_either_order_with_units() {
        let ms = Duration::from_millis;
        assert_eq!(
            Netem::parse("loss 2% delay 50ms"),
            Ok(Netem {
                loss_percent: 2.0,
                delay: ms(50)
            })
        );
        assert_eq!(
            Netem::parse("  delay 0.5s   loss 0.5 "),
            Ok(Netem {
                loss_percent: 0.5,
                delay: ms(500)
            })
        );
        assert_eq!(
            Netem::parse("delay 250us"),
            Ok(Netem {
                loss_percent: 0.0,
                delay: Duration::from_micros(250)
            })
        );
        assert_eq!(Netem::parse("loss 2%").map(|n| n.delay), Ok(Duration::ZERO));
        for bad in [
            "",
            "delay 50",    // no unit: tc would read microseconds
            "delay 50 ms", // the unit is part of the value
            "loss 100%",   // nothing would arrive
            "loss -1%",
            "loss 2% loss 3%", // twice
            "loss 2% jitter 5ms",
            "delay",
            "delay 11s",
        ] {
            assert!(Netem::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_tc_command_sets_the_one_way_delay_loss_and_a_large_queue() {
        let netem = Netem::parse("loss 2% delay 50ms").unwrap();
        assert_eq!(
            netem.tc_args().join(" "),
            "qdisc add dev lo root netem limit 1000000 delay 50000us loss 2%"
        );
        assert_eq!(
            Netem::parse("delay 1.5ms").unwrap().tc_args().join(" "),
            "qdisc add dev lo root netem limit 1000000 delay 1500us loss 0%"
        );
        assert!(
            netem
                .describe(NetemVia::Namespace)
                .contains("50.0 ms delay per datagram each way (round trip +100.0 ms)")
        );
    }

    #[test]
    fn the_cli_takes_netem_and_how() {
        use clap::Parser as _;
        let cli =
            crate::Cli::try_parse_from(["loadtest", "--netem", "loss 2% delay 50ms"]).unwrap();
        assert_eq!(cli.run.netem.map(|n| n.loss_percent), Some(2.0));
        assert_eq!(cli.run.netem_via, NetemVia::Namespace);
        let cli = crate::Cli::try_parse_from([
            "loadtest",
            "--netem",
            "delay 5ms",
            "--netem-via",
            "relay",
        ])
        .unwrap();
        assert_eq!(cli.run.netem_via, NetemVia::Relay);
        assert!(crate::Cli::try_parse_from(["loadtest", "--netem", "jitter 5ms"]).is_err());
        // --netem-via means nothing without --netem
        assert!(crate::Cli::try_parse_from(["loadtest", "--netem-via", "relay"]).is_err());
    }

    #[test]
    fn failures_are_explained() {
        assert_eq!(
            effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n"),
            Some(0)
        );
        assert_eq!(effective_uid("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tx\n"), None);
        let status = Command::new("false").status().unwrap();
        let e = tool_failure(
            "tc qdisc add dev lo root netem delay 1us loss 0%".into(),
            status,
            "Error: Specified qdisc kind is unknown.".into(),
        );
        assert!(matches!(e, NamespaceError::NoNetem { .. }), "{e:?}");
        assert!(e.to_string().contains("CONFIG_NET_SCH_NETEM"));
        let e = tool_failure(
            "ip link set dev lo up".into(),
            status,
            "RTNETLINK: nope".into(),
        );
        assert!(matches!(e, NamespaceError::Failed { .. }), "{e:?}");
    }

    /// A relay in front of a UDP echo server: every datagram that comes back took two one-way delays, and the
    /// share that comes back is about (1 − loss)².
    #[test]
    fn the_relay_delays_and_drops() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let echo_addr = echo.local_addr().unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                    let _ = echo.send_to(&buf[..n], from).await;
                }
            });
            let netem = Netem::parse("loss 20% delay 30ms").unwrap();
            let relay = Relay::start(echo_addr, netem, 7).unwrap();
            let bot = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            bot.connect(relay.addr()).await.unwrap();
            let sent = 400u32;
            let start = Instant::now();
            for i in 0..sent {
                bot.send(&i.to_le_bytes()).await.unwrap();
            }
            let mut back = 0u32;
            let mut buf = [0u8; 64];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(300), bot.recv(&mut buf)).await
            {
                assert_eq!(n, 4);
                assert!(start.elapsed() >= Duration::from_millis(60), "no delay");
                back += 1;
            }
            // (1 − 0.2)² = 64 % of 400 = 256 expected.
            assert!((200..=310).contains(&back), "{back} of {sent} came back");
            let line = relay.describe();
            assert!(line.contains("of 400 datagrams dropped"), "{line}");
            drop(relay);
        });
    }
}
