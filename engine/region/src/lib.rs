//! The sans-IO core of a Locus world split into regions.
//!
//! A world that outgrows one machine is split by space: each **region** is a rectangle of the world served by its
//! own Locus process (its own module instance, commit log and clients). This crate holds what those processes must
//! agree on, with no I/O, clock or thread:
//!
//! - [`layout`]: the world's layout, read from its config file (`world.toml`): the regions, their rectangles, the
//!   border band; which region owns a point ([`WorldLayout::region_at`]) and which neighbours must see a row near
//!   a border ([`WorldLayout::neighbours_seeing`]).
//! - [`border`]: which of this region's rows each neighbour must hold a read-only copy of, kept up to date from
//!   the committed changesets ([`BorderFeed`]), so the border is invisible to players.
//! - [`copies`]: the read-only copies of the neighbours' rows this region holds, merged with its own rows into what
//!   its interest stage is fed ([`BorderCopies`]).
//! - [`link`]: border traffic between two regions: the messages, their numbering, and noticing a lost one.
//! - [`message`]: what regions send each other through JetStream (a player's rows, handed over), and the system
//!   tables that make sending and applying crash-safe.
//! - [`outbox`]: the sending side of messages between regions: numbered in the transaction that sends them, kept
//!   until the transport confirms them, sent again until it does ([`Outbox`]).
//! - [`dedup`]: exactly-once application of messages that a transport (NATS JetStream) delivers at least once:
//!   each sender numbers its messages, and the receiver keeps, in its own log, which numbers it applied
//!   ([`Applied`]).
//!
//! What it does not do: talk to NATS, move rows, or run reducers. The server is the shell around it.
//!
//! ```
//! use locus_region::WorldLayout;
//!
//! let layout = WorldLayout::from_toml(r#"
//!     world = "demo"
//!     size = 4096.0
//!     border = 80.0
//!     nats = "nats://127.0.0.1:4222"
//!     [[region]]
//!     name = "west"
//!     rect = [0.0, 0.0, 2048.0, 4096.0]
//!     listen = "127.0.0.1:7881"
//!     [[region]]
//!     name = "east"
//!     rect = [2048.0, 0.0, 4096.0, 4096.0]
//!     listen = "127.0.0.1:7882"
//! "#)?;
//! let west = layout.region_id("west").unwrap();
//! let east = layout.region_id("east").unwrap();
//! assert_eq!(layout.region_at(glam::Vec2::new(100.0, 100.0)), Some(west));
//! // A row 30 m west of the border is seen from the east region too; one 500 m west is not.
//! assert_eq!(layout.neighbours_seeing(glam::Vec2::new(2018.0, 50.0)), vec![east]);
//! assert!(layout.neighbours_seeing(glam::Vec2::new(1548.0, 50.0)).is_empty());
//! # Ok::<(), locus_region::LayoutError>(())
//! ```

pub mod border;
pub mod copies;
pub mod dedup;
pub mod layout;
pub mod link;
pub mod message;
pub mod outbox;

pub use border::{BorderDelta, BorderFeed};
pub use copies::BorderCopies;
pub use dedup::Applied;
pub use layout::{LayoutError, Rect, RegionConfig, RegionId, WorldLayout};
pub use link::{BorderMessage, Handled, Payload, Receiver, Sender, schema_fingerprint};
pub use outbox::{Destination, Outbox, Transmit, message_id};
