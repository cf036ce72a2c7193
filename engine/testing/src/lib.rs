//! Test a Locus module as it runs: built to wasm by cargo, run by the engine's host (real wasmtime, real
//! transactions), in a fresh world per test with a manual clock, and with clients that see the world through the
//! engine's real interest stage, exactly as the server feeds it.
//!
//! ```no_run
//! use locus_testing::{World, module};
//!
//! // Build this crate to wasm (once per test process) and load it.
//! let mut world = World::new(module(env!("CARGO_MANIFEST_DIR")));
//! let ada = world.connect(1); // `client_connected` runs for identity [1; 32]
//! world.call(ada, locus_testing::ReducerCall::new("set_name", vec![0x91, 0xa3, b'A', b'd', b'a'])).unwrap();
//! world.step(20); // a second of ticks at 20 Hz
//! assert_eq!(world.count("player"), 1);
//! ```
//!
//! A module crate's reducers give typed calls (`my_module::set_name::call("Ada".into())`), which is what tests
//! pass to [`World::call`]; its row types deserialize the rows [`World::rows`] and [`World::seen`] return.
//!
//! # What it does as the server does, and what it does not
//!
//! - **Calls** run in their own transaction, as on the server: an `Err`, a panic, a trap or a budget overrun rolls
//!   back everything the reducer wrote. [`World::call`] returns the reducer's own `Err` message; any other failure
//!   (a panic, a trap, an unknown reducer, bad arguments) fails the test with the host's message, which for a panic
//!   is the panic's message and `file:line`.
//! - **Ticks**: [`World::step`] runs the module's tick reducer, then every scheduled reducer that is due, as the
//!   server's tick does. The clock moves only when the test says so: tick `n` runs at `start + n · dt`.
//! - **Clients**: [`World::connect`] runs `client_connected`, [`World::disconnect`] `client_disconnected`.
//!   [`World::watch`] makes a connected identity a client of the interest stage for some tables, with the area of
//!   interest the module set for it; after every step, [`World::seen`] is what that client was sent and not told
//!   to drop. Ownership, privacy and the area are the engine's own rules, not the harness's.
//! - **Regions**: [`World::new_region`] makes a new world that is one region of a world split into regions, with
//!   the server's system tables made before `init` as the server makes them ([`World::split_into_regions`]
//!   splits an existing world), so reducers know their region (`ctx.region()`) and their calls to other regions
//!   (`ctx.send_to_region`, `ctx.send_to_all_regions`) are written to its outbox instead of failing. The test is the network:
//!   [`World::take_region_calls`] takes what was sent, [`World::deliver`] runs a call in the world it is given (the
//!   receiving region, or the sending one for a call to itself or to every region), as the receiving server runs it.
//! - **Not here**: the network, sessions, frames, rate limits, the commit log and recovery, and the admin
//!   commands. `locus_server::testing::TestWorld` drives the whole world loop over fake sessions for those.
//! - **Logs**: whatever the module logs is printed (to the test's captured output, shown when a test fails) with
//!   its reducer and tick.
//!
//! # Building the module
//!
//! [`load`] and [`module`] build the crate with cargo for `wasm32-unknown-unknown` (installing the target with
//! rustup if it is missing) into `wasm-modules` in the workspace's target directory (`$CARGO_TARGET_DIR` when
//! set): not the target directory cargo test itself holds locked. A first build compiles the module's
//! dependencies for wasm and says so on stderr; later ones take about a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use locus_host::{CallContext, Hosted, Runtime, build};
use locus_interest::{Area, Center, ClientId, Filter, Interest};
use locus_region::message::{
    OUTBOX_TABLE, REGIONS_TABLE, RegionMessage, outbox_table_def, parse_outbox_row,
    parse_regions_row, regions_row, regions_table_def,
};
use locus_region::{Destination, Rect, RegionId};
use locus_store::{Changeset, Database};
use locus_types::abi::AreaCenter;
use locus_types::migrate::Plan;
use locus_types::{Value, codec};
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use locus_host::{Budget, CallError, HostConfig, Module, UpgradeError};
pub use locus_interest::InterestConfig;
pub use locus_types::{Identity, ReducerCall, TableId, Tick, Timestamp};

