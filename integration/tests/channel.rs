//! Memory channels (`trellis::channel`): Trio's `test_channel.py` ported, close and
//! end-of-stream semantics, rendezvous, back-pressure, FIFO fairness, cancellation of every
//! waiting operation at every point (values counted in and out), the value returned by a
//! failed send, and the `Stream` implementation.
//!
//! Trio's `wait_all_tasks_blocked()` is `settle()` here: on the autojump clock a sleep
//! returns only once every other task is blocked (time jumps only then).

mod common;

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::FusedFuture;
use futures::stream::{FusedStream, Stream};

use common::{HANG_LIMIT, ms, poll_once, run_virtual, watchdog};
use trellis::{
    CancelScope, Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, channel,
    move_on_after, nursery, sleep,
};

/// Trio's `wait_all_tasks_blocked`: returns once every other task is blocked.
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

/// Runs `body` on the autojump clock under the watchdog.
fn virtual_test<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    watchdog(HANG_LIMIT, move || run_virtual(body()));
}

/// A value that records what became of it when it is dropped: received by a consumer, or
/// dropped anywhere else (with a cancelled send, with the buffer).
struct Item {
    id: u32,
    received: bool,
    log: Rc<RefCell<Vec<(u32, bool)>>>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.log.borrow_mut().push((self.id, self.received));
    }
}

/// The ends of every `Item` made from it: `(id, received)` in the order they ended.
#[derive(Clone, Default)]
struct Ledger {
    log: Rc<RefCell<Vec<(u32, bool)>>>,
}

impl Ledger {
    fn item(&self, id: u32) -> Item {
        Item {
            id,
            received: false,
            log: self.log.clone(),
        }
    }

    fn received(&self) -> Vec<u32> {
        let log = self.log.borrow();
        log.iter().filter(|(_, r)| *r).map(|(id, _)| *id).collect()
    }

    fn dropped(&self) -> Vec<u32> {
        let log = self.log.borrow();
        log.iter().filter(|(_, r)| !*r).map(|(id, _)| *id).collect()
    }

    fn ended(&self) -> usize {
        self.log.borrow().len()
    }
}

/// Marks an item received and ends it.
fn consume(mut item: Item) -> u32 {
    item.received = true;
    item.id
}

// ---------------------------------------------------------------------------------------
// Trio's test_channel.py.

/// Ports Trio's `test_channel`: buffered sends and receives, `WouldBlock` both ways,
/// closing the sender (then `ClosedResourceError` on it, `EndOfChannel` after the buffer)
/// and closing the receiver (then `ClosedResourceError` on it).
#[test]
fn trio_test_channel_basics_and_close() {
    virtual_test(|| async {
        let (s, r) = channel::<&str>(2);
        assert!(
            format!("{s:?}").starts_with("Sender"),
            "a smoke test of Debug"
        );
        assert!(format!("{r:?}").starts_with("Receiver"));

        s.try_send("1").unwrap();
        s.send("2").await.unwrap();
        assert!(matches!(s.try_send("3"), Err(TrySendError::Full("3"))));

        assert_eq!(r.recv().await, Ok("1"));
        assert_eq!(r.try_recv(), Ok("2"));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));

        s.try_send("last").unwrap();
        s.close();
        assert!(matches!(
            s.send("too late").await,
            Err(SendError::Closed("too late"))
        ));
        assert!(matches!(
            s.try_send("too late"),
            Err(TrySendError::Closed("too late"))
        ));
        // Trio raises on `clone` of a closed handle; here the clone is closed too.
        let clone = s.clone();
        assert!(matches!(
            clone.try_send("x"),
            Err(TrySendError::Closed("x"))
        ));
        s.close(); // closing twice is fine

        assert_eq!(r.try_recv(), Ok("last"));
        assert_eq!(r.recv().await, Err(RecvError::Disconnected));
        r.close();
        assert_eq!(r.recv().await, Err(RecvError::Closed));
        assert_eq!(r.try_recv(), Err(TryRecvError::Closed));
        r.close();
    });
}

/// Ports Trio's `test_553`: a receive cancelled by a timeout leaves the channel usable,
/// and takes nothing.
#[test]
fn trio_test_553_a_receive_cut_off_by_a_timeout_leaves_the_channel_usable() {
    virtual_test(|| async {
        let (s, r) = channel::<&str>(1);
        assert_eq!(move_on_after(Duration::from_secs(10), r.recv()).await, None);
        s.send("Test for PR #553").await.unwrap();
        assert_eq!(r.try_recv(), Ok("Test for PR #553"));
    });
}

/// Ports Trio's `test_channel_multiple_producers`: ten producers on clones of a rendezvous
/// sender; the stream ends once every clone is dropped.
#[test]
fn trio_test_channel_multiple_producers() {
    virtual_test(|| async {
        let (send_channel, receive_channel) = channel::<u32>(0);
        nursery(async |n| {
            for i in 0..10 {
                let send_channel = send_channel.clone();
                n.spawn(async move {
                    for j in 3 * i..3 * (i + 1) {
                        send_channel.send(j).await.unwrap();
                    }
                });
            }
            drop(send_channel);
            let mut got: Vec<u32> = receive_channel.collect().await;
            got.sort();
            assert_eq!(got, (0..30).collect::<Vec<_>>());
        })
        .await
        .unwrap();
    });
}

