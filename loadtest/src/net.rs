//! The network side of a bot: one tokio task per bot speaking the protocol over a shared quinn endpoint.
//!
//! A task connects, says `Hello`, subscribes, and then does two things until told to stop: it sends the calls the
//! bot's brain (the ECS side, [`crate::bots`]) queues as [`Command`]s, and it reads the server's frames (and, in
//! protocol version 4, its position datagrams), keeping the bot's [`View`] (its own position and what is around
//! it) and the shared [`Stats`] up to date. Results and the end of the session go back to the ECS world as
//! [`NetEvent`]s over a channel.
//!
//! A version-4 session's places (walking rows' positions, `locus_protocol::places`) arrive in QUIC datagrams,
//! unordered and possibly lost, beside the stream; they are applied by the client's rule of `protocol.md`
//! ("Applying a place", [`Handles::place`]): only to a row whose handle the bot held since the place's tick and
//! whose position it holds is older, and only up to [`HANDLE_REST`] ticks ahead of the stream.
//!
//! Measured here, where the frames and datagrams arrive:
//! - **update latency**: for each `Tick` frame carrying an update of another player, and each datagram carrying a
//!   place of another player that applies, now − the frame's or datagram's `time` (the tick's timestamp; bots
//!   and server share the machine's clock). One sample per frame or datagram, whatever it carries: the table's
//!   `lat` column and the service level;
//! - **update latency per player row change**: the same now − `time`, once for every change of another player's
//!   row the bot applies (each insert, update, patch and move of a `Tick` frame; each place of a datagram that
//!   applies), so a datagram carrying ten players' places weighs ten times a frame carrying one player's patch:
//!   how late the average change reaches a player. The bot's own row, deletes and dropped places give none;
//! - **reducer round trip**: `Call` sent → its `Result` read;
//! - **rows and row bytes per table**: inserts, updates, deletes and patches (their bytes), moves and places (the
//!   length of their records); position datagrams, malformed ones and places the rule dropped are counted apart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bevy_ecs::entity::Entity;
use game_module::Vec2;
use locus_module::ReducerCall;
use locus_protocol::compact::{Move, dequantize};
use locus_protocol::places::{Datagram, HANDLE_REST};
use locus_protocol::{
    CallOutcome, ClientMessage, ErrorCode, Filter, FrameReader, MAX_SERVER_FRAME, ServerMessage,
    TickView,
};
use tokio::sync::mpsc;

use crate::histogram::Recorder;
use crate::wire;

/// The reducers bots call, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CallKind {
    /// `teleport(x, y)`: placing the bot in the arena.
    Teleport,
    /// `move_to(x, y)`.
    MoveTo,
    /// `say(text)`.
    Say,
    /// `gather(node)`.
    Gather,
    /// `attack(creature)`.
    Attack,
}

impl CallKind {
    /// Every kind, in the order of [`Stats::refused`].
    pub(crate) const ALL: [CallKind; 5] = [
        CallKind::Teleport,
        CallKind::MoveTo,
        CallKind::Say,
        CallKind::Gather,
        CallKind::Attack,
    ];

    /// The reducer's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CallKind::Teleport => "teleport",
            CallKind::MoveTo => "move_to",
            CallKind::Say => "say",
            CallKind::Gather => "gather",
            CallKind::Attack => "attack",
        }
    }
}

/// What the brain asks the network side to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this call.
    Call(CallKind, ReducerCall),
    /// Close the connection (the end of the run: not a disconnect).
    Close,
}

/// What the network side tells the brain.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// `Welcome` arrived and the subscriptions are sent.
    Connected(Entity),
    /// A call was answered (or dropped by the server: `ok` false).
    Result {
        /// The bot.
        entity: Entity,
        /// Which call.
        kind: CallKind,
        /// Whether it committed.
        ok: bool,
    },
    /// The session ended (or never started).
    Ended(Entity),
}

/// What one bot knows of the world, written by its network task and read by its brain.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Its player's id, once its row arrived.
    pub(crate) me: Option<u64>,
    /// Its player's position.
    pub(crate) pos: Option<Vec2>,
    /// Other players in view.
    pub(crate) players: HashMap<u64, Vec2>,
    /// Creatures in view.
    pub(crate) creatures: HashMap<u64, Vec2>,
    /// Resource nodes in view.
    pub(crate) nodes: HashMap<u64, Vec2>,
    /// Updates of other players received.
    pub(crate) other_updates: u64,
    /// Other players that entered the view.
    pub(crate) other_inserts: u64,
    /// Whether the session is up.
    pub(crate) connected: bool,
    /// Protocol versions 3 and 4: the rows handles name, per table (players, creatures, nodes).
    pub(crate) handles: [Handles; 3],
    /// `S` of `protocol.md`'s rule for places: the last tick whose `Tick` frames were applied (the `Welcome`'s
    /// tick before any).
    pub(crate) stream_tick: u64,
}

/// One row's handle in a bot's view, with the ticks protocol version 4's rule for places reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// The row's id (its primary key).
    id: u64,
    /// `entered`: the tick of the `Tick` whose insert gave the row this handle.
    entered: u64,
    /// `at`: the tick of the position held (the latest of its stream changes' ticks and its applied places').
    at: u64,
}

/// One table's handles in a bot's view (protocol versions 3 and 4): handle → row, and row → handle (deletes and
/// updates name their row by key).
///
/// Invariants: `of[id] == h` exactly when `slots[h]` holds row `id`; every slot has `entered ≤ at`.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    slots: Vec<Option<Slot>>,
    of: HashMap<u64, u32>,
}

