//! Latency histograms: a fixed set of log-linear buckets over microseconds, recorded lock-free from many tasks and
//! read as snapshots whose differences give the distribution of any interval.
//!
//! Values below [`EXACT`] µs get a bucket each; above, every power of two is split into [`SUB_BUCKETS`] buckets,
//! so a reported percentile is within 1/[`SUB_BUCKETS`] (1.6 %) of the true value. Values are capped at 2⁴⁰ µs
//! (12 days).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Values below this get one bucket each.
const EXACT: u64 = 128;
/// Buckets per power of two above [`EXACT`].
const SUB_BUCKETS: u64 = 64;
/// log2 of [`EXACT`].
const EXACT_BITS: u32 = 7;
/// The largest recorded exponent (values are capped below 2^MAX_BITS).
const MAX_BITS: u32 = 40;
/// Number of buckets.
const BUCKETS: usize = (EXACT + (MAX_BITS - EXACT_BITS) as u64 * SUB_BUCKETS) as usize;

/// The bucket of `v` µs.
fn bucket_of(v: u64) -> usize {
    let v = v.min((1 << MAX_BITS) - 1);
    if v < EXACT {
        return v as usize;
    }
    let bits = 63 - v.leading_zeros(); // >= EXACT_BITS
    let shift = bits - 6; // keep the leading bit and 6 more: 64 sub-buckets
    let sub = (v >> shift) - SUB_BUCKETS;
    (EXACT + u64::from(bits - EXACT_BITS) * SUB_BUCKETS + sub) as usize
}

/// The smallest value of bucket `b` (what a percentile in it reports).
fn bucket_low(b: usize) -> u64 {
    let b = b as u64;
    if b < EXACT {
        return b;
    }
    let bits = (b - EXACT) / SUB_BUCKETS + u64::from(EXACT_BITS);
    let sub = (b - EXACT) % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << (bits - 6)
}

/// A histogram that many threads record into at once.
#[derive(Debug)]
pub(crate) struct Recorder {
    buckets: Box<[AtomicU64]>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Recorder {
    /// Record `micros`.
    pub(crate) fn record_micros(&self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Record `micros` as `n` samples (`n` events that waited as long) in one step; `n = 0` records nothing.
    pub(crate) fn record_n(&self, micros: u64, n: u64) {
        if n > 0 {
            self.buckets[bucket_of(micros)].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Record a duration.
    pub(crate) fn record(&self, d: Duration) {
        self.record_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> Histogram {
        Histogram {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Bucket counts at one moment (or, as a difference, of one interval).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

/// Percentiles of a histogram, in milliseconds (what the report shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Samples.
    pub(crate) count: u64,
    /// Median, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile, ms.
    pub(crate) p99_ms: f64,
    /// Largest (bucket's lower bound), ms.
    pub(crate) max_ms: f64,
}

impl Histogram {
    /// A histogram of the given values (for tests and small sets).
    #[cfg(test)]
    pub(crate) fn of(values: &[u64]) -> Histogram {
        let r = Recorder::default();
        for &v in values {
            r.record_micros(v);
        }
        r.snapshot()
    }

    /// What was recorded after `earlier` (a snapshot of the same recorder).
    pub(crate) fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// Samples.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `p` quantile (0..=1) in µs: the lower bound of the bucket holding the sample of rank
    /// `round((count − 1) · p)`; `None` when empty.
    pub(crate) fn quantile_micros(&self, p: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n - 1) as f64 * p.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(bucket_low(b));
            }
        }
        None
    }

    /// p50, p99 and max in ms.
    pub(crate) fn summary(&self) -> Summary {
        let ms = |p: f64| self.quantile_micros(p).map_or(0.0, |us| us as f64 / 1e3);
        Summary {
            count: self.count(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(7) {
            let b = bucket_of(v);
            assert!(b >= last, "bucket order at {v}");
            last = b;
            let low = bucket_low(b);
            assert!(low <= v, "{v}: low {low}");
            // Within 1/64 of the value.
            assert!(v - low <= v / 64 + 1, "{v}: low {low}");
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_match_a_sorted_list() {
        let values: Vec<u64> = (1..=1000).map(|i| i * 100).collect();
        let h = Histogram::of(&values);
        let p50 = h.quantile_micros(0.5).unwrap();
        let p99 = h.quantile_micros(0.99).unwrap();
        // exact rank values: 50_100 and 99_000 (rank round(999·p))
        assert!((49_300..=50_100).contains(&p50), "{p50}");
        assert!((97_500..=99_000).contains(&p99), "{p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(Histogram::default().quantile_micros(0.5), None);
        assert_eq!(Histogram::of(&[42]).summary().p99_ms, 0.042);
    }

    #[test]
    fn differences_give_the_interval() {
        let r = Recorder::default();
        for _ in 0..100 {
            r.record_micros(1_000);
        }
        let before = r.snapshot();
        for _ in 0..10 {
            r.record_micros(200_000);
        }
        let interval = r.snapshot().since(&before);
        assert_eq!(interval.count(), 10);
        let p50 = interval.quantile_micros(0.5).unwrap();
        assert!((196_000..=200_000).contains(&p50), "{p50}");
    }

    #[test]
    fn a_weighted_sample_counts_as_n_equal_ones() {
        let weighted = Recorder::default();
        weighted.record_n(1_000, 3);
        weighted.record_n(200_000, 0);
        weighted.record_n(200_000, 1);
        assert_eq!(
            weighted.snapshot(),
            Histogram::of(&[1_000, 1_000, 1_000, 200_000])
        );
        let s = weighted.snapshot().summary();
        assert_eq!((s.count, s.p50_ms), (4, 1.0));
    }
}
