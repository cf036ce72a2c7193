//! Colours: the terrain palette of `assets/world.json`, the colours the art is painted in, and the checks a
//! screenshot must pass (terrain colours dominate, the own avatar is at the centre).
//!
//! Everything here is plain data and functions (no bevy), shared by the art generator, the client and the
//! headless end-to-end test, so that what the test looks for is exactly what the art draws.

use game_module::content::{TerrainId, content};

/// An sRGB colour, 8 bits per channel.
pub type Rgb = [u8; 3];

/// The tunic of the player's own avatar: a saturated orange that no terrain tile comes near.
pub const SELF_TUNIC: Rgb = [236, 88, 36];

/// The tunic of other players.
pub const OTHER_TUNIC: Rgb = [58, 104, 214];

/// Skin (players' heads and hands).
pub const SKIN: Rgb = [240, 200, 160];

/// Outlines.
pub const OUTLINE: Rgb = [28, 24, 22];

/// What the window shows where no chunk is known yet.
pub const VOID: Rgb = [12, 14, 20];

/// Parse `#rrggbb` (as `assets/world.json` writes colours).
#[must_use]
pub fn parse_hex(s: &str) -> Option<Rgb> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// The base colour of terrain `id` (the palette's `color`; magenta for a colour that does not parse, so a broken
/// asset shows).
#[must_use]
pub fn terrain_color(id: TerrainId) -> Rgb {
    parse_hex(&content().terrain(id).color).unwrap_or([255, 0, 255])
}

/// The base colours of the whole palette, by palette index.
#[must_use]
pub fn terrain_colors() -> Vec<Rgb> {
    (0..content().world.terrain.len())
        .map(|i| terrain_color(TerrainId::try_from(i).unwrap_or(TerrainId::MAX)))
        .collect()
}

/// The largest per-channel difference between two colours.
#[must_use]
pub fn distance(a: Rgb, b: Rgb) -> u8 {
    (0..3).map(|i| a[i].abs_diff(b[i])).max().unwrap_or(0)
}

/// How far (per channel) the tileset's texture strays from a tile's base colour, and so how close a pixel must be
/// to a base colour to count as terrain in a screenshot.
pub const TERRAIN_TOLERANCE: u8 = 40;

/// Whether `pixel` is terrain: within [`TERRAIN_TOLERANCE`] of a palette colour.
#[must_use]
pub fn is_terrain(pixel: Rgb, palette: &[Rgb]) -> bool {
    palette
        .iter()
        .any(|&c| distance(pixel, c) <= TERRAIN_TOLERANCE)
}

/// What a screenshot shows, in numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScreenshotStats {
    /// The share of all pixels that are terrain ([`is_terrain`]), in `0..=1`.
    pub terrain_share: f64,
    /// Pixels of the own avatar's tunic ([`SELF_TUNIC`], within 30 per channel) in the central square of side
    /// [`CENTER_BOX`].
    pub self_pixels_at_center: usize,
}

/// The side of the central square, in pixels, where the own avatar must be.
pub const CENTER_BOX: u32 = 48;

/// Measure an RGB screenshot of `width × height` pixels (`rgb` is row-major, 3 bytes per pixel).
///
/// # Panics
///
/// If `rgb` is shorter than `width · height · 3`.
#[must_use]
pub fn screenshot_stats(rgb: &[u8], width: u32, height: u32) -> ScreenshotStats {
    let palette = terrain_colors();
    let pixel = |x: u32, y: u32| {
        let i = ((y * width + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let mut terrain = 0u64;
    for y in 0..height {
        for x in 0..width {
            if is_terrain(pixel(x, y), &palette) {
                terrain += 1;
            }
        }
    }
    let total = u64::from(width) * u64::from(height);
    let (cx, cy) = (width / 2, height / 2);
    let half = CENTER_BOX / 2;
    let mut self_pixels = 0;
    for y in cy.saturating_sub(half)..(cy + half).min(height) {
        for x in cx.saturating_sub(half)..(cx + half).min(width) {
            if distance(pixel(x, y), SELF_TUNIC) <= 30 {
                self_pixels += 1;
            }
        }
    }
    ScreenshotStats {
        terrain_share: if total == 0 {
            0.0
        } else {
            terrain as f64 / total as f64
        },
        self_pixels_at_center: self_pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_colours_parse() {
        assert_eq!(parse_hex("#3a6ea5"), Some([0x3a, 0x6e, 0xa5]));
        assert_eq!(parse_hex("#FFFFFF"), Some([255, 255, 255]));
        assert_eq!(parse_hex("3a6ea5"), None);
        assert_eq!(parse_hex("#3a6ea"), None);
        assert_eq!(parse_hex("#3a6eaz"), None);
        assert_eq!(parse_hex("#ééé"), None);
    }

    #[test]
    fn the_palette_maps_every_tile_and_no_terrain_looks_like_the_avatar() {
        let palette = terrain_colors();
        assert_eq!(palette.len(), content().world.terrain.len());
        let water = content().terrain_id("water").unwrap();
        assert_eq!(terrain_color(water), [0x3a, 0x6e, 0xa5]);
        for &c in &palette {
            assert!(distance(c, SELF_TUNIC) > TERRAIN_TOLERANCE + 30, "{c:?}");
            assert!(!is_terrain(SELF_TUNIC, &palette));
            assert!(!is_terrain(VOID, &palette));
        }
    }

    #[test]
    fn screenshot_stats_count_terrain_and_the_avatar_at_the_centre() {
        let (w, h) = (100u32, 80u32);
        let grass = terrain_color(content().terrain_id("grass").unwrap());
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let c = if x < 25 {
                    VOID
                } else if (45..55).contains(&x) && (35..45).contains(&y) {
                    SELF_TUNIC
                } else {
                    grass
                };
                rgb.extend_from_slice(&c);
            }
        }
        let stats = screenshot_stats(&rgb, w, h);
        assert_eq!(stats.self_pixels_at_center, 100);
        let expected = f64::from(75 * 80 - 100) / f64::from(w * h);
        assert!((stats.terrain_share - expected).abs() < 1e-9, "{stats:?}");
        let empty = screenshot_stats(&vec![0; (w * h * 3) as usize], w, h);
        assert_eq!(empty.self_pixels_at_center, 0);
        assert!(empty.terrain_share < 0.01);
    }
}
