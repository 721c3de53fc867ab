//! Helpers for tests of concurrent code (Trio's `trio.testing`).
//!
//! - [`wait_all_tasks_blocked`]: wait until every other task is blocked, so that a test
//!   can look at the state the others left, before a mock clock moves.
//! - [`Sequencer`]: script the order in which blocks of different tasks run.
//!
//! # State
//!
//! The engine keeps the idle waiters (`rt/idle.rs`); a [`Sequencer`] keeps, in cells, the
//! number of the block whose turn it is, the numbers already claimed, whether the sequence
//! is broken, and the waker of each block waiting for its turn.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_core::FusedFuture;

pub use crate::rt::idle::{WaitAllTasksBlocked, wait_all_tasks_blocked};

/// Runs blocks of different tasks in the order of their numbers (Trio's
/// `trio.testing.Sequencer`).
///
/// [`block(n)`](Sequencer::block) waits until blocks `0..n` have run and finished, and
/// gives a [`SequencerTurn`]; the block lasts until the turn is dropped, which lets block
/// `n + 1` start. Numbers start at 0 and each may be used once.
///
/// A block whose wait is cancelled (its future dropped before its turn) breaks the
/// sequence, as in Trio: every block waiting then, and every block that asks later, gets
/// [`SequenceBroken`] instead of its turn. A turn dropped by a cancellation still ends its
/// block normally.
///
/// `!Send`: tasks of one runtime share it by reference.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use trellis::testing::Sequencer;
///
/// let seq = Sequencer::new();
/// let log = RefCell::new(Vec::new());
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         n.spawn(async {
///             let _turn = seq.block(1).await.unwrap();
///             log.borrow_mut().push("b: second");
///         });
///         n.spawn(async {
///             let _turn = seq.block(0).await.unwrap();
///             log.borrow_mut().push("a: first");
///         });
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(*log.borrow(), ["a: first", "b: second"]);
/// ```
#[derive(Default)]
pub struct Sequencer {
    /// The number of the block whose turn it is.
    next: Cell<usize>,
    /// The numbers already asked for.
    claimed: RefCell<BTreeSet<usize>>,
    /// Set when a block's wait was cancelled; never cleared.
    broken: Cell<bool>,
    /// The wakers of the blocks waiting for their turn, by number.
    waiting: RefCell<BTreeMap<usize, Waker>>,
}

impl fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sequencer")
            .field("next", &self.next.get())
            .field("broken", &self.broken.get())
            .finish()
    }
}

impl Sequencer {
    /// A sequencer whose first block is number 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let seq = trellis::testing::Sequencer::new();
    /// trellis::run(async {
    ///     drop(seq.block(0).await.unwrap()); // block 0 never waits
    /// });
    /// ```
    pub fn new() -> Sequencer {
        Sequencer::default()
    }

    /// Waits until blocks `0..n` have finished, then gives the turn of block `n`, which
    /// lasts until the [`SequencerTurn`] is dropped.
    ///
    /// Block 0 does not wait, but its future still suspends once (a checkpoint, as Trio's
    /// `Sequencer.__call__` is; unlike the synchronisation primitives, whose free case does
    /// not suspend).
    ///
    /// # Errors
    ///
    /// [`SequenceBroken`] when the sequence is broken: a block's wait was cancelled,
    /// before this wait or during it.
    ///
    /// # Cancellation
    ///
    /// Dropping the future after it was polled and before its turn breaks the sequence
    /// (Trio's behaviour): every block waiting is woken with [`SequenceBroken`], and so is
    /// every later call. Dropping it before its first poll does nothing (the number is not
    /// claimed). A turn dropped by a cancellation ends its block normally.
    ///
    /// # Panics
    ///
    /// The future panics when `n` was already asked for on this sequencer (Trio raises
    /// `RuntimeError`): a test script with a duplicate number is a bug in the test.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use trellis::testing::Sequencer;
    ///
    /// let seq = Sequencer::new();
    /// let log = RefCell::new(Vec::new());
    /// trellis::run(async {
    ///     trellis::nursery(async |n| {
    ///         for i in (0..3).rev() {
    ///             let (seq, log) = (&seq, &log);
    ///             n.spawn(async move {
    ///                 let _turn = seq.block(i).await.unwrap();
    ///                 log.borrow_mut().push(i);
    ///             });
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert_eq!(*log.borrow(), [0, 1, 2]);
    /// ```
    pub fn block(&self, n: usize) -> SequencerBlock<'_> {
        SequencerBlock {
            seq: self,
            n,
            state: BlockState::Unpolled,
        }
    }

    fn break_sequence(&self) {
        self.broken.set(true);
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for waker in waiting.into_values() {
            waker.wake();
        }
    }
}

