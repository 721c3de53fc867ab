//! Adversarial programs against the promises of the memory channels
//! (`runtime/sync/channel.rs`: `channel`, `Sender`, `Receiver`, the `Stream` impl, the
//! errors) and of trellis futures combined with the `futures` ecosystem (`FusedFuture` /
//! `FusedStream`, `select!`, `select_biased!`, `future::select`, `join!`, `StreamExt`,
//! `FuturesUnordered`).
//!
//! Each test names, in its doc comment, the documented promise it tries to break. The
//! shapes: storms of numbered values with sends and receives cancelled at random points
//! (a seeded xorshift PRNG, under several `Builder::shuffle_seed` seeds), with every value
//! accounted for exactly once (received, given back in an error, or dropped with a send
//! that was cancelled before it was taken); FIFO service checked against a model; hard
//! drops of waiters that were handed a value (polled with a waker of our own, then
//! dropped); receivers moved between tasks; values whose destructors panic or re-enter
//! the channel; and `select!` loops whose other branch wins in the instant a value
//! arrives.
//!
//! Time is virtual (autojump) everywhere, and everything that could hang runs under the
//! watchdog.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::{Either, FusedFuture};
use futures::stream::{FusedStream, FuturesUnordered, Stream, StreamExt};
use futures::{join, select, select_biased};

use common::{PanicOnDrop, Rng, ms, panic_message, shuffled_test, virtual_test};
use trellis::{
    CancelScope, Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, channel,
    move_on_after, nursery, sleep,
};

/// Trio's `wait_all_tasks_blocked()` on the autojump clock: a sleep ends only once every
/// other task is blocked.
async fn settle() {
    sleep(ms(1)).await;
}

/// How a value ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// A receiver took it.
    Received,
    /// A failed send gave it back.
    Returned,
    /// Dropped anywhere else (with a cancelled send, with the buffer).
    Dropped,
}

/// A numbered value that records how it ended.
struct Item {
    id: u32,
    end: End,
    log: Rc<RefCell<Vec<(u32, End)>>>,
}

impl Item {
    fn receive(mut self) -> u32 {
        self.end = End::Received;
        self.id
    }

    fn give_back(mut self) -> u32 {
        self.end = End::Returned;
        self.id
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.log.borrow_mut().push((self.id, self.end));
    }
}

/// The ends of every `Item` made from it.
#[derive(Clone, Default)]
struct Ledger {
    log: Rc<RefCell<Vec<(u32, End)>>>,
}

impl Ledger {
    fn item(&self, id: u32) -> Item {
        Item {
            id,
            end: End::Dropped,
            log: self.log.clone(),
        }
    }

    /// Every id in `0..total` ended exactly once; its end.
    fn each_ended_once(&self, total: u32) -> BTreeMap<u32, End> {
        let mut ends: BTreeMap<u32, Vec<End>> = BTreeMap::new();
        for &(id, end) in self.log.borrow().iter() {
            ends.entry(id).or_default().push(end);
        }
        let mut once = BTreeMap::new();
        for id in 0..total {
            match ends.remove(&id).as_deref() {
                Some([end]) => {
                    once.insert(id, *end);
                }
                None => panic!("value {id} never ended: lost inside the channel"),
                Some(more) => panic!("value {id} ended {} times: {more:?}", more.len()),
            }
        }
        assert!(ends.is_empty(), "unexpected values ended: {ends:?}");
        once
    }

    fn ended(&self, id: u32) -> Vec<End> {
        let log = self.log.borrow();
        log.iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, e)| *e)
            .collect()
    }
}

/// Records whether it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn new() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        (flag, waker)
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// Polls `fut` once with `waker` (not the task's): the task is not woken for it.
fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Polls a stream once with `waker`.
fn poll_next_with<S: Stream + Unpin>(stream: &mut S, waker: &Waker) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------------------
// Storms: exact accounting under random cancellation

/// What one storm saw.
#[derive(Default, Debug)]
struct StormReport {
    /// Sends cancelled (timeout, `select!`, hard drop) whose value was received anyway.
    cancelled_but_received: usize,
    /// Sends cancelled before their value was taken (the value was dropped).
    cancelled_and_dropped: usize,
    /// Values given back by `try_send` (`Full`) or by a send whose handle closed.
    returned: usize,
    /// Hard-dropped receives that had been handed a value before the drop.
    handed_then_dropped: usize,
    /// Values received.
    received: usize,
}

