//! One runtime per core: an echo server on every thread, all on one port.
//!
//! trellis's runtime is single-threaded, so a server that wants every core runs one
//! runtime per thread and shares nothing between them:
//!
//! - Each server thread runs `trellis::run` with its own listener, bound with
//!   `TcpListener::bind_reuse_port` to the same address (`SO_REUSEPORT`): the first thread
//!   binds port 0, and the others bind the port it got. The kernel spreads incoming
//!   connections over the listeners (Linux hashes each connection to one of them).
//! - Each thread's accept loop and its per-connection echo tasks are one nursery tree,
//!   inside a cancel scope. The thread hands a `RemoteCancel` of that scope (`Send + Sync`,
//!   from `CancelScope::remote`) to the main thread, which is how it is stopped.
//! - The main thread runs a client in its own runtime: 64 connections at once, each sending
//!   its own bytes and checking the echo. Then it cancels every server through its remote
//!   handle, joins the threads, and prints how many connections each one handled.
//!
//! Run it with `cargo run --example multicore_echo`. `integration/tests/examples.rs` runs
//! it and checks the counts.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use trellis::RemoteCancel;
use trellis::net::{TcpListener, TcpStream};

/// The most server threads the program starts, whatever the core count.
const MAX_THREADS: usize = 4;

/// The most the client's connections may take together.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

/// What the server threads and the client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// How many connections each server thread accepted, by thread.
    pub(crate) per_thread: Vec<u64>,
    /// How many bytes came back intact, over all connections.
    pub(crate) echoed: usize,
}

/// The running server threads: how to reach them and how to stop them.
struct Servers {
    addr: SocketAddr,
    stops: Vec<RemoteCancel>,
    threads: Vec<thread::JoinHandle<io::Result<u64>>>,
}

/// What a server thread sends back once it listens: its address and its stop handle.
type Ready = io::Result<(SocketAddr, RemoteCancel)>;

/// Starts `count` server threads, one after another: each binds the address the previous
/// one got (the first binds port 0).
fn start_servers(count: usize) -> io::Result<Servers> {
    let mut servers = Servers {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stops: Vec::new(),
        threads: Vec::new(),
    };
    for id in 0..count {
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let addr = servers.addr;
        let thread = thread::Builder::new()
            .name(format!("echo-server-{id}"))
            .spawn(move || server_thread(id, addr, ready_tx))?;
        servers.threads.push(thread);
        // A thread that failed to bind says why; one that panicked drops the sender.
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(format!(
                "server thread {id} died before it listened"
            )))
        });
        match ready {
            Ok((addr, stop)) => {
                servers.addr = addr;
                servers.stops.push(stop);
            }
            Err(e) => {
                stop_servers(servers)?;
                return Err(e);
            }
        }
    }
    Ok(servers)
}

/// Cancels every server thread and joins them; returns how many connections each handled.
fn stop_servers(servers: Servers) -> io::Result<Vec<u64>> {
    for stop in &servers.stops {
        stop.cancel();
    }
    servers
        .threads
        .into_iter()
        .map(|thread| {
            thread
                .join()
                .map_err(|_| io::Error::other("a server thread panicked"))?
        })
        .collect()
}

/// A server thread: its own runtime, listener and nursery tree, until the main thread
/// cancels it. Returns how many connections it accepted.
fn server_thread(id: usize, addr: SocketAddr, ready: mpsc::Sender<Ready>) -> io::Result<u64> {
    trellis::run(async {
        let listener = match TcpListener::bind_reuse_port(addr) {
            Ok(listener) => listener,
            Err(e) => {
                let why = io::Error::new(e.kind(), format!("server thread {id}: bind {addr}: {e}"));
                let _ = ready.send(Err(why));
                return Ok(0);
            }
        };
        let local = listener.local_addr()?;
        println!("server thread {id}: listening on {local}");
        let accepted = Cell::new(0);
        // The scope ends (`None`) when the main thread cancels it: the accept loop and every
        // echo task still running are cancelled, and their sockets closed.
        trellis::cancel_scope(async |scope| {
            // The main thread may be gone (it never is here): then nothing stops us.
            let _ = ready.send(Ok((local, scope.remote())));
            serve(&listener, &accepted).await
        })
        .await
        .transpose()?;
        Ok(accepted.get())
    })
}

/// Accepts connections and echoes each in its own task, counting them in `accepted`.
async fn serve(listener: &TcpListener, accepted: &Cell<u64>) -> io::Result<()> {
    trellis::nursery(async |conns| -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            accepted.set(accepted.get() + 1);
            conns.start_soon(async move {
                if let Err(e) = echo(&stream).await {
                    println!("server: the connection from {peer} failed: {e}");
                }
            });
        }
    })
    .await
    .map_err(|group| io::Error::other(format!("the server failed: {group}")))
}

/// Echoes every byte until the peer closes its side, then closes ours.
async fn echo(stream: &TcpStream) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown(std::net::Shutdown::Write);
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// The bytes connection `i` sends: its number, then a pattern of its own.
pub(crate) fn message(i: usize) -> Vec<u8> {
    let mut msg = format!("connection {i}: ").into_bytes();
    msg.extend((0..1000).map(|j| (i * 7 + j) as u8));
    msg
}

/// One client connection: sends its message, closes its side, reads the echo to the end
/// and checks it. Returns the bytes echoed.
async fn client(addr: SocketAddr, i: usize) -> io::Result<usize> {
    let stream = TcpStream::connect(addr).await?;
    let msg = message(i);
    stream.write_all(&msg).await?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut echoed = Vec::with_capacity(msg.len());
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => break,
            n => echoed.extend_from_slice(&buf[..n]),
        }
    }
    if echoed != msg {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("connection {i}: the echo differs from what was sent"),
        ));
    }
    Ok(echoed.len())
}

/// `connections` clients at once, in this thread's own runtime, within a deadline.
fn run_clients(addr: SocketAddr, connections: usize) -> io::Result<usize> {
    trellis::run(async {
        let all = trellis::nursery(async |n| {
            let clients: Vec<_> = (0..connections).map(|i| n.spawn(client(addr, i))).collect();
            let mut total = 0;
            for c in clients {
                total += c.await.map_err(|e| io::Error::other(e.to_string()))?;
            }
            Ok::<_, io::Error>(total)
        });
        match trellis::fail_after(CLIENT_DEADLINE, all).await {
            Ok(done) => done.map_err(|group| io::Error::other(group.to_string())),
            Err(timed_out) => Err(io::Error::new(io::ErrorKind::TimedOut, timed_out)),
        }
    })
}

/// The program: `threads` servers on one port, `connections` clients, then the stop.
pub(crate) fn run(threads: usize, connections: usize) -> io::Result<Report> {
    let servers = start_servers(threads)?;
    let addr = servers.addr;
    let echoed = run_clients(addr, connections);
    // Stop the servers whatever the clients' outcome, so that the program always ends.
    let per_thread = stop_servers(servers)?;
    let echoed = echoed?;
    println!("client: {connections} connections to {addr}, {echoed} bytes echoed intact");
    for (id, count) in per_thread.iter().enumerate() {
        println!("server thread {id}: handled {count} connections");
    }
    println!("stopped {threads} server threads");
    Ok(Report { per_thread, echoed })
}

/// How many server threads: one per core, at most [`MAX_THREADS`].
pub(crate) fn thread_count() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

fn main() -> io::Result<()> {
    run(thread_count(), 64)?;
    Ok(())
}