/// Ports Trio's `test_channel_multiple_consumers`: five consumers on clones of one
/// receiver each get values (FIFO service of waiting receivers), ten values in all.
#[test]
fn trio_test_channel_multiple_consumers() {
    virtual_test(|| async {
        let successful = RefCell::new(Vec::new());
        let received = RefCell::new(Vec::new());
        nursery(async |n| {
            let (send_channel, receive_channel) = channel::<u32>(1);
            for i in 0..5 {
                let receive_channel = receive_channel.clone();
                let (successful, received) = (&successful, &received);
                n.spawn(async move {
                    while let Ok(value) = receive_channel.recv().await {
                        successful.borrow_mut().push(i);
                        received.borrow_mut().push(value);
                        settle().await;
                    }
                });
            }
            drop(receive_channel);
            settle().await;
            for i in 0..10 {
                send_channel.send(i).await.unwrap();
            }
        })
        .await
        .unwrap();
        let mut who = successful.into_inner();
        who.sort();
        who.dedup();
        assert_eq!(who, [0, 1, 2, 3, 4]);
        let mut got = received.into_inner();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

/// Ports Trio's `test_close_basics` and `test_close_sync` (trellis has only the
/// synchronous `close`, which Trio's `aclose` calls): closing the sender fails its waiting
/// send (value returned) and ends the stream; closing the receiver fails a waiting send
/// with "disconnected" and a waiting receive on that handle with "closed"; all
/// persistently.
#[test]
fn trio_test_close_basics_and_close_sync() {
    virtual_test(|| async {
        // Closing send -> its waiting send gets `Closed`, with the value.
        let (s, r) = channel::<u32>(0);
        nursery(async |n| {
            n.spawn(async {
                assert!(matches!(s.send(1).await, Err(SendError::Closed(1))));
            });
            settle().await;
            s.close();
        })
        .await
        .unwrap();
        // ... and it is persistent,
        assert!(matches!(s.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(s.send(3).await, Err(SendError::Closed(3))));
        // ... and receives get end-of-stream.
        assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(r.recv().await, Err(RecvError::Disconnected));

        // Closing receive -> a waiting send gets `Disconnected`, with the value.
        let (s, r) = channel::<u32>(0);
        nursery(async |n| {
            n.spawn(async {
                assert!(matches!(s.send(4).await, Err(SendError::Disconnected(4))));
            });
            settle().await;
            r.close();
        })
        .await
        .unwrap();
        assert!(matches!(s.try_send(5), Err(TrySendError::Disconnected(5))));
        assert!(matches!(s.send(6).await, Err(SendError::Disconnected(6))));

        // Closing receive -> a waiting receive on that handle gets `Closed`.
        let (_s2, r2) = channel::<u32>(0);
        nursery(async |n| {
            n.spawn(async {
                assert_eq!(r2.recv().await, Err(RecvError::Closed));
            });
            settle().await;
            r2.close();
        })
        .await
        .unwrap();
        assert_eq!(r2.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(r2.recv().await, Err(RecvError::Closed));
    });
}

/// Ports Trio's `test_receive_channel_clone_and_close`: the channel's receive side closes
/// only when its last clone does.
#[test]
fn trio_test_receive_channel_clone_and_close() {
    virtual_test(|| async {
        let (s, r) = channel::<()>(10);
        let r2 = r.clone();
        let r3 = r.clone();
        s.try_send(()).unwrap();
        r.close();
        drop(r2);
        // Trio raises on cloning a closed handle: here the clone is closed and does not
        // reopen anything.
        let r4 = r.clone();
        assert_eq!(r4.try_recv(), Err(TryRecvError::Closed));
        // Can still send, r3 is still open.
        s.try_send(()).unwrap();
        r3.close();
        // But now the receive side is really closed.
        assert!(matches!(
            s.try_send(()),
            Err(TrySendError::Disconnected(()))
        ));
    });
}

/// Ports Trio's `test_close_multiple_send_handles`: closing one send handle fails only the
/// sends waiting on that handle; a clone's send goes through.
#[test]
fn trio_test_close_multiple_send_handles() {
    virtual_test(|| async {
        let (s1, r) = channel::<&str>(0);
        let s2 = s1.clone();
        nursery(async |n| {
            n.spawn(async {
                assert!(matches!(
                    s1.send("nope").await,
                    Err(SendError::Closed("nope"))
                ));
            });
            n.spawn(async {
                s2.send("ok").await.unwrap();
            });
            settle().await;
            s1.close();
            assert_eq!(r.recv().await, Ok("ok"));
        })
        .await
        .unwrap();
    });
}

/// Ports Trio's `test_close_multiple_receive_handles`: closing one receive handle fails
/// only the receives waiting on that handle; a clone's receive gets the value.
#[test]
fn trio_test_close_multiple_receive_handles() {
    virtual_test(|| async {
        let (s, r1) = channel::<&str>(0);
        let r2 = r1.clone();
        nursery(async |n| {
            n.spawn(async {
                assert_eq!(r1.recv().await, Err(RecvError::Closed));
            });
            n.spawn(async {
                assert_eq!(r2.recv().await, Ok("ok"));
            });
            settle().await;
            r1.close();
            s.send("ok").await.unwrap();
        })
        .await
        .unwrap();
    });
}

/// Ports Trio's `test_inf_capacity`: `usize::MAX` stands for `math.inf`; sends never wait.
#[test]
fn trio_test_inf_capacity() {
    virtual_test(|| async {
        let (send, receive) = channel::<u32>(usize::MAX);
        for i in 0..10 {
            send.try_send(i).unwrap();
        }
        drop(send);
        let got: Vec<u32> = receive.collect().await;
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

/// Ports Trio's `test_statistics`: the buffer, the open handles of each side, and the
/// waiting sends and receives, which leave the counts when they are cancelled.
#[test]
fn trio_test_statistics() {
    virtual_test(|| async {
        let (s, r) = channel::<()>(2);
        assert_eq!(s.statistics(), r.statistics());
        let stats = s.statistics();
        assert_eq!(stats.buffered, 0);
        assert_eq!(stats.capacity, 2);
        assert_eq!(stats.open_senders, 1);
        assert_eq!(stats.open_receivers, 1);
        assert_eq!(stats.waiting_senders, 0);
        assert_eq!(stats.waiting_receivers, 0);

        s.try_send(()).unwrap();
        assert_eq!(s.statistics().buffered, 1);

        let s2 = s.clone();
        assert_eq!(s.statistics().open_senders, 2);
        s.close();
        assert_eq!(s2.statistics().open_senders, 1);

        let r2 = r.clone();
        assert_eq!(s2.statistics().open_receivers, 2);
        r2.close();
        assert_eq!(s2.statistics().open_receivers, 1);

        let scope = CancelScope::new();
        scope
            .clone()
            .run(nursery(async |n| {
                s2.try_send(()).unwrap(); // fill up the buffer
                assert_eq!(s.statistics().buffered, 2);
                n.spawn(async {
                    let _ = s2.send(()).await;
                });
                n.spawn(async {
                    let _ = s2.send(()).await;
                });
                settle().await;
                assert_eq!(s.statistics().waiting_senders, 2);
                scope.cancel();
                settle().await;
            }))
            .await;
        assert_eq!(s.statistics().waiting_senders, 0);

        // Empty out the buffer again.
        while r.try_recv().is_ok() {}

        let scope = CancelScope::new();
        scope
            .clone()
            .run(nursery(async |n| {
                n.spawn(async {
                    let _ = r.recv().await;
                });
                settle().await;
                assert_eq!(s.statistics().waiting_receivers, 1);
                scope.cancel();
                settle().await;
            }))
            .await;
        assert_eq!(s.statistics().waiting_receivers, 0);
    });
}

/// Ports Trio's `test_channel_fairness`: a value sent while a receiver waits belongs to
/// it (a `try_recv` in between does not get it), and room freed while a sender waits
/// belongs to that sender (a `try_send` in between does not get it).
#[test]
fn trio_test_channel_fairness() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        s.try_send(1).unwrap();
        assert_eq!(r.try_recv(), Ok(1));
        s.try_send(2).unwrap();
        assert_eq!(r.try_recv(), Ok(2));

        let result = Cell::new(None);
        nursery(async |n| {
            n.spawn(async {
                result.set(Some(r.recv().await.unwrap()));
            });
            settle().await;
            s.try_send(2).unwrap();
            assert_eq!(r.try_recv(), Err(TryRecvError::Empty), "the waiter owns it");
        })
        .await
        .unwrap();
        assert_eq!(result.get(), Some(2));

        let (s, r) = channel::<u32>(1);
        s.try_send(1).unwrap();
        assert!(matches!(s.try_send(0), Err(TrySendError::Full(0))));
        nursery(async |n| {
            n.spawn(async {
                s.send(2).await.unwrap();
            });
            settle().await;
            assert_eq!(r.try_recv(), Ok(1));
            assert!(
                matches!(s.try_send(3), Err(TrySendError::Full(3))),
                "the freed room belongs to the waiting send"
            );
            assert_eq!(r.recv().await, Ok(2));
        })
        .await
        .unwrap();
    });
}

/// The value sent while a receiver waited is that receiver's, in order, even when later
/// values are buffered behind it and another receive comes first (Trio's fairness, with a
/// buffer).
#[test]
fn a_waiting_receiver_gets_the_value_sent_while_it_waited_not_a_later_one() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        let mut waiter = poll_once(r.recv()).await;
        s.try_send(1).unwrap(); // the waiter's
        s.try_send(2).unwrap(); // buffered, for anyone
        assert!(matches!(s.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(r.try_recv(), Ok(2), "1 belongs to the waiter");
        assert_eq!(waiter.as_mut().await, Ok(1));
    });
}

/// Ports Trio's `test_unbuffered`: a rendezvous channel has no room (`try_send` is full
/// with no receiver waiting) and a send meets a receive.
#[test]
fn trio_test_unbuffered() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert!(matches!(s.try_send(1), Err(TrySendError::Full(1))));
        nursery(async |n| {
            n.spawn(async {
                s.send(1).await.unwrap();
            });
            assert_eq!(r.recv().await, Ok(1));
        })
        .await
        .unwrap();
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    });
}

// ---------------------------------------------------------------------------------------
// Rendezvous, back-pressure, end-of-stream.

/// A rendezvous send completes only once a receiver took the value, not before.
#[test]
fn a_rendezvous_send_completes_only_when_a_receiver_takes_the_value() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let sent_at = Cell::new(None);
        nursery(async |n| {
            n.spawn(async {
                s.send(1).await.unwrap();
                sent_at.set(Some(trellis::now()));
            });
            let start = trellis::now();
            sleep(Duration::from_secs(5)).await;
            assert_eq!(sent_at.get(), None, "nobody received yet");
            assert_eq!(r.recv().await, Ok(1));
            settle().await;
            assert_eq!(sent_at.get(), Some(start + Duration::from_secs(5)));
        })
        .await
        .unwrap();
    });
}

