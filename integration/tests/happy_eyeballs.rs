//! Behaviour of `open_tcp_stream` and `connect_happy_eyeballs` (RFC 8305): which address
//! wins and at which instant of virtual time, every failure kept, losers' sockets closed,
//! cancellation midway closing everything.
//!
//! Three kinds of peer, all on loopback:
//! - accepting: a std listener (the kernel completes the handshake; nobody accepts);
//! - refusing: a port where nothing listens (a socket bound to it that never listens, kept
//!   so that no other test's listener can take the port);
//! - hanging: a listener with a backlog of 0 whose queue is already full (one std connect
//!   never accepted): the kernel drops further SYNs, so a connect stays in `SYN_SENT`
//!   (retrying after a second of real time, long after these tests end).
//!
//! Which client sockets exist is read from `/proc/net/tcp{,6}` by remote port, so the
//! checks do not depend on what other tests of the process have open.

mod common;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::virtual_test;
use trellis::net::{
    ConnectError, HAPPY_EYEBALLS_DELAY, connect_happy_eyeballs, open_tcp_stream,
    open_tcp_stream_with_delay,
};

const DELAY: Duration = Duration::from_millis(250);

/// A listener whose accept queue is full: a further connect to it hangs.
struct Hanging {
    _listener: socket2::Socket,
    /// The connection that fills the queue (never accepted).
    filler: TcpStream,
    addr: SocketAddr,
}

fn hanging(ip: &str) -> Hanging {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let listener = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(addr).unwrap();
    Hanging {
        _listener: listener,
        filler,
        addr,
    }
}

/// A port on `ip` where nothing listens: a socket bound to it (without `SO_REUSEADDR`)
/// that never listens, so connects are refused. The socket is kept until the process
/// ends, so that no listener of a test running beside this one can take the port (a port
/// freed by dropping a listener could be bound again at once, and then hang or accept).
fn refusing(ip: &str) -> SocketAddr {
    static RESERVED: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.bind(&addr.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    RESERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(socket);
    addr
}

fn accepting(ip: &str) -> TcpListener {
    TcpListener::bind(format!("{ip}:0")).unwrap()
}

/// TCP states of `/proc/net/tcp`.
const ESTABLISHED: u8 = 0x01;
const SYN_SENT: u8 = 0x02;

/// The inodes of the sockets this process holds open (`/proc/self/fd` links to
/// `socket:[inode]`).
fn own_socket_inodes() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd lists the process's descriptors")
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The client sockets of this process connected or connecting to `port` that are still
/// open (an open descriptor, `ESTABLISHED` or `SYN_SENT`), as (local port, state). A
/// socket whose descriptor was closed is not listed, however long the kernel takes to
/// finish closing it.
///
/// The tables are read twice and merged by inode: a table that changes while it is read
/// (this machine's has thousands of `TIME_WAIT` rows) may repeat or skip a row.
fn open_clients_to(port: u16) -> Vec<(u16, u8)> {
    let mut rows: Vec<(u64, u16, u8)> = Vec::new();
    for _ in 0..2 {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(remote), Some(state), Some(inode)) =
                    (fields.get(1), fields.get(2), fields.get(3), fields.get(9))
                else {
                    continue;
                };
                let port_of =
                    |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
                let state = u8::from_str_radix(state, 16).unwrap();
                let inode: u64 = inode.parse().unwrap_or(0);
                if port_of(remote) == port
                    && (state == ESTABLISHED || state == SYN_SENT)
                    && !rows.iter().any(|r| r.0 == inode)
                {
                    rows.push((inode, port_of(local), state));
                }
            }
        }
    }
    let own = own_socket_inodes();
    rows.into_iter()
        .filter(|(inode, _, _)| *inode != 0 && own.contains(inode))
        .map(|(_, local, state)| (local, state))
        .collect()
}

