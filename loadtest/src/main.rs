//! `loadtest`: the Locus end-to-end load tester (`BENCHMARKS.md`, "End to end").
//!
//! It runs thousands of bots — real protocol clients over QUIC, from one process — against a real server, and
//! reports players connected, tick time, reducer round trip, update latency, bandwidth and packets per client,
//! server CPU per player per tick, errors and disconnects: as a table, as JSON (`--json`) and as an SVG plot
//! (`--plot`). `--ramp` raises the player count step by step until the service level breaks (p99 tick ≤ 50 ms,
//! p99 update latency ≤ 150 ms, no disconnects) and reports the largest count that held it.
//!
//! ```sh
//! cargo run --release -p loadtest -- --players 1000 --duration 60s \
//!     --json target/loadtest/report.json --plot target/loadtest/plot.svg
//! cargo run --release -p loadtest -- --ramp --json target/loadtest/ramp.json --plot target/loadtest/ramp.svg
//! ```
//!
//! Without `--server` it starts the server itself: it runs its own binary again as `loadtest serve-child` (the
//! real `locus_server::Server` with the demo module, in a temporary data directory), so the server's CPU time is
//! its own process's (read from `/proc`, Linux) and the bots' stays out of it. With `--server ADDR` (e.g. a
//! `locus serve`) it needs `--fingerprint` or `--cert`, and server-side figures are reported as unavailable.
//!
//! `loadtest torture` is crash torture under load ([`torture`]): it SIGKILLs the server at random moments, during
//! snapshots and during publishes, restarts it, and checks that every call the bots were told was done survived.
//!
//! Parts: [`scenario`] (the standard crowd's geometry and choices), [`bots`] (behaviour as bevy_ecs systems at
//! 20 Hz), [`net`] (one tokio task per bot, a quinn endpoint per few hundred bots), [`wire`] (QUIC setup and a
//! borrowing `Tick` reader), [`histogram`], [`child`] (the server process), [`report`], [`plot`], [`run`], [`netem`]
//! (`--netem "loss 2% delay 50ms"`: a lossy, slow link, made by `tc netem` in a network namespace or by a relay).

mod bots;
mod child;
mod disk;
mod histogram;
mod hostile;
mod net;
mod netem;
mod plot;
mod regions;
mod report;
mod run;
mod scenario;
mod torture;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use locus_server::PositionDatagrams;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Load-test a Locus server with bot clients over QUIC (BENCHMARKS.md, end to end)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Crash torture under load: SIGKILL the server at random moments (some during snapshots and publishes),
    /// restart it, and check that every effect the bots were told was done survived.
    Torture(torture::TortureArgs),
    /// A full disk and a read-only data directory under a serving world (a tmpfs in a mount namespace of its
    /// own): the world must stop with a clear error, lose nothing acknowledged, and restart cleanly once repaired.
    Disk(disk::DiskArgs),
    /// A world split into four regions (four server processes and a `nats-server` with JetStream): bots teleport
    /// across the borders and near them; measures handoff latency and throughput, how soon players see each other
    /// across a border against within one region, and the JetStream leg.
    Regions(regions::RegionsArgs),
    /// Internal: run the server under test (started by the load test itself).
    #[command(hide = true)]
    ServeChild {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// A prebuilt module instead of building the demo module.
        #[arg(long)]
        module: Option<PathBuf>,
        /// Ticks per second.
        #[arg(long, default_value_t = 20)]
        tick_rate: u16,
        /// Bytes per client per tick (0: no limit); the server's default if not given.
        #[arg(long)]
        byte_budget: Option<usize>,
        /// Every move of every row every tick (`locus serve --every-move`).
        #[arg(long)]
        every_move: bool,
        /// When version-4 bots are sent positions in datagrams (`locus serve --datagrams`).
        #[arg(long, value_enum, default_value_t = PositionDatagrams::OnLoss)]
        datagrams: PositionDatagrams,
        /// Run this region of --config (`locus serve --region`).
        #[arg(long, requires = "config")]
        region: Option<String>,
        /// The world's layout, with --region.
        #[arg(long, requires = "region")]
        config: Option<PathBuf>,
    },
}

