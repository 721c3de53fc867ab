//! The reactor: the one place that talks to `polling`.
//!
//! # State
//!
//! - At most one [`polling::Poller`] per runtime, made when the first source is
//!   registered (a runtime that does no I/O never makes one: no epoll, eventfd or timerfd,
//!   which is also what lets the runtime run under Miri). It sits in a [`SharedPoller`]
//!   shared with the root waker, so that a wake from another thread can interrupt a
//!   blocked `wait` with `notify`. Until it exists, waiting parks the thread
//!   (`std::thread::park_timeout`) and a wake from another thread unparks it
//!   (`rt/state.rs`'s `RootWake`). Only the runtime's thread makes the poller, and never
//!   while parked, so the way the thread waits cannot change under a waker's feet.
//! - `sources`: a slab of registered I/O sources. Each slot holds the wakers waiting for
//!   readability and writability. The slab key is the `polling` key.
//! - Invariant: a source is `delete`d from the poller before its file descriptor closes.
//!   [`Registered`] keeps it: it owns the I/O object — an owned descriptor, never a
//!   borrowed one — and deletes the registration in its `Drop`, before the object's own
//!   destructor closes the descriptor. If the `Registered` is leaked (`mem::forget`), the
//!   object leaks with it and the descriptor is never closed, so the invariant still holds.
//! - A registration belongs to the runtime it was made in (it holds that runtime's
//!   `Core`): polling it from another runtime is an error (`poll_io`), since that runtime
//!   never waits on this poller and the task would sleep forever. Dropping it anywhere deletes it from
//!   its own poller, as the invariant requires.
//! - Interest is edge-triggered where the poller supports it (epoll, kqueue): a source is
//!   added once with both directions and never touched again until it is deleted, so a
//!   task that parks costs no syscall beyond the operation that would have blocked. Where
//!   edge mode is missing the interest is oneshot and is re-armed with `modify` at each
//!   park. (Measured on the echo benchmark: BENCHMARKS.md, "Reactor mode".)
//! - Readiness is not remembered. Every operation is tried first; only its `WouldBlock`
//!   parks the task (`poll_io`). That is sound because events are delivered only inside
//!   `wait`, on this thread, never between the failed operation and the park: in edge
//!   mode anything that arrives after the failed operation raises a new edge; in oneshot
//!   mode `modify` re-checks the current state.
//! - Each direction keeps every distinct waker that parked on it (two tasks reading one
//!   socket both wake), so no task can be forgotten by another one replacing its waker.
//!   In oneshot mode one event disarms both directions, so an event wakes both.

// The only module allowed to use `unsafe`: `Poller::add` is unsafe because the poller must
// learn of a source's removal before its descriptor is closed. Each block says why it holds.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

use slab::Slab;

use crate::instrument::hooks;
use crate::rt::state::Core;

/// Which readiness a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// The tasks parked on one direction of a source. Deduplicated with `will_wake`, so a
/// task polled again and again takes one slot; a dropped operation's waker stays until
/// the next event (a spurious wake, which wakers allow).
#[derive(Debug, Default)]
struct Parked {
    wakers: Vec<Waker>,
}

impl Parked {
    fn park(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|w| w.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        out.append(&mut self.wakers);
    }
}

#[derive(Debug, Default)]
struct SourceState {
    reader: Parked,
    writer: Parked,
}

/// A runtime's poller, once it has one: made by the reactor at the first registration,
/// read by the root waker (on any thread) to `notify` it.
pub(crate) type SharedPoller = Arc<OnceLock<Poller>>;

/// The runtime's connection to the operating system's readiness notifications.
#[derive(Debug)]
pub(crate) struct Reactor {
    /// Empty until the first source is registered.
    poller: SharedPoller,
    /// Edge-triggered registrations (where the poller has them), else oneshot. Settled
    /// when the poller is made (before that, only `TRELLIS_REACTOR_ONESHOT` or a test's
    /// `use_oneshot` may have lowered it).
    edge: std::cell::Cell<bool>,
    events: RefCell<Events>,
    /// The wakers one `wait` collects, kept to reuse the allocation.
    woken: RefCell<Vec<Waker>>,
    /// Registered sources, keyed by their `polling` key.
    sources: RefCell<Slab<SourceState>>,
}