/// `open_clients_to(h.addr.port())` without the filler's connection.
fn open_clients_to_hanging(h: &Hanging) -> Vec<(u16, u8)> {
    let filler = h.filler.local_addr().unwrap().port();
    open_clients_to(h.addr.port())
        .into_iter()
        .filter(|(local, _)| *local != filler)
        .collect()
}

fn connect_error(e: &io::Error) -> &ConnectError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectError>())
        .unwrap_or_else(|| panic!("not a ConnectError: {e:?}"))
}

#[test]
fn a_full_backlog_makes_a_connect_hang() {
    // The premise of the hanging peer, checked on this machine: a connect does not finish
    // within 200 ms of virtual time, sits in SYN_SENT meanwhile, and is gone once dropped.
    virtual_test(async || {
        let h = hanging("127.0.0.1");
        let seen = std::cell::RefCell::new(Vec::new());
        trellis::nursery(async |n| {
            n.spawn(async {
                trellis::sleep(Duration::from_millis(100)).await;
                *seen.borrow_mut() = open_clients_to_hanging(&h);
            });
            let out = trellis::move_on_after(
                Duration::from_millis(200),
                trellis::net::TcpStream::connect(h.addr),
            )
            .await;
            assert!(out.is_none(), "the connect finished: {out:?}");
        })
        .await
        .unwrap();
        let states: Vec<u8> = seen.borrow().iter().map(|c| c.1).collect();
        assert_eq!(states, [SYN_SENT]);
        assert_eq!(open_clients_to_hanging(&h), []);
    });
}

#[test]
fn hang_hang_accept_connects_to_the_third_at_500_ms() {
    virtual_test(async || {
        let (h1, h2) = (hanging("127.0.0.1"), hanging("127.0.0.1"));
        let ok = accepting("127.0.0.1");
        let start = trellis::now();
        let stream = connect_happy_eyeballs([h1.addr, h2.addr, ok.local_addr().unwrap()], DELAY)
            .await
            .unwrap();
        assert_eq!(trellis::now() - start, Duration::from_millis(500));
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
        // The two hanging attempts were cancelled and their sockets closed.
        assert_eq!(open_clients_to_hanging(&h1), []);
        assert_eq!(open_clients_to_hanging(&h2), []);
        // Only the winner is connected to the accepting listener.
        let winner = stream.local_addr().unwrap().port();
        assert_eq!(
            open_clients_to(ok.local_addr().unwrap().port()),
            [(winner, ESTABLISHED)]
        );
    });
}

#[test]
fn a_refused_attempt_starts_the_next_at_once() {
    virtual_test(async || {
        let refused = refusing("127.0.0.1");
        let ok = accepting("127.0.0.1");
        let start = trellis::now();
        let stream = connect_happy_eyeballs([refused, ok.local_addr().unwrap()], DELAY)
            .await
            .unwrap();
        assert_eq!(trellis::now() - start, Duration::ZERO);
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
    });
}

#[test]
fn hang_then_refuse_then_accept() {
    // 0 ms: attempt 1 hangs; 250 ms: attempt 2 is refused, so attempt 3 starts at once.
    virtual_test(async || {
        let h = hanging("127.0.0.1");
        let refused = refusing("127.0.0.1");
        let ok = accepting("127.0.0.1");
        let start = trellis::now();
        let stream = connect_happy_eyeballs([h.addr, refused, ok.local_addr().unwrap()], DELAY)
            .await
            .unwrap();
        assert_eq!(trellis::now() - start, DELAY);
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
        assert_eq!(open_clients_to_hanging(&h), []);
    });
}

#[test]
fn the_default_delay_is_250_ms() {
    assert_eq!(HAPPY_EYEBALLS_DELAY, Duration::from_millis(250));
    virtual_test(async || {
        let h = hanging("127.0.0.1");
        let ok = accepting("127.0.0.1");
        let start = trellis::now();
        let stream =
            connect_happy_eyeballs([h.addr, ok.local_addr().unwrap()], HAPPY_EYEBALLS_DELAY)
                .await
                .unwrap();
        assert_eq!(trellis::now() - start, Duration::from_millis(250));
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
    });
}