/// Why a module could not be built or loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// cargo could not build it.
    #[error(transparent)]
    Build(#[from] Box<build::BuildError>),
    /// The host refused it (not a Locus module, an invalid description, ...).
    #[error("the module built from `{dir}` does not load: {source}")]
    Load {
        /// The crate's directory.
        dir: PathBuf,
        /// Why.
        source: Box<locus_host::LoadError>,
    },
    /// The host could not start.
    #[error("the wasm runtime could not start: {0}")]
    Runtime(String),
}

/// Build the module crate in `crate_dir` (a project of its own or a workspace member; in a test,
/// `env!("CARGO_MANIFEST_DIR")`) to wasm and load it with `config`.
///
/// # Errors
///
/// A [`LoadError`]: cargo's errors come with the end of its output.
pub fn load_with(crate_dir: impl AsRef<Path>, config: HostConfig) -> Result<Module, LoadError> {
    let dir = crate_dir.as_ref();
    let workspace = build::workspace_root(dir).map_err(Box::new)?;
    let wasm = build::build_crate(dir, &build::module_target_dir(&workspace, "wasm-modules"))
        .map_err(Box::new)?;
    Runtime::new(config)
        .map_err(|e| LoadError::Runtime(e.to_string()))?
        .load(&wasm)
        .map_err(|source| LoadError::Load {
            dir: dir.to_owned(),
            source: Box::new(source),
        })
}

/// [`load_with`] and [`test_host_config`].
///
/// # Errors
///
/// A [`LoadError`].
pub fn load(crate_dir: impl AsRef<Path>) -> Result<Module, LoadError> {
    load_with(crate_dir, test_host_config())
}

/// The host configuration of [`load`]: the server's defaults but a reducer budget of 30 s of wall time, so tests
/// run in parallel on a busy machine do not fail on time (measure speed with a benchmark, not a test). A test of a
/// runaway reducer loads with [`load_with`] and a smaller budget.
#[must_use]
pub fn test_host_config() -> HostConfig {
    HostConfig {
        budget: Budget::Time(Duration::from_secs(30)),
        ..HostConfig::default()
    }
}

/// The module crate in `crate_dir`, built and loaded once per process ([`load`]); later calls with the same
/// directory return the same module.
///
/// # Panics
///
/// If it cannot be built or loaded, with the [`LoadError`]'s message (cargo's errors included).
pub fn module(crate_dir: impl AsRef<Path>) -> &'static Module {
    static LOADED: Mutex<Vec<(PathBuf, &'static Module)>> = Mutex::new(Vec::new());
    let dir = crate_dir.as_ref().to_path_buf();
    // Held while building: concurrent tests wait for the first build rather than running cargo side by side.
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, m)) = loaded.iter().find(|(d, _)| *d == dir) {
        return m;
    }
    let m: &'static Module = Box::leak(Box::new(load(&dir).unwrap_or_else(|e| panic!("{e}"))));
    loaded.push((dir, m));
    m
}

/// The identity of test client `n`: `[n; 32]`.
#[must_use]
pub fn identity(n: u8) -> Identity {
    Identity([n; 32])
}

/// How a [`World`] runs. Every default is stated on its field.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The time of tick 0. Default 2023-11-14 22:13:20 UTC (1,700,000,000 s after the epoch).
    pub start: Timestamp,
    /// Seconds per tick of [`World::step`]. Default 0.05 (the server's 20 Hz).
    pub tick_secs: f32,
    /// Run the module's `init` reducer, then one tick, as a new server world does. Default `true`.
    pub init: bool,
    /// Seed of the reducers' RNGs. Default `0x10c05`.
    pub seed: u64,
    /// The interest stage of [`World::watch`]. Default [`InterestConfig::default`] (the server's).
    pub interest: InterestConfig,
    /// Print the module's log lines (captured by the test harness). Default `true`.
    pub print_logs: bool,
}

impl Default for WorldConfig {
    fn default() -> WorldConfig {
        WorldConfig {
            start: Timestamp(1_700_000_000_000_000),
            tick_secs: 0.05,
            init: true,
            seed: 0x10c05,
            interest: InterestConfig::default(),
            print_logs: true,
        }
    }
}

