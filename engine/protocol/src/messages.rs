//! The messages of the client protocol: what a client sends ([`ClientMessage`]), what the server sends
//! ([`ServerMessage`]), and the types inside them.
//!
//! Each encodes with `rmp_serde` exactly as `engine/docs/protocol.md` shows: an enum is a one-entry map from the
//! variant name to the array of its fields, a unit variant is its name as a string, a struct is an array of its
//! fields in order. Rows and keys are MessagePack `bin`s holding the bytes of the one row encoding
//! ([`locus_types::codec`]), never re-encoded.

use locus_types::{Identity, ReducerDef, TableDef, TableId};
use serde::{Deserialize, Serialize};

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
    /// The client's player moved to another region (another server process): reconnect there. Protocol version 5
    /// and later. The session's last frame: the server then finishes the stream and closes the connection with
    /// [`crate::CLOSE_REDIRECTED`]. The client connects to [`Redirect::addr`], pinning [`Redirect::fingerprint`],
    /// presents the same token in `Hello`, and subscribes again; the target region sends its view as to any new
    /// session. (Appended last: the variants before it encode as they always did.)
    Redirect(Redirect),
}

/// Where a client whose player moved to another region reconnects ([`ServerMessage::Redirect`]). A newtype
/// variant of a struct encodes as the struct's fields in the variant: `{"Redirect": [region, addr, fingerprint,
/// web]}`.
///
/// Invariant (the sender's): `addr` is an `ip:port` socket address (IPv6 in brackets), so a client can connect
/// without resolving a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// The target region's name, for people and logs.
    pub region: String,
    /// The target server's QUIC endpoint, `ip:port` (e.g. `10.0.0.7:7878` or `[::1]:7878`).
    pub addr: String,
    /// The SHA-256 of the target server's certificate (its DER bytes), which a native client pins (as `Trust`
    /// does); a `bin` of 32 bytes.
    #[serde(with = "serde_bytes")]
    pub fingerprint: [u8; 32],
    /// The target server's `/locus.json` URL (`http://HOST:PORT/locus.json`), if it serves one: where a
    /// WebTransport client fetches the session's URL and certificate hashes, as for any connect.
    pub web: Option<String>,
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

/// The changes of one table in a client's view in one tick: apply deletes, then updates, then patches, then moves,
/// then inserts.
///
/// Encoded as an array of 4 fields (version 1, or no patches), 5 (version 2 with patches) or 7 (version 3: always
/// all seven, `handles` and `moves` as `bin`s, empty when there are none).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
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
    /// Rows in view of which only some columns changed, as patches ([`locus_types::patch`]: the key and the new values
    /// of the changed columns) against the version of the row the client last received. Protocol version 2 and
    /// later; in version 3 a patch names its row by its handle instead of its key ([`crate::compact`]). In version
    /// 2 the field is absent (a 4-element array) when empty.
    #[serde(default)]
    pub patches: Vec<WireRow>,
    /// Version 3: the handle each insert's row gets, one varint per insert, in order ([`crate::compact`]).
    #[serde(default)]
    pub handles: Option<WireRow>,
    /// Version 3: rows of which only the spatial column changed, as moves ([`crate::compact::Moves`]).
    #[serde(default)]
    pub moves: Option<WireRow>,
}