/// Three producers on clones of one sender, `consumers` consumers on clones of one
/// receiver, each operation chosen by the PRNG: `try_send`, `send` under a timeout, in a
/// `select!` against a sleep, hard-dropped after a poll, on a clone closed while it waits;
/// `recv` under a timeout, in `select!` / `select_biased!`, hard-dropped after it may
/// have been handed a value, `try_recv`, the stream in a `select!`. Checks that every value
/// ended exactly once, as its send reported, and (with one consumer) that each
/// producer's values arrived in order.
fn storm(seed: u64, capacity: usize, consumers: u64) -> StormReport {
    const PRODUCERS: u32 = 3;
    const PER: u32 = 250;
    shuffled_test(seed, async move || {
        let ledger = Ledger::default();
        let ok = RefCell::new(Vec::new());
        let returned = RefCell::new(Vec::new());
        let uncertain = RefCell::new(Vec::new());
        let got = RefCell::new(Vec::new());
        let handed_then_dropped = Cell::new(0);
        let (tx, rx) = channel::<Item>(capacity);
        nursery(async |n| {
            for p in 0..PRODUCERS {
                let tx = tx.clone();
                let (ledger, ok, returned, uncertain) = (&ledger, &ok, &returned, &uncertain);
                n.spawn(async move {
                    let mut rng = Rng::new(seed * 1000 + u64::from(p));
                    for k in 0..PER {
                        let id = p * PER + k;
                        let item = ledger.item(id);
                        match rng.below(8) {
                            0 => match tx.try_send(item) {
                                Ok(()) => ok.borrow_mut().push(id),
                                Err(TrySendError::Full(v)) => {
                                    returned.borrow_mut().push(v.give_back())
                                }
                                Err(e) => panic!("a receiver is open: {e:?}"),
                            },
                            1 => {
                                // Hard drop: poll with a waker of our own, sit, drop.
                                let (flag, waker) = Flag::new();
                                let mut send = tx.send(item);
                                match poll_with(Pin::new(&mut send), &waker) {
                                    Poll::Ready(r) => {
                                        r.unwrap_or_else(|e| panic!("{e:?}"));
                                        ok.borrow_mut().push(id);
                                    }
                                    Poll::Pending => {
                                        sleep(ms(rng.below(3))).await;
                                        let _ = flag.take();
                                        uncertain.borrow_mut().push(id);
                                        drop(send);
                                    }
                                }
                            }
                            2 | 3 => match move_on_after(ms(rng.below(4)), tx.send(item)).await {
                                Some(Ok(())) => ok.borrow_mut().push(id),
                                Some(Err(e)) => panic!("a receiver is open: {e:?}"),
                                None => uncertain.borrow_mut().push(id),
                            },
                            4 => {
                                let nap = rng.below(3);
                                select! {
                                    r = tx.send(item) => {
                                        r.unwrap_or_else(|e| panic!("{e:?}"));
                                        ok.borrow_mut().push(id);
                                    }
                                    () = sleep(ms(nap)) => uncertain.borrow_mut().push(id),
                                }
                            }
                            5 => {
                                // A clone of our own, closed while its send may wait.
                                let clone = tx.clone();
                                let nap = rng.below(3);
                                let (r, ()) = join!(clone.send(item), async {
                                    sleep(ms(nap)).await;
                                    clone.close();
                                });
                                match r {
                                    Ok(()) => ok.borrow_mut().push(id),
                                    Err(SendError::Closed(v)) => {
                                        returned.borrow_mut().push(v.give_back())
                                    }
                                    Err(e) => panic!("a receiver is open: {e:?}"),
                                }
                            }
                            _ => {
                                tx.send(item).await.unwrap_or_else(|e| panic!("{e:?}"));
                                ok.borrow_mut().push(id);
                            }
                        }
                        if rng.below(2) == 0 {
                            sleep(ms(rng.below(3))).await;
                        }
                    }
                });
            }
            drop(tx);
            for c in 0..consumers {
                let mut rx = rx.clone();
                let (got, handed_then_dropped) = (&got, &handed_then_dropped);
                n.spawn(async move {
                    let mut rng = Rng::new(seed * 7919 + c + 100);
                    // Records a receive's outcome; true at end-of-stream.
                    let take = |r: Result<Item, RecvError>| match r {
                        Ok(item) => {
                            got.borrow_mut().push(item.receive());
                            false
                        }
                        Err(e) => {
                            assert_eq!(e, RecvError::Disconnected);
                            true
                        }
                    };
                    loop {
                        let ended = match rng.below(8) {
                            0 => match move_on_after(ms(rng.below(4)), rx.recv()).await {
                                Some(r) => take(r),
                                None => false,
                            },
                            1 => {
                                let (flag, waker) = Flag::new();
                                let mut recv = rx.recv();
                                match poll_with(Pin::new(&mut recv), &waker) {
                                    Poll::Ready(r) => take(r),
                                    Poll::Pending => {
                                        sleep(ms(rng.below(3))).await;
                                        if rng.below(2) == 0 {
                                            if flag.take() {
                                                handed_then_dropped
                                                    .set(handed_then_dropped.get() + 1);
                                            }
                                            drop(recv);
                                            false
                                        } else {
                                            take(recv.await)
                                        }
                                    }
                                }
                            }
                            2 => {
                                let nap = rng.below(3);
                                select! {
                                    r = rx.recv() => take(r),
                                    () = sleep(ms(nap)) => false,
                                }
                            }
                            3 => {
                                let nap = rng.below(3);
                                select_biased! {
                                    () = sleep(ms(nap)) => false,
                                    r = rx.recv() => take(r),
                                }
                            }
                            4 => match rx.try_recv() {
                                Ok(item) => {
                                    got.borrow_mut().push(item.receive());
                                    false
                                }
                                Err(TryRecvError::Empty) => {
                                    sleep(ms(1)).await;
                                    false
                                }
                                Err(TryRecvError::Disconnected) => true,
                                Err(e) => panic!("the handle is open: {e:?}"),
                            },
                            5 => {
                                let nap = rng.below(3);
                                select! {
                                    v = rx.next() => match v {
                                        Some(item) => {
                                            got.borrow_mut().push(item.receive());
                                            false
                                        }
                                        None => true,
                                    },
                                    () = sleep(ms(nap)) => false,
                                }
                            }
                            _ => take(rx.recv().await),
                        };
                        if ended {
                            break;
                        }
                        if rng.below(3) == 0 {
                            sleep(ms(rng.below(2))).await;
                        }
                    }
                });
            }
        })
        .await
        .unwrap();
        let stats = rx.statistics();
        assert_eq!(
            (
                stats.buffered,
                stats.waiting_senders,
                stats.waiting_receivers,
                stats.open_senders
            ),
            (0, 0, 0, 0),
            "seed {seed}, capacity {capacity}: every consumer saw end-of-stream, so nothing \
             may be left in the channel"
        );
        drop(rx);
        let ends = ledger.each_ended_once(PRODUCERS * PER);
        let (ok, returned, uncertain) = (
            ok.into_inner(),
            returned.into_inner(),
            uncertain.into_inner(),
        );
        let got = got.into_inner();
        let mut report = StormReport {
            returned: returned.len(),
            handed_then_dropped: handed_then_dropped.get(),
            received: got.len(),
            ..StormReport::default()
        };
        for id in &ok {
            assert_eq!(
                ends[id],
                End::Received,
                "seed {seed}: {id} was sent Ok but {:?}",
                ends[id]
            );
        }
        for id in &returned {
            assert_eq!(ends[id], End::Returned, "seed {seed}: {id}");
        }
        for id in &uncertain {
            match ends[id] {
                End::Received => report.cancelled_but_received += 1,
                End::Dropped => report.cancelled_and_dropped += 1,
                End::Returned => panic!("seed {seed}: {id} came back from a cancelled send"),
            }
        }
        assert_eq!(
            ok.len() + returned.len() + uncertain.len(),
            (PRODUCERS * PER) as usize,
            "every send was recorded once"
        );
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            got.len(),
            "seed {seed}: a value was received twice"
        );
        let received: Vec<u32> = ends
            .iter()
            .filter(|(_, e)| **e == End::Received)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            sorted, received,
            "seed {seed}: the receivers' log and the ledger differ"
        );
        if consumers == 1 {
            for p in 0..PRODUCERS {
                let mine: Vec<u32> = got.iter().copied().filter(|id| id / PER == p).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "seed {seed}, capacity {capacity}: producer {p}'s values out of order: {mine:?}"
                );
            }
        }
        report
    })
}

/// Runs the storm over capacities and seeds, and checks that the paths under attack ran.
fn storms(consumers: u64) {
    let mut all = StormReport::default();
    for capacity in [0, 1, 3] {
        for seed in 1..=4 {
            let r = storm(seed, capacity, consumers);
            all.cancelled_but_received += r.cancelled_but_received;
            all.cancelled_and_dropped += r.cancelled_and_dropped;
            all.returned += r.returned;
            all.handed_then_dropped += r.handed_then_dropped;
            all.received += r.received;
        }
    }
    assert!(
        all.cancelled_but_received > 0
            && all.cancelled_and_dropped > 0
            && all.returned > 0
            && all.handed_then_dropped > 0,
        "a path was never exercised: {all:?}"
    );
}

/// Attacks the `channel` docs' `# Cancellation` ("a send or receive that is cancelled
/// before it completes does nothing ... nothing is lost"), `Sender::send` ("once the value
/// was taken ... the send is delivered"), `SendError` ("the value comes back") and the
/// end-of-stream rule (receivers "take what is buffered, then see end-of-stream"): with
/// three consumers, thousands of randomly cancelled operations under shuffled schedules;
/// every numbered value is received exactly once, returned in an error, or dropped with a
/// send cancelled before it was taken, and nothing is left when the consumers stop.
#[test]
fn a_storm_of_random_cancellations_loses_and_duplicates_no_value() {
    storms(3);
}

/// Attacks "Values arrive in the order they were sent" (`channel` docs) together with the
/// accounting above: a single consumer mixing every kind of receive (claims given back by
/// hard drops and lost `select!` branches included) sees each producer's values in order.
#[test]
fn a_single_consumer_under_random_cancellation_sees_each_producers_values_in_order() {
    storms(1);
}

// ---------------------------------------------------------------------------------------
// FIFO service of waiters under cancellation

/// Attacks "waiting senders ... are served first come, first served" (`channel` docs) and
/// `Sender::send` `# Cancellation`: twenty-four sends queue in order on a full channel;
/// random ones are cancelled between receives (some after their value was already taken);
/// the values arrive exactly as a FIFO model predicts, and only the sends cancelled while
/// still waiting drop their values.
#[test]
fn waiting_senders_cancelled_at_random_are_served_in_queue_order() {
    for seed in 0..4u64 {
        virtual_test(async move || {
            const N: u32 = 24;
            let ledger = Ledger::default();
            let (tx, rx) = channel::<Item>(1);
            tx.try_send(ledger.item(N)).unwrap(); // fills the buffer
            let scopes: Vec<CancelScope> = (0..N).map(|_| CancelScope::new()).collect();
            let (got, expected) = nursery(async |n| {
                for (i, scope) in (0..N).zip(&scopes) {
                    let (tx, ledger, scope) = (&tx, &ledger, scope.clone());
                    n.spawn(async move {
                        scope
                            .run(async {
                                sleep(ms(u64::from(i))).await; // queue in order of `i`
                                tx.send(ledger.item(i)).await.unwrap();
                            })
                            .await;
                    });
                }
                sleep(ms(u64::from(N) + 1)).await;
                assert_eq!(tx.statistics().waiting_senders, N as usize);
                let mut rng = Rng::new(seed + 17);
                let mut queue: VecDeque<u32> = (0..N).collect();
                let mut buffer: VecDeque<u32> = VecDeque::from([N]);
                let (mut got, mut expected) = (Vec::new(), Vec::new());
                while let Some(front) = buffer.pop_front() {
                    for _ in 0..rng.below(3) {
                        let i = rng.below(u64::from(N)) as u32;
                        scopes[i as usize].cancel();
                        queue.retain(|&q| q != i); // a delivered send stays delivered
                    }
                    settle().await;
                    assert_eq!(tx.statistics().waiting_senders, queue.len(), "seed {seed}");
                    got.push(rx.try_recv().unwrap().receive());
                    expected.push(front);
                    buffer.extend(queue.pop_front());
                }
                Ok::<_, ()>((got, expected))
            })
            .await
            .unwrap();
            assert_eq!(got, expected, "seed {seed}: FIFO service broken");
            assert!(got.len() < N as usize, "seed {seed}: nothing was cancelled");
            let ends = ledger.each_ended_once(N + 1);
            for (id, end) in ends {
                let want = if got.contains(&id) {
                    End::Received
                } else {
                    End::Dropped
                };
                assert_eq!(end, want, "seed {seed}: value {id}");
            }
        });
    }
}

