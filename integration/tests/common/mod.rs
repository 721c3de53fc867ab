//! Helpers shared by the behaviour tests: counters of polls and drops.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "each test file uses a subset"
)]

pub mod collect;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Counts how many guards were dropped and how many finished normally.
#[derive(Clone, Default)]
pub struct DropCounter {
    dropped: Rc<Cell<usize>>,
    finished: Rc<Cell<usize>>,
}

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard to hold across an await: dropped without `finish` counts as a drop.
    pub fn guard(&self) -> Guard {
        Guard {
            counter: self.clone(),
            finished: false,
        }
    }

    pub fn dropped(&self) -> usize {
        self.dropped.get()
    }

    pub fn finished(&self) -> usize {
        self.finished.get()
    }
}

pub struct Guard {
    counter: DropCounter,
    finished: bool,
}

impl Guard {
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.finished {
            self.counter.finished.set(self.counter.finished.get() + 1);
        } else {
            self.counter.dropped.set(self.counter.dropped.get() + 1);
        }
    }
}

/// Wraps a future and counts its polls.
pub struct CountPolls<'a, F> {
    pub inner: Pin<Box<F>>,
    pub polls: &'a Cell<usize>,
}

impl<F: Future> Future for CountPolls<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

pub fn count_polls<F: Future>(polls: &Cell<usize>, inner: F) -> CountPolls<'_, F> {
    CountPolls {
        inner: Box::pin(inner),
        polls,
    }
}

/// Runs `fut` on a runtime with a mock clock and autojump.
pub fn run_virtual<F: Future>(fut: F) -> F::Output {
    trellis::Builder::new().autojump().run(fut)
}

/// Runs a closure when dropped (to record *when* a cancelled future was dropped).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Wraps a future and catches a panic from any of its polls.
pub struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

pub fn catch_unwind<F: Future>(inner: F) -> CatchUnwind<F> {
    CatchUnwind {
        inner: Box::pin(inner),
    }
}

/// The message of a panic payload (`&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string panic>")
    }
}

/// Runs `f`, which must panic, and returns its panic message.
pub fn panic_message_of<T>(f: impl FnOnce() -> T) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but it returned"),
        Err(payload) => panic_message(&*payload),
    }
}

/// Runs `test` on its own thread and fails if it has not finished within `limit` of real
/// time: a guard for tests of behaviour that used to hang, so that a regression fails
/// instead of stalling CI. The limit is a hang detector, never a timing assertion (the
/// tests themselves run on virtual time). A panic in `test` is resumed unchanged, so
/// `#[should_panic(expected = ..)]` keeps working.
pub fn watchdog<T: Send + 'static>(
    limit: std::time::Duration,
    test: impl FnOnce() -> T + Send + 'static,
) -> T {
    let limit = limit * hang_scale();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
        let _ = done_tx.send(());
        out
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            match worker.join().expect("the worker catches its panics") {
                Ok(v) => v,
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: the test did not finish within {limit:?}; it hangs")
        }
    }
}

/// How much slower than native the tests run: under Miri (about 100×) or valgrind and
/// the sanitizers (`TRELLIS_HANG_SCALE`, set by `scripts/*.sh`), the watchdog waits
/// that much longer before calling a slow test a hang.
pub fn hang_scale() -> u32 {
    if cfg!(miri) {
        return 100;
    }
    std::env::var("TRELLIS_HANG_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The watchdog's default limit: generous for a loaded 2-core CI machine, far below CI's.
pub const HANG_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `fut` once, then forgets it (it is never dropped): the shape of a future leaked
/// with `mem::forget` after it started.
pub async fn forget_after_one_poll<F: Future>(fut: F) {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    std::mem::forget(fut);
}

/// Polls `fut` once and gives it back (to drop it from outside afterwards: a hard cancel).
pub async fn poll_once<F: Future>(fut: F) -> Pin<Box<F>> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    fut
}

/// Panics with its message when dropped.
pub struct PanicOnDrop(pub &'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// The environment variable that marks a test process started by [`stderr_of_test`].
const CHILD_VAR: &str = "TRELLIS_TEST_CHILD";

/// Runs the test `name` of this test binary in a child process and returns what it wrote
/// to stderr, for behaviour that is only visible there. The test is marked `#[ignore]` so
/// that it runs only as a child; it should start with `if !is_test_child() { return; }`.
pub fn stderr_of_test(name: &str) -> String {
    exit_of_test(name).1
}

/// [`stderr_of_test`], with how the child exited: for promises whose breach is an abort or
/// a signal, which no `catch_unwind` can observe.
pub fn exit_of_test(name: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .expect("the test binary runs again as a child");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether this process was started by [`stderr_of_test`].
pub fn is_test_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Echoes everything `stream` sends until the peer shuts down its writing side (a TCP or
/// Unix stream, a TLS stream, a split half pair: anything `futures-io`).
pub async fn echo<S>(mut stream: S) -> std::io::Result<()>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(()),
            n => stream.write_all(&buf[..n]).await?,
        }
    }
}

/// Accepts connections on `listener` until accepting fails, echoing each in a child of
/// one nursery (so every connection ends with it); the error of the failed `accept`, or
/// of a connection, as an `io::Error`.
pub async fn serve_echo(listener: &trellis::net::TcpListener) -> std::io::Result<()> {
    trellis::nursery(async |connections| {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => connections.spawn(echo(stream)),
                Err(e) => return Err::<(), _>(e),
            };
        }
    })
    .await
    .map_err(|group| std::io::Error::other(group.to_string()))
}