impl Reactor {
    /// A reactor without a poller yet: no system call (but one environment read).
    pub(crate) fn new() -> Reactor {
        Reactor {
            poller: Arc::new(OnceLock::new()),
            edge: std::cell::Cell::new(!force_oneshot()),
            events: RefCell::new(Events::new()),
            woken: RefCell::new(Vec::new()),
            sources: RefCell::new(Slab::default()),
        }
    }

    /// Where the poller will be, for the root waker, which must interrupt a blocked wait
    /// from another thread.
    pub(crate) fn shared_poller(&self) -> &SharedPoller {
        &self.poller
    }

    /// The poller, made now if this is the first time one is needed (on the runtime's
    /// thread, which is not parked: it is registering a source).
    fn poller(&self) -> io::Result<&Poller> {
        if let Some(poller) = self.poller.get() {
            return Ok(poller);
        }
        let poller = Poller::new().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "trellis: cannot create the I/O poller for the first socket of this \
                     runtime ({e}); the process may be out of file descriptors"
                ),
            )
        })?;
        if !poller.supports_edge() {
            self.edge.set(false);
        }
        // Only this thread sets the cell, so it is still empty.
        Ok(self.poller.get_or_init(|| poller))
    }

    /// Whether the poller exists (a source was registered at some point).
    #[cfg(test)]
    pub(crate) fn has_poller(&self) -> bool {
        self.poller.get().is_some()
    }

    /// Whether any I/O source is registered (when none is, the executor never needs to poll
    /// the reactor while tasks are runnable).
    pub(crate) fn has_sources(&self) -> bool {
        !self.sources.borrow().is_empty()
    }

    /// Waits for I/O events or until `timeout` passes (`None`: until an event or a
    /// `notify`), then wakes the tasks waiting on the sources that became ready.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.wait_for_events(timeout)?;
        self.wake_ready();
        Ok(())
    }

    /// The first half of [`wait`](Self::wait): blocks in the poller and keeps the events,
    /// waking nobody. The executor's park announces it is parked only around this half, so
    /// that the wakes of `wake_ready` (on the runtime's own thread) never notify it.
    ///
    /// Without a poller there are no sources and so no events: the thread parks until the
    /// timeout or an `unpark` from another thread's wake (`rt/state.rs`). Either may return
    /// spuriously (a stale unpark token), which the executor's loop allows.
    pub(crate) fn wait_for_events(&self, timeout: Option<Duration>) -> io::Result<()> {
        let instrumented = hooks::active();
        if instrumented {
            hooks::emit("before_io_wait", |i| i.before_io_wait(timeout));
        }
        let waited = self.wait_in_poller(timeout);
        if instrumented {
            let n = self.events.borrow().len();
            hooks::emit("after_io_wait", |i| i.after_io_wait(n));
        }
        waited
    }

    fn wait_in_poller(&self, timeout: Option<Duration>) -> io::Result<()> {
        let Some(poller) = self.poller.get() else {
            match timeout {
                Some(timeout) => std::thread::park_timeout(timeout),
                None => std::thread::park(),
            }
            return Ok(());
        };
        let mut events = self.events.borrow_mut();
        // `wait` appends to the list; stale events from the last round would be replayed.
        events.clear();
        match poller.wait(&mut events, timeout) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The second half of [`wait`](Self::wait): wakes the tasks parked on the directions
    /// the kept events report ready.
    pub(crate) fn wake_ready(&self) {
        if self.poller.get().is_none() {
            return;
        }
        let events = self.events.borrow();
        let mut woken = std::mem::take(&mut *self.woken.borrow_mut());
        {
            let mut sources = self.sources.borrow_mut();
            for event in events.iter() {
                let Some(state) = sources.get_mut(event.key) else {
                    continue;
                };
                // Oneshot: the event disarmed both directions, so both must look again.
                if event.readable || !self.edge.get() {
                    state.reader.drain_into(&mut woken);
                }
                if event.writable || !self.edge.get() {
                    state.writer.drain_into(&mut woken);
                }
            }
        }
        drop(events);
        // Wake outside the borrows: a waker polls nothing, but its drop may drop a source.
        woken.drain(..).for_each(Waker::wake);
        *self.woken.borrow_mut() = woken;
    }

    /// Switches a runtime with no sources yet to oneshot registrations, so that tests run
    /// the path edge-less pollers take.
    #[cfg(test)]
    fn use_oneshot(&self) {
        assert!(
            !self.has_sources(),
            "switch modes before registering anything"
        );
        self.edge.set(false);
    }

    /// The poller, for a source already registered (which made it).
    fn registered_poller(&self) -> &Poller {
        self.poller
            .get()
            .expect("a registered source made the poller, which lives as long as the runtime")
    }

    fn insert_source(&self) -> usize {
        self.sources.borrow_mut().insert(SourceState::default())
    }

    fn remove_source(&self, key: usize) {
        self.sources.borrow_mut().try_remove(key);
    }
}

