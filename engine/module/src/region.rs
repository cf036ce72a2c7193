//! Which part of the world this module instance serves: the regions of a world split into regions
//! ([`ReducerContext::region`](crate::ReducerContext::region), [`ReducerContext::regions`](crate::ReducerContext::regions)).

use locus_types::Vec2;

/// An axis-aligned rectangle of the world, in metres, from `min` (the corner with the smallest coordinates) to `max`.
///
/// It holds the points `p` with `min ≤ p < max` on both axes ([`Rect::contains`]): the rectangles of a world's
/// regions tile it, so each point of the world's interior is in exactly one of them. (The engine also gives a
/// region the points on the world's far edges its rectangle reaches; `contains` leaves those out.)
///
/// The rectangles the host describes are finite and not empty: `min.x < max.x` and `min.y < max.y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// The corner with the smallest coordinates (included).
    pub min: Vec2,
    /// The corner with the largest coordinates (excluded).
    pub max: Vec2,
}

impl Rect {
    /// The rectangle from `min` to `max`.
    #[must_use]
    pub const fn new(min: Vec2, max: Vec2) -> Rect {
        Rect { min, max }
    }

    /// Whether `p` lies in it: `min ≤ p < max` on both axes (`false` for a point that is not finite).
    #[must_use]
    pub fn contains(&self, p: Vec2) -> bool {
        self.min.x <= p.x && p.x < self.max.x && self.min.y <= p.y && p.y < self.max.y
    }

    /// Whether it holds no point (`min ≥ max` on an axis).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !(self.min.x < self.max.x && self.min.y < self.max.y)
    }

    /// Its area in square metres; 0 for an empty rectangle.
    #[must_use]
    pub fn area(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        f64::from(self.max.x - self.min.x) * f64::from(self.max.y - self.min.y)
    }

    /// The part of it that `other` also covers; `None` if they share no area.
    #[must_use]
    pub fn intersection(&self, other: &Rect) -> Option<Rect> {
        let r = Rect {
            min: self.min.max(other.min),
            max: self.max.min(other.max),
        };
        (!r.is_empty()).then_some(r)
    }
}

/// One region of a world split into regions: a rectangle of the world served by its own server process, which runs
/// this same module over its own database (`engine/docs/regions.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Its name in the world's layout (`world.toml`): what [`send_to_region`](crate::ReducerContext::send_to_region)
    /// takes.
    pub name: String,
    /// Its index in the layout (0 for the first `[[region]]`).
    pub index: u32,
    /// The part of the world it serves.
    pub rect: Rect,
    /// Whether it is the region this call runs in.
    pub own: bool,
}

impl Region {
    /// Decode the host's region list (`region_list`: a MessagePack array of `[name, index, x0, y0, x1, y1, own]`).
    ///
    /// # Panics
    ///
    /// If the bytes are not such a list: the SDK and the host disagree about the module ABI.
    pub(crate) fn decode_list(bytes: &[u8]) -> Vec<Region> {
        type Row = (String, u32, f32, f32, f32, f32, bool);
        let rows: Vec<Row> = rmp_serde::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "locus-module: the host's list of regions does not decode ({e}); the SDK and the host disagree about the module ABI"
            )
        });
        rows.into_iter()
            .map(|(name, index, x0, y0, x1, y1, own)| Region {
                name,
                index,
                rect: Rect::new(Vec2::new(x0, y0), Vec2::new(x1, y1)),
                own,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rect_holds_its_min_corner_but_not_its_max() {
        let r = Rect::new(Vec2::new(0.0, 2048.0), Vec2::new(2048.0, 4096.0));
        assert!(r.contains(Vec2::new(0.0, 2048.0)));
        assert!(r.contains(Vec2::new(2047.9, 4095.9)));
        assert!(!r.contains(Vec2::new(2048.0, 3000.0)));
        assert!(!r.contains(Vec2::new(10.0, 4096.0)));
        assert!(!r.contains(Vec2::new(f32::NAN, 3000.0)));
        assert_eq!(r.area(), 2048.0 * 2048.0);
        let world = Rect::new(Vec2::ZERO, Vec2::splat(3000.0));
        assert_eq!(
            r.intersection(&world),
            Some(Rect::new(Vec2::new(0.0, 2048.0), Vec2::new(2048.0, 3000.0)))
        );
        let beyond = Rect::new(Vec2::new(5000.0, 0.0), Vec2::new(6000.0, 100.0));
        assert_eq!(r.intersection(&beyond), None);
        assert!(Rect::new(Vec2::ONE, Vec2::ONE).is_empty());
        assert_eq!(Rect::new(Vec2::ONE, Vec2::ZERO).area(), 0.0);
    }

    #[test]
    fn the_host_list_decodes_in_its_order() {
        // What `region_list` writes for `west` (own) and `east`: the rows of `locus_regions`.
        let bytes = rmp_serde::to_vec(&(
            ("west", 0u32, 0.0f32, 0.0f32, 2048.0f32, 4096.0f32, true),
            ("east", 1u32, 2048.0f32, 0.0f32, 4096.0f32, 4096.0f32, false),
        ))
        .unwrap();
        let regions = Region::decode_list(&bytes);
        assert_eq!(
            regions,
            [
                Region {
                    name: "west".into(),
                    index: 0,
                    rect: Rect::new(Vec2::ZERO, Vec2::new(2048.0, 4096.0)),
                    own: true,
                },
                Region {
                    name: "east".into(),
                    index: 1,
                    rect: Rect::new(Vec2::new(2048.0, 0.0), Vec2::splat(4096.0)),
                    own: false,
                },
            ]
        );
        assert!(Region::decode_list(&[0x90]).is_empty());
    }
}
