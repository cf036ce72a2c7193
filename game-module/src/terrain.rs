//! Terrain: a pure function of position and the seed in `assets/world.json`, and the chunk rows that carry it to
//! clients.
//!
//! # Terms
//!
//! - A **tile** is a [`TILE_SIZE`]-metre square with one terrain kind (a palette index, [`TerrainId`]). The world
//!   is [`TILES_PER_SIDE`] tiles a side; tile `(tx, ty)` covers `[tx·4, tx·4 + 4) × [ty·4, ty·4 + 4)` metres.
//! - A **chunk** is [`CHUNK_TILES`] × [`CHUNK_TILES`] tiles ([`CHUNK_SIZE`] metres a side), stored as one row of the
//!   `chunk` table: its tiles' bytes, row by row, and its centre as the spatial column.
//!
//! # Why 32-metre chunks
//!
//! The interest stage sends a client the rows of a spatial table whose *point* lies within its area (64 m to come
//! into view, 72 m to leave it). A chunk's point is its centre, so a chunk is in view when its centre is within
//! 64 m of the player. The farthest corner of a chunk is `CHUNK_SIZE / √2` ≈ 22.6 m from its centre, so every
//! point within 64 − 22.6 ≈ 41 m of the player lies in a chunk the client has: the client always has the terrain at
//! least 41 m around its avatar in every direction (typically about 13 chunks, reaching 50–80 m), for 64 bytes of
//! tiles per chunk. Bigger chunks would leave holes near the player (64-metre chunks guarantee only 19 m);
//! smaller ones cost more rows per client out of the interest stage's per-client cap. Clients draw whatever chunks
//! they have.
//!
//! # Determinism
//!
//! Generation uses only integer hashing and `f32` additions, multiplications and `floor`, which give the same bits
//! on every IEEE-754 platform; so [`terrain_at`] answers the same in the wasm module and in a native client, and the
//! game rules (walking, spawning) ask it directly instead of reading chunk rows.

use locus_module::Vec2;

use crate::WORLD_SIZE;
use crate::content::{Content, NoiseDef, TerrainId, content};

/// The side of a tile, in metres.
pub const TILE_SIZE: f32 = 4.0;

/// Tiles per world side: `WORLD_SIZE / TILE_SIZE`.
pub const TILES_PER_SIDE: u32 = 1024;

/// Tiles per chunk side.
pub const CHUNK_TILES: u32 = 8;

/// The side of a chunk, in metres.
pub const CHUNK_SIZE: f32 = TILE_SIZE * CHUNK_TILES as f32;

/// Chunks per world side.
pub const CHUNKS_PER_SIDE: u32 = TILES_PER_SIDE / CHUNK_TILES;

const _: () = assert!(TILES_PER_SIDE as f32 * TILE_SIZE == WORLD_SIZE);

/// The tile containing `p`, clamped into the world.
#[must_use]
pub fn tile_of(p: Vec2) -> (u32, u32) {
    let max = (TILES_PER_SIDE - 1) as f32;
    let t = (p / TILE_SIZE).floor().clamp(Vec2::ZERO, Vec2::splat(max));
    (t.x as u32, t.y as u32)
}

/// The terrain of tile `(tx, ty)`.
#[must_use]
pub fn tile_terrain(tx: u32, ty: u32) -> TerrainId {
    let c = content();
    let at = Vec2::new((tx as f32 + 0.5) * TILE_SIZE, (ty as f32 + 0.5) * TILE_SIZE);
    let (elevation, moisture) = sample(c, at);
    c.biome(elevation, moisture)
}

/// The terrain at `p` (of the tile containing it; points outside the world take the nearest tile's).
#[must_use]
pub fn terrain_at(p: Vec2) -> TerrainId {
    let (tx, ty) = tile_of(p);
    tile_terrain(tx, ty)
}

/// Whether a player or creature may stand at `p`: inside the world, on walkable terrain.
#[must_use]
pub fn is_walkable(p: Vec2) -> bool {
    p.is_finite()
        && p.cmpge(Vec2::ZERO).all()
        && p.cmple(Vec2::splat(WORLD_SIZE)).all()
        && content().terrain(terrain_at(p)).walkable
}

/// The primary key of chunk `(cx, cy)`: `cy · CHUNKS_PER_SIDE + cx`.
#[must_use]
pub fn chunk_id(cx: u32, cy: u32) -> u32 {
    cy * CHUNKS_PER_SIDE + cx
}

/// The centre of chunk `(cx, cy)`: its row's spatial point.
#[must_use]
pub fn chunk_center(cx: u32, cy: u32) -> Vec2 {
    Vec2::new(
        (cx as f32 + 0.5) * CHUNK_SIZE,
        (cy as f32 + 0.5) * CHUNK_SIZE,
    )
}

/// The tiles of chunk `(cx, cy)`: `CHUNK_TILES²` palette indices, row by row (`y` outer, `x` inner), starting at
/// the chunk's corner nearest the origin.
#[must_use]
pub fn chunk_tiles(cx: u32, cy: u32) -> Vec<u8> {
    let mut tiles = Vec::with_capacity((CHUNK_TILES * CHUNK_TILES) as usize);
    for ty in cy * CHUNK_TILES..(cy + 1) * CHUNK_TILES {
        for tx in cx * CHUNK_TILES..(cx + 1) * CHUNK_TILES {
            tiles.push(tile_terrain(tx, ty));
        }
    }
    tiles
}

