//! The Locus module SDK: write a world's tables and reducers in Rust, compile the crate to one WebAssembly module
//! (`wasm32-unknown-unknown`, `crate-type = ["cdylib", "rlib"]`), and the Locus host runs it inside its database.
//!
//! - [`macro@table`] turns a struct into a table row type. Reach a table through the running call's
//!   [`Db`]: `ctx.db.player()` (the accessor comes from the generated `PlayerTable` trait), then `insert`, `iter`,
//!   `count`, `delete`, or an index: [`PrimaryKey`] (`find`, `update`, `delete`, `range`), [`UniqueIndex`]
//!   (`find`, `delete`, `range`), [`BTreeIndex`] (`filter`, `range`), [`SpatialIndex`] (`within`, `within_box`,
//!   `nearest`).
//! - [`macro@reducer`] turns a function into a reducer: a transactional entry point the host calls with a
//!   [`ReducerContext`] (sender, tick, timestamp, database, a deterministic [`rng`](ReducerContext::rng),
//!   scheduling — [`schedule_at`](ReducerContext::schedule_at) takes a `#[reducer(scheduled)]` reducer's
//!   [`ScheduledCall`], so scheduling any other reducer does not compile —, and each client's area of interest:
//!   [`set_area_follow`](ReducerContext::set_area_follow), [`set_area_fixed`](ReducerContext::set_area_fixed),
//!   [`clear_area`](ReducerContext::clear_area)), and in a world split into regions, the part of the world this
//!   instance serves ([`region`](ReducerContext::region), [`regions`](ReducerContext::regions)) and calls to
//!   other regions: [`send_to_region`](ReducerContext::send_to_region) and
//!   [`send_to_all_regions`](ReducerContext::send_to_all_regions) take a `#[reducer(region)]` reducer's
//!   [`RegionCall`] (or a client reducer's [`ReducerCall`]). A reducer's writes commit when it returns `Ok` (or `()`),
//!   and roll back when it returns `Err`, panics or is stopped by the host — calls to other regions with them.
//! - [`error!`], [`warn!`], [`info!`], [`debug!`], [`trace!`] write to the module log.
//! - [`version!`] declares the module's version; a `#[reducer(upgrade)]` reducer brings a live world's data to it
//!   when the module is published over an older one.
//! - A panic in a reducer rolls its writes back and tells the caller ``reducer `name` panicked: <message>`` (the
//!   world's admin also where), through the SDK's panic hook.
//!
//! The same crate also builds natively. There it cannot run anything (every host call answers
//! [`Errno::NotInReducer`](locus_types::abi::Errno::NotInReducer), and no [`ReducerContext`] can be made), but it
//! gives native code the row types and typed reducer calls: `say::call(text)` is a [`ReducerCall`] a Rust client
//! can send, with no code generator.
//!
//! This crate deliberately does not: talk to the network, read a clock or OS randomness (time and randomness come
//! from the context, so calls replay exactly), keep state between calls outside tables (a module instance may be
//! replaced at any time), or validate rows itself (the host checks every row against the schema).
//!
//! Every row and argument is MessagePack as [`locus_types::codec`] describes it; every host call is one from
//! [`locus_types::for_each_host_call!`]. Hot paths reuse pooled buffers, and iterators read rows in batches.
//!
//! ```
//! use locus_module::{Identity, ReducerContext, Vec2, info, reducer, table};
//!
//! #[table(public)]
//! pub struct Player {
//!     #[primary_key]
//!     #[auto_inc]
//!     pub id: u64,
//!     #[unique]
//!     pub name: String,
//!     #[spatial]
//!     pub pos: Vec2,
//!     #[owner]
//!     pub owner: Identity,
//! }
//!
//! #[reducer]
//! pub fn join(ctx: &ReducerContext, name: String) -> Result<(), String> {
//!     let me = ctx.db.player().insert(Player { id: 0, name, pos: Vec2::ZERO, owner: ctx.sender })?;
//!     info!("player {} joined as #{}", me.name, me.id);
//!     Ok(())
//! }
//!
//! #[reducer]
//! pub fn step(ctx: &ReducerContext, id: u64, dx: f32, dy: f32) -> Result<(), String> {
//!     let mut p = ctx.db.player().id().find(&id).ok_or("no such player")?;
//!     p.pos += Vec2::new(dx, dy);
//!     ctx.db.player().id().update(p)?;
//!     Ok(())
//! }
//!
//! fn main() {
//!     // Natively: typed calls for a client to send.
//!     let call = join::call("ada".to_owned());
//!     assert_eq!(call.reducer, "join");
//!     assert_eq!(call.args, [0x91, 0xa3, b'a', b'd', b'a']);
//! }
//! ```

