//! An ordered index whose entries go stale in place rather than leave
//! from the middle: the waiters' sleep order and their deadlines.

use super::ordered::OrderedDeque;

/// Keys in ascending order, some of them stale: an entry that leaves
/// from anywhere but the front stays where it is, and the index's owner,
/// which knows what is live, has [`LazyOrder::tidy`] drop the stale ones
/// at the front after every change. So the first entry is always live,
/// the common case (the first leaving) is a pop, and a leave from the
/// middle costs nothing now and a pop later, where cutting it out shifted
/// every entry behind it. Whenever the stale entries outnumber the live
/// ones they are swept out, which keeps memory O(live) at O(1) amortized
/// time.
#[derive(Clone, Debug)]
pub(super) struct LazyOrder<K> {
    /// Ascending; some stale.
    entries: OrderedDeque<K>,
    /// Entries that are not stale.
    live: usize,
}

impl<K> Default for LazyOrder<K> {
    fn default() -> Self {
        LazyOrder {
            entries: OrderedDeque::default(),
            live: 0,
        }
    }
}

impl<K: Ord + Copy> LazyOrder<K> {
    /// Adds `key`, which is not live (it may be present, stale: it is live
    /// again). Leaves [`Self::tidy`] to the caller.
    pub fn insert(&mut self, key: K) {
        self.entries.insert(key);
        self.live += 1;
    }

    /// Live `key` goes stale: dropped if it is the first, else left in
    /// place. Whether the index needs [tidying](Self::tidy) now (the first
    /// was dropped, or stale entries outnumber the live ones): a stale
    /// entry left in the middle needs none, so the common leave costs no
    /// look at what is live.
    pub fn stale(&mut self, key: K) -> bool {
        self.live -= 1;
        let first = self.entries.first() == Some(key);
        if first {
            self.entries.pop_first();
        }
        first || self.entries.len() > 2 * self.live + 32
    }

    /// Drops the stale entries at the front, and sweeps out all of them
    /// once they outnumber the live ones; `is_live` tells them apart.
    /// Free while none is stale, as is the common case: inline, so that
    /// it costs one comparison then.
    #[inline]
    pub fn tidy(&mut self, is_live: impl Fn(K) -> bool) {
        if self.entries.len() > self.live {
            self.tidy_stale(is_live);
        }
    }

    fn tidy_stale(&mut self, is_live: impl Fn(K) -> bool) {
        while self.entries.len() > self.live
            && self.entries.first().is_some_and(|first| !is_live(first))
        {
            self.entries.pop_first();
        }
        if self.entries.len() > 2 * self.live + 32 {
            self.entries.retain(is_live);
        }
    }

    /// The first live key, once [tidied](Self::tidy).
    pub fn first(&self) -> Option<K> {
        self.entries.first()
    }

    /// How many keys are live.
    pub fn live(&self) -> usize {
        self.live
    }

    /// How many entries are kept, stale ones too.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Stale entries left behind a live first are swept out once they
    /// outnumber the live ones past the slack, whatever the parity of
    /// the counts (a sweep due only at an exact count would be skipped).
    #[test]
    fn stale_entries_behind_a_live_first_are_swept() {
        for total in [100u32, 101] {
            let mut order = LazyOrder::default();
            (0..total).for_each(|key| order.insert(key));
            for key in 1..total {
                if order.stale(key) {
                    order.tidy(|other| other == 0 || other > key);
                }
                assert!(order.kept() <= 2 * order.live() + 32, "{total}: {key}");
            }
            assert_eq!((order.first(), order.live()), (Some(0), 1));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever keys come and go, in whatever order, the first is the
        /// smallest live one, the live ones are counted, and the stale
        /// ones kept stay within the bound.
        #[test]
        fn the_first_is_the_smallest_live_key(ops in prop::collection::vec((any::<bool>(), 0u8..40), 0..300)) {
            let mut order = LazyOrder::default();
            let mut live = BTreeSet::new();
            for (adds, key) in ops {
                if adds && live.insert(key) {
                    order.insert(key);
                } else if !adds && live.remove(&key) && order.stale(key) {
                    order.tidy(|key| live.contains(&key));
                }
                prop_assert_eq!(order.first(), live.first().copied());
                prop_assert_eq!(order.live(), live.len());
                prop_assert!(order.kept() <= 2 * live.len() + 32);
            }
        }
    }
}
