//! A MongoDB adapter (feature `mongodb`): a [`MongoManager`] whose
//! connection is one MongoDB wire-protocol socket, for both pools.
//!
//! Each connection is a TCP socket that has completed the `hello`
//! handshake (the server's wire versions checked, its connection id and
//! limits recorded) and then speaks `OP_MSG`, with documents from the
//! `bson` crate (the one the official driver re-exports as
//! `mongodb::bson`). Commands may be acknowledged ([`MongoConnection::command`])
//! or not ([`MongoConnection::send_unacknowledged`]: `moreToCome`, for
//! `w: 0` writes). Connects and round trips are bounded by timeouts. Any
//! I/O or protocol error — a malformed or truncated reply included, which
//! is a typed error, never a panic — marks the connection broken, so the
//! pool closes it at checkin and moves its pins to a replacement;
//! validation is a `ping`.
//!
//! Pinning is what makes `w: 0` writes safe to read back: a server runs
//! one connection's operations in order, so a thread that writes and then
//! reads on its pinned socket sees its write (`tests/mongodb.rs` measures
//! both ways).
//!
//! ```no_run
//! use bson::doc;
//! use pinpool::blocking::Pool;
//! use pinpool::mongodb::MongoManager;
//!
//! let manager = MongoManager::new("mongodb://127.0.0.1:27017")?.app_name("inventory");
//! let pool = Pool::builder().max_size(8).build(manager)?;
//! let mut conn = pool.get()?;
//! conn.send_unacknowledged("shop", doc! { "insert": "items", "documents": [{ "sku": 1 }] })?;
//! let reply = conn.command("shop", doc! { "count": "items", "query": { "sku": 1 } })?;
//! assert_eq!(reply.get_i32("n").ok(), Some(1)); // the same socket: our write is there
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! One server address per manager (no replica-set discovery: that is a
//! driver's job, above the pool); no TLS, authentication or compression.
//! A driver that follows CMAP's ordered WaitQueue to the letter builds its
//! pool with `.wake(WakePolicy::Handoff)` (no barging at all).

mod blocking;
#[cfg(feature = "tokio")]
mod tokio;
mod wire;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use wire::fuzz_reply;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bson::{Document, doc};
use thiserror::Error;

/// One MongoDB wire-protocol socket for the blocking pool.
pub type MongoConnection = Connection<std::net::TcpStream>;
/// One MongoDB wire-protocol socket for the async pool.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub type AsyncMongoConnection = Connection<::tokio::net::TcpStream>;

/// One MongoDB wire-protocol socket `S`, handshake done: a
/// [`MongoConnection`] (blocking) or an `AsyncMongoConnection` (async),
/// each with `command` and `send_unacknowledged`.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    session: Session,
    io_timeout: Duration,
}

impl<S> Connection<S> {
    fn new(stream: S, io_timeout: Duration) -> Self {
        Connection {
            stream,
            session: Session::new(),
            io_timeout,
        }
    }

    /// What the server said in the handshake.
    pub fn server(&self) -> &ServerInfo {
        self.session
            .server
            .as_ref()
            .expect("a connection is handed out only after its handshake")
    }

    /// Whether an I/O or protocol error (or, for an async connection, a
    /// command future dropped midway) has broken this connection.
    pub fn is_broken(&self) -> bool {
        self.session.is_broken()
    }
}

/// The oldest wire version that speaks `OP_MSG` (MongoDB 3.6).
pub const MIN_WIRE_VERSION: i32 = 6;

/// What went wrong talking to the server.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MongoError {
    /// The address could not be parsed or resolved.
    #[error("invalid server address {0:?}")]
    InvalidAddress(String),
    /// Reading from or writing to the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connect or a round trip took longer than its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server sent something that is not a valid reply.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A command could not be encoded.
    #[error("BSON error: {0}")]
    Bson(String),
    /// The server answered `ok: 0`.
    #[error("server error {code} ({code_name}): {message}")]
    Server {
        /// The server's error code.
        code: i32,
        /// Its name, e.g. `HostUnreachable`.
        code_name: String,
        /// The server's message.
        message: String,
    },
    /// The server's wire versions do not include `OP_MSG`.
    #[error("server wire versions end at {max_wire_version}, below {MIN_WIRE_VERSION}")]
    Incompatible {
        /// The server's `maxWireVersion`.
        max_wire_version: i32,
    },
    /// An earlier I/O or protocol error broke this connection.
    #[error("the connection is broken by an earlier error")]
    Broken,
}

impl MongoError {
    /// Whether the error leaves the connection unusable (I/O, timeout,
    /// protocol): the pool must close it.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            MongoError::Io(_)
                | MongoError::Timeout(_)
                | MongoError::Protocol(_)
                | MongoError::Broken
        )
    }
}