// Lets the crate's own tests use the macros, whose output names `::locus_module`.
#[cfg(test)]
extern crate self as locus_module;

mod context;
pub mod index;
mod log;
mod reducer;
mod region;
mod scratch;
mod sys;
mod table;

pub use context::{
    AreaError, ContextRng, Db, ReducerContext, RegionBroadcastError, RegionSendError,
    ScheduleError, ScheduleId,
};
pub use index::{BTreeIndex, PrimaryKey, SpatialIndex, UniqueIndex};
pub use locus_macros::{reducer, table};
pub use locus_types::abi::{LogLevel, MAX_AREA_RADIUS, MAX_REGION_CALL_ARGS};
pub use locus_types::{
    ColumnDef, ColumnId, ColumnType, Identity, IndexDef, IndexKind, ReducerDef, ReducerKind,
    TableAccess, TableDef, Tick, Timestamp, Vec2,
};
pub use reducer::{
    IntoRegionCall, IntoScheduledCall, ReducerCall, ReducerResult, RegionCall, ScheduledCall,
};
pub use region::{Rect, Region};
pub use table::{InsertError, IntoTableHandle, RowIter, Table, TableHandle, UpdateError};

/// The shared Locus vocabulary (ids, schema model, row codec, ABI constants).
pub use locus_types as types;

/// Random numbers: use with [`ReducerContext::rng`] (`use locus_module::rand::RngExt;`). Built without OS
/// randomness.
pub use rand;

/// The serde the SDK uses, for deriving `Serialize`/`Deserialize` on opaque column types without a direct serde
/// dependency: `#[derive(locus_module::serde::Serialize)] #[serde(crate = "locus_module::serde")]`.
pub use serde;

/// Declare the module's version: `locus_module::version!(3);` once, at the crate's root.
///
/// The version is a number the module's author raises whenever a live world's data must be brought up to date —
/// new or changed content (items, recipes) in tables that `init` filled when the world was created, a column to
/// backfill. The world records the version its data is at; when a module of another version takes it over (a
/// `locus publish`, or `locus serve` restarted with a new build), the module's `#[reducer(upgrade)]` reducer runs
/// once, in the upgrade's transaction, with the data's version and the module's:
///
/// ```
/// locus_module::version!(2);
///
/// use locus_module::{ReducerContext, reducer};
///
/// /// Bring the content tables up to date (version 1 had no `iron_bar`, say).
/// #[reducer(upgrade)]
/// pub fn upgrade(ctx: &ReducerContext, from: u32, to: u32) -> Result<(), String> {
///     if from > to {
///         return Err(format!("cannot go back from version {from} to {to}"));
///     }
///     // upsert every content row…
///     Ok(())
/// }
/// # fn main() { assert_eq!(MODULE_VERSION, 2); }
/// ```
///
/// If the reducer fails, panics or runs out of its budget, the upgrade is refused and the world keeps its old
/// module and its data unchanged. A module without `version!` is version 0; a new world starts at its module's
/// version (no upgrade reducer runs for it: `init` does). It defines `pub const MODULE_VERSION: u32` and, in the
/// module's wasm build, the export `__locus_module_version` (`engine/docs/module-abi.md` §4.4).
#[macro_export]
macro_rules! version {
    ($version:expr $(,)?) => {
        /// The module's version (`locus_module::version!`): the data of a world this module runs is brought to it
        /// by the module's `#[reducer(upgrade)]` reducer.
        pub const MODULE_VERSION: u32 = $version;

        $crate::__guest! {
            /// The module's version, for the host.
            #[doc(hidden)]
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn __locus_module_version() -> u32 {
                MODULE_VERSION
            }
        }
    };
}

/// What generated code calls. Not part of the API: may change in any release.
/// The items given, only in a module's own build (wasm32, without the `client` feature): its exports. Used by the
/// macros, so that the `#[cfg]` is decided here, by this crate's target and features, not by the module crate's.
#[doc(hidden)]
#[macro_export]
#[cfg(all(target_arch = "wasm32", not(feature = "client")))]
macro_rules! __guest {
    ($($item:item)*) => { $($item)* };
}

/// The items given, only in a module's own build: here (natively, or with the `client` feature) nothing.
#[doc(hidden)]
#[macro_export]
#[cfg(not(all(target_arch = "wasm32", not(feature = "client"))))]
macro_rules! __guest {
    ($($item:item)*) => {};
}

