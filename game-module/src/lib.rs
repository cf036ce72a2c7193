//! The Locus demo world: a small BitCraft-style MMO — terrain, players, creatures, resources, items, crafting,
//! chat and combat — as one module. It is also the example to copy: each part of the game is one file of tables
//! and reducers, and `README.md` in this crate walks through adding a table and a reducer.
//!
//! Build: `cargo build -p game-module --release --target wasm32-unknown-unknown` → `game_module.wasm`;
//! `locus serve` builds and runs it. Natively the crate gives clients its row types, typed reducer calls
//! (`game_module::move_to::call(x, y)`), its content ([`content()`]) and its terrain function
//! ([`terrain::terrain_at`]).
//!
//! The content — terrain palette and generator, items, recipes, resource and creature spawn tables — is the JSON in
//! the workspace's `assets/` directory, compiled in ([`mod@content`]). The module's version, [`MODULE_VERSION`],
//! says which content a world's `item_kind` and `recipe` tables hold; a newer build brings them up to date
//! ([`world::upgrade()`]).
//!
//! # The world
//!
//! A square of [`WORLD_SIZE`] metres, [`terrain::TILE_SIZE`]-metre tiles of water, sand, grass, forest and stone,
//! generated from a seed (see [`terrain`]), with sea along the edges and dry land around the spawn point. A
//! client's area of interest follows its player ([`VIEW_ENTER`] / [`VIEW_LEAVE`] metres), so it is sent the
//! terrain chunks, players, creatures, resource nodes, dropped items and local speech around it, and nothing
//! else of the world's spatial tables.
//!
//! # Tables
//!
//! | table | visibility | columns (in order) |
//! |---|---|---|
//! | `chunk` | public, spatial | `id: u32` pk (`cy·128 + cx`) · `center: Vec2` spatial · `tiles: Bytes` (64 palette indices) |
//! | `player` | public, spatial, movable (between regions, with the rows its identity owns) | `id: u64` pk auto_inc · `pos: Vec2` spatial · `identity: Identity` unique · `name: String` unique · `target: Vec2` · `dir: Vec2` · `moving: bool` btree · `online: bool` · `hp: u32` · `level: u32` · `xp: u64` · `busy_until: Timestamp` |
//! | `creature` | public, spatial | `id: u64` pk auto_inc · `pos: Vec2` spatial · `kind: String` · `hp: u32` · `state: Opaque` ([`CreatureState`]) · `home: Vec2` |
//! | `creature_mind` | private: never sent | `id: u64` pk (the creature's) · `next_think: u64` btree · `last_think: u64` · `goal: Vec2` · `ready_at: Timestamp` |
//! | `resource_node` | public, spatial | `id: u64` pk auto_inc · `pos: Vec2` spatial · `kind: String` · `amount: u32` |
//! | `ground_item` | public, spatial | `id: u64` pk auto_inc · `pos: Vec2` spatial · `item: String` · `count: u32` · `expires_at: Timestamp` btree |
//! | `inventory_item` | public, owned: only its owner is sent a row | `id: u64` pk auto_inc · `owner: Identity` owner, btree · `item: String` · `count: u32` |
//! | `item_kind` | public | `id: String` pk · `name: String` · `max_stack: u32` · `damage: u32` · `heal: u32` · `description: String` |
//! | `recipe` | public | `id: String` pk · `name: String` · `inputs: Opaque` · `outputs: Opaque` (lists of [`ItemStack`]) |
//! | `local_message` | public, spatial: sent within earshot | `id: u64` pk auto_inc · `pos: Vec2` spatial · `player_id: u64` · `from: String` · `text: String` · `sent: Timestamp` · `expires_at: Timestamp` btree |
//! | `global_message` | public | `id: u64` pk auto_inc · `player_id: u64` · `from: String` · `text: String` · `sent: Timestamp` · `expires_at: Timestamp` btree |
//! | `whisper` | public, owned (two rows per whisper: one per party) | `id: u64` pk auto_inc · `owner: Identity` owner · `from: String` · `to: String` · `text: String` · `sent: Timestamp` · `expires_at: Timestamp` btree |
//! | `chat_quota` | private: never sent | `identity: Identity` pk · `tokens: f32` · `updated: Timestamp` |
//!
//! # Reducers
//!
//! Every client reducer acts for the caller's own player (found by `ctx.sender`; none takes a player id) and
//! checks its inputs; a refusal is an `Err` with a message for the player, and writes nothing.
//!
//! | reducer | kind | does | refuses |
//! |---|---|---|---|
//! | `init` | init | writes `item_kind` and `recipe`; schedules 32 × `generate_region` | — |
//! | `upgrade(from, to)` | upgrade | when a build of another [`MODULE_VERSION`] takes a live world over: brings `item_kind` and `recipe` to this build's content | — |
//! | `generate_region(band)` | scheduled | one band of chunks, resource nodes and creatures; in a world split into regions, of the region's own rectangle only, with its share of each kind ([`world::Portion`]) | a band past the last |
//! | `client_connected` | client_connected | first time: a player `player-<id>` on land near the spawn point, with [`STARTING_ITEMS`]; always: online, area follows the player | — |
//! | `client_disconnected` | client_disconnected | the player stops, offline | — |
//! | `set_name(name)` | client | renames the player (stored lowercase) | invalid ([`validate_name`]) or taken names |
//! | `move_to(x, y)` | client | walk toward a point (clamped into the world) | non-finite points; the dead |
//! | `move_dir(dx, dy)` | client | walk in a direction; (0, 0) stops | non-finite directions; the dead |
//! | `teleport(x, y)` | client (demo/admin) | jump to a point and stand | water; non-finite points; the dead |
//! | `gather(node_id)` | client | one yield from a resource node | beyond [`GATHER_RANGE`]; depleted nodes; a missing tool; busy; a full inventory |
//! | `craft(recipe)` | client | all inputs out, all outputs in — or nothing | unknown recipes; missing inputs; outputs that do not fit; busy |
//! | `drop_item(item, count)` | client | items from the inventory to the ground at the player | fewer than `count` held; `count` 0 |
//! | `pick_up(ground_item_id)` | client | a ground item into the inventory | beyond [`PICKUP_RANGE`]; a full inventory; gone items |
//! | `eat(item)` | client | heals by the food's `heal` | non-food; full health; none held; busy |
//! | `attack(creature_id)` | client | hits a creature; at 0 health it dies, drops loot, gives experience, respawns later | beyond [`ATTACK_RANGE`]; busy; gone creatures |
//! | `say(text)` / `shout(text)` / `whisper(to, text)` | client | local, global (every region: `shout` sends `deliver_global` to all of them) and private chat | empty, long or control-character text; over the rate limit; unknown or own name (whisper) |
//! | `deliver_global(id, player_id, from, text, sent, expires_at)` | region: only regions call it | a global message from a region into this one's `global_message`, unless it is this region's own or expired ([`chat`]) | — |
//! | `tick(dt)` | tick | walks the walking players; due creatures decide ([`creatures`]) | — |
//! | `housekeeping` | every_ms = 1000 | expires messages and ground items; health regeneration | — |
//! | `replenish_node(node_id)` | scheduled | refills a depleted node | — |
//! | `respawn_player(player_id)` | scheduled | a dead player back at full health at a spawn point | — |
//! | `respawn_creature(kind, x, y)` | scheduled | a new creature at a dead one's home | — |
//! | `admin_spawn_creatures(count)`, `admin_spawn_creatures_in(count, x0, y0, x1, y1)`, `admin_give(player_id, item, count)`, `admin_tick_naive(dt)` | client, server only | see [`admin`] | any caller but the server |
//!
//! Natively, the movement rules are plain functions:
//!
//! ```
//! use game_module::{Vec2, clamp_to_world, step_toward};
//!
//! let call = game_module::move_to::call(10.0, 20.0);
//! assert_eq!(call.reducer, "move_to");
//!
//! assert_eq!(clamp_to_world(Vec2::new(-5.0, 5000.0)), Vec2::new(0.0, 4096.0));
//! assert_eq!(step_toward(Vec2::ZERO, Vec2::new(3.0, 4.0), 2.5), Vec2::new(1.5, 2.0));
//! let water = game_module::terrain::terrain_at(Vec2::new(1.0, 1.0));
//! assert_eq!(game_module::content().terrain(water).name, "water"); // the sea at the world's edge
//! ```

