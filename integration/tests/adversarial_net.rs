//! Adversarial programs against the documented promises of networking (`trellis::net`:
//! TCP, UDP and Unix sockets, split halves, `lookup_host`, Happy Eyeballs,
//! `open_tcp_listeners`, `serve_tcp` / `serve_listeners`), of threads (`to_thread`,
//! `RuntimeHandle::run` / `run_sync`, `FromThreadError`) and of signals
//! (`open_signal_receiver`). Each test names the promise it attacks and where it is
//! written down.
//!
//! Loopback only (127.0.0.1, and ::1 where the machine has it), bounded in count and in
//! time. Sockets run on the autojump clock under the watchdog, as `net.rs` and `serve.rs`
//! do: loopback I/O is signalled to the reactor before virtual time moves (the executor
//! looks at the reactor before it jumps), so virtual deadlines are deterministic enough to
//! cancel reads and writes at many points. Threads that block on channels run on the real
//! clock or on autojump (which waits for thread work), as `thread.rs` does; nothing sleeps
//! for real and no wall-clock duration is asserted.
//!
//! Signals are process-wide and this file's tests share a process: each signal test uses
//! signals of its own, either ones whose default action is to ignore them (`SIGWINCH`,
//! `SIGURG`, `SIGCHLD`, `SIGCONT`), so a delivery while no receiver is open cannot end the
//! process, or real-time signals 41 to 45, raised only while a receiver of them is open
//! (after its last receiver a real-time signal is ignored: `open_signal_receiver`'s docs).

mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{HANG_LIMIT, Rng, poll_once_then_drop, tcp_pair, virtual_test, watchdog};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use trellis::net::{
    TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
    connect_happy_eyeballs, lookup_host, open_tcp_listeners, serve_listeners, serve_tcp,
};
use trellis::{
    Builder, CancelScope, RuntimeHandle, StartError, move_on_after, nursery, open_signal_receiver,
    sleep, sleep_forever, to_thread, yield_now,
};

// ---------------------------------------------------------------------------------------
// Helpers

/// A connected TCP pair on loopback whose kernel buffers are as small as the system allows
/// (`SO_SNDBUF` on the client, `SO_RCVBUF` on the server), so that writes block after a
/// few kilobytes and cancellations land mid-transfer: (client, server).
async fn small_buffer_tcp_pair() -> (TcpStream, TcpStream) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(4096).unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.set_send_buffer_size(4096).unwrap();
    client.connect(&addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    let client = TcpStream::from_std(client.into()).unwrap();
    let server = TcpStream::from_std(server.into()).unwrap();
    (client, server)
}

/// What a peer sees when its connection was closed on the other side: `"eof"` for
/// end-of-stream or a reset, or what it saw instead.
async fn end_seen_by(stream: &TcpStream) -> String {
    match move_on_after(Duration::from_secs(60), stream.read(&mut [0; 64])).await {
        None => "still open after a minute".to_owned(),
        Some(Ok(0)) => "eof".to_owned(),
        Some(Ok(n)) => format!("{n} bytes"),
        Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => "eof".to_owned(),
        Some(Err(e)) => e.to_string(),
    }
}

/// A fresh directory for this test's socket files.
fn socket_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-adv-net-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_error(e: StartError<io::Error>) -> io::Error {
    io::Error::other(e.to_string())
}

/// The bytes of a stream position: never zero, so a zeroed buffer shows how far a read
/// filled it.
fn nonzero_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 + 1).collect()
}

// ---------------------------------------------------------------------------------------
// Byte streams: a dropped read or write loses no byte

/// Attacks "Cancel-safe: a read dropped before it returns has taken no byte from the
/// socket" and "a write dropped before it returns has sent nothing" (`TcpStream::read` /
/// `write`, runtime/net/stream.rs; README: "a dropped read or write loses no byte"): a
/// mebibyte through loopback, both sides cancelled at random points (polled once then
/// dropped, or cut by a virtual deadline), the two sides sharing one `&TcpStream` each.
/// The bytes received are exactly the bytes the completed writes reported, in order.
#[test]
fn a_mebibyte_with_reads_and_writes_cancelled_at_random_points_arrives_intact() {
    const LEN: usize = 1 << 20;
    virtual_test(async || {
        let (a, b) = small_buffer_tcp_pair().await;
        let sent = common::pattern(11, LEN);
        let received = RefCell::new(Vec::with_capacity(LEN));
        let cancelled = Cell::new(0usize);
        nursery(async |n| {
            let (a, sent, cancelled) = (&a, &sent, &cancelled);
            n.spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
                let mut at = 0;
                while at < LEN {
                    let len = (1 + rng.below(64 * 1024) as usize).min(LEN - at);
                    let chunk = &sent[at..at + len];
                    let wrote = match rng.below(3) {
                        0 => Some(a.write(chunk).await),
                        1 => poll_once_then_drop(a.write(chunk)).await,
                        _ => {
                            let d = Duration::from_micros(1 + rng.below(2000));
                            move_on_after(d, a.write(chunk)).await
                        }
                    };
                    match wrote {
                        Some(n) => at += n?,
                        None => {
                            cancelled.set(cancelled.get() + 1);
                            yield_now().await;
                        }
                    }
                }
                a.shutdown(Shutdown::Write)
            });
            let mut rng = Rng(0xdead_beef_cafe_f00d);
            let mut buf = vec![0; 64 * 1024];
            loop {
                let len = 1 + rng.below(buf.len() as u64) as usize;
                let chunk = &mut buf[..len];
                let got = match rng.below(3) {
                    0 => Some(b.read(chunk).await),
                    1 => poll_once_then_drop(b.read(chunk)).await,
                    _ => {
                        let d = Duration::from_micros(1 + rng.below(2000));
                        move_on_after(d, b.read(chunk)).await
                    }
                };
                match got {
                    Some(n) => match n? {
                        0 => break,
                        n => received.borrow_mut().extend_from_slice(&buf[..n]),
                    },
                    None => {
                        cancelled.set(cancelled.get() + 1);
                        yield_now().await;
                    }
                }
            }
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let received = received.into_inner();
        assert_eq!(received.len(), LEN, "no byte lost or doubled in count");
        assert!(received == sent, "every byte in order");
        assert!(
            cancelled.get() > 10,
            "the attack cancelled {}",
            cancelled.get()
        );
    });
}

/// The same attack through the `futures-io` impls of split halves of a Unix stream, each
/// half owned by its own task (runtime/net/stream.rs: `ReadHalf::read` / `WriteHalf::write`
/// "Cancel-safe: dropped before it returns, it has taken no byte"; "split ... so that two
/// tasks can use them at once").
#[test]
fn split_unix_halves_in_two_tasks_cancelled_at_random_points_lose_nothing() {
    const LEN: usize = 512 * 1024;
    virtual_test(async || {
        let (a, b) = UnixStream::pair().unwrap();
        let (_a_read, mut a_write) = a.split();
        let (mut b_read, _b_write) = b.split();
        let sent = nonzero_pattern(LEN);
        let received = RefCell::new(Vec::new());
        nursery(async |n| {
            let sent = &sent;
            n.spawn(async move {
                let mut rng = Rng(17);
                let mut at = 0;
                while at < LEN {
                    let len = (1 + rng.below(20_000) as usize).min(LEN - at);
                    let chunk = &sent[at..at + len];
                    let wrote = if rng.below(2) == 0 {
                        poll_once_then_drop(a_write.write(chunk)).await
                    } else {
                        let d = Duration::from_micros(1 + rng.below(500));
                        move_on_after(d, a_write.write(chunk)).await
                    };
                    match wrote {
                        Some(n) => at += n?,
                        None => yield_now().await,
                    }
                }
                // `close` shuts down writing: the reader sees the end.
                a_write.close().await
            });
            let received = &received;
            n.spawn(async move {
                let mut rng = Rng(23);
                let mut buf = [0; 8192];
                loop {
                    let len = 1 + rng.below(buf.len() as u64) as usize;
                    let got = if rng.below(2) == 0 {
                        poll_once_then_drop(b_read.read(&mut buf[..len])).await
                    } else {
                        let d = Duration::from_micros(1 + rng.below(500));
                        move_on_after(d, b_read.read(&mut buf[..len])).await
                    };
                    match got {
                        Some(n) => match n? {
                            0 => return io::Result::Ok(()),
                            n => received.borrow_mut().extend_from_slice(&buf[..n]),
                        },
                        None => yield_now().await,
                    }
                }
            });
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let received = received.into_inner();
        assert_eq!(received.len(), LEN);
        assert!(received == sent, "every byte in order");
    });
}

/// Attacks `read_exact`'s documented cancellation ("dropped midway, the bytes already read
/// into `buf` are consumed from the socket (they are in `buf`, but how many is not
/// reported)", runtime/net/stream.rs): the bytes taken are exactly the filled prefix of
/// `buf`, nothing else is consumed, and the next read goes on right after them. The
/// pattern has no zero byte, so a zeroed buffer shows how far it was filled.
#[test]
fn read_exact_cut_by_a_deadline_consumes_only_the_prefix_it_filled() {
    const LEN: usize = 60_000;
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        let sent = nonzero_pattern(LEN);
        let (mut at, mut cut) = (0, 0);
        nursery(async |n| {
            let (a, sent) = (&a, &sent);
            // A slow writer: 700 bytes per virtual millisecond.
            n.spawn(async move {
                for piece in sent.chunks(700) {
                    a.write_all(piece).await?;
                    sleep(Duration::from_millis(1)).await;
                }
                a.shutdown(Shutdown::Write)
            });
            while at < LEN {
                let mut buf = vec![0u8; 5000.min(LEN - at)];
                let whole = move_on_after(Duration::from_micros(2500), b.read_exact(&mut buf));
                let filled = match whole.await {
                    Some(done) => {
                        done?;
                        buf.len()
                    }
                    None => {
                        let k = buf.iter().take_while(|&&x| x != 0).count();
                        assert!(
                            buf[k..].iter().all(|&x| x == 0),
                            "a cancelled read_exact filled a prefix, not a scattered part"
                        );
                        if k > 0 {
                            cut += 1;
                        }
                        k
                    }
                };
                assert_eq!(buf[..filled], sent[at..at + filled], "at byte {at}");
                at += filled;
            }
            assert_eq!(b.read(&mut [0; 1]).await?, 0, "then the end of the stream");
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(at, LEN);
        assert!(cut > 3, "only {cut} reads were cut midway");
    });
}

/// Attacks `write_all`'s documented cancellation ("dropped midway, a prefix of `buf` may
/// have been sent", runtime/net/stream.rs): each chunk (all its bytes equal to its
/// number) reaches the peer as a prefix of itself, in order: no byte from the middle, none
/// twice, and a completed `write_all` delivered all of it.
#[test]
fn write_all_cut_by_a_deadline_sent_a_prefix_and_nothing_else() {
    const CHUNKS: u8 = 40;
    const LEN: usize = 100_000;
    virtual_test(async || {
        let (a, b) = small_buffer_tcp_pair().await;
        let completed = RefCell::new(Vec::new());
        let mut received = Vec::new();
        nursery(async |n| {
            let (a, completed) = (&a, &completed);
            n.spawn(async move {
                for id in 1..=CHUNKS {
                    let chunk = vec![id; LEN];
                    let done = move_on_after(Duration::from_millis(1), a.write_all(&chunk));
                    if let Some(done) = done.await {
                        done?;
                        completed.borrow_mut().push(id);
                    }
                }
                a.shutdown(Shutdown::Write)
            });
            // A slow reader: 20 kB per virtual millisecond.
            let mut buf = vec![0; 20_000];
            loop {
                match b.read(&mut buf).await? {
                    0 => break,
                    n => received.extend_from_slice(&buf[..n]),
                }
                sleep(Duration::from_millis(1)).await;
            }
            io::Result::Ok(())
        })
        .await
        .unwrap();
        // Runs of equal bytes: (id, length), in increasing id order.
        let mut runs: Vec<(u8, usize)> = Vec::new();
        for &byte in &received {
            match runs.last_mut() {
                Some((id, len)) if *id == byte => *len += 1,
                _ => runs.push((byte, 1)),
            }
        }
        for pair in runs.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "chunks out of order or split: {runs:?}"
            );
        }
        let completed = completed.into_inner();
        for &(id, len) in &runs {
            assert!(len <= LEN, "chunk {id}: {len} bytes, more than it had");
            if completed.contains(&id) {
                assert_eq!(len, LEN, "chunk {id} completed but arrived cut");
            }
        }
        for id in &completed {
            assert!(
                runs.iter().any(|r| r.0 == *id),
                "completed chunk {id} is missing"
            );
        }
        let cut = runs.iter().filter(|r| r.1 < LEN).count();
        assert!(cut > 0, "no write_all was cut midway: {runs:?}");
        assert!(completed.len() < CHUNKS as usize, "no deadline fired");
    });
}

