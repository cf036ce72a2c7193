//! A live module upgrade's example (cargo feature `upgrade-demo`): the same world plus a `guild` table, a
//! `found_guild` reducer and a `title` column at the end of `player` (existing players get `"Adventurer"`, its
//! `#[default]`), and new content — a `guild_banner` item and recipe, and `hide` stacking to 40
//! (`assets/upgrade-demo/`) — as module version 2. Every change is compatible, so `locus publish` swaps it into a
//! running world without disconnecting anyone, and the module's upgrade reducer ([`crate::world::upgrade()`], run with
//! `(1, 2)`) writes the new content into the world's `item_kind` and `recipe` tables in the same step:
//!
//! ```sh
//! cargo build --release --target wasm32-unknown-unknown -p game-module --features upgrade-demo \
//!     --target-dir target/upgrade-demo
//! cargo run --release -p locus-server -- publish target/upgrade-demo/wasm32-unknown-unknown/release/game_module.wasm
//! ```

use locus_module::{Identity, ReducerContext, reducer, table};

use crate::players::{PlayerTable, my_player};

/// A guild: a name, unique, and who founded it.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Guild {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Unique, 3 to 24 characters.
    #[unique]
    pub name: String,
    /// The founder's identity.
    pub founder: Identity,
}

/// Found guild `name` and take the title "Guild founder".
#[reducer]
pub fn found_guild(ctx: &ReducerContext, name: String) -> Result<(), String> {
    let name = name.trim().to_owned();
    if !(3..=24).contains(&name.chars().count()) {
        return Err("a guild name has 3 to 24 characters".into());
    }
    if ctx.db.guild().name().find(&name).is_some() {
        return Err(format!("the guild `{name}` exists"));
    }
    let mut me = my_player(ctx)?;
    ctx.db.guild().insert(Guild {
        id: 0,
        name,
        founder: ctx.sender,
    })?;
    me.title = "Guild founder".into();
    ctx.db.player().id().update(me)?;
    Ok(())
}
