//! Values by connection id: the slot table, and the waiters' queues of
//! each connection.

use super::ConnId;

/// Values in id order in a vector, where a value is looked for at the
/// place its id suggests, then by binary search (see [`ConnTable::at`]).
/// Ids count up, so a new connection's value nearly always goes at the
/// end; only a removal shifts the values after it. A pool has few
/// connections (`max_size`), and the several lookups of each checkout
/// and checkin cost less here than in a tree or a hash map: the slots
/// were a `BTreeMap` (the core's checkout + checkin 787 → 661
/// instructions, its hand-off 1,333 → 1,218, `benches/instructions.sh`),
/// the waiters' queues a hash map (a pinned contended turn 4,520 → 4,401,
/// the core's hand-off 1,159 → 1,088).
#[derive(Clone, Debug)]
pub(super) struct ConnTable<T>(Vec<(ConnId, T)>);

impl<T> Default for ConnTable<T> {
    fn default() -> Self {
        ConnTable(Vec::new())
    }
}

impl<T> ConnTable<T> {
    /// The values, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.0.iter().map(|(id, value)| (*id, value))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `id`'s value is. Ids count up and only removals take one
    /// out, so `id` is usually as far from the first id as its value is
    /// from the first value (not when connections before it have closed):
    /// the value at that place is looked at first, the binary search only
    /// if it is another. Under contention the other threads' inputs keep
    /// changing the table, so each place a binary search looked at was a
    /// cache line to fetch from another core: 87 % of the samples in a
    /// hand-off's `checkin`, when the slots were searched (`perf record`,
    /// the PostgreSQL benchmark's 64-task cell).
    #[inline]
    fn at(&self, id: ConnId) -> Result<usize, usize> {
        let Some(&(first, _)) = self.0.first() else {
            return Err(0);
        };
        // An id below the first wraps to a place past the end; the check
        // of the id found there keeps any guess from being wrong.
        let guess = id.0.wrapping_sub(first.0) as usize;
        match self.0.get(guess) {
            Some((found, _)) if *found == id => Ok(guess),
            _ => self.0.binary_search_by_key(&id, |(id, _)| *id),
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&T> {
        self.at(id).ok().map(|at| &self.0[at].1)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        self.at(id).ok().map(|at| &mut self.0[at].1)
    }

    /// `id`'s value, made by `new` if it has none; whether it was made.
    pub fn get_or_insert_with(&mut self, id: ConnId, new: impl FnOnce() -> T) -> (&mut T, bool) {
        match self.at(id) {
            Ok(at) => (&mut self.0[at].1, false),
            Err(at) => {
                self.0.insert(at, (id, new()));
                (&mut self.0[at].1, true)
            }
        }
    }

    /// Adds `id`'s value, `id` numbered after every id in the table.
    pub fn push(&mut self, id: ConnId, value: T) {
        debug_assert!(self.0.last().is_none_or(|(last, _)| *last < id));
        self.0.push((id, value));
    }

    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        self.at(id).ok().map(|at| self.0.remove(at).1)
    }

    /// Keeps only the values `keep` is true of.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|(_, value)| keep(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value present is found, and no removed or unknown one,
    /// whether ids are still dense (found where the id suggests) or
    /// removals have left gaps before them, after them or at the first
    /// (found by the binary search); one inserted between keeps the order.
    #[test]
    fn lookups_find_exactly_the_values_present_after_removals() {
        let mut table = ConnTable::default();
        for id in 0..9 {
            table.push(ConnId(id), id);
        }
        let mut present: Vec<u64> = (0..9).collect();
        for removing in [0, 4, 5, 8, 1] {
            assert_eq!(table.remove(ConnId(removing)), Some(removing));
            present.retain(|&id| id != removing);
            for probe in 0..12 {
                assert_eq!(
                    table.get(ConnId(probe)).copied(),
                    present.contains(&probe).then_some(probe),
                    "{probe} after removing {removing}"
                );
            }
        }
        assert_eq!(table.get_or_insert_with(ConnId(4), || 40), (&mut 40, true));
        assert_eq!(table.get_or_insert_with(ConnId(4), || 41), (&mut 40, false));
        let ids: Vec<u64> = table.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [2, 3, 4, 6, 7]);
        table.retain(|&value| value > 6);
        assert_eq!(table.values().copied().collect::<Vec<_>>(), [40, 7]);
        assert_eq!(table.get(ConnId(7)), Some(&7), "found by the search");
    }
}