/// A producer is never more than `capacity` values ahead of its consumer.
#[test]
fn back_pressure_keeps_a_producer_within_capacity_of_its_consumer() {
    for capacity in [0, 1, 3] {
        virtual_test(move || async move {
            let (s, r) = channel::<u32>(capacity);
            let sent = Cell::new(0usize);
            let received = Cell::new(0usize);
            let most_ahead = Cell::new(0usize);
            nursery(async |n| {
                n.spawn(async {
                    for i in 0..20 {
                        s.send(i).await.unwrap();
                        sent.set(sent.get() + 1);
                        most_ahead.set(most_ahead.get().max(sent.get() - received.get()));
                    }
                    s.close();
                });
                while r.recv().await.is_ok() {
                    received.set(received.get() + 1);
                    sleep(ms(10)).await; // a slow consumer
                }
            })
            .await
            .unwrap();
            assert_eq!(received.get(), 20);
            assert_eq!(
                most_ahead.get(),
                capacity + 1,
                "capacity {capacity}: the producer runs ahead by the buffer and the one \
                 value in the consumer's hands, no more"
            );
        });
    }
}

/// When every sender is gone, receivers get the buffered values in order, then
/// end-of-stream, which stays.
#[test]
fn receivers_drain_the_buffer_after_the_last_sender_then_see_end_of_stream() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(4);
        let s2 = s.clone();
        s.try_send(1).unwrap();
        s2.try_send(2).unwrap();
        drop(s);
        assert_eq!(r.try_recv(), Ok(1), "one sender is left");
        s2.try_send(3).unwrap();
        drop(s2);
        assert_eq!(r.recv().await, Ok(2));
        assert_eq!(r.try_recv(), Ok(3));
        assert_eq!(r.recv().await, Err(RecvError::Disconnected));
        assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// A receive waiting when the last sender goes sees end-of-stream at once.
