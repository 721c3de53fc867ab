//! Adversarial programs against the documented promises of networking (`trellis::net`)
//! and signals, second pass: the promises `adversarial_net.rs` leaves alone. Half-closes
//! on both ends at once and split halves dropped in each order; addresses after the peer
//! left; `TCP_NODELAY` on every way a stream is made; reads of every size against a peer
//! writing one byte at a time; UDP's connected filter, refusals, truncation, empty and
//! largest datagrams; Unix datagrams with paths, abstract names and unbound senders;
//! `bind`'s "each address in order, the last error"; servers with several listeners, a
//! handler shielded past the server's cancellation; `open_tcp_listeners` and
//! `open_tcp_stream` by name; two accepts on one listener; a thousand connect/close cycles
//! counted in `/proc/self/fd`; `ctrl_c` beside a receiver of `SIGINT`, receivers whose
//! `recv` was forgotten, signals raised by a worker thread. Each test names the promise it
//! attacks and where it is written down.
//!
//! Loopback only (127.0.0.1, and ::1 where the machine has it), bounded in count; every
//! test under the watchdog, on the autojump clock where it needs time (loopback I/O is
//! signalled to the reactor before virtual time moves, as `adversarial_net.rs` explains).
//! Nothing sleeps for real.
//!
//! Signals are process-wide: each signal test uses signals of its own (real-time signals
//! 46 to 48, raised only while a receiver of them is open), and the one test of `SIGINT`
//! runs in a child process of its own, so that a mistake ends the child, not this run.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::{
    HANG_LIMIT, pattern, poll_once_then_drop, read_to_eof, tcp_pair, virtual_test, watchdog,
};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use trellis::net::{
    ConnectError, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
    connect_happy_eyeballs, lookup_host, open_tcp_listeners, open_tcp_stream, serve_listeners,
    serve_tcp,
};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    Builder, CancelScope, StartError, move_on_after, nursery, open_signal_receiver, shield, sleep,
    to_thread, yield_now,
};

// ---------------------------------------------------------------------------------------
// Helpers

/// Whether the peer of `stream` has ended it within a virtual minute: `Some(true)` for
/// end-of-stream (or a reset), `Some(false)` for bytes, `None` if it is still open.
async fn ended<S>(mut stream: S) -> Option<bool>
where
    S: AsyncRead + Unpin,
{
    match move_on_after(Duration::from_secs(60), stream.read(&mut [0; 64])).await? {
        Ok(0) => Some(true),
        Ok(_) => Some(false),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some(true),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// A fresh directory for this test's socket files.
fn socket_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-adv-net2-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_error(e: StartError<io::Error>) -> io::Error {
    io::Error::other(e.to_string())
}

/// A UDP port on 127.0.0.1 where nothing is bound (bound by a socket, then dropped).
fn vacant_udp_port() -> SocketAddr {
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    gone.local_addr().unwrap()
}

/// A TCP port on 127.0.0.1 where nothing listens.
fn vacant_tcp_port() -> SocketAddr {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    gone.local_addr().unwrap()
}

/// Whether this machine has ::1.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------
// Byte streams: half-closes, split halves, addresses, options

/// Both ends write a payload larger than the kernel's buffers, close their writing side
/// (`poll_close`, "Shuts down the writing side (the peer reads end-of-stream)") and read
/// until end-of-stream, all at once.
async fn crossing_half_closes<S>(a: &S, b: &S)
where
    for<'x> &'x S: AsyncRead + AsyncWrite + Unpin,
{
    const LEN: usize = 300_000;
    let got = RefCell::new(Vec::new());
    nursery(async |n| {
        for (id, (me, peer)) in [(a, b), (b, a)].into_iter().enumerate() {
            n.spawn(async move {
                let mut w = me;
                w.write_all(&pattern(id, LEN)).await?;
                w.close().await?;
                w.close().await?; // a second close: nothing more to say, still Ok
                io::Result::Ok(())
            });
            let got = &got;
            n.spawn(async move {
                let all = read_to_eof(peer).await?;
                // After the end, the end again.
                assert_eq!((&mut &*peer).read(&mut [0; 8]).await?, 0);
                got.borrow_mut().push((id, all));
                io::Result::Ok(())
            });
        }
        io::Result::Ok(())
    })
    .await
    .unwrap();
    let mut got = got.into_inner();
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got.len(), 2);
    for (id, all) in got {
        assert_eq!(all.len(), LEN, "side {id}");
        assert!(all == pattern(id, LEN), "side {id}'s bytes differ");
    }
    // Both directions are closed: closing again is "closed enough".
    (&mut &*a).close().await.unwrap();
    (&mut &*b).close().await.unwrap();
}

/// Attacks `shutdown`'s "Shutting down writing sends end-of-stream: the peer's reads
/// return `Ok(0)` after the data already sent (a half-close; this side may still read)"
/// and `poll_close`'s "Shuts down the writing side" (runtime/net/stream.rs) with both ends
/// half-closing at once, each with 300 kB in flight the other has not read yet: each end
/// reads every byte of the other, then end-of-stream, and end-of-stream again; TCP and
/// Unix streams.
#[test]
fn both_ends_half_close_at_once_with_bytes_in_flight_and_each_reads_all_then_eof() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        crossing_half_closes(&a, &b).await;
        let (a, b) = UnixStream::pair().unwrap();
        crossing_half_closes(&a, &b).await;
    });
}

/// Attacks the split halves' "Dropping both halves closes the socket" (`ReadHalf`) and
/// "Its `close` shuts down writing; dropping it does not (the socket closes when both
/// halves are gone)" (`WriteHalf`, runtime/net/stream.rs), in each order: a dropped read
/// half leaves the write half writing and the peer sees no end; a dropped write half
/// leaves the read half reading and the peer sees no end; the peer sees the end only when
/// the second half goes. And a half-closed write half (closed, then dropped) leaves its
/// read half reading what the peer still sends.
#[test]
fn split_halves_dropped_in_each_order_close_the_socket_only_with_the_second() {
    virtual_test(async || {
        // The read half first.
        let (a, peer) = tcp_pair().await;
        let (reader, mut writer) = a.split();
        drop(reader);
        assert_eq!(ended(&peer).await, None, "a write half alone keeps it open");
        writer.write_all(b"still here").await.unwrap();
        let mut ten = [0; 10];
        peer.read_exact(&mut ten).await.unwrap();
        assert_eq!(&ten, b"still here");
        drop(writer);
        assert_eq!(ended(&peer).await, Some(true), "both halves gone");

        // The write half first.
        let (a, peer) = tcp_pair().await;
        let (mut reader, writer) = a.split();
        drop(writer);
        assert_eq!(
            ended(&peer).await,
            None,
            "dropping the write half sends no end"
        );
        peer.write_all(b"to the reader").await.unwrap();
        let mut buf = [0; 13];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to the reader");
        // The socket still writes, through the stream the read half shows.
        reader.stream().write_all(b"x").await.unwrap();
        assert_eq!(ended(&peer).await, Some(false), "the byte, not an end");
        drop(reader);
        assert_eq!(ended(&peer).await, Some(true), "both halves gone");

        // Closed, then dropped: the read half reads on; the peer saw the end once.
        let (a, peer) = UnixStream::pair().unwrap();
        let (mut reader, mut writer) = a.split();
        writer.close().await.unwrap();
        drop(writer);
        assert_eq!(ended(&peer).await, Some(true), "the close's end-of-stream");
        peer.write_all(b"after the half-close").await.unwrap();
        let mut buf = [0; 20];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"after the half-close");
        peer.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
    });
}

