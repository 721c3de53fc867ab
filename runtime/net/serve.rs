//! Servers, as Trio's: [`open_tcp_listeners`] binds every address of a host (all
//! interfaces by default), [`serve_listeners`] accepts on each and runs a handler per
//! connection, [`serve_tcp`] does both. Readiness is reported through a
//! [`TaskStatus`], so `Nursery::start` returns once the server is bound, with its
//! addresses (the port that port 0 picked).
//!
//! # Structure
//!
//! `serve_listeners` opens one nursery. Its children are an accept loop per listener and
//! a task per connection, which runs the handler (Trio's default `handler_nursery`). So a
//! handler that fails or panics cancels the server, and cancelling the server cancels
//! every connection: nothing outlives `serve_listeners`, and a connection is closed when
//! its task is dropped. Each accept loop owns its listener, which closes when the loop
//! ends, before the connection tasks have all finished.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::net::resolve::lookup_host;
use crate::net::tcp::{ListenOptions, TcpListener, TcpStream};
use crate::nursery::handle::Nursery;
use crate::nursery::open::nursery;
use crate::nursery::output::TaskOutput;
use crate::nursery::start::TaskStatus;
use crate::rt::sleep::sleep;

/// How long an accept loop waits after the process or the system ran out of descriptors
/// or memory (Trio's `SLEEP_TIME`): long enough for other tasks to close some, short
/// enough that clients barely notice.
const CAPACITY_RETRY: Duration = Duration::from_millis(100);

/// How many times [`open_tcp_listeners`] tries again when the port picked for port 0 on
/// the first address is taken on another.
const PORT_ZERO_TRIES: usize = 10;

#[cfg(target_os = "linux")]
mod errno {
    pub(super) const EAFNOSUPPORT: i32 = 97;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const ENFILE: i32 = 23;
    pub(super) const ENOBUFS: i32 = 105;
    pub(super) const ENOMEM: i32 = 12;
    /// Errors of one connection that `accept(2)` passes on (Linux's man page: treat them
    /// like `EAGAIN`), beside the ones `io::ErrorKind` names.
    pub(super) const ONE_CONNECTION: &[i32] = &[
        71,  // EPROTO
        92,  // ENOPROTOOPT
        112, // EHOSTDOWN
        64,  // ENONET
        95,  // EOPNOTSUPP
    ];
}

#[cfg(not(target_os = "linux"))]
mod errno {
    // The BSDs and macOS.
    pub(super) const EAFNOSUPPORT: i32 = 47;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const ENFILE: i32 = 23;
    pub(super) const ENOBUFS: i32 = 55;
    pub(super) const ENOMEM: i32 = 12;
    pub(super) const ONE_CONNECTION: &[i32] = &[
        100, // EPROTO (macOS)
    ];
}

/// Opens TCP listeners on every address of `host` for `port`, as Trio's
/// `open_tcp_listeners`. `None` means every interface: `0.0.0.0` and `::` (each where the
/// system has the family; the IPv6 one is `IPV6_V6ONLY`, so both can hold the port). A
/// name is resolved with [`lookup_host`](crate::net::lookup_host); an IP literal binds
/// that address only.
///
/// Port 0 picks a free port, the same one for every listener (the port the first gets;
/// Trio leaves them different). Each listener has `SO_REUSEADDR` and a backlog of 1024.
///
/// # Cancellation
///
/// Dropping the future midway abandons the lookup; no listener is left open.
///
/// # Errors
///
/// The lookup's error; the system's error if an address cannot be bound (`AddrInUse`,
/// `PermissionDenied` for a port below 1024, …), in which case no listener stays open;
/// `Unsupported` if the system has none of the address families.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     let listeners = trellis::net::open_tcp_listeners(0, Some("127.0.0.1")).await?;
///     assert_eq!(listeners.len(), 1);
///     assert_ne!(listeners[0].local_addr()?.port(), 0);
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub async fn open_tcp_listeners(port: u16, host: Option<&str>) -> io::Result<Vec<TcpListener>> {
    let mut addrs = match host {
        Some(host) => lookup_host(host, port).await?,
        None => vec![
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        ],
    };
    let mut seen = Vec::with_capacity(addrs.len());
    addrs.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    let mut tries = 0;
    loop {
        match bind_all(&addrs, host.is_none()) {
            Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                tries += 1;
                if tries == PORT_ZERO_TRIES {
                    return Err(e);
                }
            }
            done => return done,
        }
    }
}

