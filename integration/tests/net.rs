//! The low-level sockets (`trellis::net`): many connections in one nursery, cancel-safety
//! of reads and writes, half-close, the futures-io ecosystem on trellis's streams, UDP and
//! Unix sockets, and the errors of bad input. Loopback only, bounded in count; every test
//! that could hang runs under the watchdog. The whole file runs twice: with the reactor's
//! edge-triggered registrations, and again in a child process with oneshot ones
//! (`every_test_again_with_oneshot_registrations`).

mod common;

use std::cell::Cell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use common::{HANG_LIMIT, echo, pattern, watchdog};
use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use trellis::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixStream};
use trellis::{Builder, CancelScope, nursery};

/// Raises this process's descriptor limit to its hard limit (a thousand connections are
/// two thousand descriptors).
fn raise_fd_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .expect("raise the soft descriptor limit");
}

/// Accepts connections until cancelled, each echoed by a child; the first error of the
/// accept loop or of a connection ends it.
async fn serve_echo(listener: &TcpListener, served: &Cell<usize>) {
    let failed = nursery(async |n| {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => return Err::<(), _>(e),
            };
            served.set(served.get() + 1);
            n.spawn(echo(stream));
        }
    })
    .await;
    if let Err(group) = failed {
        panic!("the echo server failed: {group}");
    }
}

#[test]
fn a_thousand_concurrent_echo_connections_in_one_nursery_every_byte_verified() {
    raise_fd_limit();
    watchdog(HANG_LIMIT, || {
        const CONNECTIONS: usize = 1000;
        const LEN: usize = 3000;
        trellis::run(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Cell::new(0);
            let verified = Cell::new(0);
            let server = CancelScope::new();
            let stop = server.clone();
            nursery(async |n| {
                let (served, listener) = (&served, &listener);
                n.spawn(async move {
                    server.run(serve_echo(listener, served)).await;
                });
                nursery(async |clients| {
                    for id in 0..CONNECTIONS {
                        let verified = &verified;
                        clients.spawn(async move {
                            let stream = TcpStream::connect(addr).await?;
                            let sent = pattern(id, LEN);
                            let (mut reader, writer) = stream.split();
                            // Write and read at once, from two tasks: the echo does not
                            // wait for the whole message.
                            let mut back = vec![0; LEN];
                            nursery(async |halves| {
                                halves.spawn(async {
                                    writer.stream().write_all(&sent).await?;
                                    writer.stream().shutdown(Shutdown::Write)
                                });
                                reader.read_exact(&mut back).await
                            })
                            .await
                            .map_err(|e| io::Error::other(e.to_string()))?;
                            assert_eq!(back, sent, "connection {id} got other bytes back");
                            let mut rest = [0; 1];
                            assert_eq!(reader.read(&mut rest).await?, 0, "end of stream");
                            verified.set(verified.get() + 1);
                            io::Result::Ok(())
                        });
                    }
                    io::Result::Ok(())
                })
                .await
                .unwrap();
                stop.cancel();
            })
            .await
            .unwrap();
            assert_eq!(verified.get(), CONNECTIONS);
            assert_eq!(served.get(), CONNECTIONS);
        });
    });
}

/// A read that a timeout cancels takes nothing from the socket: the next read gets every
/// byte, on virtual time.
#[test]
fn a_read_cancelled_by_a_timeout_loses_nothing_the_next_read_gets_all() {
    watchdog(HANG_LIMIT, || {
        Builder::new().autojump().run(async {
            let (a, b) = connected_pair().await;
            let mut buf = [0; 64];
            // Nothing sent yet: the read parks, and the timeout drops it.
            let timed_out = trellis::move_on_after(Duration::from_secs(1), b.read(&mut buf)).await;
            assert!(
                timed_out.is_none(),
                "nothing was sent, so the read cannot finish"
            );
            let message = pattern(1, 100_000);
            nursery(async |n| {
                n.spawn(a.write_all(&message));
                // Cancelled reads in a loop while the data streams in: each either reads
                // some bytes (and returns them) or is dropped having read none.
                let mut got = Vec::new();
                while got.len() < message.len() {
                    let mut chunk = [0; 1000];
                    let read = trellis::move_on_after(Duration::from_millis(1), b.read(&mut chunk));
                    if let Some(n) = read.await {
                        let n = n.unwrap();
                        assert!(n > 0, "the writer has not finished");
                        got.extend_from_slice(&chunk[..n]);
                    }
                }
                assert_eq!(got, message, "every byte, in order, none lost or doubled");
                io::Result::Ok(())
            })
            .await
            .unwrap();
        });
    });
}

