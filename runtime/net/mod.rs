//! Networking: TCP, UDP and Unix-domain sockets on the runtime's reactor.
//!
//! The low level is [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`],
//! [`UnixStream`] and [`UnixDatagram`]: std's sockets in non-blocking mode, registered with
//! the reactor of the runtime that made them (so they are `!Send`, and using one in
//! another runtime is an error). Byte streams implement [`futures_io::AsyncRead`] and
//! [`AsyncWrite`](futures_io::AsyncWrite), so codecs, `futures-lite`'s extension traits and
//! TLS crates such as futures-rustls work on them unchanged (and a TLS stream is again a
//! stream: TLS over TLS needs nothing more).
//!
//! The streams do not implement `AsyncBufRead`: a socket has no buffer of its own, and
//! one added here would hold bytes a cancelled caller never saw. Wrap a stream in
//! `futures_lite::io::BufReader` (or `futures::io::BufReader`) to read lines.
//!
//! Every operation is tried at once and parks the task only if the kernel says it would
//! block, so an operation that has not returned has moved no byte: dropping it midway (a
//! timeout, a cancelled scope) loses nothing. Each says so under `# Cancellation`.
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