pub mod admin;
pub mod chat;
pub mod combat;
pub mod content;
pub mod creatures;
pub mod items;
pub mod players;
pub mod resources;
pub mod terrain;
#[cfg(feature = "upgrade-demo")]
pub mod upgrade_demo;
pub mod world;

pub use locus_module::Vec2;

// The module's version: raise it with every change to the content (`assets/items.json`, `assets/recipes.json`) that
// live worlds must get; `world::upgrade` brings their content tables to it. The upgrade demo is the next version.
#[cfg(not(feature = "upgrade-demo"))]
locus_module::version!(1);
#[cfg(feature = "upgrade-demo")]
locus_module::version!(2);

pub use chat::{
    ChatQuota, EARSHOT, GlobalMessage, GlobalMessageTable, LocalMessage, LocalMessageTable,
    Whisper, WhisperTable, deliver_global, say, shout, whisper,
};
pub use combat::{ATTACK_RANGE, attack};
pub use content::{ItemStack, content};
pub use creatures::{
    Creature, CreatureMind, CreatureMindTable, CreatureState, CreatureTable, respawn_creature,
};
pub use items::{
    GroundItem, GroundItemTable, InventoryItem, InventoryItemTable, ItemKind, ItemKindTable,
    PICKUP_RANGE, Recipe, RecipeTable, craft, drop_item, eat, pick_up,
};
pub use players::{
    Player, PlayerTable, STARTING_ITEMS, WALK_SPEED, clamp_to_world, client_connected,
    client_disconnected, move_dir, move_to, respawn_player, set_name, step_toward, teleport,
    validate_name,
};
pub use resources::{GATHER_RANGE, ResourceNode, ResourceNodeTable, gather, replenish_node};
pub use world::{Chunk, ChunkTable, generate_region, housekeeping, init, tick, upgrade};

/// The side of the square world, in metres: positions lie in `0..=WORLD_SIZE` on both axes.
pub const WORLD_SIZE: f32 = 4096.0;

/// A client's area of interest: rows come into view within this many metres of its player.
pub const VIEW_ENTER: f32 = 64.0;

/// A client's area of interest: rows in view leave it beyond this many metres from its player.
pub const VIEW_LEAVE: f32 = 72.0;

/// The longest tick the simulation integrates, in seconds: a late tick moves nobody further than this allows.
pub const MAX_TICK_DT: f32 = 0.25;
