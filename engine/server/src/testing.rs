//! A harness for testing a [`World`] on its own: no socket, thread, file or wall clock.
//!
//! In the style of quinn-proto's test `Pair`: a [`TestWorld`] holds a [`World`] over a real module instance (real
//! wasmtime), a manual clock, the tick records in memory, and fake sessions ([`TestSession`]) that queue what a
//! client would send and read what the world sent them, decoded as a client decodes it. It drives the world as the
//! server's shell does:
//!
//! - **Clock.** Tick `n` runs at `start + n · period` (plus any [`TestWorld::advance_clock`]); nothing sleeps. The
//!   first tick is 1: a new world runs the module's `init` at tick 0, as [`crate::Server::start`] does.
//! - **Inputs.** Calls, subscriptions and commands are queued in the order they are made (the network's arrival
//!   order) and handed to [`World::run_tick`] by [`TestWorld::tick`]. As over the network, a session's inputs can
//!   only be queued while it is connected.
//! - **Delivery.** Every frame a session is sent is decoded at once (the durability wait is zero) with
//!   [`locus_protocol::FrameReader`] and [`locus_protocol::decode_frame`], as the client does, into the session's inbox, and
//!   applied to its [`Cache`] (the client's row cache): "which rows does this session hold" is
//!   [`TestWorld::cache`]. A session closed for a fatal error ([`TestWorld::close`]) gets its `Error` frame after
//!   the tick's others; the harness then queues its `Disconnect` for the next tick, as the network does once the
//!   connection is closed. So does a session the world closes by itself, redirected to another region
//!   ([`Input::Redirect`], queued with [`TestWorld::push`]): it ends ([`Ended::Closed`]) with its `Redirect` frame.
//! - **Session ids** come from a [`SessionIds`] and are given back once the tick that freed them is delivered, as
//!   the release thread does, so a new session may get an old one's id.
//! - **Records.** Each tick's [`EncodedRecord`] is kept (with the snapshot it follows); [`TestWorld::restart`]
//!   recovers a fresh world from them through the commit log's recovery (over in-memory storage), as a server
//!   restarted after `kill -9` would.
//! - **Deferred work.** Snapshots and publishes ([`Deferred`]) are done right after the tick, as the shell does;
//!   their answers reach a session with the next tick's frames.
//!
//! What it leaves to the shell's own tests: framing, rate limits, the `Hello` and version negotiation, the
//! admin-only check on commands (the world runs any [`TestWorld::admin`] command; the network refuses a non-admin
//! one with `Forbidden`), timeouts, and the durability wait itself.
//!
//! Invariants checked on every tick (a violation panics, naming it): every frame decodes as the client decodes
//! it, and no frame is for a session that is not connected (a disconnected session's id is never sent anything).
//!
//! ```no_run
//! use locus_server::testing::{TestWorld, TestWorldConfig};
//! use locus_protocol::{CallOutcome, Filter};
//! use locus_types::Identity;
//!
//! let wasm = std::fs::read("target/wasm32-unknown-unknown/release/game_module.wasm")?;
//! let mut world = TestWorld::from_wasm(&wasm, TestWorldConfig::default())?;
//! let a = world.connect(Identity([1; 32]));
//! world.subscribe(a, "player", Filter::All);
//! let request = world.call_raw(a, "set_name", &[0x91, 0xa3, b'A', b'd', b'a']);
//! world.tick();
//! assert_eq!(world.result(a, request), Some(&CallOutcome::Ok));
//! assert_eq!(world.cache(a).len("player"), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use locus_client::{Cache, Event};
use locus_host::{CallContext, HostConfig, Module, Runtime};
use locus_interest::InterestConfig;
use locus_log::storage::MemStorage;
use locus_log::{EncodedRecord, EncodedSnapshot, Log, LogConfig};
use locus_protocol::{
    AdminCommand, AdminReply, CallOutcome, ErrorCode, FrameReader, MAX_SERVER_FRAME,
    PROTOCOL_VERSION, ServerMessage, Token,
};
use locus_store::{Database, StoreConfig};
use locus_types::{Identity, Tick, Timestamp};
use thiserror::Error;

use crate::world::{AdminFrom, Deferred, Input, SessionId, SessionIds, TickOutput, World};