/// The regions of a split world, as [`World::split_into_regions`] takes them: each its name and its rectangle
/// `[x0, y0, x1, y1]`, in `world.toml` order.
type Regions<'a> = [(&'a str, [f32; 4])];

/// The rows a client was sent and not told to drop, by table and primary key (its `Debug` form).
type View = HashMap<TableId, HashMap<String, Vec<u8>>>;

/// A reducer call a world's reducer sent to other regions ([`World::take_region_calls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCall {
    /// The region it was sent to (its name), or `None` for every region, the sending one included.
    pub to: Option<String>,
    /// The reducer to run there.
    pub reducer: String,
    /// Its arguments.
    pub args: Vec<u8>,
    /// Who the sending reducer ran as: the receiving reducer's `ctx.sender`.
    pub sender: Identity,
}

impl SentCall {
    /// Whether region `region` runs it: it was sent there, or to every region.
    #[must_use]
    pub fn reaches(&self, region: &str) -> bool {
        self.to.as_deref().is_none_or(|to| to == region)
    }
}

/// A world of one module instance over an in-memory database, with a manual clock, and optionally an interest
/// stage with watching clients. See the [crate docs](crate).
pub struct World {
    inst: Hosted,
    tick: u64,
    now: Timestamp,
    calls: u64,
    config: WorldConfig,
    interest: Option<Interest>,
    /// Watching clients: their identity and the rows they were sent.
    watchers: Vec<(Identity, View)>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("tick", &self.tick)
            .field("now", &self.now)
            .field("watchers", &self.watchers.len())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A new world of `module`: `init`, then the first tick (which runs what `init` scheduled for now).
    ///
    /// # Panics
    ///
    /// If the module cannot be instantiated or `init` fails, with the host's message.
    #[must_use]
    pub fn new(module: &Module) -> World {
        World::with_config(module, WorldConfig::default())
    }

    /// A new world of `module`, run as `config` says.
    ///
    /// # Panics
    ///
    /// As [`World::new`].
    #[must_use]
    pub fn with_config(module: &Module, config: WorldConfig) -> World {
        World::create(module, config, None)
    }

    /// A new world of `module` that is the region `own` of a world split into `regions` (names and rectangles
    /// `[x0, y0, x1, y1]`, as [`World::split_into_regions`] takes them), split before `init` runs, as the server
    /// starts a new region: `init`, and the first tick's scheduled reducers, see `ctx.region()` = `own`.
    ///
    /// # Panics
    ///
    /// As [`World::new`] and [`World::split_into_regions`].
    #[must_use]
    pub fn new_region(module: &Module, regions: &[(&str, [f32; 4])], own: &str) -> World {
        World::region_with_config(module, WorldConfig::default(), regions, own)
    }

    /// [`World::new_region`], run as `config` says.
    ///
    /// # Panics
    ///
    /// As [`World::new_region`].
    #[must_use]
    pub fn region_with_config(
        module: &Module,
        config: WorldConfig,
        regions: &[(&str, [f32; 4])],
        own: &str,
    ) -> World {
        World::create(module, config, Some((regions, own)))
    }

    /// A new world, split into `region` (the regions and the own one's name) before `init` if given.
    fn create(module: &Module, config: WorldConfig, region: Option<(&Regions<'_>, &str)>) -> World {
        let inst = module
            .hosted(Database::default())
            .unwrap_or_else(|e| panic!("the module does not instantiate: {e}"));
        let init = config.init;
        let mut world = World {
            inst,
            tick: 0,
            now: config.start,
            calls: 0,
            config,
            interest: None,
            watchers: Vec::new(),
        };
        if let Some((regions, own)) = region {
            world.split_into_regions(regions, own);
        }
        if init {
            let ctx = world.ctx(Identity::SERVER);
            let result = world.inst.init(&ctx);
            world.print_logs();
            let changes = result.unwrap_or_else(|e| panic!("init failed: {}", e.detailed()));
            world.feed(&changes);
            world.step(1);
        }
        world
    }

    fn ctx(&mut self, sender: Identity) -> CallContext {
        self.calls += 1;
        CallContext {
            sender,
            tick: Tick(self.tick),
            timestamp: self.now,
            rng_seed: (self.config.seed ^ self.calls.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                ^ self.tick,
        }
    }

    fn print_logs(&mut self) {
        let lines = self.inst.drain_logs();
        if self.config.print_logs {
            for line in lines {
                #[expect(
                    clippy::print_stderr,
                    reason = "the test harness captures it and shows it on failure"
                )]
                {
                    eprintln!(
                        "[module {:?} tick {} {}] {}",
                        line.level, line.tick.0, line.reducer, line.message
                    );
                }
            }
        }
    }

