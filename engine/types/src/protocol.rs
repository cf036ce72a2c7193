//! The client protocol, version 1: the messages between a client and the server, and how they are framed.
//!
//! `engine/docs/protocol.md` is the contract (written so a client in another language can be built from it
//! alone); this module is its Rust form, shared by the server (`locus-server`) and the client SDK
//! (`locus-client`).
//!
//! - A connection is one QUIC connection; the client opens **one bidirectional stream** and every message in both
//!   directions travels on it, in order.
//! - A **frame** is a 4-byte big-endian length followed by that many bytes: one MessagePack value, a
//!   [`ClientMessage`] or a [`ServerMessage`] as `rmp_serde::to_vec` writes it (an enum is a one-entry map from the
//!   variant name to the array of its fields; a unit variant is its name as a string; a struct is an array of its
//!   fields in order).
//! - Rows travel as the bytes of the one row encoding ([`crate::codec`]) inside a MessagePack `bin`, never
//!   re-encoded; so do keys (a deleted row's key, a patch's key): the bytes of the key column inside the row.
//!
//! Invariant: [`decode_frame`] accepts exactly the frames [`encode_frame`] can write for messages within the size
//! limit, and decoding an encoded message gives the message back.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Identity, ReducerDef, TableDef, TableId};

/// The newest protocol version, the one this code's clients offer.
///
/// - Version 1: rows change as whole rows (`TableDelta::updates`).
/// - Version 2: also as patches of the changed columns (`TableDelta::patches`, see [`crate::patch`]). Otherwise
///   the same messages: a version-1 peer never sees a `patches` field.
pub const PROTOCOL_VERSION: u16 = 2;

/// Every version the server speaks; it picks the highest one a client offers.
pub const SUPPORTED_VERSIONS: [u16; 2] = [1, 2];

/// Largest frame payload a client may send (bytes after the length prefix). A larger length prefix closes the
/// connection with [`ErrorCode::FrameTooLarge`].
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Largest frame payload an operator's session (the admin identity) may send: a `Publish` carries a module.
pub const MAX_ADMIN_FRAME: usize = 64 * 1024 * 1024;

/// Largest frame payload the server sends. A tick's rows for one client that would exceed it are split over
/// several `Tick` frames of the same tick.
pub const MAX_SERVER_FRAME: usize = 4 * 1024 * 1024;

/// Length of the frame prefix.
pub const FRAME_PREFIX: usize = 4;

/// A client's secret: presented in `Hello`, it restores the identity it was issued with. 32 random bytes; the
/// server keeps only a hash (the identity is `SHA-256("locus identity v1" ‖ token)`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Token(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret by accident.
        f.write_str("Token(…)")
    }
}

impl Token {
    /// The token as 64 lowercase hex digits (how clients store it).
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse 64 hex digits (surrounding whitespace ignored).
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Token> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Token(out))
    }
}

/// A message from a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message, exactly once. `versions`: the protocol versions the client speaks; the server picks the
    /// highest it also speaks. `token`: a token from an earlier `Welcome` to restore that identity, or none for a
    /// new identity.
    Hello {
        /// Protocol versions the client speaks.
        versions: Vec<u16>,
        /// The client's token, if it has one.
        token: Option<Token>,
    },
    /// Call a client reducer. Answered by one [`ServerMessage::Result`] with the same `request` id.
    Call {
        /// Chosen by the client, echoed in the result.
        request: u32,
        /// The reducer's name.
        reducer: String,
        /// The arguments: one MessagePack array, one element per parameter.
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
    },
    /// Subscribe to a public table (replacing an earlier subscription to it). Answered by
    /// [`ServerMessage::Subscribed`] or an [`ServerMessage::Error`] with the same `request` id; the rows come in
    /// `Tick` messages.
    Subscribe {
        /// Chosen by the client, echoed in the answer.
        request: u32,
        /// The table's name.
        table: String,
        /// Which rows.
        filter: Filter,
    },
    /// End a subscription; its rows are deleted from the client's view in a later `Tick`. Answered by
    /// [`ServerMessage::Unsubscribed`].
    Unsubscribe {
        /// Chosen by the client, echoed in the answer.
        request: u32,
        /// The table's name.
        table: String,
    },
    /// An operator's command (the `locus` CLI). Only the server's admin identity may send it; anyone else gets
    /// [`ErrorCode::Forbidden`]. Answered by [`ServerMessage::Admin`] with the same `request` id.
    Admin {
        /// Chosen by the client, echoed in the answer.
        request: u32,
        /// What to do.
        command: AdminCommand,
    },
}

