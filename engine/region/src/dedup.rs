//! Exactly-once application of messages delivered at least once.
//!
//! Between regions, messages (a player handed over, a cross-region reducer call) go through a transport that
//! delivers each at least once: after a crash of either side, or a lost acknowledgement, a message comes again,
//! and not necessarily in order. Each sender numbers its messages 1, 2, 3, … in the order it commits them. The
//! receiver applies a message and records its number in the same transaction (so a crash loses both or neither),
//! and drops any number it recorded before. [`Applied`] is that record for one sender.
//!
//! Invariants of an [`Applied`]:
//!
//! 1. It holds the set `{1, …, through} ∪ above`, with every number of `above` greater than `through + 1`: the
//!    contiguous run from 1 is kept as one number, so the record stays small however many messages were applied,
//!    holding only the numbers that arrived ahead of a gap.
//! 2. [`Applied::insert`] returns `true` exactly once per number (never for 0, which no message has).

use std::collections::BTreeSet;

/// The message numbers of one sender that were applied: see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    through: u64,
    above: BTreeSet<u64>,
}

impl Applied {
    /// Nothing applied yet.
    #[must_use]
    pub fn new() -> Applied {
        Applied::default()
    }

    /// A record from its parts (as stored): every number up to `through`, and `above`.
    #[must_use]
    pub fn from_parts(through: u64, above: impl IntoIterator<Item = u64>) -> Applied {
        let mut applied = Applied {
            through,
            above: BTreeSet::new(),
        };
        for n in above {
            applied.insert(n);
        }
        applied
    }

    /// Every number up to this one was applied.
    #[must_use]
    pub fn through(&self) -> u64 {
        self.through
    }

    /// The numbers applied beyond [`through`](Self::through) (each past a gap), in order.
    pub fn above(&self) -> impl Iterator<Item = u64> + '_ {
        self.above.iter().copied()
    }

    /// Whether message `n` was applied.
    #[must_use]
    pub fn contains(&self, n: u64) -> bool {
        n == 0 || n <= self.through || self.above.contains(&n)
    }

    /// Record message `n` as applied: `true` if it was not yet (apply it), `false` for a duplicate (drop it).
    pub fn insert(&mut self, n: u64) -> bool {
        if self.contains(n) {
            return false;
        }
        self.above.insert(n);
        while self.above.first() == Some(&(self.through + 1)) {
            self.above.pop_first();
            self.through += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn duplicates_and_zero_are_dropped_and_runs_collapse() {
        let mut a = Applied::new();
        assert!(!a.insert(0));
        assert!(a.insert(2));
        assert!(!a.insert(2));
        assert_eq!((a.through(), a.above().collect::<Vec<_>>()), (0, vec![2]));
        assert!(a.insert(1));
        assert_eq!((a.through(), a.above().count()), (2, 0));
        assert!(!a.insert(1));
        assert_eq!(Applied::from_parts(2, [5, 4]), {
            let mut b = a.clone();
            b.insert(5);
            b.insert(4);
            b
        });
    }

    proptest! {
        /// Against a set: any deliveries, duplicated and out of order, apply each number exactly once, and the
        /// record is always the compact form of the set of numbers applied.
        #[test]
        fn each_number_is_applied_exactly_once(deliveries in proptest::collection::vec(0u64..40, 0..200)) {
            let mut a = Applied::new();
            let mut model = HashSet::new();
            for n in deliveries {
                let fresh = n != 0 && model.insert(n);
                prop_assert_eq!(a.insert(n), fresh, "{}", n);
                let through = (1..).take_while(|k| model.contains(k)).last().unwrap_or(0);
                prop_assert_eq!(a.through(), through);
                let mut above: Vec<u64> = model.iter().copied().filter(|&k| k > through).collect();
                above.sort_unstable();
                prop_assert_eq!(a.above().collect::<Vec<_>>(), above);
                prop_assert_eq!(Applied::from_parts(a.through(), a.above()), a.clone(), "it stores and restores");
            }
        }
    }
}
