//! The Locus demo world: the seed of a BitCraft-style game.
//!
//! Players walk a square world of [`WORLD_SIZE`] metres a side. A client that connects for the first time gets a
//! player at a random spot near the middle of the world and a small inventory; every client's area of interest
//! follows its own player, so the server streams it the players within [`VIEW_ENTER`] metres of it. Clients steer
//! by setting a target (`move_to`); the `tick` reducer walks every online player toward its target.
//!
//! Build: `cargo build -p game-module --release --target wasm32-unknown-unknown` → `game_module.wasm`.
//!
//! This crate deliberately does not (yet) have terrain, resources, crafting or combat; it is the smallest world the
//! server, the interest stage and the client can be tested against end to end.
//!
//! # Tables
//!
//! | table | access | columns (in order) |
//! |---|---|---|
//! | `player` | public | `id: u64` primary key, auto_inc · `identity: Identity` unique · `name: String` · `pos: Vec2` spatial · `target: Vec2` · `online: bool` |
//! | `item` | public, owned (only its `owner` sees a row) | `id: u64` primary key, auto_inc · `owner: Identity` owner · `kind: String` · `count: u32` |
//!
//! Invariants kept by the reducers: one player per identity; `pos` and `target` always lie in the world
//! (`0..=WORLD_SIZE` on both axes); a player's name has 1 to [`MAX_NAME_CHARS`] characters.
//!
//! # Reducers
//!
//! | reducer | kind | effect | failure (nothing written) |
//! |---|---|---|---|
//! | `client_connected` | client_connected | first time: insert a player named `player-{id}` at a random point within [`SPAWN_RADIUS`] of [`SPAWN_CENTER`] (from the call's deterministic RNG), with `target = pos`, and an item `wood` × 5 owned by the client; always: `online = true`, and the client's area follows its player with radii [`VIEW_ENTER`] / [`VIEW_LEAVE`] | — |
//! | `client_disconnected` | client_disconnected | the client's player (if any): `online = false`; its area stays | — |
//! | `move_to(x: f32, y: f32)` | client | the caller's player's `target` = (x, y) clamped into the world | `not a finite position`; `no player for this client` |
//! | `set_name(name: String)` | client | the caller's player's `name` = `name` | `a name has 1 to 24 characters`; `no player for this client` |
//! | `teleport(x: f32, y: f32)` | client | the caller's player's `pos` and `target` = (x, y) clamped into the world | as `move_to` |
//! | `tick(dt: f32)` | tick | every online player not at its target moves [`WALK_SPEED`] × `dt` metres straight toward it, stopping on it | — |
//!
//! Natively the crate gives typed calls for clients and tests, and its movement rules as plain functions:
//!
//! ```
//! use game_module::{Vec2, clamp_to_world, step_toward};
//!
//! let call = game_module::move_to::call(10.0, 20.0);
//! assert_eq!(call.reducer, "move_to");
//!
//! assert_eq!(clamp_to_world(Vec2::new(-5.0, 5000.0)), Vec2::new(0.0, 4096.0));
//! assert_eq!(step_toward(Vec2::ZERO, Vec2::new(3.0, 4.0), 2.5), Vec2::new(1.5, 2.0));
//! assert_eq!(step_toward(Vec2::ZERO, Vec2::new(3.0, 4.0), 10.0), Vec2::new(3.0, 4.0));
//! ```

use locus_module::rand::RngExt;
use locus_module::{Identity, ReducerContext, reducer, table};

pub use locus_module::Vec2;

/// The side of the square world, in metres: positions lie in `0..=WORLD_SIZE` on both axes.
pub const WORLD_SIZE: f32 = 4096.0;

/// Where new players appear: within [`SPAWN_RADIUS`] of this point (the middle of the world).
pub const SPAWN_CENTER: Vec2 = Vec2::new(WORLD_SIZE / 2.0, WORLD_SIZE / 2.0);

/// How far from [`SPAWN_CENTER`] a new player may appear, in metres.
pub const SPAWN_RADIUS: f32 = 200.0;

/// How fast players walk, in metres per second.
pub const WALK_SPEED: f32 = 5.0;

/// A client's area of interest: rows come into view within this many metres of its player.
pub const VIEW_ENTER: f32 = 64.0;

/// A client's area of interest: rows in view leave it beyond this many metres from its player.
pub const VIEW_LEAVE: f32 = 72.0;

/// The longest player name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 24;

/// A player: one per client identity, public and spatial.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Player {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// The client that plays it.
    #[unique]
    pub identity: Identity,
    /// Display name, 1 to [`MAX_NAME_CHARS`] characters.
    pub name: String,
    /// Where it is.
    #[spatial]
    pub pos: Vec2,
    /// Where it is walking to (equal to `pos` when it stands still).
    pub target: Vec2,
    /// Whether its client is connected; only online players move.
    pub online: bool,
}

