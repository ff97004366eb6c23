//! The async connection: a Tokio TCP socket speaking `OP_MSG`, and the
//! async pool's [`Manager`](crate::tokio::Manager) for it.

use std::future::Future;
use std::time::Duration;

use bson::{Document, doc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{
    AsyncMongoConnection, Connection, MongoError, MongoManager, ServerInfo, check_ok, io_error,
    shutdown_handle, wire,
};

impl Connection<TcpStream> {
    /// Runs `command` in database `db` and returns the server's reply;
    /// `ok: 0` is a [`MongoError::Server`] (the connection stays usable).
    /// Dropping the future mid-command breaks the connection (its reply
    /// would be read as the next command's).
    pub async fn command(&mut self, db: &str, command: Document) -> Result<Document, MongoError> {
        self.session.begin()?;
        let result = bounded(self.io_timeout, self.round_trip(db, command)).await;
        self.session.end(result).and_then(check_ok)
    }

    /// Sends `command` without waiting for a reply (`moreToCome`), as a
    /// `w: 0` write: the server reports nothing back, not even an error.
    pub async fn send_unacknowledged(
        &mut self,
        db: &str,
        command: Document,
    ) -> Result<(), MongoError> {
        self.session.begin()?;
        let result = bounded(self.io_timeout, self.send(db, command, false)).await;
        self.session.end(result.map(|_| ()))
    }

    async fn send(
        &mut self,
        db: &str,
        command: Document,
        acknowledged: bool,
    ) -> Result<i32, MongoError> {
        let (request, message) = self.session.request(db, command, acknowledged)?;
        let io_timeout = self.io_timeout;
        self.stream
            .write_all(&message)
            .await
            .map_err(|e| io_error(e, io_timeout))?;
        Ok(request)
    }

    async fn round_trip(&mut self, db: &str, command: Document) -> Result<Document, MongoError> {
        let request = self.send(db, command, true).await?;
        let io_timeout = self.io_timeout;
        let mut header = [0; wire::HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .await
            .map_err(|e| io_error(e, io_timeout))?;
        let header = wire::Header::parse(&header, self.session.max_message())?;
        let mut body = vec![0; header.body_len()];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io_error(e, io_timeout))?;
        wire::decode(header, &body, request)
    }
}

/// `future`, or [`MongoError::Timeout`] once `limit` passes.
async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, MongoError>>,
) -> Result<T, MongoError> {
    timeout(limit, future)
        .await
        .unwrap_or(Err(MongoError::Timeout(limit)))
}

impl MongoManager {
    async fn open_async(&self) -> Result<AsyncMongoConnection, MongoError> {
        let mut last = MongoError::InvalidAddress(format!("{}:{}", self.host, self.port));
        for address in self.addresses()? {
            let connect = async {
                let stream = TcpStream::connect(address)
                    .await
                    .map_err(|e| io_error(e, self.connect_timeout))?;
                stream.set_nodelay(true)?;
                let mut conn = Connection::new(stream, self.connect_timeout);
                let hello = conn.command("admin", self.hello()).await?;
                conn.session.server = Some(ServerInfo::from_hello(&hello)?);
                conn.io_timeout = self.io_timeout;
                Ok(conn)
            };
            match bounded(self.connect_timeout, connect).await {
                Ok(conn) => return Ok(conn),
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

impl crate::tokio::Manager for MongoManager {
    type Connection = AsyncMongoConnection;
    type Error = MongoError;

    /// `host:port`.
    fn pool_name(&self) -> Option<String> {
        Some(self.server())
    }

    async fn connect(&self) -> Result<AsyncMongoConnection, MongoError> {
        self.open_async().await
    }

    /// A `ping`.
    async fn validate(&self, conn: &mut AsyncMongoConnection) -> Result<(), MongoError> {
        conn.command("admin", doc! { "ping": 1 }).await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut AsyncMongoConnection) -> bool {
        conn.is_broken()
    }

    /// Shuts the socket down (through a duplicate of its descriptor).
    fn interrupt_handle(&self, conn: &AsyncMongoConnection) -> Option<crate::InterruptHandle> {
        #[cfg(unix)]
        let duplicate = {
            use std::os::fd::AsFd;
            conn.stream
                .as_fd()
                .try_clone_to_owned()
                .map(std::net::TcpStream::from)
        };
        #[cfg(windows)]
        let duplicate = {
            use std::os::windows::io::AsSocket;
            conn.stream
                .as_socket()
                .try_clone_to_owned()
                .map(std::net::TcpStream::from)
        };
        #[cfg(not(any(unix, windows)))]
        let duplicate: std::io::Result<std::net::TcpStream> =
            Err(std::io::ErrorKind::Unsupported.into());
        duplicate.ok().map(shutdown_handle)
    }
}
