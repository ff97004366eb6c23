//! A fault-injection TCP proxy between a pool and a real server, in the
//! manner of Toxiproxy, run in process on a runtime of its own: it listens
//! on 127.0.0.1 and a port the OS picks, and forwards only to the server
//! address the test gives it. The test steers it: latency and jitter, a
//! bandwidth cap, a blackhole (links stay open and forward nothing), a
//! stall (half-open: nothing is read, so bytes wait in the kernel's
//! buffers), a slow close (a link one end closed stays open a while),
//! resetting every link (RST), and cutting the link (resets, and connects
//! refused) until healed.
//!
//! Why not `noxious`, Toxiproxy's Rust port, which the issue preferred: its
//! 1.0.4 (2021) panics when a `limit_data` toxic is added to live links
//! ("No toxic state provided"), and under this suite's load its toxic
//! updates, which tear down and rebuild every live link, left clients that
//! could not connect after a heal. It has no reset (RST) toxic either. The
//! faults here need only a byte pump with a switch in it, under our control.
//!
//! Its control calls are plain, non-blocking calls: usable from a blocking
//! test and from inside an async one alike.
//!
//! It also times the server: how long each request it forwarded waited for
//! the server's answer, and how long each connect to the server took
//! ([`FaultProxy::server_slow_until`]). A test's bound on how fast a pool
//! recovers holds only while the server answers within the pool's
//! timeouts; on a loaded 2-core machine a server once took over a second
//! to start a session, and the proxy says so rather than the pool.

#![allow(dead_code)] // each test binary uses a different part

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the proxy does to the bytes it forwards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Forwards them as they come.
    None,
    /// Holds each chunk `latency` ± `jitter` before forwarding it.
    Latency { latency: Duration, jitter: Duration },
    /// At most `bytes_per_second` each way on each link.
    Bandwidth { bytes_per_second: u64 },
    /// Reads and drops them: the link stays open and silent, as a
    /// partition or a dead host looks to a client.
    Blackhole,
    /// Reads nothing (half-open): what either end sends waits in the
    /// kernel's buffers, then their writes block; it all flows on heal.
    Stall,
}

/// The proxy in front of one server.
pub struct FaultProxy {
    /// Always `Some` but in `drop`, which shuts it down without blocking
    /// (a test's own runtime may be dropping the proxy).
    runtime: Option<tokio::runtime::Runtime>,
    listen: SocketAddr,
    upstream: String,
    fault: watch::Sender<Fault>,
    /// The accept loop; `None` while the link is cut.
    accepting: Mutex<Option<AbortHandle>>,
    links: Arc<Links>,
}

/// The live links, to count them and to reset them all.
#[derive(Default)]
struct Links {
    live: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
    /// How long a link one end closed stays open, in milliseconds.
    close_delay_ms: AtomicU64,
    /// How many links the blackhole took the client's first bytes of: a
    /// connect whose handshake it swallowed, which waits for a reply that
    /// never comes even once healed.
    swallowed: Mutex<usize>,
    swallowed_changed: Condvar,
    /// The server's slow answers: when the proxy asked (a request
    /// forwarded, a connect begun) and how long the answer took, or had
    /// taken when the link ended without one. Only those over
    /// [`SLOW_ANSWER`], to stay short.
    slow_answers: Mutex<Vec<(Instant, Duration)>>,
}

/// The shortest wait for the server that [`Links::slow_answers`] keeps.
const SLOW_ANSWER: Duration = Duration::from_millis(100);

impl Links {
    fn swallowed_a_handshake(&self) {
        *self.swallowed.lock() += 1;
        self.swallowed_changed.notify_all();
    }

    /// The server answered, or had not by the link's end, what the proxy
    /// asked of it at `asked`.
    fn server_answered(&self, asked: Instant) {
        let waited = asked.elapsed();
        if waited >= SLOW_ANSWER {
            self.slow_answers.lock().push((asked, waited));
        }
    }
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 forwarding to `upstream` (`host:port`, an
    /// address the test itself started a server on).
    pub fn start(upstream: &str) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fault-proxy")
            .build()
            .expect("the proxy's runtime");
        let probe = StdListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let listen = probe.local_addr().expect("its address");
        let proxy = FaultProxy {
            runtime: Some(runtime),
            listen,
            upstream: upstream.to_owned(),
            fault: watch::Sender::new(Fault::None),
            accepting: Mutex::new(None),
            links: Arc::default(),
        };
        proxy.accept_on(probe);
        proxy
    }

