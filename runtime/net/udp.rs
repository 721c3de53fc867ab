//! UDP: [`UdpSocket`].

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::task::{Context, Poll};

use crate::rt::reactor::{Direction, Registered};

/// A UDP socket: datagrams sent to and received from any address, or, after
/// [`connect`](Self::connect), one peer.
///
/// # Examples
///
/// ```
/// use trellis::net::UdpSocket;
///
/// trellis::run(async {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     a.send_to(b"ping", b.local_addr()?).await?;
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!(&buf[..n], b"ping");
///     assert_eq!(from, a.local_addr()?);
/// # Ok::<(), std::io::Error>(()) }).unwrap();
/// ```
pub struct UdpSocket {
    reg: Registered<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds a socket to `addr` (port 0 picks a free port). Names are resolved with the
    /// system's resolver, which blocks: pass an address.
    ///
    /// # Errors
    ///
    /// The system's error (`AddrInUse`, …), `InvalidInput` if `addr` names no address, an
    /// error outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let socket = trellis::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     assert_ne!(socket.local_addr()?.port(), 0);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        UdpSocket::from_std(std::net::UdpSocket::bind(addr)?)
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
    ///     let std_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let socket = trellis::net::UdpSocket::from_std(std_socket)?;
    ///     assert!(socket.local_addr()?.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            reg: Registered::new(socket)?,
        })
    }

    /// Sets the one peer that [`send`](Self::send) sends to and [`recv`](Self::recv)
    /// receives from (datagrams from other addresses are then dropped by the kernel).
    /// Datagrams already queued when `connect` is called stay queued, whoever sent them, and
    /// the next receives return them first: use [`recv_from`](Self::recv_from) to see the
    /// sender if that matters. Calling it again moves the filter to the new peer.
    ///
    /// # Errors
    ///
    /// The system's error; `InvalidInput` if `addr` names no address.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///     a.connect(b.local_addr()?)?;
    ///     b.connect(a.local_addr()?)?;
    ///     a.send(b"hello").await?;
    ///     let mut buf = [0; 16];
    ///     let n = b.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    ///     assert_eq!(a.peer_addr()?, b.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.reg.get_ref().connect(addr)
    }

    /// Sends one datagram to `target`; returns the bytes sent.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has sent nothing.
    ///
    /// # Errors
    ///
    /// The system's error (a datagram too large is `InvalidInput` or the system's
    /// `EMSGSIZE`).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///
    ///     let sent = a.send_to(b"hello", b.local_addr()?).await?;
    ///     assert_eq!(sent, 5);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.reg
            .io(Direction::Write, |s| s.send_to(buf, target))
            .await
    }

    /// Receives one datagram and the address it came from. A datagram longer than `buf`
    /// is cut to fit (the rest is lost, as with std).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has taken no datagram.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///
    ///     a.send_to(b"hi", b.local_addr()?).await?;
    ///     let mut buf = [0; 8];
    ///     let (n, from) = b.recv_from(&mut buf).await?;
    ///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
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
    /// # Errors
    ///
    /// The system's error; before [`connect`](Self::connect), the system's "destination
    /// address required" (`EDESTADDRREQ`). When nothing is bound at the peer's port, the
    /// refusal the peer's host answers with comes back as `ConnectionRefused` from a later
    /// `send` or [`recv`](Self::recv) (once per answer; the call after it goes on). An
    /// unconnected socket hears nothing of refusals: [`send_to`](Self::send_to) to a port
    /// where nothing is bound succeeds, and so do later calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///     a.connect(b.local_addr()?)?;
    ///     b.connect(a.local_addr()?)?;
    ///
    ///     assert_eq!(a.send(b"ping").await?, 4);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.reg.io(Direction::Write, |s| s.send(buf)).await
    }

    /// Receives one datagram from the connected peer. A datagram longer than `buf` is cut
    /// to fit, as with [`recv_from`](Self::recv_from) (an empty `buf` takes a whole
    /// datagram and returns 0; so does a datagram of no bytes).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropped before it returns, it has taken no datagram.
    ///
    /// # Errors
    ///
    /// The system's error, among them a refusal reported by the peer's host
    /// (`ConnectionRefused`, see [`send`](Self::send)).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///     a.connect(b.local_addr()?)?;
    ///     b.connect(a.local_addr()?)?;
    ///
    ///     a.send(b"ping").await?;
    ///     let mut buf = [0; 8];
    ///     let n = b.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"ping");
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.reg.io(Direction::Read, |s| s.recv(buf)).await
    }

    /// The poll form of [`recv_from`](Self::recv_from), for hand-written futures.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::Poll;
    /// trellis::run(async {
    ///     let socket = trellis::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let mut buf = [0; 8];
    ///     let idle = std::future::poll_fn(|cx| Poll::Ready(socket.poll_recv_from(cx, &mut buf).is_pending())).await;
    ///     assert!(idle);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.reg.poll_io(Direction::Read, cx, |s| s.recv_from(buf))
    }

    /// This socket's address.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::run(async {
    ///     let socket = trellis::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     assert!(socket.local_addr()?.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reg.get_ref().local_addr()
    }

    /// The connected peer's address; `NotConnected` before [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///
    ///     assert!(a.peer_addr().is_err(), "not connected yet");
    ///     a.connect(b.local_addr()?)?;
    ///     assert_eq!(a.peer_addr()?, b.local_addr()?);
    /// # Ok::<(), std::io::Error>(()) }).unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.reg.get_ref().peer_addr()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
