//! Signals: `open_signal_receiver` and `ctrl_c`. Cases after Trio's
//! `trio/_tests/test_signals.py` name the case they follow.
//!
//! Signals are process-wide and cargo runs this file's tests on several threads of one
//! process, so every test uses signal numbers of its own (listed at each test) and raises
//! a signal only while a receiver of it is open: a stray one would end the process (the
//! default action), which fails the run loudly. `SIGINT` is used by one test only.
//! `signal_hook::low_level::raise` delivers to the calling thread, synchronously: when it
//! returns, the handler has run.

mod common;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use signal_hook::consts::signal as sig;
use signal_hook::low_level::raise;
use trellis::signals::{
    SIGALRM, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGURG, SIGUSR1, SIGUSR2, SIGWINCH,
};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{Builder, ctrl_c, move_on_after, nursery, open_signal_receiver};

/// Runs `test` on the autojump clock, under the watchdog.
fn virtual_test(test: impl AsyncFnOnce() -> io::Result<()> + Send + 'static) {
    common::watchdog(common::HANG_LIMIT, move || {
        Builder::new().autojump().run(test()).unwrap()
    });
}

/// Nothing more arrives within a (virtual) second.
async fn nothing_more(receiver: &mut trellis::SignalReceiver) {
    let next = move_on_after(Duration::from_secs(1), receiver.recv()).await;
    assert!(next.is_none(), "unexpected signal: {next:?}");
}

/// SIGUSR1. A signal raised before `recv` is returned at once; one raised while a task is
/// parked in `recv` wakes it through the reactor.
#[test]
fn a_delivered_signal_reaches_the_receiver() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([SIGUSR1])?;
        raise(SIGUSR1)?;
        assert_eq!(receiver.recv().await?, SIGUSR1);
        let receiver = &mut receiver;
        nursery(async |n| {
            let child = n.spawn(async move { receiver.recv().await });
            wait_all_tasks_blocked().await;
            assert!(!child.is_finished(), "nothing delivered yet");
            raise(SIGUSR1)?;
            assert_eq!(child.await.unwrap(), SIGUSR1);
            Ok::<(), io::Error>(())
        })
        .await
        .unwrap();
        Ok(())
    });
}

/// SIGXFSZ. A signal delivered on another thread (a `to_thread` worker) wakes the runtime
/// blocked in the reactor: the real clock, so the runtime truly sleeps in `poll`.
#[test]
fn a_signal_delivered_on_another_thread_wakes_the_runtime() {
    common::watchdog(common::HANG_LIMIT, || {
        trellis::run(async {
            let mut receiver = open_signal_receiver([sig::SIGXFSZ])?;
            let receiver = &mut receiver;
            nursery(async |n| {
                let child = n.spawn(async move { receiver.recv().await });
                trellis::to_thread(|| raise(sig::SIGXFSZ)).await?;
                assert_eq!(child.await.unwrap(), sig::SIGXFSZ);
                Ok::<(), io::Error>(())
            })
            .await
            .unwrap();
            Ok::<(), io::Error>(())
        })
        .unwrap()
    });
}

/// SIGTERM, SIGHUP, SIGQUIT. Distinct signals come in the order of delivery, which is
/// neither the order given nor the numbers' order.
#[test]
fn distinct_signals_arrive_in_delivery_order() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([SIGTERM, SIGHUP, SIGQUIT])?;
        for s in [SIGQUIT, SIGTERM, SIGHUP] {
            raise(s)?;
        }
        for s in [SIGQUIT, SIGTERM, SIGHUP] {
            assert_eq!(receiver.recv().await?, s);
        }
        nothing_more(&mut receiver).await;
        // And again, the other way round.
        for s in [SIGHUP, SIGTERM, SIGQUIT] {
            raise(s)?;
        }
        for s in [SIGHUP, SIGTERM, SIGQUIT] {
            assert_eq!(receiver.recv().await?, s);
        }
        Ok(())
    });
}

/// SIGALRM. Trio `test_catch_signal`: a signal raised three times before it is read is
/// reported once (coalesced); after it was reported, the next delivery is reported again.
#[test]
fn repeated_signals_coalesce_until_read() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([SIGALRM])?;
        for _ in 0..3 {
            raise(SIGALRM)?;
        }
        assert_eq!(receiver.recv().await?, SIGALRM);
        nothing_more(&mut receiver).await;
        raise(SIGALRM)?;
        assert_eq!(receiver.recv().await?, SIGALRM);
        nothing_more(&mut receiver).await;
        Ok(())
    });
}

