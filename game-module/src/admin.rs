//! Admin reducers: callable only by the server itself (sender [`Identity::SERVER`], which no client can have),
//! for tests, benchmarks and operators. A client that calls one is refused.

use locus_module::rand::RngExt;
use locus_module::{Identity, ReducerContext, Vec2, reducer};

use crate::WORLD_SIZE;
use crate::content::content;
use crate::creatures::{Neighbours, spawn_creature};
use crate::items::add_items;
use crate::players::PlayerTable;
use crate::world::{find_spot, run_tick, terrain_ids};

/// Refuse unless the server itself is calling.
fn require_server(ctx: &ReducerContext) -> Result<(), String> {
    if ctx.sender == Identity::SERVER {
        Ok(())
    } else {
        Err("only the server may call admin reducers".into())
    }
}

/// Add `count` creatures anywhere in the world, each of a kind drawn in proportion to the kinds' `count`s in
/// `assets/spawns.json`, on terrain the kind allows (fewer if placements fail).
#[reducer]
pub fn admin_spawn_creatures(ctx: &ReducerContext, count: u32) -> Result<(), String> {
    require_server(ctx)?;
    spawn_in(ctx, count, Vec2::ZERO, Vec2::splat(WORLD_SIZE))
}

/// As [`admin_spawn_creatures`], within the rectangle from (`x0`, `y0`) to (`x1`, `y1`) (clamped to the world):
/// the load tester keeps the standard crowd's density in a square scaled to its player count.
#[reducer]
pub fn admin_spawn_creatures_in(
    ctx: &ReducerContext,
    count: u32,
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
) -> Result<(), String> {
    require_server(ctx)?;
    let world = |v: f32| {
        if v.is_finite() {
            Ok(v.clamp(0.0, WORLD_SIZE))
        } else {
            Err(format!("not a finite coordinate: {v}"))
        }
    };
    let (x0, y0, x1, y1) = (world(x0)?, world(y0)?, world(x1)?, world(y1)?);
    if x1 <= x0 || y1 <= y0 {
        return Err(format!("an empty rectangle: ({x0}, {y0}) to ({x1}, {y1})"));
    }
    spawn_in(ctx, count, Vec2::new(x0, y0), Vec2::new(x1, y1))
}

fn spawn_in(ctx: &ReducerContext, count: u32, min: Vec2, max: Vec2) -> Result<(), String> {
    let kinds = &content().spawns.creatures;
    let total: u32 = kinds.iter().map(|k| k.count).sum();
    if total == 0 {
        return Err("the spawn table has no creatures".into());
    }
    for _ in 0..count {
        let mut pick = ctx.rng().random_range(0..total);
        let kind = kinds
            .iter()
            .find(|k| {
                if pick < k.count {
                    true
                } else {
                    pick -= k.count;
                    false
                }
            })
            .expect("pick < total");
        let terrain = terrain_ids(&kind.terrain);
        let hostile = kind.temperament == crate::content::Temperament::Hostile;
        if let Some(p) = find_spot(&mut ctx.rng(), min, max, &terrain, hostile) {
            spawn_creature(ctx, kind, p)?;
        }
    }
    Ok(())
}

/// Put `count` of `item` into the inventory of player `player_id`.
#[reducer]
pub fn admin_give(
    ctx: &ReducerContext,
    player_id: u64,
    item: String,
    count: u32,
) -> Result<(), String> {
    require_server(ctx)?;
    let player = ctx
        .db
        .player()
        .id()
        .find(&player_id)
        .ok_or_else(|| format!("no player {player_id}"))?;
    add_items(ctx, player.identity, &item, count)
}

/// The `tick` with its creatures finding players by scanning all of them instead of asking the spatial index:
/// the naive baseline of the tick benchmark (`game-module/benches/tick.rs`).
#[reducer]
pub fn admin_tick_naive(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    require_server(ctx)?;
    run_tick(ctx, dt, &Neighbours::scan(ctx))
}
