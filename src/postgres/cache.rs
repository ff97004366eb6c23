//! The statements a session keeps by query (`prepare_cached`), and what
//! makes a manager's sessions forget them together: a schema change can
//! leave a cached statement failing on every later use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::error::SqlState;

/// Whether `error` is PostgreSQL refusing a prepared statement whose
/// result type a schema change altered (`ALTER TABLE`, a `search_path`
/// that now finds another table): SQLSTATE `0A000`, "cached plan must
/// not change result type". A statement kept by `prepare_cached` fails
/// so on every later use, on each connection that cached it, until it
/// is prepared again; forget the session's cached statements
/// ([`BlockingPgClient::forget_cached_statements`](super::BlockingPgClient::forget_cached_statements),
/// [`PgClient::forget_cached_statements`](super::PgClient::forget_cached_statements))
/// and retry, or after a migration have every session of a pool forget
/// them ([`PgManager::forget_cached_statements`](super::PgManager::forget_cached_statements)).
/// Inside a transaction the error has aborted it: retry the transaction.
///
/// Told by the server's routine, not its message, which is translated
/// with the server's `lc_messages`.
///
/// ```no_run
/// use pinpool::postgres::is_stale_statement;
/// # fn run(pool: pinpool::blocking::Pool<pinpool::postgres::PgManager>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = pool.get()?;
/// let query = "SELECT * FROM items";
/// let statement = conn.prepare_cached(query)?;
/// let rows = match conn.query(&statement, &[]) {
///     Err(error) if is_stale_statement(&error) => {
///         conn.forget_cached_statements();
///         let statement = conn.prepare_cached(query)?;
///         conn.query(&statement, &[])?
///     }
///     rows => rows?,
/// };
/// # Ok(()) }
/// ```
pub fn is_stale_statement(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::FEATURE_NOT_SUPPORTED
            && db.routine() == Some("RevalidateCachedQuery")
    })
}

/// How many statements a session keeps by query unless the manager's
/// `statement_cache_capacity` says otherwise: sqlx's default. Past it,
/// the one used longest ago is closed to make room, so that a query
/// text built at run time cannot grow a session's statements (and the
/// server's memory for them) without bound.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 100;

/// What a manager gives each session it opens for its statement cache:
/// the capacity, and the forgets it shares with its clones.
#[derive(Clone, Debug)]
pub(super) struct CacheSettings {
    pub(super) capacity: usize,
    pub(super) forgets: Forgets,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
            forgets: Forgets::default(),
        }
    }
}

impl CacheSettings {
    /// An empty cache for a new session.
    pub(super) fn cache<S: Clone>(&self) -> StatementCache<S> {
        StatementCache {
            statements: HashMap::new(),
            capacity: self.capacity,
            uses: 0,
            seen: self.forgets.count(),
            forgets: self.forgets.clone(),
        }
    }
}

/// How many times a manager (and its clones) has asked its sessions to
/// forget their cached statements: each session compares it with the
/// count it last saw, so asking costs one atomic add, and each session
/// finds out at its next `prepare_cached`.
#[derive(Clone, Debug, Default)]
pub(super) struct Forgets(Arc<AtomicU64>);

impl Forgets {
    /// Every session with statements cached before this forgets them.
    pub(super) fn all(&self) {
        // Relaxed: no data travels with the count; whatever ordered the
        // caller before a later `prepare_cached` orders this add too.
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A session's statements (`S`: a `Statement`; a number in the unit
/// tests) by query, at most `capacity` of them, the one used longest
/// ago leaving first.
#[derive(Debug)]
pub(super) struct StatementCache<S> {
    /// Each statement with the use it was last looked up at.
    statements: HashMap<String, (S, u64)>,
    capacity: usize,
    /// Lookups so far: the clock by which the least recently used leaves.
    uses: u64,
    forgets: Forgets,
    /// The manager's forgets these statements come after: the count when
    /// the cache was last looked in. A statement kept after a miss counts
    /// as looked up then, so one whose prepare was under way when the
    /// manager asked to forget (it may have been parsed against the
    /// schema before the change) goes at the next look.
    seen: u64,
}

impl<S: Clone> StatementCache<S> {
    /// The statement kept for `query`, unless the manager has asked its
    /// sessions to forget since it was looked up.
    pub(super) fn get(&mut self, query: &str) -> Option<S> {
        let forgets = self.forgets.count();
        if forgets != self.seen {
            self.statements.clear();
            self.seen = forgets;
        }
        self.uses += 1;
        let (statement, used) = self.statements.get_mut(query)?;
        *used = self.uses;
        Some(statement.clone())
    }

    /// Keeps `statement` for `query`, prepared after [`get`](Self::get)
    /// missed it, closing the least recently used statement if the cache
    /// is full (a search of them all, made only by a miss at capacity).
    /// With a capacity of 0 nothing is kept.
    pub(super) fn keep(&mut self, query: &str, statement: &S) {
        if self.statements.len() >= self.capacity {
            let oldest = self.statements.iter().min_by_key(|(_, (_, used))| *used);
            let Some(oldest) = oldest.map(|(query, _)| query.clone()) else {
                return; // a capacity of 0
            };
            self.statements.remove(&oldest);
        }
        self.statements
            .insert(query.to_owned(), (statement.clone(), self.uses));
    }

    /// Forgets every statement (dropping one closes it on the server).
    pub(super) fn clear(&mut self) {
        self.statements.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.statements.len()
    }
}

#[cfg(test)]
mod tests {
    use super::CacheSettings;

    fn settings(capacity: usize) -> CacheSettings {
        CacheSettings {
            capacity,
            ..CacheSettings::default()
        }
    }

    /// At capacity, a miss makes room by dropping the statement looked
    /// up longest ago, not the one kept first.
    #[test]
    fn the_least_recently_used_statement_leaves_first() {
        let mut cache = settings(2).cache::<u32>();
        for (query, statement) in [("a", 1), ("b", 2)] {
            assert_eq!(cache.get(query), None);
            cache.keep(query, &statement);
        }
        assert_eq!(cache.get("a"), Some(1), "a used after b");
        assert_eq!(cache.get("c"), None);
        cache.keep("c", &3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), None, "b left");
        assert_eq!((cache.get("a"), cache.get("c")), (Some(1), Some(3)));
    }

    /// A capacity of 0 keeps nothing; the session prepares every time.
    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let mut cache = settings(0).cache::<u32>();
        cache.keep("a", &1);
        assert_eq!((cache.get("a"), cache.len()), (None, 0));
    }

    /// A forget reaches every cache of the settings' clones, at its next
    /// lookup, and not caches made after it.
    #[test]
    fn a_forget_empties_every_cache_at_its_next_lookup() {
        let settings = settings(2);
        let (mut one, mut other) = (settings.cache::<u32>(), settings.clone().cache::<u32>());
        one.keep("a", &1);
        other.keep("a", &2);
        settings.forgets.all();
        let mut later = settings.cache::<u32>();
        later.keep("a", &3);
        assert_eq!(one.len(), 1, "not until its next lookup");
        assert_eq!(
            (one.get("a"), other.get("a"), later.get("a")),
            (None, None, Some(3))
        );
    }
}