#[test]
fn when_every_attempt_fails_the_error_keeps_each_failure() {
    virtual_test(async || {
        let addrs = [
            refusing("127.0.0.1"),
            refusing("127.0.0.1"),
            refusing("127.0.0.1"),
        ];
        let start = trellis::now();
        let err = connect_happy_eyeballs(addrs, DELAY).await.unwrap_err();
        // Each failure starts the next attempt at once.
        assert_eq!(trellis::now() - start, Duration::ZERO);
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let all = connect_error(&err);
        let tried: Vec<SocketAddr> = all.attempts().iter().map(|(a, _)| *a).collect();
        assert_eq!(tried, addrs);
        for (addr, e) in all.attempts() {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{addr}");
        }
        let message = err.to_string();
        assert!(
            message.starts_with("all attempts to connect failed: "),
            "{message}"
        );
        for addr in addrs {
            assert!(message.contains(&addr.to_string()), "{message}");
        }
    });
}

#[test]
fn a_name_is_named_in_the_error() {
    virtual_test(async || {
        let port = refusing("127.0.0.1").port();
        let err = open_tcp_stream("127.0.0.1", port).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the attempt to connect to 127.0.0.1:{port} failed: {}",
                connect_error(&err).attempts()[0].1
            )
        );
    });
}

#[test]
fn families_alternate_starting_with_the_first() {
    // All refused, so the attempts run one after another in the order chosen.
    virtual_test(async || {
        let v6 = [refusing("[::1]"), refusing("[::1]"), refusing("[::1]")];
        let v4 = [refusing("127.0.0.1")];
        let err = connect_happy_eyeballs([v6[0], v6[1], v6[2], v4[0]], DELAY)
            .await
            .unwrap_err();
        let tried: Vec<SocketAddr> = connect_error(&err).attempts().iter().map(|a| a.0).collect();
        assert_eq!(tried, [v6[0], v4[0], v6[1], v6[2]]);

        let err = connect_happy_eyeballs([v4[0], v6[0], v6[1]], DELAY)
            .await
            .unwrap_err();
        let tried: Vec<SocketAddr> = connect_error(&err).attempts().iter().map(|a| a.0).collect();
        assert_eq!(tried, [v4[0], v6[0], v6[1]]);
    });
}

#[test]
fn no_address_is_invalid_input() {
    virtual_test(async || {
        let err = connect_happy_eyeballs([], DELAY).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("no address"), "{err}");
    });
}

#[test]
fn cancelling_midway_closes_every_attempt() {
    virtual_test(async || {
        let (h1, h2, h3) = (
            hanging("127.0.0.1"),
            hanging("127.0.0.1"),
            hanging("127.0.0.1"),
        );
        let start = trellis::now();
        let out = trellis::move_on_after(
            Duration::from_millis(300),
            connect_happy_eyeballs([h1.addr, h2.addr, h3.addr], DELAY),
        )
        .await;
        assert!(out.is_none());
        assert_eq!(trellis::now() - start, Duration::from_millis(300));
        // Attempts 1 and 2 had started (SYN_SENT); both are closed; 3 never started.
        assert_eq!(open_clients_to_hanging(&h1), []);
        assert_eq!(open_clients_to_hanging(&h2), []);
        assert_eq!(open_clients_to_hanging(&h3), []);
    });
}

#[test]
fn attempts_in_flight_are_visible_before_the_cancel() {
    // The companion of the test above: the sockets it finds closed did exist.
    virtual_test(async || {
        let (h1, h2) = (hanging("127.0.0.1"), hanging("127.0.0.1"));
        let seen = std::cell::RefCell::new(Vec::new());
        let out = trellis::move_on_after(Duration::from_millis(300), async {
            trellis::nursery(async |n| {
                n.spawn(async {
                    trellis::sleep(Duration::from_millis(260)).await;
                    seen.borrow_mut().extend([
                        open_clients_to_hanging(&h1).len(),
                        open_clients_to_hanging(&h2).len(),
                    ]);
                });
                let _ = connect_happy_eyeballs([h1.addr, h2.addr], DELAY).await;
            })
            .await
        })
        .await;
        assert!(out.is_none());
        assert_eq!(*seen.borrow(), [1, 1]);
    });
}