    /// Feed committed changes to the interest stage, if there is one.
    fn feed(&mut self, changes: &Changeset) {
        if let Some(interest) = &mut self.interest {
            interest.handle_changeset(changes);
        }
    }

    /// The current tick (0 until the first [`World::step`] after `init`).
    #[must_use]
    pub fn tick(&self) -> Tick {
        Tick(self.tick)
    }

    /// The current time: reducers' `ctx.timestamp`.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The database (every table, system tables included).
    #[must_use]
    pub fn db(&self) -> &Database {
        self.inst.db()
    }

    /// The module instance and its database, for what the harness does not wrap.
    pub fn hosted_mut(&mut self) -> &mut Hosted {
        &mut self.inst
    }

    /// Client `n` ([`identity`]`(n)`) connects: `client_connected` runs for it. Returns its identity.
    ///
    /// # Panics
    ///
    /// If `client_connected` fails.
    pub fn connect(&mut self, n: u8) -> Identity {
        let who = identity(n);
        self.connect_as(who);
        who
    }

    /// `who` connects: `client_connected` runs for it.
    ///
    /// # Panics
    ///
    /// If `client_connected` fails.
    pub fn connect_as(&mut self, who: Identity) {
        let ctx = self.ctx(who);
        let result = self.inst.client_connected(&ctx);
        self.print_logs();
        let changes =
            result.unwrap_or_else(|e| panic!("client_connected failed: {}", e.detailed()));
        self.feed(&changes);
    }

    /// The area of interest the module set for `who` (a row of the system table `locus_area`), if any.
    #[must_use]
    pub fn area(&self, who: Identity) -> Option<locus_types::abi::AreaRow> {
        self.inst.area(who)
    }

    /// `who` disconnects: `client_disconnected` runs for it, and it stops watching.
    ///
    /// # Panics
    ///
    /// If `client_disconnected` fails.
    pub fn disconnect(&mut self, who: Identity) {
        let ctx = self.ctx(who);
        let result = self.inst.client_disconnected(&ctx);
        self.print_logs();
        let changes =
            result.unwrap_or_else(|e| panic!("client_disconnected failed: {}", e.detailed()));
        self.feed(&changes);
        if let Some(i) = self.watchers.iter().position(|(w, _)| *w == who) {
            if let Some(interest) = &mut self.interest {
                interest.handle_disconnect(ClientId(i as u32));
            }
            self.watchers[i].1.clear();
        }
    }

    /// `who` calls a reducer (a typed call: `my_module::my_reducer::call(args)`; [`Identity::SERVER`] for the
    /// server). `Ok` if it committed; `Err` with the reducer's own message if it returned `Err` (nothing written).
    ///
    /// # Panics
    ///
    /// On any other failure — a panic (the message says what and where), a trap, an overrun budget, an unknown
    /// reducer, arguments that do not fit — with the host's message. [`World::try_call`] returns those instead.
    pub fn call(&mut self, who: Identity, call: impl Into<ReducerCall>) -> Result<(), String> {
        let call = call.into();
        match self.try_call(who, call.clone()) {
            Ok(()) => Ok(()),
            Err(CallError::Failed { message, .. }) => Err(message),
            Err(e) => panic!("{}", e.detailed()),
        }
    }

    /// `who` calls a reducer; every failure is returned (its writes rolled back).
    ///
    /// # Errors
    ///
    /// The host's [`CallError`].
    pub fn try_call(
        &mut self,
        who: Identity,
        call: impl Into<ReducerCall>,
    ) -> Result<(), CallError> {
        let call = call.into();
        let ctx = self.ctx(who);
        let result = self.inst.call(call.reducer, &call.args, &ctx);
        self.print_logs();
        let changes = result?;
        self.feed(&changes);
        Ok(())
    }