    /// Where clients connect: `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Latency of `latency_ms` ± `jitter_ms` on every chunk, either way.
    pub fn latency(&self, latency_ms: u64, jitter_ms: u64) {
        self.fault.send_replace(Fault::Latency {
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::from_millis(jitter_ms),
        });
    }

    /// At most `bytes_per_second` each way on every link.
    pub fn bandwidth(&self, bytes_per_second: u64) {
        self.fault
            .send_replace(Fault::Bandwidth { bytes_per_second });
    }

    /// Every link, live or new, forwards nothing from now on.
    pub fn blackhole(&self) {
        self.fault.send_replace(Fault::Blackhole);
    }

    /// Every link, live or new, stops reading until healed.
    pub fn stall(&self) {
        self.fault.send_replace(Fault::Stall);
    }

    /// From now on a link that one end closes is closed at the other end
    /// only `delay` later (not undone by [`heal`](Self::heal)).
    pub fn slow_close(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.links.close_delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Resets every live link (an RST to both ends); new ones are served.
    pub fn reset_links(&self) {
        for link in self.links.tasks.lock().drain(..) {
            link.abort();
        }
    }

    /// Cuts the link: every live link is reset and connects are refused
    /// until [`heal`](Self::heal). In place when this returns.
    pub fn cut(&self) {
        if let Some(accepting) = self.accepting.lock().take() {
            accepting.abort();
        }
        self.reset_links();
        // The listener closes as its task ends, asynchronously: on a
        // loaded machine that can take a while, so the bound is in time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(self.listen).is_err() {
                return;
            }
            std::thread::yield_now();
        }
        panic!("the proxy still accepts 10 s after its cut");
    }

    /// Forwards everything again; a cut link accepts again.
    pub fn heal(&self) {
        self.fault.send_replace(Fault::None);
        if self.accepting.lock().is_none() {
            let listener = StdListener::bind(self.listen).expect("the proxy's port again");
            self.accept_on(listener);
        }
    }

    /// How many client connections the proxy holds open now.
    pub fn links(&self) -> usize {
        self.links.live.load(Ordering::SeqCst)
    }

    /// Waits, up to `deadline`, until the blackhole swallows another
    /// handshake (a link whose client's first bytes it drops); whether it
    /// did.
    pub fn wait_for_a_swallowed_handshake(&self, deadline: Instant) -> bool {
        let mut swallowed = self.links.swallowed.lock();
        let seen = *swallowed;
        while *swallowed <= seen {
            if (self.links.swallowed_changed)
                .wait_until(&mut swallowed, deadline)
                .timed_out()
            {
                break;
            }
        }
        *swallowed > seen
    }

    /// When the server last gave an answer that took `at_least` or more
    /// (or had taken that long when its link ended without one), among
    /// what the proxy asked of it within `window` (requests forwarded,
    /// connects to it begun); `None` if it kept none waiting that long.
    /// Answers under 100 ms are not kept.
    pub fn server_slow_until(
        &self,
        window: std::ops::Range<Instant>,
        at_least: Duration,
    ) -> Option<Instant> {
        let answers = self.links.slow_answers.lock();
        let slow = answers
            .iter()
            .filter(|&&(asked, waited)| window.contains(&asked) && waited >= at_least);
        slow.map(|&(asked, waited)| asked + waited).max()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running")
    }

    /// Accepts on `listener`, a link to the server for each client.
    fn accept_on(&self, listener: StdListener) {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (upstream, fault, links) = (
            self.upstream.clone(),
            self.fault.clone(),
            Arc::clone(&self.links),
        );
        let runtime = self.runtime().handle().clone();
        let task = self.runtime().spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((client, _)) = listener.accept().await {
                let asked = Instant::now();
                let connected = TcpStream::connect(&upstream).await;
                links.server_answered(asked);
                let Ok(server) = connected else {
                    continue; // the client sees its socket closed
                };
                let fault = fault.subscribe();
                // Counted before the task runs and moved into it: a link
                // reset before its first poll is dropped unpolled, and
                // the count with it.
                let live = Live::new(Arc::clone(&links));
                let link = runtime.spawn(async move {
                    link(client, server, fault, &live.0).await;
                    drop(live);
                });
                let mut tasks = links.tasks.lock();
                tasks.retain(|task| !task.is_finished());
                tasks.push(link.abort_handle());
            }
        });
        *self.accepting.lock() = Some(task.abort_handle());
    }
}

