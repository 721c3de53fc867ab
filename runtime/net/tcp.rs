//! TCP: [`TcpListener`] and [`TcpStream`].
//!
//! Both are a socket registered with the runtime's reactor and nothing more (the state is
//! the kernel's). They belong to the runtime that made them and are `!Send`; a listener or
//! stream made elsewhere comes in through `from_std`.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::net::stream::{StreamIo, byte_stream};
use crate::rt::reactor::{Direction, Registered};

/// The listen backlog: enough for a burst of a thousand connects without the kernel
/// dropping SYNs (which the client would retry only a second later). The kernel caps it
/// at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

/// How [`TcpListener::bind_with`] sets a listening socket up, beyond `SO_REUSEADDR`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ListenOptions {
    /// `SO_REUSEPORT`: several listeners share the address.
    pub(crate) reuse_port: bool,
    /// `IPV6_V6ONLY` on an IPv6 address, so that `0.0.0.0` and `::` can both hold a port.
    pub(crate) only_v6: bool,
}

/// A TCP socket listening for connections.
///
/// # Examples
///
/// ```
/// use trellis::net::{TcpListener, TcpStream};
///
/// trellis::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     trellis::nursery(async |n| {
///         n.spawn(async move {
///             let (stream, _peer) = listener.accept().await.unwrap();
///             stream.write_all(b"welcome").await.unwrap();
///         });
///         let client = TcpStream::connect(addr).await.unwrap();
///         let mut buf = [0; 7];
///         client.read_exact(&mut buf).await.unwrap();
///         assert_eq!(&buf, b"welcome");
///     })
///     .await
///     .unwrap();
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct TcpListener {
    reg: Registered<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds a listener to `addr` (port 0 picks a free port: see
    /// [`local_addr`](Self::local_addr)), with `SO_REUSEADDR` set, as std does. A name
    /// such as `"localhost:8080"` is resolved with the system's resolver, which blocks;
    /// pass an address, or resolve with [`lookup_host`](crate::net::lookup_host) first.
    ///
    /// Tries each address `addr` resolves to, in order, and returns the last error if none
    /// binds.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `addr` names no address; the system's error (`AddrInUse`,
    /// `PermissionDenied`, …) if binding fails; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     assert_ne!(listener.local_addr()?.port(), 0);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |addr| {
            TcpListener::bind_with(addr, ListenOptions::default())
        })
    }

    /// Binds like [`bind`](Self::bind), with `SO_REUSEPORT` also set: several listeners
    /// (one per thread, each in its own runtime) may bind the same address, and the kernel
    /// spreads incoming connections over them (Linux). This is how one runtime per core
    /// shares a port (`examples/multicore_echo.rs`).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let first = trellis::net::TcpListener::bind_reuse_port("127.0.0.1:0")?;
    ///     let second = trellis::net::TcpListener::bind_reuse_port(first.local_addr()?)?;
    ///     assert_eq!(first.local_addr()?, second.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn bind_reuse_port(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let options = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        each_addr(addr, |addr| TcpListener::bind_with(addr, options))
    }

    /// A listener on `addr` with `SO_REUSEADDR`, the backlog, and `options`.
    pub(crate) fn bind_with(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if options.only_v6 && addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(BACKLOG)?;
        TcpListener::from_std(socket.into())
    }

    /// Takes over a listener made with std (or socket2), switching it to non-blocking
    /// mode.
    ///
    /// # Errors
    ///
    /// An error outside a runtime, or if the socket cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let listener = trellis::net::TcpListener::from_std(std_listener)?;
    ///     assert!(listener.local_addr()?.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            reg: Registered::new(listener)?,
        })
    }

    /// Gives the listener back to std (deregistered, still non-blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     assert_eq!(listener.into_std().local_addr()?, addr);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn into_std(self) -> std::net::TcpListener {
        self.reg.into_inner()
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: an accept dropped before it returns has taken no connection; the
    /// next accept gets it.
    ///
    /// # Errors
    ///
    /// The system's error. Some (`ECONNABORTED`, a peer that gave up while queued;
    /// `EMFILE`, out of descriptors) concern one connection or a passing shortage, so a
    /// server loop should usually log and continue ([`serve_listeners`](crate::net::serve_listeners)
    /// does, sleeping briefly on `EMFILE`).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    ///     let (stream, peer) = listener.accept().await?;
    ///     assert_eq!(peer, client.local_addr()?);
    ///     assert_eq!(stream.peer_addr()?, peer);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// The poll form of [`accept`](Self::accept), for hand-written futures and streams.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::Poll;
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let nothing_yet = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx).is_pending())).await;
    ///     assert!(nothing_yet);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        self.reg
            .poll_io(Direction::Read, cx, |l| l.accept())
            .map(|accepted| accepted.and_then(|(s, peer)| Ok((TcpStream::from_std(s)?, peer))))
    }

    /// The connections, as a [`Stream`](futures_core::Stream) of `accept` results that never
    /// ends.
    ///
    /// # Examples
    ///
    /// With the `futures-core` crate's `Stream` trait (add it, or use `futures`'
    /// `StreamExt::next`):
    ///
    /// ```
    /// use std::pin::pin;
    /// use futures_core::Stream;
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
    ///     let mut incoming = pin!(listener.incoming());
    ///     let first = std::future::poll_fn(|cx| incoming.as_mut().poll_next(cx)).await;
    ///     assert!(first.unwrap().is_ok());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = trellis::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     assert!(addr.ip().is_loopback());
    ///     assert_ne!(addr.port(), 0, "port 0 was replaced by the port picked");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reg.get_ref().local_addr()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// The connections of a [`TcpListener`], from [`TcpListener::incoming`]: a stream of