    /// Make this world the region `own` of a world split into the regions `regions` — each its name and its
    /// rectangle `[x0, y0, x1, y1]`, in `world.toml` order: region `i` has index `i` — as the server does when it
    /// starts a region: it creates the system tables `locus_outbox` and `locus_regions` (describing the regions,
    /// `own` marked as this one), and moves every `auto_inc` sequence of the module's tables into the region's own
    /// range of keys (from `(i + 1) · 2⁴⁰`, `engine/docs/regions.md`), so keys made in different regions never
    /// meet.
    ///
    /// From then on `ctx.region()` is `own` and `ctx.regions()` lists `regions`, and `ctx.send_to_region` and
    /// `ctx.send_to_all_regions` write calls to the outbox: take them with [`World::take_region_calls`]. A world
    /// split this way after `init` keeps what `init` made; [`World::new_region`] splits a new world before `init`,
    /// as the server does.
    ///
    /// The rectangles are the test's to choose (the server checks that a layout's tile the world; this does not).
    ///
    /// # Panics
    ///
    /// If `own` is not one of `regions`, or the world already has tables of those names.
    pub fn split_into_regions(&mut self, regions: &[(&str, [f32; 4])], own: &str) {
        let index = regions
            .iter()
            .position(|(r, _)| *r == own)
            .unwrap_or_else(|| panic!("`{own}` is not one of the regions {regions:?}"));
        let db = self.inst.db_mut();
        db.create_table(outbox_table_def())
            .unwrap_or_else(|e| panic!("cannot create the outbox: {e}"));
        let regions_table = db
            .create_table(regions_table_def())
            .unwrap_or_else(|e| panic!("cannot create the regions table: {e}"));
        let sequences: Vec<TableId> = db
            .tables()
            .filter(|t| t.def().auto_inc && !locus_types::abi::is_system_table(t.name()))
            .map(locus_store::Table::id)
            .collect();
        let mut tx = db.begin();
        for (i, (name, rect)) in regions.iter().enumerate() {
            let id = RegionId(u16::try_from(i).expect("at most 65536 regions"));
            tx.insert(
                regions_table,
                &regions_row(name, id, Rect::from(*rect), i == index),
            )
            .unwrap_or_else(|e| panic!("region `{name}`: {e}"));
        }
        let base = (index as u64 + 1) << 40;
        for t in sequences {
            tx.advance_auto_inc(t, base).expect("the table exists");
        }
        drop(tx.commit());
    }

    /// The calls this world's reducers sent to other regions since the last take, in the order they were sent,
    /// removed from the outbox (as the server removes them once they are published). Empty in a world that is not
    /// split into regions.
    ///
    /// # Panics
    ///
    /// If the outbox holds something that is not a reducer call.
    pub fn take_region_calls(&mut self) -> Vec<SentCall> {
        let db = self.inst.db_mut();
        let (Some(outbox), Some(regions)) = (db.table_id(OUTBOX_TABLE), db.table_id(REGIONS_TABLE))
        else {
            return Vec::new();
        };
        let names: HashMap<u16, String> = db
            .table(regions)
            .expect("exists")
            .iter()
            .filter_map(parse_regions_row)
            .map(|r| (r.index.0, r.name))
            .collect();
        let mut rows: Vec<(u64, Destination, Box<[u8]>)> = db
            .table(outbox)
            .expect("exists")
            .iter()
            .map(|row| parse_outbox_row(row).expect("an outbox row"))
            .collect();
        rows.sort_by_key(|(seq, _, _)| *seq);
        let mut tx = db.begin();
        for (seq, _, _) in &rows {
            tx.delete(outbox, &Value::U64(*seq))
                .expect("the row exists");
        }
        drop(tx.commit());
        rows.into_iter()
            .map(|(seq, to, payload)| {
                let message: RegionMessage = rmp_serde::from_slice(&payload)
                    .unwrap_or_else(|e| panic!("outbox message {seq}: {e}"));
                let RegionMessage::Call {
                    reducer,
                    args,
                    sender,
                } = message
                else {
                    panic!("outbox message {seq} is not a reducer call: {message:?}");
                };
                let to = match to {
                    Destination::All => None,
                    Destination::Region(r) => Some(
                        names
                            .get(&r.0)
                            .cloned()
                            .unwrap_or_else(|| format!("region #{}", r.0)),
                    ),
                };
                SentCall {
                    to,
                    reducer,
                    args,
                    sender,
                }
            })
            .collect()
    }