/// Attacks `local_addr` / `peer_addr` ("This end's address", "The address of the other
/// end", runtime/net/tcp.rs and unix.rs) after the peer has gone: with the peer's end
/// received (and even read), both addresses still answer with what they were, for TCP and
/// for a Unix stream connected to a path whose listener and file are gone by then.
#[test]
fn addresses_still_answer_after_the_peer_closed() {
    let dir = socket_dir("addrs");
    let path = dir.join("l.sock");
    virtual_test(async move || {
        let (a, b) = tcp_pair().await;
        let (local, peer) = (a.local_addr().unwrap(), a.peer_addr().unwrap());
        drop(b);
        assert_eq!(ended(&a).await, Some(true));
        assert_eq!(a.local_addr().unwrap(), local);
        assert_eq!(a.peer_addr().unwrap(), peer, "after the peer's end");
        let (reader, writer) = a.split();
        assert_eq!(reader.stream().peer_addr().unwrap(), peer);
        assert_eq!(writer.stream().local_addr().unwrap(), local);

        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        drop((listener, server));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(ended(&client).await, Some(true));
        let peer = client.peer_addr().unwrap();
        assert_eq!(
            peer.as_pathname(),
            Some(path.as_path()),
            "the path it connected to"
        );
        assert!(client.local_addr().unwrap().is_unnamed());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Attacks `set_nodelay`'s "Every trellis TCP stream starts with it **set** (connected,
/// accepted or taken over with `from_std`)" (runtime/net/tcp.rs) on every way a trellis
/// stream comes to be: `connect`, `accept`, `poll_accept` through `incoming`, `from_std`
/// of a stream std made without it, `open_tcp_stream` by name, `connect_happy_eyeballs`,
/// a `serve_tcp` handler's stream, and on IPv6 where the machine has it. A stream given
/// back with `into_std` and taken over again has it set again.
#[test]
fn every_way_of_making_a_tcp_stream_sets_nodelay() {
    use futures_lite::StreamExt;
    virtual_test(async || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut streams = Vec::new();
        streams.push(("connect", TcpStream::connect(addr).await.unwrap()));
        streams.push(("accept", listener.accept().await.unwrap().0));
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let next = listener.incoming().next().await;
        streams.push(("incoming", next.unwrap().unwrap()));
        let plain = std::net::TcpStream::connect(addr).unwrap();
        assert!(!plain.nodelay().unwrap(), "std leaves it clear");
        streams.push(("from_std", TcpStream::from_std(plain).unwrap()));
        let port = addr.port();
        streams.push((
            "open_tcp_stream",
            open_tcp_stream("localhost", port).await.unwrap(),
        ));
        let raced = connect_happy_eyeballs([addr, addr], Duration::ZERO).await;
        streams.push(("connect_happy_eyeballs", raced.unwrap()));
        let back = TcpStream::connect(addr).await.unwrap();
        back.set_nodelay(false).unwrap();
        let std_back = back.into_std();
        assert!(!std_back.nodelay().unwrap());
        streams.push((
            "into_std then from_std",
            TcpStream::from_std(std_back).unwrap(),
        ));
        if has_ipv6_loopback() {
            let v6 = TcpListener::bind("[::1]:0").unwrap();
            let c = TcpStream::connect(v6.local_addr().unwrap()).await.unwrap();
            streams.push(("IPv6 connect", c));
            streams.push(("IPv6 accept", v6.accept().await.unwrap().0));
        }
        for (how, stream) in &streams {
            assert!(stream.nodelay().unwrap(), "{how}: TCP_NODELAY is clear");
        }

        let handler_saw = Cell::new(None);
        let server = CancelScope::new();
        nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    let handler = async |s: TcpStream| handler_saw.set(Some(s.nodelay().unwrap()));
                    let serving = serve_tcp(0, Some("127.0.0.1"), handler, status);
                    server.clone().run(serving).await.transpose()
                })
                .await
                .map_err(start_error)?;
            let client = TcpStream::connect(addrs[0]).await?;
            assert_eq!(ended(&client).await, Some(true), "the handler returned");
            server.cancel();
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            handler_saw.get(),
            Some(true),
            "a serve_tcp handler's stream"
        );
    });
}

/// Attacks `read`'s "Reads some bytes into `buf`, waiting until at least one is available"
/// (runtime/net/stream.rs) and `read_exact`'s "Reads exactly `buf.len()` bytes" against a
/// peer that writes one byte at a time with a virtual microsecond between: reads into
/// buffers of every size from 1 to 64 each return between 1 and their size, and the bytes
/// come in order; `read_exact` into buffers of every size gets exactly its size each time;
/// TCP and Unix. A reader never waits for a buffer to fill.
#[test]
fn reads_of_every_size_against_a_peer_writing_one_byte_at_a_time() {
    async fn drip_and_read<S>(a: &S, b: &S)
    where
        for<'x> &'x S: AsyncRead + AsyncWrite + Unpin,
    {
        const LEN: usize = 64 * 65 / 2;
        let sent = pattern(3, 2 * LEN);
        nursery(async |n| {
            let sent = &sent;
            n.spawn(async move {
                let mut w = a;
                for byte in sent {
                    assert_eq!(w.write(std::slice::from_ref(byte)).await?, 1);
                    sleep(Duration::from_micros(1)).await;
                }
                w.close().await
            });
            let mut r = b;
            let mut got = Vec::new();
            for size in 1..=64 {
                let mut buf = vec![0; size];
                let n = r.read(&mut buf).await?;
                assert!((1..=size).contains(&n), "read {n} into {size}");
                got.extend_from_slice(&buf[..n]);
            }
            // read_exact of every size until the bytes run out.
            let mut size = 1;
            while got.len() + size <= sent.len() {
                let mut buf = vec![0; size];
                r.read_exact(&mut buf).await?;
                got.extend_from_slice(&buf);
                size = size % 64 + 1;
            }
            let rest = read_to_eof(r).await?;
            got.extend_from_slice(&rest);
            assert!(got == *sent, "the bytes differ or are out of order");
            io::Result::Ok(())
        })
        .await
        .unwrap();
    }
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        drip_and_read(&a, &b).await;
        let (a, b) = UnixStream::pair().unwrap();
        drip_and_read(&a, &b).await;
    });
}

/// Attacks `read_exact`'s "an `UnexpectedEof` error if the peer closes first" and its
/// cancellation note "the bytes already read into `buf` are consumed from the socket (they
/// are in `buf`, but how many is not reported)" (runtime/net/stream.rs): a peer that sends
/// three bytes and closes fails a five-byte `read_exact` with `UnexpectedEof`, the three
/// bytes are `buf`'s prefix, and the next read is the end, not the three bytes again.
/// `write_all` to a peer that is gone fails with the system's error, not a hang.
#[test]
fn read_exact_cut_by_the_peers_end_keeps_the_prefix_and_write_all_to_a_gone_peer_fails() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        a.write_all(b"abc").await.unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        let mut five = [0; 5];
        let err = b.read_exact(&mut five).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(&five, b"abc\0\0", "the prefix is in the buffer");
        assert_eq!(
            b.read(&mut five).await.unwrap(),
            0,
            "consumed, not put back"
        );

        let (c, d) = UnixStream::pair().unwrap();
        drop(d);
        let err = c.write_all(&[1; 1 << 20]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    });
}