impl Serialize for TableDelta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let compact = self.handles.is_some() || self.moves.is_some();
        let fields = if compact {
            7
        } else if self.patches.is_empty() {
            4
        } else {
            5
        };
        let mut t = s.serialize_struct("TableDelta", fields)?;
        t.serialize_field("table", &self.table)?;
        t.serialize_field("inserts", &self.inserts)?;
        t.serialize_field("updates", &self.updates)?;
        t.serialize_field("deletes", &self.deletes)?;
        if fields >= 5 {
            t.serialize_field("patches", &self.patches)?;
        }
        if compact {
            let empty = WireRow(Vec::new());
            t.serialize_field("handles", self.handles.as_ref().unwrap_or(&empty))?;
            t.serialize_field("moves", self.moves.as_ref().unwrap_or(&empty))?;
        }
        t.end()
    }
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
    /// A frame's length prefix exceeds [`crate::MAX_CLIENT_FRAME`] (before or after `Hello`). Fatal.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_frame, encode_frame};

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
                        ..TableDelta::default()
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
                        ..TableDelta::default()
                    }],
                }),
                "Tick with a patch",
            ),
            (
                hex(&ServerMessage::Tick {
                    tick: 1234,
                    time: 1_700_000_000_000_000,
                    tables: vec![TableDelta {
                        table: TableId(1),
                        inserts: vec![WireRow(vec![
                            0x93, 0x09, 0x92, 0xca, 0x45, 0, 0, 0, 0xca, 0x45, 0, 0, 0, 0x64,
                        ])],
                        updates: vec![],
                        deletes: vec![],
                        // handle 1's column 2 (hp) is now 90.
                        patches: vec![WireRow(vec![0x93, 0x01, 0x02, 0x5a])],
                        // the insert gets handle 2.
                        handles: Some(WireRow(vec![0x02])),
                        // handle 0 moves by (+25 cm, -7 cm).
                        moves: Some(WireRow(vec![0x00, 0x32, 0x0d])),
                    }],
                }),
                "Tick (version 3)",
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
            (
                hex(&ServerMessage::Redirect(Redirect {
                    region: "b".into(),
                    addr: "127.0.0.1:7879".into(),
                    fingerprint: [0xab; 32],
                    web: None,
                })),
                "Redirect",
            ),
        ];
        for (bytes, what) in examples {
            assert!(
                doc.contains(&bytes),
                "protocol.md lacks the bytes of {what}: {bytes}"
            );
        }
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
                ..TableDelta::default()
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
            ..TableDelta::default()
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
        // Version 3: always seven fields, the handles and moves as bins (empty ones included).
        let ServerMessage::Tick { mut tables, .. } = message else {
            unreachable!()
        };
        tables[0].patches.clear();
        tables[0].handles = Some(WireRow(vec![0x00]));
        let message = ServerMessage::Tick {
            tick: 1,
            time: 2,
            tables,
        };
        let bytes = hex(&message);
        assert!(
            bytes.ends_with("97 02 91 c4 02 91 01 90 90 90 c4 01 00 c4 00"),
            "{bytes}"
        );
        let ServerMessage::Tick { tables, .. } = decode_frame::<ServerMessage>(
            &{
                let mut frame = Vec::new();
                encode_frame(&message, &mut frame);
                frame
            }[crate::FRAME_PREFIX..],
        )
        .unwrap() else {
            unreachable!()
        };
        assert_eq!(tables[0].moves, Some(WireRow(vec![])));
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
                ..TableDelta::default()
            }],
        };
        assert_round_trips(&tick);
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*c as u16, i as u16 + 1);
            assert_eq!(ErrorCode::try_from(*c as u16), Ok(*c));
        }
        assert!(ErrorCode::try_from(0).is_err());
        // A redirect, with and without the target's web address; the fingerprint is one `bin` of 32 bytes.
        for web in [None, Some("http://10.0.0.7:8080/locus.json".to_owned())] {
            let redirect = ServerMessage::Redirect(Redirect {
                region: "east".into(),
                addr: "[::1]:7878".into(),
                fingerprint: [7; 32],
                web,
            });
            assert_round_trips(&redirect);
            assert!(
                hex(&redirect).contains(" c4 20 07 07 "),
                "{}",
                hex(&redirect)
            );
        }
        let token = Token([0xab; 32]);
        assert_eq!(Token::from_hex(&token.to_hex()), Some(token));
        assert_eq!(format!("{token:?}"), "Token(…)");
    }
}
