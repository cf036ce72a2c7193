//! The running server: the tick thread, the release thread and the network, started and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use locus_host::Module;
use locus_host::{CallContext, HostConfig, Runtime};
use locus_interest::InterestConfig;
use locus_log::storage::FsStorage;
use locus_log::{Durability, EncodedRecord, EncodedSnapshot, Log, LogConfig, Watermark};
use locus_protocol::{AdminCommand, AdminReply, CallOutcome, ErrorCode, Redirect, SessionLimits};
use locus_store::StoreConfig;
use locus_types::{Identity, Tick, Timestamp};
use thiserror::Error;

use crate::cert;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::net::{self, Inbox, Registry};
use crate::webcert::{WebCertSource, WebCerts};
use crate::world::{AdminFrom, Closing, Deferred, Input, MoveRates, SessionId, SessionIds, World};

/// Limits that keep one client from harming the others. Every default is stated on its field.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages a client may send per second, sustained. Default 200.
    pub messages_per_second: u32,
    /// Messages a client may send in a burst above the sustained rate. Default 400.
    pub burst: u32,
    /// Messages dropped for rate in a row after which the client is disconnected. Default 1,000.
    pub flood_disconnect: u32,
    /// Reducer calls of one client that may wait for one tick; more are refused with `Busy`. Default 64.
    pub calls_per_tick: u32,
    /// Inputs (all clients) the inbox holds before readers wait (backpressure). Default 65,536.
    pub inbox: usize,
    /// Batches of frames queued to one client before it counts as too slow and is disconnected. Default 256
    /// (over 12 s of ticks at 20 Hz).
    pub outbound: usize,
    /// Connected clients at most; more are refused. Default 20,000.
    pub max_clients: usize,
    /// Connections at most that are still in their handshake or have not sent their `Hello`, from all addresses;
    /// more are refused before their handshake (cheaply: no TLS). Bounds what a flood of handshakes that never
    /// say `Hello` can hold (about 50 KiB each). Default 4,096.
    pub max_pending: usize,
    /// The same, from one IP address: a flood from one address is refused at this many, without touching the
    /// others' share. Default 256 (a client is pending for one round trip and its `Hello`; many players behind
    /// one NAT connecting at once stay far below it).
    pub pending_per_ip: usize,
    /// A connection idle this long is closed (clients keep it alive every 2 s). Default 10 s.
    pub idle_timeout: Duration,
    /// Time a new connection has to open its stream and send `Hello`. Default 5 s.
    pub hello_timeout: Duration,
    /// When a version-4 session is sent walking rows' positions in QUIC datagrams. Default
    /// [`PositionDatagrams::OnLoss`].
    pub datagrams: PositionDatagrams,
    /// With [`PositionDatagrams::OnLoss`]: how long a connection must lose no packet before its positions go back
    /// on the stream. Default 10 s.
    pub loss_quiet: Duration,
}

/// When a version-4 session whose QUIC connection takes datagrams is sent the positions of walking rows in them
/// (`protocol.md` §5, "Version 4"). Datagrams are for a link that loses packets: there a position on the reliable
/// stream waits behind every lost packet until it is sent again, and a datagram waits for nothing. On a clean link
/// both arrive as fast, and a version-3 move on the stream is fewer bytes (a step from the position before, where a
/// place is absolute and its datagram has a header of its own): `benchmarks.md`, "Positions in datagrams".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PositionDatagrams {
    /// From the start of every such session.
    Always,
    /// While the session's connection loses packets: from the first packet QUIC declares lost until
    /// [`Limits::loss_quiet`] passes without another (looked at four times a second). Until then, and after,
    /// positions go on the stream as version 3's moves.
    #[default]
    OnLoss,
    /// Never: version 4 is then version 3.
    Never,
}

impl Limits {
    /// The rules each session enforces on its own input ([`locus_protocol::Session`]).
    pub(crate) fn session(&self) -> SessionLimits {
        SessionLimits {
            messages_per_second: self.messages_per_second,
            burst: self.burst,
            flood_disconnect: self.flood_disconnect,
            calls_per_tick: self.calls_per_tick,
            hello_timeout: self.hello_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_second: 200,
            burst: 400,
            flood_disconnect: 1_000,
            calls_per_tick: 64,
            inbox: 65_536,
            outbound: 256,
            max_clients: 20_000,
            max_pending: 4_096,
            pending_per_ip: 256,
            idle_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            datagrams: PositionDatagrams::OnLoss,
            loss_quiet: Duration::from_secs(10),
        }
    }
}

