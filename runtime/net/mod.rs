//! Networking: TCP, UDP and Unix-domain sockets on the runtime's reactor.
//!
//! The low level is [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`],
//! [`UnixStream`] and [`UnixDatagram`]: std's sockets in non-blocking mode, registered with
//! the reactor of the runtime that made them (so they are `!Send`, and every read, write,
//! send, receive, accept or connect on one in another runtime, or outside any, returns an
//! error, whether or not it would have had to wait; what never waits, the addresses, the
//! options, `shutdown`, `close` and UDP's `connect`, works anywhere, as does `into_std`,
//! the way to move a socket to another runtime). Byte streams implement [`futures_io::AsyncRead`] and
//! [`AsyncWrite`](futures_io::AsyncWrite), so codecs, `futures-lite`'s extension traits and
//! TLS crates such as futures-rustls work on them unchanged (and a TLS stream is again a
//! stream: TLS over TLS needs nothing more).
//!
//! The streams do not implement `AsyncBufRead`: a socket has no buffer of its own, and
//! one added here would hold bytes a cancelled caller never saw. Wrap a stream in
//! `futures_lite::io::BufReader` (or `futures::io::BufReader`) to read lines.
//!
//! The high level is Trio's: [`lookup_host`] resolves a name on a worker thread;
//! [`open_tcp_stream`] connects to a host with Happy Eyeballs (RFC 8305), racing its
//! addresses in a nursery ([`connect_happy_eyeballs`] races addresses you have, and
//! [`ConnectError`] keeps every failed attempt); [`open_tcp_listeners`],
//! [`serve_listeners`] and [`serve_tcp`] run a server whose connections are tasks of one
//! nursery, reporting its addresses through `Nursery::start`'s
//! [`TaskStatus`](crate::TaskStatus):
//!
//! ```
//! use trellis::net::{TcpStream, open_tcp_stream, serve_tcp};
//!
//! async fn shout(stream: TcpStream) -> std::io::Result<()> {
//!     let mut buf = [0; 5];
//!     stream.read_exact(&mut buf).await?;
//!     stream.write_all(&buf.to_ascii_uppercase()).await
//! }
//!
//! trellis::run(async {
//!     let done = trellis::cancel_scope(async |server| {
//!         trellis::nursery(async |n| {
//!             let addrs = n
//!                 .start(async |_n, status| serve_tcp(0, Some("127.0.0.1"), shout, status).await)
//!                 .await?; // a `StartError<io::Error>` becomes an `io::Error`
//!             let client = open_tcp_stream("localhost", addrs[0].port()).await?;
//!             client.write_all(b"hello").await?;
//!             let mut buf = [0; 5];
//!             client.read_exact(&mut buf).await?;
//!             assert_eq!(&buf, b"HELLO");
//!             server.cancel(); // stops the server, closing its connections
//!             Ok(())
//!         })
//!         .await
//!         .map_err(|group| group.into_first())
//!     })
//!     .await;
//!     done.unwrap_or(Ok(()))
//! })
//! .unwrap();
//! ```
//!
//! Every operation is tried at once and parks the task only if the kernel says it would
//! block, so an operation that has not returned has moved no byte: dropping it midway (a
//! timeout, a cancelled scope) loses nothing. Each says so under `# Cancellation`. The
//! exceptions are the loops over them, `read_exact` and `write_all`: dropped midway, they
//! have moved a part of the buffer without saying how much (their docs say so).
//!
//! Dropping a socket closes it; a task's sockets are dropped when the task is, so a
//! cancelled nursery closes every connection its tasks held.
//!
//! # Layer
//!
//! Above `sync` and `thread` (name resolution runs on a worker thread), below the crate
//! root. The only `unsafe` stays in the reactor (`rt/reactor.rs`).

#![forbid(unsafe_code)]

pub(crate) mod happy_eyeballs;
pub(crate) mod resolve;
pub(crate) mod serve;
pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod unix;

pub use happy_eyeballs::{
    ConnectError, HAPPY_EYEBALLS_DELAY, connect_happy_eyeballs, open_tcp_stream,
    open_tcp_stream_with_delay,
};
pub use resolve::lookup_host;
pub use serve::{open_tcp_listeners, serve_listeners, serve_tcp};
pub use stream::{ReadHalf, ReuniteError, WriteHalf};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};
