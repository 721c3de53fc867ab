//! Runtime-agnostic futures shared by every implementation: a yield, a one-shot poll, a
//! single-threaded signal, an idle future of a chosen size, drop counters and a PRNG.
//!
//! Using the same primitives on every runtime means the workloads differ only in what the
//! runtimes themselves do (spawning, scheduling, waking, timers).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Yields once: wakes itself and returns `Pending` the first time it is polled. For the
/// runtimes whose own `yield_now` is not what is measured (smol, `FuturesUnordered`).
#[derive(Debug, Default)]
pub struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A fresh [`YieldNow`].
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// Polls `fut` exactly once with the caller's context and returns whether it finished.
pub async fn poll_once<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| {
        let f = fut.take().expect("polled after completion");
        let mut f = f;
        Poll::Ready(f.as_mut().poll(cx).is_ready())
    })
    .await
}

/// A single-threaded generation counter with one waiter: `fire` bumps the generation and
/// wakes the waiter (by reference: the waker stays registered, so a waiter that waits again
/// clones nothing).
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// A signal at generation 0 with no waiter.
    pub const fn new() -> Signal {
        Signal {
            generation: Cell::new(0),
            waker: Cell::new(None),
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Bumps the generation and wakes the waiter, if any.
    pub fn fire(&self) {
        self.generation.set(self.generation.get() + 1);
        let waker = self.waker.take();
        if let Some(w) = &waker {
            w.wake_by_ref();
        }
        self.waker.set(waker);
    }

    /// Resolves (with the generation) once the generation is at least `target`.
    pub fn wait_for(&self, target: u64) -> WaitFor<'_> {
        WaitFor {
            signal: self,
            target,
        }
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("generation", &self.generation.get())
            .finish_non_exhaustive()
    }
}

/// Future of [`Signal::wait_for`].
#[derive(Debug)]
pub struct WaitFor<'a> {
    signal: &'a Signal,
    target: u64,
}

impl Future for WaitFor<'_> {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let g = self.signal.generation.get();
        if g >= self.target {
            return Poll::Ready(g);
        }
        let current = self.signal.waker.take();
        let waker = match current {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        self.signal.waker.set(Some(waker));
        Poll::Pending
    }
}

thread_local! {
    static IDLE_POLLS: Cell<u64> = const { Cell::new(0) };
}

/// A future of exactly `S` bytes (alignment 1) that is pending forever and never keeps a
/// waker: the smallest honest "idle task" of a given size. Its first poll is counted in a
/// thread-local (see [`idle_polls`]) so a workload can tell when all have been polled.
#[derive(Debug)]
pub struct Idle<const S: usize> {
    pad: [u8; S],
}

impl<const S: usize> Idle<S> {
    /// A new idle future.
    pub fn new() -> Self {
        Idle { pad: [1; S] }
    }
}

impl<const S: usize> Default for Idle<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const S: usize> Future for Idle<S> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.pad[0] == 1 {
            // Mark the first poll.
            self.get_mut().pad[0] = 2;
            IDLE_POLLS.with(|c| c.set(c.get() + 1));
        }
        Poll::Pending
    }
}

/// How many [`Idle`] futures have been polled for the first time on this thread.
pub fn idle_polls() -> u64 {
    IDLE_POLLS.with(Cell::get)
}

/// Increments its counter when dropped: tells a workload how many children are gone.
#[derive(Debug)]
pub struct DropCount<'a>(pub &'a Cell<usize>);

impl Drop for DropCount<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Increments its shared counter when dropped (`'static` form for `spawn_local`).
#[derive(Debug)]
pub struct RcDropCount(pub std::rc::Rc<Cell<usize>>);

impl Drop for RcDropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// xorshift64*: deterministic pseudo-random numbers for timer deadlines.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// The deterministic deadline offsets of `timers_fire`, in ns from the start: `margin_ns`
/// (time for the set-up, spawning and arming every timer) plus a random point within
/// `window_ns`.
pub fn timer_offsets(n: usize, margin_ns: u64, window_ns: u64) -> Vec<u64> {
    let mut rng = Rng::new(0x5EED);
    (0..n).map(|_| margin_ns + rng.below(window_ns)).collect()
}

