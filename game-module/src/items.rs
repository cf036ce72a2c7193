//! Items: inventories, crafting, and items lying in the world.
//!
//! An inventory is the set of `inventory_item` rows owned by a client: one row (a stack) per kind of item, at most
//! [`INVENTORY_SLOTS`] kinds, each at most its kind's `max_stack`. The table is public with an `#[owner]` column,
//! so the server sends each row to its owner alone.
//!
//! Crafting is atomic because a reducer is a transaction: `craft` takes the inputs out, then puts the outputs in,
//! and if anything fails on the way (an input missing, no room for an output) it returns `Err` and every write it
//! made is rolled back.

use locus_module::{Identity, ReducerContext, Timestamp, Vec2, reducer, table};

use crate::content::{ItemStack, content};
use crate::players::{PlayerTable, my_living_player, start_action};

/// How many kinds of item one inventory holds.
pub const INVENTORY_SLOTS: usize = 12;

/// How far a player reaches to pick up an item lying in the world, in metres.
pub const PICKUP_RANGE: f32 = 3.0;

/// How long `craft` keeps a player busy, in milliseconds.
pub const CRAFT_COOLDOWN_MS: u64 = 500;

/// How long `eat` keeps a player busy, in milliseconds.
pub const EAT_COOLDOWN_MS: u64 = 1000;

/// How long an item lies in the world before it disappears, in seconds.
pub const GROUND_ITEM_SECS: u64 = 300;

/// A stack of one kind of item in a client's inventory: public but owned, so only its owner is sent the row.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryItem {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// The client whose inventory holds it (indexed: an inventory is one lookup).
    #[owner]
    #[index(btree)]
    pub owner: Identity,
    /// The item's id (`"wood"`, …; see `item_kind`).
    pub item: String,
    /// How many, `1..=max_stack`.
    pub count: u32,
}

/// Items lying in the world (dropped by a player or by a dying creature): public and spatial, so clients see those
/// near them.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct GroundItem {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where it lies.
    #[spatial]
    pub pos: Vec2,
    /// The item's id.
    pub item: String,
    /// How many.
    pub count: u32,
    /// When it disappears (indexed for `housekeeping`).
    #[index(btree)]
    pub expires_at: Timestamp,
}

/// The item definitions from `assets/items.json`, public so any client can show names and tooltips. Written by
/// `init`, and brought up to date in a live world by the upgrade reducer ([`crate::world::upgrade()`]); the rules
/// read the compiled-in definitions ([`crate::content()`]).
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct ItemKind {
    /// The item's id.
    #[primary_key]
    pub id: String,
    /// Display name.
    pub name: String,
    /// The most one player may carry.
    pub max_stack: u32,
    /// Damage it adds as a weapon (0 if none).
    pub damage: u32,
    /// Health one restores when eaten (0 if not food).
    pub heal: u32,
    /// A line for tooltips.
    pub description: String,
}

/// The recipes from `assets/recipes.json`, public so any client can list them. Written by `init`, and brought up to
/// date in a live world by the upgrade reducer ([`crate::world::upgrade()`]).
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// The recipe's id, as `craft` takes it.
    #[primary_key]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Consumed.
    pub inputs: Vec<ItemStack>,
    /// Produced.
    pub outputs: Vec<ItemStack>,
}

/// The display name of item `id` (the id itself if unknown).
fn item_name(id: &str) -> &str {
    content().item(id).map_or(id, |def| def.name.as_str())
}

/// The stack of `item` that `owner` holds, if any.
fn stack_of(ctx: &ReducerContext, owner: Identity, item: &str) -> Option<InventoryItem> {
    ctx.db
        .inventory_item()
        .owner()
        .filter(&owner)
        .find(|s| s.item == item)
}

/// How many of `item` `owner` holds.
pub(crate) fn count_of(ctx: &ReducerContext, owner: Identity, item: &str) -> u32 {
    stack_of(ctx, owner, item).map_or(0, |s| s.count)
}

/// Whether `owner` holds at least one `item`.
pub(crate) fn carries(ctx: &ReducerContext, owner: Identity, item: &str) -> bool {
    count_of(ctx, owner, item) > 0
}