/// What bots do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// The standard crowd of BENCHMARKS.md: walk to random waypoints at 5 m/s, chat now and then, rarely gather
    /// or fight; 2 NPCs per player; density of 10,000 players on 4096² m.
    Standard,
    /// Connect, teleport into the arena and stand still (the baseline cost of a session).
    Idle,
}

/// The options of a load test.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Bots (players). In ramp mode the first step's count unless --ramp-start is given.
    #[arg(long, default_value_t = 100)]
    pub(crate) players: u32,
    /// How long to measure once every bot is in (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// How long to let the world settle after every bot is in, before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// An external server (e.g. `locus serve`) instead of starting one; needs --fingerprint or --cert.
    #[arg(long)]
    pub(crate) server: Option<SocketAddr>,
    /// The external server's certificate fingerprint (64 hex digits, as `locus serve` prints it).
    #[arg(long, requires = "server")]
    pub(crate) fingerprint: Option<String>,
    /// The external server's certificate file (`cert.der` in its data directory, or PEM).
    #[arg(long, requires = "server", conflicts_with = "fingerprint")]
    pub(crate) cert: Option<PathBuf>,
    /// What the bots do.
    #[arg(long, value_enum, default_value_t = Scenario::Standard)]
    pub(crate) scenario: Scenario,
    /// Raise the player count step by step until the service level breaks.
    #[arg(long)]
    pub(crate) ramp: bool,
    /// Ramp: the first step's players.
    #[arg(long, default_value_t = 500)]
    pub(crate) ramp_start: u32,
    /// Ramp: players added per step.
    #[arg(long, default_value_t = 500)]
    pub(crate) ramp_step: u32,
    /// Ramp: stop after this many players even if the service level holds.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) ramp_max: u32,
    /// Ramp: how long each step is measured (after --warmup).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) ramp_measure: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Write a plot (SVG) of tick time, latency and bandwidth against time (and players, in ramp mode) here.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Seed of every bot's choices.
    #[arg(long, default_value_t = 0x10c05)]
    pub(crate) seed: u64,
    /// Bots connecting per second.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) connect_rate: f64,
    /// Bots sharing one quinn endpoint (one UDP socket and driver task).
    #[arg(long, default_value_t = 100)]
    pub(crate) bots_per_endpoint: u32,
    /// Threads of the bots' tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Side of the square the bots live in, in metres, instead of the standard density's (a dense square makes
    /// every bot see the others: the smoke test uses it).
    #[arg(long)]
    pub(crate) arena: Option<f32>,
    /// Tables every bot subscribes to (comma-separated, `Filter::All`; spatial ones are limited to its area).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "player,creature,resource_node,ground_item,local_message,chunk,inventory_item"
    )]
    pub(crate) tables: Vec<String>,
    /// A prebuilt module for the started server instead of building the demo module.
    #[arg(long, conflicts_with = "server")]
    pub(crate) module: Option<PathBuf>,
    /// Ticks per second of the started server.
    #[arg(long, default_value_t = 20, conflicts_with = "server")]
    pub(crate) tick_rate: u16,
    /// The started server's byte budget per client per tick (`locus serve --byte-budget`; 0: no limit). Default:
    /// the server's (1,024 bytes).
    #[arg(long, conflicts_with = "server")]
    pub(crate) byte_budget: Option<usize>,
    /// The started server sends every move of every row every tick (`locus serve --every-move`), instead of far
    /// rows' moves every 2nd or 4th tick: the baseline for the distance-based rates.
    #[arg(long, conflicts_with = "server")]
    pub(crate) every_move: bool,
    /// When the started server sends version-4 bots walking rows' positions in QUIC datagrams
    /// (`locus serve --datagrams`): on-loss (while a bot's connection loses packets), always, or never.
    #[arg(long, value_enum, default_value_t = PositionDatagrams::OnLoss, conflicts_with = "server")]
    pub(crate) datagrams: PositionDatagrams,
    /// NPCs spawned per player (started server only).
    #[arg(long, default_value_t = scenario::NPCS_PER_PLAYER)]
    pub(crate) npcs_per_player: u32,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// The protocol version the bots speak: 5 is 4 with redirects to other regions (which a load test of one
    /// server never sends: the same as 4 here); 4 is 3 with walking rows' positions in QUIC datagrams (a lost one
    /// is not sent again, so nothing waits behind it under loss); 3 receives walking rows as moves in centimetres
    /// on the stream and names rows by short handles, 2 receives changed rows as patches of their changed
    /// columns, 1 as whole rows (baselines to compare bandwidth, server CPU and update latency against).
    #[arg(long, default_value_t = locus_protocol::PROTOCOL_VERSION,
          value_parser = clap::value_parser!(u16).range(1..=5))]
    pub(crate) protocol: u16,
    /// Impair the link between bots and server: `loss P%` and/or `delay D` (e.g. "loss 2% delay 50ms"). Each
    /// datagram, in each direction, is dropped with probability P and otherwise delivered D later: the delay is
    /// one way, so a round trip gains 2×D (delay 50ms: 100 ms RTT), as `tc netem` on loopback gives.
    #[arg(long, value_parser = netem::Netem::parse)]
    pub(crate) netem: Option<netem::Netem>,
    /// How --netem impairs the link. namespace: the whole run (server child and bots) again in a fresh network
    /// namespace (`unshare --net`) with `tc qdisc add dev lo root netem ...` on its loopback (needs root, iproute2,
    /// a kernel with netem). relay: a UDP relay in this process between bots and server drops and delays the
    /// datagrams (any kernel, no root; its CPU counts as the bots').
    #[arg(long, value_enum, default_value_t = netem::NetemVia::Namespace, requires = "netem")]
    pub(crate) netem_via: netem::NetemVia,
    /// Hostile clients beside the bots (see `hostile.rs`).
    #[command(flatten)]
    pub(crate) hostile: hostile::HostileArgs,
}

