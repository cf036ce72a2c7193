//! Interest management for Locus: which rows each client sees, as per-tick deltas.
//!
//! Each client is streamed only what is near it and what it may see: rows of spatial tables inside its **area of
//! interest** (a circle following its avatar, with an enter radius and a larger leave radius for hysteresis), rows
//! of other tables matching its **subscriptions** (`column = value`, `owner = me`), and never a row of a private
//! table or a row owned by someone else. The work per tick is proportional to what changed and who watches it.
//! Under crowding a per-client cap keeps the nearest rows (chosen again every few ticks, a crowd's clients in
//! turn), and an optional per-client byte budget defers the rest with priority accumulation. A changed row goes to
//! a client that holds its previous version as a **patch** of its changed columns ([`locus_types::patch`]), a few
//! bytes instead of the whole row.
//!
//! This crate is **sans-IO**: no sockets, clocks or threads of its own (the per-client work of a poll can run on a
//! thread pool the caller passes in, [`Interest::poll_tick_on`], with the same output as on one thread). The tick thread feeds it with `handle_*` calls (the
//! committed [`Changeset`](locus_store::Changeset)s, connects, areas, subscriptions) and takes each tick's output
//! with [`Interest::poll_tick`]; the server encodes and sends the [`Deltas`]. It deliberately does not encode or
//! send anything, nor decide areas (the module does, through the server).
//!
//! ```
//! use locus_interest::{Area, Center, ClientId, Filter, Interest, InterestConfig};
//! use locus_store::Database;
//! use locus_types::{codec, ColumnType, IndexKind, Identity, TableAccess, TableDef, Tick, Value, Vec2};
//!
//! let mut db = Database::default();
//! let def = TableDef::builder("tree").column("id", ColumnType::U32).column("pos", ColumnType::Vec2)
//!     .primary_key("id").index("pos", IndexKind::Spatial).access(TableAccess::Public).build()?;
//! let trees = db.create_table(def.clone())?;
//! let mut interest = Interest::new(InterestConfig::default(), &db);
//!
//! let ada = ClientId(0);
//! interest.handle_connect(ada, Identity([1; 32]));
//! interest.handle_subscribe(ada, trees, Filter::All)?;
//! let area = Area { center: Center::Fixed(Vec2::ZERO), enter_radius: 50.0, leave_radius: 60.0 };
//! interest.handle_area(ada, Some(area))?;
//!
//! let mut tx = db.begin();
//! for (id, x) in [(1, 10.0), (2, 500.0)] {
//!     tx.insert(trees, &codec::encode_row(&def.columns, &[Value::U64(id), Value::Vec2(Vec2::new(x, 0.0))])?)?;
//! }
//! interest.handle_changeset(&tx.commit());
//! let deltas = interest.poll_tick(Tick(1));
//! let delta = deltas.get(ada).unwrap();
//! assert_eq!(delta.inserts.len(), 1); // only the near tree
//! assert_eq!(deltas.row(delta.inserts[0]).key, &Value::U64(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod deltas;
mod error;
mod grid;
mod interest;
mod key_index;
mod mirror;
mod pass;
mod prefetch;
mod registry;
mod view;

pub use deltas::{Delta, Deltas, RowRef};
pub use error::{AreaError, SubscribeError};
pub use interest::{
    Area, Center, ClientId, DEFAULT_BYTE_BUDGET, Filter, Interest, InterestConfig, RowId,
    VIEW_ROWS_PER_CLIENT,
};