impl Handles {
    /// Row `id` entered the view at `tick` with handle `h` (an insert): `entered = at = tick`.
    fn insert(&mut self, h: u32, id: u64, tick: u64) {
        let i = h as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        // A handle given to another row, or a row given another handle, drops the old pairing.
        if let Some(old) = self.slots[i].take() {
            self.of.remove(&old.id);
        }
        if let Some(old) = self.of.insert(id, h)
            && let Some(s) = self.slots.get_mut(old as usize)
        {
            *s = None;
        }
        self.slots[i] = Some(Slot {
            id,
            entered: tick,
            at: tick,
        });
    }

    /// Row `id` left the view (a delete): free its handle.
    fn remove(&mut self, id: u64) {
        if let Some(h) = self.of.remove(&id)
            && let Some(s) = self.slots.get_mut(h as usize)
        {
            *s = None;
        }
    }

    /// The row handle `h` names.
    fn id(&self, h: u32) -> Option<u64> {
        self.slots.get(h as usize).copied().flatten().map(|s| s.id)
    }

    /// A change of row `id` from the stream at `tick`: `at` becomes the larger of `at` and `tick`.
    fn touch(&mut self, id: u64, tick: u64) {
        if let Some(&h) = self.of.get(&id) {
            self.touch_handle(h, tick);
        }
    }

    /// A change from the stream at `tick` of the row handle `h` names (a version-3 patch or move).
    fn touch_handle(&mut self, h: u32, tick: u64) {
        if let Some(Some(s)) = self.slots.get_mut(h as usize) {
            s.at = s.at.max(tick);
        }
    }

    /// Whether the row handle `h` names holds a position newer than tick `t` (a place that overtook the stream):
    /// a stream move of tick `t`, a step from an older position, is then skipped (`protocol.md`, "Version 4").
    fn newer(&self, h: u32, t: u64) -> bool {
        self.slots
            .get(h as usize)
            .copied()
            .flatten()
            .is_some_and(|s| s.at > t)
    }

    /// Protocol version 4's rule (`protocol.md`, "Applying a place"): whether a place of tick `t` for handle `h`
    /// applies, `s` being the last tick applied from the stream. It applies only if `t ≤ s + HANDLE_REST`, `h`
    /// names a row with `entered ≤ t`, and `at < t`; then `at = t` and the row's id is returned. `None`: drop it.
    fn place(&mut self, h: u32, t: u64, s: u64) -> Option<u64> {
        if t > s.saturating_add(HANDLE_REST) {
            return None;
        }
        let slot = self.slots.get_mut(h as usize)?.as_mut()?;
        if slot.entered > t || slot.at >= t {
            return None;
        }
        slot.at = t;
        Some(slot.id)
    }
}

/// A bot's view, shared between its task and its brain.
pub(crate) type SharedView = Arc<Mutex<View>>;

/// Lock a view (a panicked holder leaves usable data).
pub(crate) fn lock(view: &SharedView) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Table ids counted per table in [`Stats`].
pub(crate) const MAX_TABLES: usize = 32;

/// Counters of all bots, read by the sampler.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Sessions up now.
    pub(crate) connected: AtomicU64,
    /// Sessions that reached `Welcome`.
    pub(crate) sessions: AtomicU64,
    /// Connections that failed before `Welcome`.
    pub(crate) connect_failures: AtomicU64,
    /// Sessions that ended without being told to.
    pub(crate) disconnects: AtomicU64,
    /// `Error` frames, protocol failures, malformed frames.
    pub(crate) errors: AtomicU64,
    /// Calls sent.
    pub(crate) calls: AtomicU64,
    /// Calls answered `Err` (a refusal by the game rules: water, too far, busy, dead…), per [`CallKind::ALL`].
    pub(crate) refused: [AtomicU64; 5],
    /// `Tick` frames received.
    pub(crate) ticks: AtomicU64,
    /// Rows (inserts, updates, deletes, patches, moves, places) received.
    pub(crate) rows: AtomicU64,
    /// Updates of other players received (moves and places included).
    pub(crate) other_updates: AtomicU64,
    /// Position datagrams received (protocol version 4), malformed ones included.
    pub(crate) datagrams: AtomicU64,
    /// Position datagrams that were malformed (ignored whole, as `protocol.md` says; not errors).
    pub(crate) malformed_datagrams: AtomicU64,
    /// Places dropped by the rule: stale (their row's position held is as new), of a handle naming no row since
    /// their tick, or too far ahead of the stream.
    pub(crate) places_dropped: AtomicU64,
    /// Rows received per table id (ids ≥ [`MAX_TABLES`] are not counted here).
    pub(crate) table_rows: [AtomicU64; MAX_TABLES],
    /// Row (or key, or patch) bytes received per table id; for moves and places, their records' length.
    pub(crate) table_bytes: [AtomicU64; MAX_TABLES],
    /// Table names by id, from the first `Welcome`.
    pub(crate) table_names: Mutex<Vec<(u32, String)>>,
    /// Update latency, µs: one sample per `Tick` frame or datagram carrying an update (not only inserts) of
    /// another player.
    pub(crate) latency: Recorder,
    /// Update latency per player row change, µs: one sample per change of another player's row applied (insert,
    /// update, patch, move, place), each the latency of the frame or datagram that carried it.
    pub(crate) row_latency: Recorder,
    /// Reducer round trip, µs.
    pub(crate) rtt: Recorder,
    /// The first few error and disconnect reasons.
    pub(crate) reasons: Mutex<Vec<String>>,
    /// Every connection made (kept after it ends: its counters stay readable), for bandwidth.
    pub(crate) connections: Mutex<Vec<quinn::Connection>>,
}

impl Stats {
    fn note(&self, reason: String) {
        let mut r = self.reasons.lock().unwrap_or_else(PoisonError::into_inner);
        if r.len() < 20 {
            r.push(reason);
        }
    }

    /// UDP bytes and datagrams over all connections: (rx bytes, tx bytes, rx datagrams, tx datagrams).
    pub(crate) fn udp_totals(&self) -> (u64, u64, u64, u64) {
        let conns = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        conns.iter().fold((0, 0, 0, 0), |acc, c| {
            let s = c.stats();
            (
                acc.0 + s.udp_rx.bytes,
                acc.1 + s.udp_tx.bytes,
                acc.2 + s.udp_rx.datagrams,
                acc.3 + s.udp_tx.datagrams,
            )
        })
    }
}