/// The damage of the best weapon `owner` carries (0 if none).
pub(crate) fn best_weapon(ctx: &ReducerContext, owner: Identity) -> u32 {
    ctx.db
        .inventory_item()
        .owner()
        .filter(&owner)
        .filter_map(|s| content().item(&s.item).map(|def| def.damage))
        .max()
        .unwrap_or(0)
}

/// Put `count` of `item` into `owner`'s inventory.
///
/// # Errors
///
/// If the item is unknown, the stack would pass its `max_stack`, or a new stack would need a slot and all
/// [`INVENTORY_SLOTS`] are taken. Nothing is written then.
pub(crate) fn add_items(
    ctx: &ReducerContext,
    owner: Identity,
    item: &str,
    count: u32,
) -> Result<(), String> {
    let def = content()
        .item(item)
        .ok_or_else(|| format!("no item `{item}`"))?;
    let inventory = ctx.db.inventory_item();
    let stacks: Vec<InventoryItem> = inventory.owner().filter(&owner).collect();
    let slots_used = stacks.len();
    match stacks.into_iter().find(|s| s.item == item) {
        Some(mut stack) => {
            let total = stack.count.saturating_add(count);
            if total > def.max_stack {
                return Err(format!(
                    "you cannot carry more than {} {} (you have {})",
                    def.max_stack, def.name, stack.count
                ));
            }
            stack.count = total;
            inventory.id().update(stack)?;
        }
        None if count > def.max_stack => {
            return Err(format!(
                "you cannot carry more than {} {}",
                def.max_stack, def.name
            ));
        }
        None => {
            if slots_used >= INVENTORY_SLOTS {
                return Err(format!(
                    "your inventory is full ({INVENTORY_SLOTS} kinds of item)"
                ));
            }
            inventory.insert(InventoryItem {
                id: 0,
                owner,
                item: item.to_owned(),
                count,
            })?;
        }
    }
    Ok(())
}

/// Take `count` of `item` out of `owner`'s inventory (deleting the stack when it empties).
///
/// # Errors
///
/// If `owner` has fewer than `count`; nothing is written then.
pub(crate) fn take_items(
    ctx: &ReducerContext,
    owner: Identity,
    item: &str,
    count: u32,
) -> Result<(), String> {
    let held = stack_of(ctx, owner, item);
    let mut stack = match held {
        Some(stack) if stack.count >= count => stack,
        _ if count == 0 => return Ok(()),
        _ => {
            let held = held.map_or(0, |s| s.count);
            return Err(format!(
                "you need {count} {} but have {held}",
                item_name(item)
            ));
        }
    };
    stack.count -= count;
    let inventory = ctx.db.inventory_item();
    if stack.count == 0 {
        inventory.delete(&stack);
    } else {
        inventory.id().update(stack)?;
    }
    Ok(())
}

/// Leave `count` of `item` lying at `pos` for [`GROUND_ITEM_SECS`].
pub(crate) fn drop_on_ground(
    ctx: &ReducerContext,
    pos: Vec2,
    item: &str,
    count: u32,
) -> Result<(), String> {
    ctx.db.ground_item().insert(GroundItem {
        id: 0,
        pos,
        item: item.to_owned(),
        count,
        expires_at: ctx.timestamp.add_micros(GROUND_ITEM_SECS * 1_000_000),
    })?;
    Ok(())
}

/// How `sync_definitions` changed `item_kind` and `recipe`: rows inserted, updated and deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefinitionChanges {
    /// Definitions the tables did not have.
    pub added: u32,
    /// Rows whose definition changed.
    pub changed: u32,
    /// Rows of definitions the content no longer has.
    pub removed: u32,
}