/// A write that a timeout cancels has sent nothing; a write that returned `n` sent exactly
/// `n`: what the peer reads is the concatenation of the returned prefixes.
#[test]
fn a_write_cancelled_by_a_timeout_sent_nothing() {
    watchdog(HANG_LIMIT, || {
        Builder::new().autojump().run(async {
            let (a, b) = connected_pair().await;
            let chunk = pattern(2, 1 << 16);
            let mut sent = Vec::new();
            let mut cancelled = 0;
            // Nobody reads `b`, so the buffers fill and writes start to block.
            while cancelled < 3 {
                match trellis::move_on_after(Duration::from_millis(5), a.write(&chunk)).await {
                    Some(n) => sent.extend_from_slice(&chunk[..n.unwrap()]),
                    None => cancelled += 1,
                }
            }
            a.shutdown(Shutdown::Write).unwrap();
            let mut received = Vec::new();
            let mut b = b;
            futures_lite::AsyncReadExt::read_to_end(&mut b, &mut received)
                .await
                .unwrap();
            assert_eq!(received.len(), sent.len());
            assert!(
                received == sent,
                "the peer got exactly what the writes reported"
            );
        });
    });
}

/// Half-close: the client shuts down writing, the server reads to end-of-stream and still
/// answers on the same connection.
#[test]
fn half_close_the_peer_reads_eof_and_can_still_answer() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let (client, server) = connected_pair().await;
            client.write_all(b"question").await.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut asked = Vec::new();
            let mut server = server;
            server.read_to_end(&mut asked).await.unwrap();
            assert_eq!(asked, b"question");
            server.write_all(b"answer").await.unwrap();
            drop(server);
            let mut answer = Vec::new();
            let mut client = client;
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"answer");
            // Writing after the shutdown is the system's error, not a panic.
            let err = client.write_all(b"more").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        });
    });
}

/// The futures ecosystem works unchanged: `AsyncReadExt` / `AsyncWriteExt`, a `BufReader`
/// reading lines, `copy` between split halves, and `close` shutting down writing.
#[test]
fn futures_lite_extensions_work_on_trellis_streams() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let (a, b) = connected_pair().await;
            let (b_read, mut b_write) = b.split();
            nursery(async |n| {
                // An echo by `copy` between the two halves of one stream.
                n.spawn(async move {
                    futures_lite::io::copy(b_read, &mut b_write).await?;
                    b_write.close().await
                });
                let mut a = a;
                a.write_all(b"first line\nsecond line\n").await?;
                a.close().await?; // shuts down writing: the copy ends
                let mut lines = futures_lite::io::BufReader::new(&mut a).lines();
                assert_eq!(lines.next().await.unwrap()?, "first line");
                assert_eq!(lines.next().await.unwrap()?, "second line");
                assert!(lines.next().await.is_none());
                io::Result::Ok(())
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn split_halves_reunite_and_halves_of_two_streams_do_not() {
    trellis::run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (a_read, a_write) = a.split();
        let (b_read, b_write) = b.split();
        let err = a_read.reunite(b_write).unwrap_err();
        assert!(err.to_string().contains("two different streams"), "{err}");
        let a = err.read.reunite(a_write).unwrap();
        let b = b_read.reunite(err.write).unwrap();
        a.write_all(b"whole again").await.unwrap();
        let mut buf = [0; 11];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"whole again");
    });
}