/// What the server said about itself in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's id for this connection (`connectionId`), if it sent one.
    pub connection_id: Option<i64>,
    /// The oldest wire version it speaks.
    pub min_wire_version: i32,
    /// The newest wire version it speaks.
    pub max_wire_version: i32,
    /// The largest document it accepts.
    pub max_bson_object_size: usize,
    /// The largest message it accepts or sends.
    pub max_message_size_bytes: usize,
    /// The most writes in one batch.
    pub max_write_batch_size: usize,
}

impl ServerInfo {
    /// Reads a `hello` reply, refusing a server without `OP_MSG`.
    fn from_hello(reply: &Document) -> Result<Self, MongoError> {
        let int = |key: &str| match reply.get(key) {
            Some(bson::Bson::Int32(n)) => Some(i64::from(*n)),
            Some(bson::Bson::Int64(n)) => Some(*n),
            Some(bson::Bson::Double(n)) => Some(*n as i64),
            _ => None,
        };
        let size = |key: &str, default: usize| {
            int(key)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default)
        };
        let max_wire_version = int("maxWireVersion").unwrap_or(0) as i32;
        if max_wire_version < MIN_WIRE_VERSION {
            return Err(MongoError::Incompatible { max_wire_version });
        }
        Ok(ServerInfo {
            connection_id: int("connectionId"),
            min_wire_version: int("minWireVersion").unwrap_or(0) as i32,
            max_wire_version,
            max_bson_object_size: size("maxBsonObjectSize", 16 * 1024 * 1024),
            max_message_size_bytes: size("maxMessageSizeBytes", wire::DEFAULT_MAX_MESSAGE),
            max_write_batch_size: size("maxWriteBatchSize", 100_000),
        })
    }
}

/// Opens [`MongoConnection`]s (blocking pool) or [`AsyncMongoConnection`]s
/// (async pool) to one server.
///
/// ```
/// use std::time::Duration;
/// use pinpool::mongodb::MongoManager;
///
/// let manager = MongoManager::new("mongodb://127.0.0.1:27017/?appName=ignored")?
///     .app_name("reports")
///     .connect_timeout(Duration::from_secs(2))
///     .io_timeout(Duration::from_secs(5));
/// assert!(MongoManager::new("mongodb://").is_err());
/// # Ok::<(), pinpool::mongodb::MongoError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MongoManager {
    host: String,
    port: u16,
    app_name: Option<String>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl MongoManager {
    /// A manager for the server at `address`: `mongodb://host[:port]/…`
    /// (only the first host is used; options are ignored) or `host[:port]`.
    /// The port defaults to 27017; timeouts to 10 s (connect) and 30 s
    /// (each round trip).
    pub fn new(address: &str) -> Result<Self, MongoError> {
        let invalid = || MongoError::InvalidAddress(address.to_owned());
        let rest = address.strip_prefix("mongodb://").unwrap_or(address);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let first = authority.split(',').next().unwrap_or_default();
        let host_port = first.rsplit('@').next().unwrap_or_default();
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| invalid())?),
            None => (host_port, 27017),
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(MongoManager {
            host: host.to_owned(),
            port,
            app_name: None,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
        })
    }

    /// `host:port`: the default name of a pool over this manager.
    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The application name sent in the handshake (what the server logs,
    /// and what fail points match).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = Some(name.into());
        self
    }

    /// How long a TCP connect plus handshake may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command's round trip may take.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    fn addresses(&self) -> Result<Vec<SocketAddr>, MongoError> {
        let invalid = |_| MongoError::InvalidAddress(format!("{}:{}", self.host, self.port));
        Ok((self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(invalid)?
            .collect())
    }

    /// The `hello` command that opens every connection.
    fn hello(&self) -> Document {
        let mut client = doc! {
            "driver": { "name": "pinpool", "version": env!("CARGO_PKG_VERSION") },
            "os": { "type": std::env::consts::OS },
        };
        if let Some(name) = &self.app_name {
            client.insert("application", doc! { "name": name });
        }
        doc! { "hello": 1, "client": client }
    }
}

/// What both connection types keep besides their socket.
#[derive(Debug)]
struct Session {
    server: Option<ServerInfo>,
    next_request: i32,
    broken: bool,
    /// A command is under way: if its future is dropped midway, the
    /// stream is out of step and the connection must not be reused.
    in_flight: bool,
}

impl Session {
    fn new() -> Self {
        Session {
            server: None,
            next_request: 0,
            broken: false,
            in_flight: false,
        }
    }

    fn is_broken(&self) -> bool {
        self.broken || self.in_flight
    }

    /// Starts an async command: refused on a broken connection, and
    /// marked in flight until [`Session::end`].
    #[cfg(feature = "tokio")]
    fn begin(&mut self) -> Result<(), MongoError> {
        if self.is_broken() {
            return Err(MongoError::Broken);
        }
        self.in_flight = true;
        Ok(())
    }

