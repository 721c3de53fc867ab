//! The echo servers, one per runtime, each written as that runtime's users write one: an
//! accept loop that starts one task per connection, the connection's work in that task
//! (never in the runtime's root future, except the accept loop where that is the idiom),
//! `TCP_NODELAY` on, reads of up to [`MESSAGE`] bytes written straight back.
//!
//! ```text
//! __server <server> <cpu|->
//! ```
//!
//! The child binds `127.0.0.1:0`, prints `ready <port>` once it accepts, and serves until
//! its standard input closes (a watcher thread then prints `accepted <per runtime>` and
//! exits the process). A connection that fails ends its task only.

#![forbid(unsafe_code)]

use std::io;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::echo::{MESSAGE, Server, parse_cpu, pin, raise_nofile};

/// Connections accepted by each runtime of the server (one entry per trellis runtime in
/// the multi-core server; entry 0 otherwise).
static ACCEPTED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Runs a `__server` command line (without the `__server` word).
pub fn main(args: &[String]) -> ExitCode {
    let [server, cpu] = args else {
        eprintln!("__server needs: server cpu");
        return ExitCode::FAILURE;
    };
    let (Some(server), Ok(cpu)) = (Server::from_name(server), parse_cpu(cpu)) else {
        eprintln!("__server: bad arguments {args:?}");
        return ExitCode::FAILURE;
    };
    let oneshot_env = std::env::var_os("TRELLIS_REACTOR_ONESHOT").is_some_and(|v| v == "1");
    if oneshot_env != server.oneshot() {
        eprintln!(
            "__server: {} needs TRELLIS_REACTOR_ONESHOT={}",
            server.name(),
            if server.oneshot() { "1" } else { "unset" }
        );
        return ExitCode::FAILURE;
    }
    raise_nofile();
    pin(cpu);
    exit_when_stdin_closes();
    let served = match server {
        Server::Trellis | Server::TrellisOneshot | Server::TrellisAlt => trellis_server(false),
        Server::TrellisSoon => trellis_server(true),
        Server::Tokio => tokio_server(false),
        Server::TokioMulticore => tokio_server(true),
        Server::Smol => smol_server(),
        Server::TrellisMulticore => trellis_multicore(),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("__server {}: {e}", server.name());
            ExitCode::FAILURE
        }
    }
}

/// The harness stops a server by closing its standard input: a thread waits for that,
/// prints the accept counts and ends the process (no runtime needs a way in).
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::Read::read_to_end(&mut io::stdin(), &mut sink);
        let counts: Vec<String> = ACCEPTED
            .iter()
            .map(|c| c.load(Ordering::Relaxed).to_string())
            .collect();
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "accepted {}", counts.join(","));
        let _ = out.flush();
        std::process::exit(0);
    });
}

fn ready(port: u16) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "ready {port}");
    let _ = out.flush();
}

/// What an accept loop does with an error: a connection-level one (`ECONNABORTED`,
/// `EMFILE`, …) is logged and the loop goes on after a pause; none here is fatal.
fn accept_failed(e: &io::Error) -> Duration {
    eprintln!("accept: {e}");
    Duration::from_millis(10)
}

// ---- trellis ----

async fn trellis_echo(stream: trellis::net::TcpStream) {
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The accept loop of one trellis runtime: a nursery, one child per connection.
async fn trellis_serve(
    listener: trellis::net::TcpListener,
    soon: bool,
    accepted: &AtomicU64,
) -> io::Result<()> {
    trellis::nursery(async |n| {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    if soon {
                        n.start_soon(trellis_echo(stream));
                    } else {
                        // The handle is dropped: the child runs on in the nursery.
                        drop(n.spawn(trellis_echo(stream)));
                    }
                }
                Err(e) => trellis::sleep(accept_failed(&e)).await,
            }
        }
    })
    .await
    .map_err(|e| io::Error::other(format!("{e:?}")))
}

fn trellis_server(soon: bool) -> io::Result<()> {
    trellis::run(async {
        let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
        ready(listener.local_addr()?.port());
        trellis_serve(listener, soon, &ACCEPTED[0]).await
    })
}

/// One trellis runtime per core, each on a thread of its own with its own
/// `SO_REUSEPORT` listener on the same port (the kernel spreads connections over them).
fn trellis_multicore() -> io::Result<()> {
    let (bound, port) = std::sync::mpsc::channel::<io::Result<u16>>();
    let mut threads = Vec::new();
    let mut first_port = 0;
    for (i, accepted) in ACCEPTED.iter().enumerate() {
        let bound = bound.clone();
        let addr = format!("127.0.0.1:{first_port}");
        threads.push(std::thread::spawn(move || {
            trellis::run(async {
                let listener = match trellis::net::TcpListener::bind_reuse_port(addr.as_str()) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = bound.send(listener.local_addr().map(|a| a.port()));
                trellis_serve(listener, false, accepted).await
            })
        }));
        let got = port
            .recv()
            .map_err(|_| io::Error::other("a server thread ended before binding"))??;
        if i == 0 {
            first_port = got;
        }
    }
    ready(first_port);
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a server thread panicked"))??;
    }
    Ok(())
}

// ---- tokio ----

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `#[tokio::main]`'s runtime (current-thread, or multi-thread with 2 workers), the accept
/// loop in `block_on` as in tokio's examples, one `tokio::spawn`ed task per connection.
fn tokio_server(multicore: bool) -> io::Result<()> {
    let rt = if multicore {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ready(listener.local_addr()?.port());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    ACCEPTED[0].fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(tokio_echo(stream));
                }
                Err(e) => tokio::time::sleep(accept_failed(&e)).await,
            }
        }
    })
}

// ---- smol ----

async fn smol_echo(mut stream: async_io::Async<std::net::TcpStream>) {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; MESSAGE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// smol's single-threaded server: `smol::block_on(ex.run(..))` with a `LocalExecutor`
/// (what `smol::LocalExecutor` and `smol::block_on` re-export), `smol::Async` listener,
/// one spawned, detached task per connection.
fn smol_server() -> io::Result<()> {
    let ex = async_executor::LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
        ready(listener.get_ref().local_addr()?.port());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    ACCEPTED[0].fetch_add(1, Ordering::Relaxed);
                    let _ = stream.get_ref().set_nodelay(true);
                    ex.spawn(smol_echo(stream)).detach();
                }
                Err(e) => {
                    async_io::Timer::after(accept_failed(&e)).await;
                }
            }
        }
    }))
}
