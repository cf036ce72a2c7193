//! A world's layout: its regions, each a rectangle of the world served by its own process, and the border band
//! within which a row is also seen by the neighbouring regions.
//!
//! # The file
//!
//! ```toml
//! world = "demo"                  # the world's name: NATS subjects and streams are named after it
//! size = 4096.0                   # the world is the square [0, size]² metres
//! border = 80.0                   # metres: rows this near another region are also seen from it
//! nats = "nats://127.0.0.1:4222"  # the NATS server (with JetStream) the regions talk through
//!
//! [[region]]
//! name = "west"                   # lowercase letters, digits, `-`, `_`
//! rect = [0.0, 0.0, 2048.0, 4096.0]   # [min x, min y, max x, max y]
//! listen = "127.0.0.1:7881"       # where its clients connect (UDP)
//! ```
//!
//! # Invariants of a [`WorldLayout`] (checked by [`WorldLayout::from_toml`] and [`WorldLayout::new`])
//!
//! 1. There is at least one region, at most `u16::MAX`; names and listen addresses are unique; names (and the
//!    world's) are non-empty runs of `[a-z0-9_-]`, so they can be NATS subject tokens.
//! 2. Every rectangle is non-empty (`min < max` on both axes), finite, and inside the world.
//! 3. The rectangles tile the world: no two overlap (in area) and together they cover it. So every point of the
//!    world belongs to exactly one region ([`WorldLayout::region_at`]): a rectangle holds its points with
//!    `min ≤ p < max`, and also those on the world's far edges (`p = size`).
//! 4. `border` is finite and not negative.

use std::net::SocketAddr;

use glam::Vec2;
use serde::Deserialize;
use thiserror::Error;

/// A region's index in its layout (the order of the file's `[[region]]` tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionId(pub u16);

/// An axis-aligned rectangle of the world, in metres: `[min x, min y, max x, max y]` in the file.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(from = "[f32; 4]")]
pub struct Rect {
    /// The corner with the smallest coordinates.
    pub min: Vec2,
    /// The corner with the largest coordinates.
    pub max: Vec2,
}

impl From<[f32; 4]> for Rect {
    fn from([x0, y0, x1, y1]: [f32; 4]) -> Rect {
        Rect {
            min: Vec2::new(x0, y0),
            max: Vec2::new(x1, y1),
        }
    }
}

impl Rect {
    /// The distance from `p` to the rectangle (0 inside or on it).
    #[must_use]
    pub fn distance(&self, p: Vec2) -> f32 {
        let d = (self.min - p).max(p - self.max).max(Vec2::ZERO);
        d.length()
    }

    /// Its area, in square metres.
    #[must_use]
    pub fn area(&self) -> f64 {
        f64::from(self.max.x - self.min.x) * f64::from(self.max.y - self.min.y)
    }

    /// The area two rectangles share.
    #[must_use]
    pub fn overlap(&self, other: &Rect) -> f64 {
        let w = f64::from(self.max.x.min(other.max.x) - self.min.x.max(other.min.x));
        let h = f64::from(self.max.y.min(other.max.y) - self.min.y.max(other.min.y));
        if w > 0.0 && h > 0.0 { w * h } else { 0.0 }
    }
}

/// One region of the file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Its name: a NATS subject token.
    pub name: String,
    /// The part of the world it serves.
    pub rect: Rect,
    /// Where its clients connect.
    pub listen: SocketAddr,
}

/// The file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    world: String,
    size: f32,
    border: f32,
    nats: String,
    #[serde(rename = "region", default)]
    regions: Vec<RegionConfig>,
}

/// Why a layout is refused; each names what is wrong.
#[derive(Debug, Error, PartialEq)]
pub enum LayoutError {
    /// The file is not the TOML of a layout (a missing or unknown key, a wrong type).
    #[error("the world config is not valid: {0}")]
    Parse(String),
    /// A world or region name that cannot be a NATS subject token.
    #[error("`{0}` cannot name a world or region: use lowercase letters, digits, `-` and `_`")]
    BadName(String),
    /// Two regions share a name.
    #[error("two regions are named `{0}`")]
    DuplicateName(String),
    /// Two regions share a listen address.
    #[error("two regions listen on {0}")]
    DuplicateListen(SocketAddr),
    /// The world's size is not a positive finite number.
    #[error("the world's size must be a positive number of metres, not {0}")]
    BadSize(f32),
    /// The border band is negative or not finite.
    #[error("the border must be a finite, non-negative number of metres, not {0}")]
    BadBorder(f32),
    /// No region at all.
    #[error("the world has no region")]
    NoRegions,
    /// More regions than a [`RegionId`] can number.
    #[error("the world has {0} regions; at most 65535")]
    TooManyRegions(usize),
    /// A rectangle that is empty, not finite, or reaches outside the world.
    #[error(
        "region `{region}`'s rect {rect:?} is empty, not finite, or outside the world [0, {size}]²"
    )]
    BadRect {
        /// The region.
        region: String,
        /// Its rectangle.
        rect: Rect,
        /// The world's size.
        size: f32,
    },
    /// Two rectangles overlap.
    #[error("regions `{0}` and `{1}` overlap")]
    Overlap(String, String),
    /// The rectangles leave part of the world to no region.
    #[error("the regions leave {0:.0} m² of the world to no region")]
    Gap(f64),
}

