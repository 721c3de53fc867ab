//! Memory channels: Trio's `open_memory_channel`, as [`channel`], [`Sender`] and
//! [`Receiver`].
//!
//! The contract users read (closing and clones, cancellation, checkpoints, results in
//! completion order) is in the docs of [`channel`]; this is the inside.
//!
//! # State and invariants
//!
//! One `Rc<RefCell<State>>` per channel, shared by its handles and by the waiting futures
//! (which hold a key into a wait queue). Every operation borrows it once, for a few steps,
//! and never polls or wakes anything while it is borrowed: wakers are collected and woken
//! after the borrow ends, and values to drop (whose destructors might touch the channel)
//! are dropped after it too.
//!
//! - `buffer` holds the values in the order they were sent. Its first `claimed` values are
//!   promised to receive waiters that were *served* (woken with a value) and have not yet
//!   taken it; claims are interchangeable, so a served waiter takes the front value. The
//!   other values are *unclaimed*: only they count against `capacity` and only they can be
//!   taken by a receive that was not waiting.
//! - Waiters queue in FIFO order (`WaitQueue`: a doubly linked list in a slab, O(1) to add,
//!   serve or remove). A send waiter holds its value in the queue until a receiver moves it
//!   into the buffer (or takes it directly, on a rendezvous channel).
//! - Never both: if a receive waiter is queued, nothing is unclaimed and no send waiter is
//!   queued; if a send waiter is queued, the unclaimed values fill the capacity.
//! - A served receive waiter that is dropped before it takes its value passes its claim to
//!   the next queued receive waiter, or, with none, leaves the value unclaimed at its place
//!   in the buffer. (The buffer may then hold more than `capacity` unclaimed values, by the
//!   number of such drops: senders wait until it drains below the capacity again.)
//! - `senders` and `receivers` count the open handles. When `senders` reaches 0 no send
//!   waiter is left (each belonged to a handle that closed), and nothing can enter the
//!   buffer any more. When `receivers` reaches 0, every send waiter gets its value back and
//!   the unclaimed values are dropped.
//! - End-of-stream is told (to a queued receive waiter, or returned by a receive) only
//!   when `senders == 0` and the buffer is empty, claimed values included: a claim can
//!   still be given back (above), and a receive that had already seen end-of-stream could
//!   not take it, so its loop would end with a value left in the channel. So the queued
//!   receive waiters are told end-of-stream when the last sender closes with the buffer
//!   empty, or else when the last claimed value is taken; until then they wait, and a
//!   claim given back goes to the first of them. Since nothing enters the buffer after
//!   that, a waiter told end-of-stream has nothing left to take.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_core::{FusedFuture, FusedStream, Stream};
use slab::Slab;

use crate::scope::cancel_scope::current_is_cancelled;

