//! The physical connections the pool holds and nobody has checked out
//! (the core's idle ones, until it grants, closes or resets them), by id.
//!
//! Under contention a checkin hands its connection straight to a waiter:
//! the returning connection goes in, the core grants that same
//! connection, and it comes out again, all in one critical section. The
//! last connection to come in is therefore kept beside the map, and a
//! hand-off never touches the map: its insert and removal were about 125
//! instructions of a contended async turn (`benches/instructions.sh`).

use rustc_hash::FxHashMap as HashMap;

use crate::core::ConnId;

/// Connections by id: the last one in beside a map of the rest.
pub(super) struct Parked<C> {
    last: Option<(ConnId, Box<C>)>,
    rest: HashMap<ConnId, Box<C>>,
}

impl<C> Default for Parked<C> {
    fn default() -> Self {
        Parked {
            last: None,
            rest: HashMap::default(),
        }
    }
}

impl<C> Parked<C> {
    /// Keeps `conn` as `id`, which it does not hold already: the core
    /// never has one connection checked in twice.
    pub(super) fn insert(&mut self, id: ConnId, conn: Box<C>) {
        debug_assert!(
            self.last.as_ref().is_none_or(|(last, _)| *last != id) && !self.rest.contains_key(&id),
            "{id} parked twice"
        );
        if let Some((earlier, held)) = self.last.replace((id, conn)) {
            self.rest.insert(earlier, held);
        }
    }

    /// Takes out the connection kept as `id`, if any.
    pub(super) fn remove(&mut self, id: ConnId) -> Option<Box<C>> {
        match &self.last {
            Some((last, _)) if *last == id => self.last.take().map(|(_, conn)| conn),
            _ => self.rest.remove(&id),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the order of ids in and out, each comes out as the
        /// connection it went in with, once, as from a plain map.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((any::<bool>(), 0..6u64), 0..100)) {
            let mut parked = Parked::default();
            let mut map = HashMap::new();
            for (step, (insert, id)) in ops.into_iter().enumerate() {
                let id = ConnId(id);
                if insert && !map.contains_key(&id) {
                    parked.insert(id, Box::new(step));
                    map.insert(id, Box::new(step));
                } else {
                    prop_assert_eq!(parked.remove(id), map.remove(&id));
                }
            }
            for id in 0..6 {
                prop_assert_eq!(parked.remove(ConnId(id)), map.remove(&ConnId(id)));
            }
        }
    }
}
