//! Interpolation of remote entities between server ticks.
//!
//! The server moves things 20 times a second and says where they are at each tick, stamped with the tick's time
//! (µs since the Unix epoch). Drawing each position when it arrives would make everything jump 20 times a second
//! and stutter with network jitter; instead the client draws every remote entity where it was
//! [`INTERP_DELAY_US`] ago *in server time*, interpolating between the two tick samples around that moment.
//!
//! Terms:
//! - A **sample** is (server time, position) from one row update.
//! - The [`ServerClock`] maps the local clock to server time: `server ≈ local + offset`, where `offset` follows
//!   the tick timestamps as they arrive.
//! - The **render time** is the estimated server time now minus [`INTERP_DELAY_US`].
//!
//! Invariant: a [`Track`]'s samples are in increasing time order and never more than [`MAX_SAMPLES`].

use std::collections::VecDeque;

use glam::Vec2;

/// How far behind the estimated server time remote entities are drawn: two ticks and a bit of jitter margin.
pub const INTERP_DELAY_US: u64 = 120_000;

/// The server's tick interval (20 Hz).
pub const TICK_US: u64 = 50_000;

/// The most samples a track keeps.
pub const MAX_SAMPLES: usize = 16;

/// Beyond this distance between two samples an entity jumped (teleported, respawned): no sliding across.
pub const SNAP_DISTANCE: f32 = 12.0;

/// The positions of one remote entity over time. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Track {
    samples: VecDeque<(u64, Vec2)>,
}

impl Track {
    /// A track starting at `pos` at server time `time`.
    #[must_use]
    pub fn new(time: u64, pos: Vec2) -> Track {
        let mut track = Track::default();
        track.push(time, pos);
        track
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = (u64, Vec2)> + '_ {
        self.samples.iter().copied()
    }

    /// Record that the entity is at `pos` at server time `time`.
    ///
    /// A sample older than the newest is ignored; one at the newest's time replaces it. If the entity stood still
    /// for more than a tick before this sample, a sample at its old position one tick earlier is added first, so
    /// that it starts walking at the right moment instead of sliding slowly over the whole time it stood. A jump
    /// of more than [`SNAP_DISTANCE`] drops the older samples (the entity is drawn at its new place at once when
    /// the render time reaches this sample).
    pub fn push(&mut self, time: u64, pos: Vec2) {
        if let Some(&(last_time, last_pos)) = self.samples.back() {
            if time < last_time {
                return;
            }
            if time == last_time {
                self.samples.pop_back();
            } else if last_pos.distance(pos) > SNAP_DISTANCE {
                self.samples.clear();
                self.samples.push_back((time.saturating_sub(1), last_pos));
            } else if time - last_time > TICK_US * 3 / 2 {
                self.samples.push_back((time - TICK_US, last_pos));
            }
        }
        self.samples.push_back((time, pos));
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Where to draw the entity at server time `time`: between the samples around it, linearly; the first sample
    /// before all of them, the newest after all of them (no extrapolation: a late tick makes it pause, never
    /// overshoot). `None` without samples.
    #[must_use]
    pub fn position_at(&self, time: u64) -> Option<Vec2> {
        let (&first, &last) = (self.samples.front()?, self.samples.back()?);
        if time <= first.0 {
            return Some(first.1);
        }
        if time >= last.0 {
            return Some(last.1);
        }
        // The first sample after `time` (exists: time < last.0).
        let i = self.samples.partition_point(|&(t, _)| t <= time);
        let (t0, p0) = self.samples[i - 1];
        let (t1, p1) = self.samples[i];
        let f = (time - t0) as f32 / (t1 - t0) as f32;
        Some(p0.lerp(p1, f))
    }

    /// Forget samples that no render time at or after `time` needs (keeping the one just before it).
    pub fn forget_before(&mut self, time: u64) {
        while self.samples.len() > 1 && self.samples[1].0 <= time {
            self.samples.pop_front();
        }
    }
}

/// Maps the local clock to the server's: see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerClock {
    /// Server time minus local time, in µs (`None` before the first tick).
    offset: Option<i64>,
}

impl ServerClock {
    /// Observe that a tick stamped `server_time` arrived at local time `local_now` (both in µs).
    ///
    /// The offset follows arrivals slowly (1/16 of the error per tick), so jitter does not shake the picture;
    /// a tick that arrives *earlier* than expected pulls it faster (1/4), since network delay only ever makes
    /// ticks late; a jump of more than a second (the server paused, the client was suspended) resets it.
    pub fn observe(&mut self, server_time: u64, local_now: u64) {
        let sample = server_time as i64 - local_now as i64;
        self.offset = Some(match self.offset {
            None => sample,
            Some(offset) => {
                let error = sample - offset;
                if error.abs() > 1_000_000 {
                    sample
                } else if error > 0 {
                    offset + error / 4
                } else {
                    offset + error / 16
                }
            }
        });
    }