/// Opens a memory channel with room for `capacity` buffered values (Trio's
/// `open_memory_channel`).
///
/// With `capacity == 0` the channel is a rendezvous: a send completes only once a receiver
/// takes its value. With a capacity, a send completes at once while the buffer has room
/// and waits when it is full (back-pressure). `usize::MAX` is, in practice, unbounded (the
/// buffer grows as needed; Trio's `math.inf`). Values arrive in the order they were sent;
/// waiting senders and waiting receivers are served first come, first served.
///
/// Both handles are cloneable, for several producers and consumers; closing is per handle
/// (below). Everything is `!Send`: the channel belongs to the thread (and runtime) that
/// uses it.
///
/// # Handles, clones and closing
///
/// A channel has any number of send handles and receive handles; `clone` makes another
/// handle on the same channel (Trio's `clone`, an `os.dup`). Closing is per handle, as in
/// Trio: [`Sender::close`] or dropping a `Sender` closes *that handle*. Its own waiting
/// sends fail with [`SendError::Closed`] (the value comes back), and it cannot send again;
/// other clones go on as before. The channel's send side is closed once every send handle
/// is closed or dropped: receivers then take what is buffered, then see end-of-stream
/// ([`RecvError::Disconnected`]). Likewise, once every receive handle is closed or dropped,
/// the buffered values are dropped and every send fails with [`SendError::Disconnected`],
/// which returns the value. Cloning a closed handle gives a closed handle (Trio raises
/// `ClosedResourceError` there; `Clone` cannot fail): it does not reopen the channel.
///
/// There is no "close the whole channel" from one handle (Trio has none either): a
/// producer that is done closes or drops its own handle, and the stream ends when the last
/// one has. `close` is synchronous and not a checkpoint; Trio's `aclose` is
/// `close()` followed by [`yield_now`](crate::yield_now)`().await`.
///
/// # Cancellation
///
/// A send or receive that is cancelled (its future dropped) before it completes does
/// nothing: a send's value is not delivered, a receive takes nothing. In detail:
/// - A [`SendFuture`] dropped before a receiver took its value drops the value with it
///   (its destructor runs at that drop): it was never delivered, and no receiver sees it.
///   A send whose value was taken (moved into the buffer, or handed to a receiver on a
///   rendezvous channel) is delivered, even if its future is dropped before it is polled
///   again. To keep the value when a send cannot complete, use [`Sender::try_send`], whose
///   error returns it.
/// - A [`RecvFuture`] dropped while waiting takes nothing. One dropped after a value was
///   promised to it (it was woken, not yet polled) passes the value to the next waiting
///   receiver, or leaves it in the buffer for the next receive: nothing is lost. So while
///   such a value is promised, the other receives do not see end-of-stream yet: it may
///   still come to them. (A receive leaked with `mem::forget` after it was handed a value
///   never gives it back: the others then wait for end-of-stream for ever, which a mock
///   clock reports as a deadlock.)
/// - A send or receive polled for the first time in a cancelled scope does nothing and is
///   dropped there (Trio's `checkpoint_if_cancelled`).
///
/// # Checkpoints
///
/// In Trio every `send` and `receive` is a checkpoint. Here an operation that can complete
/// at once completes at its first poll without suspending (no schedule point, for speed),
/// except in a cancelled scope, where it suspends and is dropped. A loop that only sends
/// to a channel with room, or only receives from one with values, therefore does not let
/// other tasks run: add a [`yield_now`](crate::yield_now) if it must.
///
/// # Results in completion order
///
/// tokio's `JoinSet::join_next` gives the results of tasks as they finish. The
/// nursery-shaped answer is a channel: each child sends its result, and the body receives
/// them in the order they finish. The body drops its own sender once it has spawned the
/// children, so the receive loop ends when the last child has sent; with a capacity of one
/// slot per child, no child ever waits to send.
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(async {
///     let jobs = [("slow", 30), ("fast", 10), ("middle", 20)];
///     let finished = trellis::nursery(async |n| {
///         let (tx, rx) = trellis::channel(jobs.len());
///         for (name, ms) in jobs {
///             let tx = tx.clone();
///             n.spawn(async move {
///                 trellis::sleep(Duration::from_millis(ms)).await;
///                 tx.send(name).await.expect("the body receives until every child is done");
///             });
///         }
///         drop(tx); // the children hold the only senders left
///         let mut finished = Vec::new();
///         while let Ok(name) = rx.recv().await {
///             finished.push(name); // handle each result here, as it comes
///         }
///         Ok::<_, std::convert::Infallible>(finished)
///     })
///     .await
///     .unwrap();
///     assert_eq!(finished, ["fast", "middle", "slow"]);
/// });
/// ```
///
/// A child that fails or is cancelled sends nothing; the nursery reports the failure as
/// usual. `examples/job_runner.rs` shows the pattern with deadlines.
///
/// # Examples
///
/// ```
/// trellis::Builder::new().autojump().run(async {
///     let (tx, rx) = trellis::channel(1);
///     trellis::nursery(async |n| {
///         n.spawn(async move {
///             for i in 0..3 {
///                 tx.send(i).await.unwrap(); // waits while the one slot is full
///             }
///             // Dropping `tx`, the only sender, ends the stream.
///         });
///         let mut got = Vec::new();
///         while let Ok(i) = rx.recv().await {
///             got.push(i);
///         }
///         assert_eq!(got, [0, 1, 2]);
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[doc(alias = "mpsc")]
#[doc(alias = "open_memory_channel")]
#[doc(alias = "Queue")]
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let state = Rc::new(RefCell::new(State {
        capacity,
        buffer: VecDeque::new(),
        claimed: 0,
        senders: 1,
        receivers: 1,
        next_handle: 2,
        send_waiters: WaitQueue::new(),
        recv_waiters: WaitQueue::new(),
    }));
    let sender = Sender {
        state: state.clone(),
        id: 0,
        closed: Cell::new(false),
    };
    let receiver = Receiver {
        state,
        id: 1,
        closed: Cell::new(false),
        stream: Cell::new(None),
        stream_done: false,
    };
    (sender, receiver)
}

// ---------------------------------------------------------------------------------------
// The shared state.

type Shared<T> = Rc<RefCell<State<T>>>;

/// A channel's state (the invariants are in the module docs).
struct State<T> {
    /// How many unclaimed values the buffer may hold before a send waits.
    capacity: usize,
    /// The values sent and not yet received, oldest first; the first `claimed` are
    /// promised to served receive waiters.
    buffer: VecDeque<T>,
    /// How many values at the front of `buffer` are promised to served receive waiters.
    claimed: usize,
    /// Open send handles.
    senders: usize,
    /// Open receive handles.
    receivers: usize,
    /// The identity of the next handle (to find a closing handle's own waiters).
    next_handle: u64,
    /// Sends waiting for room (or for a receiver, on a rendezvous channel).
    send_waiters: WaitQueue<SendWaiter<T>>,
    /// Receives waiting for a value; served ones are unlinked but keep their slot.
    recv_waiters: WaitQueue<RecvWaiter>,
}

/// A waiting send.
struct SendWaiter<T> {
    /// The handle it was called on.
    handle: u64,
    state: SendState<T>,
    /// Woken when `state` leaves `Waiting`.
    waker: Option<Waker>,
}

/// Where a waiting send's value is.
enum SendState<T> {
    /// Queued, with its value.
    Waiting(T),
    /// A receiver took the value (into the buffer or directly).
    Delivered,
    /// Its handle was closed: the value comes back.
    Closed(T),
    /// Every receiver is gone: the value comes back.
    Disconnected(T),
}

/// A waiting receive (a [`RecvFuture`] or a [`Receiver`]'s stream).
struct RecvWaiter {
    /// The handle it was called on.
    handle: u64,
    state: RecvState,
    /// Woken when `state` leaves `Waiting`.
    waker: Option<Waker>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RecvState {
    /// Queued, with nothing yet.
    Waiting,
    /// It holds a claim on one of the `claimed` values at the front of the buffer.
    Served,
    /// Its handle was closed.
    Closed,
    /// Every sender is gone and the buffer is empty, claimed values included.
    Disconnected,
}

/// Wakers to wake once the state's borrow has ended.
#[derive(Default)]
struct Wakes {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakes {
    fn push(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    /// Inlined: most operations wake nobody or one task.
    #[inline]
    fn wake(self) {
        let Some(first) = self.first else { return };
        first.wake();
        if !self.rest.is_empty() {
            wake_all(self.rest);
        }
    }
}

#[inline(never)]
fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

impl<T> State<T> {
    fn unclaimed(&self) -> usize {
        self.buffer.len() - self.claimed
    }

    fn statistics(&self) -> ChannelStatistics {
        ChannelStatistics {
            buffered: self.buffer.len(),
            capacity: self.capacity,
            open_senders: self.senders,
            open_receivers: self.receivers,
            waiting_senders: self.send_waiters.linked_len(),
            waiting_receivers: self.recv_waiters.linked_len(),
        }
    }

    fn new_handle(&mut self) -> u64 {
        let id = self.next_handle;
        self.next_handle += 1;
        id
    }

    /// Places `value` for the receivers: promised to the first receive waiter, else into
    /// the buffer if it has room; `Err(value)` when it is full. The handle checks (closed,
    /// disconnected) come first, in the caller.
    fn offer(&mut self, value: T, wakes: &mut Wakes) -> Result<(), T> {
        if let Some(key) = self.recv_waiters.pop_front() {
            // A receiver is waiting, so nothing is unclaimed: the value goes right after
            // the claimed ones, and is claimed.
            let waiter = self.recv_waiters.get_mut(key);
            waiter.state = RecvState::Served;
            wakes.push(waiter.waker.take());
            self.buffer.push_back(value);
            self.claimed += 1;
            Ok(())
        } else if self.unclaimed() < self.capacity {
            self.buffer.push_back(value);
            Ok(())
        } else {
            Err(value)
        }
    }

    /// Takes a value for a receive that is not a served waiter: the oldest unclaimed one
    /// (then the first waiting send's value moves into the freed room), or, on a
    /// rendezvous channel, the first waiting send's value itself.
    fn take(&mut self, wakes: &mut Wakes) -> Option<T> {
        if self.unclaimed() > 0 {
            // Nothing is claimed, nearly always: then the oldest value is the front one.
            let value = if self.claimed == 0 {
                self.buffer.pop_front()
            } else {
                self.buffer.remove(self.claimed)
            };
            let value = value.expect("an unclaimed value");
            if self.unclaimed() < self.capacity {
                if let Some(value) = self.take_from_sender(wakes) {
                    self.buffer.push_back(value);
                }
            }
            Some(value)
        } else {
            self.take_from_sender(wakes)
        }
    }

    /// The first waiting send's value; that send is delivered.
    fn take_from_sender(&mut self, wakes: &mut Wakes) -> Option<T> {
        let key = self.send_waiters.pop_front()?;
        let waiter = self.send_waiters.get_mut(key);
        let SendState::Waiting(value) = std::mem::replace(&mut waiter.state, SendState::Delivered)
        else {
            unreachable!("only waiting sends are queued")
        };
        wakes.push(waiter.waker.take());
        Some(value)
    }

    /// A served receive waiter gave up its claim (dropped before taking its value): the
    /// claim passes to the next receive waiter, or the value becomes unclaimed. With no
    /// receiver left, nobody can take it: it is returned, to be dropped.
    fn release_claim(&mut self, wakes: &mut Wakes) -> Option<T> {
        if let Some(key) = self.recv_waiters.pop_front() {
            let waiter = self.recv_waiters.get_mut(key);
            waiter.state = RecvState::Served;
            wakes.push(waiter.waker.take());
            return None;
        }
        self.claimed -= 1;
        if self.receivers == 0 {
            return self.buffer.remove(self.claimed);
        }
        None
    }

    /// Closes the send handle `handle`: its waiting sends fail (their values stay in their
    /// slots, for their futures to return); the last one ends the stream.
    fn close_sender(&mut self, handle: u64, wakes: &mut Wakes) {
        for key in self.send_waiters.linked_keys(|w| w.handle == handle) {
            self.send_waiters.unlink(key);
            let waiter = self.send_waiters.get_mut(key);
            let state = std::mem::replace(&mut waiter.state, SendState::Delivered);
            let SendState::Waiting(value) = state else {
                unreachable!("only waiting sends are queued")
            };
            waiter.state = SendState::Closed(value);
            wakes.push(waiter.waker.take());
        }
        self.senders -= 1;
        if self.senders == 0 {
            debug_assert!(self.send_waiters.is_empty_list());
            self.end_stream_if_drained(wakes);
        }
    }

    /// Tells every queued receive waiter end-of-stream if the channel is done: every
    /// sender gone and the buffer empty. Called whenever either may have just become true.
    fn end_stream_if_drained(&mut self, wakes: &mut Wakes) {
        if self.senders > 0 || !self.buffer.is_empty() {
            return;
        }
        while let Some(key) = self.recv_waiters.pop_front() {
            let waiter = self.recv_waiters.get_mut(key);
            waiter.state = RecvState::Disconnected;
            wakes.push(waiter.waker.take());
        }
    }

    /// Closes the receive handle `handle`; returns the buffered values to drop when it was
    /// the last one.
    fn close_receiver(&mut self, handle: u64, wakes: &mut Wakes) -> VecDeque<T> {
        for key in self.recv_waiters.linked_keys(|w| w.handle == handle) {
            self.recv_waiters.unlink(key);
            let waiter = self.recv_waiters.get_mut(key);
            waiter.state = RecvState::Closed;
            wakes.push(waiter.waker.take());
        }
        self.receivers -= 1;
        if self.receivers > 0 {
            return VecDeque::new();
        }
        debug_assert!(self.recv_waiters.is_empty_list());
        while let Some(key) = self.send_waiters.pop_front() {
            let waiter = self.send_waiters.get_mut(key);
            let state = std::mem::replace(&mut waiter.state, SendState::Delivered);
            let SendState::Waiting(value) = state else {
                unreachable!("only waiting sends are queued")
            };
            waiter.state = SendState::Disconnected(value);
            wakes.push(waiter.waker.take());
        }
        // Served waiters (of closed handles, still polled) keep their claimed values.
        self.buffer.split_off(self.claimed)
    }

    /// The receive step shared by [`RecvFuture`] and the stream: `waiter` is the caller's
    /// queue slot, if it has one.
    fn poll_recv(
        &mut self,
        receiver: &Receiver<T>,
        waiter: &mut Option<usize>,
        cx: &mut Context<'_>,
        wakes: &mut Wakes,
    ) -> Poll<Result<T, RecvError>> {
        if let Some(key) = *waiter {
            let entry = self.recv_waiters.get_mut(key);
            match entry.state {
                RecvState::Waiting => {
                    match &mut entry.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
                state => {
                    self.recv_waiters.remove(key);
                    *waiter = None;
                    return Poll::Ready(match state {
                        RecvState::Served => Ok(self.take_claimed(wakes)),
                        RecvState::Closed => Err(RecvError::Closed),
                        RecvState::Disconnected => {
                            debug_assert!(self.buffer.is_empty(), "end-of-stream told early");
                            Err(RecvError::Disconnected)
                        }
                        RecvState::Waiting => unreachable!("matched above"),
                    });
                }
            }
        }
        if current_is_cancelled() {
            // Trio's `checkpoint_if_cancelled`: the caller is dropped at this suspension,
            // having taken nothing. No waker is needed: its owner drops it now.
            return Poll::Pending;
        }
        if let Some(value) = self.take_stream_claim(receiver, wakes) {
            return Poll::Ready(Ok(value));
        }
        if receiver.closed.get() {
            return Poll::Ready(Err(RecvError::Closed));
        }
        if let Some(value) = self.take(wakes) {
            return Poll::Ready(Ok(value));
        }
        // With values still claimed, one may be given back: wait for it (or for the last
        // claim to be taken, which ends the stream) rather than end the stream early.
        if self.senders == 0 && self.buffer.is_empty() {
            return Poll::Ready(Err(RecvError::Disconnected));
        }
        *waiter = Some(self.recv_waiters.push_back(RecvWaiter {
            handle: receiver.id,
            state: RecvState::Waiting,
            waker: Some(cx.waker().clone()),
        }));
        Poll::Pending
    }

    /// Gives up the stream's queue slot of `receiver`, which a `recv` or `try_recv` on the
    /// handle replaces: a value already handed to the stream is theirs (else it would wait,
    /// claimed, until the stream is polled again). A waiting slot is simply removed: the
    /// new receive queues at the back.
    fn take_stream_claim(&mut self, receiver: &Receiver<T>, wakes: &mut Wakes) -> Option<T> {
        let key = receiver.stream.take()?;
        if self.recv_waiters.remove(key).state != RecvState::Served {
            return None;
        }
        Some(self.take_claimed(wakes))
    }

    /// Takes the front value for a served waiter (already removed from the queue). The
    /// last claimed value taken after the last sender closed ends the stream for the
    /// receives that waited in case it was given back.
    fn take_claimed(&mut self, wakes: &mut Wakes) -> T {
        self.claimed -= 1;
        let value = self.buffer.pop_front().expect("a claimed value");
        self.end_stream_if_drained(wakes);
        value
    }

    /// Removes a receive waiter whose future is dropped; a served one gives up its claim.
    fn drop_recv_waiter(&mut self, key: usize, wakes: &mut Wakes) -> Option<T> {
        let waiter = self.recv_waiters.remove(key);
        if waiter.state == RecvState::Served {
            self.release_claim(wakes)
        } else {
            None
        }
    }

    /// Checks a send against the handle and the receivers, then offers it.
    fn try_send(
        &mut self,
        sender: &Sender<T>,
        value: T,
        wakes: &mut Wakes,
    ) -> Result<(), TrySendError<T>> {
        if sender.closed.get() {
            return Err(TrySendError::Closed(value));
        }
        if self.receivers == 0 {
            return Err(TrySendError::Disconnected(value));
        }
        self.offer(value, wakes).map_err(TrySendError::Full)
    }
}

/// Runs `f` on the state, then wakes what it asked to (after the borrow has ended).
#[inline]
fn with_state<T, R>(state: &Shared<T>, f: impl FnOnce(&mut State<T>, &mut Wakes) -> R) -> R {
    let mut wakes = Wakes::default();
    let out = f(&mut state.borrow_mut(), &mut wakes);
    if wakes.first.is_some() {
        wakes.wake(); // most operations wake nobody: keep that path to one test
    }
    out
}

// ---------------------------------------------------------------------------------------
// The wait queue.

/// "No link" in a [`WaitQueue`].
const NIL: usize = usize::MAX;

/// A FIFO of waiters in a slab: a doubly linked list, so that a waiter is added, served
/// (unlinked) or removed in O(1). An unlinked waiter keeps its slot until its future
/// removes it.
struct WaitQueue<W> {
    slots: Slab<Slot<W>>,
    head: usize,
    tail: usize,
    /// How many slots are linked.
    linked: usize,
}

struct Slot<W> {
    prev: usize,
    next: usize,
    /// Whether it is in the list (`prev`/`next` mean something).
    linked: bool,
    waiter: W,
}

impl<W> WaitQueue<W> {
    fn new() -> WaitQueue<W> {
        WaitQueue {
            slots: Slab::new(),
            head: NIL,
            tail: NIL,
            linked: 0,
        }
    }

    fn push_back(&mut self, waiter: W) -> usize {
        let key = self.slots.insert(Slot {
            prev: self.tail,
            next: NIL,
            linked: true,
            waiter,
        });
        match self.tail {
            NIL => self.head = key,
            tail => self.slots[tail].next = key,
        }
        self.tail = key;
        self.linked += 1;
        key
    }

    /// Unlinks the first waiter and returns its key (its slot stays).
    fn pop_front(&mut self) -> Option<usize> {
        let key = self.head;
        if key == NIL {
            return None;
        }
        self.unlink(key);
        Some(key)
    }

    fn unlink(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        if !slot.linked {
            return;
        }
        slot.linked = false;
        self.linked -= 1;
        let (prev, next) = (slot.prev, slot.next);
        match prev {
            NIL => self.head = next,
            prev => self.slots[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.slots[next].prev = prev,
        }
    }

    fn remove(&mut self, key: usize) -> W {
        self.unlink(key);
        self.slots.remove(key).waiter
    }

    fn get_mut(&mut self, key: usize) -> &mut W {
        &mut self.slots[key].waiter
    }

    /// The keys of the linked waiters that match, in order.
    fn linked_keys(&self, mut matches: impl FnMut(&W) -> bool) -> Vec<usize> {
        let mut keys = Vec::new();
        let mut key = self.head;
        while key != NIL {
            let slot = &self.slots[key];
            if matches(&slot.waiter) {
                keys.push(key);
            }
            key = slot.next;
        }
        keys
    }

    fn is_empty_list(&self) -> bool {
        self.head == NIL
    }

    fn linked_len(&self) -> usize {
        self.linked
    }
}

// ---------------------------------------------------------------------------------------
// The send side.

/// The sending handle of a [`channel`] (Trio's `MemorySendChannel`).
///
/// Clone it for several producers: each clone is a handle of its own. Closing is per
/// handle, as in Trio: [`close`](Sender::close) (or dropping the handle) closes this one;
/// the channel's send side closes when every handle is closed or dropped, and receivers
/// then see end-of-stream after the buffered values. A clone of a closed handle is closed
/// too (it does not count as a sender).
///
/// `!Send`: it belongs to the thread that created the channel.
///
/// # Examples
///
/// ```
/// trellis::Builder::new().autojump().run(async {
///     let (tx, rx) = trellis::channel::<&str>(4);
///     let tx2 = tx.clone();
///     tx.try_send("from the first").unwrap();
///     tx2.try_send("from the clone").unwrap();
///     drop(tx);
///     drop(tx2); // the last sender: the stream ends after what is buffered
///     assert_eq!(rx.recv().await, Ok("from the first"));
///     assert_eq!(rx.recv().await, Ok("from the clone"));
///     assert_eq!(rx.recv().await, Err(trellis::RecvError::Disconnected));
/// });
/// ```
pub struct Sender<T> {
    state: Shared<T>,
    /// This handle's identity among the channel's handles.
    id: u64,
    /// Whether this handle is closed (it no longer counts in `State::senders`).
    closed: Cell<bool>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the buffer is full (on a rendezvous channel, until a
    /// receiver takes it).
    ///
    /// A send completes at once, without suspending, when a receiver is waiting or the
    /// buffer has room; waiting sends are served in the order they started waiting.
    ///
    /// # Errors
    ///
    /// The value comes back in the error: [`SendError::Closed`] when this handle is
    /// closed (also while the send waits), [`SendError::Disconnected`] when every receiver
    /// is gone (also while it waits).
    ///
    /// # Cancellation
    ///
    /// Dropping the future before a receiver took the value drops the value with it: it is
    /// not delivered, nobody receives it. Once the value was taken (moved into the buffer
    /// or handed to a receiver) the send is delivered, even if the future is dropped before
    /// it is polled again. A send first polled in a cancelled scope does nothing. Use
    /// [`try_send`](Sender::try_send) to keep a value that cannot be sent at once.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::Builder::new().autojump().run(async {
    ///     let (tx, rx) = trellis::channel(0); // a rendezvous
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             tx.send("hello").await.unwrap(); // returns once it was received
    ///         });
    ///         assert_eq!(rx.recv().await, Ok("hello"));
    ///     })
    ///     .await
    ///     .unwrap();
    ///     drop(rx);
    ///     let error = tx.send("nobody listens").await.unwrap_err();
    ///     assert_eq!(error.into_inner(), "nobody listens");
    /// });
    /// ```
    pub fn send(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            value: Some(value),
            waiter: None,
            done: false,
        }
    }

    /// Sends `value` if that is possible without waiting: a receiver is waiting, or the
    /// buffer has room.
    ///
    /// A waiting receiver is given the value even if it has not run yet (it owns it: a
    /// `try_recv` in between does not see it), and a value cannot take room that a
    /// waiting send is owed.
    ///
    /// # Errors
    ///
    /// The value comes back in the error: [`TrySendError::Full`] when it would have to
    /// wait, [`TrySendError::Closed`] when this handle is closed,
    /// [`TrySendError::Disconnected`] when every receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::TrySendError;
    ///
    /// let (tx, rx) = trellis::channel(1);
    /// assert!(tx.try_send(1).is_ok());
    /// assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
    /// drop(rx);
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Disconnected(3))));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        with_state(&self.state, |state, wakes| {
            state.try_send(self, value, wakes)
        })
    }

    /// Closes this handle (Trio's `MemorySendChannel.close`; not a checkpoint).
    ///
    /// Sends waiting on this handle fail with [`SendError::Closed`], returning their
    /// values, and later sends on it fail the same way. Other clones are not affected.
    /// When this was the last open send handle, receivers take what is buffered, then see
    /// end-of-stream. Closing a closed handle does nothing; dropping a handle closes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{RecvError, TrySendError};
    ///
    /// let (tx, rx) = trellis::channel(2);
    /// let other = tx.clone();
    /// tx.try_send("before").unwrap();
    /// tx.close();
    /// assert!(matches!(tx.try_send("after"), Err(TrySendError::Closed("after"))));
    /// other.try_send("from the clone").unwrap(); // still open
    /// other.close(); // the last one
    /// assert_eq!(rx.try_recv(), Ok("before"));
    /// assert_eq!(rx.try_recv(), Ok("from the clone"));
    /// assert_eq!(rx.try_recv(), Err(trellis::TryRecvError::Disconnected));
    /// ```
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        with_state(&self.state, |state, wakes| {
            state.close_sender(self.id, wakes)
        });
    }

    /// The number of values the channel buffers before a send waits (as given to
    /// [`channel`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::<u8>(16);
    /// assert_eq!(tx.capacity(), 16);
    /// ```
    pub fn capacity(&self) -> usize {
        self.state.borrow().capacity
    }

    /// The channel's counters now (Trio's `statistics()`); the same from every handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::<u8>(2);
    /// tx.try_send(1).unwrap();
    /// let other = tx.clone();
    /// let stats = tx.statistics();
    /// assert_eq!((stats.buffered, stats.capacity), (1, 2));
    /// assert_eq!((stats.open_senders, stats.open_receivers), (2, 1));
    /// assert_eq!(stats, rx.statistics());
    /// # drop(other);
    /// ```
    pub fn statistics(&self) -> ChannelStatistics {
        self.state.borrow().statistics()
    }
}

impl<T> Clone for Sender<T> {
    /// Another handle on the same channel; a clone of a closed handle is closed.
    fn clone(&self) -> Sender<T> {
        let closed = self.closed.get();
        let mut state = self.state.borrow_mut();
        if !closed {
            state.senders += 1;
        }
        let id = state.new_handle();
        drop(state);
        Sender {
            state: self.state.clone(),
            id,
            closed: Cell::new(closed),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.closed.get())
            .field("channel", &self.statistics())
            .finish()
    }
}

/// The future of [`Sender::send`].
///
/// # Cancellation
///
/// Dropping it before a receiver took the value drops the value with it (not delivered);
/// once the value was taken, the send is delivered whether or not the future is polled
/// again. See [`Sender::send`].
#[must_use = "a send does nothing unless awaited"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    /// The value, until the first poll places it or queues it.
    value: Option<T>,
    /// The queue slot, while it waits.
    waiter: Option<usize>,
    /// It has returned `Ready` (for `FusedFuture`).
    done: bool,
}

