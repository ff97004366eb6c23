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
/// the capacity, and the forgets it shares with its clones; and whether
/// the cache outlives the reset between owners.
#[derive(Clone, Debug)]
pub(super) struct CacheSettings {
    pub(super) capacity: usize,
    pub(super) forgets: Forgets,
    /// Set when the manager's reset leaves prepared statements in place.
    pub(super) kept_on_reset: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
            forgets: Forgets::default(),
            kept_on_reset: false,
        }
    }
}

impl CacheSettings {
    /// What a reset between owners does to `cache`, before its
    /// statements run: empties it (a statement dropped sends its `Close`
    /// ahead of them; after a `DISCARD ALL` it would close nothing),
    /// unless the manager was told its reset keeps prepared statements.
    pub(super) fn before_reset<S: Clone, T: Clone + PartialEq>(
        &self,
        cache: &mut StatementCache<S, T>,
    ) {
        if !self.kept_on_reset {
            cache.clear();
        }
    }

    /// An empty cache for a new session.
    pub(super) fn cache<S, T>(&self) -> StatementCache<S, T> {
        StatementCache {
            statements: HashMap::new(),
            len: 0,
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
/// tests) by query and parameter types (`T`: a `Type`), at most
/// `capacity` of them, the one used longest ago leaving first.
#[derive(Debug)]
pub(super) struct StatementCache<S, T> {
    /// By query: each statement prepared for it, by its parameter types
    /// (nearly always one, prepared without types).
    statements: HashMap<String, Vec<Cached<S, T>>>,
    /// How many statements `statements` holds.
    len: usize,
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

/// A statement with the parameter types it was prepared for and the use
/// it was last looked up at.
#[derive(Debug)]
struct Cached<S, T> {
    types: Vec<T>,
    statement: S,
    used: u64,
}

impl<S: Clone, T: Clone + PartialEq> StatementCache<S, T> {
    /// The statement kept for `query` with parameter `types`, unless the
    /// manager has asked its sessions to forget since it was looked up.
    pub(super) fn get(&mut self, query: &str, types: &[T]) -> Option<S> {
        let forgets = self.forgets.count();
        if forgets != self.seen {
            self.clear();
            self.seen = forgets;
        }
        self.uses += 1;
        let cached = self.statements.get_mut(query)?;
        let cached = cached.iter_mut().find(|cached| cached.types == types)?;
        cached.used = self.uses;
        Some(cached.statement.clone())
    }

    /// Keeps `statement` for `query` and `types`, prepared after
    /// [`get`](Self::get) missed it, closing the least recently used
    /// statement if the cache is full (a search of them all, made only by
    /// a miss at capacity). With a capacity of 0 nothing is kept.
    pub(super) fn keep(&mut self, query: &str, types: &[T], statement: &S) {
        if self.len >= self.capacity && !self.close_least_recently_used() {
            return; // a capacity of 0
        }
        let cached = Cached {
            types: types.to_vec(),
            statement: statement.clone(),
            used: self.uses,
        };
        self.statements
            .entry(query.to_owned())
            .or_default()
            .push(cached);
        self.len += 1;
    }

    /// Drops the statement looked up longest ago; `false` if there is
    /// none.
    fn close_least_recently_used(&mut self) -> bool {
        let oldest = (self.statements.iter())
            .flat_map(|(query, cached)| {
                cached
                    .iter()
                    .enumerate()
                    .map(move |(at, c)| (c.used, query, at))
            })
            .min_by_key(|(used, ..)| *used);
        let Some((_, query, at)) = oldest else {
            return false;
        };
        let query = query.clone();
        if let Some(cached) = self.statements.get_mut(&query) {
            cached.swap_remove(at);
            if cached.is_empty() {
                self.statements.remove(&query);
            }
            self.len -= 1;
        }
        true
    }

    /// Forgets every statement (dropping one closes it on the server).
    pub(super) fn clear(&mut self) {
        self.statements.clear();
        self.len = 0;
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::{CacheSettings, StatementCache};

    /// Statements are numbers here, parameter types bytes.
    fn cache(settings: &CacheSettings) -> StatementCache<u32, u8> {
        settings.cache()
    }

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
        let mut cache = cache(&settings(2));
        for (query, statement) in [("a", 1), ("b", 2)] {
            assert_eq!(cache.get(query, &[]), None);
            cache.keep(query, &[], &statement);
        }
        assert_eq!(cache.get("a", &[]), Some(1), "a used after b");
        assert_eq!(cache.get("c", &[]), None);
        cache.keep("c", &[], &3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b", &[]), None, "b left");
        assert_eq!(
            (cache.get("a", &[]), cache.get("c", &[])),
            (Some(1), Some(3))
        );
    }

    /// A query prepared for other parameter types is another statement,
    /// counted and leaving on its own.
    #[test]
    fn statements_are_kept_by_query_and_types() {
        let mut cache = cache(&settings(2));
        cache.keep("a", &[], &1);
        assert_eq!(cache.get("a", &[7]), None, "typed: not the untyped one");
        cache.keep("a", &[7], &2);
        assert_eq!(
            (cache.get("a", &[]), cache.get("a", &[7])),
            (Some(1), Some(2))
        );
        assert_eq!(cache.len(), 2);
        cache.keep("b", &[], &3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a", &[]), None, "the least recently used left");
        assert_eq!(cache.get("a", &[7]), Some(2), "its typed twin stayed");
    }

    /// A capacity of 0 keeps nothing; the session prepares every time.
    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let mut cache = cache(&settings(0));
        cache.keep("a", &[], &1);
        assert_eq!((cache.get("a", &[]), cache.len()), (None, 0));
    }

    /// A forget reaches every cache of the settings' clones, at its next
    /// lookup, and not caches made after it.
    #[test]
    fn a_forget_empties_every_cache_at_its_next_lookup() {
        let settings = settings(2);
        let (mut one, mut other) = (cache(&settings), cache(&settings.clone()));
        one.keep("a", &[], &1);
        other.keep("a", &[], &2);
        settings.forgets.all();
        let mut later = cache(&settings);
        later.keep("a", &[], &3);
        assert_eq!(one.len(), 1, "not until its next lookup");
        let found = [&mut one, &mut other, &mut later].map(|cache| cache.get("a", &[]));
        assert_eq!(found, [None, None, Some(3)]);
        assert_eq!(one.len(), 0);
    }
}