/// The bytes connection `id` sends: distinct per connection and per position, so a byte
/// delivered to the wrong connection or out of order is caught.
pub fn pattern(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + id * 7 + i / 251) as u8)
        .collect()
}

/// A small seeded generator (xorshift64*): deterministic, so a failing seed replays.
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed`, mixed so that nearby seeds start far apart.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (from the high bits, the better ones).
    pub fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 33) % n
    }
}

/// The latest instant `Instant` can represent at or after `from` (std has no
/// `Instant::MAX`): a bisection over `checked_add`.
pub fn latest_instant(from: std::time::Instant) -> std::time::Instant {
    use std::time::Duration;
    let nanos = |n: u128| Duration::new((n / 1_000_000_000) as u64, (n % 1_000_000_000) as u32);
    if let Some(latest) = from.checked_add(Duration::MAX) {
        return latest;
    }
    let (mut ok, mut overflows) = (0u128, Duration::MAX.as_nanos());
    while overflows - ok > 1 {
        let mid = ok + (overflows - ok) / 2;
        if from.checked_add(nanos(mid)).is_some() {
            ok = mid;
        } else {
            overflows = mid;
        }
    }
    from + nanos(ok)
}

/// `n` seconds, for virtual-time tests.
pub fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

/// `n` milliseconds, for virtual-time tests.
pub fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

/// Runs `test` under the [`watchdog`] with [`HANG_LIMIT`]: for everything that could hang
/// if a promise broke (a hang detector, never a timing assertion).
pub fn guarded<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    watchdog(HANG_LIMIT, test)
}

/// Runs the async closure `test` on the autojump clock ([`run_virtual`]) under the
/// [`watchdog`].
pub fn virtual_test<T: Send + 'static>(test: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    watchdog(HANG_LIMIT, move || run_virtual(test()))
}

/// Polls `fut` exactly once: its output if that poll completed it, or `None` after
/// dropping it (a future that parked, then was dropped from outside: the hardest cancel).
pub async fn poll_once_then_drop<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// A connected TCP pair on 127.0.0.1: (client, server).
pub async fn tcp_pair() -> (trellis::net::TcpStream, trellis::net::TcpStream) {
    let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = trellis::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Everything `stream` gives until end-of-stream.
pub async fn read_to_eof<S>(mut stream: S) -> std::io::Result<Vec<u8>>
where
    S: futures_lite::AsyncRead + Unpin,
{
    use futures_lite::AsyncReadExt as _;
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(all),
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// [`virtual_test`] with the ready tasks of each round shuffled by `seed`
/// (`Builder::shuffle_seed`).
pub fn shuffled_test<T: Send + 'static>(
    seed: u64,
    test: impl AsyncFnOnce() -> T + Send + 'static,
) -> T {
    watchdog(HANG_LIMIT, move || {
        trellis::Builder::new()
            .autojump()
            .shuffle_seed(seed)
            .run(test())
    })
}

/// Runs every test of the calling test binary again in a child process whose runtimes
/// register sockets in oneshot mode (`TRELLIS_REACTOR_ONESHOT=1`: re-armed at each park,
/// the path of pollers without edge mode, runtime/rt/reactor.rs), and fails unless they
/// all pass. In that child it returns at once. The calling test must be named
/// `every_test_again_with_oneshot_registrations`, which the child skips.
pub fn every_test_again_in_oneshot_mode() {
    if std::env::var_os("TRELLIS_REACTOR_ONESHOT").is_some() {
        return; // this is the child
    }
    let out = watchdog(HANG_LIMIT * 3, || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--skip", "every_test_again", "--test-threads=2"])
            .env("TRELLIS_REACTOR_ONESHOT", "1")
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok"),
        "oneshot mode: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