#[test]
fn the_last_sender_dropping_ends_waiting_receives() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let ended = Cell::new(0);
        nursery(async |n| {
            for _ in 0..3 {
                let (r, ended) = (r.clone(), &ended);
                n.spawn(async move {
                    assert_eq!(r.recv().await, Err(RecvError::Disconnected));
                    ended.set(ended.get() + 1);
                });
            }
            settle().await;
            drop(s);
        })
        .await
        .unwrap();
        assert_eq!(ended.get(), 3);
    });
}

/// Dropping every receiver drops the buffered values and fails every waiting send,
/// returning each its own value.
#[test]
fn the_last_receiver_going_drops_the_buffer_and_returns_waiting_values() {
    virtual_test(|| async {
        let ledger = Ledger::default();
        let (s, r) = channel::<Item>(2);
        s.try_send(ledger.item(0)).unwrap();
        s.try_send(ledger.item(1)).unwrap();
        let returned = RefCell::new(Vec::new());
        nursery(async |n| {
            for id in 2..5 {
                let (s, ledger, returned) = (&s, &ledger, &returned);
                n.spawn(async move {
                    match s.send(ledger.item(id)).await {
                        Err(SendError::Disconnected(item)) => {
                            returned.borrow_mut().push(item.id);
                        }
                        other => panic!("{:?}", other.map(|_| ())),
                    }
                });
            }
            settle().await;
            assert_eq!(ledger.ended(), 0);
            drop(r);
            assert_eq!(ledger.dropped(), [0, 1], "the buffer is dropped at once");
        })
        .await
        .unwrap();
        assert_eq!(
            *returned.borrow(),
            [2, 3, 4],
            "each send got its value back"
        );
    });
}

// ---------------------------------------------------------------------------------------
// FIFO fairness.

/// Waiting senders are served in the order they started waiting, on a rendezvous and on
/// a buffered channel.
#[test]
fn waiting_senders_are_served_first_come_first_served() {
    for capacity in [0, 2] {
        virtual_test(move || async move {
            let (s, r) = channel::<u32>(capacity);
            for i in 0..capacity as u32 {
                s.try_send(100 + i).unwrap();
            }
            let completed = RefCell::new(Vec::new());
            nursery(async |n| {
                // Spawned in reverse, each after the previous one waits: the queue order
                // is the order of waiting, not of spawning or of the values.
                for i in (0..5).rev() {
                    let (s, completed) = (&s, &completed);
                    n.spawn(async move {
                        s.send(i).await.unwrap();
                        completed.borrow_mut().push(i);
                    });
                    settle().await;
                }
                let mut got = Vec::new();
                for _ in 0..capacity + 5 {
                    got.push(r.recv().await.unwrap());
                    settle().await;
                }
                let buffered: Vec<u32> = (0..capacity as u32).map(|i| 100 + i).collect();
                assert_eq!(got[..capacity], buffered[..]);
                assert_eq!(got[capacity..], [4, 3, 2, 1, 0]);
            })
            .await
            .unwrap();
            assert_eq!(*completed.borrow(), [4, 3, 2, 1, 0]);
        });
    }
}

/// Waiting receivers are served in the order they started waiting.
#[test]
fn waiting_receivers_are_served_first_come_first_served() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            for who in ["first", "second", "third", "fourth"] {
                let (r, got) = (&r, &got);
                n.spawn(async move {
                    let value = r.recv().await.unwrap();
                    got.borrow_mut().push((who, value));
                });
                settle().await;
            }
            for value in 0..4 {
                s.try_send(value).unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(
            *got.borrow(),
            [("first", 0), ("second", 1), ("third", 2), ("fourth", 3)]
        );
    });
}