// The value is never pinned: it is moved into the channel, never polled.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let out = with_state(&this.sender.state, |state, wakes| {
            if let Some(key) = this.waiter {
                let waiter = state.send_waiters.get_mut(key);
                if let SendState::Waiting(_) = waiter.state {
                    match &mut waiter.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
                this.waiter = None;
                return Poll::Ready(match state.send_waiters.remove(key).state {
                    SendState::Delivered => Ok(()),
                    SendState::Closed(value) => Err(SendError::Closed(value)),
                    SendState::Disconnected(value) => Err(SendError::Disconnected(value)),
                    SendState::Waiting(_) => unreachable!("checked above"),
                });
            }
            let value = this
                .value
                .take()
                .expect("a `SendFuture` polled after it completed");
            if current_is_cancelled() {
                // Trio's `checkpoint_if_cancelled`: the caller is dropped at this
                // suspension, having sent nothing (the value is dropped with the future).
                this.value = Some(value);
                return Poll::Pending;
            }
            match state.try_send(this.sender, value, wakes) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Full(value)) => {
                    this.waiter = Some(state.send_waiters.push_back(SendWaiter {
                        handle: this.sender.id,
                        state: SendState::Waiting(value),
                        waker: Some(cx.waker().clone()),
                    }));
                    Poll::Pending
                }
                Err(TrySendError::Closed(value)) => Poll::Ready(Err(SendError::Closed(value))),
                Err(TrySendError::Disconnected(value)) => {
                    Poll::Ready(Err(SendError::Disconnected(value)))
                }
            }
        });
        if out.is_ready() {
            this.done = true;
        }
        out
    }
}