    /// Ends an async command with `result`.
    #[cfg(feature = "tokio")]
    fn end<T>(&mut self, result: Result<T, MongoError>) -> Result<T, MongoError> {
        self.in_flight = false;
        self.note(result)
    }

    /// The next request's id and its encoded message: `command` in `db`;
    /// unacknowledged ones get `writeConcern: { w: 0 }` unless they carry
    /// one, and the `moreToCome` flag.
    fn request(
        &mut self,
        db: &str,
        mut command: Document,
        acknowledged: bool,
    ) -> Result<(i32, Vec<u8>), MongoError> {
        if self.broken {
            return Err(MongoError::Broken);
        }
        command.insert("$db", db);
        let flags = if acknowledged {
            0
        } else {
            if !command.contains_key("writeConcern") {
                command.insert("writeConcern", doc! { "w": 0 });
            }
            wire::MORE_TO_COME
        };
        self.next_request = self.next_request.wrapping_add(1);
        let message = wire::encode(self.next_request, &command, flags)?;
        if let Some(server) = &self.server
            && message.len() > server.max_message_size_bytes
        {
            return Err(MongoError::Bson(format!(
                "a {} byte command exceeds the server's {} byte limit",
                message.len(),
                server.max_message_size_bytes
            )));
        }
        Ok((self.next_request, message))
    }

    fn max_message(&self) -> usize {
        self.server
            .as_ref()
            .map_or(wire::DEFAULT_MAX_MESSAGE, |s| s.max_message_size_bytes)
    }

    /// Notes `result`: errors that break the connection mark it broken.
    fn note<T>(&mut self, result: Result<T, MongoError>) -> Result<T, MongoError> {
        if let Err(error) = &result
            && error.breaks_connection()
        {
            self.broken = true;
        }
        result
    }
}

/// Interrupts by shutting `socket` down (a duplicate of a connection's
/// descriptor): the holder's pending or next read or write fails, which
/// breaks the connection, and the pool closes it when it is returned.
fn shutdown_handle(socket: std::net::TcpStream) -> crate::InterruptHandle {
    crate::InterruptHandle::new(move || {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    })
}

/// `reply` itself, or the server's error when it says `ok: 0`.
fn check_ok(reply: Document) -> Result<Document, MongoError> {
    let ok = match reply.get("ok") {
        Some(bson::Bson::Double(n)) => *n == 1.0,
        Some(bson::Bson::Int32(n)) => *n == 1,
        Some(bson::Bson::Int64(n)) => *n == 1,
        Some(bson::Bson::Boolean(b)) => *b,
        _ => false,
    };
    if ok {
        return Ok(reply);
    }
    Err(MongoError::Server {
        code: reply.get_i32("code").unwrap_or(0),
        code_name: reply.get_str("codeName").unwrap_or_default().to_owned(),
        message: reply.get_str("errmsg").unwrap_or_default().to_owned(),
    })
}

/// An I/O error as the adapter reports it: a socket timeout is a
/// [`MongoError::Timeout`].
fn io_error(error: std::io::Error, timeout: Duration) -> MongoError {
    match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            MongoError::Timeout(timeout)
        }
        _ => MongoError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_fail_clearly() {
        let m = MongoManager::new("mongodb://user:pw@db.example:27018,other:1/app?x=1").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("db.example", 27018));
        let m = MongoManager::new("localhost").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("localhost", 27017));
        for bad in ["mongodb://", "host:notaport", ":27017"] {
            assert!(
                matches!(MongoManager::new(bad), Err(MongoError::InvalidAddress(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_server_without_op_msg_is_refused() {
        let old = doc! { "ok": 1.0, "maxWireVersion": 5 };
        assert!(matches!(
            ServerInfo::from_hello(&old),
            Err(MongoError::Incompatible {
                max_wire_version: 5
            })
        ));
        let info = ServerInfo::from_hello(&doc! {
            "ok": 1.0, "maxWireVersion": 27, "connectionId": 42i64, "maxMessageSizeBytes": 1000
        })
        .unwrap();
        assert_eq!(info.connection_id, Some(42));
        assert_eq!(info.max_message_size_bytes, 1000);
    }

    #[test]
    fn ok_zero_is_a_server_error_and_does_not_break() {
        let error = check_ok(
            doc! { "ok": 0.0, "code": 91, "codeName": "ShutdownInProgress", "errmsg": "bye" },
        )
        .unwrap_err();
        assert!(matches!(&error, MongoError::Server { code: 91, .. }));
        assert!(!error.breaks_connection());
        let mut session = Session::new();
        assert!(
            session
                .note::<()>(Err(MongoError::Protocol("x".into())))
                .is_err()
        );
        assert!(matches!(
            session.request("db", doc! { "ping": 1 }, true),
            Err(MongoError::Broken)
        ));
    }
}