/// `TRELLIS_REACTOR_ONESHOT=1` makes a runtime register in oneshot mode even where edge
/// mode exists: the benchmark compares the two modes with it, and the tests run the
/// oneshot path with it. Read once per runtime.
fn force_oneshot() -> bool {
    std::env::var_os("TRELLIS_REACTOR_ONESHOT").is_some_and(|v| v == "1")
}

/// An I/O object registered with the reactor. Dropping it deregisters the descriptor
/// first, then drops (closes) the object.
///
/// `T: Into<OwnedFd>` proves that `T` owns the descriptor it exposes through `AsFd`: the
/// std types that convert into an `OwnedFd` (sockets, `File`, `OwnedFd` itself) are the
/// sole owners of their descriptor and close it only in their own destructor. Borrowing
/// types (`BorrowedFd`, `&UnixStream`, `Arc<UnixStream>`) do not convert, so they cannot
/// be registered: with them, a `mem::forget` of the `Registered` (safe code) would skip the
/// deregistration while the real owner still closes the descriptor.
#[derive(Debug)]
pub(crate) struct Registered<T: AsFd + Into<OwnedFd>> {
    io: Option<T>,
    key: usize,
    core: Rc<Core>,
}

impl<T: AsFd + Into<OwnedFd>> Registered<T> {
    /// Registers `io` (which must be in non-blocking mode) with the current runtime's
    /// reactor. Outside a runtime this is an error, not a panic: a socket made outside
    /// `run` is a user's mistake that `?` should carry.
    pub(crate) fn new(io: T) -> io::Result<Registered<T>> {
        let Some(core) = crate::rt::state::try_with_core(|core| core.clone()) else {
            return Err(io::Error::other(
                "an I/O object needs a trellis runtime, but none is running on this thread; \
                 create it inside `trellis::run(async { ... })`",
            ));
        };
        let reactor = &core.reactor;
        let poller = reactor.poller()?;
        let key = reactor.insert_source();
        let (interest, mode) = if reactor.edge.get() {
            (Event::all(key), PollMode::Edge)
        } else {
            (Event::none(key), PollMode::Oneshot)
        };
        // SAFETY: `Poller::add` requires that the source be deleted from the poller before
        // its descriptor is closed. `io` owns the descriptor (`T: Into<OwnedFd>`: only a
        // sole owner converts into an `OwnedFd`; borrowed descriptors are rejected by the
        // bound), and `io` is owned by the `Registered` we return, whose `Drop` calls
        // `Poller::delete` before `io` (a field) is dropped and closed, and whose
        // `into_inner` deletes before it gives `io` back. If the `Registered` is leaked
        // instead, `io` leaks with it and the descriptor is never closed. On the error path
        // below nothing was added. (A hand-written `From<X> for OwnedFd` that duplicates a
        // descriptor `X` merely borrows would defeat the bound; `Registered` is
        // crate-private and is only instantiated with std's owning types.)
        let added = unsafe { poller.add_with_mode(io.as_fd().as_raw_fd(), interest, mode) };
        if let Err(e) = added {
            reactor.remove_source(key);
            return Err(e);
        }
        Ok(Registered {
            io: Some(io),
            key,
            core,
        })
    }

    /// The registered object.
    pub(crate) fn get_ref(&self) -> &T {
        self.io.as_ref().expect("present until into_inner or drop")
    }

    /// Deregisters and gives the object back (still in non-blocking mode).
    pub(crate) fn into_inner(mut self) -> T {
        self.deregister();
        self.io.take().expect("present until into_inner or drop")
    }

