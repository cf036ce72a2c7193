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
//! # A world split into regions
//!
//! In a world split into regions every region runs this module over its own database, and each runs `init`. So each
//! generates only its own part of the world ([`Portion`], from `ctx.region()`): the chunks whose centre lies in its
//! rectangle, and resource nodes and creatures placed inside the rectangle only, each kind's count scaled by the
//! region's share of the world's area (the regions' shares of a count add up to the count exactly). Together the
//! regions hold what one whole world holds, each creature once, simulated by the region it stands in, and seen by
//! the neighbours' clients as a border copy. A world that is not split generates all of it, exactly as before.
//! (Players are not placed here: a player spawns near the spawn point wherever its client connects, and the engine
//! hands the avatar over to the region that holds that point.)
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
use locus_module::{ContextRng, Rect, ReducerContext, Vec2, info, reducer, table};

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

/// The part of the world this module instance generates: all of it in a world that is not split, its own region's
/// rectangle (within the world) in one that is ([`Portion::of`]).
///
/// Invariants: `rect` is not empty and lies within `[0, WORLD_SIZE]²`; `0 ≤ from ≤ upto ≤ 1`. Over the regions of
/// a layout that tiles the world, in index order, each region's `from` is the previous one's `upto`, the first's
/// is 0 and the last's 1, so the regions' [`Portion::count`]s of a number add up to it exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Portion {
    /// Where it generates: chunks whose centre is in it, resource nodes and creatures placed in it.
    pub rect: Rect,
    /// The share of the world's area of the regions before this one (in index order).
    pub from: f64,
    /// `from` plus this region's share of the world's area.
    pub upto: f64,
}

impl Portion {
    /// The whole world: a world that is not split into regions.
    pub const WHOLE: Portion = Portion {
        rect: Rect::new(Vec2::ZERO, Vec2::splat(WORLD_SIZE)),
        from: 0.0,
        upto: 1.0,
    };

    /// What the running instance generates: [`Portion::WHOLE`] in a world that is not split into regions, else
    /// [`Portion::in_layout`] of its region; `None` if its region has no part of the world.
    #[must_use]
    pub fn of(ctx: &ReducerContext) -> Option<Portion> {
        let regions = ctx.regions();
        match regions.iter().position(|r| r.own) {
            None => Some(Portion::WHOLE),
            Some(own) => {
                let rects: Vec<Rect> = regions.iter().map(|r| r.rect).collect();
                Portion::in_layout(&rects, own)
            }
        }
    }

    /// The portion of region `own` of the regions whose rectangles are `rects` (in index order): its rectangle
    /// clipped to the world, and its share of the world's area after those before it. Shares are of the area the
    /// regions cover within the world (all of it, for a layout that tiles the world). `None` if region `own` has
    /// no part of the world.
    #[must_use]
    pub fn in_layout(rects: &[Rect], own: usize) -> Option<Portion> {
        let world = Portion::WHOLE.rect;
        let area = |r: &Rect| r.intersection(&world).map_or(0.0, |r| r.area());
        let total: f64 = rects.iter().map(area).sum();
        let rect = rects.get(own)?.intersection(&world)?;
        let before: f64 = rects[..own].iter().map(area).sum();
        let from = (before / total).clamp(0.0, 1.0);
        let upto = ((before + rect.area()) / total).clamp(from, 1.0);
        Some(Portion { rect, from, upto })
    }

    /// This portion's number of what the whole world has `count` of: `round(count · upto) − round(count · from)`.
    /// `count` itself for [`Portion::WHOLE`].
    #[must_use]
    pub fn count(&self, count: u32) -> u32 {
        let at = |share: f64| (f64::from(count) * share).round() as u32;
        at(self.upto) - at(self.from)
    }
}

/// Scheduled by `init`: create band `band` of the world (its chunks, resource nodes and creatures), or, in a world
/// split into regions, of the region's part of it ([`Portion`]).
#[reducer(scheduled)]
pub fn generate_region(ctx: &ReducerContext, band: u32) -> Result<(), String> {
    if band >= REGION_BANDS {
        return Err(format!("no band {band}"));
    }
    let Some(portion) = Portion::of(ctx) else {
        return Ok(());
    };
    let chunks = ctx.db.chunk();
    for cy in band * BAND_CHUNKS..(band + 1) * BAND_CHUNKS {
        for cx in 0..CHUNKS_PER_SIDE {
            let center = chunk_center(cx, cy);
            if !portion.rect.contains(center) {
                continue;
            }
            chunks.insert(Chunk {
                id: chunk_id(cx, cy),
                center,
                tiles: chunk_tiles(cx, cy),
            })?;
        }
    }
    // Each band places its share of every kind, anywhere in the portion (so scarce terrain anywhere in it is
    // found), with the portion's count of each kind split over the bands so that the shares add up to it exactly.
    let (min, max) = (portion.rect.min, portion.rect.max);
    let share = |count: u32| {
        let count = portion.count(count);
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
