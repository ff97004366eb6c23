//! The MongoDB-wire server the adapter's tests run against.
//!
//! `MONGODB_URI` names one when it is set (`tests/run.sh` starts
//! secantusdb and sets it); otherwise a test starts `secantusd-py` itself
//! if it is on the PATH; otherwise it says so loudly and skips — except
//! under `CI=true`, where a missing server fails the test.

#![allow(dead_code)] // each test binary uses a different part

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server program `tests/run.sh` installs (secantusdb on PyPI).
const SERVER: &str = "secantusd-py";

/// A server to test against; one this process started is stopped on drop.
pub struct Server {
    pub uri: String,
    port: u16,
    process: Option<Child>,
}

/// The server named by `MONGODB_URI`, else one of our own, else `None`
/// (after saying so; a failure under `CI=true`).
pub fn shared() -> Option<Server> {
    if let Ok(uri) = std::env::var("MONGODB_URI") {
        return Some(Server {
            uri,
            port: 0,
            process: None,
        });
    }
    own()
}

/// A server this test starts and may restart, else `None` (after saying
/// so; a failure under `CI=true`).
pub fn own() -> Option<Server> {
    let port = free_port();
    match start(port) {
        Ok(process) => Some(Server {
            uri: format!("mongodb://127.0.0.1:{port}"),
            port,
            process: Some(process),
        }),
        Err(why) => {
            eprintln!("\n!!! MONGODB TESTS SKIPPED: no server ({why}); run tests/run.sh\n");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no MongoDB-wire server under CI: {why}"
            );
            None
        }
    }
}

impl Server {
    /// Stops the server (its sockets die with it).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(start(self.port).expect("the server restarts"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

/// Starts the server on `port` and waits (up to 60 s) until it accepts.
fn start(port: u16) -> Result<Child, String> {
    let mut process = Command::new(SERVER)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--storage-path",
            ":memory:",
            "--standalone",
            "--enable-test-commands",
        ])
        .args(["--log-level", "WARNING"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {SERVER}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(process);
        }
        if let Ok(Some(status)) = process.try_wait() {
            return Err(format!("{SERVER} exited with {status}"));
        }
        if Instant::now() > deadline {
            let _ = process.kill();
            return Err(format!("{SERVER} did not listen on {port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50)); // polling a port
    }
}