/// Records when each timer of `timers_fire` fired relative to when it could have fired
/// (`max(deadline, end of set-up)`), and computes the percentiles.
#[derive(Debug)]
pub struct Lateness {
    /// When the workload started (set-up begins).
    pub start: std::time::Instant,
    /// Children whose timers are armed (polled once).
    pub armed: Cell<usize>,
    /// When the last child armed its timer: the end of set-up.
    pub setup_end: Cell<Option<std::time::Instant>>,
    /// Deadline and fire time of each timer.
    pub fired: std::cell::RefCell<Vec<(std::time::Instant, std::time::Instant)>>,
}

impl Lateness {
    /// Room for `n` timers, allocated before the measured region.
    pub fn new(n: usize) -> Lateness {
        Lateness {
            start: std::time::Instant::now(),
            armed: Cell::new(0),
            setup_end: Cell::new(None),
            fired: std::cell::RefCell::new(Vec::with_capacity(n)),
        }
    }

    /// Milliseconds from the start to the end of set-up.
    pub fn setup_ms(&self) -> f64 {
        self.setup_end
            .get()
            .map_or(f64::NAN, |e| (e - self.start).as_secs_f64() * 1e3)
    }

    /// Called by a child right after it has polled its sleep once (armed it).
    pub fn arm(&self, total: usize) {
        self.armed.set(self.armed.get() + 1);
        if self.armed.get() == total {
            self.setup_end.set(Some(std::time::Instant::now()));
        }
    }

    /// Called by a child when its sleep has fired.
    pub fn fire(&self, deadline: std::time::Instant) {
        self.fired
            .borrow_mut()
            .push((deadline, std::time::Instant::now()));
    }

    /// `(p50, p99, max)` lateness in microseconds.
    pub fn percentiles_us(&self) -> (f64, f64, f64) {
        let setup = self.setup_end.get().expect("set-up never ended");
        let mut late: Vec<f64> = self
            .fired
            .borrow()
            .iter()
            .map(|&(deadline, at)| {
                at.saturating_duration_since(deadline.max(setup)).as_nanos() as f64 / 1e3
            })
            .collect();
        late.sort_by(f64::total_cmp);
        let pick = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
        (pick(0.5), pick(0.99), *late.last().unwrap_or(&0.0))
    }
}

/// The shared state of `wake_one`, `wake_one_10` and `deep_tree`: one signal per parked
/// child, an acknowledgement signal back to the driver, and a stop flag.
///
/// A round is: the driver fires child `k % parked`, the child wakes, acknowledges, and
/// parks again; the driver wakes on the acknowledgement and goes on. Every runtime runs the
/// same round; only spawning, scheduling and waking differ.
#[derive(Debug)]
pub struct WakeState {
    signals: Vec<Signal>,
    ack: Signal,
    started: Cell<usize>,
    stop: Cell<bool>,
}

impl WakeState {
    /// State for `parked` children.
    pub fn new(parked: usize) -> WakeState {
        WakeState {
            signals: (0..parked).map(|_| Signal::new()).collect(),
            ack: Signal::new(),
            started: Cell::new(0),
            stop: Cell::new(false),
        }
    }

    /// How many children there are.
    pub fn parked(&self) -> usize {
        self.signals.len()
    }

    /// Whether every child has started (and so is parked on its signal).
    pub fn all_started(&self) -> bool {
        self.started.get() == self.signals.len()
    }

    /// The body of child `i`: park, acknowledge each wake, until stopped.
    pub async fn child(&self, i: usize) {
        self.started.set(self.started.get() + 1);
        let signal = &self.signals[i];
        let mut seen = 0;
        loop {
            seen = signal.wait_for(seen + 1).await;
            if self.stop.get() {
                break;
            }
            self.ack.fire();
        }
    }

    /// Wakes children one at a time, `wakes` times, each time waiting for the
    /// acknowledgement. Call once every child has started.
    pub async fn drive(&self, wakes: usize) {
        let parked = self.signals.len();
        let base = self.ack.generation();
        for k in 0..wakes {
            self.signals[k % parked].fire();
            self.ack.wait_for(base + k as u64 + 1).await;
        }
    }

    /// Tells every child to finish (they return at their next wake, which this gives them).
    pub fn stop(&self) {
        self.stop.set(true);
        for s in &self.signals {
            s.fire();
        }
    }
}
