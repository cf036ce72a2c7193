//! Procedural macros of the Locus module SDK: [`macro@table`] and [`macro@reducer`].
//!
//! Use them through `locus-module`, which re-exports them: the generated code names `::locus_module` paths (and
//! the serde it re-exports), so a module crate depends on `locus-module` alone, under that name.
//!
//! This crate does not know the ABI or the row codec: it only turns declarations into calls of the SDK. The
//! column types are derived from each field's type as written (see the table below), because a macro sees tokens,
//! not resolved types; where a name could be ambiguous (`Vec2`, `Identity`, `Timestamp`), the generated code
//! asserts at compile time that it is the SDK's type.
//!
//! | written | column type |
//! |---|---|
//! | `bool`, `i8`…`i64`, `u8`…`u64`, `f32`, `f64`, `String` | the same |
//! | `Vec<u8>` | `Bytes` (MessagePack `bin`) |
//! | `Vec2`, `Identity`, `Timestamp` | the same |
//! | `Option<T>` | `Option(T)` |
//! | `usize`, `isize` | a compile error (their width differs between wasm32 and native) |
//! | anything else, or a field marked `#[opaque]` | `Opaque`: any serde type, as one MessagePack value |
//!
//! ```
//! use locus_module::{reducer, table, ReducerContext, Table, Vec2};
//!
//! #[table(public)]
//! pub struct Tree {
//!     #[primary_key]
//!     #[auto_inc]
//!     pub id: u64,
//!     #[spatial]
//!     pub pos: Vec2,
//! }
//!
//! #[reducer]
//! pub fn plant(ctx: &ReducerContext, x: f32, y: f32) -> Result<(), String> {
//!     ctx.db.tree().insert(Tree { id: 0, pos: Vec2::new(x, y) })?;
//!     Ok(())
//! }
//!
//! fn main() {
//!     assert_eq!(Tree::def().name, "tree");
//!     assert_eq!(plant::def().params.len(), 2);
//!     assert_eq!(plant::call(1.0, 2.0).reducer, "plant");
//! }
//! ```

use proc_macro::TokenStream;
use syn::Ident;
use syn::ext::IdentExt;

mod reducer;
mod table;
mod types;

/// Names starting with this are reserved for the engine (`locus_types::abi::RESERVED_PREFIX`).
const RESERVED_PREFIX: &str = "locus_";

/// An identifier's name without a raw `r#` prefix.
fn ident_name(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// Make a struct with named fields a table row type.
///
/// Options, comma-separated: `public` (rows may be sent to clients; the default is private), `movable` (see
/// below), `name = "…"` (the table's name; default: the struct's name in snake_case). E.g.
/// `#[table(public, movable)]`.
///
/// `movable`: in a world split into regions (separate server processes, each a rectangle of the world), a row of
/// this table — an avatar — is moved by the engine to the region it walks into, so the table needs a `#[spatial]`
/// column (a compile error otherwise): the engine places each row in a region by it. What moves with a row: the row
/// itself; and if the table has an identity column (its first `Identity` column that is `#[owner]`, `#[unique]` or
/// the `#[primary_key]`), every row of every table whose `#[owner]` column holds the moving row's identity, and
/// every row of every table whose primary key is an `Identity` equal to it (private per-player state). Everything
/// else stays where it is. Making a table movable, or no longer movable, is a compatible change for `locus publish`
/// (`locus_types::TableDef::movable`).
///
/// Field attributes: `#[primary_key]` (exactly one), `#[auto_inc]` (on an integer primary key: inserting `0`
/// takes the next value of the table's sequence), `#[unique]`, `#[index(btree)]`, `#[spatial]` (one `Vec2`
/// column per table, in an R-tree), `#[owner]` (an `Identity` column: the row is visible only to that player),
/// `#[opaque]` (store the field as an opaque serde value whatever its type's name), `#[default(expr)]` (the value
/// rows stored before this column existed get when `locus publish` adds it to a live world; `expr` converts
/// `Into` the field's type; without it they get the type's zero value). A column has at most one
/// index besides the primary key's own; a `#[unique]` or `#[index(btree)]` on the primary key lets it answer
/// ranges (its own index is a hash index).
///
/// Generated, for `struct Player` with table name `player` (all with the struct's visibility):
///
/// - `#[derive(Serialize, Deserialize)]` through the SDK's serde (do not derive them yourself), so a row
///   serializes as one MessagePack array, one element per field, in order;
/// - `impl locus_module::Table for Player`;
/// - `PlayerHandle`, the table in the running call: `insert`, `iter`, `count`, `delete`, and one accessor per
///   indexed column named after it, returning a `PrimaryKey`, `UniqueIndex`, `BTreeIndex` or `SpatialIndex`;
///   it implements `locus_module::IntoTableHandle` (`Row = Player`), so typed SDK calls such as
///   `ctx.set_area_follow(who, ctx.db.player(), &id, …)` take it;
/// - `trait PlayerTable { fn player(&self) -> PlayerHandle; }`, implemented for `locus_module::Db`: import it
///   wherever reducers write `ctx.db.player()`;
/// - on wasm32, the export `__locus_describe_table_player`.
#[proc_macro_attribute]
pub fn table(attr: TokenStream, item: TokenStream) -> TokenStream {
    table::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Make a function a reducer: `fn name(ctx: &ReducerContext, params…)` returning `()` or `Result<(), E>` with
/// `E: Display`.
///
/// Kinds: `#[reducer]` (called by clients), `#[reducer(init)]`, `#[reducer(client_connected)]`,
/// `#[reducer(client_disconnected)]` and `#[reducer(every_ms = N)]` (no parameters besides the context),
/// `#[reducer(tick)]` (exactly one parameter, `dt: f32`), `#[reducer(scheduled)]` (any parameters, given when
/// scheduled), `#[reducer(upgrade)]` (exactly two parameters, `from: u32, to: u32`: run once, in the upgrade's
/// transaction, when the module takes over data at another module version — see `locus_module::version!`; at most
/// one per module), `#[reducer(region)]` (any parameters: run only when a reducer of a region of the world sends
/// it a call with `ReducerContext::send_to_region` or `send_to_all_regions`, never by a client). Parameters are
/// owned types, mapped to column types as table fields are.
///
/// Generated, for `fn say` (besides the function itself, unchanged):
///
/// - `pub mod say { pub const NAME: &str; pub fn call(params…) -> ReducerCall; pub fn def() -> ReducerDef; }`
///   (on every target: a native client gets typed calls from the module crate itself). For a
///   `#[reducer(scheduled)]` reducer `call` returns a `ScheduledCall` instead, the only thing
///   `ReducerContext::schedule_at` / `schedule_in` take, so scheduling any other kind of reducer is a compile error
///   (a `ScheduledCall` converts `Into` a `ReducerCall` where one is needed). For a `#[reducer(region)]` reducer it
///   returns a `RegionCall`, which `ReducerContext::send_to_region` / `send_to_all_regions` take (as they take a
///   client reducer's `ReducerCall`; a `ScheduledCall` does not compile there). The module sees the
///   parent's items (`use super::*`), so parameter types resolve as in the function; reducers must be
///   module-level items;
/// - on wasm32, the exports `__locus_reducer_say` and `__locus_describe_reducer_say`.
#[proc_macro_attribute]
pub fn reducer(attr: TokenStream, item: TokenStream) -> TokenStream {
    reducer::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
