//! The reactor: the one place that talks to `polling`.
//!
//! # State
//!
//! - One [`polling::Poller`] per runtime, shared (through an `Arc`) with the root waker so
//!   that a wake from another thread can interrupt a blocked `wait` with `notify`.
//! - `sources`: a slab of registered I/O sources. Each slot holds the wakers waiting for
//!   readability and writability. The slab key is the `polling` key.
//! - Invariant: a source is `delete`d from the poller before its file descriptor closes.
//!   [`Registered`] keeps it: it owns the I/O object — an owned descriptor, never a
//!   borrowed one — and deletes the registration in its `Drop`, before the object's own
//!   destructor closes the descriptor. If the `Registered` is leaked (`mem::forget`), the
//!   object leaks with it and the descriptor is never closed, so the invariant still holds.
//! - A registration belongs to the runtime it was made in (it holds that runtime's
//!   `Core`): polling it from another runtime panics, since that runtime never waits on
//!   this poller and the task would sleep forever. Dropping it anywhere deletes it from
//!   its own poller, as the invariant requires.
//! - Interest is oneshot (the `polling` default): after an event the interest is re-armed
//!   with `modify` by the next task that finds the source not ready.

// Sources are registered by the socket types, which build on `Registered`; until they
// land only the tests use it.
#![cfg_attr(not(test), allow(dead_code))]
// The only module allowed to use `unsafe`: `Poller::add` is unsafe because the poller must
// learn of a source's removal before its descriptor is closed. Each block says why it holds.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use polling::{Event, Events, Poller};

use slab::Slab;

/// Which readiness a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

#[derive(Debug, Default)]
struct SourceState {
    /// Readiness seen by the poller and not yet consumed by a task.
    readable: bool,
    writable: bool,
    /// Tasks waiting for readiness in each direction.
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// The runtime's connection to the operating system's readiness notifications.
#[derive(Debug)]
pub(crate) struct Reactor {
    poller: Arc<Poller>,
    events: RefCell<Events>,
    /// Registered sources, keyed by their `polling` key.
    sources: RefCell<Slab<SourceState>>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poller: Arc::new(Poller::new()?),
            events: RefCell::new(Events::new()),
            sources: RefCell::new(Slab::default()),
        })
    }

    /// The poller, for wakers that must interrupt a blocked wait from another thread.
    pub(crate) fn poller(&self) -> &Arc<Poller> {
        &self.poller
    }

    /// Whether any I/O source is registered (when none is, the executor never needs to poll
    /// the reactor while tasks are runnable).
    pub(crate) fn has_sources(&self) -> bool {
        !self.sources.borrow().is_empty()
    }

    /// Waits for I/O events or until `timeout` passes (`None`: until an event or a
    /// `notify`), then wakes the tasks waiting on the sources that became ready.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        // `wait` appends to the list; stale events from the last round would be replayed.
        events.clear();
        match self.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut wakers = Vec::new();
        {
            let mut sources = self.sources.borrow_mut();
            for event in events.iter() {
                let Some(state) = sources.get_mut(event.key) else {
                    continue;
                };
                if event.readable {
                    state.readable = true;
                    wakers.extend(state.reader.take());
                }
                if event.writable {
                    state.writable = true;
                    wakers.extend(state.writer.take());
                }
            }
        }
        // Wake outside the borrow: a waker may poll nothing, but it may drop a source.
        wakers.into_iter().for_each(Waker::wake);
        Ok(())
    }

    fn insert_source(&self) -> usize {
        self.sources.borrow_mut().insert(SourceState::default())
    }

    fn remove_source(&self, key: usize) {
        self.sources.borrow_mut().try_remove(key);
    }
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
    io: T,
    key: usize,
    reactor: std::rc::Rc<crate::rt::state::Core>,
}

impl<T: AsFd + Into<OwnedFd>> Registered<T> {
    /// Registers `io` with the current runtime's reactor, with no interest yet.
    #[track_caller]
    pub(crate) fn new(io: T) -> io::Result<Registered<T>> {
        let core = crate::rt::state::with_core(|core| core.clone());
        let key = core.reactor.insert_source();
        // SAFETY: `Poller::add` requires that the source be deleted from the poller before
        // its descriptor is closed. `io` owns the descriptor (`T: Into<OwnedFd>`: only a
        // sole owner converts into an `OwnedFd`; borrowed descriptors are rejected by the
        // bound), and `io` is owned by the `Registered` we return, whose `Drop` calls
        // `Poller::delete` before `io` (a field) is dropped and closed. If the `Registered`
        // is leaked instead, `io` leaks with it and the descriptor is never closed. On the
        // error path below nothing was added. (A hand-written `From<X> for OwnedFd` that
        // duplicates a descriptor `X` merely borrows would defeat the bound; `Registered`
        // is crate-private and is only instantiated with std's owning types.)
        let added = unsafe {
            core.reactor
                .poller
                .add(io.as_fd().as_raw_fd(), Event::none(key))
        };
        if let Err(e) = added {
            core.reactor.remove_source(key);
            return Err(e);
        }
        Ok(Registered {
            io,
            key,
            reactor: core,
        })
    }