/// How to run a [`TestWorld`]. Every default is stated on its field.
#[derive(Clone, Debug)]
pub struct TestWorldConfig {
    /// Ticks per second: the clock advances one period per tick, and each tick's `dt` is one period. Default 20.
    pub tick_rate: u16,
    /// Seed of reducers' RNGs. Default `0x10c05` (the server's default).
    pub seed: u64,
    /// Reducer budgets. Default [`HostConfig::default`].
    pub host: HostConfig,
    /// Interest management. Default [`InterestConfig::default`].
    pub interest: InterestConfig,
    /// Run the module's `init` reducer before the first tick, as a new server world does. Default `true`.
    pub init: bool,
    /// The world time of tick 0. Default `Timestamp(1_700_000_000_000_000)` (November 2023).
    pub start: Timestamp,
    /// The world's admin identity ([`World::set_admin`]), as the server's is the one of its admin token: a session
    /// connected with it is told where a reducer panicked. Default `None`: no session is the admin.
    pub admin: Option<Identity>,
}

impl Default for TestWorldConfig {
    fn default() -> Self {
        TestWorldConfig {
            tick_rate: 20,
            seed: 0x10c05,
            host: HostConfig::default(),
            interest: InterestConfig::default(),
            init: true,
            start: Timestamp(1_700_000_000_000_000),
            admin: None,
        }
    }
}