// ---------------------------------------------------------------------------------------
// Cancellation of every waiting operation, at every point.

/// A send waiting for room, cancelled: not delivered, its value dropped with it (and only
/// it); the sends around it are delivered in order.
#[test]
fn a_cancelled_waiting_send_is_not_delivered_and_drops_its_value() {
    for capacity in [0, 1] {
        virtual_test(move || async move {
            let ledger = Ledger::default();
            let (s, r) = channel::<Item>(capacity);
            if capacity == 1 {
                s.try_send(ledger.item(0)).unwrap();
            }
            nursery(async |n| {
                for id in 1..4 {
                    let (s, ledger) = (&s, &ledger);
                    n.spawn(async move {
                        let limit = if id == 2 { ms(5) } else { Duration::MAX };
                        let out = move_on_after(limit, s.send(ledger.item(id))).await;
                        assert_eq!(out.is_none(), id == 2);
                    });
                    settle().await;
                }
                sleep(ms(10)).await;
                assert_eq!(
                    ledger.dropped(),
                    [2],
                    "the cancelled send dropped its value"
                );
                while let Ok(item) = r.try_recv() {
                    consume(item);
                    settle().await;
                }
            })
            .await
            .unwrap();
            let expected: &[u32] = if capacity == 1 { &[0, 1, 3] } else { &[1, 3] };
            assert_eq!(ledger.received(), expected);
            assert_eq!(ledger.ended(), expected.len() + 1, "nothing else was lost");
        });
    }
}

/// A send whose value was taken (into the buffer, or by a receiver on a rendezvous) is
/// delivered, even when its future is dropped before it is polled again.
#[test]
fn a_send_whose_value_was_taken_is_delivered_even_if_dropped_before_its_next_poll() {
    for capacity in [0, 1] {
        virtual_test(move || async move {
            let ledger = Ledger::default();
            let (s, r) = channel::<Item>(capacity);
            if capacity == 1 {
                s.try_send(ledger.item(0)).unwrap();
            }
            let send = poll_once(s.send(ledger.item(1))).await; // it waits
            assert!(!send.is_terminated());
            let first = r.try_recv().unwrap(); // 0 (the refill takes 1), or 1 itself
            drop(send);
            assert_eq!(
                ledger.ended(),
                0,
                "the dropped send had delivered its value"
            );
            consume(first);
            if capacity == 1 {
                consume(r.try_recv().expect("1 was moved into the buffer"));
            }
            let expected: &[u32] = if capacity == 1 { &[0, 1] } else { &[1] };
            assert_eq!(ledger.received(), expected);
            assert!(ledger.dropped().is_empty());
        });
    }
}

/// A send first polled in a cancelled scope sends nothing (Trio's
/// `checkpoint_if_cancelled`), even with room in the buffer or a receiver waiting.
#[test]
fn a_send_in_a_cancelled_scope_sends_nothing() {
    virtual_test(|| async {
        let ledger = Ledger::default();
        let (s, r) = channel::<Item>(4);
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope.run(s.send(ledger.item(1))).await;
        assert!(out.is_none());
        assert_eq!(r.try_recv().map(|_| ()), Err(TryRecvError::Empty));
        assert_eq!(ledger.dropped(), [1]);

        // A receiver waiting: still nothing goes.
        nursery(async |n| {
            n.spawn(async {
                assert_eq!(r.recv().await.map(consume), Ok(2));
            });
            settle().await;
            let scope = CancelScope::new();
            scope.cancel();
            assert!(scope.run(s.send(ledger.item(3))).await.is_none());
            s.send(ledger.item(2)).await.unwrap();
        })
        .await
        .unwrap();
        assert_eq!(ledger.dropped(), [1, 3]);
        assert_eq!(ledger.received(), [2]);
    });
}

/// A receive waiting for a value, cancelled: it takes nothing; the next value goes to the
/// next receiver.
#[test]
fn a_cancelled_waiting_receive_takes_nothing() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let got = RefCell::new(Vec::new());
        nursery(async |n| {
            for (who, limit) in [("cut off", ms(5)), ("patient", Duration::MAX)] {
                let (r, got) = (&r, &got);
                n.spawn(async move {
                    if let Some(value) = move_on_after(limit, r.recv()).await {
                        got.borrow_mut().push((who, value.unwrap()));
                    }
                });
                settle().await;
            }
            sleep(ms(10)).await;
            s.send(1).await.unwrap();
            assert!(
                matches!(s.try_send(2), Err(TrySendError::Full(2))),
                "nobody waits any more"
            );
        })
        .await
        .unwrap();
        assert_eq!(*got.borrow(), [("patient", 1)]);
    });
}

/// A receive first polled in a cancelled scope takes nothing, even with a value buffered
/// or a send waiting.
#[test]
fn a_receive_in_a_cancelled_scope_takes_nothing() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        s.try_send(1).unwrap();
        let scope = CancelScope::new();
        scope.cancel();
        assert_eq!(scope.run(r.recv()).await, None);
        assert_eq!(r.try_recv(), Ok(1));

        let (s, r) = channel::<u32>(0);
        nursery(async |n| {
            n.spawn(async {
                s.send(2).await.unwrap();
            });
            settle().await;
            let scope = CancelScope::new();
            scope.cancel();
            assert_eq!(scope.run(r.recv()).await, None);
            assert_eq!(r.try_recv(), Ok(2), "the send still waited");
        })
        .await
        .unwrap();
    });
}