/// A world's layout: see the [module docs](self) for the file and the invariants.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldLayout {
    world: String,
    size: f32,
    border: f32,
    nats: String,
    regions: Vec<RegionConfig>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl WorldLayout {
    /// Read a layout from the text of its config file.
    ///
    /// # Errors
    ///
    /// A [`LayoutError`] naming the first thing wrong.
    pub fn from_toml(text: &str) -> Result<WorldLayout, LayoutError> {
        let file: LayoutFile =
            toml::from_str(text).map_err(|e| LayoutError::Parse(e.to_string()))?;
        WorldLayout::new(file.world, file.size, file.border, file.nats, file.regions)
    }

    /// A layout of `regions` over the world `[0, size]²`.
    ///
    /// # Errors
    ///
    /// A [`LayoutError`] naming the first invariant broken.
    pub fn new(
        world: String,
        size: f32,
        border: f32,
        nats: String,
        regions: Vec<RegionConfig>,
    ) -> Result<WorldLayout, LayoutError> {
        if !valid_name(&world) {
            return Err(LayoutError::BadName(world));
        }
        if !(size.is_finite() && size > 0.0) {
            return Err(LayoutError::BadSize(size));
        }
        if !(border.is_finite() && border >= 0.0) {
            return Err(LayoutError::BadBorder(border));
        }
        if regions.is_empty() {
            return Err(LayoutError::NoRegions);
        }
        if regions.len() > usize::from(u16::MAX) {
            return Err(LayoutError::TooManyRegions(regions.len()));
        }
        for (i, r) in regions.iter().enumerate() {
            if !valid_name(&r.name) {
                return Err(LayoutError::BadName(r.name.clone()));
            }
            let Rect { min, max } = r.rect;
            if !(min.is_finite() && max.is_finite())
                || min.x >= max.x
                || min.y >= max.y
                || min.x < 0.0
                || min.y < 0.0
                || max.x > size
                || max.y > size
            {
                return Err(LayoutError::BadRect {
                    region: r.name.clone(),
                    rect: r.rect,
                    size,
                });
            }
            for other in &regions[..i] {
                if other.name == r.name {
                    return Err(LayoutError::DuplicateName(r.name.clone()));
                }
                if other.listen == r.listen {
                    return Err(LayoutError::DuplicateListen(r.listen));
                }
                if other.rect.overlap(&r.rect) > 0.0 {
                    return Err(LayoutError::Overlap(other.name.clone(), r.name.clone()));
                }
            }
        }
        // Disjoint rectangles inside the world cover it exactly when their areas add up to the world's.
        let covered: f64 = regions.iter().map(|r| r.rect.area()).sum();
        let world_area = f64::from(size) * f64::from(size);
        let missing = world_area - covered;
        if missing > world_area * 1e-9 {
            return Err(LayoutError::Gap(missing));
        }
        Ok(WorldLayout {
            world,
            size,
            border,
            nats,
            regions,
        })
    }

    /// The world's name.
    #[must_use]
    pub fn world(&self) -> &str {
        &self.world
    }

    /// The side of the world, in metres.
    #[must_use]
    pub fn size(&self) -> f32 {
        self.size
    }

    /// The border band, in metres: a row this near another region is also seen from it.
    #[must_use]
    pub fn border(&self) -> f32 {
        self.border
    }

    /// The NATS server's URL.
    #[must_use]
    pub fn nats(&self) -> &str {
        &self.nats
    }

    /// Every region, in [`RegionId`] order.
    #[must_use]
    pub fn regions(&self) -> &[RegionConfig] {
        &self.regions
    }

    /// The region `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not of this layout.
    #[must_use]
    pub fn region(&self, id: RegionId) -> &RegionConfig {
        &self.regions[usize::from(id.0)]
    }

    /// The id of the region named `name`.
    #[must_use]
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionId(i as u16))
    }

    /// The region that owns `p`; `None` outside the world (or for a point that is not finite).
    #[must_use]
    pub fn region_at(&self, p: Vec2) -> Option<RegionId> {
        (0..self.regions.len())
            .map(|i| RegionId(i as u16))
            .find(|&r| self.owns(r, p))
    }

    /// Whether region `own` owns `p` (`region_at(p) == Some(own)`, without a scan of the other regions).
    #[must_use]
    pub fn owns(&self, own: RegionId, p: Vec2) -> bool {
        let s = self.size;
        if !p.is_finite() || p.x < 0.0 || p.y < 0.0 || p.x > s || p.y > s {
            return false;
        }
        let holds = |lo: f32, hi: f32, v: f32| lo <= v && (v < hi || (hi == s && v <= s));
        let r = &self.region(own).rect;
        holds(r.min.x, r.max.x, p.x) && holds(r.min.y, r.max.y, p.y)
    }

    /// The regions other than `p`'s own that must see a row at `p`: those whose rectangle lies within
    /// [`border`](Self::border) of it, in id order. Empty outside the world.
    #[must_use]
    pub fn neighbours_seeing(&self, p: Vec2) -> Vec<RegionId> {
        self.region_at(p)
            .map_or_else(Vec::new, |own| self.seeing_from(own, p))
    }

    /// The regions other than `own` whose rectangle lies within [`border`](Self::border) of `p`, in id order:
    /// those that must see a row of `own` at `p` (wherever `p` is: a row of `own` may stand outside its rectangle
    /// until it is handed over).
    #[must_use]
    pub fn seeing_from(&self, own: RegionId, p: Vec2) -> Vec<RegionId> {
        // The regions tile the world, so every other one lies outside `own`'s rectangle: from a point deeper than
        // the border inside it (most rows of a region), none is near enough. No scan, no allocation.
        let r = &self.region(own).rect;
        let depth = (p.x - r.min.x)
            .min(r.max.x - p.x)
            .min(p.y - r.min.y)
            .min(r.max.y - p.y);
        if depth > self.border {
            return Vec::new();
        }
        self.regions
            .iter()
            .enumerate()
            .filter(|&(i, r)| i != usize::from(own.0) && r.rect.distance(p) <= self.border)
            .map(|(i, _)| RegionId(i as u16))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `cols × rows` grid of regions over a world of `size`.
    fn grid(size: f32, cols: u16, rows: u16, border: f32) -> WorldLayout {
        let (w, h) = (size / f32::from(cols), size / f32::from(rows));
        let mut regions = Vec::new();
        for j in 0..rows {
            for i in 0..cols {
                let (i32_, j32) = (f32::from(i), f32::from(j));
                let max_x = if i + 1 == cols {
                    size
                } else {
                    (i32_ + 1.0) * w
                };
                let max_y = if j + 1 == rows { size } else { (j32 + 1.0) * h };
                regions.push(RegionConfig {
                    name: format!("r{i}-{j}"),
                    rect: Rect::from([i32_ * w, j32 * h, max_x, max_y]),
                    listen: format!("127.0.0.1:{}", 7000 + j * cols + i)
                        .parse()
                        .unwrap(),
                });
            }
        }
        WorldLayout::new("w".into(), size, border, "nats://x".into(), regions).unwrap()
    }

    fn region(name: &str, rect: [f32; 4], port: u16) -> RegionConfig {
        RegionConfig {
            name: name.into(),
            rect: rect.into(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }

    fn layout(regions: Vec<RegionConfig>) -> Result<WorldLayout, LayoutError> {
        WorldLayout::new("w".into(), 100.0, 10.0, "nats://x".into(), regions)
    }

    #[test]
    fn bad_layouts_are_refused_naming_what_is_wrong() {
        let half = |n, x0, x1, p| region(n, [x0, 0.0, x1, 100.0], p);
        assert_eq!(layout(vec![]), Err(LayoutError::NoRegions));
        assert_eq!(
            layout(vec![half("a", 0.0, 60.0, 1), half("b", 50.0, 100.0, 2)]),
            Err(LayoutError::Overlap("a".into(), "b".into()))
        );
        assert!(matches!(
            layout(vec![half("a", 0.0, 40.0, 1), half("b", 50.0, 100.0, 2)]),
            Err(LayoutError::Gap(m)) if (m - 1000.0).abs() < 1e-6
        ));
        assert_eq!(
            layout(vec![half("a", 0.0, 50.0, 1), half("a", 50.0, 100.0, 2)]),
            Err(LayoutError::DuplicateName("a".into()))
        );
        assert!(matches!(
            layout(vec![half("a", 0.0, 50.0, 1), half("b", 50.0, 100.0, 1)]),
            Err(LayoutError::DuplicateListen(_))
        ));
        assert!(matches!(
            layout(vec![half("a", 0.0, 150.0, 1)]),
            Err(LayoutError::BadRect { .. })
        ));
        assert!(matches!(
            layout(vec![half("a", 50.0, 50.0, 1)]),
            Err(LayoutError::BadRect { .. })
        ));
        assert_eq!(
            layout(vec![half("North", 0.0, 100.0, 1)]),
            Err(LayoutError::BadName("North".into()))
        );
        assert!(matches!(
            WorldLayout::from_toml("world = \"w\"\nsize = 1.0\nborder = 0.0\nnats = \"x\"\ncolour = 1\n"),
            Err(LayoutError::Parse(m)) if m.contains("colour")
        ));
        assert_eq!(
            WorldLayout::new(
                "w".into(),
                100.0,
                -1.0,
                "x".into(),
                vec![half("a", 0.0, 100.0, 1)]
            ),
            Err(LayoutError::BadBorder(-1.0))
        );
    }

    #[test]
    fn the_far_edges_belong_to_the_regions_touching_them() {
        let l = grid(100.0, 2, 2, 5.0);
        let id = |n: &str| l.region_id(n).unwrap();
        assert_eq!(l.region_at(Vec2::new(0.0, 0.0)), Some(id("r0-0")));
        assert_eq!(
            l.region_at(Vec2::new(50.0, 49.9)),
            Some(id("r1-0")),
            "min edges are held"
        );
        assert_eq!(l.region_at(Vec2::new(100.0, 100.0)), Some(id("r1-1")));
        assert_eq!(l.region_at(Vec2::new(100.1, 5.0)), None);
        assert_eq!(l.region_at(Vec2::new(f32::NAN, 5.0)), None);
        // The corner point sees its three neighbours.
        assert_eq!(l.neighbours_seeing(Vec2::new(49.0, 49.0)).len(), 3);
    }

    proptest! {
        /// Every point of the world has exactly one region, the one a brute-force scan of the half-open
        /// rectangles finds; its neighbours are exactly the other regions within the border.
        #[test]
        fn every_point_has_one_region_and_the_right_neighbours(
            cols in 1u16..5, rows in 1u16..5, border in 0.0f32..40.0,
            points in proptest::collection::vec((0.0f32..=100.0, 0.0f32..=100.0), 1..50),
        ) {
            let l = grid(100.0, cols, rows, border);
            for (x, y) in points {
                let p = Vec2::new(x, y);
                let holders: Vec<usize> = l.regions().iter().enumerate().filter(|(_, r)| {
                    let inx = r.rect.min.x <= x && (x < r.rect.max.x || r.rect.max.x == 100.0);
                    let iny = r.rect.min.y <= y && (y < r.rect.max.y || r.rect.max.y == 100.0);
                    inx && iny
                }).map(|(i, _)| i).collect();
                prop_assert_eq!(holders.len(), 1, "{:?}", p);
                let own = l.region_at(p).unwrap();
                prop_assert_eq!(usize::from(own.0), holders[0]);
                for r in 0..l.regions().len() {
                    let r = RegionId(r as u16);
                    prop_assert_eq!(l.owns(r, p), r == own, "{:?} region {:?}", p, r);
                    // Seen from any region, inside its rectangle or not (a row not yet handed over).
                    let seen = l.seeing_from(r, p);
                    for (i, q) in l.regions().iter().enumerate() {
                        let dx = (q.rect.min.x - x).max(x - q.rect.max.x).max(0.0);
                        let dy = (q.rect.min.y - y).max(y - q.rect.max.y).max(0.0);
                        let brute = i != usize::from(r.0) && (dx * dx + dy * dy).sqrt() <= border;
                        prop_assert_eq!(seen.contains(&RegionId(i as u16)), brute, "{:?} from {:?} region {}", p, r, i);
                    }
                }
                let near = l.neighbours_seeing(p);
                for (i, r) in l.regions().iter().enumerate() {
                    let brute = i != holders[0] && {
                        let dx = (r.rect.min.x - x).max(x - r.rect.max.x).max(0.0);
                        let dy = (r.rect.min.y - y).max(y - r.rect.max.y).max(0.0);
                        (dx * dx + dy * dy).sqrt() <= border
                    };
                    prop_assert_eq!(near.contains(&RegionId(i as u16)), brute, "{:?} region {}", p, i);
                }
            }
        }
    }
}