/// Attacks "waiting receivers are served first come, first served" and `Receiver::recv`
/// `# Cancellation` ("one dropped after a value was promised to it ... passes the value to
/// the next waiting receiver"): eight receives queue in order; values go to the first
/// three; a served one hard-dropped passes its claim to the *next queued* one (not to a
/// later one), a dropped waiting one is skipped, and whatever order the served ones are
/// polled in, the values come out in the order they were sent.
#[test]
fn served_receives_hard_dropped_pass_their_claim_down_the_queue_in_order() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let clones: Vec<Receiver<u32>> = (0..8).map(|_| rx.clone()).collect();
        let flags: Vec<(Arc<Flag>, Waker)> = (0..8).map(|_| Flag::new()).collect();
        let mut waits: Vec<Option<_>> = clones.iter().map(|r| Some(r.recv())).collect();
        for (w, (_, waker)) in waits.iter_mut().zip(&flags) {
            assert!(poll_with(Pin::new(w.as_mut().unwrap()), waker).is_pending());
        }
        let woken = || -> Vec<usize> { (0..8).filter(|&i| flags[i].0.take()).collect() };
        assert_eq!(rx.statistics().waiting_receivers, 8);
        for v in [10, 11, 12] {
            tx.try_send(v).unwrap();
        }
        assert_eq!(woken(), [0, 1, 2], "the first three are served");
        waits[1] = None; // served, hard-dropped
        assert_eq!(woken(), [3], "its claim goes to the next in line");
        waits[4] = None; // waiting, dropped
        assert_eq!(woken(), Vec::<usize>::new());
        tx.try_send(13).unwrap();
        assert_eq!(woken(), [5], "the dropped waiter lost its place");
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "all four are promised"
        );
        let mut out = Vec::new();
        for i in [5, 3, 2, 0] {
            match poll_with(Pin::new(waits[i].as_mut().unwrap()), &flags[i].1) {
                Poll::Ready(Ok(v)) => out.push(v),
                other => panic!("receive {i}: {other:?}"),
            }
        }
        assert_eq!(
            out,
            [10, 11, 12, 13],
            "claims are taken front first: send order"
        );
        tx.try_send(14).unwrap();
        assert_eq!(woken(), [6]);
        waits[6] = None;
        assert_eq!(woken(), [7]);
        waits[7] = None; // nobody is left waiting: the value stays, unclaimed
        assert_eq!(rx.statistics().buffered, 1);
        assert_eq!(rx.try_recv(), Ok(14));
        drop(waits);
        let stats = rx.statistics();
        assert_eq!((stats.buffered, stats.waiting_receivers), (0, 0));
    });
}

// ---------------------------------------------------------------------------------------
// Closing: close() vs drop, clones

