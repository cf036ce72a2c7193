//! The Locus module host: loads a world's WebAssembly module under wasmtime and runs its reducers as
//! transactions over a [`locus_store::Database`].
//!
//! - [`Runtime`] is the wasmtime engine with the ABI linked in ([`locus_types::abi`], documented for module
//!   authors in `engine/docs/module-abi.md`) and the [`HostConfig`] limits.
//! - [`Runtime::load`] compiles and validates a module and reads its description ([`locus_types::ModuleDef`]);
//!   every problem is a [`LoadError`] naming it.
//! - [`Module::instantiate`] creates the module's tables in a database and instantiates the module once;
//!   [`ModuleInstance`] then runs reducers — client calls, lifecycle, tick, periodic and scheduled — each in its own
//!   transaction: committed on success, rolled back on an error, a trap or an interruption, with the reason
//!   returned as a [`CallError`].
//! - The database is not the instance's: its owner (the server's world) lends it as `&mut Database` to each call
//!   and has it back when the call returns, so snapshots and queries read it with no instance involved. [`Hosted`]
//!   pairs an instance with a database of its own, for tests and tools.
//! - [`Module::upgrade`] prepares a new module version over a running one's database, migrating only the tables
//!   whose definition changed, aside; [`Upgrade::apply`] swaps them in and, when the module's version differs from
//!   the one the data is at ([`data_version`]), runs the module's upgrade reducer in a transaction that
//!   [`AppliedUpgrade::commit`] keeps and [`AppliedUpgrade::revert`] undoes with the rest.
//! - Reducers schedule one-shot calls and set each client's area of interest through host calls that write the
//!   private system tables `locus_schedule` and `locus_area` in the call's transaction; the server reads areas back
//!   with [`area`] (or the table [`ModuleInstance::area_table`]) and `locus_types::abi::AreaRow`.
//! - In a world split into regions, reducers send calls to other regions (`region_send`, `region_broadcast`) as rows
//!   of the server's system table `locus_outbox` (`locus_region::message`), written in the call's transaction; the
//!   receiving server runs each with [`ModuleInstance::call_from_region`], the only way to run a `Region` reducer.
//! - Every call is bounded by time (epoch interruption) or fuel, and the instance's memory by a limit: a runaway
//!   reducer stops, never the engine. A bad pointer from the module is a trap, never a host panic.
//! - A reducer that panics — the SDK's panic hook reports the message and location through `reducer_panic`, then
//!   the module traps — fails with [`CallError::Panicked`] (its `Display` is a client's text, without the location;
//!   [`CallError::detailed`] the operator's, with it); any other trap with [`CallError::Trapped`], one line. A
//!   trap's wasm backtrace, demangled ([`Backtrace`]), is kept apart in the error, for the server's log only.
//! - [`build`] compiles a module crate to wasm with cargo (for tests and `locus serve`).
//!
//! It deliberately does not own a clock, a tick loop, the network or the commit log: the server drives it, passing
//! each call's [`CallContext`] and collecting the changesets.
//!
//! ```
//! use locus_host::{CallContext, HostConfig, Runtime};
//! use locus_store::Database;
//! use locus_types::{Tick, Timestamp};
//!
//! // The smallest valid module: memory, the ABI version, and one reducer that does nothing.
//! let wasm = wat::parse_str(r#"
//!   (module
//!     (memory (export "memory") 1)
//!     (data (i32.const 16) "\83\a4name\a4noop\a4kind\a6Client\a6params\90")
//!     (func (export "__locus_abi_version") (result i32) i32.const 1)
//!     (func (export "__locus_describe_reducer_noop") (result i64)
//!       i64.const 68719476767) ;; (16 << 32) | 31
//!     (func (export "__locus_reducer_noop") (param i32) (result i32) i32.const 0))
//! "#)?;
//! let runtime = Runtime::new(HostConfig::default())?;
//! let module = runtime.load(&wasm)?;
//! let mut db = Database::default();
//! let mut instance = module.instantiate(&mut db)?;
//! let ctx = CallContext::server(Tick(1), Timestamp(0), 7);
//! let changes = instance.call(&mut db, "noop", &[0x90], &ctx)?;
//! assert!(changes.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backtrace;
pub mod build;
mod calls;
mod config;
mod env;
mod error;
mod hosted;
mod instance;
mod upgrade;
pub mod web_build;

pub use backtrace::{Backtrace, Frame};
pub use config::{Budget, EPOCH_PERIOD, HostConfig};
pub use env::{CallContext, LogLine, area, data_version};
pub use error::{CallError, InstantiateError, LoadError, PanicLocation, RuntimeError};
pub use hosted::Hosted;
pub use instance::{Module, ModuleInstance, Runtime, ScheduledRun};
pub use upgrade::{AppliedUpgrade, Upgrade, UpgradeError};