/// A receive handed a value and then dropped before taking it passes the value to the
/// next waiting receiver.
#[test]
fn a_value_handed_to_a_dropped_receive_goes_to_the_next_waiting_receiver() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let got = Cell::new(None);
        nursery(async |n| {
            let first = poll_once(r.recv()).await; // waits first
            n.spawn(async {
                got.set(Some(r.recv().await.unwrap()));
            });
            settle().await;
            s.try_send(7).unwrap(); // handed to `first`, the first waiter
            assert_eq!(got.get(), None);
            drop(first);
            settle().await;
            assert_eq!(got.get(), Some(7), "passed on to the next waiter");
        })
        .await
        .unwrap();
    });
}

/// Receives handed values and dropped with no other receiver waiting leave the values in
/// the buffer, in their order, for the next receives; a rendezvous channel then holds
/// them beyond its capacity until they are taken.
#[test]
fn values_handed_to_dropped_receives_stay_in_order_for_the_next_receive() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let a = poll_once(r.recv()).await;
        let b = poll_once(r.recv()).await;
        s.try_send(1).unwrap(); // to a
        s.try_send(2).unwrap(); // to b
        assert!(matches!(s.try_send(3), Err(TrySendError::Full(3))));
        drop(a);
        drop(b);
        assert!(
            matches!(s.try_send(4), Err(TrySendError::Full(4))),
            "the returned values fill the channel"
        );
        assert_eq!(r.try_recv(), Ok(1));
        assert_eq!(r.recv().await, Ok(2));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    });
}

/// Values handed to receives that are dropped after the last sender closed go to the
/// receives still waiting, in order and first come first served: no receive sees
/// end-of-stream while a value is in the channel, promised or not.
#[test]
fn values_given_back_after_the_last_sender_closed_go_to_the_receives_still_waiting() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        let r2 = r.clone();
        let a = poll_once(r.recv()).await;
        let b = poll_once(r.recv()).await;
        let mut c = poll_once(r2.recv()).await;
        let mut d = poll_once(r2.recv()).await;
        s.try_send(1).unwrap(); // to a
        s.try_send(2).unwrap(); // to b
        drop(s); // the last sender, with both values still promised
        assert!(
            futures::poll!(c.as_mut()).is_pending(),
            "a promised value may still come back"
        );
        assert_eq!(r2.try_recv(), Err(TryRecvError::Empty));
        drop(b); // its claim passes to c
        drop(a); // and this one to d
        assert_eq!(
            r.try_recv(),
            Err(TryRecvError::Empty),
            "both are promised again"
        );
        assert_eq!(c.as_mut().await, Ok(1));
        assert_eq!(d.as_mut().await, Ok(2));
        assert_eq!(r.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(r2.recv().await, Err(RecvError::Disconnected));
    });
}

/// A receive loop does not end while a value promised to another receive may still come
/// back: it gets the value given back, and ends once the last promised value is taken
/// (here by a `try_recv` on the handle whose stream it was handed to).
#[test]
fn a_receive_loop_ends_only_once_no_promised_value_can_come_back() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let mut streamed = r.clone();
        let consumer = r.clone();
        let got = RefCell::new(Vec::new());
        let ended = Cell::new(false);
        let noop = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&noop);
        nursery(async |n| {
            let first = poll_once(r.recv()).await;
            assert!(Pin::new(&mut streamed).poll_next(&mut cx).is_pending());
            n.spawn(async {
                while let Ok(v) = consumer.recv().await {
                    got.borrow_mut().push(v);
                }
                ended.set(true);
            });
            settle().await; // the consumer waits third
            s.try_send(1).unwrap(); // to `first`
            s.try_send(2).unwrap(); // to the stream
            drop(s);
            settle().await;
            assert!(!ended.get(), "1 and 2 may still come back");
            drop(first); // 1 goes to the consumer
            settle().await;
            assert_eq!(*got.borrow(), [1]);
            assert!(!ended.get(), "2 may still come back");
            assert_eq!(
                streamed.try_recv(),
                Ok(2),
                "the stream's handle takes its value"
            );
            settle().await;
            assert!(ended.get(), "nothing is left: end-of-stream");
        })
        .await
        .unwrap();
    });
}

/// A receive handed a value still gets it when its handle is closed before it runs (as
/// in Trio, where the task was already rescheduled with the value); a waiting one fails.
#[test]
fn a_receive_handed_a_value_keeps_it_through_a_close_of_its_handle() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let r2 = r.clone();
        let mut handed = poll_once(r.recv()).await;
        let mut waiting = poll_once(r.recv()).await;
        let other = r2.clone();
        let mut elsewhere = poll_once(other.recv()).await;
        s.try_send(1).unwrap(); // to `handed`
        r.close();
        assert_eq!(handed.as_mut().await, Ok(1));
        assert_eq!(waiting.as_mut().await, Err(RecvError::Closed));
        s.try_send(2).unwrap(); // to `elsewhere`, on another handle
        assert_eq!(elsewhere.as_mut().await, Ok(2));
        drop(r2);
    });
}

