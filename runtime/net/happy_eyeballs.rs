//! Connecting by name: [`open_tcp_stream`] resolves a host and races its addresses with
//! Happy Eyeballs (RFC 8305, as Trio's `open_tcp_stream`); [`connect_happy_eyeballs`]
//! races addresses the caller already has. When every attempt fails, the error carries a
//! [`ConnectError`] with each address and its failure.
//!
//! # The race
//!
//! The addresses are ordered so that families alternate (the first result's family
//! first, RFC 8305 section 4), and attempted one after another: each attempt is a child of
//! a nursery, and the next starts when the previous one fails or when `delay` has passed
//! without an answer, whichever comes first. Earlier attempts keep running. The first
//! attempt to connect wins: it cancels the nursery, which drops (and so closes) every
//! other attempt's socket; an attempt that connected in the same instant is closed too.
//!
//! # State
//!
//! Shared by the nursery's children, on the caller's stack: `winner` (empty until the first
//! success, never replaced), `failures` (pushed by each failed attempt, never removed),
//! and one `Event` per attempt, set when it fails (the body waits on it to start the next
//! one early).

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::resolve::lookup_host;
use crate::net::tcp::TcpStream;
use crate::nursery::open::nursery;
use crate::scope::cancel_scope::cancel_scope;
use crate::scope::timeout::move_on_after;
use crate::sync::event::Event;

/// How long [`open_tcp_stream`] waits for an attempt before it starts the next one
/// concurrently: 250 ms, RFC 8305's recommendation and Trio's default.
///
/// # Examples
///
/// ```
/// assert_eq!(trellis::net::HAPPY_EYEBALLS_DELAY.as_millis(), 250);
/// ```
pub const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

/// Opens a TCP connection to `host` (a name or an IP literal) on `port`: resolves it with
/// [`lookup_host`](crate::net::lookup_host), then races the addresses with Happy Eyeballs
/// (RFC 8305) and the default delay of 250 ms ([`HAPPY_EYEBALLS_DELAY`]), as Trio's
/// `open_tcp_stream`. A host whose IPv6 route is broken connects over IPv4 a quarter of a
/// second later instead of after a kernel timeout of minutes.
///
/// See [`connect_happy_eyeballs`] for how the race runs.
///
/// # Cancellation
///
/// Dropping the future midway (a timeout, a cancelled scope) abandons the lookup and
/// closes every socket of every attempt; nothing stays open. Wrap it in
/// [`fail_after`](crate::fail_after) to bound the whole connect: the race itself has no
/// overall timeout, each attempt ends when the kernel gives up on it.
///
/// # Errors
///
/// The error of [`lookup_host`](crate::net::lookup_host) if the name does not resolve.
/// If every attempt fails, an `io::Error` whose inner error is a [`ConnectError`]
/// (reach it with `get_ref()` and `downcast_ref`) listing each address with its failure;
/// its kind is that of the last failure.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
///     let port = listener.local_addr()?.port();
///     let stream = trellis::net::open_tcp_stream("127.0.0.1", port).await?;
///     assert_eq!(stream.peer_addr()?, listener.local_addr()?);
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub async fn open_tcp_stream(host: &str, port: u16) -> io::Result<TcpStream> {
    open_tcp_stream_with_delay(host, port, HAPPY_EYEBALLS_DELAY).await
}

/// [`open_tcp_stream`] with another Happy Eyeballs delay: how long an attempt may go
/// unanswered before the next starts beside it. `Duration::ZERO` starts every attempt at
/// once; `Duration::MAX` tries the addresses strictly one after another (the next only
/// when the previous has failed).
///
/// # Cancellation
///
/// As [`open_tcp_stream`]: dropping the future closes every attempt's socket.
///
/// # Errors
///
/// As [`open_tcp_stream`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
///     let port = listener.local_addr()?.port();
///     let delay = Duration::from_millis(100);
///     let stream = trellis::net::open_tcp_stream_with_delay("localhost", port, delay).await?;
///     assert!(stream.peer_addr()?.ip().is_loopback());
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub async fn open_tcp_stream_with_delay(
    host: &str,
    port: u16,
    delay: Duration,
) -> io::Result<TcpStream> {
    let addrs = lookup_host(host, port).await?;
    race(addrs, delay, Some(format!("{host}:{port}"))).await
}

