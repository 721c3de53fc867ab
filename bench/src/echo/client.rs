//! The client: one tokio program for every server, in a process of its own.
//!
//! ```text
//! __client echo  <port> <server pid> <cpu|-> <conns> <warm-up ms> <window ms> <threads>
//! __client count <port> <server pid> <cpu|-> <conns> <round trips per conn> - <threads>
//! __client idle  <port> <server pid> <cpu|-> <conns> - - 1
//! ```
//!
//! - `echo`: `conns` connections, each a task running a closed loop (write a
//!   [`MESSAGE`]-byte ping, read the 64-byte pong), counted after a warm-up over a fixed
//!   window; the server's CPU time (every thread, from `/proc`) and the client's own are
//!   read at both ends of the window, and the time the server spent runnable but waiting
//!   for a CPU (other load). Prints `requests`, `secs`, `server_cpu_ns`, `server_wait_ns`,
//!   `client_cpu_ns`, and `total` (every round trip since the first connect).
//! - `count`: each connection makes exactly that many round trips, then the client exits
//!   (for callgrind, where a fixed amount of work is compared).
//! - `idle`: opens `conns` connections (at most 64 connects in flight), makes one round
//!   trip on each (so the server has accepted it and its task is parked in a read again),
//!   and holds them; prints the server's `VmRSS` before the first connect and after the
//!   last (`rss_before`, `rss_after`) and `conns`.
//!
//! `threads` is the runtime: 1 is tokio's current-thread runtime, more its multi-thread
//! runtime with that many workers (the multi-core mode).

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::echo::{
    MESSAGE, parse_cpu, pin, process_cpu_ns, process_runqueue_wait_ns, process_status_bytes,
    process_user_system_ns, raise_nofile,
};
use crate::measure::cpu_time_ns;

/// Round trips completed by every connection so far.
static DONE: AtomicU64 = AtomicU64::new(0);

/// Runs a `__client` command line (without the `__client` word).
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("__client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num<T: std::str::FromStr>(arg: &str, what: &str) -> io::Result<T> {
    arg.parse()
        .map_err(|_| io::Error::other(format!("bad {what} {arg:?}")))
}

fn run(args: &[String]) -> io::Result<()> {
    let [mode, port, pid, cpu, conns, a, b, threads] = args else {
        return Err(io::Error::other(
            "needs: mode port pid cpu conns a b threads",
        ));
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], num::<u16>(port, "port")?));
    let pid: u32 = num(pid, "pid")?;
    let conns: usize = num(conns, "conns")?;
    let threads: usize = num(threads, "threads")?;
    raise_nofile();
    pin(parse_cpu(cpu).map_err(io::Error::other)?);
    let rt = if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    let out = rt.block_on(async {
        match mode.as_str() {
            "echo" => {
                let warm = Duration::from_millis(num(a, "warm-up ms")?);
                let window = Duration::from_millis(num(b, "window ms")?);
                echo(addr, pid, conns, warm, window).await
            }
            "count" => count(addr, conns, num(a, "round trips")?).await,
            "idle" => idle(addr, pid, conns).await,
            other => Err(io::Error::other(format!("unknown mode {other:?}"))),
        }
    })?;
    print!("{out}");
    // Exit at once: the connections close with the process, and no task is waited for.
    std::process::exit(0);
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn round_trip(stream: &mut TcpStream, ping: &[u8; MESSAGE]) -> io::Result<()> {
    let mut pong = [0u8; MESSAGE];
    stream.write_all(ping).await?;
    stream.read_exact(&mut pong).await?;
    if pong != *ping {
        return Err(io::Error::other("the echo differs from the ping"));
    }
    Ok(())
}

async fn connect_all(addr: SocketAddr, conns: usize) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(connect(addr).await?);
    }
    Ok(streams)
}

/// A connection's closed loop; its first failure is reported on `failed`.
async fn ping_loop(mut stream: TcpStream, id: usize, rounds: Option<u64>, failed: Arc<Failed>) {
    let ping = [id as u8; MESSAGE];
    let mut done = 0;
    while rounds.is_none_or(|r| done < r) {
        if let Err(e) = round_trip(&mut stream, &ping).await {
            failed.set(e);
            return;
        }
        done += 1;
        DONE.fetch_add(1, Ordering::Relaxed);
    }
}

