//! `locus`: run and operate a Locus world.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use locus_server::{Server, ServerConfig, cert};

/// Locus: a game-world database for MMOs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a world. With no arguments: build the demo module (`game-module`) to wasm if it is missing or stale,
    /// keep the world in `./locus-data`, and listen on 127.0.0.1:7878.
    Serve {
        /// The data directory (commit log, snapshots, certificate).
        #[arg(long, default_value = "locus-data")]
        data_dir: PathBuf,
        /// Address to listen on (UDP).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: SocketAddr,
        /// A module's .wasm file instead of the demo module.
        #[arg(long)]
        module: Option<PathBuf>,
        /// Ticks per second.
        #[arg(long, default_value_t = 20)]
        tick_rate: u16,
    },
}

/// The workspace this binary was built from (the demo module lives there).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the demo module with cargo, in its own target directory (an outer `cargo run` may hold the lock on
/// `target/`). Cargo rebuilds only what changed, so a fresh module costs about a second.
fn demo_module() -> anyhow::Result<Vec<u8>> {
    let ws = workspace();
    let target = ws.join("target").join("locus-serve");
    tracing::info!(
        "building the demo module (game-module) to wasm; the first build takes a minute"
    );
    locus_host::build::build_module(&ws, "game-module", &target)
        .context("building the demo module `game-module` to wasm")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            data_dir,
            listen,
            module,
            tick_rate,
        } => {
            let wasm = match module {
                Some(path) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                None => demo_module()?,
            };
            let mut config = ServerConfig::new(wasm);
            config.data_dir = data_dir.clone();
            config.listen = listen;
            config.tick_rate = tick_rate;
            let server = Server::start(config).context("starting the world")?;
            #[expect(clippy::print_stdout, reason = "the command's output for its user")]
            {
                println!("Locus world running");
                println!("  listening on      {}", server.local_addr());
                println!("  data directory    {}", data_dir.display());
                println!("  certificate       {}", server.cert_path().display());
                println!("  fingerprint       {}", cert::hex(&server.fingerprint()));
                println!("  recovered to tick {}", server.recovered_tick().0);
                println!("Press Ctrl-C to stop.");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(tokio::signal::ctrl_c())?;
            tracing::info!("stopping");
            server.shutdown();
            Ok(())
        }
    }
}