/// How to run a world. Every default is stated on its field.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The data directory: the commit log and snapshots (`log/`), the certificate and key, the admin token and the
    /// module ([`MODULE_FILE`]). Created if missing; if [`Server::start`] fails, a directory it created is removed
    /// again (a directory that existed keeps what it held). Default `locus-data`.
    pub data_dir: PathBuf,
    /// Where to listen. Default `127.0.0.1:7878` (loopback only).
    pub listen: SocketAddr,
    /// The module (WebAssembly bytes).
    pub module: Vec<u8>,
    /// Store [`module`](Self::module) in the data directory as [`MODULE_FILE`] (atomically, once it is known to run
    /// on the data, as a publish does), so that the world's module is kept with its data: `locus serve` without
    /// `--module` runs it on restart. Default `true`; `locus serve` turns it off for the demo module it builds
    /// itself, so that a rebuilt demo runs on restart.
    pub keep_module: bool,
    /// Ticks per second. Default 20.
    pub tick_rate: u16,
    /// Seed of reducers' RNGs (mixed with the tick and the call's position). Default `0x10c05`.
    pub seed: u64,
    /// Reducer time, fuel and memory limits. Default [`HostConfig::default`].
    pub host: HostConfig,
    /// Interest management. Default [`InterestConfig::default`].
    pub interest: InterestConfig,
    /// How often protocol-version-3 sessions get the moves of far rows ([`MoveRates`]; `None`: every tick).
    /// Default [`MoveRates::default`].
    pub move_rates: Option<MoveRates>,
    /// Commit log and snapshots. Default [`LogConfig::default`].
    pub log: LogConfig,
    /// Per-client limits. Default [`Limits::default`].
    pub limits: Limits,
    /// Serve Prometheus metrics over HTTP here (path `/metrics`; port 0 picks one, see
    /// [`Server::metrics_addr`]). Default: none.
    pub metrics: Option<SocketAddr>,
    /// The certificate browsers (WebTransport, ALPN `h3`) are given. Default
    /// [`WebCertSource::SelfSigned`]: made and rotated by the server, trusted by its published hashes
    /// ([`Server::web_certificate_hashes`]).
    pub web_cert: WebCertSource,
    /// Serve the web client over HTTP here: `locus.json` (where the WebTransport endpoint is and the hashes of its
    /// certificate) and the files of [`web_root`](Self::web_root) (port 0 picks one, see [`Server::web_addr`]).
    /// Default: none.
    pub web: Option<SocketAddr>,
    /// The directory of the web client's page, wasm and assets, served by [`web`](Self::web). Default: none
    /// (only `locus.json`).
    pub web_root: Option<PathBuf>,
    /// Worker threads for the per-client work of each tick (the interest stage's view updates and deltas, and the
    /// encoding of each client's frames); 1 runs it on the tick thread. The output does not depend on it. Default:
    /// the machine's cores ([`std::thread::available_parallelism`]).
    pub workers: usize,
    /// Run the world as one region of a larger one (`locus serve --region`): border traffic with the other
    /// regions over the layout's NATS server ([`crate::region`]). Default: none (the world is whole).
    pub region: Option<crate::region::RegionSetup>,
}

