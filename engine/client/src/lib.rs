//! The Locus client SDK: connect to a Locus server over QUIC, keep a client cache of the rows the server puts in
//! this client's view, react to rows entering, changing and leaving it, and call reducers with typed arguments.
//!
//! - [`Client`]: the blocking facade for games and tools that are not async. A background thread runs the
//!   connection; [`Client::poll`] (once per frame) applies what arrived to the [`Cache`], fires the
//!   `on_insert` / `on_update` / `on_delete` / `on_result` callbacks and returns the [`Event`]s.
//! - [`Connection`]: the async connection (tokio + quinn) underneath, for async programs: requests through
//!   [`Sender`], server messages through [`Connection::next_message`].
//! - [`Cache`]: the client cache, sans-IO: feed it server messages, get events back.
//! - [`Trust`]: how the server is recognised: a pinned SHA-256 fingerprint of its self-signed certificate.
//! - With the `bevy` feature, `bevy::LocusPlugin` and `bevy::MirrorTableExt::mirror_table` mirror rows into ECS
//!   entities.
//!
//! Typed reducer calls come from the module crate itself: built natively, a module crate's `my_reducer::call(…)`
//! returns a [`ReducerCall`] that [`Client::call`] sends. Row types are the module's table structs (any
//! `DeserializeOwned` type whose fields are the table's columns, in order).
//!
//! The wire protocol is `engine/docs/protocol.md`, in Rust [`locus_protocol`].
//!
//! What it deliberately does not do: it does not predict or interpolate (the cache is exactly what the server
//! said, applied in order); it does not reconnect by itself (call [`Client::reconnect`] on
//! [`Event::Disconnected`]); it does not verify certificates against authorities or names (only the pinned
//! fingerprint); it does not check reducer arguments against the server's reducer list (the server does).
//!
//! ```no_run
//! use locus_client::{CallOutcome, Client, ClientConfig, Event, Filter, ReducerCall, Trust};
//! use serde::Deserialize;
//!
//! /// The module's `player` table (in a real game: `use my_game_module::Player`).
//! #[derive(Deserialize, Debug)]
//! struct Player {
//!     id: u64,
//!     name: String,
//!     hp: i32,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The fingerprint the server printed on first start.
//! let trust = Trust::parse_fingerprint(
//!     "3f:a1:09:7c:5e:2b:44:d0:18:9a:6e:f3:21:b7:c0:55:8d:0e:f9:42:a6:13:7b:c8:e4:90:5f:2d:61:ab:3c:07",
//! )?;
//! let mut config = ClientConfig::new("127.0.0.1:7777".parse()?, trust);
//! // Keep the identity across runs.
//! config.token_file = Some("save/locus-token".into());
//! let mut client = Client::connect(config)?;
//!
//! client.on_insert::<Player>("player", |p| tracing::info!("{} is here", p.name));
//! client.on_update::<Player>("player", |old, new| tracing::info!("{}: {} -> {} hp", new.name, old.hp, new.hp));
//! client.on_result(|request, outcome| {
//!     if let CallOutcome::Err { message, .. } = outcome {
//!         tracing::warn!("call {request} failed: {message}");
//!     }
//! });
//! client.subscribe("player", Filter::All)?;
//! // Typed: `client.call(&my_game_module::spawn::call("ann".into()))`.
//! client.call(&ReducerCall::new("spawn", rmp_serde::to_vec(&("ann",))?))?;
//!
//! loop {
//!     for event in client.poll() {
//!         if let Event::Disconnected { reason } = event {
//!             tracing::warn!("disconnected: {reason}");
//!             client.reconnect()?;
//!         }
//!     }
//!     let players: Vec<Player> = client.cache().rows("player")?;
//!     tracing::debug!("{} players in view", players.len());
//!     std::thread::sleep(std::time::Duration::from_millis(16));
//! }
//! # }
//! ```

pub mod cache;
pub mod client;
pub mod connection;
mod raw;
pub mod token_file;
pub mod trust;

#[cfg(feature = "bevy")]
pub mod bevy;

pub use cache::{ApplyError, Cache, DatagramStats, Event, Key, ReadError, Row, Welcome};
pub use client::Client;
pub use connection::{
    CID_LEN, ClientConfig, ConnectError, Connection, IDLE_TIMEOUT, Incoming, KEEP_ALIVE,
    ReceiveError, RequestId, SERVER_NAME, SendError, Sender, endpoint_config, quic_client_config,
};
pub use locus_protocol::{ALPN, CallOutcome, ErrorCode, Filter, ServerMessage, Token};
pub use locus_types::{Identity, ReducerCall, TableId};
pub use raw::RawConnection;
pub use token_file::TokenFileError;
pub use trust::{CertFileError, ParseFingerprintError, Trust, fingerprint, fingerprint_hex};