/// What every bot task shares.
#[derive(Debug)]
pub(crate) struct NetContext {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// QUIC client configuration (pinned certificate).
    pub(crate) config: quinn::ClientConfig,
    /// The tables each bot subscribes to (all with `Filter::All`; spatial ones are limited to its area).
    pub(crate) tables: Vec<String>,
    /// The protocol version the bots offer (and so speak).
    pub(crate) protocol: u16,
    /// Counters.
    pub(crate) stats: Arc<Stats>,
    /// To the ECS world.
    pub(crate) events: std::sync::mpsc::Sender<NetEvent>,
}

/// Table ids a bot reads rows of.
#[derive(Clone, Copy, Debug, Default)]
struct Tables {
    player: Option<u32>,
    creature: Option<u32>,
    node: Option<u32>,
}

impl Tables {
    /// Which of the view's tables (0 players, 1 creatures, 2 nodes; [`View::handles`]) table id `table` is.
    fn slot(self, table: u32) -> Option<usize> {
        [self.player, self.creature, self.node]
            .iter()
            .position(|t| *t == Some(table))
    }
}

/// Run one bot's session until [`Command::Close`], the end of its command channel, or the connection's end.
pub(crate) async fn run_bot(
    ctx: Arc<NetContext>,
    endpoint: quinn::Endpoint,
    entity: Entity,
    view: SharedView,
    cmds: mpsc::UnboundedReceiver<Command>,
) {
    let stats = ctx.stats.clone();
    match session(&ctx, &endpoint, entity, &view, cmds).await {
        Ok(End::Closed) => {}
        Ok(End::NeverConnected(reason)) => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("connect: {reason}"));
        }
        Ok(End::Lost(reason)) => {
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("disconnected: {reason}"));
        }
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("error: {e:#}"));
        }
    }
    lock(&view).connected = false;
    let _ = ctx.events.send(NetEvent::Ended(entity));
}

/// How a session ended.
enum End {
    /// Told to close.
    Closed,
    /// No `Welcome`.
    NeverConnected(String),
    /// The connection ended on its own after `Welcome`.
    Lost(String),
}

/// Read the next frame's payload into `out`.
async fn next_payload(
    recv: &mut quinn::RecvStream,
    frames: &mut FrameReader,
    buf: &mut [u8],
) -> anyhow::Result<Option<Vec<u8>>> {
    loop {
        if let Some(p) = frames.next_frame()? {
            return Ok(Some(p.to_vec()));
        }
        match recv.read(buf).await? {
            Some(n) => frames.push(&buf[..n]),
            None => return Ok(None),
        }
    }
}

async fn session(
    ctx: &NetContext,
    endpoint: &quinn::Endpoint,
    entity: Entity,
    view: &SharedView,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<End> {
    let stats = &ctx.stats;
    // Handshake, stream, Hello, Welcome.
    let handshake = async {
        let conn = endpoint
            .connect_with(ctx.config.clone(), ctx.addr, locus_client::SERVER_NAME)?
            .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let mut hello = Vec::new();
        locus_protocol::encode_frame(
            &ClientMessage::Hello {
                versions: vec![ctx.protocol],
                token: None,
            },
            &mut hello,
        );
        send.write_all(&hello).await?;
        let mut frames = FrameReader::new(MAX_SERVER_FRAME);
        let mut buf = vec![0; 64 * 1024];
        let first = next_payload(&mut recv, &mut frames, &mut buf)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream ended before Welcome"))?;
        let welcome = match locus_protocol::decode_frame::<ServerMessage>(&first)? {
            ServerMessage::Welcome(w) => w,
            other => anyhow::bail!("expected Welcome, got {other:?}"),
        };
        anyhow::Ok((conn, send, recv, frames, buf, welcome))
    };
    let (conn, mut send, mut recv, mut frames, mut buf, welcome) =
        match tokio::time::timeout(wire::CONNECT_TIMEOUT, handshake).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => return Ok(End::NeverConnected(format!("{e:#}"))),
            Err(_) => return Ok(End::NeverConnected("timed out".into())),
        };
    stats
        .connections
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(conn.clone());
    let id_of = |name: &str| {
        welcome
            .tables
            .iter()
            .find(|t| t.def.name == name)
            .map(|t| t.id.0)
    };
    let tables = Tables {
        player: id_of("player"),
        creature: id_of("creature"),
        node: id_of("resource_node"),
    };
    let identity = welcome.identity.0;
    {
        let mut names = stats
            .table_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if names.is_empty() {
            names.extend(welcome.tables.iter().map(|t| (t.id.0, t.def.name.clone())));
        }
    }
    let mut out = Vec::new();
    for (i, table) in ctx.tables.iter().enumerate() {
        locus_protocol::encode_frame(
            &ClientMessage::Subscribe {
                request: u32::try_from(i).unwrap_or(u32::MAX),
                table: table.clone(),
                filter: Filter::All,
            },
            &mut out,
        );
    }
    send.write_all(&out).await?;
    let mut next_request = 1000u32;
    let mut pending: HashMap<u32, (CallKind, Instant)> = HashMap::new();
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.connected.fetch_add(1, Ordering::Relaxed);
    {
        let mut v = lock(view);
        v.connected = true;
        v.stream_tick = welcome.tick;
    }
    // Version 4: positions come in datagrams too (until the connection ends: then the stream says how).
    let mut datagrams = welcome.version >= 4;
    let _ = ctx.events.send(NetEvent::Connected(entity));
    let end = loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Command::Call(kind, call)) => {
                    next_request = next_request.wrapping_add(1);
                    out.clear();
                    locus_protocol::encode_frame(
                        &ClientMessage::Call {
                            request: next_request,
                            reducer: call.reducer.to_owned(),
                            args: call.args,
                        },
                        &mut out,
                    );
                    pending.insert(next_request, (kind, Instant::now()));
                    stats.calls.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = send.write_all(&out).await {
                        break End::Lost(format!("send: {e}"));
                    }
                }
                Some(Command::Close) | None => {
                    conn.close(0u32.into(), b"done");
                    break End::Closed;
                }
            },
            read = recv.read(&mut buf) => match read {
                Ok(Some(n)) => {
                    frames.push(&buf[..n]);
                    while let Some(payload) = frames.next_frame()? {
                        if let Some(fatal) = handle_frame(
                            ctx, entity, view, tables, identity, &mut pending, payload,
                        ) {
                            conn.close(0u32.into(), b"fatal error");
                            return Ok(End::Lost(fatal));
                        }
                    }
                }
                Ok(None) => break End::Lost("the server finished the stream".into()),
                Err(e) => break End::Lost(e.to_string()),
            },
            // Cancel-safe: a datagram not taken stays in quinn's buffer.
            dgram = conn.read_datagram(), if datagrams => match dgram {
                Ok(bytes) => handle_datagram(stats, view, tables, &bytes),
                // The connection ended: the stream's read reports how, after any frames still buffered.
                Err(_) => datagrams = false,
            },
        }
    };
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    Ok(end)
}

