//! The Locus server: one world — a module, its database, its commit log — served to clients over QUIC and, for
//! browsers, WebTransport.
//!
//! - [`Server::start`] recovers the world from its data directory (or creates it, running the module's `init`),
//!   then runs three parts until [`Server::shutdown`]:
//!   - the **tick thread**, which owns the [`World`]: each tick (drift-free, `t0 + n · period`) it drains the
//!     inbox, runs each reducer call in its own transaction, then the `tick` and due scheduled reducers, hands the
//!     tick's log record to the durability thread, and turns the changesets into per-client deltas;
//!   - the **release thread**, which sends each tick's results and deltas once its log record is durable
//!     (confirmed reads: a client is never told what a crash could take back);
//!   - the **network** (quinn on tokio): one task per connection reading frames, checking them and queueing them
//!     into the bounded inbox, and one writing. Native clients connect over QUIC (ALPN `locus/1`), browsers over
//!     WebTransport (ALPN `h3`, [`WEB_PATH`]) to the same UDP port with a certificate of their own ([`webcert`]);
//!     both are the same session from the first frame on. `ServerConfig::web` serves the page and `locus.json`.
//! - [`World`] is the sans-IO core (no clock, thread or socket), tested on its own: [`testing::TestWorld`] drives
//!   one with a manual clock and fake sessions (`tests/world.rs`).
//! - The wire protocol is `engine/docs/protocol.md` ([`locus_protocol`] in code).
//!
//! It does not compile modules: it is given wasm bytes (the `locus serve` command builds the demo module).
//!
//! ```no_run
//! use locus_server::{Server, ServerConfig};
//!
//! let wasm = std::fs::read("target/wasm32-unknown-unknown/release/game_module.wasm")?;
//! let server = Server::start(ServerConfig::new(wasm))?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admin_client;
pub mod border;
pub mod cert;
mod handoff;
mod http;
pub mod identity;
mod metrics;
pub mod nats_server;
mod net;
mod prometheus;
pub mod query;
pub mod region;
pub mod scaffold;
mod server;
pub mod testing;
mod web;
pub mod webcert;
pub mod world;

pub use locus_protocol::ALPN;
pub use metrics::{MetricsSnapshot, Percentiles};
pub use net::WEB_PATH;
pub use server::{
    AdminCallError, Limits, MODULE_FILE, PositionDatagrams, PublishError, RedirectError, Server,
    ServerConfig, StartError,
};
pub use webcert::WebCertSource;
pub use world::{MoveRates, World};