/// What an operator can ask of a running world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Run a reducer as the server itself (so admin-only reducers accept it), in the next tick. Answered by
    /// [`AdminReply::Called`] once the tick is durable.
    Call {
        /// The reducer.
        reducer: String,
        /// One MessagePack array, one element per parameter.
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
    },
    /// A read-only SQL `SELECT` over any table, private ones included, at a tick boundary. Answered by
    /// [`AdminReply::Rows`].
    Query {
        /// The statement.
        sql: String,
    },
    /// The module's last `tail` log lines ([`AdminReply::Logs`]); with `follow`, every later line too, in
    /// further `Logs` replies of the same request, until the connection ends.
    Logs {
        /// How many recent lines (the server keeps the last 1,000).
        tail: u32,
        /// Keep sending new lines.
        follow: bool,
    },
    /// Write a snapshot of the world now. Answered by [`AdminReply::Snapshot`] once it is durable.
    Snapshot,
    /// Replace the running module with `wasm` at a tick boundary, migrating the data if the schema change is
    /// compatible. Answered by [`AdminReply::Published`] or [`AdminReply::Refused`] (which names every
    /// incompatible change; the old module keeps running).
    Publish {
        /// The new module.
        #[serde(with = "serde_bytes")]
        wasm: Vec<u8>,
    },
}

/// The answer to an [`AdminCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminReply {
    /// The outcome of a `Call` and its tick.
    Called {
        /// The tick it ran in.
        tick: u64,
        /// What happened.
        outcome: CallOutcome,
    },
    /// A query's result: JSON `{"columns": [..], "rows": [[..], ..], "truncated": bool}`.
    Rows {
        /// The result as JSON text.
        json: String,
    },
    /// Module log lines, oldest first.
    Logs {
        /// The lines.
        lines: Vec<ModuleLogLine>,
    },
    /// A snapshot of `tick` is durable.
    Snapshot {
        /// Its tick.
        tick: u64,
    },
    /// The new module runs from the tick after `tick`; `changes` lists what changed (empty: the same schema).
    Published {
        /// The last tick of the old module.
        tick: u64,
        /// Each change, for people.
        changes: Vec<String>,
    },
    /// The command could not be done; nothing changed.
    Refused {
        /// Why, for people.
        message: String,
    },
}

/// One line of the module's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleLogLine {
    /// The tick of the call that wrote it.
    pub tick: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The reducer that wrote it.
    pub reducer: String,
    /// The text.
    pub message: String,
}

/// Which rows of a table a subscription wants. Of a spatial table, only rows inside the client's area of interest
/// (which the module sets) are ever sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// Every row.
    All,
    /// Rows whose `column` holds `value` (the column's encoding, as in a row).
    Eq {
        /// The column's name.
        column: String,
        /// The value, encoded as the column's values are.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Rows whose owner column is the client's identity.
    Owner,
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to `Hello`.
    Welcome(Welcome),
    /// The result of a `Call`, sent once the tick it ran in is durable (with that tick's `Tick` message right
    /// after it).
    Result {
        /// The call's request id.
        request: u32,
        /// The tick the call ran in.
        tick: u64,
        /// What happened.
        outcome: CallOutcome,
    },
    /// A subscription took effect.
    Subscribed {
        /// The request id.
        request: u32,
        /// The table's id.
        table: TableId,
    },
    /// A subscription ended.
    Unsubscribed {
        /// The request id.
        request: u32,
        /// The table's id.
        table: TableId,
    },
    /// What changed in the client's view in one durable tick. Sent only for ticks that changed its view.
    Tick {
        /// The tick.
        tick: u64,
        /// The tick's timestamp, in microseconds since the Unix epoch: the time its reducers saw
        /// (`ctx.timestamp`), taken when the tick started. A client on the same clock can measure update latency
        /// from it; any client can use it to interpolate between ticks.
        time: u64,
        /// Per table.
        tables: Vec<TableDelta>,
    },
    /// The answer to a [`ClientMessage::Admin`] (sent only to the admin identity).
    Admin {
        /// The command's request id.
        request: u32,
        /// The answer.
        reply: AdminReply,
    },
    /// Something the client did was refused. If `fatal`, the server closes the connection after this frame.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The request it answers, if any.
        request: Option<u32>,
        /// Whether the connection is closed after it.
        fatal: bool,
    },
}