impl ServerConfig {
    /// The defaults, with `module` as the world's module.
    #[must_use]
    pub fn new(module: Vec<u8>) -> ServerConfig {
        ServerConfig {
            data_dir: PathBuf::from("locus-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            module,
            keep_module: true,
            tick_rate: 20,
            seed: 0x10c05,
            host: HostConfig::default(),
            interest: InterestConfig::default(),
            move_rates: Some(MoveRates::default()),
            log: LogConfig::default(),
            limits: Limits::default(),
            metrics: None,
            web_cert: WebCertSource::SelfSigned,
            web: None,
            web_root: None,
            workers: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            region: None,
        }
    }
}

/// Why the server did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The worker threads could not be started.
    #[error("cannot start the worker threads: {0}")]
    Workers(String),
    /// The world cannot be made a region ([`ServerConfig::region`]).
    #[error("cannot run the region: {0}")]
    Region(String),
    /// The commit log could not be opened or recovered.
    #[error("cannot recover the world: {0}")]
    Recover(#[from] locus_log::OpenError),
    /// The wasm engine could not start.
    #[error(transparent)]
    Runtime(#[from] locus_host::RuntimeError),
    /// The module is not valid.
    #[error("the module cannot be loaded: {0}")]
    Load(#[from] locus_host::LoadError),
    /// The module does not fit the recovered database (each incompatible change named), or cannot be
    /// instantiated.
    #[error("the module cannot run on this data directory: {0}")]
    Upgrade(#[from] locus_host::UpgradeError),
    /// The new world's first snapshot could not be written.
    #[error("cannot write the first snapshot: {0}")]
    Snapshot(#[from] locus_log::SnapshotError),
    /// The admin token could not be read or made.
    #[error("the admin token: {0}")]
    AdminToken(#[from] locus_client::TokenFileError),
    /// The browsers' certificate could not be made or loaded.
    #[error(transparent)]
    WebCert(#[from] crate::webcert::WebCertError),
    /// The certificate could not be loaded or made.
    #[error(transparent)]
    Cert(#[from] cert::CertError),
    /// The network could not start.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// TLS could not be set up with the certificate.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// A batch of frames for the release thread: sent once `tick` is durable.
#[derive(Debug)]
pub(crate) struct Release {
    pub(crate) tick: Tick,
    pub(crate) frames: Vec<(u32, Vec<u8>)>,
    /// Position datagrams, sent after the frames ([`crate::world::TickOutput::datagrams`]).
    pub(crate) datagrams: Vec<(u32, Vec<Vec<u8>>)>,
    /// Sessions to close for a fatal error, after their frames (each with its `Error` frame last).
    pub(crate) closes: Vec<Closing>,
    /// Operators' answers, given once `tick` is durable.
    pub(crate) replies: Vec<(mpsc::Sender<AdminReply>, AdminReply)>,
    /// Session ids to free once the frames are delivered ([`crate::world::TickOutput::freed`]).
    pub(crate) freed: Vec<SessionId>,
    /// A region's border messages for its neighbours, published once `tick` is durable.
    pub(crate) border: Vec<crate::region::Outgoing>,
}

/// What the server's own API asks the tick thread to do, at the next tick boundary.
#[derive(Debug)]
pub(crate) enum LocalRequest {
    /// An operator's command.
    Command(AdminCommand),
    /// A compiled module to publish, with its bytes.
    Publish(Box<Module>, Vec<u8>),
    /// Move a player's sessions to another region ([`Input::Redirect`]). It has no answer.
    Redirect(Identity, Box<Redirect>),
}

/// A [`LocalRequest`] with where to answer (once what it did is durable).
#[derive(Debug)]
pub(crate) struct AdminRequest {
    pub(crate) request: LocalRequest,
    /// `None` for a request without an answer ([`LocalRequest::Redirect`]).
    pub(crate) reply: Option<mpsc::Sender<AdminReply>>,
}

/// Why [`Server::redirect`] queued nothing.
#[derive(Debug, Error)]
pub enum RedirectError {
    /// The server has stopped (shut down, or its commit log failed).
    #[error("the server has stopped")]
    Stopped,
}

/// Why [`Server::admin_call`] has no outcome.
#[derive(Debug, Error)]
pub enum AdminCallError {
    /// The server stopped (shut down, or its commit log failed) before the call's tick was durable.
    #[error("the server stopped before the call was made durable")]
    Stopped,
}

/// Why [`Server::publish`] did not swap the module in. The old module keeps running in every case.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The bytes are not a valid module.
    #[error("the module cannot be loaded: {0}")]
    Load(#[from] locus_host::LoadError),
    /// The server refused it (an incompatible schema, each change named; or the data did not migrate).
    #[error("{0}")]
    Refused(String),
    /// The server stopped first.
    #[error("the server stopped before the module was published")]
    Stopped,
}

/// A running world. Dropping it stops it (see [`Server::shutdown`]).
pub struct Server {
    addr: SocketAddr,
    fingerprint: [u8; 32],
    cert_path: PathBuf,
    recovered_tick: Tick,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    tick_thread: Option<JoinHandle<Result<Tick, String>>>,
    release_thread: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    endpoint: quinn::Endpoint,
    admin: mpsc::Sender<AdminRequest>,
    runtime_host: Runtime,
    admin_token_path: PathBuf,
    registry: Registry,
    metrics_addr: Option<SocketAddr>,
    web_certs: Arc<RwLock<WebCerts>>,
    web_addr: Option<SocketAddr>,
    session_ids: Arc<Mutex<SessionIds>>,
    region_metrics: Option<Arc<crate::region::RegionMetrics>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn now_timestamp() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Timestamp(micros)
}

impl Server {
    /// Recover (or create) the world in `config.data_dir`, load the module, and start ticking and listening.
    ///
    /// A new world runs the module's `init` reducer and writes its first snapshot before it accepts anyone. The
    /// module is stored in the data directory ([`ServerConfig::keep_module`]) once it is known to fit the data.
    ///
    /// # Errors
    ///
    /// A [`StartError`]; nothing keeps running then, and a data directory this call created (with any missing
    /// parents) is removed again. A module that does not load is refused before anything is created.
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        // The outermost directory of `data_dir` that does not exist yet: what this start creates.
        let created = config
            .data_dir
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .last()
            .map(std::path::Path::to_owned);
        let started = Server::start_in(config);
        if started.is_err()
            && let Some(dir) = created
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(%e, dir = %dir.display(), "cannot remove the data directory of a failed start");
        }
        started
    }

    fn start_in(config: ServerConfig) -> Result<Server, StartError> {
        let host = Runtime::new(config.host)?;
        let module = host.load(&config.module)?;
        let data_dir = |source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(data_dir)?;
        let storage = FsStorage::open(config.data_dir.join("log")).map_err(data_dir)?;
        let (mut log, recovered) =
            Log::open(Arc::new(storage), config.log, StoreConfig::default())?;
        for warning in &recovered.warnings {
            tracing::warn!(%warning, "recovery");
        }
        let is_new = recovered.is_new();
        let recovered_tick = recovered.tick;
        let mut db = recovered.db;
        // A module of another version than the data's brings it over here, as a publish would: its upgrade reducer
        // runs (as the server, at the recovered tick) and its failure refuses the start.
        let upgrade_ctx = CallContext::server(recovered_tick, now_timestamp(), config.seed);
        let (mut instance, plan) = module.instantiate_upgrading(&mut db, &upgrade_ctx)?;
        // Before the migrated data's snapshot, as a publish does: recovery never meets new-schema data with only
        // the old module stored.
        if config.keep_module
            && std::fs::read(config.data_dir.join(MODULE_FILE))
                .ok()
                .as_deref()
                != Some(config.module.as_slice())
        {
            store_module(&config.data_dir, &config.module).map_err(data_dir)?;
        }
        if !is_new && !plan.is_empty() {
            let changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
            tracing::info!(
                ?changes,
                "the module's schema or version differs from the data's: migrated"
            );
            log.snapshot(&EncodedSnapshot::new(recovered_tick, &db))?;
        }
        // A region gives out keys from its own range (rows keep their keys when they move between regions). Its
        // system tables come before a new world's `init`: they tell the module which part of the world it serves
        // (`ctx.region()`), which is what `init` generates.
        if let Some(region) = &config.region {
            let reserved = crate::border::reserve_region_keys(&mut db, region.own);
            let created = crate::handoff::ensure_tables(&mut db, &region.layout, region.own)
                .map_err(|e| StartError::Region(format!("the region's system tables: {e}")))?;
            if !is_new && (created || !reserved.is_empty()) {
                log.snapshot(&EncodedSnapshot::new(recovered_tick, &db))?;
            }
        }
        let mut init_failed = None;
        if is_new {
            let now = now_timestamp();
            let ctx = CallContext::server(Tick(0), now, config.seed);
            if let Err(e) = instance.init(&mut db, &ctx) {
                tracing::warn!("the init reducer failed; the world starts without its writes");
                init_failed = Some((e, now));
            }
            log.snapshot(&EncodedSnapshot::new(Tick(0), &db))?;
        } else {
            tracing::info!(
                tick = recovered.tick.0,
                transactions = recovered.transactions,
                "recovered the world"
            );
        }
        let durability = Durability::start(log);
        let mut world = World::new(db, instance, config.interest, config.tick_rate, config.seed);
        world.set_move_rates(config.move_rates);
        if config.workers > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(config.workers)
                .thread_name(|i| format!("locus-worker-{i}"))
                .build()
                .map_err(|e| StartError::Workers(e.to_string()))?;
            world.set_pool(std::sync::Arc::new(pool));
        }
        if let Some((e, now)) = init_failed {
            world.server_reducer_failed(&e, Tick(0), now);
        }
        let identity = cert::load_or_create(&config.data_dir)?;
        let web_certs = Arc::new(RwLock::new(WebCerts::new(
            &config.web_cert,
            SystemTime::now(),
            &rustls::crypto::ring::default_provider(),
        )?));
        let admin_token = crate::identity::load_or_create_admin_token(&config.data_dir)?;
        world.set_admin(crate::identity::identity_of(&admin_token));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("locus-net")
            .enable_all()
            .build()
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let metrics = Arc::new(Metrics::default());
        let registry: Registry = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let session_ids = Arc::new(Mutex::new(SessionIds::default()));
        let (inbox_tx, inbox_rx) = tokio::sync::mpsc::channel::<Input>(config.limits.inbox);
        let region_inbox = inbox_tx.clone();
        let ticks_started = Arc::new(AtomicU64::new(0));
        let endpoint = {
            let _guard = runtime.enter();
            net::listen(
                config.listen,
                &identity,
                web_certs.clone(),
                config.limits,
                Inbox {
                    tx: inbox_tx,
                    ticks: ticks_started.clone(),
                    admin: crate::identity::identity_of(&admin_token),
                    runtime: host.clone(),
                    ids: session_ids.clone(),
                },
                registry.clone(),
                metrics.clone(),
            )?
        };
        let addr = endpoint.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let region_metrics = Arc::new(crate::region::RegionMetrics::default());
        let (region_link, region_out) = match &config.region {
            Some(setup) => {
                let here = locus_protocol::Redirect {
                    region: setup.layout.region(setup.own).name.clone(),
                    addr: addr.to_string(),
                    fingerprint: identity.fingerprint(),
                    web: None,
                };
                let (link, out) = crate::region::start(
                    setup,
                    &mut world,
                    &runtime,
                    region_inbox,
                    region_metrics.clone(),
                    here,
                );
                (Some(link), Some(out))
            }
            None => (None, None),
        };

        let metrics_addr = match config.metrics {
            None => None,
            Some(addr) => {
                let (listener, local) = crate::http::bind(addr, &runtime)
                    .map_err(|source| StartError::Listen { addr, source })?;
                let exporter = Arc::new(crate::prometheus::Exporter {
                    metrics: metrics.clone(),
                    watermark: durability.watermark(),
                });
                runtime.spawn(crate::http::serve(listener, move |req| {
                    std::future::ready(exporter.respond(&req))
                }));
                Some(local)
            }
        };
        let web_addr = match config.web {
            None => None,
            Some(at) => {
                let (listener, local) = crate::http::bind(at, &runtime)
                    .map_err(|source| StartError::Listen { addr: at, source })?;
                let site = Arc::new(crate::web::Site {
                    certs: web_certs.clone(),
                    quic_port: addr.port(),
                    root: config.web_root.clone(),
                });
                runtime.spawn(crate::http::serve(listener, move |req| {
                    let site = site.clone();
                    async move { site.respond(req).await }
                }));
                Some(local)
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = mpsc::channel::<Release>();
        let (admin_tx, admin_rx) = mpsc::channel::<AdminRequest>();
        let watermark = durability.watermark();
        let release_thread = {
            let registry = registry.clone();
            let metrics = metrics.clone();
            let session_ids = session_ids.clone();
            std::thread::Builder::new()
                .name("locus-release".into())
                .spawn(move || {
                    release_loop(
                        &release_rx,
                        &watermark,
                        &registry,
                        &metrics,
                        &session_ids,
                        region_out.as_ref(),
                    )
                })
                .expect("spawn the release thread")
        };
        let tick_thread = {
            let stop = stop.clone();
            let metrics = metrics.clone();
            let ticker = Ticker {
                world,
                durability: Some(durability),
                inbox: inbox_rx,
                admin: admin_rx,
                admin_ids: 0,
                data_dir: config.data_dir.clone(),
                tick_rate: config.tick_rate,
                release: release_tx,
                period: Duration::from_secs_f64(1.0 / f64::from(config.tick_rate.max(1))),
                next_tick: Tick(recovered_tick.0 + 1),
                region: region_link,
                border_pending: Vec::new(),
                stop,
                metrics,
                ticks_started,
            };
            std::thread::Builder::new()
                .name("locus-tick".into())
                .spawn(move || ticker.run())
                .expect("spawn the tick thread")
        };
        Ok(Server {
            addr,
            fingerprint: identity.fingerprint(),
            cert_path: identity.cert_path,
            recovered_tick,
            stop,
            metrics,
            tick_thread: Some(tick_thread),
            release_thread: Some(release_thread),
            runtime: Some(runtime),
            endpoint,
            admin: admin_tx,
            runtime_host: host,
            registry,
            metrics_addr,
            web_certs,
            web_addr,
            admin_token_path: config.data_dir.join(crate::identity::ADMIN_TOKEN_FILE),
            session_ids,
            region_metrics: config.region.is_some().then_some(region_metrics),
        })
    }

    /// The border traffic of a region ([`ServerConfig::region`]) so far; `None` for a whole world.
    #[must_use]
    pub fn region_stats(&self) -> Option<crate::region::RegionStats> {
        self.region_metrics.as_ref().map(|m| m.stats())
    }

    /// The SHA-256 hashes of the browsers' certificates a page passes as `serverCertificateHashes` (the served one
    /// first; two while a rotation overlaps; none with [`WebCertSource::Files`]).
    #[must_use]
    pub fn web_certificate_hashes(&self) -> Vec<[u8; 32]> {
        self.web_certs
            .read()
            .expect("web certificates lock")
            .hashes()
    }

    /// Where the web client is served ([`ServerConfig::web`]), if it is.
    #[must_use]
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of its certificate (what clients pin).
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Where its certificate is.
    #[must_use]
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// The tick recovery ended at (0 for a new world).
    #[must_use]
    pub fn recovered_tick(&self) -> Tick {
        self.recovered_tick
    }

    /// Current counters and recent percentiles.
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Start the recent-tick percentiles of [`Server::metrics`] (tick time, start jitter) afresh: a load test calls
    /// it when its measurement starts, so that they cover what it measures and not the joining before it.
    pub fn clear_recent_ticks(&self) {
        self.metrics.clear_recent();
    }

    /// Run a reducer as the server itself ([`locus_types::Identity::SERVER`], the sender admin-only reducers
    /// accept) in the next tick, in its own transaction like a client's call. Blocks until that tick is durable,
    /// then returns the outcome (an `Err` outcome wrote nothing).
    ///
    /// # Errors
    ///
    /// [`AdminCallError::Stopped`] if the server stops first.
    pub fn admin_call(
        &self,
        call: &locus_module::ReducerCall,
    ) -> Result<CallOutcome, AdminCallError> {
        self.admin_call_raw(call.reducer, &call.args)
    }

    /// [`Server::admin_call`] by name with MessagePack arguments.
    ///
    /// # Errors
    ///
    /// [`AdminCallError::Stopped`] if the server stops first.
    pub fn admin_call_raw(
        &self,
        reducer: &str,
        args: &[u8],
    ) -> Result<CallOutcome, AdminCallError> {
        match self.local(LocalRequest::Command(AdminCommand::Call {
            reducer: reducer.to_owned(),
            args: args.to_vec(),
        })) {
            Some(AdminReply::Called { outcome, .. }) => Ok(outcome),
            _ => Err(AdminCallError::Stopped),
        }
    }

    /// Run an operator's command (as `locus call`, `query`, `logs` or `snapshot` would; a `Publish` goes through
    /// [`Server::publish`]) at the next tick boundary, and wait for its answer. `None` if the server stopped first.
    #[must_use]
    pub fn admin(&self, command: AdminCommand) -> Option<AdminReply> {
        match command {
            AdminCommand::Publish { wasm } => Some(match self.publish(&wasm) {
                Ok(changes) => AdminReply::Published { tick: 0, changes },
                Err(e) => AdminReply::Refused {
                    message: e.to_string(),
                },
            }),
            command => self.local(LocalRequest::Command(command)),
        }
    }

    /// Replace the running module with `wasm` at a tick boundary (see `engine/docs/operations.md`): compile it
    /// (on this thread), plan the schema change, migrate a copy of the data, store the module and a snapshot,
    /// then swap. Returns the changes made. Clients stay connected and get the new schema.
    ///
    /// # Errors
    ///
    /// A [`PublishError`]; the old module keeps running.
    pub fn publish(&self, wasm: &[u8]) -> Result<Vec<String>, PublishError> {
        let module = self.runtime_host.load(wasm)?;
        match self.local(LocalRequest::Publish(Box::new(module), wasm.to_vec())) {
            Some(AdminReply::Published { changes, .. }) => Ok(changes),
            Some(AdminReply::Refused { message }) => Err(PublishError::Refused(message)),
            _ => Err(PublishError::Stopped),
        }
    }

    /// The file holding the operator's token (created at first start; see
    /// [`crate::identity::ADMIN_TOKEN_FILE`]).
    #[must_use]
    pub fn admin_token_path(&self) -> &std::path::Path {
        &self.admin_token_path
    }

    /// Move the player of `identity` to another region, at the next tick boundary ([`Input::Redirect`]): every
    /// session of the identity (none of the admin's) is sent `to` after its other frames of that tick, once the
    /// tick is durable, and is then closed with [`locus_protocol::CLOSE_REDIRECTED`]; its client reconnects to
    /// `to.addr` with the same token (`engine/docs/protocol.md` §5, "Version 5: redirects"). Those sessions'
    /// later inputs are dropped, and their end runs no `client_disconnected` (the player moved, it did not leave).
    /// Returns once the request is queued, without waiting for the tick. For the region shell, once the player's
    /// rows moved to the target region, and for tests.
    ///
    /// # Errors
    ///
    /// [`RedirectError::Stopped`] if the server has stopped.
    pub fn redirect(&self, identity: Identity, to: Redirect) -> Result<(), RedirectError> {
        self.admin
            .send(AdminRequest {
                request: LocalRequest::Redirect(identity, Box::new(to)),
                reply: None,
            })
            .map_err(|_| RedirectError::Stopped)
    }

    fn local(&self, request: LocalRequest) -> Option<AdminReply> {
        let (reply, answer) = mpsc::channel();
        self.admin
            .send(AdminRequest {
                request,
                reply: Some(reply),
            })
            .ok()?;
        answer.recv().ok()
    }

    /// Where Prometheus metrics are served (`http://ADDR/metrics`), if configured.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// One past the highest session id in use (or waiting to be freed after its session ended): the most client
    /// slots the interest stage walks each tick. Ids are reused lowest first ([`crate::world::SessionId`]), so
    /// this follows the peak of sessions connected at once, not the connections ever made.
    #[must_use]
    pub fn session_slots(&self) -> usize {
        self.session_ids.lock().expect("session ids lock").span()
    }

    /// Whether the world stopped on its own (a failed disk: nothing more can be made durable).
    #[must_use]
    pub fn has_failed(&self) -> bool {
        self.metrics.failed.load(Ordering::Relaxed)
    }

    /// Stop; see [`Server::shutdown_gracefully`].
    pub fn shutdown(mut self) {
        let _ = self.stop_all(Duration::from_secs(2));
    }

    /// Stop gracefully: finish the current tick, make everything durable and write a snapshot of the last tick,
    /// send every client its last frames and a `ShuttingDown` error, close the connections (QUIC code 1) and wait
    /// up to `linger` for them to be acknowledged. Returns the last durable tick.
    ///
    /// # Errors
    ///
    /// A [`ShutdownError`] if the commit log had failed (what was acknowledged to clients is still durable:
    /// nothing is acknowledged before it is).
    pub fn shutdown_gracefully(mut self, linger: Duration) -> Result<Tick, ShutdownError> {
        self.stop_all(linger)
    }

    fn stop_all(&mut self, linger: Duration) -> Result<Tick, ShutdownError> {
        self.stop.store(true, Ordering::SeqCst);
        let result = match self.tick_thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(tick))) => Ok(tick),
            Some(Ok(Err(e))) => Err(ShutdownError::Log(e)),
            Some(Err(_)) => Err(ShutdownError::Log("the tick thread panicked".into())),
            None => Err(ShutdownError::Stopped),
        };
        if let Some(t) = self.release_thread.take() {
            let _ = t.join();
        }
        if let Some(rt) = self.runtime.take() {
            net::close_all(
                &self.registry,
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            );
            let endpoint = self.endpoint.clone();
            rt.block_on(async move {
                // Writers send the final frames, then close; wait for the peers to acknowledge.
                let _ = tokio::time::timeout(linger, async {
                    while !self.registry.lock().expect("registry lock").is_empty()
                        && endpoint.open_connections() > 0
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await;
                endpoint.close(net::CLOSE_SHUTDOWN.into(), b"the server is shutting down");
                let _ = tokio::time::timeout(linger, endpoint.wait_idle()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        result
    }
}

/// Why a shutdown was not clean.
#[derive(Debug, Error)]
pub enum ShutdownError {
    /// The commit log had failed; the world stopped at its last durable tick.
    #[error("the commit log failed: {0}")]
    Log(String),
    /// It was already stopped.
    #[error("already stopped")]
    Stopped,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.tick_thread.is_some() {
            let _ = self.stop_all(Duration::from_secs(2));
        }
    }
}

struct Ticker {
    world: World,
    durability: Option<Durability>,
    inbox: tokio::sync::mpsc::Receiver<Input>,
    admin: mpsc::Receiver<AdminRequest>,
    admin_ids: u64,
    data_dir: PathBuf,
    tick_rate: u16,
    release: mpsc::Sender<Release>,
    period: Duration,
    next_tick: Tick,
    /// A region's border traffic ([`ServerConfig::region`]).
    region: Option<crate::region::RegionLink>,
    /// Border messages made between ticks (after a publish), sent with the next tick's.
    border_pending: Vec<crate::region::Outgoing>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    ticks_started: Arc<AtomicU64>,
}

impl Ticker {
    /// The tick loop: tick `n` (counted from the loop's start) begins at `t0 + n · period`. A tick that starts
    /// more than a period late skips the missed slots instead of running them back to back (no spiral).
    /// Returns the last tick made durable when stopped (after a final snapshot), or why the log failed.
    fn run(mut self) -> Result<Tick, String> {
        let t0 = Instant::now();
        let mut n: u64 = 0;
        let mut inputs = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let mut deadline = t0 + self.period.mul_f64(n as f64);
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
            }
            let started = Instant::now();
            let late = started.saturating_duration_since(deadline);
            if late > self.period {
                let skipped = (late.as_secs_f64() / self.period.as_secs_f64()) as u64;
                n += skipped;
                deadline = t0 + self.period.mul_f64(n as f64);
                self.metrics.overrun(skipped);
                tracing::warn!(skipped, late_ms = late.as_secs_f64() * 1e3, "tick overrun");
            }
            let jitter = started.saturating_duration_since(deadline);
            let tick = self.next_tick;
            self.ticks_started.store(tick.0, Ordering::Release);
            inputs.clear();
            while let Ok(input) = self.inbox.try_recv() {
                inputs.push(input);
            }
            let mut waiting = Vec::new();
            while let Ok(AdminRequest { request, reply }) = self.admin.try_recv() {
                self.admin_ids += 1;
                let from = AdminFrom::Local(self.admin_ids);
                inputs.push(match request {
                    LocalRequest::Command(command) => Input::Admin { from, command },
                    LocalRequest::Publish(module, wasm) => Input::Publish { from, module, wasm },
                    LocalRequest::Redirect(identity, to) => Input::Redirect { identity, to: *to },
                });
                if let Some(reply) = reply {
                    waiting.push((self.admin_ids, reply));
                }
            }
            let out = self.world.run_tick(
                tick,
                now_timestamp(),
                self.period.as_secs_f32(),
                inputs.drain(..),
            );
            if !self.make_durable(out.record, tick) {
                break;
            }
            let frames = out.frames;
            let mut border = std::mem::take(&mut self.border_pending);
            if let Some(r) = &mut self.region {
                border.extend(r.after_tick(&self.world, out.border, out.transmits, out.acks));
            }
            self.metrics.reducer_calls(&out.calls);
            self.metrics.server_failures(&out.server_failures);
            if tick.0.is_multiple_of(u64::from(self.tick_rate.max(1))) {
                let rows = self
                    .world
                    .db()
                    .tables()
                    .map(|t| (t.name().to_owned(), t.len() as u64))
                    .collect();
                *self.metrics.table_rows.lock().expect("metrics lock") = rows;
            }
            let replies = out
                .admin
                .into_iter()
                .filter_map(|(id, answer)| Some((take_waiting(&mut waiting, id)?, answer)))
                .collect();
            self.metrics.tick_done(
                tick,
                jitter,
                started.elapsed(),
                &out.stats,
                self.world.session_count(),
            );
            if self
                .release
                .send(Release {
                    tick,
                    frames,
                    datagrams: out.datagrams,
                    closes: out.closes,
                    replies,
                    freed: out.freed,
                    border,
                })
                .is_err()
            {
                break;
            }
            for job in out.deferred {
                if !self.deferred(job, tick, &mut waiting) {
                    break;
                }
            }
            self.next_tick = Tick(tick.0 + 1);
            n += 1;
        }
        // Drain: what was accepted becomes durable before the threads end, and a snapshot of the last tick makes
        // the next start quick.
        let last = Tick(self.next_tick.0 - 1);
        let Some(mut d) = self.durability.take() else {
            return Err("the commit log had failed".into());
        };
        if !self.metrics.failed.load(Ordering::SeqCst)
            && let Err(e) = d.snapshot_frozen(last, self.world.db().freeze())
        {
            tracing::error!(%e, "the final snapshot could not be handed over");
        }
        match d.shutdown() {
            Ok(_) if self.metrics.failed.load(Ordering::SeqCst) => {
                Err("the commit log had failed".into())
            }
            Ok(_) => Ok(last),
            Err(e) => {
                tracing::error!(%e, "the commit log failed while shutting down");
                Err(e.to_string())
            }
        }
    }

    /// Do what the tick left to the shell (after its record was handed over). False once the log has failed.
    fn deferred(
        &mut self,
        job: Deferred,
        tick: Tick,
        waiting: &mut Vec<(u64, mpsc::Sender<AdminReply>)>,
    ) -> bool {
        let (from, reply) = match job {
            Deferred::Snapshot(from) => {
                let reply = match self.snapshot_now(tick, None) {
                    Ok(()) => AdminReply::Snapshot { tick: tick.0 },
                    Err(message) => AdminReply::Refused { message },
                };
                (from, reply)
            }
            Deferred::Publish { from, module, wasm } => (from, self.publish(tick, &module, &wasm)),
        };
        if let Some((id, reply)) = self.world.reply(from, reply)
            && let Some(sender) = take_waiting(waiting, id)
        {
            let _ = sender.send(reply);
        }
        !self.metrics.failed.load(Ordering::SeqCst)
    }

    /// Write `snapshot` (or one of the world's database at `tick`, encoded on the durability thread) and wait until
    /// it is durable.
    fn snapshot_now(
        &mut self,
        tick: Tick,
        snapshot: Option<EncodedSnapshot>,
    ) -> Result<(), String> {
        let Some(d) = self.durability.as_mut() else {
            return Err("the commit log is closed".into());
        };
        let handed = match snapshot {
            Some(snapshot) => d.snapshot(snapshot),
            None => d.snapshot_frozen(tick, self.world.db().freeze()),
        };
        if let Err(e) = handed {
            self.metrics.failed.store(true, Ordering::SeqCst);
            return Err(format!("the commit log failed: {e}"));
        }
        if let Err(e) = d.flush() {
            self.metrics.failed.store(true, Ordering::SeqCst);
            return Err(format!("the commit log failed: {e}"));
        }
        match d.snapshot_failure() {
            Some(e) => Err(format!("the snapshot was not written: {e}")),
            None => Ok(()),
        }
    }

    /// Upgrade to `module`: plan and migrate the changed tables aside (the world untouched on failure), swap them in
    /// and run the module's upgrade reducer if the data is at another module version (refused, with the world as it
    /// was, if it fails), store the module's bytes as `module.wasm` in the data directory, write a snapshot of the
    /// upgraded data at `tick` and wait for it, then swap the new instance in. If the module cannot be stored or the
    /// snapshot fails, the upgrade is reverted and the old module keeps running. The snapshot comes before any
    /// record in the new schema, so recovery never replays new rows into old tables, and it holds the upgrade
    /// reducer's writes with the new version, or the restart runs the reducer again.
    fn publish(&mut self, tick: Tick, module: &Module, wasm: &[u8]) -> AdminReply {
        let refused = |message: String| AdminReply::Refused { message };
        let upgrade = match self.world.upgrade(module) {
            Ok(u) => u,
            Err(e) => return refused(e.to_string()),
        };
        let applied = match self.world.apply_upgrade(upgrade, tick, now_timestamp()) {
            Ok(applied) => applied,
            Err(e) => return refused(e.to_string()),
        };
        if let Err(e) = store_module(&self.data_dir, wasm) {
            self.world.revert_upgrade(applied);
            return refused(format!("cannot store the module: {e}"));
        }
        if let Err(e) = self.snapshot_now(tick, None) {
            self.world.revert_upgrade(applied);
            tracing::error!(%e, "the upgraded world's snapshot failed; the old module keeps running");
            return refused(e);
        }
        let changes: Vec<String> = applied
            .plan
            .changes
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(tick = tick.0, ?changes, "published a new module");
        self.world.swap(applied, tick);
        if let Some(r) = &mut self.region {
            // Tables the new module added give out keys from the region's range too (logged with the next tick).
            self.world.reserve_region_keys();
            let wholes = r.after_publish(&self.world);
            self.border_pending.extend(wholes);
        }
        AdminReply::Published {
            tick: tick.0,
            changes,
        }
    }

    /// Hand the record to the durability thread, and write a snapshot when one is due. False once the log has
    /// failed: the world stops, since nothing more could be made durable.
    fn make_durable(&mut self, record: EncodedRecord, tick: Tick) -> bool {
        let Some(d) = self.durability.as_mut() else {
            return false;
        };
        if let Err(e) = d.append(record) {
            tracing::error!(%e, "the commit log failed; the world stops");
            self.metrics.failed.store(true, Ordering::SeqCst);
            return false;
        }
        if d.snapshot_due(tick) {
            // Only the images are taken here; the durability thread encodes and writes them.
            if let Err(e) = d.snapshot_frozen(tick, self.world.db().freeze()) {
                tracing::error!(%e, "a snapshot failed; the world stops");
                self.metrics.failed.store(true, Ordering::SeqCst);
                return false;
            }
        }
        true
    }
}

fn take_waiting(
    waiting: &mut Vec<(u64, mpsc::Sender<AdminReply>)>,
    id: u64,
) -> Option<mpsc::Sender<AdminReply>> {
    let at = waiting.iter().position(|(w, _)| *w == id)?;
    Some(waiting.swap_remove(at).1)
}

/// What clients are told when the commit log fails and the world stops: why, without the server's paths, and that
/// nothing they were told was done is lost (the operator's log has the whole error).
fn stopped_message(e: &locus_log::DurabilityError) -> String {
    let text = e.to_string();
    let why = if text.contains("disk full") {
        "the server's disk is full"
    } else if text.contains("Read-only file system") {
        "the server's data directory is read-only"
    } else {
        "the server could not write its commit log"
    };
    format!("the world stopped: {why}; everything you were told was done is saved")
}

/// The file in a data directory holding the last published module, which `locus serve` runs on restart.
pub const MODULE_FILE: &str = "module.wasm";

/// Store `wasm` as [`MODULE_FILE`] in `data_dir`, atomically ([`locus_client::token_file::write_atomic`]: a
/// temporary file, synced, renamed over the old one, and the directory synced).
fn store_module(data_dir: &std::path::Path, wasm: &[u8]) -> std::io::Result<()> {
    locus_client::token_file::write_atomic(&data_dir.join(MODULE_FILE), wasm, false)
}

/// Send each tick's frames once the tick is durable ("confirmed reads"), in tick order.
fn release_loop(
    rx: &mpsc::Receiver<Release>,
    watermark: &Watermark,
    registry: &Registry,
    metrics: &Metrics,
    ids: &Mutex<SessionIds>,
    region: Option<&crate::region::RegionOut>,
) {
    while let Ok(release) = rx.recv() {
        loop {
            match watermark.wait_for(release.tick, Duration::from_millis(200)) {
                Ok(true) => break,
                // While stopping too: the tick thread makes everything it handed over durable before it ends.
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(%e, "the commit log failed: closing every connection");
                    metrics.failed.store(true, Ordering::SeqCst);
                    net::close_all(registry, ErrorCode::Internal, &stopped_message(&e));
                    return;
                }
            }
        }
        net::deliver(registry, release.frames, release.datagrams, metrics);
        net::close_after(registry, release.closes);
        if let Some(r) = region {
            r.send(release.border);
        }
        for (reply, answer) in release.replies {
            // The operator may have given up waiting.
            let _ = reply.send(answer);
        }
        // Last: every frame made for these sessions has now been handed over, so their ids may be reused.
        let mut ids = ids.lock().expect("session ids lock");
        for session in release.freed {
            if !ids.release(session) {
                tracing::error!(session, "a session id was freed twice");
            }
        }
    }
}
