//! Nothing outlives the runtime: after worker threads, `from_thread` calls, sockets and
//! their cancellation, the process is back to the threads (`/proc/self/task`) and file
//! descriptors (`/proc/self/fd`) it had before. Counted per process, so this file holds one
//! test (tests of one file share a process and run on parallel threads; the other test
//! files run in other processes).

mod common;

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{HANG_LIMIT, echo, watchdog};
use trellis::net::{TcpListener, UdpSocket, UnixStream, open_tcp_stream};
use trellis::{CancelScope, RuntimeHandle, nursery};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("Linux's /proc").count()
}

fn threads() -> usize {
    count("/proc/self/task")
}

fn descriptors() -> usize {
    count("/proc/self/fd")
}

/// Waits for the thread count to come back to `baseline`: a worker exits once it has
/// seen the pool closed (at once when idle, when its call returns when busy), but the
/// kernel drops it from `/proc/self/task` a little later, so this looks again for a while
/// before failing. The while is half the pool's 10 s idle timeout, so a worker that
/// exits only by timing out, not by seeing the runtime end, fails the test (under
/// `TRELLIS_HANG_SCALE` it is longer, and does not tell those apart).
fn assert_threads_back_to(baseline: usize, after: &str) {
    let give_up = Instant::now() + Duration::from_secs(5) * common::hang_scale();
    loop {
        let now = threads();
        if now == baseline {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "{now} threads after {after}, {baseline} before: a thread outlived its runtime"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `to_thread` calls, some finished, some cancelled while running (their workers finish
/// the call after the runtime stopped waiting), some cancelled while queued (never
/// started), and `from_thread` calls from workers and from a thread of our own.
fn thread_work() {
    const CALLS: usize = 24;
    const WORKERS: usize = 4;
    // The calls cancelled while running block until released.
    let release = Arc::new(Barrier::new(1 + WORKERS));
    let release_at_the_end = Arc::new(Barrier::new(2));
    let started = Arc::new(AtomicUsize::new(0));
    let queued_ran = Arc::new(AtomicBool::new(false));
    trellis::Builder::new().thread_limit(WORKERS).run(async {
        let results = nursery(async |n| {
            for i in 0..CALLS {
                n.spawn(async move { io::Result::Ok(trellis::to_thread(move || i).await) });
            }
            io::Result::Ok(())
        })
        .await;
        assert!(results.is_ok());
        // Every worker busy, then more calls queued behind them, then the scope is
        // cancelled: the running calls are abandoned, the queued ones never start.
        let scope = CancelScope::new();
        let cancel = scope.clone();
        let outcome = scope
            .run(nursery(async |n| {
                for _ in 0..WORKERS {
                    let (release, started) = (release.clone(), started.clone());
                    n.spawn(async move {
                        trellis::to_thread(move || {
                            started.fetch_add(1, Ordering::SeqCst);
                            release.wait();
                        })
                        .await;
                        io::Result::Ok(())
                    });
                }
                while started.load(Ordering::SeqCst) < WORKERS {
                    trellis::yield_now().await;
                }
                for _ in 0..WORKERS {
                    let queued_ran = queued_ran.clone();
                    n.spawn(async move {
                        trellis::to_thread(move || queued_ran.store(true, Ordering::SeqCst)).await;
                        io::Result::Ok(())
                    });
                }
                trellis::yield_now().await;
                cancel.cancel();
                io::Result::Ok(())
            }))
            .await;
        assert!(outcome.is_none(), "cancelled");
        // The abandoned calls return, and their workers are free again.
        release.wait();
        // from_thread: from a worker, and from a thread the runtime does not know of.
        let handle = RuntimeHandle::current();
        let from_worker = trellis::to_thread({
            let handle = handle.clone();
            move || handle.run_sync(|| 20).unwrap()
        })
        .await;
        let from_afar = std::thread::spawn(move || handle.run(|| async { 22 }).unwrap());
        // The runtime keeps running while that thread's call waits for it.
        let from_afar = trellis::to_thread(move || from_afar.join().unwrap()).await;
        assert_eq!(from_worker + from_afar, 42);
        // A call still running when the runtime ends: its worker exits after it.
        // (Dropped once it runs: a call dropped while queued never starts.)
        let (at_the_end, running) = (release_at_the_end.clone(), started.clone());
        let call = common::poll_once(trellis::to_thread(move || {
            running.fetch_add(1, Ordering::SeqCst);
            at_the_end.wait();
        }))
        .await;
        while started.load(Ordering::SeqCst) < WORKERS + 1 {
            trellis::yield_now().await;
        }
        drop(call);
    });
    release_at_the_end.wait();
    assert!(
        !queued_ran.load(Ordering::SeqCst),
        "a call cancelled while queued never starts"
    );
}

/// Sockets of every kind (TCP, the listener's accepted streams, a Unix pair, UDP), all
/// mid-transfer or blocked when their nursery is cancelled or fails.
async fn sockets(fail_instead_of_cancel: bool) {
    const CLIENTS: usize = 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let scope = CancelScope::new();
    let cancel = scope.clone();
    let transferring = Cell::new(0);
    // The last of the clients (TCP and Unix) to have had bytes echoed stops everything.
    let transferred = || {
        transferring.set(transferring.get() + 1);
        if transferring.get() < CLIENTS + 1 {
            return Ok(());
        }
        if fail_instead_of_cancel {
            return Err(io::Error::other("one connection fails"));
        }
        cancel.cancel();
        Ok(())
    };
    let outcome = scope
        .run(nursery(async |n| {
            let (listener, transferred) = (&listener, &transferred);
            n.spawn(common::serve_echo(listener));
            let (a, b) = UnixStream::pair()?;
            n.spawn(echo(b));
            n.spawn(async move {
                let mut buf = [0; 1];
                a.write_all(b"x").await?;
                a.read_exact(&mut buf).await?;
                transferred()?;
                trellis::sleep_forever().await;
                Ok(())
            });
            let udp = UdpSocket::bind("127.0.0.1:0")?;
            n.spawn(async move {
                let mut buf = [0; 16];
                udp.recv_from(&mut buf).await.map(drop)
            });
            for _ in 0..CLIENTS {
                n.spawn(async move {
                    // By name: the resolver runs on a worker thread, then Happy Eyeballs.
                    let stream = open_tcp_stream("localhost", addr.port()).await?;
                    let mut buf = [0; 64];
                    stream.write_all(&[1; 64]).await?;
                    stream.read_exact(&mut buf).await?;
                    transferred()?;
                    trellis::sleep_forever().await;
                    Ok(())
                });
            }
            io::Result::Ok(())
        }))
        .await;
    assert_eq!(
        transferring.get(),
        CLIENTS + 1,
        "every client was connected"
    );
    match outcome {
        None => assert!(!fail_instead_of_cancel, "cancelled"),
        Some(Err(group)) => assert!(
            fail_instead_of_cancel && group.to_string().contains("one connection fails"),
            "{group}"
        ),
        Some(Ok(())) => panic!("the nursery cannot end by itself"),
    }
}

#[test]
fn threads_and_descriptors_are_back_to_baseline_after_every_runtime() {
    watchdog(HANG_LIMIT, || {
        let (threads_before, fds_before) = (threads(), descriptors());
        thread_work();
        assert_threads_back_to(threads_before, "to_thread and from_thread work");
        assert_eq!(descriptors(), fds_before, "after thread work");
        trellis::run(async {
            sockets(false).await;
            sockets(true).await;
        });
        assert_eq!(
            descriptors(),
            fds_before,
            "after cancelled and failed sockets"
        );
        assert_threads_back_to(threads_before, "name resolution");
    });
}