/// Cancel waiting sends and receives at random points on a busy channel: every value sent
/// is received exactly once or dropped with its cancelled send, and no send that reported
/// success lost its value. Counted in and out.
#[test]
fn nothing_is_lost_when_sends_and_receives_are_cancelled_at_every_point() {
    for capacity in [0, 1, 4] {
        virtual_test(move || async move {
            let ledger = Ledger::default();
            let delivered = RefCell::new(Vec::new());
            let (s, r) = channel::<Item>(capacity);
            let mut seed = 0x2545_f491_u32 ^ capacity as u32;
            let mut next = move || {
                // xorshift: deterministic, varied limits
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed
            };
            let limits: Vec<u64> = (0..400).map(|_| u64::from(next() % 7)).collect();
            nursery(async |n| {
                for p in 0..4u32 {
                    let (s, ledger, delivered, limits) = (s.clone(), &ledger, &delivered, &limits);
                    n.spawn(async move {
                        for k in 0..50u32 {
                            let id = p * 1000 + k;
                            let limit = ms(limits[(p * 50 + k) as usize]);
                            if let Some(out) = move_on_after(limit, s.send(ledger.item(id))).await {
                                out.unwrap_or_else(|_| panic!("a receiver is open"));
                                delivered.borrow_mut().push(id);
                            }
                            // Wake at whole milliseconds, when receives time out too, so
                            // sends and expiring receives meet in the same round. (A
                            // receive handed a value in that round still takes it: its
                            // scope polls it before dropping it. Values handed to dropped
                            // receives are the hard drops of the tests above.)
                            sleep(ms(u64::from(k % 2))).await;
                        }
                    });
                }
                drop(s);
                for c in 0..3u32 {
                    let (r, limits) = (r.clone(), &limits);
                    n.spawn(async move {
                        let mut k = 0;
                        loop {
                            let limit = ms(limits[200 + ((c * 67 + k) % 200) as usize] + 1);
                            k += 1;
                            match move_on_after(limit, r.recv()).await {
                                None => {}
                                Some(Ok(item)) => {
                                    consume(item);
                                    sleep(ms(u64::from(k % 3))).await;
                                }
                                Some(Err(e)) => {
                                    assert_eq!(e, RecvError::Disconnected);
                                    break;
                                }
                            }
                        }
                    });
                }
            })
            .await
            .unwrap();
            let stats = r.statistics();
            assert_eq!(
                (
                    stats.buffered,
                    stats.waiting_senders,
                    stats.waiting_receivers
                ),
                (0, 0, 0),
                "no value or waiter left behind"
            );
            drop(r);
            let mut received = ledger.received();
            let mut dropped = ledger.dropped();
            let mut delivered = delivered.into_inner();
            assert_eq!(
                received.len() + dropped.len(),
                200,
                "every value ended once"
            );
            received.sort();
            dropped.sort();
            delivered.sort();
            // A send cancelled after its value was taken counts as delivered (it is not
            // in `delivered`, its future saw no `Ok`, but the value was received).
            for id in &delivered {
                assert!(
                    received.binary_search(id).is_ok(),
                    "{id} was delivered, not received"
                );
            }
            for id in &dropped {
                assert!(
                    delivered.binary_search(id).is_err(),
                    "{id} was delivered and dropped"
                );
            }
            assert!(
                !dropped.is_empty() && !received.is_empty(),
                "capacity {capacity}: the test exercised both ({} received)",
                received.len()
            );
            let mut all: Vec<u32> = received.iter().chain(&dropped).copied().collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 200, "no value ended twice");
        });
    }
}

// ---------------------------------------------------------------------------------------
// The value returned by a failed send; errors.

/// A send to a channel whose receivers are gone returns the value, waiting or not.
#[test]
fn a_send_to_a_closed_channel_returns_the_value() {
    virtual_test(|| async {
        let (s, r) = channel::<String>(0);
        drop(r);
        let error = s.send("hello".to_string()).await.unwrap_err();
        assert!(matches!(&error, SendError::Disconnected(v) if v == "hello"));
        assert_eq!(error.into_inner(), "hello");
        let error = s.try_send("again".to_string()).unwrap_err();
        assert_eq!(error.into_inner(), "again");
    });
}

/// The errors are std errors with lowercase messages; their `Debug` needs no `T: Debug`.
#[test]
fn errors_display_what_happened_and_debug_without_the_value() {
    struct Opaque;
    let (s, r) = channel::<Opaque>(0);
    let full = s.try_send(Opaque).unwrap_err();
    assert_eq!(format!("{full:?}"), "Full(..)");
    assert_eq!(full.to_string(), "sending on a full channel");
    drop(r);
    let gone = s.try_send(Opaque).unwrap_err();
    assert_eq!(format!("{gone:?}"), "Disconnected(..)");
    let boxed: Box<dyn std::error::Error> = Box::new(gone);
    assert_eq!(
        boxed.to_string(),
        "sending on a channel whose receivers are all closed"
    );
    s.close();
    let closed = s.try_send(Opaque).unwrap_err();
    assert_eq!(closed.to_string(), "sending on a closed sender");
    let send_error: SendError<Opaque> = run_virtual(async { s.send(Opaque).await.unwrap_err() });
    assert_eq!(format!("{send_error:?}"), "Closed(..)");
    let _: &dyn std::error::Error = &send_error;

    let (s, r) = channel::<u8>(0);
    assert_eq!(
        TryRecvError::Empty.to_string(),
        "receiving on an empty channel"
    );
    drop(s);
    assert_eq!(
        r.try_recv().unwrap_err().to_string(),
        "receiving on a channel whose senders are all closed"
    );
    r.close();
    let e: Box<dyn std::error::Error> = Box::new(r.try_recv().unwrap_err());
    assert_eq!(e.to_string(), "receiving on a closed receiver");
    assert_eq!(
        RecvError::Closed.to_string(),
        "receiving on a closed receiver"
    );
}