impl<T> FusedFuture for SendFuture<'_, T> {
    /// True once the send has completed (delivered or failed).
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.waiter.take() {
            // The value (if still queued) is dropped after the borrow ends: its destructor
            // may use this channel.
            let waiter = self.sender.state.borrow_mut().send_waiters.remove(key);
            drop(waiter);
        }
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("waiting", &self.waiter.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// The receive side.

/// The receiving handle of a [`channel`] (Trio's `MemoryReceiveChannel`); also a
/// [`Stream`] of the values, which ends at end-of-stream or when this handle is closed.
///
/// Clone it for several consumers: each value goes to one of them (not to all), waiting
/// receivers served first come, first served. Closing is per handle, as in Trio:
/// [`close`](Receiver::close) (or dropping it) closes this one; once every receive handle
/// is closed or dropped, the buffered values are dropped and sends fail, returning their
/// values. A clone of a closed handle is closed too.
///
/// `!Send`: it belongs to the thread that created the channel.
///
/// # Examples
///
/// With the `futures-core` crate's `Stream` trait (add it, or use `futures`'
/// `StreamExt::next`):
///
/// ```
/// use futures_core::Stream;
/// use std::pin::Pin;
///
/// trellis::Builder::new().autojump().run(async {
///     let (tx, mut rx) = trellis::channel(8);
///     for i in 1..=3 {
///         tx.try_send(i).unwrap();
///     }
///     drop(tx);
///     let mut all = Vec::new();
///     // `futures::StreamExt::next` is this poll_fn:
///     while let Some(i) = std::future::poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
///         all.push(i);
///     }
///     assert_eq!(all, [1, 2, 3]); // it ended at end-of-stream
/// });
/// ```
pub struct Receiver<T> {
    state: Shared<T>,
    /// This handle's identity among the channel's handles.
    id: u64,
    /// Whether this handle is closed (it no longer counts in `State::receivers`).
    closed: Cell<bool>,
    /// The queue slot of the stream's pending `poll_next` (given up, and a value handed
    /// to it taken, by the next `recv` or `try_recv` on this handle).
    stream: Cell<Option<usize>>,
    /// The stream has returned `None` (for `FusedStream`).
    stream_done: bool,
}

impl<T> Receiver<T> {
    /// Receives the next value, waiting until one is sent.
    ///
    /// Completes at once, without suspending, when a value is buffered (or, on a
    /// rendezvous channel, a send is waiting). Waiting receives are served in the order
    /// they started waiting; a value sent while one waits belongs to it.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] (end-of-stream) when every sender is gone and nothing is
    /// buffered; [`RecvError::Closed`] when this handle is closed (also while it waits).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropping the future takes nothing from the channel. A value handed to
    /// it before it was dropped (it was woken, but not polled again) goes to the next
    /// waiting receiver, or stays in the buffer for the next receive.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let (tx, rx) = trellis::channel(1);
    ///     // A receive cut off by a timeout takes nothing.
    ///     assert_eq!(trellis::move_on_after(Duration::from_secs(1), rx.recv()).await, None);
    ///     tx.send(7).await.unwrap();
    ///     assert_eq!(rx.recv().await, Ok(7));
    /// });
    /// ```
    pub fn recv(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            waiter: None,
            done: false,
        }
    }

    /// Receives a value if one is there without waiting.
    ///
    /// A value already promised to a waiting receiver (sent while it waited, before it
    /// ran) is not there for `try_recv`.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when it would have to wait, [`TryRecvError::Disconnected`]
    /// when every sender is gone and nothing is buffered, [`TryRecvError::Closed`] when
    /// this handle is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::TryRecvError;
    ///
    /// let (tx, rx) = trellis::channel(1);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.try_send('a').unwrap();
    /// assert_eq!(rx.try_recv(), Ok('a'));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        with_state(&self.state, |state, wakes| {
            if let Some(value) = state.take_stream_claim(self, wakes) {
                return Ok(value);
            }
            if self.closed.get() {
                return Err(TryRecvError::Closed);
            }
            match state.take(wakes) {
                Some(value) => Ok(value),
                // A claimed value may yet be given back (see the module docs).
                None if state.senders == 0 && state.buffer.is_empty() => {
                    Err(TryRecvError::Disconnected)
                }
                None => Err(TryRecvError::Empty),
            }
        })
    }

    /// Closes this handle (Trio's `MemoryReceiveChannel.close`; not a checkpoint).
    ///
    /// Receives waiting on this handle fail with [`RecvError::Closed`] (one that was
    /// already handed a value still gets it), and later receives on it fail the same way;
    /// its stream ends (after the value handed to a pending `poll_next`, if one was: the
    /// stream's next item is that value, then `None`). Other clones are not affected. When this was the last open
    /// receive handle, the buffered values are dropped and every send, waiting or later,
    /// fails with [`SendError::Disconnected`], returning its value. Closing a closed handle
    /// does nothing; dropping a handle closes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{TryRecvError, TrySendError};
    ///
    /// let (tx, rx) = trellis::channel(4);
    /// let other = rx.clone();
    /// rx.close();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// tx.try_send(1).unwrap(); // `other` still receives
    /// assert_eq!(other.try_recv(), Ok(1));
    /// other.close();
    /// assert!(matches!(tx.try_send(2), Err(TrySendError::Disconnected(2))));
    /// ```
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let dropped = with_state(&self.state, |state, wakes| {
            state.close_receiver(self.id, wakes)
        });
        drop(dropped); // after the borrow: a value's destructor may use this channel
    }

    /// The number of values the channel buffers before a send waits (as given to
    /// [`channel`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = trellis::channel::<u8>(0);
    /// assert_eq!(rx.capacity(), 0);
    /// ```
    pub fn capacity(&self) -> usize {
        self.state.borrow().capacity
    }

    /// The channel's counters now (Trio's `statistics()`); the same from every handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let (_tx, rx) = trellis::channel::<u8>(0);
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             let _ = trellis::move_on_after(Duration::from_secs(1), rx.recv()).await;
    ///         });
    ///         trellis::sleep(Duration::from_millis(1)).await;
    ///         assert_eq!(rx.statistics().waiting_receivers, 1);
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(rx.statistics().waiting_receivers, 0, "the timed-out receive left");
    /// });
    /// ```
    pub fn statistics(&self) -> ChannelStatistics {
        self.state.borrow().statistics()
    }

    /// Removes a queued receive (its future or the stream was dropped).
    fn drop_waiter(&self, key: usize) {
        let dropped = with_state(&self.state, |state, wakes| {
            state.drop_recv_waiter(key, wakes)
        });
        drop(dropped);
    }
}