/// Attacks the `futures-io` `poll_write_vectored` of the streams (runtime/net/stream.rs;
/// "Byte streams implement `AsyncWrite`", runtime/net/mod.rs): slices, empty ones among
/// them, arrive in order; a vectored write of nothing but empty slices returns `Ok(0)` at
/// once; and on a full socket a vectored write parks and, dropped, has sent nothing.
#[test]
fn vectored_writes_keep_order_return_zero_for_nothing_and_cancel_cleanly() {
    use std::io::IoSlice;
    virtual_test(async || {
        let (a, b) = UnixStream::pair().unwrap();
        let mut w = &a;
        let slices = [
            IoSlice::new(b"ab"),
            IoSlice::new(b""),
            IoSlice::new(b"cd"),
            IoSlice::new(b"e"),
        ];
        let mut n = w.write_vectored(&slices).await.unwrap();
        let mut expected = b"abcde".to_vec();
        let mut got = vec![0; n];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected[..n]);
        if n < 5 {
            w.write_all(&expected[n..]).await.unwrap();
            let mut rest = vec![0; 5 - n];
            b.read_exact(&mut rest).await.unwrap();
            n = 5;
        }
        assert_eq!(n, 5);
        let empties = [IoSlice::new(b""), IoSlice::new(b"")];
        let zero = poll_once_then_drop(w.write_vectored(&empties)).await;
        assert_eq!(
            zero.map(Result::unwrap),
            Some(0),
            "nothing to write: Ok(0) at once"
        );

        // Fill the socket, then drop a parked vectored write.
        let chunk = vec![9u8; 4096];
        let mut filled = 0;
        while let Some(Ok(k)) = poll_once_then_drop(a.write(&chunk)).await {
            filled += k;
        }
        let big = vec![7u8; 1000];
        let parked = poll_once_then_drop(w.write_vectored(&[IoSlice::new(&big)])).await;
        assert!(parked.is_none(), "a full socket parks the vectored write");
        a.shutdown(Shutdown::Write).unwrap();
        let all = read_to_eof(&b).await.unwrap();
        assert_eq!(all.len(), filled, "the dropped vectored write sent nothing");
        assert!(all.iter().all(|&x| x == 9));
        expected.clear();
    });
}

// ---------------------------------------------------------------------------------------
// Binding: each address in order, the last error

/// Attacks `TcpListener::bind`'s "Tries each address `addr` resolves to, in order, and
/// returns the last error if none binds" and "`InvalidInput` if `addr` names no address"
/// (runtime/net/tcp.rs), and `bind_reuse_port`'s "As `bind`": a taken port then a free one
/// binds the free one; two failing addresses give the second one's error (in both
/// orders); an empty list is `InvalidInput`. `UdpSocket::bind` keeps its own
/// "`InvalidInput` if `addr` names no address".
#[test]
fn bind_tries_each_address_in_order_and_returns_the_last_error() {
    virtual_test(async || {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = taken_addr(&taken);
        // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
        let foreign: SocketAddr = "192.0.2.1:0".parse().unwrap();
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();

        let listener = TcpListener::bind(&[taken, free][..]).unwrap();
        assert_ne!(listener.local_addr().unwrap(), taken);
        let err = TcpListener::bind(&[foreign, taken][..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "the last: {err}");
        let err = TcpListener::bind(&[taken, foreign][..]).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::AddrNotAvailable,
            "the last: {err}"
        );
        let err = TcpListener::bind_reuse_port(&[taken, foreign][..]).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::AddrNotAvailable,
            "the last: {err}"
        );
        let none: &[SocketAddr] = &[];
        let err = TcpListener::bind(none).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = TcpListener::bind_reuse_port(none).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = UdpSocket::bind(none).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    });

    fn taken_addr(listener: &TcpListener) -> SocketAddr {
        listener.local_addr().unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// UDP

/// Attacks `UdpSocket::connect`'s "Sets the one peer that `send` sends to and `recv`
/// receives from (datagrams from other addresses are then dropped by the kernel)"
/// (runtime/net/udp.rs): once connected, datagrams a third socket sends are never
/// returned, by `recv` nor by `recv_from`, while the peer's are; connecting to another
/// peer moves the filter. A datagram that a stranger sent *before* the connect was queued
/// already, and the docs say what becomes of it.
#[test]
fn a_connected_udp_socket_returns_only_its_peers_datagrams() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a_addr = a.local_addr().unwrap();

        // Queued before the connect.
        stranger.send_to(b"early stranger", a_addr).await.unwrap();
        yield_now().await;
        a.connect(peer.local_addr().unwrap()).unwrap();
        let mut buf = [0; 64];
        // What the docs now say: a datagram queued before the connect stays, whoever sent
        // it; `recv_from` tells who.
        let (n, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"early stranger"[..], stranger.local_addr().unwrap())
        );

        for round in 0..10u8 {
            stranger.send_to(&[b's', round], a_addr).await.unwrap();
            peer.send_to(&[b'p', round], a_addr).await.unwrap();
        }
        for round in 0..10u8 {
            let n = if round % 2 == 0 {
                a.recv(&mut buf).await.unwrap()
            } else {
                let (n, from) = a.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, peer.local_addr().unwrap());
                n
            };
            assert_eq!(&buf[..n], &[b'p', round], "only the peer's, in order");
        }
        assert!(
            poll_once_then_drop(a.recv(&mut buf)).await.is_none(),
            "no stranger's"
        );

        // Connected to the stranger now: the old peer is filtered instead.
        a.connect(stranger.local_addr().unwrap()).unwrap();
        peer.send_to(b"old peer", a_addr).await.unwrap();
        stranger.send_to(b"new peer", a_addr).await.unwrap();
        let n = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"new peer");
        assert!(poll_once_then_drop(a.recv(&mut buf)).await.is_none());
    });
}

/// Attacks `send`'s and `send_to`'s "The system's error" and `recv`'s cancellation
/// (runtime/net/udp.rs) around a port where nothing is bound: a connected socket learns of
/// the refusal from the ICMP answer on a later call (`ConnectionRefused`, once, then it
/// sends and receives again); an unconnected socket hears nothing of it and goes on
/// sending to and receiving from a live peer. The docs say which.
#[test]
fn a_datagram_to_a_vacant_port_is_refused_later_only_on_a_connected_socket() {
    virtual_test(async || {
        let vacant = vacant_udp_port();
        let live = UdpSocket::bind("127.0.0.1:0").unwrap();
        let live_addr = live.local_addr().unwrap();

        let loose = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            assert_eq!(loose.send_to(b"nobody", vacant).await.unwrap(), 6);
            yield_now().await;
        }
        loose.send_to(b"somebody", live_addr).await.unwrap();
        let mut buf = [0; 16];
        let (n, _) = live.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"somebody");
        live.send_to(b"reply", loose.local_addr().unwrap())
            .await
            .unwrap();
        let (n, from) = loose.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"reply"[..], live_addr),
            "no refusal here"
        );

        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(vacant).unwrap();
        connected.send(b"anyone?").await.unwrap();
        yield_now().await;
        let err = connected.send(b"anyone?").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        // Reported once: the next send goes out (and is refused again, later).
        connected.send(b"again").await.unwrap();
        yield_now().await;
        let err = connected.recv(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        // A peer that binds the port afterwards is heard.
        let late = UdpSocket::bind(vacant).unwrap();
        late.send_to(b"here now", connected.local_addr().unwrap())
            .await
            .unwrap();
        let n = connected.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"here now");
    });
}

/// Attacks `recv_from`'s "A datagram longer than `buf` is cut to fit (the rest is lost, as
/// with std)" (runtime/net/udp.rs) for `recv_from` and `recv` of UDP and Unix datagram
/// sockets: each returns `buf.len()` and the datagram's start, the rest is gone (the next
/// call returns the next datagram), and a zero-length buffer takes a whole datagram and
/// returns 0.
#[test]
fn datagrams_longer_than_the_buffer_are_cut_and_the_rest_is_lost() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        let long = pattern(5, 100);
        for _ in 0..4 {
            a.send(&long).await.unwrap();
        }
        a.send(b"next").await.unwrap();
        let mut ten = [0; 10];
        assert_eq!(b.recv(&mut ten).await.unwrap(), 10);
        assert_eq!(ten[..], long[..10]);
        let (n, _) = b.recv_from(&mut ten).await.unwrap();
        assert_eq!((n, &ten[..]), (10, &long[..10]));
        assert_eq!(
            b.recv(&mut []).await.unwrap(),
            0,
            "an empty buffer takes one"
        );
        assert_eq!(b.recv_from(&mut []).await.unwrap().0, 0);
        let mut buf = [0; 16];
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"next", "the rests were lost, not queued");

        let (c, d) = UnixDatagram::pair().unwrap();
        for _ in 0..3 {
            c.send(&long).await.unwrap();
        }
        c.send(b"next").await.unwrap();
        assert_eq!(d.recv(&mut ten).await.unwrap(), 10);
        assert_eq!(ten[..], long[..10]);
        assert_eq!(d.recv_from(&mut ten).await.unwrap().0, 10);
        assert_eq!(d.recv(&mut []).await.unwrap(), 0);
        let n = d.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"next");
    });
}