/// What the server tells a client when it connects. (A newtype variant of a struct encodes exactly as the struct's
/// fields in a variant would: `{"Welcome": [version, identity, …]}`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version chosen.
    pub version: u16,
    /// The client's identity.
    pub identity: Identity,
    /// The token that restores it (the one presented, or a new one): keep it secret.
    pub token: Token,
    /// Ticks per second.
    pub tick_rate: u16,
    /// The last tick whose effects the client may already be told about (durable).
    pub tick: u64,
    /// The public tables with their ids (the ids rows are tagged with).
    pub tables: Vec<WireTable>,
    /// The reducers a client may call.
    pub reducers: Vec<ReducerDef>,
}

/// A `Tick` message borrowing its rows, for the server's hot path: it encodes exactly as
/// [`ServerMessage::Tick`] with the same content, without copying each row into a `Vec` first.
#[derive(Debug, Serialize)]
pub enum TickRef<'a> {
    /// See [`ServerMessage::Tick`].
    Tick {
        /// The tick.
        tick: u64,
        /// As in [`ServerMessage::Tick`].
        time: u64,
        /// Per table.
        tables: &'a [TableDeltaRef<'a>],
    },
}

/// [`TableDelta`] borrowing its rows.
#[derive(Debug, Default, Serialize)]
pub struct TableDeltaRef<'a> {
    /// The table.
    pub table: TableId,
    /// As [`TableDelta::inserts`].
    pub inserts: Vec<RowRef<'a>>,
    /// As [`TableDelta::updates`].
    pub updates: Vec<RowRef<'a>>,
    /// As [`TableDelta::deletes`].
    pub deletes: Vec<RowRef<'a>>,
    /// As [`TableDelta::patches`] (left out of the encoding when empty, as version 1 requires).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<RowRef<'a>>,
}

/// [`WireRow`] borrowed.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RowRef<'a>(#[serde(with = "serde_bytes")] pub &'a [u8]);

/// A table as announced in `Welcome`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireTable {
    /// The id rows of this table are tagged with.
    pub id: TableId,
    /// The table.
    pub def: TableDef,
}

/// The changes of one table in a client's view in one tick: apply deletes, then updates, then patches, then
/// inserts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableDelta {
    /// The table.
    pub table: TableId,
    /// Rows entering the view (new rows, rows coming into the area, the rows of a new subscription).
    pub inserts: Vec<WireRow>,
    /// Rows in view whose bytes changed (same primary key).
    pub updates: Vec<WireRow>,
    /// Primary keys of rows leaving the view (deleted, out of the area, unsubscribed): each exactly the bytes of
    /// the key column inside the row (as the module wrote them, never re-encoded), so a client can match them
    /// byte for byte against the rows it holds.
    pub deletes: Vec<WireRow>,
    /// Rows in view of which only some columns changed, as patches ([`crate::patch`]: the key and the new values
    /// of the changed columns) against the version of the row the client last received. Protocol version 2 only;
    /// the field is absent (a 4-element array) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<WireRow>,
}

/// Bytes of a row (or of a key), as a MessagePack `bin`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRow(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for WireRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireRow({} bytes)", self.0.len())
    }
}

/// How a reducer call ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallOutcome {
    /// Committed.
    Ok,
    /// Rolled back (or never run).
    Err {
        /// Why.
        code: ErrorCode,
        /// The reducer's message, or the engine's explanation.
        message: String,
    },
}

