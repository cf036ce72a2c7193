//! The standard crowd (`BENCHMARKS.md`) as geometry and choices: where N players live, where a bot walks next,
//! when it talks. Pure functions of their inputs and an RNG, so a run is deterministic from its seed.

use game_module::{Vec2, WORLD_SIZE};
use rand::{Rng, RngExt};

/// Players at the standard density: 10,000 on the whole 4096 × 4096 m world (~50 in each player's 64 m view).
pub(crate) const STANDARD_PLAYERS: f32 = 10_000.0;

/// NPCs spawned per player.
pub(crate) const NPCS_PER_PLAYER: u32 = 2;

/// A bot counts as arrived within this many metres of its waypoint.
pub(crate) const ARRIVED: f32 = 2.0;

/// The square the bots live in: centred on the world.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Arena {
    /// South-west corner.
    pub(crate) min: Vec2,
    /// North-east corner.
    pub(crate) max: Vec2,
}

impl Arena {
    /// The square of side `side` metres centred on the world (clamped to the world).
    pub(crate) fn centred(side: f32) -> Arena {
        let side = side.clamp(1.0, WORLD_SIZE);
        let c = Vec2::splat(WORLD_SIZE / 2.0);
        Arena {
            min: c - Vec2::splat(side / 2.0),
            max: c + Vec2::splat(side / 2.0),
        }
    }

    /// The square that keeps `players` at the standard density: side `4096 · sqrt(players / 10,000)`, at most the
    /// world.
    pub(crate) fn standard(players: u32) -> Arena {
        Arena::centred(standard_side(players))
    }

    /// Side length in metres.
    pub(crate) fn side(&self) -> f32 {
        self.max.x - self.min.x
    }

    /// A uniformly random point inside.
    pub(crate) fn random_point(&self, rng: &mut impl Rng) -> Vec2 {
        Vec2::new(
            rng.random_range(self.min.x..=self.max.x),
            rng.random_range(self.min.y..=self.max.y),
        )
    }

    /// A random point inside on which `walkable` holds, in at most `tries` tries.
    pub(crate) fn random_walkable(
        &self,
        rng: &mut impl Rng,
        tries: u32,
        walkable: impl Fn(Vec2) -> bool,
    ) -> Option<Vec2> {
        (0..tries).find_map(|_| Some(self.random_point(rng)).filter(|&p| walkable(p)))
    }
}

/// The side of the square holding `players` at the standard density, in metres (capped at the world).
pub(crate) fn standard_side(players: u32) -> f32 {
    (WORLD_SIZE * (players as f32 / STANDARD_PLAYERS).sqrt()).min(WORLD_SIZE)
}

/// When a bot walking since `since` (s) toward `waypoint` from `pos` picks a new waypoint at `now`: on arrival,
/// or after `patience` seconds (it may be stuck at water).
pub(crate) fn needs_new_waypoint(
    pos: Vec2,
    waypoint: Option<Vec2>,
    since: f64,
    now: f64,
    patience: f64,
) -> bool {
    match waypoint {
        None => true,
        Some(w) => pos.distance(w) <= ARRIVED || now - since >= patience,
    }
}

/// How long a bot keeps walking toward one waypoint before it gives up on it: 10 to 20 s.
pub(crate) fn patience(rng: &mut impl Rng) -> f64 {
    rng.random_range(10.0..20.0)
}

/// The next waypoint: a random walkable point of the arena (any point, if 16 tries find none).
pub(crate) fn next_waypoint(arena: &Arena, rng: &mut impl Rng) -> Vec2 {
    arena
        .random_walkable(rng, 16, game_module::terrain::is_walkable)
        .unwrap_or_else(|| arena.random_point(rng))
}

/// Seconds until a bot next considers saying something: at least 10 s (the chat rule of the scenario), up to 40.
pub(crate) fn next_chat_delay(rng: &mut impl Rng) -> f64 {
    rng.random_range(10.0..40.0)
}

/// Seconds until a bot next considers gathering or fighting: 20 to 60 s ("rarely").
pub(crate) fn next_action_delay(rng: &mut impl Rng) -> f64 {
    rng.random_range(20.0..60.0)
}

/// What a bot says.
pub(crate) fn chat_line(rng: &mut impl Rng) -> &'static str {
    const LINES: [&str; 6] = [
        "hello",
        "anyone seen iron around here?",
        "wolves to the north",
        "lfg trolls",
        "nice weather",
        "selling wood",
    ];
    LINES[rng.random_range(0..LINES.len())]
}

/// The nearest of `candidates` (id, position) to `from` within `range` metres.
pub(crate) fn nearest(
    from: Vec2,
    candidates: impl IntoIterator<Item = (u64, Vec2)>,
    range: f32,
) -> Option<(u64, Vec2)> {
    candidates
        .into_iter()
        .map(|(id, p)| (id, p, p.distance_squared(from)))
        .filter(|&(_, _, d2)| d2 <= range * range)
        .min_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)))
        .map(|(id, p, _)| (id, p))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_arena_keeps_the_standard_density() {
        assert!((standard_side(10_000) - 4096.0).abs() < 1e-3);
        assert!((standard_side(2_500) - 2048.0).abs() < 1e-3);
        assert_eq!(standard_side(50_000), 4096.0);
        let a = Arena::standard(2_500);
        assert_eq!(a.min, Vec2::splat(1024.0));
        assert_eq!(a.max, Vec2::splat(3072.0));
        // players per square metre stays the same
        let density = |n: u32| n as f32 / (standard_side(n) * standard_side(n));
        assert!((density(1_000) / density(10_000) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn waypoints_stay_in_the_arena_on_land_and_are_deterministic() {
        let arena = Arena::standard(1_000);
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let p = next_waypoint(&arena, &mut a);
            assert_eq!(p, next_waypoint(&arena, &mut b));
            assert!(p.x >= arena.min.x && p.x <= arena.max.x);
            assert!(p.y >= arena.min.y && p.y <= arena.max.y);
            assert!(game_module::terrain::is_walkable(p));
        }
        // a predicate that never holds gives up
        assert_eq!(arena.random_walkable(&mut a, 5, |_| false), None);
    }

    #[test]
    fn a_new_waypoint_on_arrival_or_when_patience_runs_out() {
        let w = Some(Vec2::new(100.0, 100.0));
        assert!(needs_new_waypoint(Vec2::ZERO, None, 0.0, 0.0, 15.0));
        assert!(!needs_new_waypoint(Vec2::ZERO, w, 0.0, 5.0, 15.0));
        assert!(needs_new_waypoint(Vec2::ZERO, w, 0.0, 15.0, 15.0));
        assert!(needs_new_waypoint(
            Vec2::new(99.0, 100.5),
            w,
            0.0,
            1.0,
            15.0
        ));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            assert!((10.0..20.0).contains(&patience(&mut rng)));
            assert!(next_chat_delay(&mut rng) >= 10.0);
        }
    }

    #[test]
    fn nearest_picks_the_closest_in_range() {
        let c = [
            (1, Vec2::new(10.0, 0.0)),
            (2, Vec2::new(3.0, 4.0)),
            (3, Vec2::new(100.0, 0.0)),
        ];
        assert_eq!(nearest(Vec2::ZERO, c, 50.0), Some((2, Vec2::new(3.0, 4.0))));
        assert_eq!(nearest(Vec2::new(100.0, 1.0), c, 5.0).map(|x| x.0), Some(3));
        assert_eq!(nearest(Vec2::new(500.0, 0.0), c, 50.0), None);
    }
}