/// The first error of any connection.
#[derive(Debug, Default)]
struct Failed(std::sync::Mutex<Option<io::Error>>);

impl Failed {
    fn set(&self, e: io::Error) {
        self.0.lock().unwrap().get_or_insert(e);
    }

    fn check(&self) -> io::Result<()> {
        match self.0.lock().unwrap().take() {
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!("a connection failed: {e}"),
            )),
            None => Ok(()),
        }
    }
}

async fn echo(
    addr: SocketAddr,
    pid: u32,
    conns: usize,
    warm: Duration,
    window: Duration,
) -> io::Result<String> {
    let failed = Arc::new(Failed::default());
    for (id, stream) in connect_all(addr, conns).await?.into_iter().enumerate() {
        tokio::spawn(ping_loop(stream, id, None, failed.clone()));
    }
    tokio::time::sleep(warm).await;
    let server0 = process_cpu_ns(pid).ok_or_else(|| io::Error::other("server gone"))?;
    let wait0 = process_runqueue_wait_ns(pid).unwrap_or(0);
    let (user0, sys0) = process_user_system_ns(pid).unwrap_or((0, 0));
    let client0 = cpu_time_ns();
    let done0 = DONE.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let done1 = DONE.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let client1 = cpu_time_ns();
    let wait1 = process_runqueue_wait_ns(pid).unwrap_or(0);
    let (user1, sys1) = process_user_system_ns(pid).unwrap_or((0, 0));
    let server1 = process_cpu_ns(pid).ok_or_else(|| io::Error::other("server gone"))?;
    failed.check()?;
    Ok(format!(
        "requests {}\nsecs {secs}\nserver_cpu_ns {}\nserver_user_ns {}\nserver_sys_ns {}\nserver_wait_ns {}\nclient_cpu_ns {}\ntotal {done1}\n",
        done1 - done0,
        server1.saturating_sub(server0),
        user1.saturating_sub(user0),
        sys1.saturating_sub(sys0),
        wait1.saturating_sub(wait0),
        client1.saturating_sub(client0),
    ))
}

async fn count(addr: SocketAddr, conns: usize, rounds: u64) -> io::Result<String> {
    let failed = Arc::new(Failed::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (id, stream) in connect_all(addr, conns).await?.into_iter().enumerate() {
        tasks.spawn(ping_loop(stream, id, Some(rounds), failed.clone()));
    }
    while tasks.join_next().await.is_some() {}
    failed.check()?;
    Ok(format!("total {}\n", DONE.load(Ordering::Relaxed)))
}

/// How many connects the idle mode keeps in flight (below every listener's backlog).
const CONNECTING: usize = 64;

async fn idle(addr: SocketAddr, pid: u32, conns: usize) -> io::Result<String> {
    let rss = || process_status_bytes(pid, "VmRSS").ok_or_else(|| io::Error::other("server gone"));
    let before = rss()?;
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..CONNECTING {
        let share = conns / CONNECTING + usize::from(w < conns % CONNECTING);
        workers.spawn(async move {
            let mut held = Vec::with_capacity(share);
            for _ in 0..share {
                let mut stream = connect(addr).await?;
                round_trip(&mut stream, &[w as u8; MESSAGE]).await?;
                held.push(stream);
            }
            Ok::<_, io::Error>(held)
        });
    }
    let mut held = Vec::with_capacity(conns);
    while let Some(joined) = workers.join_next().await {
        held.extend(joined.map_err(io::Error::other)??);
    }
    let connect_secs = start.elapsed().as_secs_f64();
    // Let the server finish whatever its last wake started before reading its RSS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss()?;
    let out = format!(
        "conns {}\nrss_before {before}\nrss_after {after}\nconnect_secs {connect_secs}\n",
        held.len()
    );
    drop(held);
    Ok(out)
}