    /// Runs `op` on the object; if it would block, parks the task on `dir` and returns
    /// `Pending` (the waker is woken when the source becomes ready in that direction, and
    /// the caller polls again, which runs `op` again). `Interrupted` retries at once.
    ///
    /// A source registered in another runtime is an error, before any system call: that
    /// runtime never waits on this source's poller, so a task that had to wait would sleep
    /// forever, and an operation that happened not to wait would hide the mistake until
    /// one does.
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        if crate::rt::state::try_with_core(|core| core.id) != Some(self.core.id) {
            return Poll::Ready(Err(io::Error::other(
                "an I/O object registered with one trellis runtime was used in another (or \
                 outside any); a socket belongs to the runtime it was created in: use it \
                 inside that runtime's `run`, or create it in this one",
            )));
        }
        let io = self.get_ref();
        loop {
            match op(io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                done => return Poll::Ready(done),
            }
        }
        self.park(dir, cx.waker())
    }

    /// [`poll_io`](Self::poll_io) as a future: runs `op` until it does not block.
    pub(crate) async fn io<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_io(dir, cx, &mut op)).await
    }

    fn park<R>(&self, dir: Direction, waker: &Waker) -> Poll<io::Result<R>> {
        hooks::record_wait(hooks::Wait::Io {
            fd: self.get_ref().as_fd().as_raw_fd(),
            write: matches!(dir, Direction::Write),
        });
        let reactor = &self.core.reactor;
        let interest = {
            let mut sources = reactor.sources.borrow_mut();
            let state = sources
                .get_mut(self.key)
                .expect("a source stays in the slab while its Registered lives");
            match dir {
                Direction::Read => state.reader.park(waker),
                Direction::Write => state.writer.park(waker),
            }
            if reactor.edge.get() {
                return Poll::Pending;
            }
            let mut event = Event::none(self.key);
            event.readable = !state.reader.is_empty();
            event.writable = !state.writer.is_empty();
            event
        };
        match reactor
            .registered_poller()
            .modify(self.get_ref().as_fd(), interest)
        {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn deregister(&mut self) {
        if let Some(io) = &self.io {
            // A failure here means the descriptor is already gone from the poller; there is
            // nothing more to undo.
            let _ = self.core.reactor.registered_poller().delete(io.as_fd());
            self.core.reactor.remove_source(self.key);
        }
    }
}

impl<T: AsFd + Into<OwnedFd>> Drop for Registered<T> {
    fn drop(&mut self) {
        // Deregister before `self.io` is dropped (fields drop after this body), keeping
        // the invariant `Poller::add` asked for.
        self.deregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn read_some(reg: &Registered<UnixStream>, cx: &mut Context<'_>) -> Poll<io::Result<u8>> {
        reg.poll_io(Direction::Read, cx, |mut io| {
            let mut buf = [0; 1];
            io.read_exact(&mut buf).map(|()| buf[0])
        })
    }

    /// A readiness round trip through the poller: would block, woken by the peer's write,
    /// then read; and the registration is gone after drop. The runtime parks with the task
    /// blocked on the source (the write is seen only by the next `wait`).
    async fn readable_after_peer_writes_round_trip() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registered::new(a).unwrap();
        let mut waited = false;
        let byte = std::future::poll_fn(|cx| {
            let poll = read_some(&reg, cx);
            if poll.is_pending() && !waited {
                waited = true;
                b.write_all(b"x").unwrap();
            }
            poll
        })
        .await
        .unwrap();
        assert!(waited, "a fresh socket has nothing to read");
        assert_eq!(byte, b'x');
        drop(reg);
        crate::rt::state::with_core(|core| assert!(!core.reactor.has_sources()));
    }

    /// A runtime that does no I/O makes no poller (no system call, and what lets it run
    /// under Miri); its first registration makes one, which outlives the source.
    #[test]
    fn the_poller_is_made_by_the_first_registration() {
        crate::rt::executor::run(async {
            crate::rt::executor::yield_now().await;
            crate::rt::state::with_core(|core| assert!(!core.reactor.has_poller()));
        });
        if cfg!(miri) {
            return; // no non-blocking sockets
        }
        crate::rt::executor::run(async {
            let (a, _b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            drop(Registered::new(a).unwrap());
            crate::rt::state::with_core(|core| {
                assert!(core.reactor.has_poller());
                assert!(!core.reactor.has_sources());
            });
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn readable_after_peer_writes() {
        crate::rt::executor::run(readable_after_peer_writes_round_trip());
    }

    /// Every task is blocked and no timer is armed, but an I/O source is registered: on
    /// either mock clock that is not a deadlock, since the source may become ready.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn a_mock_clock_runtime_waiting_on_a_registered_source_is_not_deadlocked() {
        crate::rt::executor::Builder::new()
            .mock_clock()
            .run(readable_after_peer_writes_round_trip());
        crate::rt::executor::Builder::new()
            .autojump()
            .run(readable_after_peer_writes_round_trip());
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn parking_a_registration_in_another_runtime_is_an_error_and_dropping_it_deregisters() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = crate::rt::executor::run(async { Registered::new(a).unwrap() });
        let home = reg.core.clone();
        // On a mock clock: had the park gone through, this runtime would find no source of
        // its own and report a deadlock instead of hanging.
        let err = crate::rt::executor::Builder::new()
            .mock_clock()
            .run(async { std::future::poll_fn(|cx| read_some(&reg, cx)).await })
            .expect_err("parking in another runtime must fail");
        assert!(
            err.to_string()
                .contains("registered with one trellis runtime was used in another"),
            "{err}"
        );
        assert!(home.reactor.has_sources());
        drop(reg);
        assert!(
            !home.reactor.has_sources(),
            "the drop deregisters from the runtime it was registered with"
        );
    }

    /// A task woken by the reactor is woken by the runtime's own thread, which must not see
    /// itself parked: otherwise every such wake notifies the poller (an eventfd write and
    /// an extra wait that returns at once). The probe records `parked` as the wake runs.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn a_wake_from_the_reactor_finds_the_runtime_not_parked() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        struct Probe {
            root: Arc<crate::rt::state::RootWake>,
            woken_while_parked: AtomicUsize,
            wakes: AtomicUsize,
            inner: Waker,
        }
        impl std::task::Wake for Probe {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref();
            }
            fn wake_by_ref(self: &Arc<Self>) {
                self.wakes.fetch_add(1, Ordering::SeqCst);
                if self.root.parked.load(Ordering::SeqCst) {
                    self.woken_while_parked.fetch_add(1, Ordering::SeqCst);
                }
                self.inner.wake_by_ref();
            }
        }
        let (wakes, while_parked) = crate::rt::executor::run(async {
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let reg = Registered::new(a).unwrap();
            let root = crate::rt::state::with_core(|core| core.root.clone());
            let written = AtomicBool::new(false);
            let mut probe = None;
            std::future::poll_fn(|cx| {
                let probe = probe.get_or_insert_with(|| {
                    Arc::new(Probe {
                        root: root.clone(),
                        woken_while_parked: AtomicUsize::new(0),
                        wakes: AtomicUsize::new(0),
                        inner: cx.waker().clone(),
                    })
                });
                let waker = Waker::from(probe.clone());
                let poll = read_some(&reg, &mut Context::from_waker(&waker));
                if poll.is_pending() && !written.swap(true, Ordering::SeqCst) {
                    // Seen only once the runtime parks in the reactor.
                    b.write_all(b"x").unwrap();
                }
                poll.map(|read| {
                    assert_eq!(read.unwrap(), b'x');
                    (
                        probe.wakes.load(Ordering::SeqCst),
                        probe.woken_while_parked.load(Ordering::SeqCst),
                    )
                })
            })
            .await
        });
        assert_eq!(wakes, 1, "woken once, by the reactor");
        assert_eq!(
            while_parked, 0,
            "and not while the runtime counted as parked"
        );
    }

    #[test]
    fn registering_outside_a_runtime_is_an_error() {
        let (a, _b) = UnixStream::pair().unwrap();
        let err = Registered::new(a).expect_err("no runtime");
        assert!(err.to_string().contains("needs a trellis runtime"), "{err}");
    }

    /// Runs `scenario` with edge-triggered registrations, then with oneshot ones.
    fn in_each_mode(scenario: fn(bool)) {
        scenario(false);
        scenario(true);
    }

    fn select_mode(oneshot: bool) {
        if oneshot {
            crate::rt::state::with_core(|core| core.reactor.use_oneshot());
        }
    }

    /// Two tasks parked on the same direction of one source are both woken: neither
    /// replaces the other's waker. Under a watchdog: a lost waker hangs.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn two_readers_of_one_source_are_both_woken() {
        in_each_mode(|oneshot| watchdog(move || two_readers(oneshot)));
    }

    fn two_readers(oneshot: bool) {
        crate::rt::executor::Builder::new().autojump().run(async {
            select_mode(oneshot);
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let reg = Registered::new(a).unwrap();
            let polls = std::cell::Cell::new(0);
            let first = std::future::poll_fn(|cx| {
                polls.set(polls.get() + 1);
                read_some(&reg, cx)
            });
            let second = std::future::poll_fn(|cx| {
                let poll = read_some(&reg, cx);
                if poll.is_pending() && polls.get() == 1 {
                    // Both parked now; the peer's two bytes must reach both.
                    b.write_all(b"xy").unwrap();
                }
                poll
            });
            let (x, y) = join(first, second).await;
            let mut got = [x.unwrap(), y.unwrap()];
            got.sort();
            assert_eq!(&got, b"xy");
        });
    }

    /// Both directions parked at once, and only the read side becomes ready: the writer
    /// must still be woken once its side frees up later (in oneshot mode the read event
    /// disarmed both directions). Under a watchdog: a stranded writer hangs.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot make a socket non-blocking (no FIONBIO)")]
    fn a_reader_and_a_writer_parked_together_are_each_woken() {
        in_each_mode(|oneshot| watchdog(move || reader_and_writer(oneshot)));
    }

    fn reader_and_writer(oneshot: bool) {
        crate::rt::executor::run(async {
            select_mode(oneshot);
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.set_nonblocking(true).unwrap();
            let reg = Registered::new(a).unwrap();
            // Fill a's send buffer so that writing would block.
            let chunk = [0u8; 4096];
            while reg.get_ref().write(&chunk).is_ok() {}
            let write = std::future::poll_fn(|cx| {
                reg.poll_io(Direction::Write, cx, |mut io| io.write(b"w"))
            });
            let mut sent = false;
            let read = std::future::poll_fn(|cx| {
                let poll = read_some(&reg, cx);
                if poll.is_pending() && !sent {
                    sent = true;
                    b.write_all(b"r").unwrap();
                }
                if poll.is_ready() {
                    // Only now does the writer's side free up: a later event, alone.
                    let mut sink = vec![0; 1 << 16];
                    while b.read(&mut sink).is_ok_and(|n| n > 0) {}
                }
                poll
            });
            let (w, r) = join(write, read).await;
            assert_eq!(w.unwrap(), 1);
            assert_eq!(r.unwrap(), b'r');
        });
    }

    /// Runs `test` on a thread of its own and fails if it has not finished in 20 s of real
    /// time (a hang detector, not a timing assertion).
    fn watchdog(test: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            test();
            let _ = done.send(());
        });
        match finished.recv_timeout(Duration::from_secs(20)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("watchdog: the scenario hangs")
            }
            _ => worker.join().unwrap(),
        }
    }

    /// Polls `a` and `b` concurrently, each with a waker of its own (as two tasks would
    /// be): a side is polled again only when its own waker was woken, so a test sees a
    /// wake that went to the wrong task or nowhere.
    async fn join<A: std::future::Future, B: std::future::Future>(
        a: A,
        b: B,
    ) -> (A::Output, B::Output) {
        use std::sync::atomic::{AtomicBool, Ordering};
        struct Side {
            woken: AtomicBool,
            parent: std::sync::Mutex<Option<Waker>>,
        }
        impl std::task::Wake for Side {
            fn wake(self: std::sync::Arc<Self>) {
                self.woken.store(true, Ordering::SeqCst);
                if let Some(w) = self.parent.lock().unwrap().as_ref() {
                    w.wake_by_ref();
                }
            }
        }
        fn side() -> std::sync::Arc<Side> {
            std::sync::Arc::new(Side {
                woken: AtomicBool::new(true),
                parent: std::sync::Mutex::new(None),
            })
        }
        fn step<F: std::future::Future>(
            fut: std::pin::Pin<&mut F>,
            side: &std::sync::Arc<Side>,
            out: &mut Option<F::Output>,
            parent: &Waker,
        ) {
            *side.parent.lock().unwrap() = Some(parent.clone());
            if out.is_none() && side.woken.swap(false, Ordering::SeqCst) {
                let waker = Waker::from(side.clone());
                if let Poll::Ready(v) = fut.poll(&mut Context::from_waker(&waker)) {
                    *out = Some(v);
                }
            }
        }
        let mut a = std::pin::pin!(a);
        let mut b = std::pin::pin!(b);
        let (sa, sb) = (side(), side());
        let (mut ra, mut rb) = (None, None);
        std::future::poll_fn(|cx| {
            step(a.as_mut(), &sa, &mut ra, cx.waker());
            step(b.as_mut(), &sb, &mut rb, cx.waker());
            if ra.is_some() && rb.is_some() {
                Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
