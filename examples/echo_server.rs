//! An echo server: one task per connection in a nursery, a cap on how many connections are
//! served at once, and a graceful shutdown on Ctrl-C.
//!
//! - Every connection is a child of the connections' nursery, so when `serve` returns,
//!   every connection has ended and its socket is closed: nothing outlives the server.
//! - A [`CapacityLimiter`] caps the connections served at once: the accept loop takes a
//!   token *before* it accepts, so connections beyond the cap wait in the kernel's
//!   backlog instead of piling up in memory.
//! - The shutdown (Trio's idiom): on Ctrl-C the server stops accepting, and the
//!   connections run on in a *shielded* scope whose deadline is set to now + grace: they
//!   may finish what they are doing, and whoever is still connected when the grace period
//!   ends is cancelled. The shield also holds against a cancellation from outside (an
//!   enclosing deadline), which then starts the same grace period.
//!
//! Run it with `cargo run --example echo_server` and talk to it with
//! `nc 127.0.0.1 7878`; press Ctrl-C to stop it. `cargo run --example echo_server -- --demo`
//! also runs a few clients, then presses Ctrl-C itself (it sends itself `SIGINT`).
//! `integration/tests/examples.rs` runs `serve` on virtual time and checks the shutdown.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use trellis::net::{TcpListener, TcpStream};
use trellis::{CancelScope, CapacityLimiter, LimiterToken, finally, nursery};

/// How the server behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// The most connections served at once.
    pub(crate) max_connections: usize,
    /// How long connections may run on after the shutdown begins.
    pub(crate) grace: Duration,
}

/// What the server did.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections accepted.
    pub(crate) accepted: Cell<usize>,
    /// Connections that ended by themselves (the client closed).
    pub(crate) finished: Cell<usize>,
    /// Connections that did not end by themselves: still open when the grace period ran
    /// out (cancelled), or failed.
    pub(crate) cut_off: Cell<usize>,
    /// Connections being served now.
    pub(crate) active: Cell<usize>,
    /// The most connections served at once.
    pub(crate) peak: Cell<usize>,
}

/// Serves echo on `listener` until `shutdown` completes, then gives the connections
/// `config.grace` to finish and cancels the rest. Returns when every connection is gone.
pub(crate) async fn serve(
    listener: &TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    stats: &Stats,
) -> io::Result<()> {
    let limiter = CapacityLimiter::new(config.max_connections).map_err(io::Error::other)?;
    let accepting = CancelScope::new();
    // Shielded: neither our shutdown nor an outer cancellation reaches the connections
    // until the deadline set below.
    let connections = CancelScope::new().with_shield(true);
    let (stop_accepting, grace_period) = (accepting.clone(), connections.clone());
    let watcher = CancelScope::new();
    let stop_watching = watcher.clone();
    let served = nursery(async |n| {
        // The shutdown begins on `shutdown`, or when the server is cancelled from outside:
        // `finally` runs its clean-up (shielded) however the wait ends.
        let watch = watcher.run(finally(shutdown, async {
            println!(
                "shutting down: no new connections, {:?} for the rest",
                config.grace
            );
            stop_accepting.cancel();
            grace_period.set_deadline(trellis::now() + config.grace);
        }));
        n.spawn(async {
            watch.await; // `None` once the server ended first and cancelled the watch
        });
        let result = connections
            .run(nursery(async |conns| {
                let accepted = accepting
                    .run(async {
                        loop {
                            let token = limiter.acquire().await;
                            let (stream, peer) = listener.accept().await?;
                            stats.accepted.set(stats.accepted.get() + 1);
                            println!("connection from {peer}");
                            // One client's error (a reset, say) ends its connection, not
                            // the server: log it here instead of failing the nursery.
                            // `start_soon`: nobody joins a connection, so no join slot
                            // (96 B per connection, BENCHMARKS.md "Issue 14").
                            conns.start_soon(async move {
                                if let Err(e) = handle(stream, token, stats).await {
                                    println!("connection from {peer} failed: {e}");
                                }
                            });
                        }
                    })
                    .await;
                // Cancelled: we stopped accepting; the connections finish in the nursery.
                accepted.unwrap_or(io::Result::<()>::Ok(()))
            }))
            .await;
        // The server is done (the shutdown ran, or accepting failed): stop waiting for one.
        stop_watching.cancel();
        match result {
            Some(result) => result.map_err(io::Error::from),
            None => Ok(()), // the grace period ran out: the stragglers were cancelled
        }
    })
    .await;
    served.map_err(io::Error::from)
}