/// Attacks "Sends one datagram" / "Receives one datagram" (runtime/net/udp.rs, unix.rs)
/// with datagrams of no bytes: each is sent (`Ok(0)`), arrives as a datagram of its own
/// (`Ok(0)` with the sender's address), in order among non-empty ones, and a receive with
/// nothing queued parks instead of returning 0.
#[test]
fn zero_length_datagrams_are_datagrams() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        assert_eq!(a.send_to(b"", b_addr).await.unwrap(), 0);
        a.send_to(b"one", b_addr).await.unwrap();
        assert_eq!(a.send_to(b"", b_addr).await.unwrap(), 0);
        let mut buf = [0; 8];
        assert_eq!(
            b.recv_from(&mut buf).await.unwrap(),
            (0, a.local_addr().unwrap())
        );
        assert_eq!(b.recv_from(&mut buf).await.unwrap().0, 3);
        assert_eq!(b.recv_from(&mut buf).await.unwrap().0, 0);
        assert!(
            poll_once_then_drop(b.recv_from(&mut buf)).await.is_none(),
            "nothing: park"
        );

        let (c, d) = UnixDatagram::pair().unwrap();
        assert_eq!(c.send(b"").await.unwrap(), 0);
        c.send(b"x").await.unwrap();
        assert_eq!(d.recv(&mut buf).await.unwrap(), 0);
        assert_eq!(d.recv(&mut buf).await.unwrap(), 1);
        assert!(poll_once_then_drop(d.recv(&mut buf)).await.is_none());
    });
}

/// Attacks `send_to`'s "a datagram too large is `InvalidInput` or the system's
/// `EMSGSIZE`" (runtime/net/udp.rs) at the boundary: the largest IPv4 UDP payload (65507
/// bytes) goes through loopback whole; one byte more is that error, and the socket goes on
/// working.
#[test]
fn the_largest_udp_datagram_arrives_whole_and_one_byte_more_is_an_error() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let largest = pattern(6, 65_507);
        assert_eq!(a.send_to(&largest, b_addr).await.unwrap(), 65_507);
        let mut buf = vec![0; 70_000];
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert!(n == 65_507 && buf[..n] == largest[..], "cut to {n}");
        let err = a.send_to(&pattern(6, 65_508), b_addr).await.unwrap_err();
        assert!(
            err.kind() == io::ErrorKind::InvalidInput || err.raw_os_error() == Some(90),
            "{err}"
        );
        a.send_to(b"fine", b_addr).await.unwrap();
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"fine");
    });
}

// ---------------------------------------------------------------------------------------
// Unix datagrams