    /// Whether a tick has been observed.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.offset.is_some()
    }

    /// The estimated server time at local time `local_now` (`local_now` itself before any tick).
    #[must_use]
    pub fn server_time(&self, local_now: u64) -> u64 {
        (local_now as i64 + self.offset.unwrap_or(0)).max(0) as u64
    }

    /// The render time at local time `local_now`: the server time minus [`INTERP_DELAY_US`].
    #[must_use]
    pub fn render_time(&self, local_now: u64) -> u64 {
        self.server_time(local_now).saturating_sub(INTERP_DELAY_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000;

    #[test]
    fn positions_between_samples_are_interpolated() {
        let mut track = Track::new(T0, Vec2::new(0.0, 0.0));
        track.push(T0 + TICK_US, Vec2::new(0.25, 0.0));
        track.push(T0 + 2 * TICK_US, Vec2::new(0.5, 0.0));
        assert_eq!(track.position_at(T0 - 5), Some(Vec2::ZERO));
        assert_eq!(
            track.position_at(T0 + TICK_US / 2),
            Some(Vec2::new(0.125, 0.0))
        );
        assert_eq!(track.position_at(T0 + TICK_US), Some(Vec2::new(0.25, 0.0)));
        let p = track.position_at(T0 + TICK_US * 3 / 2).unwrap();
        assert!((p.x - 0.375).abs() < 1e-6, "{p}");
        // No extrapolation past the newest sample.
        assert_eq!(
            track.position_at(T0 + 10 * TICK_US),
            Some(Vec2::new(0.5, 0.0))
        );
        assert_eq!(Track::default().position_at(T0), None);
    }

    #[test]
    fn a_walk_after_standing_starts_one_tick_before_the_first_moved_sample() {
        let mut track = Track::new(T0, Vec2::ZERO);
        // Stood still for 2 s, then one tick of walking at 5 m/s.
        let t = T0 + 2_000_000;
        track.push(t, Vec2::new(0.25, 0.0));
        assert_eq!(track.position_at(t - TICK_US), Some(Vec2::ZERO));
        assert_eq!(
            track.position_at(t - TICK_US / 2),
            Some(Vec2::new(0.125, 0.0))
        );
        // Halfway through the standing time it has not moved (without the extra sample it would be at 0.125).
        assert_eq!(track.position_at(T0 + 1_000_000), Some(Vec2::ZERO));
    }

    #[test]
    fn jumps_snap_and_old_or_repeated_samples_are_handled() {
        let mut track = Track::new(T0, Vec2::ZERO);
        track.push(T0 + TICK_US, Vec2::new(100.0, 0.0));
        // Until the jump's time it stays, then it is there: never halfway.
        assert_eq!(track.position_at(T0 + TICK_US / 2), Some(Vec2::ZERO));
        assert_eq!(track.position_at(T0 + TICK_US), Some(Vec2::new(100.0, 0.0)));
        // An older sample is ignored; one at the same time replaces the newest.
        track.push(T0, Vec2::new(5.0, 5.0));
        assert_eq!(track.position_at(T0 + TICK_US), Some(Vec2::new(100.0, 0.0)));
        track.push(T0 + TICK_US, Vec2::new(101.0, 0.0));
        assert_eq!(track.position_at(T0 + TICK_US), Some(Vec2::new(101.0, 0.0)));
        for i in 2..100 {
            track.push(T0 + i * TICK_US, Vec2::new(100.0 + i as f32 * 0.25, 0.0));
        }
        assert!(track.samples().count() <= MAX_SAMPLES);
        let times: Vec<u64> = track.samples().map(|s| s.0).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        track.forget_before(T0 + 98 * TICK_US + 1);
        assert_eq!(track.samples().count(), 2);
    }

    #[test]
    fn the_clock_follows_the_server_and_ignores_jitter() {
        let mut clock = ServerClock::default();
        assert!(!clock.is_synced());
        assert_eq!(clock.server_time(1000), 1000);
        // Ticks arrive 30 ms after they are stamped, with ±10 ms of jitter.
        let mut local = 5_000_000u64;
        for i in 0..200u64 {
            let server = T0 + i * TICK_US;
            let jitter = [0, 10_000, 5_000, 0, 2_000][(i % 5) as usize];
            clock.observe(server, local + 30_000 + jitter);
            local += TICK_US;
        }
        assert!(clock.is_synced());
        // The estimate settles near the earliest arrivals (delay 30 ms), well within the jitter.
        let now = local + 30_000 - TICK_US;
        let expected = T0 + 199 * TICK_US;
        let estimate = clock.server_time(now);
        assert!(
            estimate.abs_diff(expected) < 10_000,
            "{}",
            estimate as i64 - expected as i64
        );
        assert_eq!(clock.render_time(now), estimate - INTERP_DELAY_US);
        // A big jump resets.
        clock.observe(T0 + 3_600_000_000, now);
        assert_eq!(clock.server_time(now), T0 + 3_600_000_000);
    }
}
