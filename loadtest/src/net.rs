//! The network side of a bot: one tokio task per bot speaking the protocol over a shared quinn endpoint.
//!
//! A task connects, says `Hello`, subscribes, and then does two things until told to stop: it sends the calls the
//! bot's brain (the ECS side, [`crate::bots`]) queues as [`Command`]s, and it reads the server's frames, keeping
//! the bot's [`View`] (its own position and what is around it) and the shared [`Stats`] up to date. Results and the
//! end of the session go back to the ECS world as [`NetEvent`]s over a channel.
//!
//! Measured here, where the frames arrive:
//! - **update latency**: for each `Tick` frame carrying an update of another player, now − the frame's `time`
//!   (the tick's timestamp; bots and server share the machine's clock);
//! - **reducer round trip**: `Call` sent → its `Result` read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bevy_ecs::entity::Entity;
use game_module::Vec2;
use locus_module::ReducerCall;
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
    /// Protocol version 3: the id of the row each handle names, per table (players, creatures, nodes).
    pub(crate) handles: [Vec<u64>; 3],
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
    /// Rows (inserts, updates, deletes) received.
    pub(crate) rows: AtomicU64,
    /// Updates of other players received.
    pub(crate) other_updates: AtomicU64,
    /// Rows received per table id (ids ≥ [`MAX_TABLES`] are not counted here).
    pub(crate) table_rows: [AtomicU64; MAX_TABLES],
    /// Row (or key) bytes received per table id.
    pub(crate) table_bytes: [AtomicU64; MAX_TABLES],
    /// Table names by id, from the first `Welcome`.
    pub(crate) table_names: Mutex<Vec<(u32, String)>>,
    /// Update latency, µs.
    pub(crate) latency: Recorder,
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
    lock(view).connected = true;
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
    let mut rows = 0u64;
    let mut others = 0u64;
    let mut per_table = [(0u64, 0u64); MAX_TABLES];
    {
        let mut v = lock(view);
        let v = &mut *v;
        // Version 3: the handle a row's patch or move names is an id through the table's handles.
        let slot = |table: u32| {
            [tables.player, tables.creature, tables.node]
                .iter()
                .position(|t| *t == Some(table))
        };
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
                let Some(k) = slot(table) else {
                    return;
                };
                // Where `handle` is given: an insert's (record it) or a patch's or move's (resolve it).
                let by_handle = |v: &View, h: u32| v.handles[k].get(h as usize).copied();
                if let (RowKind::Insert, Some(h), Some((id, _, _))) =
                    (kind, handle, wire::id_and_pos(bytes))
                {
                    let list = &mut v.handles[k];
                    if list.len() <= h as usize {
                        list.resize(h as usize + 1, u64::MAX);
                    }
                    list[h as usize] = id;
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
            // Wire order, as the rows arrive; version 3's moves last.
            let mut handles = delta.handles();
            for (kind, list) in [
                (RowKind::Insert, delta.inserts()),
                (RowKind::Update, delta.updates()),
                (RowKind::Delete, delta.deletes()),
                (RowKind::Patch, delta.patches()),
            ] {
                for bytes in list {
                    let handle = match kind {
                        RowKind::Insert => handles.next(),
                        _ => None,
                    };
                    row(table, kind, bytes, handle, compact);
                }
            }
            for m in delta.moves() {
                row(table, RowKind::Move(m), &[], None, compact);
            }
        }
        v.other_updates += others;
    }
    stats.ticks.fetch_add(1, Ordering::Relaxed);
    stats.rows.fetch_add(rows, Ordering::Relaxed);
    for (i, &(n, b)) in per_table.iter().enumerate() {
        if n > 0 {
            stats.table_rows[i].fetch_add(n, Ordering::Relaxed);
            stats.table_bytes[i].fetch_add(b, Ordering::Relaxed);
        }
    }
    if others > 0 {
        stats.other_updates.fetch_add(others, Ordering::Relaxed);
        stats
            .latency
            .record_micros(wire::now_micros().saturating_sub(tick.time()));
    }
}