#[test]
fn every_attempt_at_once_with_a_zero_delay_leaves_only_the_winner_open() {
    // With no delay every attempt starts in the same instant; several may connect, and
    // all but the first are closed.
    virtual_test(async || {
        let listeners: Vec<TcpListener> = (0..4).map(|_| accepting("127.0.0.1")).collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let stream = connect_happy_eyeballs(addrs.clone(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[0]);
        let winner = stream.local_addr().unwrap().port();
        let mut open = Vec::new();
        for addr in &addrs {
            open.extend(open_clients_to(addr.port()));
        }
        assert_eq!(open, [(winner, ESTABLISHED)]);
    });
}

#[test]
fn open_tcp_stream_resolves_localhost() {
    virtual_test(async || {
        let ok = accepting("127.0.0.1");
        let port = ok.local_addr().unwrap().port();
        let stream = open_tcp_stream("localhost", port).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
        let stream = open_tcp_stream_with_delay("localhost", port, Duration::MAX)
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), ok.local_addr().unwrap());
    });
}

#[test]
fn open_tcp_stream_reports_a_name_that_does_not_resolve() {
    virtual_test(async || {
        let err = open_tcp_stream("nonexistent.invalid", 80)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nonexistent.invalid"), "{err}");
        assert!(err.get_ref().is_none_or(|e| !e.is::<ConnectError>()));
    });
}

#[test]
fn lookup_host_localhost_is_loopback() {
    virtual_test(async || {
        let addrs = trellis::net::lookup_host("localhost", 80).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{addrs:?}"
        );
    });
}

#[test]
fn lookup_host_answers_ip_literals_without_a_thread() {
    // No runtime is needed for a literal: it never reaches `to_thread`, which would
    // panic outside a runtime.
    let literal = |host: &'static str| {
        let fut = trellis::net::lookup_host(host, 7);
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        match fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(out) => out.unwrap(),
            std::task::Poll::Pending => panic!("{host}: a literal is answered at once"),
        }
    };
    assert_eq!(literal("127.0.0.1"), ["127.0.0.1:7".parse().unwrap()]);
    assert_eq!(literal("::1"), ["[::1]:7".parse().unwrap()]);
    assert_eq!(literal("[::1]"), ["[::1]:7".parse().unwrap()]);
    assert_eq!(
        literal("[2001:db8::1]"),
        ["[2001:db8::1]:7".parse().unwrap()]
    );
}

#[test]
fn lookup_host_names_the_host_that_fails() {
    virtual_test(async || {
        let err = trellis::net::lookup_host("nonexistent.invalid", 80)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"nonexistent.invalid\""), "{message}");
        assert!(message.contains("port 80"), "{message}");
        // A bracketed name is not a literal: the resolver gets it, and fails.
        assert!(trellis::net::lookup_host("[localhost]", 80).await.is_err());
    });
}

#[test]
fn a_lookup_runs_off_the_runtime_thread_and_dropping_it_abandons_it() {
    virtual_test(async || {
        // A deadline already due: the lookup is dropped at its first suspension. It has
        // one because the resolver runs on a worker; the runtime does not wait for it.
        let start = trellis::now();
        let out =
            trellis::move_on_after(Duration::ZERO, trellis::net::lookup_host("localhost", 80))
                .await;
        assert!(out.is_none(), "the lookup did not suspend: {out:?}");
        assert_eq!(trellis::now() - start, Duration::ZERO);
        // The same for a whole `open_tcp_stream`.
        let ok = accepting("127.0.0.1");
        let port = ok.local_addr().unwrap().port();
        let out = trellis::move_on_after(Duration::ZERO, open_tcp_stream("localhost", port)).await;
        assert!(out.is_none());
        assert_eq!(open_clients_to(port), []);
    });
}