impl<T> Clone for Receiver<T> {
    /// Another handle on the same channel (its own stream); a clone of a closed handle is
    /// closed.
    fn clone(&self) -> Receiver<T> {
        let closed = self.closed.get();
        let mut state = self.state.borrow_mut();
        if !closed {
            state.receivers += 1;
        }
        let id = state.new_handle();
        drop(state);
        Receiver {
            state: self.state.clone(),
            id,
            closed: Cell::new(closed),
            stream: Cell::new(None),
            stream_done: closed,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(key) = self.stream.take() {
            self.drop_waiter(key);
        }
        self.close();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("closed", &self.closed.get())
            .field("channel", &self.statistics())
            .finish()
    }
}

/// The values, in order; the stream ends at end-of-stream (every sender gone, the buffer
/// drained) or when this handle is closed.
///
/// # Cancellation
///
/// A `poll_next` that returned `Pending` (say in a `select!` whose other branch won)
/// keeps its place in the queue until the next `poll_next`, a [`recv`](Receiver::recv) or
/// [`try_recv`](Receiver::try_recv) on this handle (which get a value handed to it in
/// the meantime), or the drop of the receiver, which loses nothing: a value handed to it
/// goes to the next waiting receiver, or stays buffered, as with [`Receiver::recv`].
impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if this.stream_done {
            return Poll::Ready(None);
        }
        let state = this.state.clone();
        let mut waiter = this.stream.take();
        let out = with_state(&state, |state, wakes| {
            state.poll_recv(this, &mut waiter, cx, wakes)
        });
        this.stream.set(waiter);
        match out {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(value)) => Poll::Ready(Some(value)),
            Poll::Ready(Err(_)) => {
                this.stream_done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl<T> FusedStream for Receiver<T> {
    /// True once the stream has returned `None`.
    fn is_terminated(&self) -> bool {
        self.stream_done
    }
}

/// The future of [`Receiver::recv`].
///
/// # Cancellation
///
/// Cancel-safe: dropping it takes nothing from the channel; a value already handed to it
/// goes to the next waiting receiver or back into the buffer. See [`Receiver::recv`].
#[must_use = "a receive does nothing unless awaited"]
pub struct RecvFuture<'a, T> {
    receiver: &'a Receiver<T>,
    /// The queue slot, while it waits (or holds a claim).
    waiter: Option<usize>,
    /// It has returned `Ready` (for `FusedFuture`).
    done: bool,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let receiver = this.receiver;
        let out = with_state(&receiver.state, |state, wakes| {
            state.poll_recv(receiver, &mut this.waiter, cx, wakes)
        });
        if out.is_ready() {
            this.done = true;
        }
        out
    }
}