/// The future of [`Sequencer::block`] (`FusedFuture`): the turn of one block, or
/// [`SequenceBroken`].
#[must_use = "futures do nothing unless awaited"]
pub struct SequencerBlock<'a> {
    seq: &'a Sequencer,
    n: usize,
    state: BlockState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Unpolled,
    /// Claimed its number, waiting for its turn.
    Waiting,
    Done,
}

impl fmt::Debug for SequencerBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequencerBlock")
            .field("n", &self.n)
            .field("state", &self.state)
            .finish()
    }
}

impl<'a> Future for SequencerBlock<'a> {
    type Output = Result<SequencerTurn<'a>, SequenceBroken>;

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (seq, n) = (self.seq, self.n);
        match self.state {
            BlockState::Done => panic!("`SequencerBlock` polled after it completed"),
            BlockState::Unpolled => {
                if !seq.claimed.borrow_mut().insert(n) {
                    panic!("trellis::testing::Sequencer: block {n} was asked for twice");
                }
                // A checkpoint, even for block 0: suspend once.
                seq.waiting.borrow_mut().insert(n, cx.waker().clone());
                self.state = BlockState::Waiting;
                if seq.next.get() == n || seq.broken.get() {
                    seq.waiting.borrow_mut().remove(&n);
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            BlockState::Waiting => {
                if seq.broken.get() {
                    seq.waiting.borrow_mut().remove(&n);
                    self.state = BlockState::Done;
                    return Poll::Ready(Err(SequenceBroken { block: n }));
                }
                if seq.next.get() == n {
                    seq.waiting.borrow_mut().remove(&n);
                    self.state = BlockState::Done;
                    return Poll::Ready(Ok(SequencerTurn { seq, n }));
                }
                seq.waiting.borrow_mut().insert(n, cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl FusedFuture for SequencerBlock<'_> {
    fn is_terminated(&self) -> bool {
        self.state == BlockState::Done
    }
}

impl Drop for SequencerBlock<'_> {
    fn drop(&mut self) {
        if self.state == BlockState::Waiting {
            self.seq.waiting.borrow_mut().remove(&self.n);
            // Cancelled before its turn: the blocks after it can never run in order.
            self.seq.break_sequence();
        }
    }
}

/// The turn of one block of a [`Sequencer`]; dropping it ends the block and lets the next
/// number run.
#[must_use = "the block ends when its turn is dropped"]
pub struct SequencerTurn<'a> {
    seq: &'a Sequencer,
    n: usize,
}

impl SequencerTurn<'_> {
    /// The number of this block.
    ///
    /// # Examples
    ///
    /// ```
    /// let seq = trellis::testing::Sequencer::new();
    /// trellis::run(async {
    ///     let turn = seq.block(0).await.unwrap();
    ///     assert_eq!(turn.number(), 0);
    /// });
    /// ```
    pub fn number(&self) -> usize {
        self.n
    }
}

impl fmt::Debug for SequencerTurn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequencerTurn").field("n", &self.n).finish()
    }
}

impl Drop for SequencerTurn<'_> {
    fn drop(&mut self) {
        let next = self.n + 1;
        self.seq.next.set(next);
        let waker = self.seq.waiting.borrow_mut().remove(&next);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A [`Sequencer`] block could not get its turn: the wait of some block was cancelled,
/// so the order the test scripted cannot happen (Trio raises `RuntimeError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceBroken {
    block: usize,
}

impl SequenceBroken {
    /// The number of the block that did not get its turn.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::testing::Sequencer;
    ///
    /// let seq = Sequencer::new();
    /// trellis::Builder::new().autojump().run(async {
    ///     // Block 1 waits for block 0 and is cancelled: the sequence is broken.
    ///     let timed_out = trellis::move_on_after(
    ///         std::time::Duration::from_secs(1),
    ///         seq.block(1),
    ///     )
    ///     .await;
    ///     assert!(timed_out.is_none());
    ///     let err = seq.block(0).await.unwrap_err();
    ///     assert_eq!(err.block(), 0);
    /// });
    /// ```
    pub fn block(&self) -> usize {
        self.block
    }
}

impl fmt::Display for SequenceBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sequencer block {} cannot run: the wait of a block was cancelled, the sequence \
             is broken",
            self.block
        )
    }
}

impl std::error::Error for SequenceBroken {}
