//! Client-side prediction of the own avatar, reconciled with the server's authoritative position.
//!
//! When the player presses a key or clicks, the client sends `move_dir` / `move_to` and at once starts walking
//! the avatar itself, by the same rules the server's `tick` uses ([`WALK_SPEED`], [`step_toward`],
//! [`clamp_to_world`], stopping where a step would enter water), so the avatar reacts without waiting a round
//! trip. The server stays the authority:
//!
//! - Each server update of the own row says where the avatar *was* when the server had seen the inputs sent
//!   about one round trip (`rtt`) earlier. The predictor compares it with where it itself predicted the avatar
//!   one `rtt` ago (it keeps a short history) — not with where the avatar is now, which is ahead.
//! - A small difference (the server's ticks quantise time; a step cut short) is corrected smoothly, at
//!   [`CORRECTION_RATE`] per second, so the avatar never visibly jumps.
//! - A large one ([`SNAP_ERROR`]: a teleport, a respawn, a refused move) snaps the avatar to the server's
//!   position. While the avatar is dead it simply follows the server.

use std::collections::VecDeque;

use game_module::terrain::{is_walkable, tile_of};
use game_module::{MAX_TICK_DT, WALK_SPEED, clamp_to_world, step_toward};
use glam::Vec2;

/// How much of the remaining error is corrected per second (exponential: `1 − e^(−rate·dt)` per frame).
pub const CORRECTION_RATE: f32 = 6.0;

/// Beyond this many metres of error the avatar snaps to the server's position.
pub const SNAP_ERROR: f32 = 4.0;

/// How long the position history reaches back, in µs.
pub const HISTORY_US: u64 = 2_000_000;

/// What the server says about the own avatar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerState {
    /// Its position.
    pub pos: Vec2,
    /// Whether it is walking.
    pub moving: bool,
    /// Whether it is alive.
    pub alive: bool,
}

/// The predicted own avatar. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Predictor {
    pos: Vec2,
    /// Walking to this point when `dir` is zero and `moving`.
    target: Vec2,
    /// Walking in this direction (unit length) when not zero.
    dir: Vec2,
    moving: bool,
    alive: bool,
    /// (local time in µs, predicted position), oldest first.
    history: VecDeque<(u64, Vec2)>,
    /// Error still to correct (metres).
    pending: Vec2,
}

impl Predictor {
    /// A standing avatar at `pos`.
    #[must_use]
    pub fn new(pos: Vec2) -> Predictor {
        Predictor {
            pos,
            target: pos,
            dir: Vec2::ZERO,
            moving: false,
            alive: true,
            history: VecDeque::new(),
            pending: Vec2::ZERO,
        }
    }

    /// The predicted position now.
    #[must_use]
    pub fn pos(&self) -> Vec2 {
        self.pos
    }

    /// Whether the avatar is walking (as predicted).
    #[must_use]
    pub fn is_moving(&self) -> bool {
        self.moving
    }

    /// The walking direction (zero when walking to a point or standing).
    #[must_use]
    pub fn dir(&self) -> Vec2 {
        self.dir
    }

    /// Like `move_to(x, y)`: walk toward `target` (clamped into the world). Non-finite targets are ignored, as
    /// the server refuses them.
    pub fn walk_to(&mut self, target: Vec2) {
        if !target.is_finite() || !self.alive {
            return;
        }
        self.target = clamp_to_world(target);
        self.dir = Vec2::ZERO;
        self.moving = self.pos != self.target;
    }

    /// Like `move_dir(dx, dy)`: walk in direction `dir` (normalised); zero stops.
    pub fn walk_dir(&mut self, dir: Vec2) {
        if !dir.is_finite() || !self.alive {
            return;
        }
        self.dir = dir.normalize_or_zero();
        self.target = self.pos;
        self.moving = self.dir != Vec2::ZERO;
    }