impl<T> FusedFuture for RecvFuture<'_, T> {
    /// True once the receive has completed (with a value or an error).
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.waiter.take() {
            self.receiver.drop_waiter(key);
        }
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("waiting", &self.waiter.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A channel's counters at one moment, from [`Sender::statistics`] or
/// [`Receiver::statistics`] (Trio's `MemoryChannelStatistics`).
///
/// # Examples
///
/// ```
/// let (tx, rx) = trellis::channel::<u8>(4);
/// drop(rx);
/// let stats = tx.statistics();
/// assert_eq!(stats.open_receivers, 0);
/// assert_eq!(stats.waiting_senders, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStatistics {
    /// Values in the buffer (Trio's `current_buffer_used`), including values already
    /// handed to a waiting receive that has not run yet.
    pub buffered: usize,
    /// The capacity given to [`channel`] (Trio's `max_buffer_size`).
    pub capacity: usize,
    /// Open send handles (Trio's `open_send_channels`).
    pub open_senders: usize,
    /// Open receive handles (Trio's `open_receive_channels`).
    pub open_receivers: usize,
    /// Sends waiting for room or a receiver, over every handle (Trio's
    /// `tasks_waiting_send`).
    pub waiting_senders: usize,
    /// Receives waiting for a value, over every handle, a stream's pending `poll_next`
    /// included (Trio's `tasks_waiting_receive`).
    pub waiting_receivers: usize,
}