/// Attacks `UnixDatagram::bind`'s "(the file stays after the socket is dropped)" and
/// `unbound`'s docs (runtime/net/unix.rs), which said "(it can send, and receive replies
/// to an autobound address on Linux)": Linux autobinds only with `SO_PASSCRED`, so the
/// receiver sees an unnamed sender and no reply can reach it (the docs now say so; a
/// client bound to a path of its own gets its replies). The file stays after the drop, a
/// datagram to it then is refused, and one to a missing path is `NotFound`.
#[test]
fn unix_datagrams_between_a_path_and_an_unbound_sender() {
    let dir = socket_dir("dgram");
    let path = dir.join("server.sock");
    virtual_test({
        let path = path.clone();
        async move || {
            let server = UnixDatagram::bind(&path).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            client.send_to(b"hello", &path).await.unwrap();
            let mut buf = [0; 16];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert!(
                from.as_pathname().is_none(),
                "an unbound sender has no path"
            );
            // Linux autobinds a sending socket only with `SO_PASSCRED`: without it the
            // receiver sees an unnamed sender, which no reply can reach.
            assert!(from.is_unnamed(), "{from:?}");
            assert!(client.local_addr().unwrap().is_unnamed(), "not autobound");
            assert_eq!(
                server.local_addr().unwrap().as_pathname(),
                Some(path.as_path())
            );
            // A connected unbound client hears its server's replies through `connect`'s
            // peer (a socket on the server's side bound to a path of its own).
            let reply_path = path.with_file_name("client.sock");
            let client2 = UnixDatagram::bind(&reply_path).unwrap();
            client2.connect(&path).unwrap();
            client2.send(b"ping").await.unwrap();
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ping");
            let back = from
                .as_pathname()
                .expect("a bound sender has its path")
                .to_owned();
            server.send_to(b"pong", &back).await.unwrap();
            let n = client2.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"pong");
            drop(server);
            assert!(path.exists(), "the file stays after the socket is dropped");
            let err = client.send_to(b"late", &path).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            let err = client
                .send_to(b"nowhere", dir_of(&path).join("missing.sock"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();

    fn dir_of(path: &std::path::Path) -> PathBuf {
        path.parent().unwrap().to_owned()
    }
}

/// Attacks `from_std`'s "Takes over a socket made with std" (runtime/net/unix.rs) with
/// Linux's abstract names, which trellis's own `bind` and `connect` (paths) cannot name:
/// a datagram socket and a listener bound to abstract names with std, taken over, work
/// like path sockets: a datagram arrives with its sender's abstract name, a stream is
/// accepted and carries bytes, and the addresses read back as the names bound.
#[cfg(target_os = "linux")]
#[test]
fn abstract_unix_sockets_taken_over_from_std_work_like_path_ones() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr as UnixAddr;
    virtual_test(async || {
        let pid = std::process::id();
        let server_name = format!("trellis-adv-net2-{pid}-server");
        let client_name = format!("trellis-adv-net2-{pid}-client");
        let server_addr = UnixAddr::from_abstract_name(&server_name).unwrap();
        let client_addr = UnixAddr::from_abstract_name(&client_name).unwrap();
        let server = UnixDatagram::from_std(
            std::os::unix::net::UnixDatagram::bind_addr(&server_addr).unwrap(),
        )
        .unwrap();
        let client_std = std::os::unix::net::UnixDatagram::bind_addr(&client_addr).unwrap();
        client_std.connect_addr(&server_addr).unwrap();
        let client = UnixDatagram::from_std(client_std).unwrap();
        client.send(b"abstract").await.unwrap();
        let mut buf = [0; 16];
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"abstract");
        assert_eq!(from.as_abstract_name(), Some(client_name.as_bytes()));
        assert!(from.as_pathname().is_none());
        assert_eq!(
            server.local_addr().unwrap().as_abstract_name(),
            Some(server_name.as_bytes())
        );

        let listener_name = format!("trellis-adv-net2-{pid}-listener");
        let listener_addr = UnixAddr::from_abstract_name(&listener_name).unwrap();
        let listener = UnixListener::from_std(
            std::os::unix::net::UnixListener::bind_addr(&listener_addr).unwrap(),
        )
        .unwrap();
        let raw = std::os::unix::net::UnixStream::connect_addr(&listener_addr).unwrap();
        let connected = UnixStream::from_std(raw).unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        connected.write_all(b"over a name").await.unwrap();
        let mut eleven = [0; 11];
        accepted.read_exact(&mut eleven).await.unwrap();
        assert_eq!(&eleven, b"over a name");
        assert_eq!(
            connected.peer_addr().unwrap().as_abstract_name(),
            Some(listener_name.as_bytes())
        );
    });
}

// ---------------------------------------------------------------------------------------
// Accept

/// Attacks `accept`'s "Waits for a connection" and the reactor's "Each direction keeps
/// every distinct waker that parked on it" (runtime/net/tcp.rs, unix.rs,
/// runtime/rt/reactor.rs) with two tasks accepting on one listener at once: one connection
/// completes exactly one of them and the other stays parked (no error, no stolen
/// connection); a second connection completes the other. TCP and Unix.
#[test]
fn two_tasks_accepting_on_one_listener_each_get_their_own_connection() {
    let dir = socket_dir("accept2");
    let path = dir.join("l.sock");
    virtual_test(async move || {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let unix = UnixListener::bind(&path).unwrap();
        for kind in ["tcp", "unix"] {
            let peers = RefCell::new(Vec::new());
            nursery(async |n| {
                let (tcp, unix, peers) = (&tcp, &unix, &peers);
                for _ in 0..2 {
                    n.spawn(async move {
                        let got = if kind == "tcp" {
                            let (s, peer) = tcp.accept().await.unwrap();
                            assert_eq!(s.peer_addr().unwrap(), peer);
                            peer.port()
                        } else {
                            let (s, _) = unix.accept().await.unwrap();
                            s.write_all(b"who").await.unwrap();
                            0
                        };
                        peers.borrow_mut().push(got);
                    });
                }
                wait_all_tasks_blocked().await;
                let (first, _held) = connect_one(kind, addr, &path).await;
                wait_all_tasks_blocked().await;
                assert_eq!(
                    peers.borrow().len(),
                    1,
                    "{kind}: one connection, one accept"
                );
                let (second, _held_too) = connect_one(kind, addr, &path).await;
                wait_all_tasks_blocked().await;
                assert_eq!(peers.borrow().len(), 2, "{kind}: the other accept woke");
                if kind == "tcp" {
                    let mut ports = peers.borrow().clone();
                    ports.sort_unstable();
                    let mut want = vec![first, second];
                    want.sort_unstable();
                    assert_eq!(ports, want, "each connection accepted once");
                }
            })
            .await
            .unwrap();
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();

    /// Connects once; the port of the client's end (TCP), and the stream to hold open.
    async fn connect_one(
        kind: &str,
        addr: SocketAddr,
        path: &std::path::Path,
    ) -> (u16, Option<TcpStream>) {
        if kind == "tcp" {
            let s = TcpStream::connect(addr).await.unwrap();
            (s.local_addr().unwrap().port(), Some(s))
        } else {
            let s = UnixStream::connect(path).await.unwrap();
            let mut three = [0; 3];
            s.read_exact(&mut three).await.unwrap();
            (0, None)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Servers

/// Attacks `serve_listeners`' "Accepts connections on every listener and runs
/// `handler(stream)` for each in a task of its own", "calls `status.started(addresses)`
/// with the listeners' addresses, in order" and "it may borrow anything that outlives the
/// call" (runtime/net/serve.rs) with four listeners (two on one port with
/// `SO_REUSEPORT`, and ::1 where the machine has it): the addresses come back in the
/// order given, eight clients on each at once are each served exactly once, with their
/// own bytes, by a handler that borrows the caller's tally.
#[test]
fn several_listeners_report_their_addresses_in_order_and_each_serves_its_clients() {
    const CLIENTS: usize = 8;
    virtual_test(async || {
        let shared = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
        let twin = TcpListener::bind_reuse_port(shared.local_addr().unwrap()).unwrap();
        let mut listeners = vec![TcpListener::bind("127.0.0.1:0").unwrap(), shared, twin];
        if has_ipv6_loopback() {
            listeners.push(TcpListener::bind("[::1]:0").unwrap());
        }
        let given: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let tally = RefCell::new(Vec::new());
        let handler = async |s: TcpStream| {
            tally.borrow_mut().push(s.local_addr().unwrap());
            common::echo(s).await
        };
        let server = CancelScope::new();
        nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    server
                        .clone()
                        .run(serve_listeners(listeners, handler, status))
                        .await
                        .transpose()
                })
                .await
                .map_err(start_error)?;
            assert_eq!(addrs, given, "the listeners' addresses, in order");
            nursery(async |clients| {
                for (l, &addr) in addrs.iter().enumerate() {
                    for c in 0..CLIENTS {
                        clients.spawn(async move {
                            let stream = TcpStream::connect(addr).await?;
                            let mine = pattern(l * CLIENTS + c, 10_000);
                            stream.write_all(&mine).await?;
                            stream.shutdown(Shutdown::Write)?;
                            let back = read_to_eof(&stream).await?;
                            assert!(back == mine, "client {c} of listener {l}: wrong bytes");
                            io::Result::Ok(())
                        });
                    }
                }
                io::Result::Ok(())
            })
            .await
            .map_err(|g| g.into_first())?;
            server.cancel();
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let tally = tally.into_inner();
        assert_eq!(
            tally.len(),
            given.len() * CLIENTS,
            "each client served once"
        );
        for addr in &given {
            let on_port = tally.iter().filter(|a| *a == addr).count();
            // The two SO_REUSEPORT twins share an address: the kernel spreads over them.
            let expected = given.iter().filter(|g| *g == addr).count() * CLIENTS;
            assert_eq!(on_port, expected, "{addr}");
        }
    });
}

/// Attacks `serve_listeners`' "Cancelling it (a scope, the nursery it runs in) cancels
/// every accept loop and every connection task, which drops (closes) every connection and
/// every listener" and "returns the failure once every connection task is gone"
/// (runtime/net/serve.rs) with a handler that shields the end of its reply
/// (`trellis::shield`): cancelled while it is shielded, the server waits for it, the
/// client gets the whole reply and then the end. Meanwhile nothing accepts any more, so
/// the listener must be closed as its accept loop ends (as Trio's is), not when the last
/// handler finishes: during the drain the listening socket is closed (its descriptor no
/// longer names it), instead of open with a backlog nobody reads.
#[test]
fn a_handler_shielded_past_the_servers_cancellation_finishes_and_the_listener_closes_at_once() {
    use std::os::fd::AsRawFd;
    virtual_test(async || {
        let in_shield = Cell::new(false);
        let finished = Cell::new(false);
        let handler = async |s: TcpStream| {
            let mut req = [0; 3];
            s.read_exact(&mut req).await?;
            shield(async {
                in_shield.set(true);
                sleep(Duration::from_secs(10)).await;
                s.write_all(b"reply after the cancel").await?;
                finished.set(true);
                io::Result::Ok(())
            })
            .await
        };
        // The listener's descriptor and the socket it names, to see the listener close
        // (a port freed may be taken by another test at once: a connect or a bind to it
        // could not tell).
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std_listener.as_raw_fd();
        let socket = socket_behind(fd).expect("the listener's descriptor");
        let listener = TcpListener::from_std(std_listener).unwrap();
        let server = CancelScope::new();
        let server_done = Cell::new(false);
        nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    let out = server
                        .clone()
                        .run(serve_listeners(vec![listener], handler, status))
                        .await
                        .transpose();
                    server_done.set(true);
                    out
                })
                .await
                .map_err(start_error)?;
            let client = TcpStream::connect(addrs[0]).await?;
            client.write_all(b"req").await?;
            while !in_shield.get() {
                yield_now().await;
            }
            assert_eq!(socket_behind(fd), Some(socket.clone()), "listening");
            server.cancel();
            wait_all_tasks_blocked().await;
            assert!(
                !server_done.get(),
                "the server waits for its shielded handler"
            );
            let during_the_drain = socket_behind(fd);
            let reply = read_to_eof(&client).await?;
            assert_eq!(reply, b"reply after the cancel");
            assert!(finished.get());
            assert_ne!(
                during_the_drain,
                Some(socket.clone()),
                "the listener outlived its accept loop: still open while the server drains"
            );
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert!(server_done.get());
    });

    /// What `/proc/self/fd/<fd>` names (`socket:[inode]`), if the descriptor is open.
    fn socket_behind(fd: i32) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
    }
}

/// Attacks `serve_listeners`' cancellation ("cancels ... every connection task, which
/// drops (closes) every connection", runtime/net/serve.rs) through a handler that opens a
/// nursery of its own (the handler gets no handle to the server's nursery; its own is the
/// way to run tasks per connection) and runs a reader and a writer on the stream's split
/// halves: cancelling the server cancels both, drops both halves, and the client sees the
/// end.
#[test]
fn a_handler_with_a_nursery_of_its_own_is_cancelled_with_the_server() {
    virtual_test(async || {
        let dropped = Cell::new(0);
        let handler = async |s: TcpStream| {
            let (mut reader, mut writer) = s.split();
            let dropped = &dropped;
            nursery(async |n| {
                n.spawn(async move {
                    let _count = common::OnDrop(|| dropped.set(dropped.get() + 1));
                    let mut buf = [0; 64];
                    while reader.read(&mut buf).await? > 0 {}
                    trellis::sleep_forever().await;
                    io::Result::Ok(())
                });
                n.spawn(async move {
                    let _count = common::OnDrop(|| dropped.set(dropped.get() + 1));
                    for _ in 0u64.. {
                        writer.write_all(b"tick").await?;
                        sleep(Duration::from_secs(1)).await;
                    }
                    io::Result::Ok(())
                });
                io::Result::Ok(())
            })
            .await
            .map_err(|g| g.into_first())
        };
        let server = CancelScope::new();
        nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    server
                        .clone()
                        .run(serve_tcp(0, Some("127.0.0.1"), handler, status))
                        .await
                        .transpose()
                })
                .await
                .map_err(start_error)?;
            let client = TcpStream::connect(addrs[0]).await?;
            let mut ticks = [0; 12];
            client.read_exact(&mut ticks).await?;
            assert_eq!(&ticks, b"tickticktick");
            server.cancel();
            let rest = read_to_eof(&client).await?;
            assert!(rest.chunks(4).all(|c| b"tick".starts_with(c)), "{rest:?}");
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(dropped.get(), 2, "both of the handler's tasks were dropped");
    });
}

/// Attacks `open_tcp_listeners`' "A name is resolved with `lookup_host`; an IP literal
/// binds that address only" and "Port 0 picks a free port, the same one for every
/// listener" (runtime/net/serve.rs) with `"localhost"`: one listener per distinct address
/// the name resolves to, all on one port, each accepting; `"::1"` and `"[::1]"` where the
/// machine has it; a name that does not resolve is the lookup's error, naming the host.
#[test]
fn open_tcp_listeners_on_localhost_share_one_port_and_accept() {
    virtual_test(async || {
        let mut expected: Vec<std::net::IpAddr> = lookup_host("localhost", 0)
            .await
            .unwrap()
            .iter()
            .map(|a| a.ip())
            .collect();
        expected.sort();
        expected.dedup();
        let listeners = open_tcp_listeners(0, Some("localhost")).await.unwrap();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
        ips.sort();
        assert_eq!(ips, expected, "one listener per distinct address");
        let port = addrs[0].port();
        assert_ne!(port, 0);
        assert!(
            addrs.iter().all(|a| a.port() == port),
            "one port: {addrs:?}"
        );
        for (listener, addr) in listeners.iter().zip(&addrs) {
            let _c = TcpStream::connect(*addr).await.unwrap();
            listener.accept().await.unwrap();
        }
        if has_ipv6_loopback() {
            for host in ["::1", "[::1]"] {
                let v6 = open_tcp_listeners(0, Some(host)).await.unwrap();
                assert_eq!(v6.len(), 1, "{host}");
                assert_eq!(
                    v6[0].local_addr().unwrap().ip(),
                    "::1".parse::<std::net::IpAddr>().unwrap()
                );
            }
        }
        let err = open_tcp_listeners(0, Some("nonexistent.invalid"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nonexistent.invalid"), "{err}");
    });
}

// ---------------------------------------------------------------------------------------
// Connecting by name and Happy Eyeballs

/// Attacks `open_tcp_stream`'s "If every attempt fails, an `io::Error` whose inner error is
/// a `ConnectError` ... listing each address with its failure; its kind is that of the
/// last failure" (runtime/net/happy_eyeballs.rs) with `"localhost"` on a port where
/// nothing listens: the error is `ConnectionRefused`, and its `ConnectError` lists every
/// address the name resolves to, each refused.
#[test]
fn open_tcp_stream_to_localhost_where_nothing_listens_lists_every_refusal() {
    virtual_test(async || {
        let port = vacant_tcp_port().port();
        let resolved = lookup_host("localhost", port).await.unwrap();
        let err = open_tcp_stream("localhost", port).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectError>())
            .expect("a ConnectError inside");
        let mut tried: Vec<SocketAddr> = inner.attempts().iter().map(|(a, _)| *a).collect();
        let mut want = resolved.clone();
        tried.sort();
        want.sort();
        assert_eq!(tried, want, "every address, once");
        for (addr, e) in inner.attempts() {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{addr}: {e}");
        }
    });
}

/// Attacks `connect_happy_eyeballs`' "each next attempt starts when the previous one fails
/// or when `delay` has passed since it started" (runtime/net/happy_eyeballs.rs) with a
/// first address whose server accepts late: the handshake is the kernel's, so the first
/// attempt wins at once and the second address never sees an attempt; bytes written
/// before the server's late `accept` are all there when it comes.
#[test]
fn a_first_address_that_accepts_late_still_wins_and_the_second_sees_nothing() {
    virtual_test(async || {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let second = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
        let stream = connect_happy_eyeballs(addrs, Duration::from_millis(250))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[0]);
        stream.write_all(b"before the accept").await.unwrap();
        sleep(Duration::from_secs(5)).await;
        assert!(
            poll_once_then_drop(second.accept()).await.is_none(),
            "the second attempt never started"
        );
        let (accepted, _) = first.accept().await.unwrap();
        let mut buf = [0; 17];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"before the accept");
        assert!(
            poll_once_then_drop(first.accept()).await.is_none(),
            "one attempt only"
        );
    });
}