/// Which list of a table delta a row came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowKind {
    /// Entered the view: row bytes.
    Insert,
    /// Changed in view: row bytes.
    Update,
    /// Left the view: primary-key bytes.
    Delete,
    /// Changed in view, as a patch of its changed columns (protocol version 2; see `locus_types::patch`); in
    /// version 3 it names the row by handle.
    Patch,
    /// Moved (protocol version 3; see `locus_protocol::compact`).
    Move(locus_protocol::compact::Move),
}

/// Handle one server frame; `Some(reason)` after a fatal error.
fn handle_frame(
    ctx: &NetContext,
    entity: Entity,
    view: &SharedView,
    tables: Tables,
    identity: [u8; 32],
    pending: &mut HashMap<u32, (CallKind, Instant)>,
    payload: &[u8],
) -> Option<String> {
    let stats = &ctx.stats;
    // A `Tick` is read in place (its rows are slices of the payload); any other message is decoded.
    match TickView::parse(payload) {
        Ok(Some(tick)) => {
            handle_tick(stats, view, tables, identity, &tick);
            return None;
        }
        Ok(None) => {}
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.note(e.to_string());
            return None;
        }
    }
    match locus_protocol::decode_frame::<ServerMessage>(payload) {
        Ok(ServerMessage::Result {
            request, outcome, ..
        }) => {
            if let Some((kind, sent)) = pending.remove(&request) {
                stats.rtt.record(sent.elapsed());
                let ok = outcome == CallOutcome::Ok;
                if !ok {
                    let i = CallKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
                    stats.refused[i].fetch_add(1, Ordering::Relaxed);
                }
                let _ = ctx.events.send(NetEvent::Result { entity, kind, ok });
            }
            None
        }
        Ok(ServerMessage::Error {
            code,
            message,
            request,
            fatal,
        }) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("{code:?}: {message}"));
            if let Some(r) = request
                && let Some((kind, _)) = pending.remove(&r)
                && matches!(code, ErrorCode::Busy | ErrorCode::RateLimited)
            {
                let _ = ctx.events.send(NetEvent::Result {
                    entity,
                    kind,
                    ok: false,
                });
            }
            fatal.then(|| format!("{code:?}: {message}"))
        }
        Ok(_) => None,
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.note(format!("bad frame: {e}"));
            None
        }
    }
}