    /// Advance the prediction by `dt` seconds, ending at local time `now` (µs): the server's walking rule.
    pub fn step(&mut self, now: u64, dt: f32) {
        // Correct part of the pending error first (the history moves with it: it is where we now believe we were).
        let fraction = 1.0 - (-CORRECTION_RATE * dt.max(0.0)).exp();
        let correction = self.pending * fraction;
        self.pending -= correction;
        if correction != Vec2::ZERO {
            self.pos += correction;
            if self.dir != Vec2::ZERO || !self.moving {
                self.target = self.pos;
            }
            for (_, p) in &mut self.history {
                *p += correction;
            }
        }
        if self.moving && self.alive {
            let step = WALK_SPEED * dt.clamp(0.0, MAX_TICK_DT);
            let next = if self.dir == Vec2::ZERO {
                step_toward(self.pos, self.target, step)
            } else {
                clamp_to_world(self.pos + self.dir * step)
            };
            if tile_of(next) == tile_of(self.pos) || is_walkable(next) {
                self.pos = next;
                if self.dir != Vec2::ZERO {
                    self.target = next;
                } else if self.pos == self.target {
                    self.moving = false;
                }
            } else {
                self.stop();
            }
        }
        self.history.push_back((now, self.pos));
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| t + HISTORY_US < now)
        {
            self.history.pop_front();
        }
    }

    fn stop(&mut self) {
        self.target = self.pos;
        self.dir = Vec2::ZERO;
        self.moving = false;
    }

    /// Where the prediction had the avatar at local time `t` (the oldest known position before the history, the
    /// current one after it).
    #[must_use]
    pub fn predicted_at(&self, t: u64) -> Vec2 {
        let i = self.history.partition_point(|&(time, _)| time <= t);
        match (
            i.checked_sub(1).and_then(|j| self.history.get(j)),
            self.history.get(i),
        ) {
            (Some(&(t0, p0)), Some(&(t1, p1))) if t1 > t0 => {
                p0.lerp(p1, (t - t0) as f32 / (t1 - t0) as f32)
            }
            (Some(&(_, p)), _) | (None, Some(&(_, p))) => p,
            (None, None) => self.pos,
        }
    }

    /// The server says `server` about the avatar; the update arrived at local time `now`, and calls take `rtt`
    /// µs from sending to their effect coming back. Returns the error found (server minus predicted), in metres.
    pub fn reconcile(&mut self, server: ServerState, now: u64, rtt: u64) -> Vec2 {
        if !server.alive || !self.alive {
            // Dead (or just respawned): follow the server exactly.
            let error = server.pos - self.pos;
            self.alive = server.alive;
            self.snap_to(server.pos);
            return error;
        }
        let error = server.pos - self.predicted_at(now.saturating_sub(rtt));
        if error.length() > SNAP_ERROR {
            self.snap_to(server.pos);
        } else {
            self.pending = error;
        }
        error
    }

    fn snap_to(&mut self, pos: Vec2) {
        self.pos = pos;
        self.stop();
        self.history.clear();
        self.pending = Vec2::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 16_667;
    const FRAME: f32 = 1.0 / 60.0;
    const SPAWN: Vec2 = Vec2::new(2048.0, 2048.0);

    /// Run `frames` frames starting at local time `*now`.
    fn run(p: &mut Predictor, now: &mut u64, frames: u32) {
        for _ in 0..frames {
            *now += FRAME_US;
            p.step(*now, FRAME);
        }
    }

    #[test]
    fn walking_follows_the_servers_rules() {
        let mut now = 0;
        let mut p = Predictor::new(SPAWN);
        p.walk_to(SPAWN + Vec2::new(3.0, 4.0));
        assert!(p.is_moving());
        run(&mut p, &mut now, 59);
        assert!(
            p.is_moving() && p.pos().distance(SPAWN) > 4.8,
            "{}",
            p.pos()
        );
        run(&mut p, &mut now, 2);
        // 5 m/s for 1 s: exactly on the 5 m distant target, and stopped there.
        assert!(
            p.pos().distance(SPAWN + Vec2::new(3.0, 4.0)) < 1e-3,
            "{}",
            p.pos()
        );
        assert!(!p.is_moving());
        p.walk_dir(Vec2::new(0.0, -2.0));
        assert_eq!(p.dir(), Vec2::new(0.0, -1.0));
        run(&mut p, &mut now, 30);
        assert!(
            (p.pos().y - (SPAWN.y + 4.0 - 2.5)).abs() < 1e-2,
            "{}",
            p.pos()
        );
        p.walk_dir(Vec2::ZERO);
        assert!(!p.is_moving());
        let here = p.pos();
        run(&mut p, &mut now, 30);
        assert_eq!(p.pos(), here);
        p.walk_to(Vec2::new(f32::NAN, 0.0));
        assert!(!p.is_moving(), "non-finite targets are ignored");
    }

    #[test]
    fn walking_stops_at_water() {
        let mut now = 0;
        let mut p = Predictor::new(SPAWN);
        // West from the spawn point: the sea is at the world's edge.
        p.walk_dir(Vec2::new(-1.0, 0.0));
        for _ in 0..(2100.0 / WALK_SPEED * 60.0) as u32 {
            now += FRAME_US;
            p.step(now, FRAME);
            if !p.is_moving() {
                break;
            }
        }
        assert!(!p.is_moving(), "stopped at {}", p.pos());
        assert!(is_walkable(p.pos()));
        assert!(!is_walkable(p.pos() - Vec2::new(4.0, 0.0)), "{}", p.pos());
    }

    #[test]
    fn a_server_one_round_trip_behind_causes_no_correction() {
        let rtt = 100_000;
        let mut now = 0;
        let mut p = Predictor::new(SPAWN);
        run(&mut p, &mut now, 5);
        p.walk_dir(Vec2::X);
        // The server runs the same walk, started when the input reached it, reported a round trip later.
        let started = now;
        let mut checked = 0;
        for frame in 0..120 {
            now += FRAME_US;
            p.step(now, FRAME);
            if now >= started + rtt && frame % 3 == 0 {
                checked += 1;
                let walked = (now - rtt - started) as f32 / 1e6 * WALK_SPEED;
                let server = ServerState {
                    pos: SPAWN + Vec2::X * walked,
                    moving: true,
                    alive: true,
                };
                let error = p.reconcile(server, now, rtt);
                assert!(error.length() < 0.05, "{error}");
            }
        }
        assert!(checked > 30, "{checked}");
        let expected = SPAWN.x + 120.0 * FRAME * WALK_SPEED;
        assert!((p.pos().x - expected).abs() < 0.05, "{}", p.pos());
    }

    #[test]
    fn small_errors_are_corrected_smoothly_and_large_ones_snap() {
        let mut now = 1_000_000;
        let mut p = Predictor::new(SPAWN);
        run(&mut p, &mut now, 10);
        // The server stopped us 1 m short.
        let server = ServerState {
            pos: SPAWN - Vec2::new(1.0, 0.0),
            moving: false,
            alive: true,
        };
        p.reconcile(server, now, 50_000);
        run(&mut p, &mut now, 1);
        let moved = SPAWN.x - p.pos().x;
        assert!(
            moved > 0.0 && moved < 0.2,
            "one frame moves a little: {moved}"
        );
        run(&mut p, &mut now, 60);
        assert!(p.pos().distance(server.pos) < 0.01, "{}", p.pos());
        // A teleport: at once.
        let far = ServerState {
            pos: SPAWN + Vec2::new(300.0, 0.0),
            moving: false,
            alive: true,
        };
        p.reconcile(far, now, 50_000);
        assert_eq!(p.pos(), far.pos);
        // Dead: follow the server, ignore input; alive again: back to predicting.
        let dead = ServerState {
            pos: SPAWN,
            moving: false,
            alive: false,
        };
        p.reconcile(dead, now, 50_000);
        p.walk_dir(Vec2::X);
        run(&mut p, &mut now, 10);
        assert_eq!(p.pos(), SPAWN);
        p.reconcile(
            ServerState {
                alive: true,
                ..dead
            },
            now,
            50_000,
        );
        p.walk_dir(Vec2::X);
        run(&mut p, &mut now, 10);
        assert!(p.pos().x > SPAWN.x);
    }
}