/// Attacks `lookup_host`'s "An IP literal is answered at once, without a thread" and "A
/// name (not an IP literal) looked up outside a trellis runtime panics, as `to_thread`
/// does" (runtime/net/resolve.rs): outside any runtime, on another executor, literals of
/// both families and the bracketed form are answered; a name panics with `to_thread`'s
/// message.
#[test]
fn lookup_host_outside_a_runtime_answers_literals_and_panics_for_a_name() {
    watchdog(HANG_LIMIT, || {
        let v4 = futures::executor::block_on(lookup_host("127.0.0.1", 80)).unwrap();
        assert_eq!(v4, ["127.0.0.1:80".parse::<SocketAddr>().unwrap()]);
        let v6 = futures::executor::block_on(lookup_host("[::1]", 443)).unwrap();
        assert_eq!(v6, ["[::1]:443".parse::<SocketAddr>().unwrap()]);
        let message =
            common::panic_message_of(|| futures::executor::block_on(lookup_host("localhost", 80)));
        assert!(message.contains("runtime"), "{message}");
    });
}

// ---------------------------------------------------------------------------------------
// Sockets and runtimes

/// Compiles only for a type that is not `Send` (with `Send`, both impls apply and the
/// `_` cannot be inferred).
trait AmbiguousIfSend<A> {
    fn some_item() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
struct IsSend;
impl<T: ?Sized + Send> AmbiguousIfSend<IsSend> for T {}

macro_rules! assert_not_send {
    ($($t:ty),* $(,)?) => {
        $(let _ = <$t as AmbiguousIfSend<_>>::some_item;)*
    };
}

/// Attacks "registered with the reactor of the runtime that made them (so they are
/// `!Send`, and every operation on one in another runtime, or outside any, returns an
/// error, whether or not it would have had to wait)" (runtime/net/mod.rs). The types
/// first: no socket, half or receiver can be sent to another thread's runtime (checked at
/// compile time). Then every kind of socket made in one runtime and used in a later one
/// on the same thread: each operation that reads, writes, sends, receives or accepts is
/// that error, naming the mistake, whether or not it would have waited; the operations
/// that never wait (addresses, options, `shutdown`, UDP `connect`) are what the docs say.
/// And the way across threads works: a socket given back with `into_std` on one thread and
/// taken over with `from_std` by a runtime on another keeps its bytes.
#[test]
fn every_socket_used_in_another_runtime_is_an_error_naming_the_mistake() {
    assert_not_send!(
        TcpListener,
        TcpStream,
        UdpSocket,
        UnixListener,
        UnixStream,
        UnixDatagram,
        trellis::net::ReadHalf<TcpStream>,
        trellis::net::WriteHalf<UnixStream>,
        trellis::SignalReceiver,
    );
    const MISTAKE: &str = "registered with one trellis runtime was used in another";
    watchdog(HANG_LIMIT, || {
        let made = trellis::run(async {
            let (tcp_a, tcp_b) = tcp_pair().await;
            tcp_b.write_all(b"queued").await.unwrap();
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let udp_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            udp.connect(udp_peer.local_addr().unwrap()).unwrap();
            udp_peer.connect(udp.local_addr().unwrap()).unwrap();
            udp_peer.send(b"queued").await.unwrap();
            let (ud_a, ud_b) = UnixDatagram::pair().unwrap();
            let (us_a, us_b) = UnixStream::pair().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            (
                tcp_a, tcp_b, udp, udp_peer, ud_a, ud_b, us_a, us_b, listener,
            )
        });
        let (tcp_a, tcp_b, udp, udp_peer, ud_a, ud_b, us_a, us_b, listener) = made;
        trellis::run(async {
            let mut errors: Vec<(&str, io::Error)> = Vec::new();
            let mut buf = [0; 8];
            errors.push((
                "read with bytes queued",
                tcp_a.read(&mut buf).await.unwrap_err(),
            ));
            errors.push(("write", tcp_a.write(b"x").await.unwrap_err()));
            errors.push(("write_all", tcp_a.write_all(b"x").await.unwrap_err()));
            errors.push(("read_exact", tcp_a.read_exact(&mut buf).await.unwrap_err()));
            errors.push((
                "udp recv with one queued",
                udp.recv(&mut buf).await.unwrap_err(),
            ));
            errors.push(("udp recv_from", udp.recv_from(&mut buf).await.unwrap_err()));
            errors.push(("udp send", udp.send(b"x").await.unwrap_err()));
            let to = udp_peer.local_addr().unwrap();
            errors.push(("udp send_to", udp.send_to(b"x", to).await.unwrap_err()));
            errors.push(("unix dgram send", ud_a.send(b"x").await.unwrap_err()));
            errors.push(("unix dgram recv", ud_b.recv(&mut buf).await.unwrap_err()));
            let (mut r, mut w) = us_a.split();
            errors.push(("read half", r.read(&mut buf).await.unwrap_err()));
            errors.push(("write half", w.write(b"x").await.unwrap_err()));
            let futures_io_write = AsyncWriteExt::write(&mut &us_b, b"x").await;
            errors.push(("futures-io write", futures_io_write.unwrap_err()));
            errors.push(("accept", listener.accept().await.unwrap_err()));
            for (what, err) in &errors {
                assert!(err.to_string().contains(MISTAKE), "{what}: {err}");
            }
            // What never waits: answered here too (the docs say so).
            assert!(tcp_a.local_addr().is_ok() && tcp_a.peer_addr().is_ok());
            assert!(tcp_a.nodelay().unwrap());
            assert!(listener.local_addr().is_ok());
            assert!(udp.peer_addr().is_ok());
            tcp_b.shutdown(Shutdown::Write).unwrap();
            (&mut &us_b).close().await.unwrap();
        });
        // Into std, across a thread, into a runtime there.
        let (to_other, from_here) = std::sync::mpsc::channel();
        let (tcp_a, tcp_b) = (tcp_a.into_std(), tcp_b.into_std());
        to_other.send((tcp_a, tcp_b)).unwrap();
        let other = std::thread::spawn(move || {
            let (a, b) = from_here.recv().unwrap();
            trellis::run(async move {
                let a = TcpStream::from_std(a).unwrap();
                let _b = TcpStream::from_std(b).unwrap();
                let all = read_to_eof(&a).await.unwrap();
                assert_eq!(all, b"queued", "the bytes queued in the first runtime");
            });
        });
        other.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Descriptors

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("Linux's /proc/self/fd")
        .count()
}

/// Attacks "Dropping a socket closes it" (runtime/net/mod.rs), the reactor's "a source is
/// `delete`d from the poller before its file descriptor closes" (runtime/rt/reactor.rs)
/// and every `# Cancellation` that says a dropped connect "closes the socket", in a child
/// process (descriptors are process-wide; other tests would move the count): a thousand
/// connect/accept/exchange/close cycles, then connects dropped midway, refused connects,
/// races of Happy Eyeballs with losers, pairs, UDP and Unix datagram sockets, split and
/// reunited streams, and signal receivers opened and dropped. `/proc/self/fd` counts as
/// many descriptors afterwards as before.
#[test]
fn a_thousand_connect_close_cycles_and_every_other_kind_leak_no_descriptor() {
    let (status, stderr) = watchdog(HANG_LIMIT * 3, || {
        common::exit_of_test("child_process_connect_close_cycles")
    });
    assert!(status.success(), "the child failed: {status}\n{stderr}");
    assert!(stderr.contains("descriptors: no leak"), "{stderr}");
}

#[test]
#[ignore = "a child process of a_thousand_connect_close_cycles_and_every_other_kind_leak_no_descriptor"]
fn child_process_connect_close_cycles() {
    if !common::is_test_child() {
        return;
    }
    Builder::new().autojump().run(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // makes the poller
        let addr = listener.local_addr().unwrap();
        let before = open_descriptors();
        for i in 0..1000u32 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            client.write_all(&i.to_le_bytes()).await.unwrap();
            let mut four = [0; 4];
            server.read_exact(&mut four).await.unwrap();
            assert_eq!(u32::from_le_bytes(four), i);
            if i % 2 == 0 {
                drop((client, server));
            } else {
                drop((server, client));
            }
        }
        assert_eq!(open_descriptors(), before, "after the cycles");
        for _ in 0..200 {
            let _ = poll_once_then_drop(TcpStream::connect(addr)).await;
        }
        // The connects that got as far as the backlog: accepted and dropped.
        while let Some(Ok(_)) = poll_once_then_drop(listener.accept()).await {}
        let vacant = vacant_tcp_port();
        for _ in 0..200 {
            let err = TcpStream::connect(vacant).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        }
        for _ in 0..100 {
            let won = connect_happy_eyeballs([addr, addr, addr], Duration::ZERO).await;
            drop(won.unwrap());
            let _ = open_tcp_stream("127.0.0.1", vacant.port())
                .await
                .unwrap_err();
        }
        while let Some(Ok(_)) = poll_once_then_drop(listener.accept()).await {}
        for _ in 0..200 {
            drop(UnixStream::pair().unwrap());
            drop(UnixDatagram::pair().unwrap());
            drop(UdpSocket::bind("127.0.0.1:0").unwrap());
            drop(UnixDatagram::unbound().unwrap());
            let (a, _b) = UnixStream::pair().unwrap();
            let (r, w) = a.split();
            drop(r.reunite(w).unwrap());
            let (a, _b) = UnixStream::pair().unwrap();
            drop(a.into_std());
            drop(open_signal_receiver([trellis::signals::SIGWINCH]).unwrap());
        }
        assert_eq!(open_descriptors(), before, "after every other kind");
        eprintln!("descriptors: no leak");
    });
}

// ---------------------------------------------------------------------------------------
// Signals

/// Attacks `ctrl_c`'s "From the first poll until it completes or is dropped, `SIGINT` no
/// longer ends the process: it completes this future instead. Afterwards the default
/// action is back (as `open_signal_receiver` describes), unless another receiver of
/// `SIGINT` is open" and "Every open receiver of a signal sees each of its deliveries"
/// (runtime/signal.rs), in a child process (the last step ends it by `SIGINT`): beside an
/// open receiver of `SIGINT`, a `ctrl_c` made but not yet polled does not see a `SIGINT`
/// delivered then; polled, it sees the next one, and so does the receiver; a `ctrl_c`
/// dropped midway leaves the receiver receiving; with the receiver dropped, a `ctrl_c`
/// alone still completes; and once it has, a `SIGINT` ends the process.
#[test]
fn ctrl_c_beside_a_receiver_of_sigint_and_the_default_action_after_both() {
    use std::os::unix::process::ExitStatusExt;
    let (status, stderr) = watchdog(HANG_LIMIT, || {
        common::exit_of_test("child_process_ctrl_c_beside_a_receiver")
    });
    assert!(
        stderr.contains("every ctrl_c check passed"),
        "{status}: {stderr}"
    );
    assert_eq!(
        status.signal(),
        Some(trellis::signals::SIGINT),
        "the default action is back after the last: {status}\n{stderr}"
    );
}

#[test]
#[ignore = "a child process of ctrl_c_beside_a_receiver_of_sigint_and_the_default_action_after_both"]
fn child_process_ctrl_c_beside_a_receiver() {
    use signal_hook::low_level::raise;
    use trellis::signals::SIGINT;
    if !common::is_test_child() {
        return;
    }
    Builder::new()
        .autojump()
        .run(async {
            let mut keep = open_signal_receiver([SIGINT])?;
            let mut early = pin!(trellis::ctrl_c());
            raise(SIGINT)?;
            assert_eq!(keep.recv().await?, SIGINT);
            let first_poll = std::future::poll_fn(|cx| Poll::Ready(early.as_mut().poll(cx))).await;
            assert!(
                first_poll.is_pending(),
                "a SIGINT before the first poll is not its"
            );
            raise(SIGINT)?;
            early.await?;
            assert_eq!(keep.recv().await?, SIGINT, "the receiver saw that one too");
            assert!(poll_once_then_drop(keep.recv()).await.is_none(), "once");

            nursery(async |n| {
                let waiting = n.spawn(trellis::ctrl_c());
                wait_all_tasks_blocked().await;
                raise(SIGINT)?;
                waiting.await.unwrap();
                io::Result::Ok(())
            })
            .await
            .map_err(|g| g.into_first())?;
            assert_eq!(keep.recv().await?, SIGINT);

            assert!(poll_once_then_drop(trellis::ctrl_c()).await.is_none());
            raise(SIGINT)?;
            assert_eq!(
                keep.recv().await?,
                SIGINT,
                "the dropped ctrl_c took nothing"
            );

            drop(keep);
            nursery(async |n| {
                let waiting = n.spawn(trellis::ctrl_c());
                wait_all_tasks_blocked().await;
                raise(SIGINT)?;
                waiting.await.unwrap();
                io::Result::Ok(())
            })
            .await
            .map_err(|g| g.into_first())?;
            io::Result::Ok(())
        })
        .unwrap();
    eprintln!("every ctrl_c check passed");
    let _ = signal_hook::low_level::raise(SIGINT);
    // Not reached: the default action ends the process.
    std::thread::sleep(Duration::from_millis(50));
    eprintln!("still alive after a SIGINT with no receiver");
    std::process::exit(3);
}

/// Real-time signal 46 (raised only while a receiver is open). Attacks `recv`'s "Cancel-safe:
/// dropping the future midway loses no signal" and the receiver's drop (runtime/signal.rs)
/// with a `recv` that parked and was then forgotten (`mem::forget`, so its borrow ends
/// without a drop), and its receiver dropped after it: the forgotten waker in the reactor
/// is harmless; a delivery then reaches the other open receiver; a receiver opened after
/// a delivery reports only later ones.
#[cfg(target_os = "linux")]
#[test]
fn a_receiver_dropped_after_its_recv_was_forgotten_leaves_the_others_exact() {
    use signal_hook::low_level::raise;
    const SIG: i32 = 46;
    virtual_test(async || {
        let mut other = open_signal_receiver([SIG])?;
        let mut gone = open_signal_receiver([SIG])?;
        common::forget_after_one_poll(gone.recv()).await;
        drop(gone);
        raise(SIG)?;
        assert_eq!(other.recv().await?, SIG);
        let mut later = open_signal_receiver([SIG])?;
        assert!(
            poll_once_then_drop(later.recv()).await.is_none(),
            "opened after it"
        );
        nursery(async |n| {
            let (later, other) = (&mut later, &mut other);
            let a = n.spawn(async move { later.recv().await });
            let b = n.spawn(async move { other.recv().await });
            wait_all_tasks_blocked().await;
            raise(SIG)?;
            assert_eq!(a.await.unwrap(), SIG);
            assert_eq!(b.await.unwrap(), SIG);
            io::Result::Ok(())
        })
        .await
        .map_err(|g| g.into_first())?;
        io::Result::Ok(())
    })
    .unwrap();
}

/// Real-time signals 47 and 48. Attacks "a signal delivered on another thread" waking the
/// receiver, "Distinct signals are reported in the order they were delivered (on Linux)"
/// (runtime/signal.rs) and autojump's "While `to_thread` work is in flight time does not
/// jump" (runtime/rt/executor.rs): a worker thread of `to_thread` raises while the receiver
/// is parked in a `recv` under an hour's deadline; the virtual hour never passes, the
/// signal comes; two raised by a worker come in their order.
#[cfg(target_os = "linux")]
#[test]
fn signals_raised_by_a_worker_thread_wake_a_parked_recv_before_any_deadline() {
    use signal_hook::low_level::raise;
    virtual_test(async || {
        let mut receiver = open_signal_receiver([47, 48])?;
        let start = trellis::now();
        nursery(async |n| {
            let receiver = &mut receiver;
            let waiting = n.spawn(async move {
                let got = move_on_after(Duration::from_secs(3600), receiver.recv()).await;
                io::Result::Ok(got)
            });
            wait_all_tasks_blocked().await;
            to_thread(|| raise(48)).await?;
            let got = waiting.await.unwrap().expect("the hour passed first")?;
            assert_eq!(got, 48);
            io::Result::Ok(())
        })
        .await
        .map_err(|g| g.into_first())?;
        assert!(trellis::now() - start < Duration::from_secs(3600));
        to_thread(|| {
            raise(48)?;
            raise(47)
        })
        .await?;
        assert_eq!(receiver.recv().await?, 48);
        assert_eq!(receiver.recv().await?, 47);
        io::Result::Ok(())
    })
    .unwrap();
}

/// Every test of this file again, in a child process whose runtimes register sockets in
/// oneshot mode (re-armed at each park), the path of pollers without edge mode
/// (runtime/rt/reactor.rs), as `adversarial_net.rs` does.
#[test]
fn every_test_again_with_oneshot_registrations() {
    common::every_test_again_in_oneshot_mode();
}