/// Races connections to `addrs` with Happy Eyeballs and returns the first that connects:
/// [`open_tcp_stream`] without the name lookup, for addresses the caller already has
/// (several replicas, a resolver of its own, tests).
///
/// The addresses are reordered so that the families alternate, beginning with the family
/// of the first address (RFC 8305 section 4); within a family their order is kept. Attempt
/// 1 starts at once; each next attempt starts when the previous one fails or when `delay`
/// has passed since it started, whichever is first, while the earlier attempts keep
/// going. The first attempt to connect wins, and every other attempt is cancelled and its
/// socket closed (one that connected in the same instant too): no connection but the
/// returned one stays open.
///
/// So with a delay of 250 ms, two addresses that hang and a third that answers connect
/// at 500 ms; a refused address followed by one that answers connects at once, since a
/// failure starts the next attempt without waiting.
///
/// # Cancellation
///
/// Dropping the future midway closes every attempt's socket.
///
/// # Errors
///
/// `InvalidInput` if `addrs` is empty. If every attempt fails, an `io::Error` of the kind
/// of the last failure whose inner error is a [`ConnectError`] with every address and its
/// error, in the order the attempts started.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     // A port where nothing listens (refused at once), then one that accepts.
///     let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
///     let open = listener.local_addr()?;
///     let stream =
///         trellis::net::connect_happy_eyeballs([closed, open], Duration::from_millis(250))
///             .await?;
///     assert_eq!(stream.peer_addr()?, open);
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub async fn connect_happy_eyeballs<A>(addrs: A, delay: Duration) -> io::Result<TcpStream>
where
    A: IntoIterator<Item = SocketAddr>,
{
    race(addrs.into_iter().collect(), delay, None).await
}

/// The race of [`connect_happy_eyeballs`]; `target` names what was connected to (the
/// `host:port` of [`open_tcp_stream`]) in the error.
async fn race(
    addrs: Vec<SocketAddr>,
    delay: Duration,
    target: Option<String>,
) -> io::Result<TcpStream> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address to connect to: give at least one address",
        ));
    }
    let addrs = interleave_families(addrs);
    let winner: RefCell<Option<TcpStream>> = RefCell::new(None);
    // (attempt number, address, error), in the order the attempts failed.
    let failures: RefCell<Vec<(usize, SocketAddr, io::Error)>> = RefCell::new(Vec::new());
    let failed: Vec<Event> = addrs.iter().map(|_| Event::new()).collect();

    // The nursery runs in a scope that the winner cancels: every other attempt is dropped
    // at its next suspension (its socket closed), and the body stops starting new ones.
    // The scope's `Option` is not needed: `winner` says how the race ended.
    let _ = cancel_scope(async |scope| {
        // Children return `()`: the nursery cannot fail, and a panic in one is resumed
        // from it unchanged.
        let _ = nursery(async |n| {
            for (i, &addr) in addrs.iter().enumerate() {
                let (scope, winner, failures, failed) = (&scope, &winner, &failures, &failed[i]);
                n.start_soon(async move {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => {
                            let mut winner = winner.borrow_mut();
                            // The first to connect wins; a later one is dropped here, which
                            // closes it.
                            if winner.is_none() {
                                *winner = Some(stream);
                                scope.cancel();
                            }
                        }
                        Err(e) => {
                            failures.borrow_mut().push((i, addr, e));
                            failed.set();
                        }
                    }
                });
                if i + 1 < addrs.len() {
                    // The next attempt starts after `delay`, or at once if this one fails.
                    let _ = move_on_after(delay, failed.wait()).await;
                }
            }
        })
        .await;
    })
    .await;

    if let Some(stream) = winner.into_inner() {
        return Ok(stream);
    }
    let mut failures = failures.into_inner();
    let kind = failures
        .last()
        .map_or(io::ErrorKind::Other, |(_, _, e)| e.kind());
    failures.sort_by_key(|(i, _, _)| *i);
    Err(io::Error::new(
        kind,
        ConnectError {
            target,
            attempts: failures.into_iter().map(|(_, a, e)| (a, e)).collect(),
        },
    ))
}