/// `60s`, `2m`, `500ms`, `1h`, or a number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 60s, 2m, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// mimalloc rather than glibc malloc: the tick thread allocates per row and the network threads per packet, and
/// glibc's free lists (`_int_malloc`, `malloc_consolidate`) cost several percent of the server's CPU there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server child logs errors only by default (tick overruns show in the report; warnings would tear the
    // progress bar); RUST_LOG overrides both.
    let default = if cli.command.is_some() {
        "error"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Sub::ServeChild {
            data_dir,
            listen,
            module,
            tick_rate,
            byte_budget,
            every_move,
            datagrams,
            region,
            config,
        }) => child::serve_child(
            &data_dir,
            listen,
            module.as_deref(),
            &child::Options {
                tick_rate,
                byte_budget,
                every_move,
                datagrams,
            },
            region.as_deref().zip(config.as_deref()),
        ),
        Some(Sub::Regions(args)) => regions::regions(&args),
        Some(Sub::Torture(args)) => torture::torture(&args),
        Some(Sub::Disk(args)) => disk::disk(&args),
        None => run::run(&cli.run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "--players",
            "1000",
            "--duration",
            "60s",
            "--json",
            "r.json",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.players, 1000);
        assert_eq!(cli.run.tables.len(), 7);
        let cli = Cli::try_parse_from([
            "loadtest",
            "serve-child",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Sub::ServeChild { .. })));
        // an external server needs its certificate named
        assert!(Cli::try_parse_from(["loadtest", "--fingerprint", "ab"]).is_err());
        // versions 1 to 5, the latest by default
        assert_eq!(Cli::try_parse_from(["loadtest"]).unwrap().run.protocol, 5);
        let v4 = Cli::try_parse_from(["loadtest", "--protocol", "4"]).unwrap();
        assert_eq!(v4.run.protocol, 4);
        assert!(Cli::try_parse_from(["loadtest", "--protocol", "6"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "--protocol", "0"]).is_err());
    }
}