/// Binds a listener on each of `addrs`, sharing the port the first one gets if the port
/// is 0. Skips an address of a family the system does not have when `skip_missing_family`
/// (the wildcard addresses of `host = None`) or when the family is missing altogether.
fn bind_all(addrs: &[SocketAddr], skip_missing_family: bool) -> io::Result<Vec<TcpListener>> {
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(addrs.len());
    let mut missing = Vec::new();
    let mut port = None;
    for &addr in addrs {
        let mut addr = addr;
        if addr.port() == 0 {
            if let Some(port) = port {
                addr.set_port(port);
            }
        }
        let options = ListenOptions {
            only_v6: true,
            ..ListenOptions::default()
        };
        match TcpListener::bind_with(addr, options) {
            Ok(listener) => {
                port.get_or_insert(listener.local_addr()?.port());
                listeners.push(listener);
            }
            Err(e) if is_missing_family(&e) => missing.push((addr, e)),
            Err(e) if skip_missing_family && e.kind() == io::ErrorKind::AddrNotAvailable => {
                // IPv6 switched off by sysctl: the socket opens but `::` is not there.
                missing.push((addr, e));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("could not listen on {addr}: {e}"),
                ));
            }
        }
    }
    if listeners.is_empty() {
        let tried: Vec<String> = missing.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "this system supports none of the address families to listen on ({})",
                tried.join("; ")
            ),
        ));
    }
    Ok(listeners)
}

fn is_missing_family(e: &io::Error) -> bool {
    e.raw_os_error() == Some(errno::EAFNOSUPPORT)
}

/// Accepts connections on every listener and runs `handler(stream)` for each in a task of
/// its own, until cancelled (Trio's `serve_listeners`). Once the accept loops run it calls
/// `status.started(addresses)` with the listeners' addresses, in order; pass the
/// [`TaskStatus`] of [`Nursery::start`](crate::Nursery::start), or `None`.
///
/// The handler is any `async` function or closure of a [`TcpStream`] returning `()` or
/// `io::Result<()>`; it may borrow anything that outlives the call. Dropping the stream
/// closes the connection; a task's stream is dropped when the handler returns.
///
/// # Errors
///
/// Never returns `Ok` (the `Infallible` says so): it runs until cancelled or until
/// something fails, and returns the failure once every connection task is gone.
///
/// - A handler's `Err` cancels the server, as any failing child of a nursery does, and is
///   returned; handle errors inside the handler to keep serving after one (Trio's rule:
///   a handler's exception crashes the server). When several tasks failed in that moment,
///   the error has the first one's kind and an [`ErrorGroup`](crate::ErrorGroup)`<io::Error>`
///   inside holding all of them (`get_ref()` and `downcast_ref`).
/// - Accept errors that mean the process or the system is out of descriptors or memory
///   (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) pause that listener's accepts for 100 ms
///   and try again; the first of a run of them writes one line to stderr (a server stuck
///   there should be visible). Errors of one connection that `accept` reports (a peer
///   that gave up, `ECONNABORTED`, `ECONNRESET`, `EPROTO`, unreachable hosts and
///   networks, `EPERM` from a firewall, …) are skipped silently. Any other accept error
///   stops the server and is returned unchanged.
/// - No listener: `InvalidInput`.
///
/// # Panics
///
/// A handler's panic cancels the server like an error; once every connection task is
/// gone it is resumed from `serve_listeners` with its original payload.
///
/// # Cancellation
///
/// Cancelling it (a scope, the nursery it runs in) cancels every accept loop and every
/// connection task, which drops (closes) every connection and every listener. Each
/// listener closes as its accept loop ends, even while a handler shielded from the
/// cancellation finishes its work: from then on a client is refused, not queued.
///
/// # Examples
///
/// ```
/// use trellis::net::{TcpStream, open_tcp_listeners, serve_listeners};
///
/// trellis::run(async {
///     let listeners = open_tcp_listeners(0, Some("127.0.0.1")).await?;
///     let greet = async |s: TcpStream| s.write_all(b"hi").await;
///     // The scope around the nursery stops the server when the client is done.
///     let done = trellis::cancel_scope(async |scope| {
///         trellis::nursery(async |n| {
///             let addrs = n
///                 .start(async |_n, status| serve_listeners(listeners, greet, status).await)
///                 .await?; // a `StartError<io::Error>` becomes an `io::Error`
///             let client = TcpStream::connect(addrs[0]).await?;
///             let mut buf = [0; 2];
///             client.read_exact(&mut buf).await?;
///             assert_eq!(&buf, b"hi");
///             scope.cancel(); // stop the server
///             Ok(())
///         })
///         .await
///         .map_err(|group| group.into_first())
///     })
///     .await;
///     done.unwrap_or(Ok(())) // `None`: the scope was cancelled, as intended
/// })
/// .unwrap();
/// ```
pub async fn serve_listeners<H, O, S>(
    listeners: Vec<TcpListener>,
    handler: H,
    status: S,
) -> io::Result<Infallible>
where
    H: AsyncFn(TcpStream) -> O,
    O: TaskOutput<io::Error>,
    S: Into<Option<TaskStatus<Vec<SocketAddr>>>>,
{
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener to serve: give serve_listeners at least one",
        ));
    }
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let status = status.into();
    let handler = &handler;
    let served = nursery(async move |n| {
        // Each accept loop owns its listener, so that the listener closes as soon as its
        // loop ends (cancelled, or failed), as Trio's does: not when the last connection
        // task is gone. A handler shielded past the cancellation would otherwise keep the
        // port open, and the kernel would go on completing handshakes into a backlog that
        // nobody accepts from (the client hangs until the drain ends, then is reset).
        for listener in listeners {
            n.spawn_with(async move |n| accept_loop(&listener, handler, n).await);
        }
        if let Some(status) = status {
            status.started(addrs);
        }
        Ok::<(), io::Error>(())
    })
    .await;
    match served {
        Err(group) if group.len() == 1 => Err(group.into_first()),
        Err(group) => Err(io::Error::new(group.first().kind(), group)),
        // The accept loops end only with an error.
        Ok(()) => Err(io::Error::other("the accept loops ended without an error")),
    }
}