// ---------------------------------------------------------------------------------------
// Errors.

/// Why [`Sender::send`] failed; the value comes back ([`into_inner`](SendError::into_inner)).
///
/// Its `Debug` does not show the value (and so needs no `T: Debug`).
///
/// # Examples
///
/// ```
/// use trellis::SendError;
///
/// trellis::Builder::new().autojump().run(async {
///     let (tx, rx) = trellis::channel(1);
///     drop(rx);
///     match tx.send(String::from("report")).await {
///         Err(SendError::Disconnected(value)) => assert_eq!(value, "report"),
///         other => panic!("{other:?}"),
///     }
/// });
/// ```
#[non_exhaustive]
pub enum SendError<T> {
    /// Every receive handle is closed or dropped (Trio's `BrokenResourceError`).
    Disconnected(T),
    /// This send handle was closed (Trio's `ClosedResourceError`).
    Closed(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// # Examples
    ///
    /// ```
    /// trellis::Builder::new().autojump().run(async {
    ///     let (tx, _rx) = trellis::channel(1);
    ///     tx.close();
    ///     let error = tx.send(vec![1, 2]).await.unwrap_err();
    ///     assert_eq!(error.to_string(), "sending on a closed sender");
    ///     assert_eq!(error.into_inner(), [1, 2]);
    /// });
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(value) | SendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => {
                f.write_str("sending on a channel whose receivers are all closed")
            }
            SendError::Closed(_) => f.write_str("sending on a closed sender"),
        }
    }
}

