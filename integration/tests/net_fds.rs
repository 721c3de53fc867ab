//! Supervision by ownership: when a nursery is cancelled or fails, every socket its tasks
//! opened is closed. Counted in `/proc/self/fd`, so this file holds one test (the other
//! test files run in other processes; tests of one file share a process).

mod common;

use std::cell::Cell;
use std::io;

use common::{HANG_LIMIT, watchdog};
use trellis::net::{TcpListener, TcpStream};
use trellis::{CancelScope, nursery};

const CONNECTIONS: usize = 1000;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("Linux's /proc/self/fd")
        .count()
}

/// A server and `CONNECTIONS` clients, all mid-transfer (every client has had bytes echoed
/// and keeps writing) when `stop` is called: by cancelling the scope around them, or by a
/// child failing, which fails the nursery.
async fn transfer_until_stopped(fail_instead_of_cancel: bool) {
    let scope = CancelScope::new();
    let cancel = scope.clone();
    let transferring = Cell::new(0);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let outcome = scope
        .run(nursery(async |n| {
            let (listener, transferring, cancel) = (&listener, &transferring, &cancel);
            n.spawn(common::serve_echo(listener));
            for _ in 0..CONNECTIONS {
                n.spawn(async move {
                    let stream = TcpStream::connect(addr).await?;
                    let mut counted = false;
                    let mut buf = [0; 512];
                    loop {
                        stream.write_all(&[7; 512]).await?;
                        stream.read_exact(&mut buf).await?;
                        if !counted {
                            counted = true;
                            transferring.set(transferring.get() + 1);
                            if transferring.get() == CONNECTIONS {
                                if fail_instead_of_cancel {
                                    return Err::<(), _>(io::Error::other("one connection fails"));
                                }
                                cancel.cancel();
                            }
                        }
                    }
                });
            }
            io::Result::Ok(())
        }))
        .await;
    assert_eq!(
        transferring.get(),
        CONNECTIONS,
        "every connection was mid-transfer"
    );
    match outcome {
        None => assert!(!fail_instead_of_cancel, "cancelled"),
        Some(Err(group)) => {
            assert!(fail_instead_of_cancel);
            assert!(
                group.to_string().contains("one connection fails"),
                "{group}"
            );
        }
        Some(Ok(())) => panic!("the nursery cannot finish by itself"),
    }
}

#[test]
fn a_cancelled_or_failed_nursery_closes_every_socket_its_tasks_opened() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .expect("raise the soft descriptor limit");
    assert!(
        hard >= 2 * CONNECTIONS as u64 + 64,
        "the hard descriptor limit {hard} is too low for this test"
    );
    watchdog(HANG_LIMIT, || {
        let outside = open_descriptors();
        trellis::run(async {
            // The runtime makes its poller at the first socket: make it now, so that
            // `before` counts the runtime's own descriptors.
            drop(TcpListener::bind("127.0.0.1:0").unwrap());
            let before = open_descriptors();
            transfer_until_stopped(false).await;
            assert_eq!(open_descriptors(), before, "after a cancellation");
            transfer_until_stopped(true).await;
            assert_eq!(open_descriptors(), before, "after a failure");
        });
        assert_eq!(
            open_descriptors(),
            outside,
            "the runtime's end closes its poller"
        );
    });
}
