//! Terrain: each `chunk` row (8 × 8 tiles of 4 m, as palette indices) becomes one sprite whose image is composed
//! from the tileset, one tileset tile per terrain tile.
//!
//! Chunk rows list their tiles row by row starting at the corner nearest the world's origin (south-west), `y`
//! outer; images are stored top row first, so tile row `ty` lands in image rows counted from the bottom.

use bevy::prelude::*;
use game_module::terrain::{CHUNK_SIZE, CHUNK_TILES};
use image::RgbaImage;

use crate::art::{TILE_PX, hash};
use crate::sprites::{Art, ChunkRow, DrawSystems, PX_PER_M, to_bevy_image, to_scene, z};

/// Compose the image of chunk `chunk_id` from `tileset` (tiles of [`TILE_PX`] side, a column per palette entry,
/// a row per variant). `tiles` holds `CHUNK_TILES²` palette indices; each tile's variant is a hash of the chunk
/// and the tile's place in it (so the same chunk always looks the same). An index past the tileset's end draws
/// its last tile, and missing tiles (a short row) draw nothing.
#[must_use]
pub fn compose_chunk(tileset: &RgbaImage, chunk_id: u32, tiles: &[u8]) -> RgbaImage {
    let side = CHUNK_TILES * TILE_PX;
    let mut img = RgbaImage::new(side, side);
    let kinds = (tileset.width() / TILE_PX).max(1);
    let variants = (tileset.height() / TILE_PX).max(1);
    for (i, &tile) in tiles
        .iter()
        .enumerate()
        .take((CHUNK_TILES * CHUNK_TILES) as usize)
    {
        let (tx, ty) = (i as u32 % CHUNK_TILES, i as u32 / CHUNK_TILES);
        let kind = u32::from(tile).min(kinds - 1);
        let variant = hash(chunk_id, tx, ty) % variants;
        // Tile row 0 is the southernmost: the bottom of the image.
        let (x0, y0) = (tx * TILE_PX, (CHUNK_TILES - 1 - ty) * TILE_PX);
        for y in 0..TILE_PX {
            for x in 0..TILE_PX {
                let (sx, sy) = (kind * TILE_PX + x, variant * TILE_PX + y);
                if sx < tileset.width() && sy < tileset.height() {
                    img.put_pixel(x0 + x, y0 + y, *tileset.get_pixel(sx, sy));
                }
            }
        }
    }
    img
}

/// Registers the terrain systems.
pub struct TerrainPlugin;

impl Plugin for TerrainPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Update, draw_chunks.before(DrawSystems));
    }
}

/// Give new (and changed) chunk rows their picture.
fn draw_chunks(
    mut commands: Commands<'_, '_>,
    chunks: Query<'_, '_, (Entity, &ChunkRow), Changed<ChunkRow>>,
    art: Res<'_, Art>,
    mut images: ResMut<'_, Assets<Image>>,
) {
    for (entity, ChunkRow(chunk)) in &chunks {
        let image = images.add(to_bevy_image(compose_chunk(
            &art.tileset,
            chunk.id,
            &chunk.tiles,
        )));
        commands.entity(entity).insert((
            Sprite {
                image,
                custom_size: Some(Vec2::splat(CHUNK_SIZE * PX_PER_M)),
                ..default()
            },
            Transform::from_translation(to_scene(chunk.center, z::TERRAIN)),
            Visibility::default(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::art::tileset;
    use crate::palette::{distance, terrain_colors};

    #[test]
    fn chunk_tiles_land_where_the_world_has_them() {
        let palette = terrain_colors();
        let set = tileset(&palette);
        // A chunk of grass with water in its south-west tile and stone in its north-east one.
        let (water, grass, stone) = (0u8, 2u8, 4u8);
        let mut tiles = vec![grass; 64];
        tiles[0] = water;
        tiles[63] = stone;
        let img = compose_chunk(&set, 7, &tiles);
        assert_eq!(img.dimensions(), (8 * TILE_PX, 8 * TILE_PX));
        let at = |x: u32, y: u32| {
            let p = img.get_pixel(x, y);
            [p[0], p[1], p[2]]
        };
        let side = 8 * TILE_PX;
        // South-west = bottom-left of the image; north-east = top-right.
        assert!(distance(at(2, side - 3), palette[usize::from(water)]) <= 40);
        assert!(distance(at(side - 3, 2), palette[usize::from(stone)]) <= 40);
        assert!(distance(at(side / 2, side / 2), palette[usize::from(grass)]) <= 40);
        // Unknown palette indices draw the last tile; a short row leaves the rest transparent.
        let img = compose_chunk(&set, 7, &[200]);
        assert!(
            distance(
                [
                    img.get_pixel(1, side - 2)[0],
                    img.get_pixel(1, side - 2)[1],
                    img.get_pixel(1, side - 2)[2]
                ],
                *palette.last().unwrap()
            ) <= 40
        );
        assert_eq!(img.get_pixel(side - 1, 0)[3], 0);
    }

    #[test]
    fn a_real_chunk_composes_from_the_terrain_function() {
        let (cx, cy) = (64, 64); // the spawn point: land
        let tiles = game_module::terrain::chunk_tiles(cx, cy);
        let img = compose_chunk(&tileset(&terrain_colors()), 0, &tiles);
        assert!(img.pixels().all(|p| p[3] == 255));
    }
}