/// Make `item_kind` and `recipe` hold exactly the compiled-in content's definitions ([`content()`]): insert the
/// new ones, update the changed ones, delete the ones the content no longer has; rows already right are not
/// written. `init` fills the empty tables of a new world with it; the upgrade reducer
/// ([`crate::world::upgrade()`]) brings a live world's up to date.
pub(crate) fn sync_definitions(ctx: &ReducerContext) -> Result<DefinitionChanges, String> {
    let mut changes = DefinitionChanges::default();
    let kinds = ctx.db.item_kind();
    for def in &content().items {
        let row = ItemKind {
            id: def.id.clone(),
            name: def.name.clone(),
            max_stack: def.max_stack,
            damage: def.damage,
            heal: def.heal,
            description: def.description.clone(),
        };
        match kinds.id().find(&row.id) {
            None => {
                kinds.insert(row)?;
                changes.added += 1;
            }
            Some(old) if old != row => {
                kinds.id().update(row)?;
                changes.changed += 1;
            }
            Some(_) => {}
        }
    }
    for old in kinds.iter().filter(|k| content().item(&k.id).is_none()) {
        kinds.id().delete(&old.id);
        changes.removed += 1;
    }
    let recipes = ctx.db.recipe();
    for def in &content().recipes {
        let row = Recipe {
            id: def.id.clone(),
            name: def.name.clone(),
            inputs: def.inputs.clone(),
            outputs: def.outputs.clone(),
        };
        match recipes.id().find(&row.id) {
            None => {
                recipes.insert(row)?;
                changes.added += 1;
            }
            Some(old) if old != row => {
                recipes.id().update(row)?;
                changes.changed += 1;
            }
            Some(_) => {}
        }
    }
    for old in recipes.iter().filter(|r| content().recipe(&r.id).is_none()) {
        recipes.id().delete(&old.id);
        changes.removed += 1;
    }
    Ok(changes)
}

/// Craft `recipe`: take all its inputs from the caller's inventory and put all its outputs in, or change nothing.
#[reducer]
pub fn craft(ctx: &ReducerContext, recipe: String) -> Result<(), String> {
    let def = content()
        .recipe(&recipe)
        .ok_or_else(|| format!("no recipe `{recipe}`"))?;
    let mut me = my_living_player(ctx)?;
    start_action(ctx, &mut me, CRAFT_COOLDOWN_MS)?;
    // Inputs out first, outputs in second: a failure in between (an output that does not fit) returns `Err`, and
    // the transaction puts the inputs back.
    for input in &def.inputs {
        take_items(ctx, ctx.sender, &input.item, input.count)
            .map_err(|e| format!("cannot craft {}: {e}", def.name))?;
    }
    for output in &def.outputs {
        add_items(ctx, ctx.sender, &output.item, output.count)
            .map_err(|e| format!("cannot craft {}: {e}", def.name))?;
    }
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Drop `count` of `item` from the caller's inventory where its player stands.
#[reducer]
pub fn drop_item(ctx: &ReducerContext, item: String, count: u32) -> Result<(), String> {
    if count == 0 {
        return Err("drop at least one".into());
    }
    let me = my_living_player(ctx)?;
    take_items(ctx, ctx.sender, &item, count)?;
    drop_on_ground(ctx, me.pos, &item, count)
}

/// Pick up the ground item `ground_item_id`, which must lie within [`PICKUP_RANGE`] of the caller's player.
#[reducer]
pub fn pick_up(ctx: &ReducerContext, ground_item_id: u64) -> Result<(), String> {
    let me = my_living_player(ctx)?;
    let ground = ctx.db.ground_item();
    let thing = ground
        .id()
        .find(&ground_item_id)
        .ok_or("that item is gone")?;
    let distance = thing.pos.distance(me.pos);
    if distance > PICKUP_RANGE {
        return Err(format!(
            "too far from the {}: {distance:.1} m away, you reach {PICKUP_RANGE} m",
            item_name(&thing.item)
        ));
    }
    add_items(ctx, ctx.sender, &thing.item, thing.count)?;
    ground.delete(&thing);
    Ok(())
}

/// Eat one `item` (food heals; see `item_kind.heal`).
#[reducer]
pub fn eat(ctx: &ReducerContext, item: String) -> Result<(), String> {
    let def = content()
        .item(&item)
        .ok_or_else(|| format!("no item `{item}`"))?;
    if def.heal == 0 {
        return Err(format!("you cannot eat {}", def.name));
    }
    let mut me = my_living_player(ctx)?;
    if me.hp >= me.max_hp() {
        return Err("you are already at full health".into());
    }
    start_action(ctx, &mut me, EAT_COOLDOWN_MS)?;
    take_items(ctx, ctx.sender, &item, 1)?;
    me.hp = (me.hp + def.heal).min(me.max_hp());
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Housekeeping's part: delete ground items whose time is up.
pub(crate) fn expire(ctx: &ReducerContext) {
    let ground = ctx.db.ground_item();
    for thing in ground.expires_at().range(..=ctx.timestamp) {
        ground.delete(&thing);
    }
}
