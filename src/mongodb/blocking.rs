//! The blocking connection: a `std` TCP socket speaking `OP_MSG`, and the
//! blocking pool's [`Manager`](crate::blocking::Manager) for it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bson::{Document, doc};

use super::{
    Connection, MongoConnection, MongoError, MongoManager, ServerInfo, check_ok, io_error,
    shutdown_handle, wire,
};

impl Connection<TcpStream> {
    /// Runs `command` in database `db` and returns the server's reply;
    /// `ok: 0` is a [`MongoError::Server`] (the connection stays usable).
    pub fn command(&mut self, db: &str, command: Document) -> Result<Document, MongoError> {
        let result = self.round_trip(db, command);
        self.session.note(result).and_then(check_ok)
    }

    /// Sends `command` without waiting for a reply (`moreToCome`), as a
    /// `w: 0` write: the server reports nothing back, not even an error.
    pub fn send_unacknowledged(&mut self, db: &str, command: Document) -> Result<(), MongoError> {
        let result = self.send(db, command, false).map(|_| ());
        self.session.note(result)
    }

    fn send(&mut self, db: &str, command: Document, acknowledged: bool) -> Result<i32, MongoError> {
        let (request, message) = self.session.request(db, command, acknowledged)?;
        let timeout = self.io_timeout;
        self.stream
            .write_all(&message)
            .map_err(|e| io_error(e, timeout))?;
        Ok(request)
    }

    fn round_trip(&mut self, db: &str, command: Document) -> Result<Document, MongoError> {
        let request = self.send(db, command, true)?;
        let timeout = self.io_timeout;
        let mut header = [0; wire::HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| io_error(e, timeout))?;
        let header = wire::Header::parse(&header, self.session.max_message())?;
        let mut body = vec![0; header.body_len()];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| io_error(e, timeout))?;
        wire::decode(header, &body, request)
    }
}

impl MongoManager {
    /// Opens a socket to the first address that answers within the
    /// connect timeout and completes the handshake.
    fn open(&self) -> Result<MongoConnection, MongoError> {
        let started = Instant::now();
        let mut last = MongoError::InvalidAddress(format!("{}:{}", self.host, self.port));
        for address in self.addresses()? {
            let stream = match TcpStream::connect_timeout(&address, self.connect_timeout) {
                Ok(stream) => stream,
                Err(error) => {
                    last = io_error(error, self.connect_timeout);
                    continue;
                }
            };
            stream.set_nodelay(true)?;
            // The handshake shares the connect's budget.
            let left = self
                .connect_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            stream.set_read_timeout(Some(left))?;
            stream.set_write_timeout(Some(left))?;
            let mut conn = Connection::new(stream, left);
            let hello = conn.command("admin", self.hello())?;
            conn.session.server = Some(ServerInfo::from_hello(&hello)?);
            conn.stream.set_read_timeout(Some(self.io_timeout))?;
            conn.stream.set_write_timeout(Some(self.io_timeout))?;
            conn.io_timeout = self.io_timeout;
            return Ok(conn);
        }
        Err(last)
    }
}

impl crate::blocking::Manager for MongoManager {
    type Connection = MongoConnection;
    type Error = MongoError;

    /// `host:port`.
    fn pool_name(&self) -> Option<String> {
        Some(self.server())
    }

    fn connect(&self) -> Result<MongoConnection, MongoError> {
        self.open()
    }

    /// A `ping`.
    fn validate(&self, conn: &mut MongoConnection) -> Result<(), MongoError> {
        conn.command("admin", doc! { "ping": 1 }).map(|_| ())
    }

    fn has_broken(&self, conn: &mut MongoConnection) -> bool {
        conn.is_broken()
    }

    /// Shuts the socket down (through a duplicate of it).
    fn interrupt_handle(&self, conn: &MongoConnection) -> Option<crate::InterruptHandle> {
        conn.stream.try_clone().ok().map(shutdown_handle)
    }
}