/// A stack of items in a client's inventory: public but owned, so only its owner is sent the row.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// The client whose inventory holds it.
    #[owner]
    pub owner: Identity,
    /// What it is (`"wood"`, …).
    pub kind: String,
    /// How many.
    pub count: u32,
}

/// `p` moved into the world: each coordinate clamped to `0..=WORLD_SIZE`. `p` must be finite.
#[must_use]
pub fn clamp_to_world(p: Vec2) -> Vec2 {
    p.clamp(Vec2::ZERO, Vec2::splat(WORLD_SIZE))
}

/// `from` moved at most `max_step` metres straight toward `to`, landing exactly on `to` when it is that close.
#[must_use]
pub fn step_toward(from: Vec2, to: Vec2, max_step: f32) -> Vec2 {
    let offset = to - from;
    let distance = offset.length();
    if distance <= max_step {
        to
    } else {
        from + offset * (max_step / distance)
    }
}

/// A finite point clamped into the world, or the reducers' error for a point that is not finite.
fn world_point(x: f32, y: f32) -> Result<Vec2, String> {
    let p = Vec2::new(x, y);
    if p.is_finite() {
        Ok(clamp_to_world(p))
    } else {
        Err("not a finite position".into())
    }
}

/// The caller's player.
fn my_player(ctx: &ReducerContext) -> Result<Player, String> {
    ctx.db
        .player()
        .identity()
        .find(&ctx.sender)
        .ok_or_else(|| "no player for this client".into())
}

/// A uniformly random point within [`SPAWN_RADIUS`] of [`SPAWN_CENTER`], from the call's deterministic RNG.
fn spawn_point(ctx: &ReducerContext) -> Vec2 {
    let mut rng = ctx.rng();
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    // sqrt: uniform over the disc's area, not bunched at its centre.
    let radius = SPAWN_RADIUS * rng.random_range(0.0f32..1.0).sqrt();
    SPAWN_CENTER + Vec2::from_angle(angle) * radius
}

/// A client connected: give it a player (and a first item) if it has none, mark the player online, and make the
/// client's area of interest follow it.
#[reducer(client_connected)]
pub fn client_connected(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    let mut player = match players.identity().find(&ctx.sender) {
        Some(player) => player,
        None => {
            let pos = spawn_point(ctx);
            let mut player = players.insert(Player {
                id: 0,
                identity: ctx.sender,
                name: String::new(),
                pos,
                target: pos,
                online: false,
            })?;
            player.name = format!("player-{}", player.id);
            ctx.db.item().insert(Item {
                id: 0,
                owner: ctx.sender,
                kind: "wood".into(),
                count: 5,
            })?;
            player
        }
    };
    player.online = true;
    let player = players.id().update(player)?;
    ctx.set_area_follow(ctx.sender, players, &player.id, VIEW_ENTER, VIEW_LEAVE)?;
    Ok(())
}

/// A client disconnected: its player stops (it stays in the world, offline).
#[reducer(client_disconnected)]
pub fn client_disconnected(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    if let Some(mut player) = players.identity().find(&ctx.sender) {
        player.online = false;
        players.id().update(player)?;
    }
    Ok(())
}

/// Walk toward (`x`, `y`), clamped into the world.
#[reducer]
pub fn move_to(ctx: &ReducerContext, x: f32, y: f32) -> Result<(), String> {
    let target = world_point(x, y)?;
    let mut player = my_player(ctx)?;
    player.target = target;
    ctx.db.player().id().update(player)?;
    Ok(())
}

/// Rename the caller's player.
#[reducer]
pub fn set_name(ctx: &ReducerContext, name: String) -> Result<(), String> {
    if !(1..=MAX_NAME_CHARS).contains(&name.chars().count()) {
        return Err(format!("a name has 1 to {MAX_NAME_CHARS} characters"));
    }
    let mut player = my_player(ctx)?;
    player.name = name;
    ctx.db.player().id().update(player)?;
    Ok(())
}

/// Jump to (`x`, `y`), clamped into the world, and stand there.
#[reducer]
pub fn teleport(ctx: &ReducerContext, x: f32, y: f32) -> Result<(), String> {
    let to = world_point(x, y)?;
    let mut player = my_player(ctx)?;
    player.pos = to;
    player.target = to;
    ctx.db.player().id().update(player)?;
    Ok(())
}

/// Walk every online player [`WALK_SPEED`] × `dt` metres toward its target.
#[reducer(tick)]
pub fn tick(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    if !(dt.is_finite() && dt > 0.0) {
        return Ok(());
    }
    let players = ctx.db.player();
    for mut player in players.iter() {
        if !player.online || player.pos == player.target {
            continue;
        }
        player.pos = step_toward(player.pos, player.target, WALK_SPEED * dt);
        players.id().update(player)?;
    }
    Ok(())
}
