//! Unix-domain sockets: [`UnixListener`], [`UnixStream`] and [`UnixDatagram`].

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::net::stream::{StreamIo, byte_stream};
use crate::rt::reactor::{Direction, Registered};

/// A Unix-domain socket listening for connections at a path.
///
/// # Examples
///
/// ```
/// use trellis::net::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("trellis-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("listener.sock");
/// # let _ = std::fs::remove_file(&path);
/// trellis::run(async {
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let (server, _) = listener.accept().await?;
///     client.write_all(b"hi").await?;
///     let mut buf = [0; 2];
///     server.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"hi");
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    reg: Registered<std::os::unix::net::UnixListener>,
}

impl UnixListener {
    /// Creates a socket file at `path` and listens on it. The file stays after the
    /// listener is dropped (as with std): remove it when done.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the file exists; the system's error otherwise; an error outside a
    /// runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-bind-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let listener = trellis::net::UnixListener::bind(&path)?;
    ///     assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Takes over a listener made with std, switching it to non-blocking mode.
    ///
    /// # Errors
    ///
    /// An error outside a runtime, or if the socket cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-from-std-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let std_listener = std::os::unix::net::UnixListener::bind(&path)?;
    ///     let listener = trellis::net::UnixListener::from_std(std_listener)?;
    ///     assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            reg: Registered::new(listener)?,
        })
    }

    /// Waits for a connection.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: an accept dropped before it returns has taken no connection.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-accept-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let listener = trellis::net::UnixListener::bind(&path)?;
    ///     let _client = std::os::unix::net::UnixStream::connect(&path)?;
    ///     let (stream, _peer) = listener.accept().await?;
    ///     assert!(stream.local_addr()?.as_pathname().is_some());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// The poll form of [`accept`](Self::accept).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::Poll;
    /// let path = std::env::temp_dir().join(format!("trellis-poll-accept-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let listener = trellis::net::UnixListener::bind(&path)?;
    ///     let idle = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx).is_pending())).await;
    ///     assert!(idle);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        self.reg
            .poll_io(Direction::Read, cx, |l| l.accept())
            .map(|accepted| accepted.and_then(|(s, peer)| Ok((UnixStream::from_std(s)?, peer))))
    }

    /// The connections, as a never-ending [`Stream`](futures_core::Stream) of `accept`
    /// results.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::pin::pin;
    /// use futures_core::Stream;
    /// let path = std::env::temp_dir().join(format!("trellis-incoming-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let listener = trellis::net::UnixListener::bind(&path)?;
    ///     let _client = std::os::unix::net::UnixStream::connect(&path)?;
    ///     let mut incoming = pin!(listener.incoming());
    ///     let first = std::future::poll_fn(|cx| incoming.as_mut().poll_next(cx)).await;
    ///     assert!(first.unwrap().is_ok());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-local-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let listener = trellis::net::UnixListener::bind(&path)?;
    ///     assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reg.get_ref().local_addr()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// The connections of a [`UnixListener`], from [`UnixListener::incoming`].
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl futures_core::Stream for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener
            .poll_accept(cx)
            .map(|accepted| Some(accepted.map(|(stream, _)| stream)))
    }
}

/// A Unix-domain byte stream, with the same methods and `futures-io` impls as
/// [`TcpStream`](crate::net::TcpStream).
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     let (a, b) = trellis::net::UnixStream::pair()?;
///     a.write_all(b"over the pair").await?;
///     let mut buf = [0; 13];
///     b.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"over the pair");
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub struct UnixStream {
    io: StreamIo<std::os::unix::net::UnixStream>,
}

impl UnixStream {
    /// Connects to the listener at `path`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future midway abandons the attempt and closes the socket.
    ///
    /// # Errors
    ///
    /// `NotFound` if no socket file is there, `ConnectionRefused` if nothing listens on
    /// it, `WouldBlock` if the listener's backlog is full (a Unix socket cannot wait for
    /// room: retry later), the system's error otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-connect-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let _listener = std::os::unix::net::UnixListener::bind(&path)?;
    ///     let stream = trellis::net::UnixStream::connect(&path).await?;
    ///     assert_eq!(stream.peer_addr()?.as_pathname(), Some(path.as_path()));
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        Ok(UnixStream {
            io: StreamIo::connect(socket, &SockAddr::unix(path)?).await?,
        })
    }

    /// A connected pair of streams (`socketpair`).
    ///
    /// # Errors
    ///
    /// The system's error; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, b) = trellis::net::UnixStream::pair()?;
    ///     a.write_all(b"x").await?;
    ///     let mut one = [0; 1];
    ///     b.read_exact(&mut one).await?;
    ///     assert_eq!(&one, b"x");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Takes over a stream made with std, switching it to non-blocking mode.
    ///
    /// # Errors
    ///
    /// An error outside a runtime, or if the socket cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    ///     let a = trellis::net::UnixStream::from_std(a)?;
    ///     assert!(a.peer_addr().is_ok());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: StreamIo::from_std(stream)?,
        })
    }

    /// Gives the stream back to std (deregistered, still non-blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, _b) = trellis::net::UnixStream::pair()?;
    ///     let std_stream = a.into_std();
    ///     assert!(std_stream.peer_addr().is_ok());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn into_std(self) -> std::os::unix::net::UnixStream {
        self.io.into_inner()
    }

    /// The address of the other end (unnamed for a pair or a client that did not bind).
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, _b) = trellis::net::UnixStream::pair()?;
    ///     assert!(a.peer_addr()?.is_unnamed(), "a pair's ends have no path");
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
    ///     let (a, _b) = trellis::net::UnixStream::pair()?;
    ///     assert!(a.local_addr()?.is_unnamed());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }
}