#[test]
fn tcp_incoming_is_a_stream_of_connections() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            nursery(async |n| {
                n.spawn(async move {
                    for i in 0..3u8 {
                        let stream = TcpStream::connect(addr).await?;
                        stream.write_all(&[i]).await?;
                    }
                    io::Result::Ok(())
                });
                let mut seen = Vec::new();
                let mut incoming = std::pin::pin!(listener.incoming().take(3));
                while let Some(stream) = incoming.next().await {
                    let mut byte = [0];
                    stream.unwrap().read_exact(&mut byte).await.unwrap();
                    seen.push(byte[0]);
                }
                assert_eq!(seen, [0, 1, 2]);
                io::Result::Ok(())
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn tcp_stream_addresses_and_nodelay() {
    trellis::run(async {
        let (a, b) = connected_pair().await;
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(b.peer_addr().unwrap(), a.local_addr().unwrap());
        assert!(
            a.nodelay().unwrap() && b.nodelay().unwrap(),
            "connected and accepted"
        );
        a.set_nodelay(false).unwrap();
        assert!(!a.nodelay().unwrap());
        let std_stream = a.into_std();
        assert_eq!(std_stream.peer_addr().unwrap(), b.local_addr().unwrap());
    });
}

/// With `TCP_NODELAY` set by default, a small write after another is not held back by the
/// kernel (Nagle waiting for a delayed ACK), which on autojump would be invisible: every
/// task blocked, virtual time jumping past the deadline. (Found with the TLS tests.)
#[test]
fn two_small_writes_after_a_round_trip_arrive_before_an_autojump_deadline() {
    watchdog(HANG_LIMIT, || {
        Builder::new().autojump().run(async {
            let (client, server) = connected_pair().await;
            let mut four = [0; 4];
            client.write_all(b"ping").await.unwrap();
            server.read_exact(&mut four).await.unwrap();
            server.write_all(b"pong").await.unwrap();
            client.read_exact(&mut four).await.unwrap();
            client.write_all(b"first").await.unwrap();
            client.write_all(b"second").await.unwrap();
            let mut eleven = [0; 11];
            let got =
                trellis::move_on_after(Duration::from_secs(1), server.read_exact(&mut eleven));
            assert!(got.await.is_some(), "the second write was held back");
            assert_eq!(&eleven, b"firstsecond");
        });
    });
}

#[test]
fn ipv6_loopback_when_the_machine_has_it() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let Ok(listener) = TcpListener::bind("[::1]:0") else {
                eprintln!("no IPv6 loopback here; skipped");
                return;
            };
            let addr = listener.local_addr().unwrap();
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, peer) = listener.accept().await.unwrap();
            assert!(peer.is_ipv6());
            client.write_all(b"v6").await.unwrap();
            let mut buf = [0; 2];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"v6");
        });
    });
}

#[test]
fn udp_send_to_recv_from_and_connected_send_recv() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            nursery(async |n| {
                // The receiver parks first; the datagrams arrive after.
                n.spawn(async {
                    let mut buf = [0; 64];
                    for expected in [&b"one"[..], b"two"] {
                        let (len, from) = b.recv_from(&mut buf).await.unwrap();
                        assert_eq!(&buf[..len], expected);
                        assert_eq!(from, a_addr);
                    }
                });
                trellis::yield_now().await;
                a.send_to(b"one", b_addr).await.unwrap();
                a.send_to(b"two", b_addr).await.unwrap();
            })
            .await
            .unwrap();
            a.connect(b_addr).unwrap();
            b.connect(a_addr).unwrap();
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            a.send(b"connected").await.unwrap();
            let mut buf = [0; 64];
            let len = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], b"connected");
            // A datagram longer than the buffer is cut, as with std.
            a.send(&[7; 100]).await.unwrap();
            let mut small = [0; 10];
            assert_eq!(b.recv(&mut small).await.unwrap(), 10);
        });
    });
}

