//! The statements a session keeps by query (`prepare_cached`), and what
//! makes a manager's sessions forget them together: a schema change can
//! leave a cached statement failing on every later use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::Statement;
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

/// A session's statements by query.
#[derive(Debug)]
pub(super) struct StatementCache {
    statements: HashMap<String, Statement>,
    forgets: Forgets,
    /// The manager's forgets these statements come after: the count when
    /// the cache was last looked in. A statement kept after a miss counts
    /// as looked up then, so one whose prepare was under way when the
    /// manager asked to forget (it may have been parsed against the
    /// schema before the change) goes at the next look.
    seen: u64,
}

impl StatementCache {
    pub(super) fn new(forgets: Forgets) -> Self {
        StatementCache {
            statements: HashMap::new(),
            seen: forgets.count(),
            forgets,
        }
    }

    /// The statement kept for `query`, unless the manager has asked its
    /// sessions to forget since it was looked up.
    pub(super) fn get(&mut self, query: &str) -> Option<Statement> {
        let forgets = self.forgets.count();
        if forgets != self.seen {
            self.statements.clear();
            self.seen = forgets;
        }
        self.statements.get(query).cloned()
    }

    /// Keeps `statement` for `query`, prepared after [`get`](Self::get)
    /// missed it.
    pub(super) fn keep(&mut self, query: &str, statement: &Statement) {
        self.statements.insert(query.to_owned(), statement.clone());
    }

    /// Forgets every statement (dropping one closes it on the server).
    pub(super) fn clear(&mut self) {
        self.statements.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.statements.len()
    }
}