byte_stream!(
    UnixStream,
    "# trellis::run(async {
let (a, b) = trellis::net::UnixStream::pair()?;"
);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// A Unix-domain datagram socket.
///
/// # Examples
///
/// ```
/// trellis::run(async {
///     let (a, b) = trellis::net::UnixDatagram::pair()?;
///     a.send(b"one datagram").await?;
///     let mut buf = [0; 32];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one datagram");
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub struct UnixDatagram {
    reg: Registered<std::os::unix::net::UnixDatagram>,
}

impl UnixDatagram {
    /// A socket bound to `path` (the file stays after the socket is dropped).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the file exists; the system's error; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-dgram-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let server = trellis::net::UnixDatagram::bind(&path)?;
    ///     let client = trellis::net::UnixDatagram::unbound()?;
    ///     client.send_to(b"hello", &path).await?;
    ///     let mut buf = [0; 8];
    ///     let (n, _from) = server.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address, for sending: a receiver sees its datagrams come from
    /// an unnamed address, which no reply can reach (Linux gives a sending socket an
    /// abstract address of its own only when `SO_PASSCRED` is set). To get replies, bind
    /// the client to a path of its own with [`bind`](Self::bind).
    ///
    /// # Errors
    ///
    /// The system's error; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let socket = trellis::net::UnixDatagram::unbound()?;
    ///     assert!(socket.local_addr()?.as_pathname().is_none());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::unbound()?)
    }

    /// A connected pair.
    ///
    /// # Errors
    ///
    /// The system's error; an error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, b) = trellis::net::UnixDatagram::pair()?;
    ///     b.send(b"back").await?;
    ///     let mut buf = [0; 8];
    ///     assert_eq!(a.recv(&mut buf).await?, 4);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Takes over a socket made with std, switching it to non-blocking mode.
    ///
    /// # Errors
    ///
    /// An error outside a runtime, or if the socket cannot be made non-blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let socket = std::os::unix::net::UnixDatagram::unbound()?;
    ///     let _socket = trellis::net::UnixDatagram::from_std(socket)?;
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram {
            reg: Registered::new(socket)?,
        })
    }

    /// Sets the one peer that [`send`](Self::send) and [`recv`](Self::recv) use.
    ///
    /// # Errors
    ///
    /// The system's error (`NotFound`, `ConnectionRefused`).
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-dgram-connect-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let server = trellis::net::UnixDatagram::bind(&path)?;
    ///     let client = trellis::net::UnixDatagram::unbound()?;
    ///     client.connect(&path)?;
    ///     client.send(b"hi").await?;
    ///     let mut buf = [0; 2];
    ///     assert_eq!(server.recv(&mut buf).await?, 2);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.reg.get_ref().connect(path)
    }

    /// Sends one datagram to the socket at `path`.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has sent nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-sendto-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let _server = trellis::net::UnixDatagram::bind(&path)?;
    ///     let client = trellis::net::UnixDatagram::unbound()?;
    ///     assert_eq!(client.send_to(b"hello", &path).await?, 5);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        self.reg
            .io(Direction::Write, |s| s.send_to(buf, path))
            .await
    }

    /// Receives one datagram and its sender's address (unnamed for an unbound sender). A
    /// datagram longer than `buf` is cut to fit; the rest is lost.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has taken no datagram.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("trellis-doc-recvfrom-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// trellis::run(async {
    ///     let server = trellis::net::UnixDatagram::bind(&path)?;
    ///     let client = trellis::net::UnixDatagram::unbound()?;
    ///     client.send_to(b"hello", &path).await?;
    ///     let mut buf = [0; 8];
    ///     let (n, _from) = server.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.reg.io(Direction::Read, |s| s.recv_from(buf)).await
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has sent nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, _b) = trellis::net::UnixDatagram::pair()?;
    ///     assert_eq!(a.send(b"one").await?, 3);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.reg.io(Direction::Write, |s| s.send(buf)).await
    }

    /// Receives one datagram from the connected peer. A datagram longer than `buf` is cut
    /// to fit; the rest is lost.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has taken no datagram.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let (a, b) = trellis::net::UnixDatagram::pair()?;
    ///     a.send(b"one").await?;
    ///     let mut buf = [0; 8];
    ///     let n = b.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"one");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.reg.io(Direction::Read, |s| s.recv(buf)).await
    }

    /// This socket's address.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let socket = trellis::net::UnixDatagram::unbound()?;
    ///     assert!(socket.local_addr()?.as_pathname().is_none());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reg.get_ref().local_addr()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