    /// Run `call`, a call a region sent ([`World::take_region_calls`]), in this world, as the receiving server does
    /// (`ModuleInstance::call_from_region`: a `#[reducer(region)]` or client reducer, with `ctx.sender` the call's
    /// sender). `Ok` if it committed; `Err` with the reducer's own message if it returned `Err`. Whether the call
    /// was addressed to this world is the test's to say ([`SentCall::reaches`]).
    ///
    /// # Panics
    ///
    /// On any other failure, as [`World::call`].
    pub fn deliver(&mut self, call: &SentCall) -> Result<(), String> {
        match self.try_call_from_region(call.sender, &call.reducer, &call.args) {
            Ok(()) => Ok(()),
            Err(CallError::Failed { message, .. }) => Err(message),
            Err(e) => panic!("{}", e.detailed()),
        }
    }

    /// Run a call of `reducer` with `args` as if another region had sent it, as `sender` (see
    /// [`World::deliver`]); every failure is returned (its writes rolled back).
    ///
    /// # Errors
    ///
    /// The host's [`CallError`]: `NotCallable` for a reducer of a kind no region may call.
    pub fn try_call_from_region(
        &mut self,
        sender: Identity,
        reducer: &str,
        args: &[u8],
    ) -> Result<(), CallError> {
        let ctx = self.ctx(sender);
        let result = self.inst.call_from_region(reducer, args, &ctx);
        self.print_logs();
        let changes = result?;
        self.feed(&changes);
        Ok(())
    }

    /// `n` ticks of `dt` seconds each: the clock advances, the tick reducer runs, then whatever is due, as on the
    /// server; then the watchers' views are brought up to date.
    ///
    /// # Panics
    ///
    /// If the tick reducer or a scheduled reducer fails (its message says which and why).
    pub fn step_by(&mut self, n: usize, dt: f32) {
        for _ in 0..n {
            self.tick += 1;
            self.now = self.now.add_micros((f64::from(dt) * 1e6) as u64);
            let ctx = self.ctx(Identity::SERVER);
            let result = self.inst.tick(dt, &ctx);
            self.print_logs();
            let changes = result.unwrap_or_else(|e| panic!("tick {}: {}", self.tick, e.detailed()));
            self.feed(&changes);
            let now = self.now;
            for run in self.inst.run_due(now, &ctx) {
                self.feed(&run.changeset);
                if let Some(e) = run.error {
                    self.print_logs();
                    panic!("tick {}: scheduled {}", self.tick, e.detailed());
                }
            }
            self.print_logs();
        }
        self.sync_views();
    }

    /// `n` ticks of [`WorldConfig::tick_secs`].
    pub fn step(&mut self, n: usize) {
        self.step_by(n, self.config.tick_secs);
    }

    /// Let `secs` seconds pass, in ticks of a quarter of a second (faster than the server's ticks over long
    /// waits; a module whose rules depend on the tick length should [`World::step`] instead).
    pub fn wait(&mut self, secs: f32) {
        self.step_by((secs / 0.25).ceil() as usize, 0.25);
    }

    /// The id of table `name`.
    ///
    /// # Panics
    ///
    /// If the module has no such table.
    #[must_use]
    pub fn table_id(&self, name: &str) -> TableId {
        self.inst
            .db()
            .table_id(name)
            .unwrap_or_else(|| panic!("the module has no table `{name}`"))
    }

    /// Every row of `table`, decoded as `T` (the module's row type).
    ///
    /// # Panics
    ///
    /// If there is no such table or a row does not decode as `T`.
    #[must_use]
    pub fn rows<T: DeserializeOwned>(&self, table: &str) -> Vec<T> {
        let db = self.inst.db();
        let t = db
            .table(self.table_id(table))
            .expect("a table of the database");
        t.iter().map(|r| decode(table, r)).collect()
    }

    /// How many rows `table` holds.
    ///
    /// # Panics
    ///
    /// If there is no such table.
    #[must_use]
    pub fn count(&self, table: &str) -> usize {
        let db = self.inst.db();
        db.table(self.table_id(table))
            .map_or(0, locus_store::Table::len)
    }