/// Orders `addrs` so that families alternate, beginning with the first address's family;
/// the order within each family is kept, and the addresses of the longer family that are
/// left over come last.
fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_is_v6 = first.is_ipv6();
    let (same, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first_is_v6);
    let mut ordered = Vec::with_capacity(addrs.len());
    let (mut same, mut other) = (same.into_iter(), other.into_iter());
    loop {
        match (same.next(), other.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// Every attempt of a Happy Eyeballs race failed: each address tried, with its error.
///
/// [`open_tcp_stream`] and [`connect_happy_eyeballs`] return it inside an `io::Error`, so
/// that they stay `io::Result`; reach it with `get_ref()` and `downcast_ref`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use trellis::net::ConnectError;
///
/// trellis::run(async {
///     // Two ports where nothing listens.
///     let a = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
///     let b = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
///     let err = trellis::net::connect_happy_eyeballs([a, b], Duration::from_millis(250))
///         .await
///         .unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
///     let all = err.get_ref().unwrap().downcast_ref::<ConnectError>().unwrap();
///     let tried: Vec<_> = all.attempts().iter().map(|(addr, _)| *addr).collect();
///     assert_eq!(tried, [a, b]);
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct ConnectError {
    /// What was connected to, as `host:port`, when a name was given.
    target: Option<String>,
    /// Each attempt, in the order they started.
    attempts: Vec<(SocketAddr, io::Error)>,
}

impl ConnectError {
    /// Each address tried, with its error, in the order the attempts started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::net::ConnectError;
    /// trellis::run(async {
    ///     // Two ports just freed: nobody listens there, so both attempts are refused.
    ///     let refused: Vec<_> = (0..2)
    ///         .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().unwrap()))
    ///         .collect::<Result<_, _>>()?;
    ///     let err = trellis::net::connect_happy_eyeballs(refused.clone(), Duration::from_millis(250))
    ///         .await
    ///         .unwrap_err();
    ///     let all = err.get_ref().unwrap().downcast_ref::<ConnectError>().unwrap();
    ///     let tried: Vec<_> = all.attempts().iter().map(|(addr, _)| *addr).collect();
    ///     assert_eq!(tried, refused);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn attempts(&self) -> &[(SocketAddr, io::Error)] {
        &self.attempts
    }

    /// The attempts, by value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::net::ConnectError;
    ///
    /// trellis::run(async {
    ///     let a = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    ///     let err = trellis::net::connect_happy_eyeballs([a], Duration::ZERO).await.unwrap_err();
    ///     let all = err.into_inner().unwrap().downcast::<ConnectError>().unwrap();
    ///     let (addr, error) = all.into_attempts().pop().unwrap();
    ///     assert_eq!(addr, a);
    ///     assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn into_attempts(self) -> Vec<(SocketAddr, io::Error)> {
        self.attempts
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts.len();
        let attempts = if n == 1 {
            "the attempt"
        } else {
            "all attempts"
        };
        // One attempt at the address asked for: the address once.
        if let [(addr, e)] = self.attempts.as_slice() {
            if self
                .target
                .as_deref()
                .is_none_or(|t| *t == addr.to_string())
            {
                return write!(f, "the attempt to connect to {addr} failed: {e}");
            }
        }
        match &self.target {
            Some(target) => write!(f, "{attempts} to connect to {target} failed")?,
            None => write!(f, "{attempts} to connect failed")?,
        }
        for (i, (addr, e)) in self.attempts.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{addr}: {e}")?;
        }
        Ok(())
    }
}

/// No `source()`: the message already lists every attempt's error.
impl Error for ConnectError {}