/// Attacks "Each direction keeps every distinct waker that parked on it (two tasks reading
/// one socket both wake)" (runtime/rt/reactor.rs) and `split`'s "two tasks can also share a
/// `&` reference to the stream": two readers and two writers parked on one TCP stream at
/// once; every one of them completes (a lost waker would leave one parked until the
/// one-minute virtual deadline, which fails the test).
#[test]
fn two_tasks_parked_on_one_stream_in_each_direction_all_wake() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            let (b, got) = (&b, &got);
            for _ in 0..2 {
                n.spawn(async move {
                    let mut one = [0; 1];
                    let read = move_on_after(Duration::from_secs(60), b.read(&mut one)).await;
                    let n = read.expect("a parked reader was never woken")?;
                    got.borrow_mut().extend_from_slice(&one[..n]);
                    io::Result::Ok(())
                });
            }
            trellis::testing::wait_all_tasks_blocked().await;
            a.write_all(b"x").await?;
            trellis::testing::wait_all_tasks_blocked().await;
            a.write_all(b"y").await?;
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let mut got = got.into_inner();
        got.sort_unstable();
        assert_eq!(got, b"xy", "each reader got one byte");

        // Two writers blocked on full buffers, released by one reader.
        let wrote = Cell::new(0usize);
        let block = vec![5u8; 4 << 20];
        nursery(async |n| {
            let (a, wrote, block) = (&a, &wrote, &block);
            for _ in 0..2 {
                n.spawn(async move {
                    let done = move_on_after(Duration::from_secs(60), a.write_all(block)).await;
                    done.expect("a parked writer was never woken")?;
                    wrote.set(wrote.get() + 1);
                    io::Result::Ok(())
                });
            }
            trellis::testing::wait_all_tasks_blocked().await;
            let mut total = 0;
            let mut buf = vec![0; 1 << 16];
            while total < 2 * block.len() {
                total += b.read(&mut buf).await?;
            }
            assert_eq!(total, 2 * block.len());
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(wrote.get(), 2);
    });
}

/// Attacks `WriteHalf`'s "dropping it does not [shut down writing] (the socket closes when
/// both halves are gone)" and `ReadHalf`'s "Dropping both halves closes the socket"
/// (runtime/net/stream.rs): the write half's task is cancelled while it is parked in a
/// write; the read half, parked in another task, still gets what the peer sends, the peer
/// does not see the end; once the read half's task is cancelled mid-read too, the peer sees
/// it.
#[test]
fn a_split_half_dropped_mid_operation_leaves_the_other_half_working() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        let (mut reader, mut writer) = a.split();
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            let got = &got;
            let writing = n.spawn(async move {
                let block = vec![1u8; 8 << 20];
                // Nobody reads `b` yet: this parks with the buffers full.
                let failed = loop {
                    if let Err(e) = writer.write(&block).await {
                        break e;
                    }
                };
                Err::<(), _>(failed)
            });
            let reading = n.spawn(async move {
                let mut buf = [0; 16];
                loop {
                    let n = reader.read(&mut buf).await?;
                    got.borrow_mut().extend_from_slice(&buf[..n]);
                    if n == 0 {
                        return io::Result::Ok(());
                    }
                }
            });
            trellis::testing::wait_all_tasks_blocked().await;
            writing.cancel();
            assert!(writing.await.unwrap_err().is_cancelled());
            // The writer's half is gone mid-write; the reading half still works.
            b.write_all(b"still here").await?;
            while got.borrow().len() < 10 {
                sleep(Duration::from_millis(1)).await;
            }
            // Drain what the cancelled writer had sent: then no end-of-stream follows.
            let mut sink = vec![0; 1 << 16];
            loop {
                match move_on_after(Duration::from_millis(50), b.read(&mut sink)).await {
                    Some(Ok(0)) => panic!("dropping the write half closed the socket"),
                    Some(n) => assert!(n? > 0),
                    None => break,
                }
            }
            reading.cancel();
            assert!(reading.await.unwrap_err().is_cancelled());
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(*got.borrow(), b"still here");
        assert_eq!(end_seen_by(&b).await, "eof", "both halves gone: closed");
    });
}

/// Attacks `shutdown`'s docs (runtime/net/stream.rs: "Shutting down writing sends
/// end-of-stream ... this side may still read") and `poll_close`'s "a socket whose peer is
/// already gone is closed enough": shutting down twice, writing after a shutdown, writing
/// to a peer that is gone and closing then are each the system's error or `Ok`, never a
/// panic or a hang, for TCP and Unix streams and a split write half.
#[test]
fn shutdown_twice_write_after_shutdown_and_close_after_the_peer_left_are_clear() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        a.shutdown(Shutdown::Write).unwrap();
        a.shutdown(Shutdown::Write).unwrap(); // a second time: nothing new to say
        let err = a.write(b"late").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert_eq!(
            b.read(&mut [0; 8]).await.unwrap(),
            0,
            "the peer saw the end once"
        );
        assert_eq!(b.read(&mut [0; 8]).await.unwrap(), 0, "and again");
        b.write_all(b"reply").await.unwrap();
        let mut five = [0; 5];
        a.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"reply", "a half-closed side still reads");
        a.shutdown(Shutdown::Both).unwrap();
        assert_eq!(
            a.read(&mut [0; 8]).await.unwrap(),
            0,
            "read after shutdown(Read)"
        );

        // The peer vanishes: writes fail with the system's error within a few tries.
        let (c, d) = tcp_pair().await;
        drop(d);
        let mut failure = None;
        for _ in 0..100 {
            match c.write(b"into the void").await {
                Ok(_) => yield_now().await,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let failure = failure.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                failure.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{failure}"
        );
        let mut c = c;
        c.close()
            .await
            .expect("closing after the peer left is closed enough");
        c.close().await.expect("and closing twice too");

        // Unix streams, whole and split.
        let (e, f) = UnixStream::pair().unwrap();
        drop(f);
        let err = e.write(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let (_r, mut w) = e.split();
        w.close().await.unwrap();
        w.close().await.unwrap();
        let err = w.write(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    });
}

// ---------------------------------------------------------------------------------------
// Accept, and a cancelled nursery closing its sockets

