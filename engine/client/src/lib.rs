//! The Locus client SDK: connect to a Locus server over QUIC or WebTransport, keep a client cache of the rows the
//! server puts in this client's view, react to rows entering, changing and leaving it, and call reducers with
//! typed arguments. It builds natively and for the browser (`wasm32-unknown-unknown`).
//!
//! - [`Client`]: the polling facade for games and tools that are not async. A background task runs the
//!   connection (natively a thread, in the browser a task on the page's event loop); [`Client::poll`] (once per
//!   frame) applies what arrived to the [`Cache`], fires the `on_insert` / `on_update` / `on_delete` /
//!   `on_result` callbacks and returns the [`Event`]s.
//! - [`Connection`]: the async connection underneath, for async programs: requests through [`Sender`], server
//!   messages through [`Connection::next_message`].
//! - [`Cache`]: the client cache, sans-IO: feed it server messages, get events back.
//! - [`ClientConfig`] and [`Transport`]: where the server is and how to reach it (below).
//! - With the `bevy` feature, `bevy::LocusPlugin` and `bevy::MirrorTableExt::mirror_table` mirror rows into ECS
//!   entities (in both builds).
//!
//! Typed reducer calls come from the module crate itself: built natively, a module crate's `my_reducer::call(…)`
//! returns a [`ReducerCall`] that [`Client::call`] sends. Row types are the module's table structs (any
//! `DeserializeOwned` type whose fields are the table's columns, in order).
//!
//! The wire protocol is `engine/docs/protocol.md`, in Rust [`locus_protocol`].
//!
//! # Transports
//!
//! - **QUIC** (native builds; [`ClientConfig::new`]`(addr, trust)`, [`Transport::Quic`]): ALPN `locus/1` to the
//!   server's UDP address, pinning its long-lived self-signed certificate by its SHA-256 fingerprint (`Trust`).
//! - **WebTransport** (native builds and the browser; [`ClientConfig::web_transport`], [`Transport::WebTransport`]):
//!   HTTP/3 (ALPN `h3`) to the same UDP port and a session at `https://HOST:PORT/locus`, trusting the server's
//!   short-lived web certificate by the SHA-256 hashes in [`WebTransportConfig::certificate_hashes`] (any one;
//!   two during a rotation). The server publishes the URL and hashes at `/locus.json` on its web port
//!   ([`WebTransportConfig::from_locus_json`]); fetch them at each connect, as the certificate rotates.
//!
//! Invariants, for both: the client opens exactly one bidirectional stream and speaks the same frames on it
//! (`Hello` first); it never sends a datagram; protocol version 4's position datagrams reach the cache the same
//! way (over WebTransport as the session's datagrams); `Hello`/`Welcome`, the token, the cache, callbacks and
//! calls are one code path above the transport (`wire` is the only module that knows which transport it is).
//! The server's close codes (`protocol.md` §6) are reported over QUIC as the connection's application close
//! code and over WebTransport as the session's close code ([`ReceiveError::Closed`]).
//!
//! # The browser build
//!
//! `cargo build -p locus-client --target wasm32-unknown-unknown`. The browser's WebTransport bindings in
//! `web-sys` exist only with `--cfg=web_sys_unstable_apis`, which a dependency cannot set: the final build must
//! (this workspace does in `.cargo/config.toml`, `[target.wasm32-unknown-unknown] rustflags` and
//! `rustdocflags`; a project of its own needs the same). What differs there:
//! - there is no QUIC, `Trust`, `RawConnection` or token file; the transport is always WebTransport, and the
//!   browser checks the certificate hashes (an empty list means the authorities, as for any page);
//! - connecting cannot block: `Client::connect_async(config).await` and `client.reconnect().await`; polling,
//!   the cache, callbacks, calls and subscriptions are the same calls as natively;
//! - the identity token is kept in `localStorage` under [`ClientConfig::token_key`](ClientConfig) (instead of
//!   `token_file`): read at connect when no token is given, written when the server hands out a new one;
//! - time comes from `web-time` (`std::time::Instant::now` panics in a browser), timers from `setTimeout`.
//!
//! # Regions
//!
//! A world may be split into regions, each served by its own server; when the player's avatar crosses into another
//! region, the server sends `Redirect` and closes the connection (`protocol.md` §5, "Version 5: redirects"). Over
//! QUIC the [`Client`] follows it by itself: it connects to the new region's server (pinning the fingerprint the
//! redirect names) with the same token, so the same identity, subscribes again, and keeps the rows it holds until
//! the new region's view is in, then reports only the rows that differ ([`Cache::begin_redirect`]), with
//! [`Event::Redirected`] first; its [`ClientConfig`] then names the new server, for a later [`Client::reconnect`].
//! Over WebTransport it cannot (the new region's certificate hashes are in its `/locus.json`, and HTTP is the
//! application's): it reports [`Event::Redirected`] with the URL and `followed: false`, then
//! [`Event::Disconnected`]; the application fetches the URL and calls [`Client::follow_redirect`], which keeps the
//! view the same way.
//!
//! What it deliberately does not do: it does not predict or interpolate (the cache is exactly what the server
//! said, applied in order); it does not reconnect by itself after the connection is lost (call
//! [`Client::reconnect`] on [`Event::Disconnected`]; it does follow a redirect, above); it does not verify certificates against authorities or names natively (only the
//! pinned fingerprint or the given hashes); it does not fetch `/locus.json` itself (HTTP is the page's or the
//! game's); it does not check reducer arguments against the server's reducer list (the server does).
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
#[cfg(not(target_arch = "wasm32"))]
mod raw;
mod rt;
#[cfg(not(target_arch = "wasm32"))]
pub mod token_file;
mod token_store;
pub mod transport;
pub mod trust;
#[cfg(target_arch = "wasm32")]
pub mod web_storage;
mod wire;

#[cfg(feature = "bevy")]
pub mod bevy;

pub use cache::{ApplyError, Cache, DatagramStats, Event, Key, ReadError, Row, Welcome};
pub use client::{Client, REDIRECT_LIMIT, REDIRECT_SETTLE_TICKS};
pub use connection::{
    CID_LEN, ClientConfig, ConnectError, Connection, IDLE_TIMEOUT, Incoming, KEEP_ALIVE,
    ReceiveError, RequestId, SERVER_NAME, SendError, Sender, WriteError,
};
#[cfg(not(target_arch = "wasm32"))]
pub use connection::{RedirectConfigError, endpoint_config, quic_client_config};
pub use locus_protocol::{ALPN, CallOutcome, ErrorCode, Filter, Redirect, ServerMessage, Token};
pub use locus_types::{Identity, ReducerCall, TableId};
#[cfg(not(target_arch = "wasm32"))]
pub use raw::RawConnection;
#[cfg(not(target_arch = "wasm32"))]
pub use token_file::TokenFileError;
pub use transport::{
    ParseWebTransportError, Transport, WEB_PATH, WebTransportConfig, parse_certificate_hashes,
};
#[cfg(not(target_arch = "wasm32"))]
pub use trust::{CertFileError, Trust};
pub use trust::{ParseFingerprintError, fingerprint, fingerprint_hex};
#[cfg(target_arch = "wasm32")]
pub use web_storage::TokenStorageError;