#[doc(hidden)]
pub mod __private {
    pub use rmp_serde;
    pub use serde;
    pub use serde_bytes;

    pub use crate::log::log;
    pub use crate::table::TableIdCache;

    use crate::reducer::ReducerResult;
    use crate::{ReducerCall, ReducerContext, ReducerDef, Table};

    /// A `#[default(expr)]` column default, encoded as the column's values are (`T` is the field's type).
    ///
    /// # Panics
    ///
    /// If the value does not encode (a serde type that refuses MessagePack): a mistake in the module, found when
    /// the host reads its description.
    pub fn encode_default<T: serde::Serialize>(value: &T) -> ::std::vec::Vec<u8> {
        rmp_serde::to_vec(value).expect("a column default encodes")
    }

    /// [`encode_default`] for a bytes column (MessagePack `bin`, as rows store it).
    ///
    /// # Panics
    ///
    /// Never for bytes.
    pub fn encode_default_bytes(value: &[u8]) -> ::std::vec::Vec<u8> {
        rmp_serde::to_vec(serde_bytes::Bytes::new(value)).expect("bytes encode")
    }

    /// `A` and `B` are the same type.
    #[diagnostic::on_unimplemented(
        message = "this column is declared as `{Self}`, which is not the SDK's `{T}`",
        label = "the #[table]/#[reducer] macros map `Vec2`, `Identity` and `Timestamp` by name; use the SDK's type \
                 or mark the field #[opaque]"
    )]
    pub trait SameType<T: ?Sized> {}

    impl<T: ?Sized> SameType<T> for T {}

    /// Compiles only if `A` is `B`.
    pub const fn assert_same_type<A: ?Sized + SameType<B>, B: ?Sized>() {}

    /// Integer primary keys from the `u64` the host reports (two's-complement bits for signed keys).
    pub trait FromKeyBits {
        /// The key from its bits.
        fn from_key_bits(bits: u64) -> Self;
    }

    macro_rules! from_key_bits {
        ($($t:ty),*) => {$(
            impl FromKeyBits for $t {
                #[inline]
                #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, trivial_numeric_casts)]
                fn from_key_bits(bits: u64) -> $t {
                    bits as $t
                }
            }
        )*};
    }

    from_key_bits!(i8, i16, i32, i64, u8, u16, u32, u64);

    /// `Ok` or the failure message of whatever a reducer returned.
    #[inline]
    pub fn into_reducer_result<R: ReducerResult>(r: R) -> Result<(), String> {
        r.into_reducer_result()
    }

    /// Encode generated argument structs into a call.
    #[inline]
    pub fn reducer_call<A: serde::Serialize>(name: &'static str, args: &A) -> ReducerCall {
        crate::reducer::reducer_call(name, args)
    }

    /// Encode generated argument structs into a call of a `#[reducer(scheduled)]` reducer.
    #[inline]
    pub fn scheduled_call<A: serde::Serialize>(
        name: &'static str,
        args: &A,
    ) -> crate::ScheduledCall {
        crate::ScheduledCall::unchecked(crate::reducer::reducer_call(name, args))
    }

    /// Encode generated argument structs into a call of a `#[reducer(region)]` reducer.
    #[inline]
    pub fn region_call<A: serde::Serialize>(name: &'static str, args: &A) -> crate::RegionCall {
        crate::RegionCall::from_macro(crate::reducer::reducer_call(name, args))
    }

    /// A reducer export's body.
    #[inline]
    pub fn run_reducer<A: serde::de::DeserializeOwned>(
        name: &'static str,
        param_count: usize,
        args_len: u32,
        f: fn(&ReducerContext, A) -> Result<(), String>,
    ) -> u32 {
        crate::reducer::run_reducer(name, param_count, args_len, f)
    }

    /// A table description export's body: `(ptr << 32) | len` of the named-MessagePack [`TableDef`](crate::TableDef).
    ///
    /// # Panics
    ///
    /// If the definition is invalid (a bug in the macro: it checks every rule at compile time).
    pub fn describe_table<T: Table>() -> u64 {
        let def = T::def();
        if let Err(e) = def.validate() {
            panic!(
                "locus-module: invalid definition of table `{}`: {e}",
                T::NAME
            );
        }
        crate::reducer::describe(&def)
    }

    /// A reducer description export's body: `(ptr << 32) | len` of the named-MessagePack [`ReducerDef`].
    pub fn describe_reducer(def: &ReducerDef) -> u64 {
        crate::reducer::describe(def)
    }
}

#[cfg(test)]
mod tests;