#[test]
fn unix_listener_stream_and_datagram_round_trips() {
    watchdog(HANG_LIMIT, || {
        let dir = std::env::temp_dir().join(format!("trellis-net-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (stream_path, dgram_path) = (dir.join("stream.sock"), dir.join("dgram.sock"));
        let _ = std::fs::remove_file(&stream_path);
        let _ = std::fs::remove_file(&dgram_path);
        trellis::run(async {
            let listener = trellis::net::UnixListener::bind(&stream_path).unwrap();
            nursery(async |n| {
                n.spawn(async {
                    let (server, _) = listener.accept().await.unwrap();
                    echo(server).await.unwrap();
                });
                let client = UnixStream::connect(&stream_path).await.unwrap();
                let sent = pattern(3, 50_000);
                client.write_all(&sent).await.unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                let mut client = client;
                client.read_to_end(&mut back).await.unwrap();
                assert!(back == sent);
            })
            .await
            .unwrap();

            let server = UnixDatagram::bind(&dgram_path).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            client.send_to(b"datagram", &dgram_path).await.unwrap();
            let mut buf = [0; 16];
            let (len, _) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], b"datagram");
        });
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Bad input gets the system's error or a clear one, never a panic.
#[test]
fn bad_input_is_an_io_error_not_a_panic() {
    trellis::run(async {
        // Nothing listens on a port just freed.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = TcpStream::connect(free).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        // No port: not an address (and not a name to resolve either).
        let err = TcpListener::bind("127.0.0.1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = TcpListener::bind(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let err = UdpSocket::bind("127.0.0.1:99999").unwrap_err(); // no such port
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = UnixStream::connect("/nonexistent/trellis.sock")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let unconnected = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The system's error for a send with no destination (`EDESTADDRREQ` on Linux).
        let err = unconnected.send(b"to nobody").await.unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        let err = unconnected.peer_addr().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    });
}

#[test]
fn a_socket_outside_a_runtime_is_an_error_naming_the_fix() {
    let err = TcpListener::bind("127.0.0.1:0").unwrap_err();
    assert!(err.to_string().contains("needs a trellis runtime"), "{err}");
    let err = UnixStream::pair().unwrap_err();
    assert!(err.to_string().contains("trellis::run"), "{err}");
}

/// A socket belongs to the runtime that made it: using it from another runtime is an
/// error (that runtime never waits on the socket's poller), not a hang; and it is one also
/// when the operation would not have had to wait (bytes already there, a connection in
/// the backlog), so the mistake does not hide until the day it has to. Under a watchdog.
#[test]
fn a_socket_used_in_another_runtime_is_an_error_not_a_hang() {
    watchdog(HANG_LIMIT, || {
        let (a, b, listener) = trellis::run(async {
            let (a, b) = UnixStream::pair().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            (a, b, listener)
        });
        let errors = trellis::run(async {
            let mut buf = [0; 1];
            let waiting = a.read(&mut buf).await.unwrap_err();
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let queued = listener.accept().await.unwrap_err();
            std::io::Write::write_all(&mut b.into_std(), b"x").unwrap();
            let ready = a.read(&mut buf).await.unwrap_err();
            [waiting, queued, ready]
        });
        for err in errors {
            assert!(
                err.to_string()
                    .contains("registered with one trellis runtime was used in another"),
                "{err}"
            );
        }
    });
}

/// A connected TCP pair on loopback: (client, server).
async fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Every test of this file again, in a child process whose runtimes register sockets in
/// oneshot mode (re-armed with `epoll_ctl` at each park) — the path pollers without edge
/// mode take.
#[test]
fn every_test_again_with_oneshot_registrations() {
    if std::env::var_os("TRELLIS_REACTOR_ONESHOT").is_some() {
        return; // this is the child
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "every_test_again", "--test-threads=2"])
        .env("TRELLIS_REACTOR_ONESHOT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok"),
        "oneshot mode: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