/// Error codes, stable numbers on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum ErrorCode {
    /// No protocol version in common. Fatal.
    UnsupportedVersion = 1,
    /// A frame's payload is not one well-formed client message: after `Hello` it is dropped and the connection goes
    /// on; as the first frame (no client message, or a malformed `Hello`) it is fatal.
    MalformedFrame = 2,
    /// A frame's length prefix exceeds [`MAX_CLIENT_FRAME`] (before or after `Hello`). Fatal.
    FrameTooLarge = 3,
    /// A well-formed client message other than `Hello` came first. Fatal.
    HelloRequired = 4,
    /// A second `Hello`. Fatal.
    HelloTwice = 5,
    /// No client reducer has that name.
    NoSuchReducer = 6,
    /// The arguments do not match the reducer's parameters.
    BadArguments = 7,
    /// The reducer returned an error (the host's `CallError::Failed`); `message` is its message.
    ReducerFailed = 8,
    /// The reducer was stopped: out of time or fuel, out of memory, or a trap (a Rust panic is one). The host's
    /// `CallError::Interrupted`, `MemoryLimit` and `Trapped` (`engine/docs/module-abi.md` §5.4).
    ReducerAborted = 9,
    /// Too many messages per second: messages are being dropped (one such error a second while it lasts).
    /// Persistent flooding is fatal.
    RateLimited = 10,
    /// Too many calls waiting to run; this one was dropped.
    Busy = 11,
    /// No public table has that name.
    NoSuchTable = 12,
    /// A subscription that cannot be: unknown column, a value of the wrong type, `Owner` on a table without
    /// an owner column.
    BadSubscription = 13,
    /// The client did not read its messages fast enough. Fatal (the connection is closed with QUIC code 3).
    TooSlow = 14,
    /// The server is shutting down. Fatal (QUIC close code 1).
    ShuttingDown = 15,
    /// The server failed (e.g. its disk); the call's effects are not durable. Fatal.
    Internal = 16,
    /// An `Admin` command from an identity that is not the server's admin. Not fatal.
    Forbidden = 17,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::UnsupportedVersion,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::HelloRequired,
        ErrorCode::HelloTwice,
        ErrorCode::NoSuchReducer,
        ErrorCode::BadArguments,
        ErrorCode::ReducerFailed,
        ErrorCode::ReducerAborted,
        ErrorCode::RateLimited,
        ErrorCode::Busy,
        ErrorCode::NoSuchTable,
        ErrorCode::BadSubscription,
        ErrorCode::TooSlow,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::Forbidden,
    ];
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c as u16
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = String;

    fn try_from(v: u16) -> Result<ErrorCode, String> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| *c as u16 == v)
            .ok_or_else(|| format!("unknown error code {v}"))
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length prefix exceeds the limit.
    #[error("a frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a well-formed message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Append one frame holding `message` to `out`.
///
/// # Panics
///
/// If the message encodes to more than `u32::MAX` bytes (far beyond any limit).
pub fn encode_frame<M: Serialize>(message: &M, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    rmp_serde::encode::write(out, message).expect("writing to a Vec cannot fail");
    let len = u32::try_from(out.len() - start - FRAME_PREFIX).expect("frame below 4 GiB");
    out[start..start + FRAME_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// The payload length announced by a frame prefix, checked against `max`.
///
/// # Errors
///
/// [`FrameError::TooLarge`].
pub fn frame_len(prefix: [u8; FRAME_PREFIX], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decode one frame's payload (the bytes after the prefix) as a message: exactly one MessagePack value.
///
/// # Errors
///
/// [`FrameError::Malformed`] if it is not one well-formed message (trailing bytes included).
pub fn decode_frame<M: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let mut rest = payload;
    let message = rmp_serde::decode::from_read(&mut rest)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes follow the message",
            rest.len()
        )));
    }
    Ok(message)
}