/// Attacks `accept`'s "Cancel-safe: an accept dropped before it returns has taken no
/// connection; the next accept gets it" (runtime/net/tcp.rs, and `UnixListener::accept`'s
/// same promise in runtime/net/unix.rs): an accept parked, then a connection queued in the
/// backlog, then the parked accept dropped; and accepts cut by a deadline in the very
/// instant a connection arrives. Every connection made is accepted exactly once.
#[test]
fn an_accept_dropped_while_a_connection_waits_in_the_backlog_loses_no_connection() {
    let dir = socket_dir("accept");
    let path = dir.join("l.sock");
    virtual_test(async move || {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(&path).unwrap();
        let addr = tcp.local_addr().unwrap();
        for round in 0..20u8 {
            let parked = poll_once_then_drop(tcp.accept()).await;
            assert!(parked.is_none(), "nothing queued yet");
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut client, &[round]).unwrap();
            let parked = poll_once_then_drop(unix.accept()).await;
            assert!(parked.is_none(), "nothing queued yet");
            let _unix_client = UnixStream::connect(&path).await.unwrap();
            // The parked accepts are gone: the next ones get the queued connections.
            let (server, peer) = tcp.accept().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            let mut byte = [0; 1];
            server.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte[0], round);
            unix.accept().await.unwrap();
        }
        // Deadlines expiring in the instant a connection arrives: accepted by the cut
        // accept, or by the next one; never lost, never twice.
        let accepted = Cell::new(0usize);
        let connected = Cell::new(0usize);
        let held = RefCell::new(Vec::new());
        for round in 0..20u64 {
            nursery(async |n| {
                let (accepted, connected, held) = (&accepted, &connected, &held);
                n.spawn(async move {
                    sleep(Duration::from_millis(10 + round % 2)).await;
                    let client = std::net::TcpStream::connect(addr).unwrap();
                    connected.set(connected.get() + 1);
                    held.borrow_mut().push(client);
                });
                if let Some(got) = move_on_after(Duration::from_millis(10), tcp.accept()).await {
                    got.unwrap();
                    accepted.set(accepted.get() + 1);
                }
            })
            .await
            .unwrap();
            if let Some(got) = move_on_after(Duration::from_millis(1), tcp.accept()).await {
                got.unwrap();
                accepted.set(accepted.get() + 1);
            }
            assert_eq!(accepted.get(), connected.get(), "round {round}");
        }
        assert!(
            move_on_after(Duration::from_secs(1), tcp.accept())
                .await
                .is_none(),
            "no connection accepted twice"
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Attacks "a cancelled nursery closes every socket its tasks held" (README, runtime/net
/// mod.rs: "a task's sockets are dropped when the task is"): a listener and accepted TCP
/// and Unix connections held by tasks (some as split halves, some mid-read, some
/// mid-write with full buffers) when the scope around the nursery is cancelled. Every peer
/// sees the end; the TCP port refuses connections and can be bound again; the Unix
/// listener's file stays (documented: "The file stays after the listener is dropped") and
/// refuses connections.
#[test]
fn a_cancelled_nursery_closes_every_socket_peers_see_the_end_and_the_port_is_free() {
    const CLIENTS: usize = 6;
    let dir = socket_dir("cancelled");
    let path = dir.join("l.sock");
    virtual_test(async move || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let unix = UnixListener::bind(&path).unwrap();
        let accepted = Cell::new(0usize);
        let mut clients = Vec::new();
        let mut unix_clients = Vec::new();
        let scope = CancelScope::new();
        let out = scope
            .clone()
            .run(nursery(async |n| {
                let accepted = &accepted;
                n.spawn(async move {
                    let listener = listener;
                    nursery(async |conns| -> io::Result<()> {
                        loop {
                            let (stream, _) = listener.accept().await?;
                            let i = accepted.get();
                            accepted.set(i + 1);
                            conns.spawn(async move {
                                match i % 3 {
                                    // Held idle.
                                    0 => sleep_forever().await,
                                    // Split, each half in its own task, both parked.
                                    1 => {
                                        let (mut r, mut w) = stream.split();
                                        nursery(async |h| {
                                            h.spawn(async move {
                                                let _ = r.read(&mut [0; 8]).await;
                                                sleep_forever().await
                                            });
                                            h.spawn(async move {
                                                let block = vec![0u8; 8 << 20];
                                                loop {
                                                    let _ = w.write(&block).await;
                                                }
                                            });
                                        })
                                        .await
                                        .unwrap();
                                    }
                                    // Mid-write with full buffers.
                                    _ => {
                                        let block = vec![0u8; 8 << 20];
                                        loop {
                                            let _ = stream.write(&block).await;
                                        }
                                    }
                                }
                            });
                        }
                    })
                    .await
                    .map_err(|g| g.into_first())
                });
                n.spawn(async move {
                    let unix = unix;
                    nursery(async |conns| -> io::Result<()> {
                        loop {
                            let (stream, _) = unix.accept().await?;
                            conns.spawn(async move {
                                let _ = stream.read(&mut [0; 8]).await;
                                sleep_forever().await
                            });
                        }
                    })
                    .await
                    .map_err(|g| g.into_first())
                });
                for _ in 0..CLIENTS {
                    clients.push(TcpStream::connect(addr).await?);
                    unix_clients.push(UnixStream::connect(&path).await?);
                }
                while accepted.get() < CLIENTS {
                    sleep(Duration::from_millis(1)).await;
                }
                trellis::testing::wait_all_tasks_blocked().await;
                scope.cancel();
                sleep_forever().await;
                io::Result::Ok(())
            }))
            .await;
        assert!(out.is_none(), "cancelled: {out:?}");
        for (i, client) in clients.iter().enumerate() {
            // Drain what the writers had sent, then the end.
            let mut buf = vec![0; 1 << 16];
            let end = loop {
                match move_on_after(Duration::from_secs(60), client.read(&mut buf)).await {
                    None => break "still open after a minute".to_owned(),
                    Some(Ok(0)) => break "eof".to_owned(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                        break "eof".to_owned();
                    }
                    Some(Err(e)) => break e.to_string(),
                }
            };
            assert_eq!(end, "eof", "client {i}");
        }
        for (i, client) in unix_clients.iter().enumerate() {
            let end = move_on_after(Duration::from_secs(60), client.read(&mut [0; 8])).await;
            assert!(matches!(end, Some(Ok(0))), "unix client {i}: {end:?}");
        }
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let again = TcpListener::bind(addr).expect("the port is free again");
        assert_eq!(again.local_addr().unwrap(), addr);
        assert!(path.exists(), "the socket file stays, as documented");
        let err = UnixStream::connect(&path).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Servers

/// Attacks `serve_listeners`' "Dropping the stream closes the connection; a task's stream
/// is dropped when the handler returns" and that only a handler's `Err` or panic stops the
/// server (runtime/net/serve.rs): a handler that returns at once closes each connection
/// (the client sees the end) and the server goes on serving the next ones.
#[test]
fn a_handler_that_returns_at_once_closes_each_connection_and_the_server_goes_on() {
    virtual_test(async || {
        let served = Cell::new(0usize);
        let ends = RefCell::new(Vec::new());
        let handler = async |_stream: TcpStream| served.set(served.get() + 1);
        let out = trellis::cancel_scope(async |server| {
            nursery(async |n| {
                let addrs = n
                    .start(async |_n, status| {
                        serve_tcp(0, Some("127.0.0.1"), handler, status).await
                    })
                    .await
                    .map_err(start_error)?;
                for _ in 0..10 {
                    let client = TcpStream::connect(addrs[0]).await?;
                    let end = end_seen_by(&client).await;
                    ends.borrow_mut().push(end);
                }
                server.cancel();
                io::Result::Ok(())
            })
            .await
        })
        .await;
        assert!(
            out.is_none(),
            "the server only stops when cancelled: {out:?}"
        );
        assert_eq!(served.get(), 10);
        assert_eq!(*ends.borrow(), vec!["eof"; 10]);
    });
}

/// Attacks "A handler's `Err` cancels the server ... and is returned" and "Cancelling it
/// ... drops (closes) every connection and every listener" (`serve_listeners`,
/// runtime/net/serve.rs), through `serve_tcp` under `Nursery::start`: the error comes
/// back unchanged, a connection held by another handler is closed, and the listener is
/// gone (its port refuses connections).
#[test]
fn a_handler_error_comes_back_and_closes_the_listener_and_every_connection() {
    virtual_test(async || {
        let addr = Cell::new(None);
        let held_end = RefCell::new(String::new());
        let count = Cell::new(0usize);
        let handler = async |stream: TcpStream| {
            count.set(count.get() + 1);
            if count.get() == 1 {
                let _held = stream;
                sleep_forever().await;
            }
            Err::<(), _>(io::Error::new(io::ErrorKind::InvalidData, "bad request"))
        };
        let out = nursery(async |n| {
            let addrs = n
                .start(async |_n, status| serve_tcp(0, Some("127.0.0.1"), handler, status).await)
                .await
                .map_err(start_error)?;
            addr.set(Some(addrs[0]));
            let held = TcpStream::connect(addrs[0]).await?;
            while count.get() < 1 {
                sleep(Duration::from_millis(1)).await;
            }
            let _bad = TcpStream::connect(addrs[0]).await?;
            // Shielded, so that the server's failure (which cancels this nursery) lets this
            // body see the held connection end.
            trellis::shield(async { *held_end.borrow_mut() = end_seen_by(&held).await }).await;
            io::Result::Ok(())
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1, "{group}");
        assert_eq!(group.first().kind(), io::ErrorKind::InvalidData);
        assert_eq!(group.first().to_string(), "bad request");
        assert_eq!(*held_end.borrow(), "eof");
        let err = TcpStream::connect(addr.get().unwrap()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "the listener is closed"
        );
    });
}

/// Attacks "A handler's panic cancels the server like an error; once every connection task
/// is gone it is resumed from `serve_listeners` with its original payload"
/// (runtime/net/serve.rs): a payload that is not a string comes back as itself (and is
/// dropped once), and the connections and the listener are closed by then.
#[test]
fn a_handler_panic_resumes_with_its_own_payload_after_every_connection_closed() {
    struct Payload(Arc<AtomicUsize>);
    impl Drop for Payload {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    virtual_test(async move || {
        let addr = Cell::new(None);
        let count = Cell::new(0usize);
        let d = &d;
        let handler = async |stream: TcpStream| {
            count.set(count.get() + 1);
            if count.get() == 1 {
                let _held = stream;
                sleep_forever().await;
            }
            std::panic::panic_any(Payload(d.clone()))
        };
        let mut held = None;
        let caught = common::catch_unwind(nursery(async |n| {
            let addrs = n
                .start(async |_n, status| serve_tcp(0, Some("127.0.0.1"), handler, status).await)
                .await
                .map_err(start_error)?;
            addr.set(Some(addrs[0]));
            held = Some(TcpStream::connect(addrs[0]).await?);
            while count.get() < 1 {
                sleep(Duration::from_millis(1)).await;
            }
            let _boom = TcpStream::connect(addrs[0]).await?;
            sleep_forever().await;
            io::Result::Ok(())
        }))
        .await;
        let payload = caught.expect_err("the panic resumes from the server's nursery");
        assert!(payload.is::<Payload>(), "the payload is the handler's own");
        drop(payload);
        assert_eq!(d.load(Ordering::SeqCst), 1, "dropped once, here");
        assert_eq!(end_seen_by(held.as_ref().unwrap()).await, "eof");
        let err = TcpStream::connect(addr.get().unwrap()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "the listener is closed"
        );
    });
    assert_eq!(drops.load(Ordering::SeqCst), 1, "never dropped twice");
}

/// Attacks `serve_listeners`' "No listener: `InvalidInput`" and `serve_tcp`'s "Those of
/// [`open_tcp_listeners`] (reported to `start` as the child's error, before `started`)"
/// (runtime/net/serve.rs): under `Nursery::start`, both come back from `start` as the
/// child's error, not a hang waiting for `started`.
#[test]
fn serving_nothing_or_a_taken_port_under_start_fails_the_start() {
    virtual_test(async || {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let out = nursery(async |n| {
            let none = n
                .start(async |_n, status| {
                    serve_listeners(Vec::new(), common::echo::<TcpStream>, status).await
                })
                .await
                .unwrap_err();
            let taken = n
                .start(async |_n, status| {
                    serve_tcp(port, Some("127.0.0.1"), common::echo::<TcpStream>, status).await
                })
                .await
                .unwrap_err();
            Ok::<_, io::Error>((none, taken))
        })
        .await;
        let (none, taken) = out.unwrap();
        let none = none.into_error().expect("the child's own error");
        assert_eq!(none.kind(), io::ErrorKind::InvalidInput, "{none}");
        let taken = taken.into_error().expect("the child's own error");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse, "{taken}");
        assert!(taken.to_string().contains(&port.to_string()), "{taken}");
    });
}

/// Attacks `open_tcp_listeners`' "the system's error if an address cannot be bound ..., in
/// which case no listener stays open" (runtime/net/serve.rs): "localhost" names several
/// loopback addresses; the port is taken on the last of them only, so the first ones bind
/// and then the last fails. Afterwards the first addresses' port is free again.
#[test]
fn open_tcp_listeners_failing_on_the_last_address_leaves_no_listener_open() {
    virtual_test(async || {
        let order = lookup_host("localhost", 0).await.unwrap();
        if order.len() < 2 {
            eprintln!("localhost names one address here ({order:?}); skipped");
            return;
        }
        let last = *order.last().unwrap();
        // A port free on every address, taken on the last one only.
        let (blocker, port) = loop {
            let blocker = std::net::TcpListener::bind(last).unwrap();
            let port = blocker.local_addr().unwrap().port();
            let others_free = order[..order.len() - 1].iter().all(|a| {
                let mut a = *a;
                a.set_port(port);
                std::net::TcpListener::bind(a).is_ok()
            });
            if others_free {
                break (blocker, port);
            }
        };
        let err = open_tcp_listeners(port, Some("localhost"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        for a in &order[..order.len() - 1] {
            let mut a = *a;
            a.set_port(port);
            // A listener left open would make this connect succeed.
            let connect = std::net::TcpStream::connect(a);
            assert!(connect.is_err(), "a listener on {a} stayed open");
            std::net::TcpListener::bind(a).expect("the port is free on the first addresses");
        }
        drop(blocker);
    });
}

// ---------------------------------------------------------------------------------------
// Datagrams

/// Attacks `UdpSocket::recv_from`'s and `recv`'s "Cancel-safe: dropped before it returns,
/// it has taken no datagram" (runtime/net/udp.rs), and `UnixDatagram`'s same promise: a
/// receive parked, a datagram arriving, the receive dropped; then batches of numbered
/// datagrams read with receives cancelled at random points. Every datagram arrives once,
/// in order.
#[test]
fn a_recv_dropped_as_a_datagram_arrives_loses_no_datagram() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut buf = [0; 64];
        let parked = poll_once_then_drop(b.recv_from(&mut buf)).await;
        assert!(parked.is_none(), "nothing sent yet");
        a.send_to(b"first", b_addr).await.unwrap();
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"first"[..], a.local_addr().unwrap()));

        let mut rng = Rng(99);
        let mut got = Vec::new();
        for batch in 0..20u32 {
            for i in 0..25u32 {
                a.send_to(&(batch * 25 + i).to_be_bytes(), b_addr)
                    .await
                    .unwrap();
            }
            let mut received = 0;
            while received < 25 {
                let mut buf = [0; 8];
                let read = match rng.below(3) {
                    0 => poll_once_then_drop(b.recv_from(&mut buf)).await,
                    1 => {
                        let d = Duration::from_micros(rng.below(100));
                        move_on_after(d, b.recv_from(&mut buf)).await
                    }
                    _ => Some(b.recv_from(&mut buf).await),
                };
                if let Some(r) = read {
                    let (n, _) = r.unwrap();
                    assert_eq!(n, 4);
                    got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                    received += 1;
                }
            }
        }
        assert!(
            got.iter().copied().eq(0..500),
            "each datagram once, in order"
        );

        // A Unix datagram pair: a parked recv dropped, then a deadline in the instant the
        // datagram is sent.
        let (c, d) = UnixDatagram::pair().unwrap();
        let parked = poll_once_then_drop(d.recv(&mut buf)).await;
        assert!(parked.is_none());
        c.send(b"one").await.unwrap();
        assert_eq!(d.recv(&mut buf).await.unwrap(), 3);
        let mut delivered = 0;
        for round in 0..20u64 {
            nursery(async |n| {
                let c = &c;
                n.spawn(async move {
                    sleep(Duration::from_millis(5 + round % 2)).await;
                    c.send(b"two").await
                });
                if move_on_after(Duration::from_millis(5), d.recv(&mut buf))
                    .await
                    .is_some()
                {
                    delivered += 1;
                }
                io::Result::Ok(())
            })
            .await
            .unwrap();
            if move_on_after(Duration::from_millis(1), d.recv(&mut buf))
                .await
                .is_some()
            {
                delivered += 1;
            }
            assert_eq!(delivered, round + 1, "round {round}: lost or doubled");
        }
    });
}

/// Attacks the reactor's "two tasks reading one socket both wake" (runtime/rt/reactor.rs)
/// for datagrams: three tasks parked in `recv_from` on one UDP socket, three datagrams
/// sent one at a time; each task gets one.
#[test]
fn three_tasks_parked_on_one_udp_socket_each_get_a_datagram() {
    virtual_test(async || {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            let (b, got) = (&b, &got);
            for _ in 0..3 {
                n.spawn(async move {
                    let mut buf = [0; 8];
                    let r = move_on_after(Duration::from_secs(60), b.recv_from(&mut buf)).await;
                    let (len, _) = r.expect("a parked receiver was never woken")?;
                    got.borrow_mut().push(buf[..len].to_vec());
                    io::Result::Ok(())
                });
            }
            for d in [b"a", b"b", b"c"] {
                trellis::testing::wait_all_tasks_blocked().await;
                a.send_to(d, b.local_addr()?).await?;
            }
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let mut got = got.into_inner();
        got.sort();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    });
}

// ---------------------------------------------------------------------------------------
// Unix socket paths

/// Attacks `UnixListener::bind`'s and `UnixDatagram::bind`'s "`AddrInUse` if the file
/// exists" and `UnixStream::connect`'s "`NotFound` if no socket file is there,
/// `ConnectionRefused` if nothing listens on it" (runtime/net/unix.rs): a live socket, a
/// stale one (its listener dropped), a regular file and a directory at the path; a path too
/// long for a socket address. Each is a clear error, never a panic; the stale file can be
/// removed and bound again.
#[test]
fn unix_socket_paths_that_exist_already_are_clear_errors() {
    let dir = socket_dir("paths");
    virtual_test({
        let dir = dir.clone();
        async move || {
            let live = dir.join("live.sock");
            let _listener = UnixListener::bind(&live).unwrap();
            let err = UnixListener::bind(&live).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            let err = UnixDatagram::bind(&live).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

            let stale = dir.join("stale.sock");
            drop(UnixListener::bind(&stale).unwrap());
            assert!(stale.exists(), "the file stays after the listener");
            let err = UnixListener::bind(&stale).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            let err = UnixStream::connect(&stale).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            std::fs::remove_file(&stale).unwrap();
            let rebound = UnixListener::bind(&stale).expect("bound again once removed");
            let _c = UnixStream::connect(&stale).await.unwrap();
            rebound.accept().await.unwrap();

            let file = dir.join("regular");
            std::fs::write(&file, b"not a socket").unwrap();
            let err = UnixListener::bind(&file).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            let err = UnixDatagram::bind(&file).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            let err = UnixStream::connect(&file).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
            assert_eq!(std::fs::read(&file).unwrap(), b"not a socket", "left alone");

            let err = UnixListener::bind(&dir).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

            let err = UnixStream::connect(dir.join("missing.sock"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");

            let long = dir.join("x".repeat(200));
            let err = UnixListener::bind(&long).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(UnixStream::connect(&long).await.is_err());
            assert!(UnixDatagram::bind(&long).is_err());
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Happy Eyeballs and name resolution

/// Attacks `connect_happy_eyeballs`' "The first attempt to connect wins, and every other
/// attempt is cancelled and its socket closed (one that connected in the same instant
/// too): no connection but the returned one stays open" (runtime/net/happy_eyeballs.rs),
/// seen from the server: five attempts at once to one listener all complete their
/// handshake; of the five connections accepted, exactly one carries the winner's bytes and
/// the other four end at once.
#[test]
fn happy_eyeballs_losers_that_connected_in_the_same_instant_are_closed() {
    virtual_test(async || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let winner = connect_happy_eyeballs([addr; 5], Duration::ZERO)
            .await
            .unwrap();
        winner.write_all(b"winner").await.unwrap();
        winner.shutdown(Shutdown::Write).unwrap();
        let mut seen = Vec::new();
        while let Some(accepted) = move_on_after(Duration::from_secs(1), listener.accept()).await {
            let (stream, _) = accepted.unwrap();
            let mut all = Vec::new();
            let mut stream = stream;
            let read = move_on_after(Duration::from_secs(60), stream.read_to_end(&mut all));
            match read.await {
                Some(Ok(_)) => seen.push(String::from_utf8(all).unwrap()),
                Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    seen.push(String::new());
                }
                other => panic!("a loser stayed open: {other:?}"),
            }
        }
        assert!(!seen.is_empty() && seen.len() <= 5, "{seen:?}");
        assert_eq!(
            seen.iter().filter(|s| *s == "winner").count(),
            1,
            "{seen:?}"
        );
        assert!(
            seen.iter().all(|s| s.is_empty() || s == "winner"),
            "{seen:?}"
        );
    });
}

/// Attacks `lookup_host`'s "Dropping the future midway abandons the lookup ... No result is
/// lost that anyone could still use" and its errors ("an `io::Error` whose message names
/// the host"), plus the literal forms it answers without a thread
/// (runtime/net/resolve.rs): lookups dropped after one poll, many at once beyond a pool of
/// one thread, and malformed hosts, each an error naming the host, never a panic.
#[test]
fn lookups_dropped_midway_queued_beyond_the_pool_or_malformed_are_all_answered() {
    watchdog(HANG_LIMIT, || {
        Builder::new().thread_limit(1).autojump().run(async {
            for _ in 0..10 {
                let parked = poll_once_then_drop(lookup_host("localhost", 80)).await;
                assert!(parked.is_none(), "a name goes to a worker thread");
            }
            let answers = RefCell::new(Vec::new());
            nursery(async |n| {
                let answers = &answers;
                for i in 0..20u16 {
                    n.spawn(async move {
                        let addrs = lookup_host("localhost", i).await?;
                        answers.borrow_mut().push((i, addrs));
                        io::Result::Ok(())
                    });
                }
                io::Result::Ok(())
            })
            .await
            .unwrap();
            let answers = answers.into_inner();
            assert_eq!(answers.len(), 20);
            for (port, addrs) in answers {
                assert!(!addrs.is_empty());
                assert!(
                    addrs
                        .iter()
                        .all(|a| a.port() == port && a.ip().is_loopback())
                );
            }
            let v6: SocketAddr = "[::1]:7".parse().unwrap();
            assert_eq!(lookup_host("[::1]", 7).await.unwrap(), [v6]);
            assert_eq!(lookup_host("::1", 7).await.unwrap(), [v6]);
            for bad in [
                "",
                "[::1",
                "::1]",
                "[127.0.0.1]",
                "[::1]:80",
                "a b",
                "bad..name.",
            ] {
                match lookup_host(bad, 80).await {
                    Ok(addrs) => panic!("{bad:?} resolved to {addrs:?}"),
                    Err(e) => assert!(e.to_string().contains(&format!("{bad:?}")), "{e}"),
                }
            }
        });
    });
}

// ---------------------------------------------------------------------------------------
// Threads

/// Attacks `to_thread`'s "A panic in `f` is resumed in the task that awaits the future
/// (with the same payload)" (runtime/thread.rs) and the nursery's "a panic in a child is
/// resumed in the caller" (README): the payload is the closure's own value, moved (dropped
/// exactly once, by the catcher), and the panicking child's sibling, holding a socket, is
/// cancelled and its socket closed first.
#[test]
fn a_to_thread_panic_resumes_with_its_payload_after_the_siblings_sockets_closed() {
    struct Payload(u32, Arc<AtomicUsize>);
    impl Drop for Payload {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (end, value) = watchdog(HANG_LIMIT, move || {
        trellis::run(async move {
            let (a, b) = tcp_pair().await;
            let caught = common::catch_unwind(nursery(async |n| {
                n.spawn(async move {
                    let _held = b;
                    sleep_forever().await
                });
                n.spawn(async move {
                    let d = d.clone();
                    to_thread(move || -> () { std::panic::panic_any(Payload(7, d)) }).await
                });
            }))
            .await;
            let payload = caught.expect_err("the panic resumes from the nursery");
            let payload = payload
                .downcast::<Payload>()
                .expect("the closure's own payload");
            let end = end_seen_by(&a).await;
            (end, payload.0)
        })
    });
    assert_eq!(end, "eof", "the sibling's socket was closed");
    assert_eq!(value, 7);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped once, by the catcher"
    );
}

/// Attacks `to_thread`'s cancellation: "A call already running runs to its end on its
/// thread and its result is dropped there ... The runtime never waits for an abandoned
/// call" (runtime/thread.rs): the abandoned call's result is dropped on the worker thread
/// (not the runtime's), after the runtime has already moved on; the runtime does not hang.
#[test]
fn an_abandoned_calls_result_is_dropped_on_its_worker_after_the_runtime_moved_on() {
    struct Noted(mpsc::Sender<std::thread::ThreadId>);
    impl Drop for Noted {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }
    watchdog(HANG_LIMIT, || {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (dropped_tx, dropped_rx) = mpsc::channel();
        let (runtime_thread, after) = trellis::run(async move {
            let out = trellis::cancel_scope(async |scope| {
                let remote = scope.remote();
                to_thread(move || {
                    started_tx.send(std::thread::current().id()).unwrap();
                    remote.cancel();
                    release_rx.recv().unwrap();
                    Noted(dropped_tx)
                })
                .await
            })
            .await;
            assert!(out.is_none(), "the caller was cancelled");
            // The runtime goes on while the call is still blocked on its thread.
            let after = to_thread(|| 40).await + 2;
            (std::thread::current().id(), after)
        });
        assert_eq!(after, 42);
        let worker = started_rx.recv().unwrap();
        assert!(
            dropped_rx.try_recv().is_err(),
            "not dropped before the call returned"
        );
        release_tx.send(()).unwrap();
        let dropped_on = dropped_rx.recv().expect("the result was dropped");
        assert_eq!(dropped_on, worker, "on the worker thread");
        assert_ne!(dropped_on, runtime_thread);
    });
}

/// Attacks "At most `Builder::thread_limit` calls run at once; the others wait, in order,
/// for a free thread ... a call still queued is never started" (`to_thread`,
/// runtime/thread.rs) with cancellations mixed in: 120 calls on a pool of two, every third
/// caller cancelled after its call was submitted. The bound holds, every call not
/// cancelled returns its own value, no cancelled call's result reaches anyone, and the
/// runtime ends.
#[test]
fn calls_beyond_the_thread_limit_queue_and_complete_with_cancellations_mixed_in() {
    const CALLS: usize = 120;
    const LIMIT: usize = 2;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let (values, cancelled) = watchdog(HANG_LIMIT, move || {
        Builder::new()
            .thread_limit(LIMIT)
            .autojump()
            .run(async move {
                let values = RefCell::new(Vec::new());
                let cancelled = Cell::new(0usize);
                nursery(async |n| {
                    let mut handles = Vec::new();
                    for i in 0..CALLS {
                        let (r, m, values) = (r.clone(), m.clone(), &values);
                        handles.push(n.spawn(async move {
                            let v = to_thread(move || {
                                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                                m.fetch_max(now, Ordering::SeqCst);
                                std::thread::yield_now();
                                r.fetch_sub(1, Ordering::SeqCst);
                                i * 3
                            })
                            .await;
                            values.borrow_mut().push((i, v));
                        }));
                    }
                    yield_now().await; // every call submitted
                    for (i, h) in handles.iter().enumerate() {
                        if i % 3 == 1 {
                            h.cancel();
                        }
                    }
                    for (i, h) in handles.into_iter().enumerate() {
                        match h.await {
                            Ok(()) => {}
                            Err(e) => {
                                assert!(e.is_cancelled() && i % 3 == 1, "call {i}: {e}");
                                cancelled.set(cancelled.get() + 1);
                            }
                        }
                    }
                })
                .await
                .unwrap();
                (values.into_inner(), cancelled.get())
            })
    });
    assert!(
        most.load(Ordering::SeqCst) <= LIMIT,
        "more than the limit ran at once"
    );
    for &(i, v) in &values {
        assert_eq!(v, i * 3, "call {i} got another call's value");
    }
    let done: Vec<usize> = values.iter().map(|&(i, _)| i).collect();
    for i in (0..CALLS).filter(|i| i % 3 != 1) {
        assert!(
            done.contains(&i),
            "call {i} was not cancelled but never returned"
        );
    }
    assert_eq!(values.len() + cancelled, CALLS);
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

/// Attacks "once the runtime has ended, every call returns [`FromThreadError`] at once" and
/// `is_runtime_gone`'s "the runtime had ended ... (its root future returned, or it
/// panicked)" (runtime/thread.rs): a runtime whose root panics, while a thread is blocked
/// in `run` on a future that never ends; the blocked thread is released with the
/// runtime-gone error, and later calls fail at once.
#[test]
fn a_runtime_that_panicked_releases_blocked_callers_and_refuses_later_ones() {
    watchdog(HANG_LIMIT, || {
        let (handle_tx, handle_rx) = mpsc::channel::<RuntimeHandle>();
        let (running_tx, running_rx) = mpsc::channel();
        let blocked = std::thread::spawn(move || {
            let handle = handle_rx.recv().unwrap();
            let out = handle.run(move || async move {
                running_tx.send(()).unwrap();
                sleep_forever().await
            });
            (handle, out)
        });
        let caught = std::panic::catch_unwind(move || {
            trellis::run(async move {
                handle_tx.send(RuntimeHandle::current()).unwrap();
                to_thread(move || running_rx.recv().unwrap()).await;
                panic!("the root gives up");
            })
        });
        assert_eq!(
            common::panic_message(&*caught.unwrap_err()),
            "the root gives up"
        );
        let (handle, out) = blocked.join().unwrap();
        let err = out.unwrap_err();
        assert!(err.is_runtime_gone(), "{err}");
        assert!(!err.is_on_runtime_thread());
        assert!(handle.is_finished());
        let later = handle.run_sync(|| 1).unwrap_err();
        assert!(later.is_runtime_gone(), "{later}");
        assert!(handle.run(|| async { 2 }).unwrap_err().is_runtime_gone());
    });
}

/// Attacks `run_sync`'s and `run`'s "`is_on_runtime_thread`: called on the thread of a
/// trellis runtime (this one's, which would wait for itself forever ...); `f` is not run"
/// (runtime/thread.rs) from the places where the runtime's thread is least obvious: inside
/// a `run_sync` closure and inside a `run` future that a worker sent back. Each nested
/// call is refused at once (no deadlock), and the outer calls still return their values.
#[test]
fn from_thread_calls_nested_inside_from_thread_work_are_refused_not_deadlocked() {
    let out = watchdog(HANG_LIMIT, || {
        Builder::new().autojump().run(async {
            let handle = RuntimeHandle::current();
            to_thread(move || {
                let h = handle.clone();
                let in_sync = handle
                    .run_sync(move || {
                        let nested = h.run_sync(|| unreachable!("must not run"));
                        let nested_run = h.run(|| async { unreachable!("must not run") });
                        (nested.unwrap_err(), nested_run.unwrap_err())
                    })
                    .unwrap();
                let h = handle.clone();
                let in_run = handle
                    .run(move || async move {
                        yield_now().await;
                        let nested = h.run_sync(|| unreachable!("must not run"));
                        sleep(Duration::from_secs(1)).await;
                        nested.unwrap_err()
                    })
                    .unwrap();
                (in_sync, in_run)
            })
            .await
        })
    });
    let ((a, b), c) = out;
    for err in [a, b, c] {
        assert!(err.is_on_runtime_thread(), "{err}");
        assert!(!err.is_runtime_gone());
        assert!(err.to_string().contains("own thread"), "{err}");
    }
}

/// Attacks `run_sync`'s "A panic in `f` is caught on the runtime's thread (the runtime goes
/// on) and resumed here, in the calling thread, with the same payload" together with
/// `to_thread`'s "A panic in `f` is resumed in the task that awaits the future"
/// (runtime/thread.rs): a panic in a `run_sync` closure that the worker does not catch
/// travels runtime → worker → awaiting task with its payload intact, while a socket
/// transfer beside it goes on unharmed and the runtime keeps serving `run_sync` calls.
#[test]
fn a_run_sync_panic_travels_back_through_the_worker_to_the_awaiting_task() {
    virtual_test(async || {
        let handle = RuntimeHandle::current();
        let (a, b) = tcp_pair().await;
        let sent = common::pattern(5, 300_000);
        let mut received = Vec::new();
        let caught = RefCell::new(None);
        nursery(async |n| {
            let (a, sent, caught, handle) = (&a, &sent, &caught, &handle);
            n.spawn(async move {
                a.write_all(sent).await?;
                a.shutdown(Shutdown::Write)
            });
            n.spawn(async move {
                let h = handle.clone();
                let out = common::catch_unwind(to_thread(move || {
                    h.run_sync(|| std::panic::panic_any(0xbad_u64)).unwrap();
                }))
                .await;
                *caught.borrow_mut() = Some(*out.unwrap_err().downcast::<u64>().unwrap());
                // The runtime still serves calls from threads.
                let h = handle.clone();
                let again = to_thread(move || h.run_sync(|| 5).unwrap()).await;
                assert_eq!(again, 5);
            });
            let mut buf = [0; 4096];
            loop {
                match b.read(&mut buf).await? {
                    0 => break,
                    n => received.extend_from_slice(&buf[..n]),
                }
            }
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(*caught.borrow(), Some(0xbad));
        assert!(received == sent, "the transfer beside it was unharmed");
    });
}

// ---------------------------------------------------------------------------------------
// Signals

/// SIGWINCH (ignored by default). Attacks `open_signal_receiver`'s "from now until it is
/// dropped, each of these signals delivered to the process is reported by the receiver"
/// and `recv`'s "Cancel-safe: dropping the future midway loses no signal" (runtime/
/// signal.rs): a receiver dropped with a delivery pending, and reopened, fifty times; each
/// new receiver reports only what was delivered while it was open, exactly once.
#[test]
fn a_receiver_dropped_with_a_signal_pending_and_reopened_reports_only_its_own() {
    use trellis::signals::SIGWINCH;
    virtual_test(async || {
        for round in 0..50 {
            let mut receiver = open_signal_receiver([SIGWINCH])?;
            signal_hook::low_level::raise(SIGWINCH)?;
            if round % 2 == 0 {
                // A recv parked before the delivery, then dropped.
                drop(common::poll_once(receiver.recv()).await);
            }
            drop(receiver);
            let mut reopened = open_signal_receiver([SIGWINCH])?;
            let stale = move_on_after(Duration::from_secs(1), reopened.recv()).await;
            assert!(
                stale.is_none(),
                "round {round}: a delivery from before it opened"
            );
            let parked = common::poll_once(reopened.recv()).await;
            signal_hook::low_level::raise(SIGWINCH)?;
            drop(parked);
            assert_eq!(reopened.recv().await?, SIGWINCH, "round {round}");
            let twice = move_on_after(Duration::from_secs(1), reopened.recv()).await;
            assert!(twice.is_none(), "round {round}: reported twice");
        }
        io::Result::Ok(())
    })
    .unwrap();
}

/// SIGURG and SIGCHLD (ignored by default). Attacks "Every open receiver of a signal sees
/// each of its deliveries" (`open_signal_receiver`, runtime/signal.rs) and that dropping
/// one receiver leaves the others: two receivers of SIGURG parked in two tasks, one of
/// them also watching SIGCHLD; one delivery of SIGURG wakes both; SIGCHLD reaches only the
/// receiver that watches it; after the first receiver's task is cancelled mid-`recv`, the
/// other still gets SIGURG.
#[test]
fn two_receivers_in_two_tasks_both_see_each_delivery_and_outlive_each_other() {
    use trellis::signals::{SIGCHLD, SIGURG};
    virtual_test(async || {
        let mut both = open_signal_receiver([SIGURG, SIGCHLD])?;
        let mut urg = open_signal_receiver([SIGURG])?;
        let seen = RefCell::new(Vec::new());
        nursery(async |n| {
            let seen = &seen;
            let (both, urg) = (&mut both, &mut urg);
            n.spawn(async move {
                let s = both.recv().await?;
                seen.borrow_mut().push(("both", s));
                io::Result::Ok(())
            });
            n.spawn(async move {
                let s = urg.recv().await?;
                seen.borrow_mut().push(("urg", s));
                io::Result::Ok(())
            });
            trellis::testing::wait_all_tasks_blocked().await;
            signal_hook::low_level::raise(SIGURG)?;
            io::Result::Ok(())
        })
        .await
        .unwrap();
        let mut seen = seen.into_inner();
        seen.sort_unstable();
        assert_eq!(seen, [("both", SIGURG), ("urg", SIGURG)]);

        signal_hook::low_level::raise(SIGCHLD)?;
        assert_eq!(both.recv().await?, SIGCHLD);
        let none = move_on_after(Duration::from_secs(1), urg.recv()).await;
        assert!(
            none.is_none(),
            "SIGCHLD reached a receiver that does not watch it"
        );

        // The first receiver, parked in a task, is dropped with that task.
        nursery(async |n| {
            let parked = n.spawn(async move {
                let mut both = both;
                let _ = both.recv().await;
            });
            trellis::testing::wait_all_tasks_blocked().await;
            parked.cancel();
        })
        .await
        .unwrap();
        signal_hook::low_level::raise(SIGURG)?;
        assert_eq!(
            urg.recv().await?,
            SIGURG,
            "the other receiver still sees it"
        );
        io::Result::Ok(())
    })
    .unwrap();
}

/// SIGCONT (its default action, continuing a stopped process, does nothing here). Attacks
/// "Dropping it gives the default action back once no receiver of the signal remains"
/// together with "Every open receiver ... sees each of its deliveries"
/// (runtime/signal.rs): receivers opened and dropped inside nursery tasks that are
/// cancelled while parked in `recv`, many times over, then one open for good: a delivery
/// is reported exactly once to it, not lost to the churn of registrations.
#[test]
fn receivers_churned_in_cancelled_tasks_leave_the_next_receiver_intact() {
    use trellis::signals::SIGCONT;
    virtual_test(async || {
        for _ in 0..30 {
            nursery(async |n| {
                let mut parked = Vec::new();
                for _ in 0..3 {
                    parked.push(n.spawn(async {
                        let mut r = open_signal_receiver([SIGCONT])?;
                        r.recv().await?;
                        io::Result::Ok(())
                    }));
                }
                trellis::testing::wait_all_tasks_blocked().await;
                for p in &parked {
                    p.cancel();
                }
                io::Result::Ok(())
            })
            .await
            .unwrap();
        }
        let mut receiver = open_signal_receiver([SIGCONT])?;
        signal_hook::low_level::raise(SIGCONT)?;
        assert_eq!(receiver.recv().await?, SIGCONT);
        let again = move_on_after(Duration::from_secs(1), receiver.recv()).await;
        assert!(again.is_none(), "reported twice: {again:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// More byte-stream and datagram attacks

/// Attacks "Errors are never lost" (README) for parked operations and the reactor's wake
/// of every parked task (runtime/rt/reactor.rs): a read parked on a TCP stream and a write
/// parked on a full one, when the peer resets the connection (`SO_LINGER` 0), and a write
/// parked on a Unix stream whose peer is dropped. Each wakes with the system's error
/// instead of staying parked (a lost wake shows as the one-minute virtual deadline).
#[test]
fn parked_reads_and_writes_wake_with_an_error_when_the_peer_resets() {
    virtual_test(async || {
        // A parked read, the peer resets.
        let (a, b) = tcp_pair().await;
        let b = socket2::Socket::from(b.into_std());
        let out = nursery(async |n| {
            let reading = n.spawn(async {
                io::Result::Ok(move_on_after(Duration::from_secs(60), a.read(&mut [0; 8])).await)
            });
            trellis::testing::wait_all_tasks_blocked().await;
            b.set_linger(Some(Duration::ZERO))?;
            drop(b);
            Ok::<_, io::Error>(reading.await.unwrap())
        })
        .await
        .unwrap();
        let err = out.expect("the parked read was never woken").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");

        // A parked write (buffers full), the peer resets.
        let (a, b) = small_buffer_tcp_pair().await;
        let b = socket2::Socket::from(b.into_std());
        let out = nursery(async |n| {
            let writing = n.spawn(async {
                let block = vec![9u8; 1 << 20];
                io::Result::Ok(move_on_after(Duration::from_secs(60), a.write_all(&block)).await)
            });
            trellis::testing::wait_all_tasks_blocked().await;
            assert!(
                !writing.is_finished(),
                "the write is parked on full buffers"
            );
            b.set_linger(Some(Duration::ZERO))?;
            drop(b);
            Ok::<_, io::Error>(writing.await.unwrap())
        })
        .await
        .unwrap();
        let err = out.expect("the parked write was never woken").unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );

        // A parked write on a Unix stream, the peer dropped.
        let (c, d) = UnixStream::pair().unwrap();
        let out = nursery(async |n| {
            let writing = n.spawn(async {
                let block = vec![9u8; 4 << 20];
                io::Result::Ok(move_on_after(Duration::from_secs(60), c.write_all(&block)).await)
            });
            trellis::testing::wait_all_tasks_blocked().await;
            assert!(
                !writing.is_finished(),
                "the write is parked on a full buffer"
            );
            drop(d);
            Ok::<_, io::Error>(writing.await.unwrap())
        })
        .await
        .unwrap();
        let err = out.expect("the parked write was never woken").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    });
}

/// Attacks `UdpSocket::recv`'s error path (runtime/net/udp.rs: the system's error is
/// returned) with a receive already parked: a connected UDP socket whose datagram is
/// refused (ICMP port unreachable, on loopback) has the error queued on the socket; the
/// parked `recv` wakes with `ConnectionRefused` rather than staying parked.
#[test]
fn a_parked_udp_recv_wakes_with_the_refusal_of_a_connected_peer() {
    virtual_test(async || {
        // A port where nothing listens: bound by a socket we then drop.
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(gone_addr).unwrap();
        let out = nursery(async |n| {
            let receiving = n.spawn(async {
                let mut buf = [0; 8];
                io::Result::Ok(move_on_after(Duration::from_secs(60), a.recv(&mut buf)).await)
            });
            trellis::testing::wait_all_tasks_blocked().await;
            a.send(b"anyone?").await?;
            Ok::<_, io::Error>(receiving.await.unwrap())
        })
        .await
        .unwrap();
        let err = out.expect("the parked recv was never woken").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    });
}

/// Attacks `UnixDatagram`'s send cancellation ("Cancel-safe: dropped before it returns, it
/// has sent nothing", runtime/net/unix.rs): the peer does not read, so the queue fills and
/// sends park; parked sends are dropped (polled once, or cut by a deadline) while the
/// reader drains slowly. The reader gets exactly the datagrams whose send returned, once
/// each, in order.
#[test]
fn unix_datagram_sends_dropped_on_a_full_queue_sent_nothing() {
    virtual_test(async || {
        let (a, b) = UnixDatagram::pair().unwrap();
        let sent = RefCell::new(Vec::new());
        let dropped = Cell::new(0usize);
        let mut got = Vec::new();
        nursery(async |n| {
            let (a, sent, dropped) = (&a, &sent, &dropped);
            n.spawn(async move {
                let mut rng = Rng(5);
                let mut next = 0u32;
                while next < 400 {
                    let datagram = next.to_be_bytes();
                    let out = if rng.below(2) == 0 {
                        poll_once_then_drop(a.send(&datagram)).await
                    } else {
                        let d = Duration::from_micros(1 + rng.below(300));
                        move_on_after(d, a.send(&datagram)).await
                    };
                    match out {
                        Some(n) => {
                            assert_eq!(n?, 4);
                            sent.borrow_mut().push(next);
                        }
                        None => {
                            dropped.set(dropped.get() + 1);
                            yield_now().await;
                        }
                    }
                    next += 1;
                }
                a.send(b"end").await.map(drop)
            });
            let mut buf = [0; 8];
            loop {
                sleep(Duration::from_micros(200)).await;
                let n = b.recv(&mut buf).await?;
                if &buf[..n] == b"end" {
                    break;
                }
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            io::Result::Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            got,
            *sent.borrow(),
            "exactly the datagrams whose send returned"
        );
        assert!(
            dropped.get() > 10,
            "only {} sends were dropped",
            dropped.get()
        );
    });
}

/// Attacks `read`'s "`Ok(0)` means the peer closed its writing side (or `buf` is empty)"
/// (runtime/net/stream.rs) at the empty buffer, on an idle stream: a read into an empty
/// buffer should return `Ok(0)` at once (as std's `Read::read` and the `futures-io`
/// convention have it), but the system's `recv` of zero bytes on an idle non-blocking
/// socket says `EAGAIN`, and the read parks until the peer sends something.
#[test]
fn an_empty_read_on_an_idle_stream_returns_ok_0_at_once() {
    virtual_test(async || {
        let (_a, b) = tcp_pair().await;
        let (_c, d) = UnixStream::pair().unwrap();
        let tcp = move_on_after(Duration::from_secs(1), b.read(&mut [])).await;
        let unix = move_on_after(Duration::from_secs(1), d.read(&mut [])).await;
        assert!(
            matches!(tcp, Some(Ok(0))) && matches!(unix, Some(Ok(0))),
            "tcp: {tcp:?}, unix: {unix:?} (None: the empty read parked)"
        );
    });
}

/// Attacks `write`'s "returns how many it took" and `write_all` at the empty buffer
/// (runtime/net/stream.rs): an empty write on an idle stream is `Ok(0)` at once, never
/// `WriteZero`, and the stream is unharmed for real data after; `read_exact` of nothing
/// returns at once.
#[test]
fn empty_writes_and_an_empty_read_exact_return_at_once() {
    virtual_test(async || {
        let (a, b) = tcp_pair().await;
        let (c, d) = UnixStream::pair().unwrap();
        assert_eq!(a.write(&[]).await.unwrap(), 0);
        assert_eq!(c.write(&[]).await.unwrap(), 0);
        a.write_all(&[]).await.unwrap();
        let nothing = move_on_after(Duration::from_secs(1), b.read_exact(&mut [])).await;
        nothing.expect("an empty read_exact parked").unwrap();
        a.write_all(b"ok").await.unwrap();
        c.write_all(b"ok").await.unwrap();
        let mut two = [0; 2];
        b.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
        d.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
    });
}

/// Attacks `serve_listeners`' "Any other accept error stops the server and is returned
/// unchanged" and its cancellation, "which drops (closes) every connection and every
/// listener" (runtime/net/serve.rs): one of two listeners is shut down underneath the
/// server (through a duplicate of its descriptor), so its parked accept fails with
/// `EINVAL`; the server returns that error, and the other listener is closed too.
#[test]
fn an_accept_error_of_one_listener_stops_the_server_and_closes_the_other() {
    virtual_test(async || {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let underneath = socket2::Socket::from(first.try_clone().unwrap());
        let listeners = vec![
            TcpListener::from_std(first).unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let other = listeners[1].local_addr().unwrap();
        let out = nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    serve_listeners(listeners, common::echo::<TcpStream>, status).await
                })
                .await
                .map_err(start_error)?;
            assert_eq!(addrs[1], other);
            // The second listener serves meanwhile.
            let client = TcpStream::connect(other).await?;
            client.write_all(b"echo").await?;
            let mut four = [0; 4];
            client.read_exact(&mut four).await?;
            assert_eq!(&four, b"echo");
            trellis::testing::wait_all_tasks_blocked().await;
            underneath.shutdown(Shutdown::Both)?;
            sleep_forever().await;
            io::Result::Ok(())
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1, "{group}");
        assert_eq!(
            group.first().raw_os_error(),
            Some(22),
            "EINVAL, unchanged: {}",
            group.first()
        );
        let err = TcpStream::connect(other).await.unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "the other listener closed"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Signals across runtimes

/// Real-time signal 41 (raised only while a receiver is open). Attacks "Every open
/// receiver of a signal sees each of its deliveries" (`open_signal_receiver`,
/// runtime/signal.rs) across runtimes: receivers in two runtimes on two threads, each
/// parked in `recv` in its reactor; one delivery wakes both.
#[cfg(target_os = "linux")]
#[test]
fn receivers_in_two_runtimes_on_two_threads_both_see_one_delivery() {
    const SIG: i32 = 41;
    watchdog(HANG_LIMIT, || {
        let (open_tx, open_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            trellis::run(async move {
                let mut receiver = open_signal_receiver([SIG])?;
                open_tx.send(()).unwrap();
                let got = receiver.recv().await;
                // Keep the receiver open until the main thread's has seen it too.
                to_thread(move || release_rx.recv()).await.unwrap();
                got
            })
        });
        let got = trellis::run(async move {
            let mut receiver = open_signal_receiver([SIG]).unwrap();
            to_thread(move || open_rx.recv()).await.unwrap();
            nursery(async |n| {
                let r = &mut receiver;
                let child = n.spawn(async move { r.recv().await });
                trellis::testing::wait_all_tasks_blocked().await;
                signal_hook::low_level::raise(SIG)?;
                Ok::<_, io::Error>(child.await.unwrap())
            })
            .await
            .unwrap()
        });
        assert_eq!(got, SIG);
        release_tx.send(()).unwrap();
        assert_eq!(
            other.join().unwrap().unwrap(),
            SIG,
            "the other runtime's receiver"
        );
    });
}

/// Real-time signal 42 (raised only while the receiver is open). Attacks `recv`'s "A
/// signal already delivered and not yet reported is returned at the first poll" and
/// "Polled in a runtime other than the one the receiver was opened in ... with nothing to
/// report, an error saying so" (runtime/signal.rs): a receiver carried out of its runtime
/// into another one returns what was delivered, then an error instead of a hang.
#[cfg(target_os = "linux")]
#[test]
fn a_receiver_carried_into_another_runtime_reports_then_errors_instead_of_hanging() {
    const SIG: i32 = 42;
    watchdog(HANG_LIMIT, || {
        let mut receiver = trellis::run(async { open_signal_receiver([SIG]).unwrap() });
        let (first, second) = Builder::new().autojump().run(async move {
            signal_hook::low_level::raise(SIG).unwrap();
            let first = receiver.recv().await;
            let second = move_on_after(Duration::from_secs(60), receiver.recv()).await;
            (first, second)
        });
        assert_eq!(
            first.unwrap(),
            SIG,
            "a delivered signal is reported at once"
        );
        let second = second.expect("a recv in the wrong runtime parked instead of failing");
        let err = second.unwrap_err();
        assert!(err.to_string().contains("runtime"), "{err}");
    });
}

/// Attacks `UnixStream::connect`'s "`WouldBlock` if the listener's backlog is full (a Unix
/// socket cannot wait for room: retry later)" (runtime/net/unix.rs): connects to a
/// listener nobody accepts on, until its backlog is full: then a clear `WouldBlock` error,
/// not a task parked forever; once one connection is accepted, a connect succeeds again.
#[test]
fn a_unix_connect_to_a_full_backlog_is_would_block_not_a_hang() {
    let dir = socket_dir("backlog");
    let path = dir.join("full.sock");
    virtual_test({
        let path = path.clone();
        async move || {
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let mut clients = Vec::new();
            let err = loop {
                let attempt = move_on_after(Duration::from_secs(60), UnixStream::connect(&path));
                match attempt.await.expect("a connect to a full backlog parked") {
                    Ok(client) => clients.push(client),
                    Err(e) => break e,
                }
                assert!(clients.len() < 10_000, "the backlog never filled");
            };
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
            assert!(err.to_string().contains("backlog"), "{err}");
            drop(listener.accept().unwrap());
            let again = UnixStream::connect(&path).await;
            assert!(again.is_ok(), "room again after an accept: {again:?}");
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Attacks `RuntimeHandle`'s "both block the calling thread until the work is done, and
/// return its value. The runtime is not blocked meanwhile: the work is queued, the runtime
/// is woken (even from a park in the reactor)" (runtime/thread.rs): eight threads making
/// two hundred `run_sync` and `run` calls each, against a runtime parked in its reactor
/// (a socket registered) and one parked without a poller. Every call returns its own
/// value, and the runtime ran each exactly once.
#[test]
fn eight_threads_hammering_run_sync_and_run_each_get_their_own_values() {
    const THREADS: usize = 8;
    const CALLS: usize = 200;
    thread_local! { static RAN: Cell<usize> = const { Cell::new(0) }; }
    watchdog(HANG_LIMIT, || {
        for with_io in [true, false] {
            let ran = trellis::run(async move {
                RAN.set(0);
                let _socket = with_io.then(|| UdpSocket::bind("127.0.0.1:0").unwrap());
                let handle = RuntimeHandle::current();
                let threads: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let h = handle.clone();
                        std::thread::spawn(move || {
                            for i in 0..CALLS {
                                let want = t * CALLS + i;
                                let got = if i % 2 == 0 {
                                    h.run_sync(move || {
                                        RAN.set(RAN.get() + 1);
                                        want
                                    })
                                } else {
                                    h.run(move || async move {
                                        yield_now().await;
                                        RAN.set(RAN.get() + 1);
                                        want
                                    })
                                };
                                assert_eq!(got, Ok(want), "thread {t}, call {i}");
                            }
                        })
                    })
                    .collect();
                to_thread(move || {
                    for t in threads {
                        t.join().unwrap();
                    }
                })
                .await;
                RAN.get()
            });
            assert_eq!(ran, THREADS * CALLS, "with a poller: {with_io}");
        }
    });
}

/// Attacks invariant 1 of runtime/thread.rs, "A `from_thread` caller is released exactly
/// once: by the work's outcome, or by the drop of its `Reply`, which the runtime's end
/// guarantees", and "once the runtime has ended, every call returns [`FromThreadError`] at
/// once": four threads call `run_sync` and `run` (some of whose futures never end) in a
/// loop while the runtime ends under them, twenty times. Every caller is released, each
/// with the runtime-gone error at the end; none hangs.
#[test]
fn callers_racing_the_end_of_the_runtime_are_all_released() {
    const THREADS: usize = 4;
    watchdog(HANG_LIMIT, || {
        for round in 0..20 {
            let mut threads = Vec::new();
            trellis::run(async {
                let handle = RuntimeHandle::current();
                let first = Arc::new(std::sync::Barrier::new(THREADS + 1));
                for k in 0..THREADS {
                    let (h, first) = (handle.clone(), first.clone());
                    threads.push(std::thread::spawn(move || {
                        let mut ok = 0usize;
                        loop {
                            let out = match (k + ok) % 3 {
                                0 => h.run_sync(|| ()),
                                1 => h.run(|| async { yield_now().await }),
                                _ if ok > 0 && k == 0 => h.run(sleep_forever),
                                _ => h.run(|| async {}),
                            };
                            match out {
                                Ok(()) => {
                                    ok += 1;
                                    if ok == 1 {
                                        first.wait();
                                    }
                                }
                                Err(e) => return (ok, e),
                            }
                        }
                    }));
                }
                to_thread(move || {
                    first.wait();
                })
                .await;
                for _ in 0..(round * 7) {
                    yield_now().await;
                }
            });
            for (k, t) in threads.into_iter().enumerate() {
                let (ok, err) = t.join().unwrap();
                assert!(ok > 0, "round {round}, thread {k}");
                assert!(err.is_runtime_gone(), "round {round}, thread {k}: {err}");
            }
        }
    });
}

/// Real-time signals 43 and 44 (raised only while the receiver is open). Attacks
/// "Distinct signals are reported in the order they were delivered", "a signal delivered
/// several times before the receiver reports it is reported once" and `recv`'s
/// "Cancel-safe: dropping the future midway loses no signal" (runtime/signal.rs), mixed:
/// coalesced deliveries, a `recv` that completes at its first poll, one dropped while
/// parked, and the order kept across them.
#[cfg(target_os = "linux")]
#[test]
fn signal_order_and_coalescing_survive_dropped_receives() {
    use signal_hook::low_level::raise;
    const A: i32 = 43;
    const B: i32 = 44;
    virtual_test(async || {
        let mut r = open_signal_receiver([A, B])?;
        raise(B)?;
        raise(A)?;
        raise(B)?; // coalesced: B keeps its first place
        assert_eq!(r.recv().await?, B);
        // Already pending: returned at the first poll.
        let at_once = poll_once_then_drop(r.recv()).await;
        assert_eq!(at_once.expect("pending A at the first poll")?, A);
        // Nothing pending: parked, dropped.
        assert!(poll_once_then_drop(r.recv()).await.is_none());
        // Parked (nothing pending), then the deliveries, then dropped.
        let parked = common::poll_once(r.recv()).await;
        raise(A)?;
        raise(A)?;
        raise(B)?;
        drop(parked);
        assert_eq!(r.recv().await?, A);
        assert_eq!(r.recv().await?, B);
        let more = move_on_after(Duration::from_secs(1), r.recv()).await;
        assert!(more.is_none(), "reported twice: {more:?}");
        io::Result::Ok(())
    })
    .unwrap();
}

/// Attacks the executor's "a non-blocking look every `REACTOR_TICK` polls when I/O sources
/// are registered, so that a task that keeps waking itself cannot starve I/O"
/// (runtime/rt/executor.rs) for sockets: a task that yields in a loop, never letting the
/// runtime go idle, while another task is parked on a socket whose data has arrived. The
/// parked read completes while the spinner still spins (it gives up after a million
/// yields, which fails the test instead of hanging).
#[test]
fn a_task_that_never_stops_yielding_does_not_starve_a_parked_read() {
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let (a, b) = UnixStream::pair().unwrap();
            let got = Cell::new(None);
            let spins = Cell::new(0usize);
            nursery(async |n| {
                let (got, spins) = (&got, &spins);
                n.spawn(async move {
                    let mut buf = [0; 8];
                    let n = b.read(&mut buf).await?;
                    got.set(Some(n));
                    io::Result::Ok(())
                });
                n.spawn(async move {
                    yield_now().await; // the reader is parked now
                    a.write_all(b"wake").await?;
                    while got.get().is_none() && spins.get() < 1_000_000 {
                        spins.set(spins.get() + 1);
                        yield_now().await;
                    }
                    io::Result::Ok(())
                });
                io::Result::Ok(())
            })
            .await
            .unwrap();
            assert_eq!(
                got.get(),
                Some(4),
                "the read starved for {} yields",
                spins.get()
            );
        });
    });
}

/// Attacks `into_std`'s "Gives the stream back to std (deregistered, still non-blocking)"
/// and `from_std`'s "a listener or stream made elsewhere comes in through `from_std`"
/// (runtime/net/tcp.rs) with data and a connection in flight: a stream with unread bytes
/// and a listener with a queued connection leave one runtime (after reads and accepts
/// there were parked and dropped) and are taken over by the next. Nothing queued is lost:
/// the next runtime reads every byte and accepts the connection.
#[test]
fn sockets_moved_between_runtimes_with_data_and_connections_in_flight_lose_nothing() {
    watchdog(HANG_LIMIT, || {
        let (client, server, listener, pending) = Builder::new().autojump().run(async {
            let (client, server) = tcp_pair().await;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(
                poll_once_then_drop(server.read(&mut [0; 8]))
                    .await
                    .is_none()
            );
            assert!(poll_once_then_drop(listener.accept()).await.is_none());
            client.write_all(b"in flight").await.unwrap();
            let pending = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            (
                client.into_std(),
                server.into_std(),
                listener.into_std(),
                pending,
            )
        });
        Builder::new().autojump().run(async move {
            let client = TcpStream::from_std(client).unwrap();
            let server = TcpStream::from_std(server).unwrap();
            let listener = TcpListener::from_std(listener).unwrap();
            let mut nine = [0; 9];
            server.read_exact(&mut nine).await.unwrap();
            assert_eq!(&nine, b"in flight");
            let (accepted, peer) = listener.accept().await.unwrap();
            assert_eq!(peer, pending.local_addr().unwrap());
            drop(accepted);
            // A read parked in this runtime is woken by this runtime's reactor.
            nursery(async |n| {
                let server = &server;
                let reading = n.spawn(async move {
                    let mut three = [0; 3];
                    let read =
                        move_on_after(Duration::from_secs(60), server.read_exact(&mut three));
                    read.await.expect("never woken")?;
                    io::Result::Ok(three)
                });
                trellis::testing::wait_all_tasks_blocked().await;
                client.write_all(b"new").await?;
                assert_eq!(&reading.await.unwrap(), b"new");
                io::Result::Ok(())
            })
            .await
            .unwrap();
        });
    });
}

/// Real-time signal 45 (raised only after its first receiver opened; with no receiver left
/// a real-time signal "has no emulation and is ignored"). Attacks "Dropping it gives the
/// default action back once no receiver of the signal remains" / "Every open receiver of a
/// signal sees each of its deliveries" / "Signals coalesce" (runtime/signal.rs) under a
/// race: another thread raises the signal twenty thousand times while this one opens and
/// drops receivers of it three hundred times. Nothing crashes, and the receiver kept open
/// throughout reports the storm once, then each later delivery once.
#[cfg(target_os = "linux")]
#[test]
fn receivers_opened_and_dropped_during_a_signal_storm_keep_the_survivor_exact() {
    use signal_hook::low_level::raise;
    const SIG: i32 = 45;
    watchdog(HANG_LIMIT, || {
        trellis::run(async {
            let mut keep = open_signal_receiver([SIG])?;
            let storm = std::thread::spawn(|| {
                for _ in 0..20_000 {
                    raise(SIG).unwrap();
                }
            });
            let mut opened = 0;
            while opened < 300 || !storm.is_finished() {
                drop(open_signal_receiver([SIG])?);
                opened += 1;
                yield_now().await;
            }
            storm.join().unwrap();
            assert_eq!(keep.recv().await?, SIG);
            let twice = poll_once_then_drop(keep.recv()).await;
            assert!(twice.is_none(), "the storm was reported twice: {twice:?}");
            for _ in 0..3 {
                raise(SIG)?;
                assert_eq!(keep.recv().await?, SIG);
                assert!(poll_once_then_drop(keep.recv()).await.is_none());
            }
            io::Result::Ok(())
        })
        .unwrap();
    });
}

/// Every test of this file again, in a child process whose runtimes register sockets in
/// oneshot mode (re-armed with `epoll_ctl` at each park), the path of pollers without edge
/// mode (runtime/rt/reactor.rs: "In oneshot mode one event disarms both directions, so an
/// event wakes both"), as `net.rs` does.
#[test]
fn every_test_again_with_oneshot_registrations() {
    common::every_test_again_in_oneshot_mode();
}