/// Counts a link live until its task ends, however it ends.
struct Live(Arc<Links>);

impl Live {
    fn new(links: Arc<Links>) -> Live {
        links.live.fetch_add(1, Ordering::SeqCst);
        Live(links)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards both ways until either end closes; then, `close_delay_ms`
/// later, both are closed. A link aborted mid-way drops its sockets with
/// `SO_LINGER` 0: an RST.
async fn link(client: TcpStream, server: TcpStream, fault: watch::Receiver<Fault>, links: &Links) {
    for socket in [&client, &server] {
        // Deprecated because a positive linger blocks the dropping thread;
        // zero never does: it discards and resets at once.
        #[allow(deprecated)]
        let _ = socket.set_linger(Some(Duration::ZERO));
        let _ = socket.set_nodelay(true);
    }
    // The write halves stay here, outliving the pumps, so that a slow
    // close keeps each socket open (it closes when both halves are gone).
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    // Since when the server owes an answer to what was forwarded to it.
    let owed = Mutex::new(None);
    let to_server = Side::ToServer {
        handshake: Some(links),
        owed: &owed,
    };
    let to_client = Side::ToClient { links, owed: &owed };
    tokio::select! {
        () = pump(client_read, &mut server_write, fault.clone(), to_server) => {}
        () = pump(server_read, &mut client_write, fault, to_client) => {}
    }
    if let Some(asked) = owed.lock().take() {
        links.server_answered(asked);
    }
    let delay = links.close_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

/// Which way a [`pump`] copies, and what it reports.
enum Side<'a> {
    /// Toward the server: a blackhole that drops the link's first chunk
    /// swallowed a handshake (reported to `handshake` until a chunk has
    /// gone through); a chunk forwarded makes the server owe an answer.
    ToServer {
        handshake: Option<&'a Links>,
        owed: &'a Mutex<Option<Instant>>,
    },
    /// Toward the client: the server's chunk answers what it owed.
    ToClient {
        links: &'a Links,
        owed: &'a Mutex<Option<Instant>>,
    },
}

/// Copies `from` to `to` through the fault in force at each chunk,
/// reporting as its `side` says.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    mut side: Side<'_>,
) {
    let mut buffer = vec![0; 32 << 10];
    loop {
        if !unstalled(&mut fault).await {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if let Side::ToClient { links, owed } = &side
            && let Some(asked) = owed.lock().take()
        {
            links.server_answered(asked);
        }
        // A chunk read as a stall began waits for its end too.
        if !unstalled(&mut fault).await {
            return;
        }
        let current = *fault.borrow();
        match current {
            // (A stall that began just now holds the next chunk.)
            Fault::None | Fault::Stall => {}
            Fault::Latency { latency, jitter } => {
                let spread = rand::rng().random_range(Duration::ZERO..=2 * jitter);
                tokio::time::sleep((latency + spread).saturating_sub(jitter)).await;
            }
            Fault::Bandwidth { bytes_per_second } => {
                let seconds = read as f64 / bytes_per_second.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            }
            Fault::Blackhole => {
                if let Side::ToServer { handshake, .. } = &mut side
                    && let Some(links) = handshake.take()
                {
                    links.swallowed_a_handshake();
                }
                continue;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
        if let Side::ToServer { handshake, owed } = &mut side {
            // Its first chunk went through: no handshake of this link is
            // lost.
            *handshake = None;
            owed.lock().get_or_insert_with(Instant::now);
        }
    }
}

/// Waits while the links are stalled; `false` once the proxy is gone.
async fn unstalled(fault: &mut watch::Receiver<Fault>) -> bool {
    while *fault.borrow_and_update() == Fault::Stall {
        if fault.changed().await.is_err() {
            return false;
        }
    }
    true
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