/// Apply one `Tick` (read in place) to the bot's view and count its rows.
fn handle_tick(
    stats: &Stats,
    view: &SharedView,
    tables: Tables,
    identity: [u8; 32],
    tick: &TickView<'_>,
) {
    let t = tick.tick();
    let mut rows = 0u64;
    let mut others = 0u64;
    // Changes of other players' rows applied: `others` and the inserts of other players.
    let mut changes = 0u64;
    let mut per_table = [(0u64, 0u64); MAX_TABLES];
    {
        let mut v = lock(view);
        let v = &mut *v;
        let mut row =
            |table: u32, kind: RowKind, bytes: &[u8], handle: Option<u32>, compact: bool| {
                rows += 1;
                if let Some(t) = per_table.get_mut(table as usize) {
                    t.0 += 1;
                    t.1 += match kind {
                        RowKind::Move(m) => m.encoded_len(),
                        _ => bytes.len(),
                    } as u64;
                }
                let Some(k) = tables.slot(table) else {
                    return;
                };
                // Versions 3 and 4: an insert gives its row a handle, a delete frees it, a patch or move names its
                // row by handle; every change sets the row's `at` (version 4's rule for places).
                let by_handle = |v: &View, h: u32| v.handles[k].id(h);
                let handles = &mut v.handles[k];
                match kind {
                    RowKind::Insert => {
                        if let (Some(h), Some((id, _, _))) = (handle, wire::id_and_pos(bytes)) {
                            handles.insert(h, id, t);
                        }
                    }
                    RowKind::Update => {
                        if let Some((id, _, _)) = wire::id_and_pos(bytes) {
                            handles.touch(id, t);
                        }
                    }
                    RowKind::Delete => {
                        if let Some(id) = wire::key_u64(bytes) {
                            handles.remove(id);
                        }
                    }
                    RowKind::Patch if compact => {
                        let first = wire::patch_id_and_pos(bytes).map(|(first, _)| first);
                        if let Some(h) = first.and_then(|h| u32::try_from(h).ok()) {
                            handles.touch_handle(h, t);
                        }
                    }
                    RowKind::Patch => {}
                    RowKind::Move(m) => {
                        if handles.newer(m.handle, t) {
                            return;
                        }
                        handles.touch_handle(m.handle, t);
                    }
                }
                let patch = match kind {
                    RowKind::Patch => match wire::patch_id_and_pos(bytes) {
                        // Version 3 names the row by handle, earlier versions by key.
                        Some((first, pos)) if compact => {
                            by_handle(v, first as u32).map(|id| (id, pos))
                        }
                        Some((first, pos)) => Some((first, pos)),
                        None => None,
                    },
                    RowKind::Move(m) => by_handle(v, m.handle)
                        .and_then(|id| {
                            let map = match k {
                                0 if v.me == Some(id) => return v.pos.map(|p| (id, p)),
                                0 => &v.players,
                                1 => &v.creatures,
                                _ => &v.nodes,
                            };
                            map.get(&id).map(|p| (id, *p))
                        })
                        .and_then(|(id, p)| {
                            let [x, y] = m.apply([p.x, p.y])?;
                            Some((id, Some(Vec2::new(x, y))))
                        }),
                    _ => None,
                };
                if Some(table) == tables.player {
                    match kind {
                        RowKind::Insert | RowKind::Update => {
                            let Some((id, pos, rest)) = wire::id_and_pos(bytes) else {
                                return;
                            };
                            let mine = v.me == Some(id)
                                || (v.me.is_none()
                                    && kind == RowKind::Insert
                                    && wire::identity_after_pos(rest) == Some(identity));
                            if mine {
                                v.me = Some(id);
                                v.pos = Some(pos);
                            } else {
                                v.players.insert(id, pos);
                                changes += 1;
                                if kind == RowKind::Update {
                                    others += 1;
                                } else {
                                    v.other_inserts += 1;
                                }
                            }
                        }
                        RowKind::Patch | RowKind::Move(_) => {
                            let Some((id, pos)) = patch else {
                                return;
                            };
                            if v.me == Some(id) {
                                if pos.is_some() {
                                    v.pos = pos;
                                }
                            } else {
                                if let Some(pos) = pos {
                                    v.players.insert(id, pos);
                                }
                                others += 1;
                                changes += 1;
                            }
                        }
                        RowKind::Delete => {
                            if let Some(k) = wire::key_u64(bytes) {
                                v.players.remove(&k);
                            }
                        }
                    }
                } else if Some(table) == tables.creature || Some(table) == tables.node {
                    let map = if Some(table) == tables.creature {
                        &mut v.creatures
                    } else {
                        &mut v.nodes
                    };
                    match kind {
                        RowKind::Insert | RowKind::Update => {
                            if let Some((id, pos, _)) = wire::id_and_pos(bytes) {
                                map.insert(id, pos);
                            }
                        }
                        RowKind::Patch | RowKind::Move(_) => {
                            if let Some((id, Some(pos))) = patch {
                                map.insert(id, pos);
                            }
                        }
                        RowKind::Delete => {
                            if let Some(k) = wire::key_u64(bytes) {
                                map.remove(&k);
                            }
                        }
                    }
                }
            };
        for delta in tick.tables() {
            let table = delta.table().0;
            let compact = delta.is_compact();
            // As `protocol.md` says: deletes, updates, patches, moves, then inserts (a handle a delete frees may
            // be given again by an insert of the same tick in version 3).
            for (kind, list) in [
                (RowKind::Delete, delta.deletes()),
                (RowKind::Update, delta.updates()),
                (RowKind::Patch, delta.patches()),
            ] {
                for bytes in list {
                    row(table, kind, bytes, None, compact);
                }
            }
            for m in delta.moves() {
                row(table, RowKind::Move(m), &[], None, compact);
            }
            let mut handles = delta.handles();
            for bytes in delta.inserts() {
                row(table, RowKind::Insert, bytes, handles.next(), compact);
            }
        }
        v.other_updates += others;
        v.stream_tick = v.stream_tick.max(t);
    }
    stats.ticks.fetch_add(1, Ordering::Relaxed);
    stats.rows.fetch_add(rows, Ordering::Relaxed);
    for (i, &(n, b)) in per_table.iter().enumerate() {
        if n > 0 {
            stats.table_rows[i].fetch_add(n, Ordering::Relaxed);
            stats.table_bytes[i].fetch_add(b, Ordering::Relaxed);
        }
    }
    // `others ≤ changes`: every update of another player is one of its row's changes.
    if changes > 0 {
        let late = wire::now_micros().saturating_sub(tick.time());
        if others > 0 {
            stats.other_updates.fetch_add(others, Ordering::Relaxed);
            stats.latency.record_micros(late);
        }
        stats.row_latency.record_n(late, changes);
    }
}

/// What one position datagram did to a bot's view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Placed {
    /// Places received (of every table).
    places: u64,
    /// Places of other players applied.
    others: u64,
    /// Places of the bot's tables dropped by the rule ([`Handles::place`]).
    dropped: u64,
}

/// Apply a position datagram's places to `v` by protocol version 4's rule ([`Handles::place`]; places of tables
/// the bot does not keep are only counted), and add each place's row and record bytes to `per_table`.
fn apply_places(
    v: &mut View,
    tables: Tables,
    d: &Datagram<'_>,
    per_table: &mut [(u64, u64); MAX_TABLES],
) -> Placed {
    let mut done = Placed::default();
    let s = v.stream_tick;
    for (table, places) in d.sections() {
        let k = tables.slot(table.0);
        let mut tally = per_table.get_mut(table.0 as usize);
        // Each record is the offset from the one before it (the first from (0, 0)): as long as a move of it.
        let mut last = [0i32; 2];
        for p in places {
            done.places += 1;
            if let Some(t) = tally.as_deref_mut() {
                let step = Move {
                    handle: p.handle,
                    dx: i64::from(p.q[0]) - i64::from(last[0]),
                    dy: i64::from(p.q[1]) - i64::from(last[1]),
                };
                t.0 += 1;
                t.1 += step.encoded_len() as u64;
            }
            last = p.q;
            let Some(k) = k else { continue };
            let Some(id) = v.handles[k].place(p.handle, d.tick, s) else {
                done.dropped += 1;
                continue;
            };
            let pos = Vec2::new(dequantize(p.q[0]), dequantize(p.q[1]));
            match k {
                0 if v.me == Some(id) => v.pos = Some(pos),
                0 => {
                    v.players.insert(id, pos);
                    done.others += 1;
                }
                1 => {
                    v.creatures.insert(id, pos);
                }
                _ => {
                    v.nodes.insert(id, pos);
                }
            }
        }
    }
    done
}