/// Accepts on `listener` and starts a task of `n` per connection, until an accept error
/// that is neither a passing shortage nor about one connection.
async fn accept_loop<'env, H, O>(
    listener: &TcpListener,
    handler: &'env H,
    n: Nursery<'_, 'env, io::Error>,
) -> io::Result<Infallible>
where
    H: AsyncFn(TcpStream) -> O + 'env,
    O: TaskOutput<io::Error>,
{
    let mut short = false;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                short = false;
                n.start_soon(handler(stream));
            }
            Err(e) if is_capacity_error(&e) => {
                if !short {
                    short = true;
                    let addr = listener
                        .local_addr()
                        .map_or_else(|_| "a listener".to_owned(), |a| a.to_string());
                    eprintln!(
                        "trellis::net: accept on {addr} failed: {e}; retrying every \
                         {CAPACITY_RETRY:?} until it succeeds"
                    );
                }
                sleep(CAPACITY_RETRY).await;
            }
            Err(e) if is_one_connection_error(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The process or the system is out of descriptors or memory: a passing shortage.
fn is_capacity_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(errno::EMFILE | errno::ENFILE | errno::ENOBUFS | errno::ENOMEM)
    )
}

/// An error of the one connection being accepted, not of the listener.
fn is_one_connection_error(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | PermissionDenied
            | Interrupted
    ) || e
        .raw_os_error()
        .is_some_and(|code| errno::ONE_CONNECTION.contains(&code))
}

/// Binds [`open_tcp_listeners`]`(port, host)` and serves them with [`serve_listeners`]:
/// a TCP server in one call (Trio's `serve_tcp`). The [`TaskStatus`] gets the listeners'
/// addresses once they are bound and accepting.
///
/// # Errors
///
/// Those of [`open_tcp_listeners`] (reported to `start` as the child's error, before
/// `started`), then those of [`serve_listeners`].
///
/// # Panics
///
/// A handler's panic, resumed as [`serve_listeners`] does.
///
/// # Cancellation
///
/// As [`serve_listeners`]: every connection and listener is closed.
///
/// # Examples
///
/// An echo server on a port of the system's choosing, and a client:
///
/// ```
/// use trellis::net::{TcpStream, serve_tcp};
///
/// async fn echo(stream: TcpStream) -> std::io::Result<()> {
///     let mut buf = [0; 1024];
///     loop {
///         match stream.read(&mut buf).await? {
///             0 => return Ok(()),
///             n => stream.write_all(&buf[..n]).await?,
///         }
///     }
/// }
///
/// trellis::run(async {
///     let done = trellis::cancel_scope(async |scope| {
///         trellis::nursery(async |n| {
///             let addrs = n
///                 .start(async |_n, status| serve_tcp(0, Some("127.0.0.1"), echo, status).await)
///                 .await?; // a `StartError<io::Error>` becomes an `io::Error`
///             let client = TcpStream::connect(addrs[0]).await?;
///             client.write_all(b"ping").await?;
///             let mut buf = [0; 4];
///             client.read_exact(&mut buf).await?;
///             assert_eq!(&buf, b"ping");
///             scope.cancel(); // stop the server
///             Ok(())
///         })
///         .await
///         .map_err(|group| group.into_first())
///     })
///     .await;
///     done.unwrap_or(Ok(()))
/// })
/// .unwrap();
/// ```
pub async fn serve_tcp<H, O, S>(
    port: u16,
    host: Option<&str>,
    handler: H,
    status: S,
) -> io::Result<Infallible>
where
    H: AsyncFn(TcpStream) -> O,
    O: TaskOutput<io::Error>,
    S: Into<Option<TaskStatus<Vec<SocketAddr>>>>,
{
    let listeners = open_tcp_listeners(port, host).await?;
    serve_listeners(listeners, handler, status).await
}