/// SIGVTALRM, SIGPROF. A signal delivered again while pending keeps its first place and
/// is not reported twice: A, B, A is read as A, B.
#[test]
fn a_pending_signal_keeps_its_place() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([sig::SIGPROF, sig::SIGVTALRM])?;
        for s in [sig::SIGVTALRM, sig::SIGPROF, sig::SIGVTALRM] {
            raise(s)?;
        }
        assert_eq!(receiver.recv().await?, sig::SIGVTALRM);
        assert_eq!(receiver.recv().await?, sig::SIGPROF);
        nothing_more(&mut receiver).await;
        Ok(())
    });
}

/// SIGWINCH. A `recv` dropped midway (polled, parked, then the signal delivered before it
/// is polled again) loses nothing: the next `recv` returns the signal.
#[test]
fn dropping_a_recv_midway_keeps_the_signal() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([SIGWINCH])?;
        let parked = common::poll_once(receiver.recv()).await;
        raise(SIGWINCH)?;
        drop(parked);
        assert_eq!(receiver.recv().await?, SIGWINCH);
        // One abandoned by a timeout after it parked, then the signal.
        nothing_more(&mut receiver).await;
        raise(SIGWINCH)?;
        assert_eq!(receiver.recv().await?, SIGWINCH);
        Ok(())
    });
}

/// SIGUSR2. Two receivers of one signal both see each delivery; dropping one unregisters
/// only its own actions: the other still receives, and the default action (which would end
/// this process) stays replaced. After both are dropped, a new receiver works.
#[test]
fn dropping_one_receiver_leaves_the_others_receiving() {
    virtual_test(async || {
        let mut first = open_signal_receiver([SIGUSR2])?;
        let mut second = open_signal_receiver([SIGUSR2])?;
        raise(SIGUSR2)?;
        assert_eq!(first.recv().await?, SIGUSR2);
        assert_eq!(second.recv().await?, SIGUSR2);
        drop(first);
        raise(SIGUSR2)?;
        assert_eq!(second.recv().await?, SIGUSR2);
        nothing_more(&mut second).await;
        drop(second);
        let mut third = open_signal_receiver([SIGUSR2])?;
        raise(SIGUSR2)?;
        assert_eq!(third.recv().await?, SIGUSR2);
        Ok(())
    });
}

/// SIGPIPE, which Rust's runtime ignores before `main`. A signal that was ignored before
/// its first receiver is ignored again after the last one is dropped (the default action,
/// ending the process, is not emulated for it).
#[test]
fn an_ignored_signal_is_ignored_again_after_the_receiver() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([SIGPIPE])?;
        raise(SIGPIPE)?;
        assert_eq!(receiver.recv().await?, SIGPIPE);
        drop(receiver);
        raise(SIGPIPE)?;
        Ok(())
    });
}

/// The child half of `the_default_action_is_back_after_the_last_receiver`: SIGTERM, in a
/// process of its own, where it may end the process.
#[test]
#[ignore = "run as a child process by the_default_action_is_back_after_the_last_receiver"]
fn child_raises_sigterm_after_its_receiver() {
    if !common::is_test_child() {
        return;
    }
    Builder::new()
        .autojump()
        .run(async {
            // Alone in this process, so the count of descriptors is stable: a dropped
            // receiver unregisters its actions, which closes their sending sockets.
            let descriptors = || std::fs::read_dir("/proc/self/fd").map(|d| d.count());
            // The runtime makes its poller at the first socket: make it now, so that
            // `before` counts the runtime's own descriptors.
            drop(trellis::net::UdpSocket::bind("127.0.0.1:0")?);
            let before = descriptors()?;
            for _ in 0..3 {
                drop(open_signal_receiver([SIGTERM, SIGHUP])?);
            }
            if descriptors()? == before {
                eprintln!("dropped receivers closed their descriptors");
            }
            let mut receiver = open_signal_receiver([SIGTERM])?;
            raise(SIGTERM)?;
            assert_eq!(receiver.recv().await?, SIGTERM);
            eprintln!("survived SIGTERM with a receiver");
            drop(receiver);
            raise(SIGTERM)?;
            eprintln!("survived SIGTERM without a receiver");
            Ok::<(), io::Error>(())
        })
        .unwrap();
}

/// After the last receiver of a signal whose disposition was the default is dropped, the
/// signal's default action is back: SIGTERM ends the (child) process, by the signal. And
/// dropping a receiver unregisters its actions (their sockets are closed).
#[test]
fn the_default_action_is_back_after_the_last_receiver() {
    let (status, stderr) = common::watchdog(common::HANG_LIMIT, || {
        common::exit_of_test("child_raises_sigterm_after_its_receiver")
    });
    assert!(
        stderr.contains("dropped receivers closed their descriptors"),
        "{status:?}: {stderr}"
    );
    assert!(
        stderr.contains("survived SIGTERM with a receiver"),
        "{status:?}: {stderr}"
    );
    assert!(
        !stderr.contains("without a receiver"),
        "{status:?}: {stderr}"
    );
    assert_eq!(status.signal(), Some(SIGTERM), "{status:?}: {stderr}");
}

