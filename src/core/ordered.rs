//! A sorted set for keys that mostly arrive in order and mostly leave
//! from an end: the waiters' queues, and the idle and pending connections.
//!
//! Tickets are issued counting up, and a queue is served oldest first,
//! so nearly every insert is at the back and nearly every removal at the
//! front. Connections go idle in order and the newest idle is taken
//! first (a removal at the back); pending slots are numbered in order
//! and started oldest first. A ring buffer does both in O(1), and once warm
//! allocates nothing; a `BTreeSet` (what the queues were) pays O(log n)
//! per operation, allocates nodes as a queue fills and empties, and
//! rebalances them. Under contention that was a fifth of a waited turn's
//! instructions (`benches/instructions.sh`, the `contended` scenarios).
//!
//! The rarer cases stay correct at a linear cost: a key inserted out of
//! order (a waiter moving queue when its connection is bound or closed)
//! or removed from the middle (a waiter timing out or cancelled, or
//! granted ahead of older ones) is found by a short walk from the front,
//! where such keys nearly always are, else by binary search, and the
//! shorter side of the buffer shifts by one.

use std::collections::VecDeque;

/// How many keys from the front [`OrderedDeque::remove`] walks before it
/// searches.
const NEAR_FRONT: usize = 4;

/// Keys in ascending order, each at most once.
#[derive(Clone, Debug)]
pub(super) struct OrderedDeque<K>(VecDeque<K>);

impl<K> Default for OrderedDeque<K> {
    fn default() -> Self {
        OrderedDeque(VecDeque::new())
    }
}

impl<K: Ord + Copy> OrderedDeque<K> {
    /// Adds `key`; whether it was absent. The common case, a key after
    /// every other, inline, and the common removal too (below): a
    /// contended turn makes two of each, and their calls cost it 35
    /// instructions (3,762 → 3,727 unpinned, 4,113 → 4,078 pinned; the
    /// core's checkout + checkin 674 → 637, `benches/instructions.sh`).
    #[inline]
    pub fn insert(&mut self, key: K) -> bool {
        if self.0.back().is_none_or(|&last| last < key) {
            self.0.push_back(key);
            return true;
        }
        self.insert_before_last(key)
    }

    fn insert_before_last(&mut self, key: K) -> bool {
        match self.0.binary_search(&key) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, key);
                true
            }
        }
    }

    /// Removes `key`; whether it was present. The common case, the first
    /// key, inline (as [`Self::insert`]'s).
    #[inline]
    pub fn remove(&mut self, key: K) -> bool {
        if self.0.front() == Some(&key) {
            self.0.pop_front();
            return true;
        }
        self.remove_after_first(key)
    }

    fn remove_after_first(&mut self, key: K) -> bool {
        if self.0.back() == Some(&key) {
            self.0.pop_back();
            return true;
        }
        // A key leaving from the middle is nearly always among the oldest
        // (a `Strict` waiter granted from its connection's queue leaves
        // the deadlines' index a few places from the front): a short walk
        // from there finds it in fewer comparisons than a search.
        for (at, &present) in self.0.iter().enumerate().take(NEAR_FRONT) {
            if present >= key {
                if present > key {
                    return false;
                }
                self.0.remove(at);
                return true;
            }
        }
        match self.0.binary_search(&key) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes and returns the smallest key.
    pub fn pop_first(&mut self) -> Option<K> {
        self.0.pop_front()
    }

    /// The smallest key.
    pub fn first(&self) -> Option<K> {
        self.0.front().copied()
    }

    /// The largest key.
    pub fn last(&self) -> Option<K> {
        self.0.back().copied()
    }

    /// Every key, ascending (`rev()` for descending).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = K> + '_ {
        self.0.iter().copied()
    }

    /// The keys smaller than `bound`, ascending.
    pub fn below(&self, bound: K) -> impl Iterator<Item = K> + '_ {
        let end = self.0.partition_point(|&key| key < bound);
        self.0.range(..end).copied()
    }

    /// Keeps only the keys `keep` is true of.
    pub fn retain(&mut self, keep: impl Fn(K) -> bool) {
        self.0.retain(|&key| keep(key));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8),
        Remove(u8),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u8>().prop_map(Op::Insert),
            any::<u8>().prop_map(Op::Remove),
            Just(Op::PopFirst),
        ]
    }

    proptest! {
        // No regression files: a mutant's failures (tests/mutants.sh)
        // must not be saved for the real code to replay.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the order of inserts, removes and pops, it answers as
        /// the `BTreeSet` it replaced.
        #[test]
        fn behaves_as_a_btree_set(ops in proptest::collection::vec(op(), 0..200), bound: u8) {
            let mut ordered = OrderedDeque::default();
            let mut set = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(key) => prop_assert_eq!(ordered.insert(key), set.insert(key)),
                    Op::Remove(key) => prop_assert_eq!(ordered.remove(key), set.remove(&key)),
                    Op::PopFirst => prop_assert_eq!(ordered.pop_first(), set.pop_first()),
                }
                prop_assert_eq!(ordered.first(), set.first().copied());
                prop_assert_eq!(ordered.last(), set.last().copied());
                prop_assert_eq!(ordered.len(), set.len());
                prop_assert_eq!(ordered.is_empty(), set.is_empty());
            }
            prop_assert!(ordered.iter().eq(set.iter().copied()));
            prop_assert!(ordered.iter().rev().eq(set.iter().rev().copied()));
            prop_assert!(ordered.below(bound).eq(set.range(..bound).copied()));
        }
    }

    #[test]
    fn keys_in_order_stay_at_the_ends() {
        let mut ordered = OrderedDeque::default();
        for key in 0..4 {
            assert!(ordered.insert(key));
        }
        assert!(!ordered.insert(2), "present already");
        assert!(ordered.remove(0));
        assert!(ordered.remove(2), "from the middle");
        assert!(!ordered.remove(2), "gone already");
        assert!(ordered.remove(3), "from the back");
        assert!(ordered.iter().eq([1]));
    }
}