/// A sans-IO reader of frames from a byte stream: feed it bytes as they arrive, take whole payloads out.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl FrameReader {
    /// A reader accepting payloads of at most `max` bytes.
    #[must_use]
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Change the largest payload accepted from the next frame on (e.g. once a session is known to be the
    /// operator's).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop consumed frames when they are all consumed or many, so the buffer does not grow with the stream.
        if self.start > 0 && (self.start == self.buf.len() || self.start >= 64 * 1024) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as a prefix announces more than the limit (before the payload arrives).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(prefix) = avail.first_chunk::<FRAME_PREFIX>() else {
            return Ok(None);
        };
        let len = frame_len(*prefix, self.max)?;
        if avail.len() < FRAME_PREFIX + len {
            return Ok(None);
        }
        let from = self.start + FRAME_PREFIX;
        self.start = from + len;
        Ok(Some(&self.buf[from..self.start]))
    }

    /// Bytes received but not yet returned as a frame.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(messages: &[ClientMessage]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            encode_frame(m, &mut out);
        }
        out
    }

    fn hex<M: Serialize>(m: &M) -> String {
        let mut out = Vec::new();
        encode_frame(m, &mut out);
        out.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn assert_round_trips(message: &ServerMessage) {
        let mut frame = Vec::new();
        encode_frame(message, &mut frame);
        assert_eq!(
            &decode_frame::<ServerMessage>(&frame[4..]).unwrap(),
            message
        );
    }

    /// The examples of `engine/docs/protocol.md`, byte for byte.
    #[test]
    fn the_examples_of_the_protocol_doc() {
        let doc = include_str!("../../docs/protocol.md");
        let examples: Vec<(String, &str)> = vec![
            (
                hex(&ClientMessage::Hello {
                    versions: vec![1],
                    token: None,
                }),
                "Hello",
            ),
            (
                hex(&ClientMessage::Subscribe {
                    request: 1,
                    table: "player".into(),
                    filter: Filter::All,
                }),
                "Subscribe All",
            ),
            (
                hex(&ClientMessage::Subscribe {
                    request: 3,
                    table: "player".into(),
                    filter: Filter::Eq {
                        column: "online".into(),
                        value: vec![0xc3],
                    },
                }),
                "Subscribe Eq",
            ),
            (
                hex(&ClientMessage::Call {
                    request: 7,
                    reducer: "move_to".into(),
                    args: vec![0x92, 0xca, 0x45, 0, 0, 0, 0xca, 0x45, 0, 0, 0],
                }),
                "Call",
            ),
            (
                hex(&ServerMessage::Result {
                    request: 7,
                    tick: 1234,
                    outcome: CallOutcome::Ok,
                }),
                "Result Ok",
            ),
            (
                hex(&ServerMessage::Result {
                    request: 8,
                    tick: 1234,
                    outcome: CallOutcome::Err {
                        code: ErrorCode::ReducerFailed,
                        message: "no".into(),
                    },
                }),
                "Result Err",
            ),
            (
                hex(&ServerMessage::Tick {
                    tick: 1234,
                    time: 1_700_000_000_000_000,
                    tables: vec![TableDelta {
                        table: TableId(1),
                        inserts: vec![],
                        updates: vec![WireRow(vec![
                            0x92, 0x05, 0x92, 0xca, 0x45, 0, 0, 0, 0xca, 0x45, 0, 0, 0,
                        ])],
                        deletes: vec![WireRow(vec![0x09])],
                        patches: vec![],
                    }],
                }),
                "Tick",
            ),
            (
                hex(&ServerMessage::Tick {
                    tick: 1234,
                    time: 1_700_000_000_000_000,
                    tables: vec![TableDelta {
                        table: TableId(1),
                        inserts: vec![],
                        updates: vec![],
                        deletes: vec![],
                        patches: vec![WireRow(vec![
                            0x93, 0x05, 0x01, 0x92, 0xca, 0x45, 0, 0x08, 0, 0xca, 0x45, 0, 0, 0,
                        ])],
                    }],
                }),
                "Tick with a patch",
            ),
            (
                hex(&ServerMessage::Error {
                    code: ErrorCode::HelloRequired,
                    message: "x".into(),
                    request: None,
                    fatal: true,
                }),
                "Error",
            ),
        ];
        for (bytes, what) in examples {
            assert!(
                doc.contains(&bytes),
                "protocol.md lacks the bytes of {what}: {bytes}"
            );
        }
    }

    /// Bytes from hex digits separated by spaces.
    fn unhex(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Bytes as hex, in full.
    fn hex_bytes(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Bytes as protocol.md shows them: hex, or for more than 16 bytes the first 4 and `…`.
    fn shown(bytes: &[u8]) -> String {
        if bytes.len() > 16 {
            format!("{} …", hex_bytes(&bytes[..4]))
        } else {
            hex_bytes(bytes)
        }
    }

    /// The column encoding examples of `engine/docs/protocol.md` §2, each checked against the codec: the written
    /// form is what `encode_value` writes; "also" forms decode to the same value; "refused" forms do not decode.
    /// Rows are read as `decode_value` reads a row's column, arguments as `decode_arg` reads a client's value.
    #[test]
    fn the_column_encodings_of_the_protocol_doc() {
        use crate::codec::{decode_arg, decode_value, encode_row, encode_value};
        use crate::{ColumnDef, ColumnType, Value};
        let doc = include_str!("../../docs/protocol.md");
        // The example's lines: the one starting with `label`, and the indented ones after it.
        let block = |label: &str| -> String {
            let mut lines = doc.lines().skip_while(|l| !l.starts_with(label));
            let first = lines
                .next()
                .unwrap_or_else(|| panic!("protocol.md has no example `{label}`"));
            let rest = lines.take_while(|l| l.starts_with(' '));
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("\n")
        };
        /// One example: its label, the column type and value, the written bytes, bytes also accepted, bytes refused,
        /// and whether it is read as a client's value (else as a row's).
        struct Example {
            label: &'static str,
            ty: ColumnType,
            value: Value,
            written: Vec<u8>,
            also: Vec<Vec<u8>>,
            refused: Vec<Vec<u8>>,
            argument: bool,
        }
        let ex = |label, ty, value, written: &str, also: &[&str], refused: &[&str]| Example {
            label,
            ty,
            value,
            written: unhex(written),
            also: also.iter().map(|h| unhex(h)).collect(),
            refused: refused.iter().map(|h| unhex(h)).collect(),
            argument: false,
        };
        let opt_u8 = || ColumnType::Option(Box::new(ColumnType::U8));
        let id = |prefix: &str, n: usize| [unhex(prefix), vec![9; n]].concat();
        let examples = [
            ex(
                "Bool true:",
                ColumnType::Bool,
                Value::Bool(true),
                "c3",
                &[],
                &["01", "c0"],
            ),
            ex(
                "U8 5:",
                ColumnType::U8,
                Value::U64(5),
                "05",
                &["cc 05", "d0 05", "cf 00 00 00 00 00 00 00 05"],
                &["d0 ff", "cd 01 00"],
            ),
            ex(
                "U64 300:",
                ColumnType::U64,
                Value::U64(300),
                "cd 01 2c",
                &["cf 00 00 00 00 00 00 01 2c"],
                &[],
            ),
            ex(
                "I32 -7:",
                ColumnType::I32,
                Value::I64(-7),
                "f9",
                &["d0 f9", "d2 ff ff ff f9"],
                &["ce 80 00 00 00"],
            ),
            ex(
                "I32 200:",
                ColumnType::I32,
                Value::I64(200),
                "cc c8",
                &["d1 00 c8"],
                &[],
            ),
            ex(
                "I64 -200:",
                ColumnType::I64,
                Value::I64(-200),
                "d1 ff 38",
                &[],
                &[],
            ),
            ex(
                "F32 1.5:",
                ColumnType::F32,
                Value::F32(1.5),
                "ca 3f c0 00 00",
                &[],
                &["cb 3f f8 00 00 00 00 00 00", "01"],
            ),
            Example {
                argument: true,
                ..ex(
                    "F32 argument 2.0:",
                    ColumnType::F32,
                    Value::F32(2.0),
                    "ca 40 00 00 00",
                    &["02", "cb 40 00 00 00 00 00 00 00"],
                    &["ce 01 00 00 01", "c3"],
                )
            },
            ex(
                "F64 0.25:",
                ColumnType::F64,
                Value::F64(0.25),
                "cb 3f d0 00 00 00 00 00 00",
                &[],
                &["ca 3e 80 00 00"],
            ),
            ex(
                "String \"Ada\":",
                ColumnType::String,
                Value::String("Ada".into()),
                "a3 41 64 61",
                &["d9 03 41 64 61"],
                &["c4 03 41 64 61", "a2 ff fe"],
            ),
            ex(
                "Bytes 010203:",
                ColumnType::Bytes,
                Value::Bytes(vec![1, 2, 3].into()),
                "c4 03 01 02 03",
                &["c5 00 03 01 02 03"],
                &["a3 01 02 03"],
            ),
            ex(
                "Vec2 (1.5, -2.0):",
                ColumnType::Vec2,
                Value::Vec2(glam::Vec2::new(1.5, -2.0)),
                "92 ca 3f c0 00 00 ca c0 00 00 00",
                &[],
                &["dc 00 02 ca 3f c0 00 00 ca c0 00 00 00"],
            ),
            Example {
                written: id("c4 20", 32),
                also: vec![id("c5 00 20", 32)],
                refused: vec![id("c4 1f", 31)],
                ..ex(
                    "Identity 09 (x32):",
                    ColumnType::Identity,
                    Value::Identity(Identity([9; 32])),
                    "",
                    &[],
                    &[],
                )
            },
            ex(
                "Timestamp 1700000000000000:",
                ColumnType::Timestamp,
                Value::Timestamp(crate::Timestamp(1_700_000_000_000_000)),
                "cf 00 06 0a 24 18 1e 40 00",
                &["d3 00 06 0a 24 18 1e 40 00"],
                &["ff"],
            ),
            ex("Option(U8) nil:", opt_u8(), Value::Null, "c0", &[], &[]),
            ex(
                "Option(U8) 5:",
                opt_u8(),
                Value::U64(5),
                "05",
                &["cc 05"],
                &[],
            ),
            ex(
                "Opaque [1, \"x\"]:",
                ColumnType::Opaque,
                Value::Opaque(unhex("92 01 a1 78").into()),
                "92 01 a1 78",
                &[],
                &["c1"],
            ),
        ];
        for Example {
            label,
            ty,
            value,
            written,
            also,
            refused,
            argument,
        } in examples
        {
            let text = block(label);
            let column = ColumnDef::new("c", ty);
            let decode = |bytes: &[u8]| {
                if argument {
                    decode_arg(&column, bytes)
                } else {
                    decode_value(&column, bytes)
                }
            };
            let mut out = Vec::new();
            encode_value(&column, &value, &mut out).unwrap();
            assert_eq!(out, written, "{label} writes other bytes");
            for bytes in std::iter::once(&written).chain(&also) {
                assert!(
                    text.contains(&shown(bytes)),
                    "`{label}` lacks {}",
                    shown(bytes)
                );
                assert_eq!(
                    decode(bytes).as_ref(),
                    Ok(&value),
                    "{label} {}",
                    shown(bytes)
                );
            }
            for bytes in &refused {
                assert!(
                    text.contains(&shown(bytes)),
                    "`{label}` lacks {}",
                    shown(bytes)
                );
                assert!(
                    decode(bytes).is_err(),
                    "{label}: {} is accepted",
                    shown(bytes)
                );
            }
        }
        let columns = [
            ColumnDef::new("id", ColumnType::U64),
            ColumnDef::new("name", ColumnType::String),
            ColumnDef::new("pos", ColumnType::Vec2),
        ];
        let row = encode_row(
            &columns,
            &[
                Value::U64(300),
                Value::String("Ada".into()),
                Value::Vec2(glam::Vec2::new(1.5, -2.0)),
            ],
        )
        .unwrap();
        assert!(block("row [300, \"Ada\", (1.5, -2.0)]").contains(&hex_bytes(&row)));
    }

    #[test]
    fn the_documented_bytes_of_a_call() {
        let call = ClientMessage::Call {
            request: 7,
            reducer: "mv".into(),
            args: vec![0x90],
        };
        let bytes = frames(std::slice::from_ref(&call));
        // Length 14, then {"Call": [7, "mv", bin [0x90]]}.
        assert_eq!(
            bytes,
            [
                0, 0, 0, 14, 0x81, 0xa4, b'C', b'a', b'l', b'l', 0x93, 0x07, 0xa2, b'm', b'v',
                0xc4, 0x01, 0x90
            ]
        );
        assert_eq!(decode_frame::<ClientMessage>(&bytes[4..]).unwrap(), call);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let messages = vec![
            ClientMessage::Hello {
                versions: vec![1],
                token: Some(Token([3; 32])),
            },
            ClientMessage::Subscribe {
                request: 1,
                table: "player".into(),
                filter: Filter::Eq {
                    column: "zone".into(),
                    value: vec![0x05],
                },
            },
            ClientMessage::Unsubscribe {
                request: 2,
                table: "player".into(),
            },
        ];
        let bytes = frames(&messages);
        for chunk in 1..bytes.len() {
            let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                reader.push(piece);
                while let Some(payload) = reader.next_frame().unwrap() {
                    got.push(decode_frame::<ClientMessage>(payload).unwrap());
                }
            }
            assert_eq!(got, messages, "chunk size {chunk}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_payload_arrives() {
        let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
        reader.push(&(MAX_CLIENT_FRAME as u32 + 1).to_be_bytes());
        assert!(matches!(
            reader.next_frame(),
            Err(FrameError::TooLarge { len, .. }) if len == MAX_CLIENT_FRAME + 1
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(matches!(
            decode_frame::<ClientMessage>(&[0xc1]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_frame::<ClientMessage>(&[0xa4, b'N', b'o', b'p', b'e']),
            Err(FrameError::Malformed(_))
        ));
        let mut ok = Vec::new();
        encode_frame(
            &ClientMessage::Unsubscribe {
                request: 1,
                table: "t".into(),
            },
            &mut ok,
        );
        ok.push(0xc0);
        assert!(matches!(
            decode_frame::<ClientMessage>(&ok[4..]),
            Err(FrameError::Malformed(m)) if m.contains("1 bytes follow")
        ));
    }

    #[test]
    fn borrowed_ticks_and_welcome_encode_as_documented() {
        let (row, key) = ([0x92, 0x05, 0xc3], [0x05]);
        let owned = ServerMessage::Tick {
            tick: 9,
            time: 77,
            tables: vec![TableDelta {
                table: TableId(3),
                inserts: vec![WireRow(row.to_vec())],
                updates: vec![WireRow(row.to_vec())],
                deletes: vec![WireRow(key.to_vec())],
                patches: vec![WireRow(key.to_vec())],
            }],
        };
        let borrowed = TickRef::Tick {
            tick: 9,
            time: 77,
            tables: &[TableDeltaRef {
                table: TableId(3),
                inserts: vec![RowRef(&row)],
                updates: vec![RowRef(&row)],
                deletes: vec![RowRef(&key)],
                patches: vec![RowRef(&key)],
            }],
        };
        assert_eq!(hex(&borrowed), hex(&owned));
        let welcome = ServerMessage::Welcome(Welcome {
            version: 1,
            identity: Identity([1; 32]),
            token: Token([2; 32]),
            tick_rate: 20,
            tick: 5,
            tables: vec![],
            reducers: vec![],
        });
        let bytes = hex(&welcome);
        // {"Welcome": [1, bin(32), bin(32), 20, 5, [], []]}: the fields in a 7-array, as protocol.md lists them.
        assert!(
            bytes.starts_with("00 00 00 53 81 a7 57 65 6c 63 6f 6d 65 97 01 c4 20"),
            "{bytes}"
        );
        assert_round_trips(&welcome);
    }

    #[test]
    fn a_delta_without_patches_is_the_version_1_encoding() {
        let v1 = TableDelta {
            table: TableId(2),
            inserts: vec![WireRow(vec![0x91, 0x01])],
            updates: vec![],
            deletes: vec![],
            patches: vec![],
        };
        let bytes = hex(&ServerMessage::Tick {
            tick: 1,
            time: 2,
            tables: vec![v1.clone()],
        });
        // {"Tick": [1, 2, [[2, [bin], [], []]]]}: four fields, as version 1 has them.
        assert!(bytes.ends_with("94 02 91 c4 02 91 01 90 90"), "{bytes}");
        let mut v2 = v1;
        v2.patches.push(WireRow(vec![0x93, 0x01, 0x01, 0x02]));
        let message = ServerMessage::Tick {
            tick: 1,
            time: 2,
            tables: vec![v2],
        };
        let bytes = hex(&message);
        assert!(
            bytes.contains("95 02 91 c4 02 91 01 90 90 91 c4 04 93 01 01 02"),
            "{bytes}"
        );
        assert_round_trips(&message);
    }

    #[test]
    fn server_messages_round_trip_and_error_codes_are_stable() {
        let tick = ServerMessage::Tick {
            tick: 42,
            time: 1,
            tables: vec![TableDelta {
                table: TableId(2),
                inserts: vec![WireRow(vec![0x92, 0x01, 0xc0])],
                updates: vec![],
                deletes: vec![WireRow(vec![0x05])],
                patches: vec![],
            }],
        };
        assert_round_trips(&tick);
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*c as u16, i as u16 + 1);
            assert_eq!(ErrorCode::try_from(*c as u16), Ok(*c));
        }
        assert!(ErrorCode::try_from(0).is_err());
        let token = Token([0xab; 32]);
        assert_eq!(Token::from_hex(&token.to_hex()), Some(token));
        assert_eq!(format!("{token:?}"), "Token(…)");
    }
}
