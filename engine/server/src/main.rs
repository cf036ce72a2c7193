//! `locus`: run and operate a Locus world.
//!
//! - `locus serve` runs a world (see `--help`); SIGINT or SIGTERM stops it gracefully. With `--module-crate DIR
//!   --watch` it builds a module crate, and builds and publishes it again whenever its sources change.
//! - `locus new NAME` writes a module project of one's own (`locus_server::scaffold`).
//! - `locus publish`, `call`, `query`, `logs`, `snapshot` talk to a running world as its admin, with the token
//!   the world wrote to its data directory at first start (`admin.token`) and its certificate (`cert.der`).
//!   The reference is `engine/docs/operations.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use locus_client::Trust;
use locus_host::Budget;
use locus_protocol::{AdminCommand, AdminReply, CallOutcome, ModuleLogLine};
use locus_server::admin_client::{AdminSession, AdminTarget, encode_args};
use locus_server::query::{QueryResult, format_table};
use locus_server::{MODULE_FILE, PositionDatagrams, Server, ServerConfig, WebCertSource, cert};

/// mimalloc rather than glibc malloc: the tick thread allocates per row and the network threads per packet, and
/// glibc's free lists (`_int_malloc`, `malloc_consolidate`) cost several percent of the server's CPU there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// keep the world in `./locus-data`, and listen on 127.0.0.1:7878. A module published to the world
    /// (`locus publish`) is kept in the data directory and runs on restart unless `--module` says otherwise.
    Serve {
        /// The data directory (commit log, snapshots, certificate, admin token, published module). Default
        /// `locus-data`, or `locus-data/<REGION>` with --region.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (UDP). Default 127.0.0.1:7878, or the region's `listen` in --config with --region.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run one region of a world split into regions (`engine/docs/regions.md`): the region of this name in
        /// --config. It exchanges border rows with the other regions over the config's NATS server.
        #[arg(long, value_name = "NAME", requires = "config")]
        region: Option<String>,
        /// The world's layout (`world.toml`: its regions, their rectangles and addresses, the NATS server).
        #[arg(long, value_name = "FILE", requires = "region")]
        config: Option<PathBuf>,
        /// A module's .wasm file instead of the published or demo module.
        #[arg(long, conflicts_with = "module_crate")]
        module: Option<PathBuf>,
        /// A module crate's directory (e.g. one `locus new` wrote): build it to wasm and run it instead of the
        /// published or demo module. Its build goes to `wasm-modules` in its target directory.
        #[arg(long, value_name = "DIR")]
        module_crate: Option<PathBuf>,
        /// With --module-crate: watch the crate's `Cargo.toml`, `build.rs`, `src/` and `assets/`, and on every
        /// change build it again and publish it into the running world (as `locus publish`: clients stay
        /// connected; a build error or a refused schema change is printed and the running module stays).
        #[arg(long, requires = "module_crate")]
        watch: bool,
        /// Ticks per second.
        #[arg(long, default_value_t = 20)]
        tick_rate: u16,
        /// Serve Prometheus metrics over HTTP at this address (e.g. 127.0.0.1:9187; path /metrics).
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Stop a reducer call that runs longer than this many milliseconds of wall-clock time (its writes are
        /// rolled back; the caller gets ReducerAborted). Default 100 (two ticks at 20 Hz).
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
        reducer_time_limit: Option<u64>,
        /// Bound each reducer call by wasmtime fuel (about one unit per wasm instruction) instead of time: a
        /// runaway call stops at the same instruction every time, but all wasm code runs slower.
        #[arg(long, value_name = "UNITS", conflicts_with = "reducer_time_limit", value_parser = clap::value_parser!(u64).range(1..))]
        reducer_fuel: Option<u64>,
        /// Worker threads for each tick's per-client work (interest and frame encoding); 1 keeps it on the tick
        /// thread. Default: the machine's cores.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// Bytes of rows one client may be sent per tick; rows over it wait, the nearest first, and far rows are
        /// updated less often (crowd control). 0 for no limit. Default 1024 (about one datagram per tick).
        #[arg(long, value_name = "BYTES")]
        byte_budget: Option<usize>,
        /// Send every client every move of every row in its view every tick. By default (crowd control) a row
        /// farther than 3/8 of the client's area radius moves on the client every 2nd tick, farther than 3/4 every
        /// 4th (protocol version 3; other changes always go at once).
        #[arg(long)]
        every_move: bool,
        /// When a version-4 client is sent walking rows' positions in QUIC datagrams: on-loss (while its
        /// connection loses packets; on a clean link moves on the stream are fewer bytes), always, or never.
        #[arg(long, value_enum, default_value_t = PositionDatagrams::OnLoss)]
        datagrams: PositionDatagrams,
        /// Serve the web client over HTTP at this address (e.g. 127.0.0.1:8080): `locus.json` (the WebTransport
        /// URL and the hashes of the browsers' certificate) and the files of --web-root. Browsers connect over
        /// WebTransport to the UDP port of --listen either way.
        #[arg(long, value_name = "ADDR")]
        web: Option<SocketAddr>,
        /// The web client's files (its page, JavaScript and wasm), served by --web. Default: the demo's web client
        /// (client-demo built for the browser; built on first use, which takes several minutes).
        #[arg(long, value_name = "DIR", requires = "web")]
        web_root: Option<PathBuf>,
        /// Give browsers this certificate chain (PEM) instead of a self-signed one the server makes and rotates
        /// every 6 days (for a public deployment, a certificate from an authority). Needs --web-key.
        #[arg(long, value_name = "PEM", requires = "web_key")]
        web_cert: Option<PathBuf>,
        /// The private key (PEM) of --web-cert.
        #[arg(long, value_name = "PEM", requires = "web_cert")]
        web_key: Option<PathBuf>,
    },
    /// Replace the running module with a new version, without disconnecting anyone. Compatible schema changes
    /// (new tables, columns appended with a default, indexes, reducers) are migrated; anything else is refused
    /// with every offending change named, and the old module keeps running.
    Publish {
        /// The new module (.wasm).
        module: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Call a reducer as the server (admin-only reducers accept it). Arguments as a JSON array.
    Call {
        /// The reducer.
        reducer: String,
        /// Its arguments: a JSON array, one element per parameter (a bare value for one parameter).
        #[arg(default_value = "[]")]
        args: String,
        #[command(flatten)]
        target: Target,
    },
    /// Run a read-only SQL query: SELECT columns | * | COUNT(*) FROM table [WHERE ...] [ORDER BY ...] [LIMIT n].
    Query {
        /// The statement.
        sql: String,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the module's recent log lines; with -f, keep printing new ones.
    Logs {
        /// Follow: keep printing lines as the module writes them.
        #[arg(short, long)]
        follow: bool,
        /// How many recent lines to print first.
        #[arg(short = 'n', long, default_value_t = 100)]
        tail: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Write a snapshot of the world now.
    Snapshot {
        #[command(flatten)]
        target: Target,
    },
    /// Run a world split into regions on this machine, for development: a `nats-server` with JetStream (unless
    /// one listens at the layout's NATS address already) and one `locus serve --region` per region of --config
    /// (see engine/docs/regions.md). Ctrl-C stops them all.
    Cluster {
        /// The world's layout (`world.toml`: regions, their rectangles and addresses, the NATS server).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where the regions keep their data (`DIR/<region>`) and NATS its JetStream store (`DIR/nats`).
        #[arg(long, value_name = "DIR", default_value = "locus-data")]
        data_dir: PathBuf,
        /// A module's .wasm file for every region, instead of the demo module (built once, for all of them).
        #[arg(long)]
        module: Option<PathBuf>,
    },
    /// Write a new module project: a standalone crate with a table, a reducer, a tick reducer, tests with
    /// `locus-testing` and a README, depending on this engine checkout. Then: `cd NAME && cargo test`, and
    /// `locus serve --module-crate . --watch`.
    New {
        /// The package name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Where to write it. Default: ./NAME.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The engine checkout the project depends on (its `engine/module` and `engine/testing`). Default: the one
        /// this `locus` was built from.
        #[arg(long, value_name = "DIR")]
        engine: Option<PathBuf>,
    },
}

/// Which world to talk to, and the admin credentials.
#[derive(Debug, Args)]
struct Target {
    /// The world's data directory: the admin token and the certificate are read from it.
    #[arg(long, default_value = "locus-data")]
    data_dir: PathBuf,
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    server: SocketAddr,
    /// The admin token file (default: <data-dir>/admin.token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Pin this certificate fingerprint (64 hex digits) instead of reading <data-dir>/cert.der.
    #[arg(long)]
    fingerprint: Option<String>,
    /// A world split into regions (`world.toml`): talk to every region in turn (or to --region alone), each at its
    /// `listen` address, with its data directory `<data-dir>/<region>` (as `locus cluster` and `locus serve
    /// --region` keep them).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["server", "token_file", "fingerprint"])]
    config: Option<PathBuf>,
    /// With --config: only this region.
    #[arg(long, value_name = "NAME", requires = "config")]
    region: Option<String>,
}

impl Target {
    /// Every world (region) the command goes to, with the region's name for a world split into regions.
    fn resolve(&self) -> anyhow::Result<Vec<(Option<String>, AdminTarget)>> {
        let Some(file) = &self.config else {
            let trust = match &self.fingerprint {
                Some(f) => Trust::parse_fingerprint(f).context("--fingerprint")?,
                None => Trust::CertFile(self.data_dir.join("cert.der")),
            };
            return Ok(vec![(
                None,
                AdminTarget {
                    server: self.server,
                    trust,
                    token_file: self.token_file.clone().unwrap_or_else(|| {
                        self.data_dir.join(locus_server::identity::ADMIN_TOKEN_FILE)
                    }),
                },
            )]);
        };
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let layout = locus_region::WorldLayout::from_toml(&text)
            .with_context(|| format!("the world layout in {}", file.display()))?;
        if let Some(name) = &self.region
            && layout.region_id(name).is_none()
        {
            bail!("{} has no region `{name}`", file.display());
        }
        Ok(layout
            .regions()
            .iter()
            .filter(|r| self.region.as_ref().is_none_or(|n| *n == r.name))
            .map(|r| {
                let dir = self.data_dir.join(&r.name);
                (
                    Some(r.name.clone()),
                    AdminTarget {
                        server: r.listen,
                        trust: Trust::CertFile(dir.join("cert.der")),
                        token_file: dir.join(locus_server::identity::ADMIN_TOKEN_FILE),
                    },
                )
            })
            .collect())
    }
}

/// The workspace this binary was built from (the demo module lives there).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the demo module with cargo, in its own target directory (an outer `cargo run` may hold the lock on
/// `target/`): `wasm-modules` in `$CARGO_TARGET_DIR` or `target/`, which the load tester and the tests use too, so
/// whichever runs first builds it for the others. Cargo rebuilds only what changed, so a fresh module costs about a
/// second; a first build says so on stderr.
fn demo_module() -> anyhow::Result<Vec<u8>> {
    let ws = workspace();
    let target = locus_host::build::module_target_dir(&ws, "wasm-modules");
    locus_host::build::build_module(&ws, "game-module", &target)
        .context("building the demo module `game-module` to wasm")
}

/// Build the demo's web client (`client-demo` for the browser, its page from `client-demo/web`) into
/// `target/web-client/site`, with its cargo build in `target/web-client/build` and the `wasm-bindgen` tools in
/// `target/tools` (installed there on first use). The tests that drive the web client in a browser build the same
/// way, so whichever runs first builds it for the others.
fn demo_web_client() -> anyhow::Result<PathBuf> {
    let ws = workspace();
    let target = ws.join("target").join("web-client");
    tracing::info!(
        "building the demo's web client (client-demo for the browser); the first build takes several minutes"
    );
    let app = locus_host::web_build::build_web_app(
        &ws,
        "client-demo",
        "client-demo",
        &target.join("build"),
        &ws.join("target").join("tools"),
        &ws.join("client-demo").join("web"),
        &target.join("site"),
    )
    .context("building the demo's web client")?;
    Ok(app.dir)
}

/// Build the module crate in `dir` into `wasm-modules` of its workspace's target directory (where its tests, with
/// `locus-testing`, build it too).
/// Returns the `.wasm` file's path and bytes.
fn build_crate(dir: &Path) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    use locus_host::build;
    let context = || format!("building the module crate in {}", dir.display());
    let workspace = build::workspace_root(dir).with_context(context)?;
    build::build_crate_file(dir, &build::module_target_dir(&workspace, "wasm-modules"))
        .with_context(context)
}

/// What a change of a module crate's sources shows in: each watched file's path, modification time and length.
/// Watched: the crate's `Cargo.toml`, `build.rs`, `src/` and `assets/`, and every file its last build read
/// (cargo's dep-info beside `wasm`: `include_str!`'d content elsewhere, path dependencies' sources).
fn sources_state(dir: &Path, wasm: &Path) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    fn walk(path: &Path, out: &mut Vec<(PathBuf, Option<std::time::SystemTime>, u64)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), out);
                }
            }
        } else {
            out.push((path.to_owned(), meta.modified().ok(), meta.len()));
        }
    }
    let mut out = Vec::new();
    for part in ["Cargo.toml", "build.rs", "src", "assets"] {
        walk(&dir.join(part), &mut out);
    }
    for source in locus_host::build::sources_of(wasm) {
        walk(&source, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// `serve --module-crate DIR --watch`: poll the crate's sources twice a second (polling works on every file
/// system, including network and container mounts where change notifications do not); when they change and then
/// stay unchanged for a poll, build the crate and publish it into `server`. Never returns.
async fn watch_and_publish(dir: &Path, wasm: PathBuf, server: &Server) {
    let mut wasm = wasm;
    let mut seen = sources_state(dir, &wasm);
    say(&format!(
        "  watching          {} ({} files: the crate's and every file its build read)",
        dir.display(),
        seen.len()
    ));
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sources_state(dir, &wasm);
        if now == seen {
            continue;
        }
        // Let an editor's save (or a checkout) finish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        seen = sources_state(dir, &wasm);
        say("change seen: building the module");
        let started = std::time::Instant::now();
        let owned = dir.to_owned();
        let built = tokio::task::spawn_blocking(move || build_crate(&owned)).await;
        let bytes = match built {
            Ok(Ok((path, bytes))) => {
                wasm = path;
                seen = sources_state(dir, &wasm);
                bytes
            }
            Ok(Err(e)) => {
                say(&format!(
                    "the build failed; the running module stays:\n{e:#}"
                ));
                continue;
            }
            Err(e) => {
                say(&format!(
                    "the build did not finish ({e}); the running module stays"
                ));
                continue;
            }
        };
        let built_in = started.elapsed();
        match server.publish(&bytes) {
            Ok(changes) => {
                say(&format!(
                    "published (built in {:.1} s, published in {:.1} s){}",
                    built_in.as_secs_f64(),
                    (started.elapsed() - built_in).as_secs_f64(),
                    if changes.is_empty() {
                        ": no schema changes"
                    } else {
                        ":"
                    }
                ));
                for c in changes {
                    say(&format!("  {c}"));
                }
            }
            Err(e) => say(&format!("refused; the running module stays: {e}")),
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            data_dir,
            listen,
            region,
            config,
            module,
            module_crate,
            watch,
            tick_rate,
            metrics,
            reducer_time_limit,
            reducer_fuel,
            workers,
            byte_budget,
            every_move,
            datagrams,
            web,
            web_root,
            web_cert,
            web_key,
        } => serve(Serve {
            data_dir,
            listen,
            region: match (region, config) {
                (Some(name), Some(file)) => Some(region_setup(&name, &file)?),
                _ => None,
            },
            module,
            module_crate,
            watch,
            tick_rate,
            metrics,
            budget: budget(reducer_time_limit, reducer_fuel),
            workers,
            byte_budget,
            every_move,
            datagrams,
            web,
            web_root,
            web_cert: web_cert.zip(web_key),
        }),
        Command::Publish { module, target } => {
            let wasm =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            admin(&target, |mut session| {
                let wasm = wasm.clone();
                async move {
                    match session.run(AdminCommand::Publish { wasm }).await? {
                        AdminReply::Published { tick, changes } => {
                            say(&format!(
                                "published: the new module runs from tick {}",
                                tick + 1
                            ));
                            if changes.is_empty() {
                                say("  (no schema changes)");
                            }
                            for c in changes {
                                say(&format!("  {c}"));
                            }
                            Ok(())
                        }
                        AdminReply::Refused { message } => bail!("refused: {message}"),
                        other => bail!("unexpected answer {other:?}"),
                    }
                }
            })
        }
        Command::Call {
            reducer,
            args,
            target,
        } => {
            let json: serde_json::Value =
                serde_json::from_str(&args).context("the arguments are not JSON")?;
            admin(&target, |mut session| {
                let (reducer, json) = (reducer.clone(), json.clone());
                async move {
                    let def = session
                        .reducers()
                        .iter()
                        .find(|r| r.name == reducer)
                        .cloned();
                    let args = match &def {
                        Some(def) => encode_args(def, &json).map_err(anyhow::Error::msg)?,
                        None => bail!("the module has no client-callable reducer `{reducer}`"),
                    };
                    match session.run(AdminCommand::Call { reducer, args }).await? {
                        AdminReply::Called {
                            tick,
                            outcome: CallOutcome::Ok,
                        } => {
                            say(&format!("ok (tick {tick})"));
                            Ok(())
                        }
                        AdminReply::Called {
                            outcome: CallOutcome::Err { code, message },
                            ..
                        } => bail!("the call failed ({code:?}): {message}"),
                        other => bail!("unexpected answer {other:?}"),
                    }
                }
            })
        }
        Command::Query { sql, json, target } => admin(&target, |mut session| {
            let sql = sql.clone();
            async move {
                match session.run(AdminCommand::Query { sql }).await? {
                    AdminReply::Rows { json: text } if json => {
                        say(&text);
                        Ok(())
                    }
                    AdminReply::Rows { json: text } => {
                        let result: QueryResult =
                            serde_json::from_str(&text).context("the server's answer")?;
                        say(format_table(&result).trim_end());
                        Ok(())
                    }
                    AdminReply::Refused { message } => bail!("{message}"),
                    other => bail!("unexpected answer {other:?}"),
                }
            }
        }),
        Command::Logs {
            follow,
            tail,
            target,
        } => {
            if follow && target.config.is_some() && target.region.is_none() {
                bail!("--follow follows one region: add --region NAME");
            }
            admin(&target, |mut session| async move {
                let mut reply = session.run(AdminCommand::Logs { tail, follow }).await?;
                loop {
                    match reply {
                        AdminReply::Logs { lines } => lines.iter().for_each(print_line),
                        AdminReply::Refused { message } => bail!("{message}"),
                        other => bail!("unexpected answer {other:?}"),
                    }
                    if !follow {
                        return Ok(());
                    }
                    // The Logs command was this session's first request.
                    reply = session.next_reply(1).await?;
                }
            })
        }
        Command::Cluster {
            config,
            data_dir,
            module,
        } => cluster(&config, &data_dir, module),
        Command::New { name, path, engine } => {
            let dest = path.unwrap_or_else(|| PathBuf::from(&name));
            let engine = engine.unwrap_or_else(workspace);
            let engine = engine.canonicalize().unwrap_or(engine);
            let files = locus_server::scaffold::new_module(&name, &dest, &engine)?;
            say(&format!(
                "wrote the module project `{name}` in {} ({} files), on the engine at {}",
                dest.display(),
                files.len(),
                engine.display()
            ));
            say(&format!("  cd {} && cargo test", dest.display()));
            say("  locus serve --module-crate . --watch");
            Ok(())
        }
        Command::Snapshot { target } => admin(&target, |mut session| async move {
            match session.run(AdminCommand::Snapshot).await? {
                AdminReply::Snapshot { tick } => {
                    say(&format!("snapshot of tick {tick} written"));
                    Ok(())
                }
                AdminReply::Refused { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            }
        }),
    }
}

#[expect(clippy::print_stdout, reason = "the command's output for its user")]
fn say(text: &str) {
    println!("{text}");
}

fn print_line(line: &ModuleLogLine) {
    say(&format!(
        "tick {:>8}  {:<5}  {:<24}  {}",
        line.tick, line.level, line.reducer, line.message
    ));
}

/// Connect as the admin and run `f` on the session.
///
/// For a world split into regions (`--config`), `f` runs in each region in turn (the output of each under a
/// `== region NAME` line); the command fails if it failed in any region, naming them.
fn admin<F, Fut>(target: &Target, f: F) -> anyhow::Result<()>
where
    F: Fn(AdminSession) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let targets = target.resolve()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = Vec::new();
    for (region, target) in &targets {
        if let Some(name) = region {
            say(&format!("== region {name}"));
        }
        let done = rt.block_on(async {
            let session = AdminSession::connect(target)
                .await
                .with_context(|| format!("connecting to the world at {}", target.server))?;
            tokio::time::timeout(locus_server::admin_client::ANSWER_TIMEOUT, f(session))
                .await
                .unwrap_or_else(|_| bail!("no answer from the server"))
        });
        match (done, region) {
            (Ok(()), _) => {}
            (Err(e), None) => return Err(e),
            (Err(e), Some(name)) => {
                say(&format!("failed: {e:#}"));
                failed.push(name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed in region(s) {}", failed.join(", "));
    }
    Ok(())
}

/// The reducer budget chosen with `serve --reducer-time-limit MS` or `--reducer-fuel UNITS` (clap lets at most one
/// through), else the host's default (`HostConfig::default`: 100 ms).
fn budget(time_limit_ms: Option<u64>, fuel: Option<u64>) -> Budget {
    match (time_limit_ms, fuel) {
        (_, Some(fuel)) => Budget::Fuel(fuel),
        (Some(ms), None) => Budget::Time(Duration::from_millis(ms)),
        (None, None) => locus_host::HostConfig::default().budget,
    }
}

/// `locus cluster`: a NATS server with JetStream (unless one already listens at the layout's address) and one
/// `locus serve --region` child per region, until Ctrl-C (which reaches the children too) or until one of them
/// ends (then the others are stopped).
fn cluster(config: &Path, data_dir: &Path, module: Option<PathBuf>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let layout = locus_region::WorldLayout::from_toml(&text)
        .with_context(|| format!("the world layout in {}", config.display()))?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let module = match module {
        Some(path) => path,
        None => {
            let path = data_dir.join("demo-module.wasm");
            std::fs::write(&path, demo_module()?)
                .with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let nats_addr = layout
        .nats()
        .trim_start_matches("nats://")
        .parse::<SocketAddr>()
        .with_context(|| {
            format!(
                "`locus cluster` runs NATS on loopback: the layout's `nats` must be nats://IP:PORT, not {}",
                layout.nats()
            )
        })?;
    let _nats = if std::net::TcpStream::connect(nats_addr).is_ok() {
        say(&format!("NATS already listens at {nats_addr}: using it"));
        None
    } else {
        let server =
            locus_server::nats_server::NatsServer::start(&data_dir.join("nats"), nats_addr.port())
                .context("starting nats-server")?;
        say(&format!("NATS (JetStream) at {}", server.url()));
        Some(server)
    };
    let exe = std::env::current_exe().context("finding the locus binary")?;
    let mut children = Vec::new();
    for r in layout.regions() {
        let child = std::process::Command::new(&exe)
            .arg("serve")
            .args(["--region", &r.name, "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir.join(&r.name))
            .arg("--module")
            .arg(&module)
            .spawn()
            .with_context(|| format!("starting region {}", r.name))?;
        say(&format!(
            "region {} [{}, {}, {}, {}] on {}, pid {}",
            r.name,
            r.rect.min.x,
            r.rect.min.y,
            r.rect.max.x,
            r.rect.max.y,
            r.listen,
            child.id()
        ));
        children.push((r.name.clone(), child));
    }
    say("Press Ctrl-C to stop every region.");
    let ended = loop {
        if let Some(i) = children
            .iter_mut()
            .position(|(_, c)| c.try_wait().ok().flatten().is_some())
        {
            break i;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (name, mut first) = children.swap_remove(ended);
    let status = first.wait()?;
    // Ctrl-C reached every child (one process group): give them time to finish their ticks.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for (name, child) in &mut children {
        while child.try_wait()?.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if child.try_wait()?.is_none() {
            tracing::warn!(
                region = name,
                "still running: killing it (it recovers from its log)"
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    if !status.success() {
        bail!("region {name} ended: {status}");
    }
    say("every region stopped");
    Ok(())
}

/// Read the world's layout from `file` and find region `name` in it.
fn region_setup(name: &str, file: &Path) -> anyhow::Result<locus_server::region::RegionSetup> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let layout = locus_region::WorldLayout::from_toml(&text)
        .with_context(|| format!("the world layout in {}", file.display()))?;
    let Some(own) = layout.region_id(name) else {
        let names: Vec<&str> = layout.regions().iter().map(|r| r.name.as_str()).collect();
        bail!(
            "{} has no region `{name}`; its regions are: {}",
            file.display(),
            names.join(", ")
        );
    };
    Ok(locus_server::region::RegionSetup { layout, own })
}

/// The options of `locus serve`, as parsed.
struct Serve {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    region: Option<locus_server::region::RegionSetup>,
    module: Option<PathBuf>,
    module_crate: Option<PathBuf>,
    watch: bool,
    tick_rate: u16,
    metrics: Option<SocketAddr>,
    budget: Budget,
    workers: Option<u16>,
    byte_budget: Option<usize>,
    every_move: bool,
    datagrams: PositionDatagrams,
    web: Option<SocketAddr>,
    web_root: Option<PathBuf>,
    /// The browsers' certificate and key files.
    web_cert: Option<(PathBuf, PathBuf)>,
}

fn serve(options: Serve) -> anyhow::Result<()> {
    let Serve {
        data_dir,
        listen,
        region,
        module,
        module_crate,
        watch,
        tick_rate,
        metrics,
        budget,
        workers,
        byte_budget,
        every_move,
        datagrams,
        web,
        web_root,
        web_cert,
    } = options;
    let data_dir = data_dir.unwrap_or_else(|| match &region {
        Some(r) => PathBuf::from("locus-data").join(&r.layout.region(r.own).name),
        None => PathBuf::from("locus-data"),
    });
    let listen = listen.unwrap_or_else(|| match &region {
        Some(r) => r.layout.region(r.own).listen,
        None => SocketAddr::from(([127, 0, 0, 1], 7878)),
    });
    let published = data_dir.join(MODULE_FILE);
    // A module named on the command line is stored with the world (so a restart without `--module` runs it); the
    // demo module is not (a rebuilt demo runs on restart).
    let mut built = None;
    let (wasm, keep_module) = match (module, &module_crate) {
        (None, Some(dir)) => {
            let (path, wasm) = build_crate(dir)?;
            built = Some(path);
            (wasm, true)
        }
        (Some(path), _) => (
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            true,
        ),
        (None, None) if published.exists() => {
            tracing::info!(
                path = %published.display(),
                "running the module stored with this world"
            );
            let wasm = std::fs::read(&published)
                .with_context(|| format!("reading {}", published.display()))?;
            (wasm, true)
        }
        (None, None) => (demo_module()?, false),
    };
    let mut config = ServerConfig::new(wasm);
    config.data_dir = data_dir.clone();
    config.listen = listen;
    config.tick_rate = tick_rate;
    if let Some(n) = workers {
        config.workers = usize::from(n);
    }
    if let Some(bytes) = byte_budget {
        config.interest.byte_budget = (bytes > 0).then_some(bytes);
    }
    if every_move {
        config.move_rates = None;
    }
    config.limits.datagrams = datagrams;
    config.metrics = metrics;
    config.web = web;
    config.web_root = match (web, web_root) {
        (Some(_), None) => Some(demo_web_client()?),
        (_, root) => root,
    };
    if let Some((cert, key)) = web_cert {
        config.web_cert = WebCertSource::Files { cert, key };
    }
    config.keep_module = keep_module;
    config.host.budget = budget;
    if let Some(r) = &region {
        say(&format!(
            "region {} of world {} (NATS {})",
            r.layout.region(r.own).name,
            r.layout.world(),
            r.layout.nats()
        ));
    }
    config.region = region;
    let server = Server::start(config).context("starting the world")?;
    say("Locus world running");
    say(&format!("  listening on      {}", server.local_addr()));
    say(&format!("  data directory    {}", data_dir.display()));
    say(&format!(
        "  certificate       {}",
        server.cert_path().display()
    ));
    say(&format!(
        "  fingerprint       {}",
        cert::hex(&server.fingerprint())
    ));
    say(&format!(
        "  admin token       {}",
        server.admin_token_path().display()
    ));
    if let Some(addr) = server.metrics_addr() {
        say(&format!("  metrics           http://{addr}/metrics"));
    }
    if let Some(addr) = server.web_addr() {
        say(&format!("  web client        http://{addr}/"));
    }
    for hash in server.web_certificate_hashes() {
        say(&format!("  browsers' cert    sha-256 {}", cert::hex(&hash)));
    }
    say(&format!(
        "  recovered to tick {}",
        server.recovered_tick().0
    ));
    say("Press Ctrl-C to stop.");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // A failed commit log (a full disk, a read-only or failing data directory) stops the world: the process
        // ends too, with an error, so that the operator (or a supervisor that restarts it) sees it.
        let failed = async {
            while !server.has_failed() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let rebuild = async {
            match (module_crate.as_deref(), built) {
                (Some(dir), Some(wasm)) if watch => watch_and_publish(dir, wasm, &server).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
            () = failed => Ok("failed"),
            () = rebuild => Ok("unreachable"),
        }
    })?;
    if signal == "failed" {
        server.shutdown();
        anyhow::bail!(
            "the world stopped: its commit log failed (the error is logged above). Free the disk or fix the data \
             directory, then start it again: it recovers everything clients were told was done"
        );
    }
    tracing::info!(
        signal,
        "stopping: finishing the tick, making it durable, writing a snapshot"
    );
    let stopped = server.shutdown_gracefully(Duration::from_secs(10));
    match stopped {
        Ok(tick) => {
            tracing::info!(
                tick = tick.0,
                "stopped; the world is durable through this tick"
            );
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(e).context("the world did not stop cleanly")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_options_choose_the_hosts_budget() {
        let serve = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["locus", "serve"], args].concat())?;
            let Command::Serve {
                reducer_time_limit,
                reducer_fuel,
                ..
            } = cli.command
            else {
                unreachable!("a serve command")
            };
            Ok::<_, clap::Error>(budget(reducer_time_limit, reducer_fuel))
        };
        assert_eq!(
            serve(&[]).unwrap(),
            Budget::Time(Duration::from_millis(100))
        );
        assert_eq!(
            serve(&["--reducer-time-limit", "20"]).unwrap(),
            Budget::Time(Duration::from_millis(20))
        );
        assert_eq!(
            serve(&["--reducer-fuel", "5000000"]).unwrap(),
            Budget::Fuel(5_000_000)
        );
        for refused in [
            &["--reducer-time-limit", "20", "--reducer-fuel", "1"][..],
            &["--reducer-time-limit", "0"],
            &["--reducer-fuel", "0"],
        ] {
            assert!(serve(refused).is_err(), "{refused:?}");
        }
    }
}