/// Elevation and moisture at `p`, both in `0..1`.
fn sample(c: &Content, p: Vec2) -> (f32, f32) {
    let w = &c.world;
    let mut elevation = fbm(w.seed, w.elevation, p);
    // The sea at the edges: elevation fades to 0 over the last `coast_m` metres.
    let edge = p.x.min(p.y).min(WORLD_SIZE - p.x).min(WORLD_SIZE - p.y);
    elevation *= smoothstep(0.0, w.coast_m, edge);
    // Dry land around the spawn point: raised to at least 0.5 within 60 % of `land_radius`, fading out at it.
    let center = Vec2::from(w.spawn.center);
    let d = p.distance(center) / w.spawn.land_radius;
    elevation = elevation.max(0.5 * (1.0 - smoothstep(0.6, 1.0, d)));
    let moisture = fbm(w.seed ^ 0x9e37_79b9, w.moisture, p);
    (elevation, moisture)
}

/// `0` below `lo`, `1` above `hi`, a smooth cubic between.
fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Fractal value noise at `p` (metres), in `0..1`.
fn fbm(seed: u32, noise: NoiseDef, p: Vec2) -> f32 {
    let mut sum = 0.0;
    let mut weight = 1.0;
    let mut total = 0.0;
    let mut at = p / noise.wavelength_m;
    for octave in 0..noise.octaves {
        sum += weight * value_noise(seed.wrapping_add(octave.wrapping_mul(0x632b_e5ab)), at);
        total += weight;
        weight *= 0.5;
        at *= 2.0;
    }
    sum / total
}

/// Value noise: random values at integer lattice points, smoothly interpolated.
fn value_noise(seed: u32, p: Vec2) -> f32 {
    let cell = p.floor();
    let (x, y) = (cell.x as i32, cell.y as i32);
    let f = p - cell;
    let s = f * f * (Vec2::splat(3.0) - 2.0 * f);
    let a = lattice(seed, x, y);
    let b = lattice(seed, x + 1, y);
    let c = lattice(seed, x, y + 1);
    let d = lattice(seed, x + 1, y + 1);
    let top = a + (b - a) * s.x;
    let bottom = c + (d - c) * s.x;
    top + (bottom - top) * s.y
}

/// A value in `0..1` for lattice point `(x, y)`.
fn lattice(seed: u32, x: i32, y: i32) -> f32 {
    let mut h = seed ^ (x as u32).wrapping_mul(0x27d4_eb2d) ^ (y as u32).wrapping_mul(0x1656_67b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(p: Vec2) -> &'static str {
        &content().terrain(terrain_at(p)).name
    }

    #[test]
    fn the_terrain_has_every_kind_sea_at_the_edges_and_land_at_the_spawn() {
        let mut counts = vec![0u32; content().world.terrain.len()];
        for ty in (0..TILES_PER_SIDE).step_by(4) {
            for tx in (0..TILES_PER_SIDE).step_by(4) {
                counts[usize::from(tile_terrain(tx, ty))] += 1;
            }
        }
        let total: u32 = counts.iter().sum();
        for (def, n) in content().world.terrain.iter().zip(&counts) {
            let share = f64::from(*n) / f64::from(total);
            assert!(share > 0.03, "{}: {:.1} %", def.name, share * 100.0);
        }
        let water = counts[usize::from(content().terrain_id("water").unwrap())];
        let share = f64::from(water) / f64::from(total);
        assert!((0.1..0.45).contains(&share), "water {:.1} %", share * 100.0);
        for p in [
            Vec2::new(1.0, 1.0),
            Vec2::new(4095.0, 2000.0),
            Vec2::new(2000.0, 4095.0),
        ] {
            assert_eq!(name(p), "water", "{p}");
        }
        let spawn = Vec2::from(content().world.spawn.center);
        let r = content().world.spawn.radius;
        for i in 0..64 {
            let p = spawn + Vec2::from_angle(i as f32 * 0.4) * r * (i as f32 / 64.0);
            assert!(is_walkable(p), "{p} is {}", name(p));
        }
    }

    /// `engine/server/tests/server.rs` teleports players to these points: they must stay land.
    #[test]
    fn the_points_the_server_tests_teleport_to_are_land() {
        for (x, y) in [
            (1000.0, 1000.0),
            (1010.0, 1000.0),
            (1005.0, 1000.0),
            (1000.0, 1050.0),
            (3000.0, 3000.0),
            (500.0, 500.0),
            (520.0, 500.0),
            (1234.0, 567.0),
        ] {
            let p = Vec2::new(x, y);
            assert!(is_walkable(p), "{p} is {}", name(p));
        }
    }

    #[test]
    fn chunks_hold_the_tiles_terrain_at_reports() {
        let (cx, cy) = (37, 90);
        let tiles = chunk_tiles(cx, cy);
        assert_eq!(tiles.len(), 64);
        let corner = chunk_center(cx, cy) - Vec2::splat(CHUNK_SIZE / 2.0);
        for (i, &t) in tiles.iter().enumerate() {
            let (x, y) = ((i % 8) as f32, (i / 8) as f32);
            let p = corner + Vec2::new(x * TILE_SIZE + 1.0, y * TILE_SIZE + 3.0);
            assert_eq!(terrain_at(p), t, "tile {i} at {p}");
        }
        assert_eq!(chunk_id(cx, cy), 90 * 128 + 37);
        assert_eq!(chunk_center(0, 0), Vec2::new(16.0, 16.0));
        assert_eq!(tile_of(Vec2::new(-3.0, 5000.0)), (0, 1023));
        assert!(!is_walkable(Vec2::new(f32::NAN, 1.0)));
        assert!(!is_walkable(Vec2::new(2048.0, -0.5)));
    }
}