// ---------------------------------------------------------------------------------------
// Stream.

/// The receiver is a `Stream` of the values, which ends at end-of-stream and stays ended
/// (`FusedStream`).
#[test]
fn the_receiver_streams_the_values_and_ends_at_end_of_stream() {
    virtual_test(|| async {
        let (s, mut r) = channel::<u32>(0);
        nursery(async |n| {
            n.spawn(async move {
                for i in 0..5 {
                    s.send(i).await.unwrap();
                }
            });
            let mut got = Vec::new();
            while let Some(i) = r.next().await {
                got.push(i);
            }
            assert_eq!(got, [0, 1, 2, 3, 4]);
        })
        .await
        .unwrap();
        assert!(r.is_terminated());
        assert_eq!(r.next().await, None);
    });
}

/// Closing the handle ends its stream, even one waiting in `poll_next`.
#[test]
fn closing_the_receiver_ends_its_stream() {
    virtual_test(|| async {
        let (_s, mut r) = channel::<u32>(0);
        let pending = std::future::poll_fn(|cx| Pin::new(&mut r).poll_next(cx));
        assert_eq!(move_on_after(ms(5), pending).await, None);
        r.close();
        assert_eq!(r.next().await, None);
        assert!(r.is_terminated());
    });
}

/// A stream's pending `poll_next` keeps its place in the queue; a value handed to it is
/// taken at the next `poll_next`, or, if the receiver is dropped first, passed to the next
/// receiver.
#[test]
fn a_stream_keeps_its_place_and_a_dropped_one_passes_its_value_on() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(0);
        let mut r1 = r.clone();
        let noop = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&noop);
        assert!(Pin::new(&mut r1).poll_next(&mut cx).is_pending()); // queued first
        let mut second = poll_once(r.recv()).await; // queued second
        s.try_send(1).unwrap(); // to the stream
        s.try_send(2).unwrap(); // to `second`
        assert_eq!(
            Pin::new(&mut r1).poll_next(&mut cx),
            std::task::Poll::Ready(Some(1))
        );
        assert_eq!(second.as_mut().await, Ok(2));

        assert!(Pin::new(&mut r1).poll_next(&mut cx).is_pending());
        let mut third = poll_once(r.recv()).await;
        s.try_send(3).unwrap(); // to the stream of r1
        drop(r1);
        assert_eq!(third.as_mut().await, Ok(3), "passed on to the next waiter");
    });
}

/// A stream left pending (a `select!` whose other branch won) does not strand a value:
/// the next `recv` or `try_recv` on the handle takes what was handed to it, or replaces
/// its place in the queue.
#[test]
fn a_recv_after_an_abandoned_poll_next_gets_the_value_handed_to_the_stream() {
    virtual_test(|| async {
        let (s, mut r) = channel::<u32>(0);
        let noop = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&noop);
        assert!(Pin::new(&mut r).poll_next(&mut cx).is_pending());
        s.try_send(1).unwrap(); // handed to the stream's place
        assert_eq!(r.try_recv(), Ok(1), "try_recv takes it");

        assert!(Pin::new(&mut r).poll_next(&mut cx).is_pending());
        s.try_send(2).unwrap();
        assert_eq!(r.recv().await, Ok(2), "recv takes it");

        assert!(Pin::new(&mut r).poll_next(&mut cx).is_pending());
        nursery(async |n| {
            n.spawn(async {
                s.send(3).await.unwrap();
            });
            // The recv replaces the stream's place, so the value comes to it.
            assert_eq!(r.recv().await, Ok(3));
        })
        .await
        .unwrap();
    });
}

/// `SendFuture` and `RecvFuture` are `FusedFuture`s: terminated once complete.
#[test]
fn send_and_receive_futures_are_fused() {
    virtual_test(|| async {
        let (s, r) = channel::<u32>(1);
        let mut send = s.send(1);
        assert!(!send.is_terminated());
        (&mut send).await.unwrap();
        assert!(send.is_terminated());
        let mut recv = r.recv();
        assert!(!recv.is_terminated());
        assert_eq!((&mut recv).await, Ok(1));
        assert!(recv.is_terminated());
        futures::select! {
            v = r.recv() => panic!("nothing was sent: {v:?}"),
            () = sleep(ms(1)) => {}
        }
    });
}

/// Cloning a closed receiver gives a closed one whose stream has ended; cloning a closed
/// sender gives a closed one that does not keep the stream open.
#[test]
fn a_clone_of_a_closed_handle_is_closed() {
    let (s, r) = channel::<u32>(1);
    r.close();
    let clone: Receiver<u32> = r.clone();
    assert!(clone.is_terminated());
    assert_eq!(clone.try_recv(), Err(TryRecvError::Closed));

    let (s2, r2) = channel::<u32>(1);
    s2.close();
    let clone: Sender<u32> = s2.clone();
    assert!(matches!(clone.try_send(1), Err(TrySendError::Closed(1))));
    assert_eq!(r2.try_recv(), Err(TryRecvError::Disconnected));
    drop(s);
}

/// A receive that can never get a value (a sender is alive, but nobody sends) is a
/// deadlock the mock clock reports with the task tree, rather than a hang.
#[test]
#[should_panic(expected = "deadlock")]
fn a_receive_nobody_will_ever_answer_is_reported_as_a_deadlock() {
    watchdog(HANG_LIMIT, || {
        run_virtual(async {
            let (_forgotten, r) = channel::<u32>(0);
            let _ = r.recv().await;
        })
    });
}
