//! Happy Eyeballs (RFC 8305), as `trellis::net::open_tcp_stream` does it: the addresses of
//! a host are tried in turn, each new attempt starting when the one before has been
//! unanswered for 250 ms or has failed, all of them children of one nursery; the first to
//! connect wins and the others are cancelled (their sockets closed).
//!
//! Here the "host" is a list of local listeners with known behaviour: two that never answer
//! (a listener whose accept queue is full, so the kernel drops the connection request), one
//! that refuses (a bound port nobody listens on), and one that accepts. The program races
//! them in a few orders and prints which attempt won and when.
//!
//! Run it with `cargo run --example happy_eyeballs` (real time: about a second).
//! `integration/tests/examples.rs` runs the races on virtual time and checks the winners
//! and the times.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use trellis::net::{ConnectError, HAPPY_EYEBALLS_DELAY, connect_happy_eyeballs};

/// Local peers that behave as a host's addresses can: kept alive while the races run.
pub(crate) struct Peers {
    /// Never answers: a listener with a backlog of 0 whose one slot is taken.
    pub(crate) silent: Vec<SocketAddr>,
    /// Refuses at once: bound, not listening.
    pub(crate) refusing: SocketAddr,
    /// Accepts.
    pub(crate) accepting: SocketAddr,
    _keep: Vec<Socket>,
    _fillers: Vec<std::net::TcpStream>,
    _listener: std::net::TcpListener,
}

impl Peers {
    pub(crate) fn new() -> io::Result<Peers> {
        let mut keep = Vec::new();
        let mut fillers = Vec::new();
        let mut silent = Vec::new();
        for _ in 0..2 {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.bind(&loopback().into())?;
            socket.listen(0)?;
            let addr = local(&socket)?;
            // Takes the queue's one place; nobody accepts it, so the next connect waits.
            fillers.push(std::net::TcpStream::connect(addr)?);
            silent.push(addr);
            keep.push(socket);
        }
        let refusing_socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        refusing_socket.bind(&loopback().into())?;
        let refusing = local(&refusing_socket)?;
        keep.push(refusing_socket);
        let listener = std::net::TcpListener::bind(loopback())?;
        Ok(Peers {
            silent,
            refusing,
            accepting: listener.local_addr()?,
            _keep: keep,
            _fillers: fillers,
            _listener: listener,
        })
    }

    /// A short name for an address, for the printout.
    pub(crate) fn name(&self, addr: SocketAddr) -> &'static str {
        if self.silent.contains(&addr) {
            "silent"
        } else if addr == self.refusing {
            "refusing"
        } else if addr == self.accepting {
            "accepting"
        } else {
            "unknown"
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn local(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

/// What one race came to: the winner's position in `addrs` and when, or every failure.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Attempt `index` (from 0) connected, `after` the race began.
    Won { index: usize, after: Duration },
    /// Every attempt failed; their errors' kinds, in attempt order.
    AllFailed(Vec<io::ErrorKind>),
}

/// Races `addrs` with `delay` and says who won.
pub(crate) async fn race(addrs: &[SocketAddr], delay: Duration) -> Outcome {
    let start = trellis::now();
    match connect_happy_eyeballs(addrs.iter().copied(), delay).await {
        Ok(stream) => {
            let winner = stream.peer_addr().expect("a connected stream has a peer");
            Outcome::Won {
                index: addrs
                    .iter()
                    .position(|a| *a == winner)
                    .expect("one of ours"),
                after: trellis::now() - start,
            }
        }
        Err(e) => {
            let failures = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ConnectError>())
                .map(|all| all.attempts().iter().map(|(_, e)| e.kind()).collect())
                .unwrap_or_else(|| vec![e.kind()]);
            Outcome::AllFailed(failures)
        }
    }
}

/// The races the program runs: a label and the addresses in order.
pub(crate) fn races(peers: &Peers) -> Vec<(&'static str, Vec<SocketAddr>)> {
    let [first, second] = [peers.silent[0], peers.silent[1]];
    vec![
        (
            "silent, silent, accepting",
            vec![first, second, peers.accepting],
        ),
        ("refusing, accepting", vec![peers.refusing, peers.accepting]),
        (
            "silent, refusing, accepting",
            vec![first, peers.refusing, peers.accepting],
        ),
        ("refusing, refusing", vec![peers.refusing, peers.refusing]),
    ]
}

fn main() -> io::Result<()> {
    let peers = Peers::new()?;
    trellis::run(async {
        for (label, addrs) in races(&peers) {
            match race(&addrs, HAPPY_EYEBALLS_DELAY).await {
                Outcome::Won { index, after } => println!(
                    "{label}: attempt {} ({}) won after {} ms",
                    index + 1,
                    peers.name(addrs[index]),
                    after.as_millis()
                ),
                Outcome::AllFailed(kinds) => {
                    println!("{label}: every attempt failed: {kinds:?}")
                }
            }
        }
    });
    Ok(())
}