/// What the receive side saw when the send side closed, for one way of closing.
fn end_of_stream_trace(close: bool) -> Vec<String> {
    virtual_test(async move || {
        let mut trace = Vec::new();
        let (tx, mut rx) = channel::<u32>(2);
        let tx2 = tx.clone();
        let r2 = rx.clone();
        tx.try_send(1).unwrap();
        tx2.try_send(2).unwrap();
        if close {
            tx.close();
            tx.close(); // closing twice does nothing
        }
        drop(tx); // after a close: must not count twice
        trace.push(format!("open senders {}", rx.statistics().open_senders));
        trace.push(format!("{:?}", rx.try_recv()));
        nursery(async |n| {
            let waiting = n.spawn(async { Ok::<_, ()>(r2.recv().await) });
            trace.push(format!("{:?}", rx.recv().await));
            settle().await;
            trace.push(format!("waiting {}", rx.statistics().waiting_receivers));
            if close {
                tx2.close();
            }
            drop(tx2);
            trace.push(format!("{:?}", waiting.await.unwrap()));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        trace.push(format!("{:?}", rx.try_recv()));
        trace.push(format!("{:?}", rx.next().await));
        trace.push(format!("terminated {}", rx.is_terminated()));
        trace.push(format!("{:?}", r2.recv().await));
        trace
    })
}

/// Attacks `Sender::close` ("Closing a closed handle does nothing; dropping a handle closes
/// it") and the `channel` docs ("`Sender::close` or dropping a `Sender` closes that
/// handle"): closing then dropping a handle counts once (the clone keeps the stream open),
/// and closing the last handle is observed exactly like dropping it: the buffer drains,
/// then a waiting receive, `try_recv`, the stream and a clone all see end-of-stream.
#[test]
fn closing_the_last_sender_ends_the_stream_exactly_like_dropping_it() {
    let closed = end_of_stream_trace(true);
    let dropped = end_of_stream_trace(false);
    assert_eq!(closed, dropped);
    assert_eq!(
        closed,
        [
            "open senders 1",
            "Ok(1)",
            "Ok(2)",
            "waiting 1",
            "Err(Disconnected)",
            "Err(Disconnected)",
            "None",
            "terminated true",
            "Err(Disconnected)",
        ]
    );
}

/// Attacks the per-handle close ("Its own waiting sends fail with `SendError::Closed` (the
/// value comes back) ... other clones go on as before", `channel` docs; `Receiver::close`:
/// "Receives waiting on this handle fail with `RecvError::Closed` ... Other clones are not
/// affected"): on a rendezvous, sends queued on three clones interleaved, one clone closed:
/// exactly its sends come back, the others are delivered in their queue order; likewise a
/// receive clone closed among queued receives.
#[test]
fn a_clone_closed_while_others_wait_fails_exactly_its_own_waiters() {
    virtual_test(async || {
        let (a, rx) = channel::<u32>(0);
        let (b, c) = (a.clone(), a.clone());
        let outcomes = RefCell::new(Vec::new());
        nursery(async |n| {
            for (i, s) in [&a, &b, &a, &c, &b, &a].into_iter().enumerate() {
                let outcomes = &outcomes;
                n.spawn(async move {
                    sleep(ms(i as u64)).await;
                    let r = s.send(i as u32).await;
                    outcomes.borrow_mut().push((
                        i,
                        r.map_err(|e| match e {
                            SendError::Closed(v) => format!("closed {v}"),
                            e => format!("{e:?}"),
                        }),
                    ));
                });
            }
            sleep(ms(10)).await;
            assert_eq!(rx.statistics().waiting_senders, 6);
            b.close();
            settle().await;
            assert_eq!(rx.statistics().waiting_senders, 4);
            let got: Vec<u32> = vec![
                rx.recv().await.unwrap(),
                rx.recv().await.unwrap(),
                rx.recv().await.unwrap(),
                rx.recv().await.unwrap(),
            ];
            assert_eq!(got, [0, 2, 3, 5], "the others, in queue order");
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        let mut outcomes = outcomes.into_inner();
        outcomes.sort();
        assert_eq!(
            outcomes,
            [
                (0, Ok(())),
                (1, Err("closed 1".to_string())),
                (2, Ok(())),
                (3, Ok(())),
                (4, Err("closed 4".to_string())),
                (5, Ok(())),
            ]
        );

        let (tx, r1) = channel::<u32>(0);
        let r2 = r1.clone();
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            for (i, r) in [&r1, &r2, &r1, &r2].into_iter().enumerate() {
                let got = &got;
                n.spawn(async move {
                    sleep(ms(i as u64)).await;
                    let r = r.recv().await;
                    got.borrow_mut().push((i, r));
                });
            }
            sleep(ms(10)).await;
            r2.close();
            settle().await;
            tx.try_send(7).unwrap();
            tx.try_send(8).unwrap();
            assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        let mut got = got.into_inner();
        got.sort_by_key(|(i, _)| *i);
        assert_eq!(
            got,
            [
                (0, Ok(7)),
                (1, Err(RecvError::Closed)),
                (2, Ok(8)),
                (3, Err(RecvError::Closed)),
            ]
        );
    });
}

/// Attacks the ordering of errors when both happen before a waiting send runs again
/// (`Sender::send` `# Errors`: `Closed` "when this handle is closed (also while the send
/// waits)", `Disconnected` "when every receiver is gone (also while it waits)"): a send
/// whose handle closed, then whose receivers all went, before it was polled, still reports
/// `Closed` with its value; a send on an open clone reports `Disconnected`; nothing is
/// delivered and every value comes back once.
#[test]
fn a_send_failed_by_its_close_keeps_closed_when_the_receivers_then_go() {
    virtual_test(async || {
        let ledger = Ledger::default();
        let (tx, rx) = channel::<Item>(0);
        let tx2 = tx.clone();
        let errors = nursery(async |n| {
            let first = n.spawn(async { Ok::<_, ()>(tx2.send(ledger.item(0)).await) });
            let second = n.spawn(async { Ok::<_, ()>(tx.send(ledger.item(1)).await) });
            settle().await;
            assert_eq!(rx.statistics().waiting_senders, 2);
            tx2.close(); // the first send fails (not yet polled)...
            rx.close(); // ...and then the channel loses its receivers, in the same step
            let describe = |r: Result<(), SendError<Item>>| match r {
                Ok(()) => "delivered".to_string(),
                Err(SendError::Closed(v)) => format!("closed {}", v.give_back()),
                Err(SendError::Disconnected(v)) => format!("disconnected {}", v.give_back()),
                Err(e) => format!("{e:?}"),
            };
            let a = describe(first.await.unwrap());
            let b = describe(second.await.unwrap());
            Ok::<_, ()>((a, b))
        })
        .await
        .unwrap();
        assert_eq!(
            errors,
            ("closed 0".to_string(), "disconnected 1".to_string())
        );
        let ends = ledger.each_ended_once(2);
        assert!(ends.values().all(|e| *e == End::Returned), "{ends:?}");
    });
}

// ---------------------------------------------------------------------------------------
// The stream

/// Attacks the `Stream` impl ("the stream ends at end-of-stream ... or when this handle is
/// closed") and `FusedStream::is_terminated` ("True once the stream has returned `None`"):
/// a stream polled hundreds of times after its end keeps returning `None`, leaves no queue
/// slot behind, and takes nothing (a clone still receives what is sent afterwards, for a
/// stream ended by closing its handle).
#[test]
fn a_stream_polled_after_its_end_stays_ended_and_takes_nothing() {
    virtual_test(async || {
        let (tx, mut rx) = channel::<u32>(4);
        tx.try_send(1).unwrap();
        drop(tx);
        let (_flag, waker) = Flag::new();
        assert_eq!(poll_next_with(&mut rx, &waker), Poll::Ready(Some(1)));
        for _ in 0..200 {
            assert_eq!(poll_next_with(&mut rx, &waker), Poll::Ready(None));
            assert!(rx.is_terminated());
        }
        assert_eq!(rx.statistics().waiting_receivers, 0);
        assert_eq!(rx.recv().await, Err(RecvError::Disconnected));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));

        let (tx, mut closed) = channel::<u32>(4);
        let other = closed.clone();
        assert!(poll_next_with(&mut closed, &waker).is_pending()); // queued
        closed.close();
        for _ in 0..200 {
            assert_eq!(poll_next_with(&mut closed, &waker), Poll::Ready(None));
        }
        assert!(closed.is_terminated());
        assert_eq!(
            closed.statistics().waiting_receivers,
            0,
            "no slot left behind"
        );
        tx.try_send(5).unwrap();
        assert_eq!(poll_next_with(&mut closed, &waker), Poll::Ready(None));
        assert_eq!(other.try_recv(), Ok(5), "the closed stream took nothing");
    });
}

/// Attacks the module docs' end-of-stream rule ("End-of-stream is told ... only when
/// `senders == 0` and the buffer is empty, claimed values included") and the
/// `Receiver::recv` `# Cancellation` promise ("while such a value is promised, the other
/// receives do not see end-of-stream yet"), through `StreamExt::for_each`: with the last
/// sender gone, two values are claimed, one by a hard-dropped `recv` and one by the
/// pending stream slot of a `Receiver` that is then dropped; the `for_each` on a third
/// handle must get both and only then end, and `try_recv` says `Empty`, not
/// `Disconnected`, while a claim is out.
#[test]
fn for_each_on_a_stream_ends_only_after_claims_given_back_by_drops() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let mut holder = rx.clone();
        let (_f1, w1) = Flag::new();
        let (_f2, w2) = Flag::new();
        let mut claimed = rx.recv();
        assert!(poll_with(Pin::new(&mut claimed), &w1).is_pending());
        assert!(poll_next_with(&mut holder, &w2).is_pending());
        tx.try_send(1).unwrap(); // to `claimed`
        tx.try_send(2).unwrap(); // to `holder`'s stream slot
        drop(tx);
        let mut tail = rx.clone();
        assert_eq!(
            tail.try_recv(),
            Err(TryRecvError::Empty),
            "two values are promised"
        );
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            n.spawn(async {
                (&mut tail)
                    .for_each(|v| {
                        got.borrow_mut().push(v);
                        async {}
                    })
                    .await;
            });
            settle().await;
            assert!(got.borrow().is_empty());
            drop(claimed); // gives value 1 back: to the waiting for_each
            settle().await;
            drop(holder); // gives value 2 back, then closes the handle
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        assert_eq!(*got.borrow(), [1, 2], "both claims came back, in order");
        assert!(tail.is_terminated());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// Attacks the `Stream` impl's `# Cancellation` ("A `poll_next` that returned `Pending` ...
/// keeps its place in the queue until the next `poll_next` ... (which get a value handed
/// to it in the meantime)") across tasks: a receiver whose stream slot is queued, then one
/// whose slot holds a claimed value, is moved to another task through a channel; the new
/// task is woken for later values (not the old one) and takes the claimed value there.
#[test]
fn a_receiver_moved_between_tasks_with_a_queued_or_claimed_stream_slot_loses_nothing() {
    let (b_got, c_got) = virtual_test(async || {
        let (tx, mut rx) = channel::<u32>(0);
        let (to_b, at_b) = channel::<Receiver<u32>>(1);
        let (to_c, at_c) = channel::<Receiver<u32>>(1);
        let (b_got, c_got) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
        nursery(async |n| {
            // Task A: leaves a queued slot, hands the receiver on, then sends.
            n.spawn(async move {
                select! {
                    v = rx.next() => panic!("nothing was sent: {v:?}"),
                    () = sleep(ms(1)) => {}
                }
                assert_eq!(
                    rx.statistics().waiting_receivers,
                    1,
                    "the slot keeps its place"
                );
                to_b.send(rx).await.unwrap();
                sleep(ms(2)).await; // t = 3
                tx.send(1).await.unwrap(); // to B's stream (B must be the one woken)
                sleep(ms(2)).await; // t = 5
                tx.try_send(2).unwrap(); // claimed by B's abandoned slot
                assert!(
                    matches!(tx.try_send(99), Err(TrySendError::Full(99))),
                    "the claimed value takes no room it does not have"
                );
                sleep(ms(5)).await; // t = 10
                tx.send(3).await.unwrap(); // to C
            });
            // Task B: polls the moved receiver, abandons a poll, moves it on while claimed.
            n.spawn(async {
                let mut rx = at_b.recv().await.unwrap();
                let first = rx.next().await.unwrap();
                b_got.borrow_mut().push(first);
                select! {
                    v = rx.next() => panic!("nothing was sent yet: {v:?}"),
                    () = sleep(ms(1)) => {}
                }
                sleep(ms(3)).await; // t = 7: value 2 was handed to the slot at t = 5
                assert_eq!(rx.statistics().buffered, 1);
                to_c.send(rx).await.unwrap();
            });
            // Task C: takes the claimed value, then streams to the end.
            n.spawn(async {
                let mut rx = at_c.recv().await.unwrap();
                while let Some(v) = rx.next().await {
                    c_got.borrow_mut().push(v);
                }
            });
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        (b_got.into_inner(), c_got.into_inner())
    });
    assert_eq!(b_got, [1]);
    assert_eq!(c_got, [2, 3]);
}

/// Attacks the `Stream` impl's `# Cancellation` ("a `recv` ... on this handle ... get[s] a
/// value handed to it") together with `Receiver::close` ("one that was already handed a
/// value still gets it"): `StreamExt::next` dropped by a `select!`, a value handed to the
/// abandoned slot, the handle closed: the next `recv` still gets that value, then
/// `Closed`; the stream then ends; a clone never saw the value.
#[test]
fn a_value_handed_to_an_abandoned_next_survives_closing_the_handle() {
    virtual_test(async || {
        let (tx, mut rx) = channel::<u32>(1);
        let other = rx.clone();
        select! {
            v = rx.next() => panic!("nothing was sent: {v:?}"),
            () = sleep(ms(1)) => {}
        }
        tx.try_send(4).unwrap();
        rx.close();
        assert_eq!(
            other.try_recv(),
            Err(TryRecvError::Empty),
            "the value is rx's"
        );
        assert_eq!(rx.recv().await, Ok(4));
        assert_eq!(rx.recv().await, Err(RecvError::Closed));
        assert_eq!(rx.next().await, None);
        assert!(rx.is_terminated());
        tx.try_send(5).unwrap();
        assert_eq!(other.try_recv(), Ok(5));
    });
}

/// Attacks `StreamExt::take` / `for_each` on a `Receiver` (the `Stream` impl: "The values,
/// in order"): `take(3)` stops after three values without consuming a fourth (no slot is
/// left claiming one), a `select!` round in between loses nothing, and `for_each` drains
/// the rest to end-of-stream, every value once and in order.
#[test]
fn take_then_select_then_for_each_on_one_receiver_see_every_value_once_in_order() {
    virtual_test(async || {
        let (tx, mut rx) = channel::<u32>(1);
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            n.spawn(async move {
                for i in 0..20 {
                    tx.send(i).await.unwrap();
                    if i % 3 == 0 {
                        sleep(ms(1)).await;
                    }
                }
            });
            let first: Vec<u32> = (&mut rx).take(3).collect().await;
            got.borrow_mut().extend(first);
            assert_eq!(rx.statistics().waiting_receivers, 0, "take left no slot");
            for _ in 0..5 {
                select! {
                    v = rx.next() => got.borrow_mut().push(v.unwrap()),
                    () = sleep(ms(0)) => {}
                }
            }
            (&mut rx)
                .for_each(|v| {
                    got.borrow_mut().push(v);
                    async {}
                })
                .await;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        assert_eq!(got.into_inner(), (0..20).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------
// Rendezvous hand-offs cancelled in the same instant

/// Attacks the rendezvous promise ("a send completes only once a receiver takes its
/// value") with the cancellation rules on both sides at once (`Sender::send`: "Once the
/// value was taken ... the send is delivered"; `Receiver::recv`: "Cancel-safe"): over a
/// grid of send deadlines, receive start times and receive deadlines, and with both scopes
/// cancelled by a third task in the instant of the hand-off, under shuffled schedules:
/// the value is received exactly when the send was delivered (or was cancelled after its
/// value was taken), dropped only when the send never delivered, and never left behind.
#[test]
fn a_rendezvous_cancelled_on_both_sides_in_the_same_instant_is_all_or_nothing() {
    for seed in 0..4u64 {
        shuffled_test(seed, async move || {
            let mut outcomes = BTreeMap::new();
            for shape in 0..(3 * 4 * 4 + 3) {
                let ledger = Ledger::default();
                let (tx, rx) = channel::<Item>(0);
                let (sent, got) = (Cell::new(None), Cell::new(None));
                let (s_scope, r_scope) = (CancelScope::new(), CancelScope::new());
                nursery(async |n| {
                    if shape < 48 {
                        let (ds, rs, dr) = (1 + shape / 16, (shape / 4) % 4, shape % 4);
                        let (tx, rx, ledger, sent, got) = (&tx, &rx, &ledger, &sent, &got);
                        n.spawn(async move {
                            let out = move_on_after(ms(ds), tx.send(ledger.item(0))).await;
                            sent.set(Some(out.map(|r| r.is_ok())));
                        });
                        n.spawn(async move {
                            sleep(ms(rs)).await;
                            if let Some(r) = move_on_after(ms(dr), rx.recv()).await {
                                got.set(Some(r.expect("a sender is open").receive()));
                            }
                        });
                    } else {
                        // Both scopes cancelled by a third task at t = 2, as the send starts.
                        let at = shape - 48;
                        let (rx, got, r_scope) = (&rx, &got, &r_scope);
                        n.spawn(async {
                            sleep(ms(2)).await;
                            let out = s_scope.clone().run(tx.send(ledger.item(0))).await;
                            sent.set(Some(out.map(|r| r.is_ok())));
                        });
                        n.spawn(async move {
                            sleep(ms(at)).await;
                            if let Some(r) = r_scope.clone().run(rx.recv()).await {
                                got.set(Some(r.expect("a sender is open").receive()));
                            }
                        });
                        n.spawn(async {
                            sleep(ms(2)).await;
                            s_scope.cancel();
                            r_scope.cancel();
                        });
                    }
                    Ok::<_, ()>(())
                })
                .await
                .unwrap();
                let left = rx.try_recv().map(Item::receive);
                assert_eq!(
                    left,
                    Err(TryRecvError::Empty),
                    "shape {shape}: a value left behind"
                );
                drop((tx, rx));
                let end = ledger.each_ended_once(1)[&0];
                let (sent, got) = (sent.get(), got.get());
                match end {
                    End::Received => {
                        assert_eq!(got, Some(0), "shape {shape}");
                        assert_ne!(sent, Some(Some(false)), "shape {shape}");
                    }
                    End::Dropped => {
                        assert_eq!(got, None, "shape {shape}");
                        assert_eq!(
                            sent,
                            Some(None),
                            "shape {shape}: a delivered send lost its value"
                        );
                    }
                    End::Returned => panic!("shape {shape}: nothing gives values back here"),
                }
                *outcomes.entry(format!("{end:?}/{sent:?}")).or_insert(0) += 1;
            }
            assert!(
                outcomes.contains_key("Received/Some(Some(true))")
                    && outcomes.contains_key("Dropped/Some(None)"),
                "seed {seed}: too few kinds of outcome: {outcomes:?}"
            );
        });
    }
}

/// Attacks the module docs ("A served receive waiter that is dropped before it takes its
/// value ... leaves the value unclaimed at its place in the buffer. (The buffer may then
/// hold more than `capacity` unclaimed values ...: senders wait until it drains below the
/// capacity again.)") on a rendezvous: the send completes (delivered), its receive is
/// hard-dropped in the same step; the value stays, no later value overtakes it, and a
/// `try_send` cannot use room that is not there.
#[test]
fn a_rendezvous_value_given_back_by_a_dropped_receive_is_not_overtaken() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let (_flag, waker) = Flag::new();
        let mut recv = rx.recv();
        assert!(poll_with(Pin::new(&mut recv), &waker).is_pending());
        let mut send = tx.send(1);
        assert!(matches!(
            poll_with(Pin::new(&mut send), &waker),
            Poll::Ready(Ok(()))
        ));
        drop((recv, send)); // both sides gone in the same step
        assert_eq!(rx.statistics().buffered, 1);
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        nursery(async |n| {
            n.spawn(async {
                tx.send(3).await.unwrap();
            });
            settle().await;
            assert_eq!(rx.statistics().waiting_senders, 1);
            assert_eq!(rx.try_recv(), Ok(1), "the given-back value first");
            assert_eq!(
                rx.statistics().waiting_senders,
                1,
                "no room on a rendezvous"
            );
            assert_eq!(rx.recv().await, Ok(3));
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Values with hostile destructors

/// A tracked value, or one whose destructor panics.
enum Payload {
    Tracked(#[allow(dead_code, reason = "held for its drop")] Item),
    Bomb(#[allow(dead_code, reason = "held for its drop")] PanicOnDrop),
}

/// Attacks the module docs ("values to drop (whose destructors might touch the channel)
/// are dropped after [the borrow]") and `Receiver::close` ("When this was the last open
/// receive handle, the buffered values are dropped and every send, waiting or later, fails
/// with `SendError::Disconnected`, returning its value"), with a buffered value whose
/// destructor panics in the middle of the buffer: the panic reaches the code that dropped
/// the last receiver, every other buffered value is still dropped exactly once, the
/// waiting send still gets its value back, a receive handed a value before still gets it,
/// and the channel answers correctly afterwards.
#[test]
fn a_panicking_value_dropped_with_the_buffer_leaves_the_channel_consistent() {
    virtual_test(async || {
        let ledger = Ledger::default();
        let (tx, rx) = channel::<Payload>(3);
        let last = rx.clone();
        let (_flag, waker) = Flag::new();
        let mut served = rx.recv();
        assert!(poll_with(Pin::new(&mut served), &waker).is_pending());
        tx.try_send(Payload::Tracked(ledger.item(0))).unwrap(); // claimed by `served`
        tx.try_send(Payload::Tracked(ledger.item(1))).unwrap();
        tx.try_send(Payload::Bomb(PanicOnDrop("bomb in the buffer")))
            .unwrap();
        tx.try_send(Payload::Tracked(ledger.item(2))).unwrap();
        let back = nursery(async |n| {
            let waiting = n.spawn(async {
                match tx.send(Payload::Tracked(ledger.item(3))).await {
                    Err(SendError::Disconnected(Payload::Tracked(v))) => Ok(v.give_back()),
                    other => Err(format!("{:?}", other.map_err(|_| "some error"))),
                }
            });
            settle().await;
            rx.close(); // `served` keeps its claim
            let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(last)))
                .expect_err("the bomb went off");
            assert_eq!(panic_message(&*panic), "bomb in the buffer");
            waiting.await.map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        assert_eq!(back, 3);
        assert_eq!(ledger.ended(1), [End::Dropped]);
        assert_eq!(ledger.ended(2), [End::Dropped]);
        match poll_with(Pin::new(&mut served), &waker) {
            Poll::Ready(Ok(Payload::Tracked(v))) => assert_eq!(v.receive(), 0),
            _ => panic!("the served receive lost its value"),
        }
        drop(served);
        assert!(matches!(
            tx.try_send(Payload::Tracked(ledger.item(4))),
            Err(TrySendError::Disconnected(_))
        ));
        let stats = tx.statistics();
        assert_eq!(
            (stats.buffered, stats.open_receivers, stats.waiting_senders),
            (0, 0, 0)
        );
        ledger.each_ended_once(5);
    });
}

/// Attacks `SendFuture`'s `# Cancellation` ("Dropping it before a receiver took the value
/// drops the value with it") and the FIFO promise: a waiting send whose value panics when
/// the send is hard-dropped panics only there; the queue is intact (its neighbours are
/// delivered in order, the counters exact) and the channel keeps working.
#[test]
fn a_waiting_send_whose_value_panics_on_drop_leaves_its_neighbours_in_order() {
    virtual_test(async || {
        let ledger = Ledger::default();
        let (tx, rx) = channel::<Payload>(0);
        let (_flag, waker) = Flag::new();
        let mut first = tx.send(Payload::Tracked(ledger.item(0)));
        let mut bomb = tx.send(Payload::Bomb(PanicOnDrop("bomb in the queue")));
        let mut third = tx.send(Payload::Tracked(ledger.item(1)));
        for s in [&mut first, &mut bomb, &mut third] {
            assert!(poll_with(Pin::new(s), &waker).is_pending());
        }
        assert_eq!(tx.statistics().waiting_senders, 3);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(bomb)))
            .expect_err("the bomb went off");
        assert_eq!(panic_message(&*panic), "bomb in the queue");
        assert_eq!(tx.statistics().waiting_senders, 2);
        let mut got = Vec::new();
        for _ in 0..2 {
            match rx.try_recv() {
                Ok(Payload::Tracked(v)) => got.push(v.receive()),
                _ => panic!("a neighbour was lost"),
            }
        }
        assert_eq!(got, [0, 1]);
        assert!(matches!(
            poll_with(Pin::new(&mut first), &waker),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(
            poll_with(Pin::new(&mut third), &waker),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        nursery(async |n| {
            n.spawn(async {
                tx.send(Payload::Tracked(ledger.item(2)))
                    .await
                    .unwrap_or_else(|_| panic!());
            });
            match rx.recv().await {
                Ok(Payload::Tracked(v)) => assert_eq!(v.receive(), 2),
                _ => panic!("the channel broke"),
            }
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        ledger.each_ended_once(3);
    });
}

/// A value whose destructor sends into its own channel and logs what happened.
struct Resender {
    id: u32,
    tx: Option<Rc<Sender<Resender>>>,
    log: Rc<RefCell<Vec<String>>>,
}

impl Drop for Resender {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let echo = Resender {
            id: self.id + 100,
            tx: None,
            log: self.log.clone(),
        };
        let what = match tx.try_send(echo) {
            Ok(()) => "sent",
            Err(TrySendError::Full(_)) => "full",
            Err(TrySendError::Disconnected(_)) => "disconnected",
            Err(TrySendError::Closed(_)) => "closed",
            Err(_) => "other",
        };
        self.log.borrow_mut().push(format!("{}: {what}", self.id));
    }
}

/// Attacks the module docs' re-entrancy promise ("values to drop (whose destructors might
/// touch the channel) are dropped after [the borrow]"; `Receiver::close`: "after the
/// borrow: a value's destructor may use this channel"): a value whose destructor sends into
/// the same channel, dropped at every place the channel drops values (a hard-dropped
/// waiting send, a send first polled in a cancelled scope, a send whose handle closed, a
/// claim given back with no receiver left, the buffer of the last receiver) never hits a
/// borrow panic, and each nested send gets the documented answer.
#[test]
fn a_value_whose_destructor_sends_into_its_own_channel_is_dropped_everywhere_safely() {
    virtual_test(async || {
        let log = Rc::new(RefCell::new(Vec::new()));
        let (tx, rx) = channel::<Resender>(1);
        let tx = Rc::new(tx);
        let make = |id| Resender {
            id,
            tx: Some(tx.clone()),
            log: log.clone(),
        };
        let plain = |id| Resender {
            id,
            tx: None,
            log: log.clone(),
        };
        let (_flag, waker) = Flag::new();
        tx.try_send(plain(0)).unwrap(); // the buffer is full
        // 1. A waiting send, hard-dropped: its value's send finds the buffer full.
        let mut send = tx.send(make(1));
        assert!(poll_with(Pin::new(&mut send), &waker).is_pending());
        drop(send);
        assert_eq!(rx.try_recv().map(|r| r.id), Ok(0));
        // 2. A send first polled in a cancelled scope: nothing sent, the drop's send is.
        let scope = CancelScope::new();
        scope.cancel();
        assert!(scope.run(tx.send(make(2))).await.is_none());
        assert_eq!(rx.try_recv().map(|r| r.id), Ok(102));
        // 3. A send on a clone closed while it waits, dropped without another poll.
        tx.try_send(plain(3)).unwrap();
        let clone = Rc::new((*tx).clone());
        let on_clone = Resender {
            id: 4,
            tx: Some(clone.clone()),
            log: log.clone(),
        };
        let mut send = clone.send(on_clone);
        assert!(poll_with(Pin::new(&mut send), &waker).is_pending());
        clone.close();
        drop(send); // its value's send is on the closed clone
        assert_eq!(rx.try_recv().map(|r| r.id), Ok(3));
        // 4. A claim given back once no receiver is left.
        let mut served = rx.recv();
        assert!(poll_with(Pin::new(&mut served), &waker).is_pending());
        tx.try_send(make(5)).unwrap();
        rx.close();
        assert_eq!(rx.statistics().open_receivers, 0);
        drop(served);
        // 5. The buffer of the last receiver.
        let (tx2, rx2) = channel::<Resender>(2);
        let tx2 = Rc::new(tx2);
        tx2.try_send(Resender {
            id: 6,
            tx: Some(tx2.clone()),
            log: log.clone(),
        })
        .unwrap();
        drop(rx2);
        assert_eq!(
            *log.borrow(),
            [
                "1: full",
                "2: sent",
                "4: closed",
                "5: disconnected",
                "6: disconnected"
            ]
        );
    });
}

/// A value that holds a sender of its own channel.
struct Carrier {
    _tx: Option<Sender<Carrier>>,
    dropped: Rc<Cell<usize>>,
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.dropped.set(self.dropped.get() + 1);
    }
}

/// Attacks the end-of-stream rule ("The channel's send side is closed once every send
/// handle is closed or dropped: receivers then take what is buffered, then see
/// end-of-stream") and the re-entrancy of drops, with the last `Sender` travelling inside
/// a value of its own channel: while it is buffered the stream stays open; received and
/// dropped, it ends a waiting receive; dropped with the buffer by the last receiver, its
/// `Sender`'s close runs inside the channel's own close without a borrow panic.
#[test]
fn the_last_sender_carried_inside_a_value_of_its_own_channel_ends_the_stream_when_dropped() {
    virtual_test(async || {
        let dropped = Rc::new(Cell::new(0));
        let (tx, rx) = channel::<Carrier>(1);
        tx.try_send(Carrier {
            _tx: Some(tx.clone()),
            dropped: dropped.clone(),
        })
        .unwrap();
        drop(tx);
        assert_eq!(
            rx.statistics().open_senders,
            1,
            "the carried sender is open"
        );
        let carrier = rx.try_recv().expect("the carrier");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        let end = nursery(async |n| {
            let waiting = n.spawn(async { Ok::<_, ()>(rx.recv().await.err()) });
            settle().await;
            drop(carrier); // the last sender goes with it
            waiting.await.map_err(|_| ())
        })
        .await
        .unwrap();
        assert_eq!(end, Some(RecvError::Disconnected));

        let (tx, rx) = channel::<Carrier>(1);
        tx.try_send(Carrier {
            _tx: Some(tx.clone()),
            dropped: dropped.clone(),
        })
        .unwrap();
        drop(tx);
        drop(rx); // drops the carrier, whose sender closes re-entrantly
        assert_eq!(dropped.get(), 2);
    });
}

thread_local! {
    /// What a re-entrant waker does when woken (per test thread).
    static ON_WAKE: RefCell<Option<Box<dyn Fn()>>> = RefCell::new(None);
}

/// A waker that calls `ON_WAKE` on the waking thread.
struct Reenter;

impl Wake for Reenter {
    fn wake(self: Arc<Self>) {
        ON_WAKE.with(|f| {
            if let Some(f) = &*f.borrow() {
                f();
            }
        });
    }
}

/// Attacks the module docs ("never polls or wakes anything while it is borrowed: wakers
/// are collected and woken after the borrow ends") and `Sender::try_send` ("A waiting
/// receiver is given the value even if it has not run yet (it owns it: a `try_recv` in
/// between does not see it)"): wakers that re-enter the channel from `wake` (sending and
/// receiving) neither panic nor steal a value promised to the waiter being woken.
#[test]
fn wakers_that_reenter_the_channel_neither_panic_nor_steal_a_promised_value() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(1);
        let (tx, rx) = (Rc::new(tx), Rc::new(rx));
        let log = Rc::new(RefCell::new(Vec::new()));
        {
            let (tx, rx, log) = (tx.clone(), rx.clone(), log.clone());
            ON_WAKE.with(|f| {
                *f.borrow_mut() = Some(Box::new(move || {
                    let sent = tx.try_send(2).is_ok();
                    log.borrow_mut()
                        .push(format!("send {sent}, recv {:?}", rx.try_recv()));
                }));
            });
        }
        let waker = Waker::from(Arc::new(Reenter));
        let mut waiting = rx.recv();
        assert!(poll_with(Pin::new(&mut waiting), &waker).is_pending());
        tx.try_send(1).unwrap(); // wakes `waiting`, whose waker sends 2 and receives
        assert_eq!(*log.borrow(), ["send true, recv Ok(2)"]);
        let (_flag, quiet) = Flag::new();
        assert_eq!(
            poll_with(Pin::new(&mut waiting), &quiet),
            Poll::Ready(Ok(1))
        );

        // A waiting send woken by a receive: its waker receives again, re-entrantly.
        tx.try_send(3).unwrap();
        let mut send = tx.send(4);
        assert!(poll_with(Pin::new(&mut send), &waker).is_pending());
        assert_eq!(rx.try_recv(), Ok(3)); // moves 4 in, wakes the send
        assert_eq!(log.borrow()[1], "send false, recv Ok(4)");
        assert!(matches!(
            poll_with(Pin::new(&mut send), &quiet),
            Poll::Ready(Ok(()))
        ));
        ON_WAKE.with(|f| f.borrow_mut().take());
        let stats = rx.statistics();
        assert_eq!(
            (
                stats.buffered,
                stats.waiting_senders,
                stats.waiting_receivers
            ),
            (0, 0, 0)
        );
    });
}

// ---------------------------------------------------------------------------------------
// The futures ecosystem

/// Attacks the `Stream` impl's `# Cancellation` and `Receiver::recv`'s ("A value handed to
/// it before it was dropped ... stays in the buffer for the next receive") in the shape the
/// docs name ("say in a `select!` whose other branch won"): a `select_biased!` loop whose
/// timer branch is polled first and fires in the very instant each value is sent, on a
/// rendezvous and on a buffered channel, under shuffled schedules: no value is lost or
/// reordered, and the loop did drop receives that held a value.
#[test]
fn a_select_loop_whose_other_branch_wins_as_the_value_arrives_loses_nothing() {
    let mut given_back = 0;
    for capacity in [0, 2] {
        for seed in 0..3 {
            let (got, back) = shuffled_test(seed, async move || {
                const N: u32 = 150;
                let (tx, rx) = channel::<u32>(capacity);
                let given_back = Cell::new(0);
                let got = nursery(async |n| {
                    n.spawn(async move {
                        for i in 0..N {
                            sleep(ms(1)).await;
                            tx.send(i).await.unwrap();
                        }
                    });
                    let mut got = Vec::new();
                    loop {
                        select_biased! {
                            () = sleep(ms(1)) => {
                                if rx.statistics().buffered > 0 {
                                    given_back.set(given_back.get() + 1);
                                }
                            }
                            r = rx.recv() => match r {
                                Ok(v) => got.push(v),
                                Err(_) => break,
                            },
                        }
                    }
                    Ok::<_, ()>(got)
                })
                .await
                .unwrap();
                assert_eq!(got, (0..N).collect::<Vec<_>>(), "seed {seed}");
                (got.len(), given_back.get())
            });
            assert_eq!(got, 150);
            given_back += back;
        }
    }
    assert!(
        given_back > 0,
        "the timer never won while a value was handed over"
    );
}

/// Attacks the same promise with two `recv` branches on one handle in one `select!` (each
/// round both may be handed a value; the loser is dropped with its claim), plus a
/// `FuturesUnordered` of receives drained alongside: every value once, in order for the
/// single consumer.
#[test]
fn two_recv_branches_on_one_handle_take_values_in_order_and_once() {
    for seed in 0..3 {
        shuffled_test(seed, async move || {
            let (tx, rx) = channel::<u32>(0);
            let got = nursery(async |n| {
                n.spawn(async move {
                    for i in 0..200u32 {
                        if i % 2 == 0 {
                            sleep(ms(1)).await;
                        }
                        tx.send(i).await.unwrap();
                    }
                });
                let mut got = Vec::new();
                loop {
                    let r = select! {
                        a = rx.recv() => a,
                        b = rx.recv() => b,
                    };
                    match r {
                        Ok(v) => got.push(v),
                        Err(_) => break,
                    }
                }
                Ok::<_, ()>(got)
            })
            .await
            .unwrap();
            assert_eq!(got, (0..200).collect::<Vec<_>>(), "seed {seed}");
        });
    }
}

/// Attacks the combination promise of `RecvFuture` / `SendFuture` with
/// `futures::future::select`, which gives the loser back instead of dropping it
/// (`Receiver::recv`: "a value sent while one waits belongs to it"): a receive that lost
/// to a sleep is still queued, owns the next value (a `try_recv` does not see it) and gets
/// it when awaited later; a send that lost stays queued and is delivered.
#[test]
fn future_select_gives_back_a_losing_recv_or_send_that_keeps_its_place() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let recv = match futures::future::select(rx.recv(), pin!(sleep(ms(1)))).await {
            Either::Right(((), recv)) => recv,
            Either::Left((v, _)) => panic!("nothing was sent: {v:?}"),
        };
        assert_eq!(rx.statistics().waiting_receivers, 1);
        tx.try_send(1).unwrap();
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "1 belongs to the waiting recv"
        );
        assert_eq!(recv.await, Ok(1));

        let send = match futures::future::select(tx.send(2), pin!(sleep(ms(1)))).await {
            Either::Right(((), send)) => send,
            Either::Left((r, _)) => panic!("nobody receives: {r:?}"),
        };
        assert_eq!(tx.statistics().waiting_senders, 1);
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Ok(2), "the losing send's value");
        let mut send = send;
        assert!((&mut send).await.is_ok(), "delivered");
        assert!(send.is_terminated());
    });
}

/// Attacks the rendezvous with `join!` in one task (`channel` docs: "a send completes only
/// once a receiver takes its value"; `Sender::send`: "waiting sends are served in the order
/// they started waiting"): sends and receives joined in either order complete, pairing
/// values FIFO, with nothing left behind.
#[test]
fn joined_sends_and_receives_in_one_task_pair_up_fifo_in_either_order() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let (s, r) = join!(tx.send(1), rx.recv());
        assert!(s.is_ok());
        assert_eq!(r, Ok(1));
        let (r, s) = join!(rx.recv(), tx.send(2));
        assert_eq!(r, Ok(2));
        assert!(s.is_ok());
        let (s1, s2, r1, r2, r3, s3) = join!(
            tx.send(10),
            tx.send(11),
            rx.recv(),
            rx.recv(),
            rx.recv(),
            tx.send(12)
        );
        assert!(s1.is_ok() && s2.is_ok() && s3.is_ok());
        assert_eq!([r1, r2, r3], [Ok(10), Ok(11), Ok(12)]);
        let stats = rx.statistics();
        assert_eq!(
            (
                stats.buffered,
                stats.waiting_senders,
                stats.waiting_receivers
            ),
            (0, 0, 0)
        );
    });
}

/// Attacks the `FusedFuture` / `FusedStream` impls ("True once the receive has completed",
/// "True once the stream has returned `None`"), on which a `select!` loop's `complete`
/// branch depends: a persistent send and receive on one rendezvous each complete once and
/// are then skipped; `select_next_some` on the receiver sees every value and the loop
/// reaches `complete` after end-of-stream (a stream that returned `None` without
/// reporting itself terminated would spin forever).
#[test]
fn fused_futures_and_the_fused_stream_drive_select_loops_to_complete() {
    virtual_test(async || {
        let (tx, rx) = channel::<u32>(0);
        let mut send = tx.send(7);
        let mut recv = rx.recv();
        let (mut sends, mut recvs) = (0, Vec::new());
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10, "a terminated future fired again");
            select! {
                r = send => { assert!(r.is_ok()); sends += 1; }
                v = recv => recvs.push(v),
                complete => break,
            }
        }
        assert_eq!((sends, recvs), (1, vec![Ok(7)]));
        assert!(send.is_terminated() && recv.is_terminated());

        let (tx, mut rx) = channel::<u32>(2);
        let got = nursery(async |n| {
            n.spawn(async move {
                for i in 0..10 {
                    tx.send(i).await.unwrap();
                    sleep(ms(1)).await;
                }
            });
            let mut nap = sleep(ms(3));
            let (mut got, mut naps) = (Vec::new(), 0);
            loop {
                select! {
                    v = rx.select_next_some() => got.push(v),
                    () = nap => naps += 1,
                    complete => break,
                }
            }
            assert_eq!(naps, 1);
            Ok::<_, ()>(got)
        })
        .await
        .unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(rx.is_terminated());
    });
}