impl<T> Error for SendError<T> {}

/// Why [`Sender::try_send`] failed; the value comes back
/// ([`into_inner`](TrySendError::into_inner)).
///
/// Its `Debug` does not show the value (and so needs no `T: Debug`).
///
/// # Examples
///
/// ```
/// use trellis::TrySendError;
///
/// let (tx, _rx) = trellis::channel(0);
/// let error = tx.try_send(5).unwrap_err(); // nobody is receiving
/// assert!(matches!(error, TrySendError::Full(5)));
/// assert_eq!(error.to_string(), "sending on a full channel");
/// ```
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The send would have to wait: the buffer is full (or, on a rendezvous channel, no
    /// receiver is waiting). Trio's `WouldBlock`.
    Full(T),
    /// Every receive handle is closed or dropped (Trio's `BrokenResourceError`).
    Disconnected(T),
    /// This send handle was closed (Trio's `ClosedResourceError`).
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel(0);
    /// assert_eq!(tx.try_send("kept").unwrap_err().into_inner(), "kept");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value)
            | TrySendError::Disconnected(value)
            | TrySendError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Disconnected(_) => {
                f.write_str("sending on a channel whose receivers are all closed")
            }
            TrySendError::Closed(_) => f.write_str("sending on a closed sender"),
        }
    }
}

impl<T> Error for TrySendError<T> {}

/// Why [`Receiver::recv`] gave no value.
///
/// # Examples
///
/// ```
/// use trellis::RecvError;
///
/// trellis::Builder::new().autojump().run(async {
///     let (tx, rx) = trellis::channel::<u8>(1);
///     drop(tx);
///     let end = rx.recv().await.unwrap_err();
///     assert_eq!(end, RecvError::Disconnected);
///     assert_eq!(end.to_string(), "receiving on a channel whose senders are all closed");
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// End-of-stream: every send handle is closed or dropped and nothing is buffered
    /// (Trio's `EndOfChannel`).
    Disconnected,
    /// This receive handle was closed (Trio's `ClosedResourceError`).
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => {
                f.write_str("receiving on a channel whose senders are all closed")
            }
            RecvError::Closed => f.write_str("receiving on a closed receiver"),
        }
    }
}

impl Error for RecvError {}

/// Why [`Receiver::try_recv`] gave no value.
///
/// # Examples
///
/// ```
/// use trellis::TryRecvError;
///
/// let (_tx, rx) = trellis::channel::<u8>(1);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// assert_eq!(TryRecvError::Empty.to_string(), "receiving on an empty channel");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing to receive yet (Trio's `WouldBlock`).
    Empty,
    /// End-of-stream: every send handle is closed or dropped and nothing is buffered
    /// (Trio's `EndOfChannel`).
    Disconnected,
    /// This receive handle was closed (Trio's `ClosedResourceError`).
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => {
                f.write_str("receiving on a channel whose senders are all closed")
            }
            TryRecvError::Closed => f.write_str("receiving on a closed receiver"),
        }
    }
}

impl Error for TryRecvError {}
