//! The Locus client protocol: the messages between a client and the server, how they are framed, the ALPN id
//! that names the protocol, and the versions.
//!
//! `engine/docs/protocol.md` is the contract (written so a client in another language can be built from it
//! alone); this crate is its Rust form, shared by the server (`locus-server`), the client SDK (`locus-client`) and
//! the load tester. Like `locus-types`, which it builds on for ids, tables and the row encoding, it performs no
//! I/O and builds for `wasm32-unknown-unknown`: it turns messages into bytes and bytes into messages, and
//! the caller moves the bytes.
//!
//! - A connection is one QUIC connection with ALPN [`ALPN`]; the client opens **one bidirectional stream** and
//!   every message in both directions travels on it, in order.
//! - A **frame** is a 4-byte big-endian length followed by that many bytes: one MessagePack value, a
//!   [`ClientMessage`] or a [`ServerMessage`] as `rmp_serde::to_vec` writes it (an enum is a one-entry map from the
//!   variant name to the array of its fields; a unit variant is its name as a string; a struct is an array of its
//!   fields in order). [`encode_frame`] writes one, [`decode_frame`] reads one payload, [`FrameReader`] cuts a
//!   byte stream into payloads.
//! - Rows travel as the bytes of the one row encoding ([`locus_types::codec`]) inside a MessagePack `bin`, never
//!   re-encoded; so do keys (a deleted row's key, a patch's key): the bytes of the key column inside the row.
//!
//! Modules: [`messages`] (every message and the types inside), [`frame`] (framing, limits, [`FrameReader`]),
//! [`tick`] ([`TickView`], the borrowed reader of `Tick` frames that the client cache and the load tester use
//! instead of decoding a `Vec` per row) and [`session`] ([`Session`], the server's side of a session as a sans-IO
//! state machine: hello, version, frame limits, rate, calls per tick, admin check; the time is passed in).
//! Everything is re-exported here.
//!
//! Invariants: [`decode_frame`] accepts exactly the frames [`encode_frame`] can write for messages within the size
//! limit, and decoding an encoded message gives the message back; a borrowed message ([`TickRef`]) encodes to the
//! same bytes as the owned one with the same content.
//!
//! ```
//! use locus_protocol::{ClientMessage, FrameReader, MAX_CLIENT_FRAME, decode_frame, encode_frame};
//!
//! let hello = ClientMessage::Hello { versions: vec![1, 2], token: None };
//! let mut bytes = Vec::new();
//! encode_frame(&hello, &mut bytes);
//! let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
//! reader.push(&bytes);
//! let payload = reader.next_frame()?.expect("one whole frame");
//! assert_eq!(decode_frame::<ClientMessage>(payload)?, hello);
//! # Ok::<(), locus_protocol::FrameError>(())
//! ```

pub mod compact;
pub mod frame;
pub mod messages;
pub mod places;
pub mod session;
pub mod tick;

pub use frame::{
    FRAME_PREFIX, FrameError, FrameReader, MAX_ADMIN_FRAME, MAX_CLIENT_FRAME, MAX_SERVER_FRAME,
    decode_frame, encode_frame, frame_len,
};
pub use messages::{
    AdminCommand, AdminReply, CallOutcome, ClientMessage, ErrorCode, Filter, ModuleLogLine,
    Redirect, RowRef, ServerMessage, TableDelta, TableDeltaRef, TickRef, Token, Welcome, WireRow,
    WireTable,
};
pub use session::{Session, SessionEvent, SessionLimits, error_frame};
pub use tick::{Rows, TableDeltaView, TableDeltas, TickError, TickView};

/// The ALPN protocol id a client offers and the server accepts (TLS application-layer protocol negotiation). It
/// names the framing and message set; the protocol version inside it is chosen by `Hello` ([`SUPPORTED_VERSIONS`]).
pub const ALPN: &[u8] = b"locus/1";

/// The newest protocol version, the one this code's clients offer.
///
/// - Version 1: rows change as whole rows (`TableDelta::updates`).
/// - Version 2: also as patches of the changed columns (`TableDelta::patches`, see [`locus_types::patch`]).
///   Otherwise the same messages: a version-1 peer never sees a `patches` field.
/// - Version 3: rows in a session's view get small **handles**; patches name rows by handle, and a row of which
///   only the spatial column changed is sent as a **move** in whole centimetres ([`compact`]). Table deltas then
///   always have 7 fields (`TableDelta::handles`, `TableDelta::moves`).
/// - Version 4: version 3, but what version 3 sends as moves goes as **places** in QUIC datagrams, if the client's
///   connection accepts datagrams ([`places`]); freed handles rest [`places::HANDLE_REST`] ticks before reuse.
/// - Version 5: version 4, and a session whose player moves to another region is sent
///   [`ServerMessage::Redirect`] before it is closed with [`CLOSE_REDIRECTED`] (an earlier session gets the close
///   alone). Nothing else differs.
pub const PROTOCOL_VERSION: u16 = 5;

/// Every version the server speaks; it picks the highest one a client offers.
pub const SUPPORTED_VERSIONS: [u16; 5] = [1, 2, 3, 4, 5];

/// The first protocol version whose sessions are sent [`ServerMessage::Redirect`]: a client of an earlier version
/// would not decode it.
pub const REDIRECT_VERSION: u16 = 5;

/// The application close code (QUIC's `CONNECTION_CLOSE`, or a WebTransport session's close code) of a session
/// whose player moved to another region: after the [`ServerMessage::Redirect`] frame (protocol version 5 and
/// later), the connection is closed with it. `engine/docs/protocol.md` §6 lists every close code.
pub const CLOSE_REDIRECTED: u32 = 5;