/// One connection: echo until the client closes. The token is returned when it ends
/// (dropped with the task, also when the task is cancelled).
async fn handle(stream: TcpStream, _token: LimiterToken<'_>, stats: &Stats) -> io::Result<()> {
    let mut active = Active::new(stats);
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => break,
            n => stream.write_all(&buf[..n]).await?,
        }
    }
    active.finished = true;
    Ok(())
}

/// Counts a connection while it is served, and how it ended: the cancellation at the end
/// of the grace period drops the task at its `.await`, and this guard with it.
struct Active<'a> {
    stats: &'a Stats,
    finished: bool,
}

impl<'a> Active<'a> {
    fn new(stats: &'a Stats) -> Active<'a> {
        stats.active.set(stats.active.get() + 1);
        stats.peak.set(stats.peak.get().max(stats.active.get()));
        Active {
            stats,
            finished: false,
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let stats = self.stats;
        stats.active.set(stats.active.get() - 1);
        let ended = if self.finished {
            &stats.finished
        } else {
            &stats.cut_off
        };
        ended.set(ended.get() + 1);
    }
}

/// The demo's clients: two that say something and leave, one that stays connected (and
/// is cut off by the end of the grace period); then Ctrl-C.
async fn demo_clients(addr: std::net::SocketAddr) -> io::Result<()> {
    for word in ["hello", "world"] {
        let client = TcpStream::connect(addr).await?;
        client.write_all(word.as_bytes()).await?;
        let mut back = vec![0; word.len()];
        client.read_exact(&mut back).await?;
        println!("client got {:?} back", String::from_utf8_lossy(&back));
    }
    let lingering = TcpStream::connect(addr).await?;
    trellis::sleep(Duration::from_millis(100)).await;
    println!("pressing Ctrl-C");
    signal_hook::low_level::raise(trellis::signals::SIGINT)?;
    // Stay connected: the server cuts this one off when its grace period ends.
    let mut buf = [0; 1];
    let n = lingering.read(&mut buf).await?;
    println!("the lingering client was disconnected (read {n} bytes)");
    Ok(())
}

fn main() -> io::Result<()> {
    let demo = std::env::args().any(|arg| arg == "--demo");
    let config = Config {
        max_connections: 100,
        grace: Duration::from_millis(500),
    };
    trellis::run(async {
        let listener = TcpListener::bind(if demo {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:7878"
        })?;
        let addr = listener.local_addr()?;
        println!("echo server on {addr}; Ctrl-C stops it");
        let stats = Stats::default();
        // Receive SIGINT before the demo raises it (a signal with no receiver yet would
        // kill the process, as Ctrl-C does).
        let mut sigint = trellis::open_signal_receiver([trellis::signals::SIGINT])?;
        let shutdown = async {
            let _ = sigint.recv().await;
        };
        nursery(async |n| {
            if demo {
                n.spawn(demo_clients(addr));
            }
            serve(&listener, config, shutdown, &stats).await
        })
        .await?; // an `ErrorGroup<io::Error>` becomes an `io::Error` of the first error's kind
        println!(
            "served {} connections ({} finished, {} cut off after the grace period, at most {} at once)",
            stats.accepted.get(),
            stats.finished.get(),
            stats.cut_off.get(),
            stats.peak.get()
        );
        Ok(())
    })
}