/// Read one datagram of a version-4 session: apply its places to the bot's view and count them. A datagram with
/// a place of another player that applies gives one update-latency sample, as a `Tick` frame with an update of
/// one does, and one per-row-change sample for each such place.
fn handle_datagram(stats: &Stats, view: &SharedView, tables: Tables, bytes: &[u8]) {
    stats.datagrams.fetch_add(1, Ordering::Relaxed);
    let d = match Datagram::parse(bytes) {
        Ok(d) => d,
        Err(_) => {
            // Not fatal, not an error of the session: `protocol.md` says to ignore it whole.
            stats.malformed_datagrams.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut per_table = [(0u64, 0u64); MAX_TABLES];
    let done = {
        let mut v = lock(view);
        let done = apply_places(&mut v, tables, &d, &mut per_table);
        v.other_updates += done.others;
        done
    };
    stats.rows.fetch_add(done.places, Ordering::Relaxed);
    for (i, &(n, b)) in per_table.iter().enumerate() {
        if n > 0 {
            stats.table_rows[i].fetch_add(n, Ordering::Relaxed);
            stats.table_bytes[i].fetch_add(b, Ordering::Relaxed);
        }
    }
    if done.dropped > 0 {
        stats
            .places_dropped
            .fetch_add(done.dropped, Ordering::Relaxed);
    }
    if done.others > 0 {
        stats
            .other_updates
            .fetch_add(done.others, Ordering::Relaxed);
        let late = wire::now_micros().saturating_sub(d.time);
        stats.latency.record_micros(late);
        stats.row_latency.record_n(late, done.others);
    }
}

#[cfg(test)]
mod tests {
    use locus_protocol::places::PlacesWriter;
    use locus_protocol::{TableDelta, WireRow};
    use locus_types::TableId;

    use super::*;

    /// The player table's id in these tests.
    const PLAYER: u32 = 3;
    /// The bot's identity.
    const ME: [u8; 32] = [7; 32];

    fn tables() -> Tables {
        Tables {
            player: Some(PLAYER),
            creature: Some(4),
            node: None,
        }
    }

    fn player_row(id: u64, pos: Vec2, identity: [u8; 32]) -> WireRow {
        WireRow(crate::wire::tests::player_row(id, pos, identity))
    }

    fn key(id: u64) -> WireRow {
        WireRow(rmp_serde::to_vec(&id).unwrap())
    }

    /// A version-3/4 delta of the player table: `inserts` with their handles, `updates`, `deletes`, `moves`.
    fn delta(
        inserts: &[(u32, WireRow)],
        updates: Vec<WireRow>,
        deletes: Vec<WireRow>,
        moves: &[Move],
    ) -> TableDelta {
        let mut handles = Vec::new();
        for (h, _) in inserts {
            locus_protocol::compact::put_uvarint(&mut handles, *h);
        }
        let mut records = Vec::new();
        for m in moves {
            m.put(&mut records);
        }
        TableDelta {
            table: TableId(PLAYER),
            inserts: inserts.iter().map(|(_, r)| r.clone()).collect(),
            updates,
            deletes,
            patches: Vec::new(),
            handles: Some(WireRow(handles)),
            moves: Some(WireRow(records)),
        }
    }

    /// Apply a `Tick` of `tick` with `deltas` to the bot's view, as the bot's task does.
    fn stream(stats: &Stats, view: &SharedView, tick: u64, deltas: Vec<TableDelta>) {
        let mut frame = Vec::new();
        locus_protocol::encode_frame(
            &ServerMessage::Tick {
                tick,
                time: wire::now_micros(),
                tables: deltas,
            },
            &mut frame,
        );
        let parsed = TickView::parse(&frame[4..]).unwrap().unwrap();
        handle_tick(stats, view, tables(), ME, &parsed);
    }

    /// Receive one datagram of places (`(table, handle, metres)`) of `tick`, as the bot's task does.
    fn datagram(stats: &Stats, view: &SharedView, tick: u64, places: &[(u32, u32, [f32; 2])]) {
        let mut w = PlacesWriter::default();
        for &(table, h, [x, y]) in places {
            let q = |v: f32| locus_protocol::compact::quantize(v).unwrap();
            w.push(TableId(table), h, [q(x), q(y)]);
        }
        let mut out = Vec::new();
        w.write(tick, wire::now_micros(), &mut out);
        assert_eq!(out.len(), 1);
        handle_datagram(stats, view, tables(), &out[0]);
    }

    fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    fn other(view: &SharedView, id: u64) -> Option<Vec2> {
        lock(view).players.get(&id).copied()
    }

    /// The bot (player 1, handle 0) and player 2 (handle 1) entered at tick 100.
    fn joined() -> (Stats, SharedView) {
        let stats = Stats::default();
        let view = SharedView::default();
        lock(&view).stream_tick = 90;
        let inserts = [
            (0, player_row(1, Vec2::new(1.0, 1.0), ME)),
            (1, player_row(2, Vec2::new(2.0, 2.0), [9; 32])),
        ];
        stream(
            &stats,
            &view,
            100,
            vec![delta(&inserts, vec![], vec![], &[])],
        );
        assert_eq!(lock(&view).me, Some(1));
        assert_eq!(lock(&view).stream_tick, 100);
        (stats, view)
    }

    #[test]
    fn places_apply_to_the_rows_their_handles_name_and_measure_latency() {
        let (stats, view) = joined();
        datagram(
            &stats,
            &view,
            101,
            &[(PLAYER, 0, [10.0, 20.0]), (PLAYER, 1, [30.25, -40.5])],
        );
        assert_eq!(lock(&view).pos, Some(Vec2::new(10.0, 20.0)));
        assert_eq!(other(&view, 2), Some(Vec2::new(30.25, -40.5)));
        assert_eq!(get(&stats.datagrams), 1);
        assert_eq!(get(&stats.places_dropped), 0);
        // One latency sample per datagram with another player's place; one update of another player.
        assert_eq!(stats.latency.snapshot().count(), 1);
        assert_eq!(get(&stats.other_updates), 1);
        assert_eq!(lock(&view).other_updates, 1);
        // Counted as rows of the player table: 2 inserts and 2 places (records of 1 + 2 + 2 bytes each: the second
        // is (+20.25 m, -60.5 m) from the first).
        assert_eq!(get(&stats.table_rows[PLAYER as usize]), 4);
        assert_eq!(get(&stats.rows), 4);
        let inserts: u64 = [1, 2]
            .map(|id| {
                player_row(id, Vec2::new(id as f32, id as f32), [0; 32])
                    .0
                    .len() as u64
            })
            .iter()
            .sum();
        assert_eq!(get(&stats.table_bytes[PLAYER as usize]), inserts + 10);

        // The bot's own place only: it moves, but it is not another player's update.
        datagram(&stats, &view, 102, &[(PLAYER, 0, [11.0, 20.0])]);
        assert_eq!(lock(&view).pos, Some(Vec2::new(11.0, 20.0)));
        assert_eq!(stats.latency.snapshot().count(), 1);
        assert_eq!(get(&stats.other_updates), 1);
    }

    #[test]
    fn the_per_row_measure_counts_each_change_of_another_players_row() {
        let (stats, view) = joined();
        let rows = |stats: &Stats| stats.row_latency.snapshot().count();
        // Player 2's insert counts (the frame measure takes no inserts); the bot's own none.
        assert_eq!((rows(&stats), stats.latency.snapshot().count()), (1, 0));
        let p3 = player_row(3, Vec2::new(3.0, 3.0), [3; 32]);
        let p4 = player_row(4, Vec2::new(4.0, 4.0), [4; 32]);
        stream(
            &stats,
            &view,
            101,
            vec![delta(&[(2, p3), (3, p4)], vec![], vec![], &[])],
        );
        assert_eq!(rows(&stats), 3);
        // One frame moving the bot and three others: three samples of one value, one sample per frame.
        let before = stats.row_latency.snapshot();
        let step = |handle| Move {
            handle,
            dx: 100,
            dy: 0,
        };
        stream(
            &stats,
            &view,
            102,
            vec![delta(&[], vec![], vec![], &[0, 1, 2, 3].map(step))],
        );
        let frame = stats.row_latency.snapshot().since(&before);
        assert_eq!(frame.count(), 3);
        assert_eq!(frame.quantile_micros(0.0), frame.quantile_micros(1.0));
        assert_eq!(stats.latency.snapshot().count(), 1);
        // A datagram placing the bot, two others and a handle naming no row: two samples.
        datagram(
            &stats,
            &view,
            103,
            &[
                (PLAYER, 0, [1.0, 1.0]),
                (PLAYER, 1, [2.0, 2.0]),
                (PLAYER, 3, [4.0, 4.0]),
                (PLAYER, 9, [9.0, 9.0]),
            ],
        );
        assert_eq!(rows(&stats), 8);
        assert_eq!(stats.latency.snapshot().count(), 2);
        // Only a dropped (stale) place, then a delete: none.
        datagram(&stats, &view, 103, &[(PLAYER, 1, [5.0, 5.0])]);
        stream(
            &stats,
            &view,
            104,
            vec![delta(&[], vec![], vec![key(4)], &[])],
        );
        assert_eq!(get(&stats.places_dropped), 2);
        assert_eq!(rows(&stats), 8);
        assert_eq!(stats.latency.snapshot().count(), 2);
        // A whole-row update of another player counts as well.
        let moved = player_row(2, Vec2::new(6.0, 6.0), [9; 32]);
        stream(
            &stats,
            &view,
            105,
            vec![delta(&[], vec![moved], vec![], &[])],
        );
        assert_eq!(rows(&stats), 9);
    }

    #[test]
    fn places_not_newer_than_the_position_held_are_dropped() {
        let (stats, view) = joined();
        datagram(&stats, &view, 105, &[(PLAYER, 1, [5.0, 5.0])]);
        // The same tick again, and an older one arriving late.
        datagram(&stats, &view, 105, &[(PLAYER, 1, [6.0, 6.0])]);
        datagram(&stats, &view, 103, &[(PLAYER, 1, [3.0, 3.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(5.0, 5.0)));
        assert_eq!(get(&stats.places_dropped), 2);
        assert_eq!(
            stats.latency.snapshot().count(),
            1,
            "dropped places are no update"
        );
        // A newer one applies.
        datagram(&stats, &view, 106, &[(PLAYER, 1, [7.0, 7.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(7.0, 7.0)));
    }

    #[test]
    fn a_change_from_the_stream_is_newer_than_places_of_earlier_ticks() {
        let (stats, view) = joined();
        // Player 2 came to rest at tick 110: sent whole on the stream. A place of tick 109 arrives after it.
        let rest = player_row(2, Vec2::new(50.0, 50.0), [9; 32]);
        stream(
            &stats,
            &view,
            110,
            vec![delta(&[], vec![rest], vec![], &[])],
        );
        datagram(&stats, &view, 109, &[(PLAYER, 1, [49.0, 49.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(50.0, 50.0)));
        // A move on the stream (a version-4 session without datagrams) sets `at` too.
        let step = Move {
            handle: 1,
            dx: 100,
            dy: 0,
        };
        stream(
            &stats,
            &view,
            112,
            vec![delta(&[], vec![], vec![], &[step])],
        );
        assert_eq!(other(&view, 2), Some(Vec2::new(51.0, 50.0)));
        datagram(&stats, &view, 111, &[(PLAYER, 1, [49.0, 49.0])]);
        datagram(&stats, &view, 112, &[(PLAYER, 1, [49.0, 49.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(51.0, 50.0)));
        assert_eq!(get(&stats.places_dropped), 3);
        datagram(&stats, &view, 113, &[(PLAYER, 1, [52.0, 50.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(52.0, 50.0)));
        // A place of tick 115 overtakes the stream's move of tick 114 (a step from an older position): the move
        // is skipped; one of tick 116 applies.
        datagram(&stats, &view, 115, &[(PLAYER, 1, [55.0, 50.0])]);
        stream(
            &stats,
            &view,
            114,
            vec![delta(&[], vec![], vec![], &[step])],
        );
        assert_eq!(other(&view, 2), Some(Vec2::new(55.0, 50.0)));
        stream(
            &stats,
            &view,
            116,
            vec![delta(&[], vec![], vec![], &[step])],
        );
        assert_eq!(other(&view, 2), Some(Vec2::new(56.0, 50.0)));
    }

    #[test]
    fn places_of_rows_not_in_view_since_their_tick_are_dropped() {
        let (stats, view) = joined();
        // A place of a handle no insert gave yet (it may arrive before the stream's frame of its tick).
        datagram(&stats, &view, 101, &[(PLAYER, 2, [1.0, 1.0])]);
        // Player 3 enters at tick 120 with handle 2: a place of tick 115 (before it entered) is dropped.
        let p3 = player_row(3, Vec2::new(3.0, 3.0), [3; 32]);
        stream(
            &stats,
            &view,
            120,
            vec![delta(&[(2, p3)], vec![], vec![], &[])],
        );
        datagram(&stats, &view, 115, &[(PLAYER, 2, [4.0, 4.0])]);
        assert_eq!(other(&view, 3), Some(Vec2::new(3.0, 3.0)));
        // Player 2 leaves at tick 121: its handle names no row, and a later place does not bring it back.
        stream(
            &stats,
            &view,
            121,
            vec![delta(&[], vec![], vec![key(2)], &[])],
        );
        datagram(&stats, &view, 121, &[(PLAYER, 1, [8.0, 8.0])]);
        assert_eq!(other(&view, 2), None);
        assert_eq!(get(&stats.places_dropped), 3);
        assert_eq!(get(&stats.other_updates), 0);
        // Player 3's own places apply.
        datagram(&stats, &view, 122, &[(PLAYER, 2, [4.0, 4.0])]);
        assert_eq!(other(&view, 3), Some(Vec2::new(4.0, 4.0)));
    }

    #[test]
    fn places_too_far_ahead_of_the_stream_are_dropped() {
        let (stats, view) = joined();
        // S = 100: tick 100 + HANDLE_REST is the last that applies.
        datagram(&stats, &view, 101 + HANDLE_REST, &[(PLAYER, 1, [9.0, 9.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(2.0, 2.0)));
        assert_eq!(get(&stats.places_dropped), 1);
        datagram(&stats, &view, 100 + HANDLE_REST, &[(PLAYER, 1, [9.0, 9.0])]);
        assert_eq!(other(&view, 2), Some(Vec2::new(9.0, 9.0)));
    }

    #[test]
    fn the_entered_clause_drops_a_place_older_than_the_handle() {
        let mut h = Handles::default();
        h.insert(0, 42, 120);
        assert_eq!(h.place(0, 119, 120), None);
        assert_eq!(h.place(0, 121, 120), Some(42));
        // With `at` held back below `entered` (no stream change does this; the clause stands on its own).
        h.slots[0].as_mut().unwrap().at = 0;
        assert_eq!(h.place(0, 119, 120), None);
        // A handle given to another row forgets the old one; a delete frees it.
        h.insert(0, 43, 200);
        assert_eq!((h.id(0), h.of.get(&42)), (Some(43), None));
        h.remove(43);
        assert_eq!((h.id(0), h.place(0, 201, 200)), (None, None));
    }

    #[test]
    fn malformed_datagrams_are_counted_and_ignored() {
        let (stats, view) = joined();
        handle_datagram(&stats, &view, tables(), &[1, 101, 5, PLAYER as u8, 4, 1, 0]);
        handle_datagram(&stats, &view, tables(), &[]);
        assert_eq!(get(&stats.datagrams), 2);
        assert_eq!(get(&stats.malformed_datagrams), 2);
        assert_eq!(get(&stats.errors), 0);
        assert_eq!(other(&view, 2), Some(Vec2::new(2.0, 2.0)));
    }

    #[test]
    fn a_tick_applies_deletes_before_inserts() {
        // A row leaving and another entering in one tick, given the freed handle (version 3), and a key that
        // leaves and comes back: both in view after it.
        let (stats, view) = joined();
        let p3 = player_row(3, Vec2::new(3.0, 3.0), [3; 32]);
        let back = player_row(2, Vec2::new(4.0, 4.0), [9; 32]);
        stream(
            &stats,
            &view,
            101,
            vec![delta(&[(1, p3), (5, back)], vec![], vec![key(2)], &[])],
        );
        assert_eq!(other(&view, 2), Some(Vec2::new(4.0, 4.0)));
        assert_eq!(other(&view, 3), Some(Vec2::new(3.0, 3.0)));
        let v = lock(&view);
        assert_eq!((v.handles[0].id(1), v.handles[0].id(5)), (Some(3), Some(2)));
    }
}
