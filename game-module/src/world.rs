//! The world as a whole: creating it (`init` and `generate_region`), bringing a live one's content up to date
//! (`upgrade`), the `tick` reducer that runs every tick, and the once-a-second `housekeeping`.
//!
//! # Creating the world
//!
//! `init` runs once, when the server creates a world. Generating all of it in one call would take longer than a
//! reducer's time budget (a million tiles of noise, and tens of thousands of rows), so `init` writes the item and
//! recipe definitions and schedules [`REGION_BANDS`] calls of `generate_region`, one per band of the world
//! (`WORLD_SIZE / REGION_BANDS` metres from south to north). They all run at the first tick; each writes its band's
//! chunk rows and places its share of every resource and creature kind of `assets/spawns.json` on the terrain the
//! kind allows (hostile creatures never within the spawn zone's `safe_radius`). The game rules never wait for
//! them: they ask the terrain function directly ([`crate::terrain::is_walkable`]).
//!
//! # Content in a live world
//!
//! `init` wrote the item and recipe definitions of the build that created the world. The module declares a version
//! ([`crate::MODULE_VERSION`], raised with every change to `assets/items.json` or `assets/recipes.json`); when a
//! build of another version takes a world over — `locus publish`, or `locus serve` restarted with the new build on
//! the world's data directory — the host runs [`upgrade()`] once, in the upgrade's transaction, and it makes
//! `item_kind` and `recipe` match the new build's content. The world's terrain, nodes and creatures are left as they
//! are.

use locus_module::rand::RngExt;
use locus_module::{ContextRng, ReducerContext, Vec2, info, reducer, table};

use crate::content::{Temperament, TerrainId, content};
use crate::creatures::{Neighbours, spawn_creature, think_all};
use crate::items::sync_definitions;
use crate::players::walk;
use crate::resources::spawn_node;
use crate::terrain::{CHUNKS_PER_SIDE, chunk_center, chunk_id, chunk_tiles, terrain_at};
use crate::{MAX_TICK_DT, WORLD_SIZE, chat, items, players};

/// How many `generate_region` calls create the world.
pub const REGION_BANDS: u32 = 32;

/// Chunk rows per band.
const BAND_CHUNKS: u32 = CHUNKS_PER_SIDE / REGION_BANDS;

/// How many random points a placement tries before giving up on one resource node or creature.
const PLACEMENT_TRIES: u32 = 64;

/// A chunk of terrain: public and spatial (at its centre), so each client receives the chunks around its player.
/// See [`crate::terrain`] for the layout and why chunks are 32 m.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// `cy · 128 + cx` ([`crate::terrain::chunk_id`]).
    #[primary_key]
    pub id: u32,
    /// The chunk's centre.
    #[spatial]
    pub center: Vec2,
    /// 64 palette indices, row by row from the corner nearest the origin ([`crate::terrain::chunk_tiles`]).
    pub tiles: Vec<u8>,
}

/// Runs once, when the world is created: publish the definitions and schedule the world's generation.
#[reducer(init)]
pub fn init(ctx: &ReducerContext) -> Result<(), String> {
    sync_definitions(ctx)?;
    for band in 0..REGION_BANDS {
        ctx.schedule_at(ctx.timestamp, generate_region::call(band))?;
    }
    Ok(())
}

/// Runs once when this build of the module takes over a world whose data is at another module version
/// ([`crate::MODULE_VERSION`]): a `locus publish`, or `locus serve` restarted with a new build. Brings the content
/// tables, `item_kind` and `recipe`, to this build's `assets/` (new definitions in, changed ones updated, dropped
/// ones out), so new items and recipes reach a live world, not only a new one. Either direction: a world going back
/// to an older build gets that build's content. If it fails, the upgrade is refused and the world keeps its module.
#[reducer(upgrade)]
pub fn upgrade(ctx: &ReducerContext, from: u32, to: u32) -> Result<(), String> {
    let c = sync_definitions(ctx)?;
    info!(
        "content from version {from} to {to}: {} definitions added, {} changed, {} removed",
        c.added, c.changed, c.removed
    );
    Ok(())
}