/// SIGINT (the only test that raises it). `ctrl_c` returns once SIGINT is delivered; it is
/// registered (and parked) before the signal is raised, or the signal would end the
/// process.
#[test]
fn ctrl_c_returns_after_sigint() {
    virtual_test(async || {
        nursery(async |n| {
            let child = n.spawn(ctrl_c());
            wait_all_tasks_blocked().await;
            assert!(!child.is_finished());
            raise(SIGINT)?;
            child.await.unwrap();
            Ok::<(), io::Error>(())
        })
        .await
        .unwrap();
        Ok(())
    });
}

/// SIGIO, SIGURG. The receiver is a `Stream` of the same items (with `StreamExt`).
#[test]
fn the_receiver_is_a_stream() {
    use futures::StreamExt;
    virtual_test(async || {
        let mut receiver = open_signal_receiver([sig::SIGIO, SIGURG])?;
        raise(SIGURG)?;
        raise(sig::SIGIO)?;
        assert_eq!(receiver.next().await.unwrap()?, SIGURG);
        assert_eq!(receiver.next().await.unwrap()?, sig::SIGIO);
        Ok(())
    });
}

/// Real-time signal 40 (between `SIGRTMIN` and `SIGRTMAX` on Linux): received like any.
#[cfg(target_os = "linux")]
#[test]
fn a_real_time_signal_is_received() {
    virtual_test(async || {
        let mut receiver = open_signal_receiver([40])?;
        raise(40)?;
        assert_eq!(receiver.recv().await?, 40);
        Ok(())
    });
}

fn invalid_input(signals: &[i32]) -> String {
    let outcome = common::run_virtual(async { open_signal_receiver(signals.iter().copied()) });
    let err = outcome.expect_err("the signal must be refused");
    assert_eq!(
        err.kind(),
        io::ErrorKind::InvalidInput,
        "{signals:?}: {err}"
    );
    err.to_string()
}

/// Trio `test_open_signal_receiver_empty_fail` and the forbidden ones: each is an
/// `InvalidInput` error naming the signal, never a panic, and a refused signal beside an
/// allowed one registers nothing.
#[test]
fn forbidden_and_out_of_range_signals_are_invalid_input() {
    for forbidden in [
        sig::SIGKILL,
        sig::SIGSTOP,
        sig::SIGILL,
        sig::SIGFPE,
        sig::SIGSEGV,
    ] {
        let message = invalid_input(&[forbidden]);
        assert!(
            message.contains(&format!("signal {forbidden} ")),
            "{message}"
        );
        assert!(message.contains("cannot receive"), "{message}");
    }
    for out_of_range in [0, -1, 65, 1000, i32::MIN] {
        let message = invalid_input(&[out_of_range]);
        assert!(
            message.contains(&format!("signal {out_of_range}:")),
            "{message}"
        );
        assert!(message.contains("from 1 to 64"), "{message}");
    }
    let message = invalid_input(&[]);
    assert!(message.contains("no signals"), "{message}");
    let message = invalid_input(&[SIGUSR1, sig::SIGKILL]);
    assert!(message.contains("SIGKILL"), "{message}");
}

/// Glibc reserves signals 32 and 33 for its threads: the operating system's refusal comes
/// back as `InvalidInput`, naming the signal.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_reserved_signal_is_invalid_input() {
    let message = invalid_input(&[32]);
    assert!(message.contains("signal 32"), "{message}");
}

/// Outside a runtime, opening a receiver is an error (the reactor's), and so is `ctrl_c`.
#[test]
fn outside_a_runtime_is_an_error() {
    let err = open_signal_receiver([SIGUSR1]).expect_err("no runtime");
    assert!(err.to_string().contains("needs a trellis runtime"), "{err}");
    let err = futures::executor::block_on(ctrl_c()).expect_err("no runtime");
    assert!(err.to_string().contains("needs a trellis runtime"), "{err}");
}

/// `signals` lists what the receiver watches, without repeats, in the order given.
#[test]
fn the_receiver_lists_its_signals() {
    common::run_virtual(async {
        let receiver = open_signal_receiver([SIGQUIT, SIGHUP, SIGQUIT]).unwrap();
        assert_eq!(receiver.signals(), vec![SIGQUIT, SIGHUP]);
        let shown = format!("{receiver:?}");
        assert!(shown.contains("SignalReceiver"), "{shown}");
    });
}
