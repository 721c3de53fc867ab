//! Behaviour of `serve_tcp`, `serve_listeners` and `open_tcp_listeners`: readiness through
//! `Nursery::start` with the bound addresses, echo through many connections with every
//! byte checked, cancellation closing every connection and the listener, a handler's
//! error or panic stopping the server (structured: nothing outlives it), and the accept
//! error policy (out of descriptors: pause 100 ms and retry) in a child process whose
//! descriptor limit is lowered.

mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::{echo, pattern, virtual_test};
use trellis::net::{TcpStream, open_tcp_listeners, serve_listeners, serve_tcp};
use trellis::{CancelScope, StartError};

fn start_error(e: StartError<io::Error>) -> io::Error {
    io::Error::other(e.to_string())
}

#[test]
fn serve_tcp_reports_its_port_and_echoes_every_byte() {
    const CLIENTS: usize = 20;
    const LEN: usize = 200_000;
    virtual_test(async || {
        let scope = CancelScope::new();
        let checked = Cell::new(0);
        let out = scope
            .clone()
            .run(trellis::nursery(async |n| {
                let addrs = n
                    .start(async |_n, status| {
                        serve_tcp(0, Some("127.0.0.1"), echo::<TcpStream>, status).await
                    })
                    .await
                    .map_err(start_error)?;
                assert_eq!(addrs.len(), 1);
                assert!(addrs[0].ip().is_loopback());
                assert_ne!(addrs[0].port(), 0);
                let addr = addrs[0];
                let (checked, scope) = (&checked, &scope);
                trellis::nursery(async |clients| {
                    for i in 0..CLIENTS {
                        clients.spawn(async move {
                            let stream = TcpStream::connect(addr).await?;
                            let sent = pattern(i, LEN);
                            let mut got = vec![0; LEN];
                            // Write and read at once: the echo's buffers are bounded.
                            trellis::nursery(async |io| {
                                io.spawn(async {
                                    stream.write_all(&sent).await?;
                                    stream.shutdown(std::net::Shutdown::Write)
                                });
                                stream.read_exact(&mut got).await?;
                                Ok::<_, io::Error>(())
                            })
                            .await
                            .map_err(|g| g.into_first())?;
                            assert!(got == sent, "client {i}: the echo differs");
                            // The server closes after our half-close: EOF.
                            assert_eq!(stream.read(&mut [0; 1]).await?, 0);
                            checked.set(checked.get() + 1);
                            Ok::<_, io::Error>(())
                        });
                    }
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(|g| g.into_first())?;
                scope.cancel();
                Ok::<_, io::Error>(())
            }))
            .await;
        assert!(out.is_none(), "the server runs until cancelled: {out:?}");
        assert_eq!(checked.get(), CLIENTS);
    });
}

#[test]
fn cancelling_the_server_closes_every_connection_and_the_listener() {
    const CLIENTS: usize = 5;
    virtual_test(async || {
        let server = CancelScope::new();
        let serving = Cell::new(0);
        let dropped = Cell::new(0);
        let results = RefCell::new(Vec::new());
        // A handler that holds its connection forever, counting itself in and out.
        let hold = async |stream: TcpStream| {
            serving.set(serving.get() + 1);
            let _guard = common::OnDrop(|| dropped.set(dropped.get() + 1));
            let _stream = stream;
            trellis::sleep_forever().await;
        };
        trellis::nursery(async |n| {
            let addrs = n
                .start(async |_n, status| {
                    server
                        .clone()
                        .run(serve_tcp(0, Some("127.0.0.1"), hold, status))
                        .await
                        .transpose()
                })
                .await
                .map_err(start_error)?;
            let addr = addrs[0];
            let mut clients = Vec::new();
            for _ in 0..CLIENTS {
                clients.push(TcpStream::connect(addr).await?);
            }
            while serving.get() < CLIENTS {
                trellis::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(dropped.get(), 0);
            server.cancel();
            // Every client sees its connection end: EOF (or a reset).
            for client in &clients {
                let end = client.read(&mut [0; 16]).await;
                results.borrow_mut().push(match end {
                    Ok(0) => "eof".to_owned(),
                    Ok(n) => format!("{n} bytes"),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => "eof".to_owned(),
                    Err(e) => e.to_string(),
                });
            }
            // And the listener is gone: a new connect is refused.
            let again = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(again.kind(), io::ErrorKind::ConnectionRefused);
            Ok::<_, io::Error>(())
        })
        .await
        .unwrap();
        assert_eq!(dropped.get(), CLIENTS);
        assert_eq!(*results.borrow(), vec!["eof"; CLIENTS]);
    });
}

#[test]
fn a_handler_error_stops_the_server_and_is_returned() {
    virtual_test(async || {
        let held_closed = Cell::new(false);
        let out = trellis::nursery(async |n| -> Result<(), io::Error> {
            let listeners = open_tcp_listeners(0, Some("127.0.0.1")).await?;
            let addr = listeners[0].local_addr()?;
            // The first connection is held; the second one's handler fails.
            let count = Cell::new(0);
            let handler = async |stream: TcpStream| {
                count.set(count.get() + 1);
                if count.get() == 1 {
                    let _stream = stream;
                    trellis::sleep_forever().await;
                }
                Err::<(), _>(io::Error::other("handler gave up"))
            };
            let held_closed = &held_closed;
            n.spawn(async move {
                let held = TcpStream::connect(addr).await?;
                trellis::sleep(Duration::from_millis(10)).await;
                let _second = TcpStream::connect(addr).await?;
                // The server's failure cancels the held connection's task: EOF here. (This
                // child belongs to the same nursery and is cancelled too, unless shielded.)
                trellis::shield(async {
                    let end = held.read(&mut [0; 1]).await;
                    held_closed.set(matches!(end, Ok(0)) || end.is_err());
                })
                .await;
                Ok::<_, io::Error>(())
            });
            let never = serve_listeners(listeners, handler, None).await?;
            match never {}
        })
        .await;
        let group = out.unwrap_err();
        assert_eq!(group.len(), 1, "{group}");
        assert_eq!(group.first().to_string(), "handler gave up");
        assert!(held_closed.get());
    });
}

#[test]
fn a_handler_panic_propagates_from_the_server() {
    let message = common::panic_message_of(|| {
        virtual_test(async || {
            let _ = trellis::nursery(async |n| {
                let addrs = n
                    .start(async |_n, status| {
                        let handler = async |_stream: TcpStream| panic!("handler exploded");
                        serve_tcp(0, Some("127.0.0.1"), handler, status).await
                    })
                    .await
                    .map_err(start_error)?;
                let _client = TcpStream::connect(addrs[0]).await?;
                trellis::sleep_forever().await;
                Ok::<_, io::Error>(())
            })
            .await;
        })
    });
    assert_eq!(message, "handler exploded");
}

#[test]
fn open_tcp_listeners_binds_each_address_of_a_name() {
    virtual_test(async || {
        // "localhost" is in /etc/hosts: one listener per loopback address it names.
        let expected = trellis::net::lookup_host("localhost", 0).await.unwrap();
        let listeners = open_tcp_listeners(0, Some("localhost")).await.unwrap();
        assert_eq!(listeners.len(), expected.len());
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // Port 0 gave one port for all of them.
        assert!(
            addrs.iter().all(|a| a.port() == addrs[0].port()),
            "{addrs:?}"
        );

        let v6 = open_tcp_listeners(0, Some("::1")).await.unwrap();
        assert_eq!(v6.len(), 1);
        assert_eq!(
            v6[0].local_addr().unwrap().ip(),
            "::1".parse::<std::net::IpAddr>().unwrap()
        );

        // A port in use: the system's error, naming the address.
        let port = listeners[0].local_addr().unwrap().port();
        let taken = open_tcp_listeners(port, Some("127.0.0.1"))
            .await
            .unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        assert!(
            taken.to_string().contains(&format!("127.0.0.1:{port}")),
            "{taken}"
        );

        let err = open_tcp_listeners(0, Some("nonexistent.invalid"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nonexistent.invalid"), "{err}");
    });
}

#[test]
fn serving_no_listener_is_invalid_input() {
    virtual_test(async || {
        let err = serve_listeners(Vec::new(), echo::<TcpStream>, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn out_of_descriptors_pauses_accepts_and_retries() {
    let stderr = common::stderr_of_test("child_process_out_of_descriptors");
    assert!(stderr.contains("child: ok"), "the child failed:\n{stderr}");
    let warnings = stderr.matches("retrying every 100ms").count();
    assert_eq!(warnings, 1, "one line per episode:\n{stderr}");
}

#[test]
#[ignore = "run by out_of_descriptors_pauses_accepts_and_retries in a child process"]
fn child_process_out_of_descriptors() {
    if !common::is_test_child() {
        return;
    }
    let accepted_at = trellis::Builder::new().autojump().run(async {
        let accepted_at = Cell::new(None);
        let scope = CancelScope::new();
        let start = trellis::now();
        let handler = async |_stream: TcpStream| {
            accepted_at.set(Some(trellis::now() - start));
            scope.cancel();
        };
        let _ = scope
            .clone()
            .run(trellis::nursery(async |n| {
                let addrs = n
                    .start(async |_n, status| {
                        serve_tcp(0, Some("127.0.0.1"), handler, status).await
                    })
                    .await
                    .map_err(start_error)?;
                // Connected in the kernel's queue before the descriptors run out.
                let _client = std::net::TcpStream::connect(addrs[0])?;
                let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
                rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard)?;
                let mut fillers = Vec::new();
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    fillers.push(f);
                }
                // The accept loop now fails with EMFILE; at 250 ms descriptors come back.
                trellis::sleep(Duration::from_millis(250)).await;
                drop(fillers);
                trellis::sleep_forever().await;
                Ok::<_, io::Error>(())
            }))
            .await;
        accepted_at.get()
    });
    // Retries at 100 and 200 ms fail; the one at 300 ms accepts.
    assert_eq!(accepted_at, Some(Duration::from_millis(300)));
    eprintln!("child: ok");
}

#[test]
fn handlers_failing_together_come_back_as_one_error_holding_all() {
    virtual_test(async || {
        let count = Cell::new(0);
        let handler = async |_stream: TcpStream| {
            count.set(count.get() + 1);
            Err::<(), _>(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handler {} gave up", count.get()),
            ))
        };
        let listeners = open_tcp_listeners(0, Some("127.0.0.1")).await.unwrap();
        let addr = listeners[0].local_addr().unwrap();
        // Both connections are queued before the accept loop first runs, so it accepts
        // both in one go, and both handlers fail before either suspends.
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        let err = serve_listeners(listeners, handler, None).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let group = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<trellis::ErrorGroup<io::Error>>())
            .unwrap_or_else(|| panic!("not a group: {err:?}"));
        let messages: Vec<String> = group.errors().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["handler 1 gave up", "handler 2 gave up"]);
    });
}