/// Attacks `Receiver::recv` / `Sender::send` `# Cancellation` for trellis futures driven by
/// `FuturesUnordered` inside nursery children that are cancelled at random (a child's
/// cancellation drops the `FuturesUnordered` and every future in it, served receives
/// included): under shuffled schedules every value is received once, or dropped with a
/// send cancelled before it was taken; sends reported `Ok` are received.
#[test]
fn futures_unordered_of_sends_and_receives_in_cancelled_children_lose_nothing() {
    for seed in 0..4u64 {
        shuffled_test(seed, async move || {
            const N: u32 = 240;
            let ledger = Ledger::default();
            let (tx, rx) = channel::<Item>(2);
            let (ok, got) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
            let rounds = Cell::new(0);
            nursery(async |n| {
                let (ledger, ok, got, rounds) = (&ledger, &ok, &got, &rounds);
                n.spawn(async move {
                    let mut rng = Rng::new(seed + 5);
                    let mut next = 0;
                    while next < N {
                        let batch: Vec<u32> = (next..(next + 4).min(N)).collect();
                        next += batch.len() as u32;
                        let tx = &tx;
                        let _ = move_on_after(ms(rng.below(4)), async {
                            let mut sends: FuturesUnordered<_> =
                                batch
                                    .iter()
                                    .map(|&id| async move {
                                        tx.send(ledger.item(id)).await.map(|()| id)
                                    })
                                    .collect();
                            while let Some(r) = sends.next().await {
                                ok.borrow_mut().push(r.unwrap_or_else(|_| panic!("open")));
                            }
                        })
                        .await;
                        sleep(ms(rng.below(2))).await;
                    }
                });
                let rx = &rx;
                n.spawn(async move {
                    let mut rng = Rng::new(seed + 50);
                    let ended = Cell::new(false);
                    while !ended.get() {
                        rounds.set(rounds.get() + 1);
                        let scope = CancelScope::new();
                        let nap = ms(rng.below(5));
                        nursery(async |inner| {
                            let (child_scope, ended) = (scope.clone(), &ended);
                            inner.spawn(async move {
                                child_scope
                                    .run(async {
                                        let mut recvs: FuturesUnordered<_> =
                                            (0..3).map(|_| rx.recv()).collect();
                                        while let Some(r) = recvs.next().await {
                                            match r {
                                                Ok(item) => {
                                                    got.borrow_mut().push(item.receive());
                                                    recvs.push(rx.recv());
                                                }
                                                Err(e) => {
                                                    assert_eq!(e, RecvError::Disconnected);
                                                    ended.set(true);
                                                }
                                            }
                                        }
                                    })
                                    .await;
                            });
                            sleep(nap).await;
                            scope.cancel();
                        })
                        .await
                        .unwrap();
                    }
                });
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
            assert_eq!(rx.statistics().buffered, 0, "seed {seed}: left behind");
            drop(rx);
            assert!(rounds.get() > 3, "seed {seed}: too few cancelled rounds");
            let ends = ledger.each_ended_once(N);
            for id in ok.borrow().iter() {
                assert_eq!(ends[id], End::Received, "seed {seed}: {id} sent Ok");
            }
            let mut got = got.into_inner();
            let n_got = got.len();
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), n_got, "seed {seed}: received twice");
            let received: Vec<u32> = ends
                .iter()
                .filter(|(_, e)| **e == End::Received)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(got, received, "seed {seed}");
            assert!(ends.values().all(|e| *e != End::Returned));
        });
    }
}