    /// Replace the module with `module` in place, as `locus publish` does: the schema is migrated and the module's
    /// upgrade hook, if it has one, runs. Returns what changed.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`]; the world is then as it was.
    pub fn upgrade(&mut self, module: &Module) -> Result<Plan, UpgradeError> {
        let result = self.inst.upgrade(module);
        self.print_logs();
        result
    }

    // ---- clients through the interest stage ----

    /// `who` (connected) becomes a client of the interest stage, subscribed to all of each of `tables`, with the
    /// area of interest the module set for it (kept up to date at every step). With the server's byte budget
    /// ([`InterestConfig::byte_budget`], 1,024 bytes a tick), a view of many rows fills over a few ticks, as a real
    /// client's does: step before asserting on a whole view.
    ///
    /// # Panics
    ///
    /// If a table does not exist or the interest stage refuses the subscription.
    pub fn watch(&mut self, who: Identity, tables: &[&str]) {
        let ids: Vec<TableId> = tables.iter().map(|t| self.table_id(t)).collect();
        let client = match self.watchers.iter().position(|(w, _)| *w == who) {
            Some(i) => i,
            None => {
                self.watchers.push((who, View::new()));
                self.watchers.len() - 1
            }
        };
        let config = self.config.interest;
        let interest = self
            .interest
            .get_or_insert_with(|| Interest::new(config, self.inst.db()));
        interest.handle_connect(ClientId(client as u32), who);
        for table in ids {
            interest
                .handle_subscribe(ClientId(client as u32), table, Filter::All)
                .unwrap_or_else(|e| panic!("subscribing {who:?} to table {table:?}: {e}"));
        }
        self.sync_views();
    }

    /// Bring the watchers' areas up to date with the module's, and apply one interest tick to their views.
    fn sync_views(&mut self) {
        let Some(interest) = &mut self.interest else {
            return;
        };
        for (client, (who, _)) in self.watchers.iter().enumerate() {
            let area = self.inst.area(*who).map(|a| {
                let center = match a.center {
                    AreaCenter::Fixed(p) => Center::Fixed(p),
                    AreaCenter::Follow { table, key } => {
                        let def = self.inst.db().table(table).expect("the area's table").def();
                        let column = &def.columns[def.primary_key.index()];
                        Center::Follow {
                            table,
                            key: codec::decode_value(column, &key).expect("the area's key decodes"),
                        }
                    }
                };
                Area {
                    center,
                    enter_radius: a.enter,
                    leave_radius: a.leave,
                }
            });
            // A client that disconnected is no longer known to the interest stage: nothing to update.
            let _ = interest.handle_area(ClientId(client as u32), area);
        }
        let deltas = interest.poll_tick(Tick(self.tick));
        for (client, delta) in deltas.iter() {
            let view = &mut self.watchers[client.0 as usize].1;
            for &row in delta.inserts.iter().chain(&delta.updates) {
                let r = deltas.row(row);
                view.entry(r.table)
                    .or_default()
                    .insert(format!("{:?}", r.key), r.bytes.to_vec());
            }
            for &row in &delta.deletes {
                let r = deltas.row(row);
                view.entry(r.table)
                    .or_default()
                    .remove(&format!("{:?}", r.key));
            }
        }
    }

    /// The rows of `table` that `who` (a watcher) has been sent and not told to drop, decoded as `T`.
    ///
    /// # Panics
    ///
    /// If `who` is not watching, or a row does not decode as `T`.
    #[must_use]
    pub fn seen<T: DeserializeOwned>(&self, who: Identity, table: &str) -> Vec<T> {
        let id = self.table_id(table);
        let (_, view) = self
            .watchers
            .iter()
            .find(|(w, _)| *w == who)
            .unwrap_or_else(|| panic!("{who:?} is not watching: call `watch` first"));
        view.get(&id)
            .map(|rows| rows.values().map(|b| decode(table, b)).collect())
            .unwrap_or_default()
    }
}

fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> T {
    rmp_serde::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "a row of `{table}` does not decode as {}: {e}",
            std::any::type_name::<T>()
        )
    })
}