/// Scheduled by `init`: create band `band` of the world (its chunks, resource nodes and creatures).
#[reducer(scheduled)]
pub fn generate_region(ctx: &ReducerContext, band: u32) -> Result<(), String> {
    if band >= REGION_BANDS {
        return Err(format!("no band {band}"));
    }
    let chunks = ctx.db.chunk();
    for cy in band * BAND_CHUNKS..(band + 1) * BAND_CHUNKS {
        for cx in 0..CHUNKS_PER_SIDE {
            chunks.insert(Chunk {
                id: chunk_id(cx, cy),
                center: chunk_center(cx, cy),
                tiles: chunk_tiles(cx, cy),
            })?;
        }
    }
    // Each band places its share of every kind, anywhere in the world (so scarce terrain anywhere is found), with
    // the kinds' `count`s split over the bands so that the shares add up to the count exactly.
    let (min, max) = (Vec2::ZERO, Vec2::splat(WORLD_SIZE));
    let share = |count: u32| {
        let upto = |b: u32| (u64::from(count) * u64::from(b) / u64::from(REGION_BANDS)) as u32;
        upto(band + 1) - upto(band)
    };
    let spawns = &content().spawns;
    for kind in &spawns.resources {
        let terrain = terrain_ids(&kind.terrain);
        for _ in 0..share(kind.count) {
            if let Some(p) = find_spot(&mut ctx.rng(), min, max, &terrain, false) {
                spawn_node(ctx, &kind.kind, p)?;
            }
        }
    }
    for kind in &spawns.creatures {
        let terrain = terrain_ids(&kind.terrain);
        let hostile = kind.temperament == Temperament::Hostile;
        for _ in 0..share(kind.count) {
            if let Some(p) = find_spot(&mut ctx.rng(), min, max, &terrain, hostile) {
                spawn_creature(ctx, kind, p)?;
            }
        }
    }
    Ok(())
}

/// The palette indices of these terrain names (the content is checked, so all exist).
pub(crate) fn terrain_ids(names: &[String]) -> Vec<TerrainId> {
    names
        .iter()
        .filter_map(|n| content().terrain_id(n))
        .collect()
}

/// A random point in `[min, max)` on one of `terrain` (outside the spawn zone's safe radius if `avoid_safe_zone`),
/// in at most [`PLACEMENT_TRIES`] tries.
pub(crate) fn find_spot(
    rng: &mut ContextRng<'_>,
    min: Vec2,
    max: Vec2,
    terrain: &[TerrainId],
    avoid_safe_zone: bool,
) -> Option<Vec2> {
    let zone = content().world.spawn;
    (0..PLACEMENT_TRIES).find_map(|_| {
        let p = Vec2::new(
            rng.random_range(min.x..max.x),
            rng.random_range(min.y..max.y),
        );
        let safe = p.distance(Vec2::from(zone.center)) < zone.safe_radius;
        (terrain.contains(&terrain_at(p)) && !(avoid_safe_zone && safe)).then_some(p)
    })
}

/// Every tick: walk the walking players, then let the creatures that are due decide (see [`crate::creatures`]).
///
/// `dt` is capped at [`MAX_TICK_DT`], so a late tick cannot move anyone further than that much time allows.
#[reducer(tick)]
pub fn tick(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    run_tick(ctx, dt, &Neighbours::Index)
}

/// The tick, with creatures finding players through `neighbours`.
pub(crate) fn run_tick(
    ctx: &ReducerContext,
    dt: f32,
    neighbours: &Neighbours,
) -> Result<(), String> {
    if !(dt.is_finite() && dt > 0.0) {
        return Ok(());
    }
    let dt = dt.min(MAX_TICK_DT);
    walk(ctx, dt)?;
    think_all(ctx, dt, neighbours)
}

/// Once a second: expire old messages and ground items, and let living players regain health.
#[reducer(every_ms = 1000)]
pub fn housekeeping(ctx: &ReducerContext) -> Result<(), String> {
    chat::expire(ctx);
    items::expire(ctx);
    players::regenerate(ctx)
}