/// Why a [`TestWorld`] could not be made or restarted.
#[derive(Debug, Error)]
pub enum TestWorldError {
    /// The wasm engine could not start.
    #[error(transparent)]
    Runtime(#[from] locus_host::RuntimeError),
    /// The module is not valid.
    #[error("the module cannot be loaded: {0}")]
    Load(#[from] locus_host::LoadError),
    /// The module cannot be instantiated over an empty database.
    #[error("the module cannot be instantiated: {0}")]
    Instantiate(#[from] locus_host::InstantiateError),
    /// The module does not fit the recovered database.
    #[error("the module cannot run on the recovered data: {0}")]
    Upgrade(#[from] locus_host::UpgradeError),
    /// The commit log refused a record or snapshot while the harness replayed them.
    #[error("the records cannot be replayed: {0}")]
    Replay(String),
    /// Recovery from the replayed log failed.
    #[error("cannot recover the world: {0}")]
    Recover(#[from] locus_log::OpenError),
}

/// A fake session of a [`TestWorld`]: a handle, valid for the world's lifetime (also once the session ended, to
/// read what it received). Its session id is [`TestWorld::session_id`]; ids are reused, handles are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestSession(usize);

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The test disconnected it ([`TestWorld::disconnect`]).
    Disconnected,
    /// The world closed it for a fatal error ([`TestWorld::close`]), after its `Error` frame, or because its
    /// player moved to another region ([`Input::Redirect`]), after its `Redirect` frame.
    Closed {
        /// The QUIC application close code the shell would close the connection with.
        close_code: u32,
        /// The close reason.
        reason: String,
    },
    /// The world restarted ([`TestWorld::restart`]) while it was connected: the connection was lost.
    Lost,
}

#[derive(Debug)]
struct FakeSession {
    id: SessionId,
    identity: Identity,
    token: Token,
    version: u16,
    next_request: u32,
    /// Set once the session can send no more (its `Disconnect` or `Close` is queued, or the world restarted).
    ended: Option<Ended>,
    inbox: Vec<ServerMessage>,
    events: Vec<Event>,
    cache: Cache,
    /// Its connection takes datagrams ([`TestWorld::connect_datagrams`]): which of them are lost, by their count.
    datagrams: Option<Lossy>,
}

/// Which of a session's datagrams are lost on the way: `lost(n)` for its `n`-th (from 0).
struct Lossy {
    lost: Box<dyn FnMut(u64) -> bool + Send>,
    count: u64,
    /// Delivered, in order.
    delivered: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Lossy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lossy")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// A world driven by hand, with fake sessions. See the [module docs](self).
pub struct TestWorld {
    world: World,
    config: TestWorldConfig,
    /// The last tick run (0 before the first).
    tick: Tick,
    /// Ticks run since the harness started (across restarts): the clock's count of periods.
    periods: u64,
    /// Added to the clock by [`TestWorld::advance_clock`].
    offset: Duration,
    /// The snapshot the records follow, and the records of the ticks after it that changed anything.
    snapshot: EncodedSnapshot,
    records: Vec<EncodedRecord>,
    sessions: Vec<FakeSession>,
    /// The sessions holding an id (connected, or ended but not yet freed), by id.
    live: HashMap<SessionId, usize>,
    ids: SessionIds,
    queued: Vec<Input>,
    /// Sessions closed by the last tick, whose `Disconnect` the next tick gets.
    closing: Vec<SessionId>,
    next_local: u64,
    local_replies: HashMap<u64, AdminReply>,
}

impl std::fmt::Debug for TestWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWorld")
            .field("tick", &self.tick)
            .field("sessions", &self.live.len())
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl TestWorld {
    /// Load `wasm` (with [`TestWorldConfig::host`]) and start a new world over it; see [`TestWorld::new`].
    ///
    /// # Errors
    ///
    /// A [`TestWorldError`] if the module does not load or instantiate.
    pub fn from_wasm(wasm: &[u8], config: TestWorldConfig) -> Result<TestWorld, TestWorldError> {
        let module = Runtime::new(config.host.clone())?.load(wasm)?;
        TestWorld::new(&module, config)
    }

    /// A new world running `module` over an empty database: its `init` run at tick 0 (if
    /// [`TestWorldConfig::init`]; a failure is reported as the server reports it) and the result snapshotted.
    /// `module` keeps the [`HostConfig`] it was loaded with ([`TestWorldConfig::host`] is used only by
    /// [`TestWorld::from_wasm`]). Compiling a module takes seconds: tests share one and clone it (cheap).
    ///
    /// # Errors
    ///
    /// A [`TestWorldError`] if the module does not instantiate.
    pub fn new(module: &Module, config: TestWorldConfig) -> Result<TestWorld, TestWorldError> {
        let mut db = Database::new(StoreConfig::default());
        let mut instance = module.instantiate(&mut db)?;
        let init_failed = if config.init {
            let ctx = CallContext::server(Tick(0), config.start, config.seed);
            instance.init(&mut db, &ctx).err()
        } else {
            None
        };
        let snapshot = EncodedSnapshot::new(Tick(0), &db);
        let mut world = World::new(db, instance, config.interest, config.tick_rate, config.seed);
        if let Some(admin) = config.admin {
            world.set_admin(admin);
        }
        if let Some(e) = init_failed {
            world.server_reducer_failed(&e, Tick(0), config.start);
        }
        Ok(TestWorld {
            world,
            config,
            tick: Tick(0),
            periods: 0,
            offset: Duration::ZERO,
            snapshot,
            records: Vec::new(),
            sessions: Vec::new(),
            live: HashMap::new(),
            ids: SessionIds::default(),
            queued: Vec::new(),
            closing: Vec::new(),
            next_local: 0,
            local_replies: HashMap::new(),
        })
    }

    /// The world.
    #[must_use]
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, to drive it directly (inputs the harness has no method for go through [`TestWorld::push`]).
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The last tick run (0 before the first, or the recovered tick right after a restart).
    #[must_use]
    pub fn current_tick(&self) -> Tick {
        self.tick
    }

    /// The world time the next tick runs at.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.time_of(self.periods + 1)
    }

    fn time_of(&self, periods: u64) -> Timestamp {
        let period = 1_000_000 / u64::from(self.config.tick_rate.max(1));
        let offset = u64::try_from(self.offset.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.config.start.0 + periods * period + offset)
    }

    /// Move the clock forward by `by` (as a stalled tick thread would see it): every later tick runs that much
    /// later. Ticks stay numbered one after the other.
    pub fn advance_clock(&mut self, by: Duration) {
        self.offset += by;
    }

    /// The snapshot the [`TestWorld::records`] follow: tick 0's (after `init`), or the last one a `Snapshot`
    /// command, a publish or a restart made.
    #[must_use]
    pub fn snapshot(&self) -> &EncodedSnapshot {
        &self.snapshot
    }

    /// The log records of the ticks after [`TestWorld::snapshot`] that changed anything, in tick order.
    #[must_use]
    pub fn records(&self) -> &[EncodedRecord] {
        &self.records
    }

    // ---- sessions ----------------------------------------------------------------------------------------------

    /// A session of `identity` (with the highest protocol version), connecting in the next tick: its `Welcome`
    /// arrives then. Its token is the identity's bytes (the world echoes the token and never derives the identity
    /// from it; the network does, [`crate::identity::identity_of`]).
    pub fn connect(&mut self, identity: Identity) -> TestSession {
        self.connect_as(identity, Token(identity.0), PROTOCOL_VERSION)
    }

    /// A session presenting `token`: its identity is the token's, as the network derives it.
    pub fn connect_token(&mut self, token: Token) -> TestSession {
        self.connect_as(
            crate::identity::identity_of(&token),
            token,
            PROTOCOL_VERSION,
        )
    }

    /// A session of `identity` speaking protocol `version` (the one the network chose from its `Hello`).
    pub fn connect_version(&mut self, identity: Identity, version: u16) -> TestSession {
        self.connect_as(identity, Token(identity.0), version)
    }

    /// A session of `identity` (the highest protocol version) whose connection takes datagrams, as a Rust SDK
    /// client's does, with them on from the start ([`crate::PositionDatagrams::Always`]; [`TestWorld::set_places`]
    /// turns them off): it is sent walking rows' positions in datagrams (`protocol.md` §5, "Version 4"), delivered
    /// after the tick's frames and applied to its cache, except those `lost` says are lost (called with each
    /// datagram's count from 0, in order).
    pub fn connect_datagrams(
        &mut self,
        identity: Identity,
        lost: impl FnMut(u64) -> bool + Send + 'static,
    ) -> TestSession {
        let s = self.connect_as(identity, Token(identity.0), PROTOCOL_VERSION);
        self.sessions[s.0].datagrams = Some(Lossy {
            lost: Box::new(lost),
            count: 0,
            delivered: Vec::new(),
        });
        if let Some(Input::Connect {
            datagrams, places, ..
        }) = self.queued.last_mut()
        {
            (*datagrams, *places) = (true, true);
        }
        s
    }

    /// The datagrams `session` was delivered (not lost), in order.
    #[must_use]
    pub fn datagrams(&self, session: TestSession) -> &[Vec<u8>] {
        self.sessions[session.0]
            .datagrams
            .as_ref()
            .map_or(&[], |d| &d.delivered)
    }

    fn connect_as(&mut self, identity: Identity, token: Token, version: u16) -> TestSession {
        let id = self.ids.allocate();
        let handle = self.sessions.len();
        self.sessions.push(FakeSession {
            id,
            identity,
            token,
            version,
            next_request: 1,
            ended: None,
            inbox: Vec::new(),
            events: Vec::new(),
            cache: Cache::new(),
            datagrams: None,
        });
        self.live.insert(id, handle);
        self.queued.push(Input::Connect {
            session: id,
            identity,
            token,
            version,
            datagrams: false,
            places: false,
        });
        TestSession(handle)
    }

    /// Turn `session`'s position datagrams on or off, as the network does when its connection starts or stops
    /// losing packets ([`crate::PositionDatagrams::OnLoss`]): [`Input::Link`] is queued. A session from
    /// [`TestWorld::connect_datagrams`] starts with them on.
    pub fn set_places(&mut self, session: TestSession, on: bool) {
        let id = self.sender(session);
        self.queued.push(Input::Link {
            session: id,
            places: on,
        });
    }

    /// End `session` (the client closed the connection): its `Disconnect` is queued. Nothing more reaches it.
    ///
    /// # Panics
    ///
    /// If the session already ended.
    pub fn disconnect(&mut self, session: TestSession) {
        let id = self.sender(session);
        self.sessions[session.0].ended = Some(Ended::Disconnected);
        self.queued.push(Input::Disconnect { session: id });
    }

    /// Close `session` for a fatal error in its input, as the network does: [`Input::Close`] is queued behind its
    /// earlier inputs, the tick puts the `Error` frame after the session's other frames, and the session's
    /// `Disconnect` follows in the next tick. `close_code` is the QUIC application close code.
    ///
    /// # Panics
    ///
    /// If the session already ended.
    pub fn close(&mut self, session: TestSession, code: ErrorCode, message: &str, close_code: u32) {
        let id = self.sender(session);
        self.sessions[session.0].ended = Some(Ended::Closed {
            close_code,
            reason: message.to_owned(),
        });
        self.queued.push(Input::Close {
            session: id,
            code,
            message: message.to_owned(),
            close_code,
        });
    }

    /// The session id `session` has (or had) in the world.
    #[must_use]
    pub fn session_id(&self, session: TestSession) -> SessionId {
        self.sessions[session.0].id
    }

    /// The identity `session` connected as.
    #[must_use]
    pub fn identity(&self, session: TestSession) -> Identity {
        self.sessions[session.0].identity
    }

    /// The token `session` presented (echoed in its `Welcome`).
    #[must_use]
    pub fn token(&self, session: TestSession) -> Token {
        self.sessions[session.0].token
    }

    /// The protocol version `session` speaks.
    #[must_use]
    pub fn version(&self, session: TestSession) -> u16 {
        self.sessions[session.0].version
    }

    /// How `session` ended, if it did.
    #[must_use]
    pub fn ended(&self, session: TestSession) -> Option<&Ended> {
        self.sessions[session.0].ended.as_ref()
    }

    /// The session ids in use (connected, or ended and not yet freed).
    #[must_use]
    pub fn session_ids(&self) -> &SessionIds {
        &self.ids
    }

    /// The session's id, for an input of it.
    fn sender(&self, session: TestSession) -> SessionId {
        let s = &self.sessions[session.0];
        assert!(
            s.ended.is_none(),
            "session {} ({:?}) already ended: {:?}",
            s.id,
            session,
            s.ended
        );
        s.id
    }

    fn request(&mut self, session: TestSession) -> (SessionId, u32) {
        let id = self.sender(session);
        let s = &mut self.sessions[session.0];
        let request = s.next_request;
        s.next_request += 1;
        (id, request)
    }

    // ---- inputs ------------------------------------------------------------------------------------------------

    /// Queue a call of `call` from `session`; returns its request id.
    ///
    /// # Panics
    ///
    /// If the session ended.
    pub fn call(&mut self, session: TestSession, call: &locus_module::ReducerCall) -> u32 {
        self.call_raw(session, call.reducer, &call.args)
    }

    /// Queue a call of `reducer` with MessagePack `args` (not checked: what a client sends) from `session`; returns
    /// its request id.
    ///
    /// # Panics
    ///
    /// If the session ended.
    pub fn call_raw(&mut self, session: TestSession, reducer: &str, args: &[u8]) -> u32 {
        let (id, request) = self.request(session);
        self.queued.push(Input::Call {
            session: id,
            request,
            reducer: reducer.to_owned(),
            args: args.to_vec(),
        });
        request
    }

    /// Queue a subscription of `session` to `table`; returns its request id.
    ///
    /// # Panics
    ///
    /// If the session ended.
    pub fn subscribe(
        &mut self,
        session: TestSession,
        table: &str,
        filter: locus_protocol::Filter,
    ) -> u32 {
        let (id, request) = self.request(session);
        self.queued.push(Input::Subscribe {
            session: id,
            request,
            table: table.to_owned(),
            filter,
        });
        request
    }

    /// Queue the end of `session`'s subscription to `table`; returns its request id.
    ///
    /// # Panics
    ///
    /// If the session ended.
    pub fn unsubscribe(&mut self, session: TestSession, table: &str) -> u32 {
        let (id, request) = self.request(session);
        self.queued.push(Input::Unsubscribe {
            session: id,
            request,
            table: table.to_owned(),
        });
        request
    }

    /// Queue an operator's command from `session` (the world does not check that the session is the admin: the
    /// network does); returns its request id. The answer arrives as an `Admin` message.
    ///
    /// # Panics
    ///
    /// If the session ended.
    pub fn admin(&mut self, session: TestSession, command: AdminCommand) -> u32 {
        let (id, request) = self.request(session);
        self.queued.push(Input::Admin {
            from: AdminFrom::Session {
                session: id,
                request,
            },
            command,
        });
        request
    }

    /// Queue any input (after those queued before).
    pub fn push(&mut self, input: Input) {
        self.queued.push(input);
    }

    /// Run `command` as the server's own API does ([`crate::Server::admin`]): queued with the other inputs, one
    /// tick run, and its answer returned.
    ///
    /// # Panics
    ///
    /// If the tick gives no answer (the world lost the command).
    pub fn local_admin(&mut self, command: AdminCommand) -> AdminReply {
        self.next_local += 1;
        let id = self.next_local;
        self.queued.push(Input::Admin {
            from: AdminFrom::Local(id),
            command,
        });
        self.tick();
        self.local_replies
            .remove(&id)
            .unwrap_or_else(|| panic!("the world did not answer the local command {id}"))
    }

    /// Run a reducer as the server ([`crate::Server::admin_call`]); one tick runs.
    ///
    /// # Panics
    ///
    /// If the tick gives no `Called` answer.
    pub fn local_call(&mut self, call: &locus_module::ReducerCall) -> CallOutcome {
        match self.local_admin(AdminCommand::Call {
            reducer: call.reducer.to_owned(),
            args: call.args.clone(),
        }) {
            AdminReply::Called { outcome, .. } => outcome,
            other => panic!("a local call answered {other:?}"),
        }
    }

    /// Publish `module` as [`crate::Server::publish`] does: queued, one tick run, then the upgrade done (planned,
    /// migrated, snapshotted, swapped in). Returns the answer: `Published` with the changes, or `Refused`.
    ///
    /// # Panics
    ///
    /// If the tick gives no answer.
    pub fn publish(&mut self, module: &Module) -> AdminReply {
        self.next_local += 1;
        let id = self.next_local;
        self.queued.push(Input::Publish {
            from: AdminFrom::Local(id),
            module: Box::new(module.clone()),
            wasm: Vec::new(),
        });
        self.tick();
        self.local_replies
            .remove(&id)
            .unwrap_or_else(|| panic!("the world did not answer the publish {id}"))
    }

    // ---- ticks -------------------------------------------------------------------------------------------------

    /// Run one tick with every queued input, then deliver its output: each session's frames decoded into its
    /// inbox and cache, fatal closes after them, local answers kept, deferred snapshots and publishes done, freed
    /// ids given back. Returns the tick's output, its frames as made ([`TickOutput::deferred`] is empty: done).
    ///
    /// # Panics
    ///
    /// If a frame does not decode as a client decodes it, or is for a session that is not connected.
    pub fn tick(&mut self) -> TickOutput {
        self.tick = Tick(self.tick.0 + 1);
        self.periods += 1;
        let (tick, now) = (self.tick, self.time_of(self.periods));
        let dt = 1.0 / f32::from(self.config.tick_rate.max(1));
        let mut inputs = std::mem::take(&mut self.queued);
        // The network queues a closed session's `Disconnect` once the connection is closed: after that tick.
        let closed = std::mem::take(&mut self.closing);
        inputs.splice(
            0..0,
            closed
                .into_iter()
                .map(|session| Input::Disconnect { session }),
        );
        let mut out = self.world.run_tick(tick, now, dt, inputs);
        if !out.record.is_empty() {
            self.records.push(out.record.clone());
        }
        for (id, bytes) in &out.frames {
            self.deliver(*id, bytes);
        }
        for (id, dgrams) in &out.datagrams {
            self.deliver_datagrams(*id, dgrams);
        }
        for closing in &out.closes {
            self.deliver(closing.session, &closing.frame);
            // A session the world closed by itself (a redirect) ends here, as the network ends it.
            if let Some(&handle) = self.live.get(&closing.session)
                && self.sessions[handle].ended.is_none()
            {
                self.sessions[handle].ended = Some(Ended::Closed {
                    close_code: closing.close_code,
                    reason: closing.reason.clone(),
                });
            }
            // One `Disconnect` per connection, however many closes it was given.
            if !self.closing.contains(&closing.session) {
                self.closing.push(closing.session);
            }
        }
        self.local_replies.extend(out.admin.iter().cloned());
        for job in std::mem::take(&mut out.deferred) {
            self.deferred(job, tick);
        }
        for &id in &out.freed {
            let handle = self.live.remove(&id);
            assert!(
                handle.is_some_and(|h| self.sessions[h].ended.is_some()),
                "tick {}: the world freed session {id}, which did not end",
                tick.0
            );
            assert!(self.ids.release(id), "session {id} freed twice");
        }
        out
    }

    /// Run `n` ticks.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Run ticks until `done` holds (checked after each), at most `max`; returns how many ran, or `None` if
    /// `done` never held.
    pub fn run_until(&mut self, max: u64, mut done: impl FnMut(&TestWorld) -> bool) -> Option<u64> {
        for n in 1..=max {
            self.tick();
            if done(self) {
                return Some(n);
            }
        }
        None
    }

    fn deliver_datagrams(&mut self, id: SessionId, dgrams: &[Vec<u8>]) {
        let tick = self.tick.0;
        let handle = *self.live.get(&id).unwrap_or_else(|| {
            panic!("tick {tick}: the world sent datagrams to session {id}, which no session holds")
        });
        let s = &mut self.sessions[handle];
        let lossy = s.datagrams.as_mut().unwrap_or_else(|| {
            panic!(
                "tick {tick}: the world sent datagrams to session {id}, whose connection takes none"
            )
        });
        for d in dgrams {
            assert!(
                d.len() <= locus_protocol::places::DATAGRAM_LIMIT,
                "tick {tick}: a datagram of {} bytes",
                d.len()
            );
            let parsed = locus_protocol::places::Datagram::parse(d)
                .unwrap_or_else(|e| panic!("tick {tick}: a bad datagram for session {id}: {e}"));
            assert_eq!(parsed.tick, tick, "a datagram of another tick");
            let n = lossy.count;
            lossy.count += 1;
            if (lossy.lost)(n) {
                continue;
            }
            s.cache.apply_places_into(&parsed, &mut s.events);
            lossy.delivered.push(d.clone());
        }
    }

    fn deliver(&mut self, id: SessionId, bytes: &[u8]) {
        let tick = self.tick.0;
        let handle = *self.live.get(&id).unwrap_or_else(|| {
            panic!("tick {tick}: the world sent frames to session {id}, which no session holds")
        });
        let s = &mut self.sessions[handle];
        // A closed session still gets the frames of the tick its `Close` ran in; any other ended one gets nothing.
        let reachable = match &s.ended {
            None | Some(Ended::Closed { .. }) => true,
            Some(Ended::Disconnected | Ended::Lost) => false,
        };
        assert!(
            reachable,
            "tick {tick}: the world sent frames to session {id} after it ended ({:?})",
            s.ended
        );
        let mut reader = FrameReader::new(MAX_SERVER_FRAME);
        reader.push(bytes);
        loop {
            let frame = reader
                .next_frame()
                .unwrap_or_else(|e| panic!("tick {tick}: a bad frame for session {id}: {e}"));
            let Some(payload) = frame else { break };
            let message: ServerMessage =
                locus_protocol::decode_frame(payload).unwrap_or_else(|e| {
                    panic!("tick {tick}: a frame for session {id} does not decode: {e}")
                });
            s.cache.apply_into(&message, &mut s.events);
            s.inbox.push(message);
        }
        assert_eq!(
            reader.buffered(),
            0,
            "tick {tick}: a partial frame for session {id}"
        );
    }

    /// Do what the tick left to the shell, as `Ticker::deferred` does (the snapshot kept in memory).
    fn deferred(&mut self, job: Deferred, tick: Tick) {
        let (from, reply) = match job {
            Deferred::Snapshot(from) => {
                self.snapshot = EncodedSnapshot::new(tick, self.world.db());
                self.records.clear();
                (from, AdminReply::Snapshot { tick: tick.0 })
            }
            Deferred::Publish { from, module, .. } => {
                let now = self.time_of(self.periods);
                let applied = self
                    .world
                    .upgrade(&module)
                    .and_then(|upgrade| self.world.apply_upgrade(upgrade, tick, now));
                let reply = match applied {
                    Ok(applied) => {
                        // The upgraded data, the upgrade reducer's writes included, is the new snapshot.
                        self.snapshot = EncodedSnapshot::new(tick, self.world.db());
                        self.records.clear();
                        let changes = applied.plan.changes.iter().map(ToString::to_string);
                        let changes = changes.collect();
                        self.world.swap(applied, tick);
                        AdminReply::Published {
                            tick: tick.0,
                            changes,
                        }
                    }
                    Err(e) => AdminReply::Refused {
                        message: e.to_string(),
                    },
                };
                (from, reply)
            }
        };
        if let Some((id, reply)) = self.world.reply(from, reply) {
            self.local_replies.insert(id, reply);
        }
    }

    /// Restart from the records, as a server killed (`kill -9`) and started again: the snapshot and the records
    /// written to a fresh in-memory commit log, a new world recovered from it by the server's recovery
    /// ([`Log::open`], then the module instantiated over the data), the module the running one. Every connected
    /// session is lost (ended with [`Ended::Lost`]; its identity may connect again), queued inputs are dropped, and
    /// no `client_disconnected` runs. The ticks go on from the recovered tick (the last that changed anything).
    ///
    /// # Errors
    ///
    /// A [`TestWorldError`] if the records do not replay or recover, or the module does not fit the data; the
    /// running world is kept then.
    pub fn restart(&mut self) -> Result<(), TestWorldError> {
        let module = self.world.instance().module().clone();
        self.restart_with(&module)
    }

    /// [`TestWorld::restart`] with `module` instead of the running module, as `locus serve --module` with a new
    /// build on the world's data directory: the recovered data is migrated to its schema and brought to its version
    /// (its upgrade reducer runs, as the server at the recovered tick), as [`crate::Server::start`] does.
    ///
    /// # Errors
    ///
    /// A [`TestWorldError`] if the records do not replay or recover, or the module does not fit the data (its
    /// schema, or its upgrade reducer failed); the running world is kept then.
    pub fn restart_with(&mut self, module: &Module) -> Result<(), TestWorldError> {
        let replay = |e: &dyn std::fmt::Display| TestWorldError::Replay(e.to_string());
        let disk = MemStorage::new();
        let (mut log, _) = Log::open(
            Arc::new(disk.clone()),
            LogConfig::default(),
            StoreConfig::default(),
        )?;
        log.snapshot(&self.snapshot).map_err(|e| replay(&e))?;
        for record in &self.records {
            log.append(&mut record.clone()).map_err(|e| replay(&e))?;
        }
        log.sync().map_err(|e| replay(&e))?;
        drop(log);
        let (_, recovered) =
            Log::open(Arc::new(disk), LogConfig::default(), StoreConfig::default())?;
        let mut db = recovered.db;
        let ctx = CallContext::server(recovered.tick, self.now(), self.config.seed);
        let (instance, plan) = module.instantiate_upgrading(&mut db, &ctx)?;
        if !plan.is_empty() {
            // As the server does after a migration at startup.
            self.snapshot = EncodedSnapshot::new(recovered.tick, &db);
            self.records.clear();
        }
        self.world = World::new(
            db,
            instance,
            self.config.interest,
            self.config.tick_rate,
            self.config.seed,
        );
        if let Some(admin) = self.config.admin {
            self.world.set_admin(admin);
        }
        self.tick = recovered.tick;
        for s in &mut self.sessions {
            s.ended.get_or_insert(Ended::Lost);
        }
        self.live.clear();
        self.ids = SessionIds::default();
        self.queued.clear();
        self.closing.clear();
        Ok(())
    }

    // ---- what sessions received ----------------------------------------------------------------------------------

    /// Every message `session` received (since the last [`TestWorld::take_messages`]), in order.
    #[must_use]
    pub fn messages(&self, session: TestSession) -> &[ServerMessage] {
        &self.sessions[session.0].inbox
    }

    /// Take the messages `session` received so far.
    pub fn take_messages(&mut self, session: TestSession) -> Vec<ServerMessage> {
        std::mem::take(&mut self.sessions[session.0].inbox)
    }

    /// What applying `session`'s messages to its cache reported (since the last [`TestWorld::take_events`]): rows
    /// in and out of view, results, errors, and [`Event::Inconsistent`] for a message that did not fit the view.
    #[must_use]
    pub fn events(&self, session: TestSession) -> &[Event] {
        &self.sessions[session.0].events
    }

    /// Take the events of `session` so far.
    pub fn take_events(&mut self, session: TestSession) -> Vec<Event> {
        std::mem::take(&mut self.sessions[session.0].events)
    }

    /// The rows `session` holds: its client cache, fed by every message it received (never emptied by
    /// [`TestWorld::take_messages`]).
    #[must_use]
    pub fn cache(&self, session: TestSession) -> &Cache {
        &self.sessions[session.0].cache
    }

    /// The outcome of `session`'s call `request`, if it is among [`TestWorld::messages`].
    #[must_use]
    pub fn result(&self, session: TestSession, request: u32) -> Option<&CallOutcome> {
        self.messages(session).iter().find_map(|m| match m {
            ServerMessage::Result {
                request: r,
                outcome,
                ..
            } if *r == request => Some(outcome),
            _ => None,
        })
    }

    /// The `Error` answering `session`'s request `request`, if it is among [`TestWorld::messages`]: its code,
    /// message and whether it is fatal.
    #[must_use]
    pub fn error(&self, session: TestSession, request: u32) -> Option<(ErrorCode, &str, bool)> {
        self.messages(session).iter().find_map(|m| match m {
            ServerMessage::Error {
                code,
                message,
                request: Some(r),
                fatal,
            } if *r == request => Some((*code, message.as_str(), *fatal)),
            _ => None,
        })
    }

    /// The answer to `session`'s operator command `request`, if it is among [`TestWorld::messages`].
    #[must_use]
    pub fn admin_reply(&self, session: TestSession, request: u32) -> Option<&AdminReply> {
        self.messages(session).iter().find_map(|m| match m {
            ServerMessage::Admin { request: r, reply } if *r == request => Some(reply),
            _ => None,
        })
    }
}