/// `io::Result<TcpStream>` that never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener
            .poll_accept(cx)
            .map(|accepted| Some(accepted.map(|(stream, _)| stream)))
    }
}

/// A TCP connection: read and write it with the async methods, or through
/// [`futures_io::AsyncRead`] / [`AsyncWrite`](futures_io::AsyncWrite) (implemented for
/// `TcpStream` and `&TcpStream`), which codecs and TLS crates use.
///
/// Dropping it closes the connection. It belongs to the runtime that made it (`!Send`).
///
/// # Examples
///
/// See [`TcpListener`].
pub struct TcpStream {
    io: StreamIo<std::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr`, waiting for the handshake without blocking the runtime, with
    /// `TCP_NODELAY` set (see [`set_nodelay`](Self::set_nodelay)). For a
    /// host name, or to race several addresses, use
    /// [`open_tcp_stream`](crate::net::open_tcp_stream).
    ///
    /// # Cancellation
    ///
    /// Dropping the future midway abandons the attempt and closes the socket.
    ///
    /// # Errors
    ///
    /// The system's error: `ConnectionRefused`, `TimedOut`, an unreachable network, …;
    /// an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     assert_eq!(stream.peer_addr()?, listener.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_tcp_nodelay(true)?;
        Ok(TcpStream {
            io: StreamIo::connect(socket, &SockAddr::from(addr)).await?,
        })
    }

    /// Takes over a connected stream made with std, switching it to non-blocking mode and
    /// setting `TCP_NODELAY`, as every trellis TCP stream has it (see
    /// [`set_nodelay`](Self::set_nodelay)).
    ///
    /// # Errors
    ///
    /// An error outside a runtime, or if the socket cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let std_stream = std::net::TcpStream::connect(listener.local_addr()?)?;
    ///     let stream = trellis::net::TcpStream::from_std(std_stream)?;
    ///     assert!(stream.local_addr()?.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nodelay(true)?;
        Ok(TcpStream {
            io: StreamIo::from_std(stream)?,
        })
    }

    /// Gives the stream back to std (deregistered, still non-blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     let std_stream = stream.into_std();
    ///     assert_eq!(std_stream.peer_addr()?, listener.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn into_std(self) -> std::net::TcpStream {
        self.io.into_inner()
    }

    /// The address of the other end.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     assert_eq!(stream.peer_addr()?, listener.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// This end's address.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     let (accepted, _) = listener.accept()?;
    ///     assert_eq!(stream.local_addr()?, accepted.peer_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Sets or clears `TCP_NODELAY`: send small writes at once instead of holding them back
    /// to coalesce them (Nagle's algorithm).
    ///
    /// Every trellis TCP stream starts with it **set** (connected, accepted or taken over
    /// with `from_std`), as in Trio: a request/response protocol otherwise waits up to the
    /// peer's delayed-ACK timer (about 40 ms) on a small write that follows another, and on
    /// a mock clock with autojump bytes the kernel holds back are invisible: every task
    /// looks blocked, and virtual time jumps past a deadline the data would have met.
    /// Clear it for a bulk sender that writes in small pieces.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     assert!(stream.nodelay()?, "set on every trellis TCP stream");
    ///     stream.set_nodelay(false)?;
    ///     assert!(!stream.nodelay()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let stream = trellis::net::TcpStream::connect(listener.local_addr()?).await?;
    ///     assert!(stream.nodelay()?, "on by default");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get_ref().nodelay()
    }
}

byte_stream!(
    TcpStream,
    "# use trellis::net::{TcpListener, TcpStream};
# trellis::run(async {
# let listener = TcpListener::bind(\"127.0.0.1:0\")?;
let a = TcpStream::connect(listener.local_addr()?).await?;
let (b, _) = listener.accept().await?;"
);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// Tries `f` on each address `addr` resolves to; the first success, or the last error.
pub(crate) fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(done) => return Ok(done),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address given resolves to no address",
        )
    }))
}