    /// The registered object.
    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    /// Polls for readiness in `dir`; consumes the readiness when it is there, otherwise
    /// stores the waker and re-arms the oneshot interest.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime, and in a runtime other than the one the source was
    /// registered with (that runtime never waits on this source's poller, so the task
    /// would never be woken).
    #[track_caller]
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if crate::rt::state::with_core(|core| core.id) != self.reactor.id {
            panic!(
                "an I/O object registered with one trellis runtime was used in another; \
                 a socket belongs to the runtime it was created in — use it inside that \
                 runtime's `run`, or create it in this one"
            );
        }
        let reactor = &self.reactor.reactor;
        let interest = {
            let mut sources = reactor.sources.borrow_mut();
            let Some(state) = sources.get_mut(self.key) else {
                return Poll::Ready(Err(io::Error::other("source is no longer registered")));
            };
            let (ready, waker) = match dir {
                Direction::Read => (&mut state.readable, &mut state.reader),
                Direction::Write => (&mut state.writable, &mut state.writer),
            };
            if std::mem::take(ready) {
                return Poll::Ready(Ok(()));
            }
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            let mut event = Event::none(self.key);
            event.readable = state.reader.is_some();
            event.writable = state.writer.is_some();
            event
        };
        match reactor.poller.modify(self.io.as_fd(), interest) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: AsFd + Into<OwnedFd>> Drop for Registered<T> {
    fn drop(&mut self) {
        // Deregister before `self.io` is dropped (fields drop after this body), keeping
        // the invariant `Poller::add` asked for. A failure here means the descriptor is
        // already gone from the poller; there is nothing more to undo.
        let _ = self.reactor.reactor.poller.delete(self.io.as_fd());
        self.reactor.reactor.remove_source(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A readiness round trip through the poller: not ready, woken by the peer's write,
    /// then ready; and the registration is gone after drop. The runtime parks with the
    /// task blocked on the source (the write is seen only by the next `wait`).
    async fn readable_after_peer_writes_round_trip() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registered::new(a).unwrap();
        let mut waited = false;
        std::future::poll_fn(|cx| {
            let poll = reg.poll_ready(Direction::Read, cx);
            if poll.is_pending() && !waited {
                waited = true;
                b.write_all(b"x").unwrap();
            }
            poll
        })
        .await
        .unwrap();
        assert!(waited, "a fresh socket must not report readiness");
        let mut buf = [0; 1];
        reg.get_ref().read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"x");
        drop(reg);
        crate::rt::state::with_core(|core| assert!(!core.reactor.has_sources()));
    }

    #[test]
    fn readable_after_peer_writes() {
        crate::rt::executor::run(readable_after_peer_writes_round_trip());
    }

    /// Every task is blocked and no timer is armed, but an I/O source is registered: on
    /// either mock clock that is not a deadlock, since the source may become ready.
    #[test]
    fn a_mock_clock_runtime_waiting_on_a_registered_source_is_not_deadlocked() {
        crate::rt::executor::Builder::new()
            .mock_clock()
            .run(readable_after_peer_writes_round_trip());
        crate::rt::executor::Builder::new()
            .autojump()
            .run(readable_after_peer_writes_round_trip());
    }

    #[test]
    fn polling_a_registration_in_another_runtime_panics_and_dropping_it_still_deregisters() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = crate::rt::executor::run(async { Registered::new(a).unwrap() });
        let home = reg.reactor.clone();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // On a mock clock: had the poll gone through, this runtime would park with no
            // source of its own and report a deadlock instead of hanging.
            crate::rt::executor::Builder::new()
                .mock_clock()
                .run(async { std::future::poll_fn(|cx| reg.poll_ready(Direction::Read, cx)).await })
        }));
        let payload = polled.expect_err("polling from another runtime must panic");
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            message.contains("registered with one trellis runtime was used in another"),
            "{message}"
        );
        assert!(home.reactor.has_sources());
        drop(reg);
        assert!(
            !home.reactor.has_sources(),
            "the drop deregisters from the runtime it was registered with"
        );
    }

    /// A socket with room in its send buffer reports write readiness through the poller.
    #[test]
    fn writable_when_the_send_buffer_has_room() {
        crate::rt::executor::run(async {
            let (a, _b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let reg = Registered::new(a).unwrap();
            std::future::poll_fn(|cx| reg.poll_ready(Direction::Write, cx))
                .await
                .unwrap();
            reg.get_ref().write_all(b"ok").unwrap();
        });
    }
}
