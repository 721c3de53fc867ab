//! [`CapacityLimiter`]: Trio's limiter of how many borrowers may hold a token at once.
//!
//! # Who is a borrower
//!
//! Trio identifies a borrower by the current task (or any hashable object, with
//! `*_on_behalf_of`). trellis has no task object to point at — a nursery polls its
//! children itself, and a task may move between nested nurseries' units — so a borrower is
//! named by a value instead, in one of two ways:
//!
//! - **a token** ([`acquire`](CapacityLimiter::acquire),
//!   [`try_acquire`](CapacityLimiter::try_acquire)): the [`LimiterToken`] *is* the
//!   borrower. Dropping it releases, so it cannot be released twice, nor by someone who did
//!   not borrow, nor leak when its task is cancelled. The common case (`async with
//!   limiter`).
//! - **an explicit [`BorrowerId`]** ([`acquire_on_behalf_of`](CapacityLimiter::acquire_on_behalf_of),
//!   [`release_on_behalf_of`](CapacityLimiter::release_on_behalf_of), …): for borrows that
//!   outlive a scope or are released by another task (Trio's use in `to_thread`). Here
//!   Trio's checks apply: a second acquire by a borrower that holds (or awaits) a token is
//!   an error, and so is releasing on behalf of a borrower that holds none.
//!
//! # State
//!
//! - `borrowed` counts the tokens out (tokens, named borrowers, and waiters handed a token
//!   that have not run yet); `total` may change at any time, also below `borrowed` (nothing
//!   is taken back; new borrows wait until `borrowed < total`).
//! - Invariant: waiters are queued only while `borrowed >= total`, so a new borrower never
//!   overtakes a waiter. [`CapacityLimiter::set_total_tokens`] and every release restore it
//!   by handing tokens to the oldest waiters.
//! - `named` holds every explicit borrower that holds a token or waits for one; a waiting
//!   one turns to `Handed` when the token is handed to it (so the counts are right before
//!   it runs), and to `Holding` when its future runs. A waiter handed a token but dropped
//!   before it ran releases it, to the next — only while its borrower's entry still says
//!   `Handed` to that waiter: a `release_on_behalf_of` in between released the token
//!   already, and the borrower may even hold a new one since.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_core::FusedFuture;

use crate::sync::waiters::{WaiterKey, Waiters};

/// Limits how many borrowers hold one of its tokens at once (Trio's `CapacityLimiter`).
///
/// Like a [`Semaphore`](crate::Semaphore), but each token belongs to a borrower, which
/// makes double borrows and foreign releases errors, and the number of tokens can change
/// while it is in use ([`set_total_tokens`](Self::set_total_tokens)). Waiters get tokens
/// in FIFO order.
///
/// # Borrowers
///
/// Trio names a borrower by its task. trellis has no task object to point at (a nursery
/// polls its children itself), so a borrower is a value, in one of two ways:
///
/// - **A token**: [`acquire`](Self::acquire) and [`try_acquire`](Self::try_acquire) give a
///   [`LimiterToken`], which *is* the borrower. Dropping it releases, so it cannot be
///   released twice or by another borrower, nor leak when its task is cancelled. This is
///   Trio's `async with limiter`, and the common case.
/// - **A [`BorrowerId`]**: [`acquire_on_behalf_of`](Self::acquire_on_behalf_of) and
///   [`release_on_behalf_of`](Self::release_on_behalf_of) (and their `try_` form) borrow
///   for an id, for a borrow that outlives a scope or is released by another task. Trio's
///   checks apply: acquiring for an id that holds (or waits for) a token, or releasing for
///   one that holds none, is a [`LimiterError`].
///
/// It is `!Send`: tasks of one runtime share it by reference or in an `Rc`.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::time::Duration;
/// use trellis::CapacityLimiter;
///
/// let limiter = CapacityLimiter::new(3).unwrap();
/// let most = Cell::new(0);
/// trellis::Builder::new().autojump().run(async {
///     trellis::nursery(async |n| {
///         for _ in 0..10 {
///             n.spawn(async {
///                 let _token = limiter.acquire().await;
///                 most.set(most.get().max(limiter.borrowed_tokens()));
///                 trellis::sleep(Duration::from_secs(1)).await;
///             });
///         }
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(most.get(), 3);
/// ```
pub struct CapacityLimiter {
    total: Cell<usize>,
    /// Tokens out (see the module docs).
    borrowed: Cell<usize>,
    /// Explicit borrowers, and where each one's borrow stands.
    named: RefCell<HashMap<BorrowerId, Borrow>>,
    /// The waiting futures, with their explicit borrower (`None`: a token's).
    waiters: RefCell<Waiters<Option<BorrowerId>>>,
}

impl fmt::Debug for CapacityLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapacityLimiter")
            .field("total_tokens", &self.total_tokens())
            .field("borrowed_tokens", &self.borrowed_tokens())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl CapacityLimiter {
    /// A limiter with `total_tokens` tokens, none borrowed.
    ///
    /// # Errors
    ///
    /// [`LimiterError::ZeroTotalTokens`] when `total_tokens` is 0: it must be at least 1
    /// (as in Trio before 0.32; Trio 0.32 allows 0, a limiter that lets nobody through
    /// until its total is raised, which trellis does not).
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(4).unwrap();
    /// assert_eq!(limiter.total_tokens(), 4);
    /// assert!(trellis::CapacityLimiter::new(0).is_err());
    /// ```
    pub fn new(total_tokens: usize) -> Result<CapacityLimiter, LimiterError> {
        if total_tokens == 0 {
            return Err(LimiterError::ZeroTotalTokens);
        }
        Ok(CapacityLimiter {
            total: Cell::new(total_tokens),
            borrowed: Cell::new(0),
            named: RefCell::new(HashMap::new()),
            waiters: RefCell::new(Waiters::new()),
        })
    }

    /// The number of tokens.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(trellis::CapacityLimiter::new(2).unwrap().total_tokens(), 2);
    /// ```
    pub fn total_tokens(&self) -> usize {
        self.total.get()
    }

    /// Changes the number of tokens. More tokens are handed to waiters at once, oldest
    /// first; fewer take nothing back: borrowers keep their tokens, and new ones wait until
    /// enough are released.
    ///
    /// # Errors
    ///
    /// [`LimiterError::ZeroTotalTokens`] for 0; nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(1).unwrap();
    /// let a = limiter.try_acquire().unwrap();
    /// assert!(limiter.try_acquire().is_err());
    /// limiter.set_total_tokens(2).unwrap();
    /// let b = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.borrowed_tokens(), 2);
    /// assert!(limiter.set_total_tokens(0).is_err());
    /// # drop((a, b));
    /// ```
    pub fn set_total_tokens(&self, total_tokens: usize) -> Result<(), LimiterError> {
        if total_tokens == 0 {
            return Err(LimiterError::ZeroTotalTokens);
        }
        self.total.set(total_tokens);
        self.hand_out();
        Ok(())
    }

    /// The tokens borrowed now (also those handed to waiters that have not run yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(2).unwrap();
    /// let _token = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.borrowed_tokens(), 1);
    /// ```
    pub fn borrowed_tokens(&self) -> usize {
        self.borrowed.get()
    }

    /// The tokens free now: `total_tokens - borrowed_tokens`, or 0 when the total was
    /// lowered below what is borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(2).unwrap();
    /// let _token = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.available_tokens(), 1);
    /// ```
    pub fn available_tokens(&self) -> usize {
        self.total.get().saturating_sub(self.borrowed.get())
    }

    /// How many borrowers wait for a token (Trio's `statistics().tasks_waiting`).
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(1).unwrap();
    /// trellis::Builder::new().autojump().run(async {
    ///     let token = limiter.acquire().await;
    ///     trellis::nursery(async |n| {
    ///         n.spawn(async {
    ///             let _ = limiter.acquire().await;
    ///         });
    ///         trellis::yield_now().await; // the child runs and queues
    ///         assert_eq!(limiter.waiting(), 1);
    ///         drop(token); // hands the token to the child
    ///         assert_eq!(limiter.waiting(), 0);
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Whether `borrower` holds a token (one handed to it while it waited counts).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{BorrowerId, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(1).unwrap();
    /// let me = BorrowerId::new();
    /// limiter.try_acquire_on_behalf_of(me).unwrap();
    /// assert!(limiter.is_borrowing(me));
    /// limiter.release_on_behalf_of(me).unwrap();
    /// assert!(!limiter.is_borrowing(me));
    /// ```
    pub fn is_borrowing(&self, borrower: BorrowerId) -> bool {
        matches!(
            self.named.borrow().get(&borrower),
            Some(Borrow::Handed(_) | Borrow::Holding)
        )
    }

    /// Waits for a token and gives it, as a [`LimiterToken`] that releases it when
    /// dropped (Trio's `async with limiter`).
    ///
    /// A free token is taken at the first poll, without suspending (not a checkpoint,
    /// unlike Trio's). Otherwise the borrower queues, and tokens are handed to waiters in
    /// the order they queued.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe, and nothing is lost: dropping the future while it is queued takes it
    /// out of the queue; dropping it after a token was handed to it, before it ran, passes
    /// the token on to the next waiter (or back to the limiter).
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(1).unwrap();
    /// trellis::run(async {
    ///     let token = limiter.acquire().await;
    ///     assert_eq!(limiter.available_tokens(), 0);
    ///     drop(token);
    /// });
    /// assert_eq!(limiter.available_tokens(), 1);
    /// ```
    pub fn acquire(&self) -> LimiterAcquire<'_> {
        LimiterAcquire {
            waiting: Waiting::new(self, None),
        }
    }

    /// Takes a free token, without waiting (Trio's `acquire_nowait`).
    ///
    /// # Errors
    ///
    /// [`LimiterError::WouldBlock`] when no token is free, or tokens are free but borrowers
    /// wait for them (they come first).
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(1).unwrap();
    /// let token = limiter.try_acquire().unwrap();
    /// assert_eq!(limiter.try_acquire().unwrap_err(), trellis::LimiterError::WouldBlock);
    /// drop(token);
    /// ```
    pub fn try_acquire(&self) -> Result<LimiterToken<'_>, LimiterError> {
        if self.take_free() {
            Ok(LimiterToken { limiter: self })
        } else {
            Err(LimiterError::WouldBlock)
        }
    }

    /// Waits for a token on behalf of `borrower`, which keeps it until
    /// [`release_on_behalf_of`](Self::release_on_behalf_of) (Trio's
    /// `acquire_on_behalf_of`).
    ///
    /// The checks are made at the first poll, and a free token is taken then, without
    /// suspending.
    ///
    /// # Errors
    ///
    /// [`LimiterError::AlreadyBorrowing`] when `borrower` already holds a token of this
    /// limiter, or waits for one.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe, and nothing is lost: dropping the future while it is queued takes
    /// `borrower` out of the queue; dropping it after a token was handed to it, before it
    /// ran, releases the token again (to the next waiter), so `borrower` holds nothing.
    /// Once the future has completed, the token is `borrower`'s until released by hand:
    /// a cancellation after that does not release it (use [`acquire`](Self::acquire) for
    /// a token tied to a scope).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{BorrowerId, CapacityLimiter, LimiterError};
    ///
    /// let limiter = CapacityLimiter::new(2).unwrap();
    /// let job = BorrowerId::new();
    /// trellis::run(async {
    ///     limiter.acquire_on_behalf_of(job).await.unwrap();
    ///     let again = limiter.acquire_on_behalf_of(job).await;
    ///     assert_eq!(again, Err(LimiterError::AlreadyBorrowing));
    /// });
    /// limiter.release_on_behalf_of(job).unwrap(); // maybe from another task
    /// ```
    pub fn acquire_on_behalf_of(&self, borrower: BorrowerId) -> BorrowerAcquire<'_> {
        BorrowerAcquire {
            waiting: Waiting::new(self, Some(borrower)),
        }
    }

    /// Takes a free token on behalf of `borrower`, without waiting (Trio's
    /// `acquire_on_behalf_of_nowait`).
    ///
    /// # Errors
    ///
    /// [`LimiterError::AlreadyBorrowing`] when `borrower` already holds (or waits for) a
    /// token of this limiter; [`LimiterError::WouldBlock`] when none is free for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{BorrowerId, CapacityLimiter, LimiterError};
    ///
    /// let limiter = CapacityLimiter::new(1).unwrap();
    /// let (a, b) = (BorrowerId::new(), BorrowerId::new());
    /// limiter.try_acquire_on_behalf_of(a).unwrap();
    /// assert_eq!(limiter.try_acquire_on_behalf_of(a), Err(LimiterError::AlreadyBorrowing));
    /// assert_eq!(limiter.try_acquire_on_behalf_of(b), Err(LimiterError::WouldBlock));
    /// ```
    pub fn try_acquire_on_behalf_of(&self, borrower: BorrowerId) -> Result<(), LimiterError> {
        if self.named.borrow().contains_key(&borrower) {
            return Err(LimiterError::AlreadyBorrowing);
        }
        if !self.take_free() {
            return Err(LimiterError::WouldBlock);
        }
        self.named.borrow_mut().insert(borrower, Borrow::Holding);
        Ok(())
    }

    /// Releases the token `borrower` holds: hands it to the oldest waiter, or frees it
    /// (Trio's `release_on_behalf_of`).
    ///
    /// A token handed to the borrower's waiting acquire counts as held (see
    /// [`is_borrowing`](Self::is_borrowing)), so releasing it before that acquire has run is
    /// allowed: the token is released once, the acquire then completes with `Ok` holding
    /// nothing (as if it had run just before the release), and dropping it instead releases
    /// nothing more.
    ///
    /// # Errors
    ///
    /// [`LimiterError::NotBorrowing`] when `borrower` holds no token of this limiter (it
    /// never borrowed, released already, or is still waiting); nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::{BorrowerId, CapacityLimiter, LimiterError};
    ///
    /// let limiter = CapacityLimiter::new(1).unwrap();
    /// let me = BorrowerId::new();
    /// limiter.try_acquire_on_behalf_of(me).unwrap();
    /// limiter.release_on_behalf_of(me).unwrap();
    /// assert_eq!(limiter.release_on_behalf_of(me), Err(LimiterError::NotBorrowing));
    /// ```
    pub fn release_on_behalf_of(&self, borrower: BorrowerId) -> Result<(), LimiterError> {
        {
            let mut named = self.named.borrow_mut();
            if !matches!(
                named.get(&borrower),
                Some(Borrow::Handed(_) | Borrow::Holding)
            ) {
                return Err(LimiterError::NotBorrowing);
            }
            named.remove(&borrower);
        }
        self.release();
        Ok(())
    }

    /// Takes a free token if one is free and nobody waits.
    fn take_free(&self) -> bool {
        let borrowed = self.borrowed.get();
        if borrowed >= self.total.get() || !self.waiters.borrow().is_empty() {
            return false;
        }
        self.borrowed.set(borrowed + 1);
        true
    }

    /// A token comes back.
    fn release(&self) {
        self.borrowed.set(self.borrowed.get() - 1);
        self.hand_out();
    }

    /// Hands free tokens to the oldest waiters, while both last.
    fn hand_out(&self) {
        loop {
            if self.borrowed.get() >= self.total.get() {
                return;
            }
            let next = self.waiters.borrow_mut().notify_front();
            let Some((key, waker)) = next else {
                return;
            };
            self.borrowed.set(self.borrowed.get() + 1);
            let borrower = *self.waiters.borrow_mut().data_mut(key);
            if let Some(id) = borrower {
                self.named.borrow_mut().insert(id, Borrow::Handed(key));
            }
            waker.wake();
        }
    }
}

/// Where an explicit borrower's borrow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Borrow {
    /// Queued for a token, as this waiter.
    Waiting(WaiterKey),
    /// A token was handed to this waiter, which has not run yet (counted as held).
    Handed(WaiterKey),
    /// Holds a token.
    Holding,
}

/// The waiting shared by [`LimiterAcquire`] and [`BorrowerAcquire`].
struct Waiting<'a> {
    limiter: &'a CapacityLimiter,
    borrower: Option<BorrowerId>,
    key: Option<WaiterKey>,
    done: bool,
}

impl fmt::Debug for Waiting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiting")
            .field("limiter", self.limiter)
            .field("borrower", &self.borrower)
            .field("queued", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<'a> Waiting<'a> {
    fn new(limiter: &'a CapacityLimiter, borrower: Option<BorrowerId>) -> Self {
        Waiting {
            limiter,
            borrower,
            key: None,
            done: false,
        }
    }

    /// `Ready(Ok)` once a token is this borrower's.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LimiterError>> {
        let limiter = self.limiter;
        match self.key {
            Some(key) => {
                let mut waiters = limiter.waiters.borrow_mut();
                if !waiters.is_notified(key) {
                    waiters.set_waker(key, cx.waker());
                    return Poll::Pending;
                }
                // A token was handed to us (counted, and the borrower marked handed).
                waiters.remove(key);
                drop(waiters);
                self.key = None;
                if let Some(id) = self.borrower {
                    let mut named = limiter.named.borrow_mut();
                    // Unless released on its behalf since (then it holds nothing, as
                    // after any release, or a new borrow of its own).
                    if named.get(&id) == Some(&Borrow::Handed(key)) {
                        named.insert(id, Borrow::Holding);
                    }
                }
            }
            None => {
                if let Some(id) = self.borrower {
                    if limiter.named.borrow().contains_key(&id) {
                        self.done = true;
                        return Poll::Ready(Err(LimiterError::AlreadyBorrowing));
                    }
                }
                if limiter.take_free() {
                    if let Some(id) = self.borrower {
                        limiter.named.borrow_mut().insert(id, Borrow::Holding);
                    }
                } else {
                    let key = limiter
                        .waiters
                        .borrow_mut()
                        .push(self.borrower, cx.waker().clone());
                    if let Some(id) = self.borrower {
                        limiter.named.borrow_mut().insert(id, Borrow::Waiting(key));
                    }
                    self.key = Some(key);
                    return Poll::Pending;
                }
            }
        }
        self.done = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let removed = self.limiter.waiters.borrow_mut().remove(key);
        let ours = match removed.data {
            // A borrower's entry is this waiter's only while it names it: a release on the
            // borrower's behalf may have come in between (and a new borrow after it).
            Some(id) => {
                let mut named = self.limiter.named.borrow_mut();
                let ours = matches!(
                    named.get(&id),
                    Some(&Borrow::Waiting(k) | &Borrow::Handed(k)) if k == key
                );
                if ours {
                    named.remove(&id);
                }
                ours
            }
            None => true,
        };
        if removed.notified && ours {
            // Handed a token but gone before it ran: pass it on.
            self.limiter.release();
        }
    }
}

/// The future returned by [`CapacityLimiter::acquire`]; gives a [`LimiterToken`].
///
/// # Cancellation
///
/// Cancel-safe: dropped while queued, it leaves the queue; dropped after a token was
/// handed to it, it passes the token on to the next waiter (or back to the limiter).
#[must_use = "a LimiterAcquire does nothing unless awaited"]
#[derive(Debug)]
pub struct LimiterAcquire<'a> {
    waiting: Waiting<'a>,
}

impl<'a> Future for LimiterAcquire<'a> {
    type Output = LimiterToken<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LimiterToken<'a>> {
        let limiter = self.waiting.limiter;
        self.waiting.poll(cx).map(|granted| {
            debug_assert!(granted.is_ok(), "a token's borrow has no errors");
            LimiterToken { limiter }
        })
    }
}

/// `futures::select!` and other `futures-core` combinators take a `LimiterAcquire` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let limiter = trellis::CapacityLimiter::new(1).unwrap();
/// trellis::run(async {
///     let mut acquire = limiter.acquire();
///     assert!(!acquire.is_terminated());
///     let _token = (&mut acquire).await;
///     assert!(acquire.is_terminated());
/// });
/// ```
impl FusedFuture for LimiterAcquire<'_> {
    /// True once it has given the token.
    fn is_terminated(&self) -> bool {
        self.waiting.done
    }
}

/// The future returned by [`CapacityLimiter::acquire_on_behalf_of`].
///
/// # Cancellation
///
/// Cancel-safe: dropped while queued, its borrower leaves the queue; dropped after a token
/// was handed to it, the token is released again (to the next waiter), and the borrower
/// holds nothing.
#[must_use = "a BorrowerAcquire does nothing unless awaited"]
#[derive(Debug)]
pub struct BorrowerAcquire<'a> {
    waiting: Waiting<'a>,
}

impl Future for BorrowerAcquire<'_> {
    type Output = Result<(), LimiterError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LimiterError>> {
        self.waiting.poll(cx)
    }
}

/// `futures::select!` and other `futures-core` combinators take a `BorrowerAcquire`
/// without `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
///
/// let limiter = trellis::CapacityLimiter::new(1).unwrap();
/// trellis::run(async {
///     let mut acquire = limiter.acquire_on_behalf_of(trellis::BorrowerId::new());
///     assert!(!acquire.is_terminated());
///     (&mut acquire).await.unwrap();
///     assert!(acquire.is_terminated());
/// });
/// ```
impl FusedFuture for BorrowerAcquire<'_> {
    /// True once it has completed.
    fn is_terminated(&self) -> bool {
        self.waiting.done
    }
}

/// A token of a [`CapacityLimiter`], which is its own borrower; dropping it releases the
/// token (to the oldest waiter, if any).
///
/// # Examples
///
/// ```
/// let limiter = trellis::CapacityLimiter::new(1).unwrap();
/// let token = limiter.try_acquire().unwrap();
/// assert_eq!(limiter.borrowed_tokens(), 1);
/// drop(token);
/// assert_eq!(limiter.borrowed_tokens(), 0);
/// ```
#[must_use = "the token is released as soon as it is dropped"]
pub struct LimiterToken<'a> {
    limiter: &'a CapacityLimiter,
}

impl fmt::Debug for LimiterToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterToken")
            .field("limiter", self.limiter)
            .finish()
    }
}

impl Drop for LimiterToken<'_> {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

thread_local! {
    /// The last id given out on this thread.
    static LAST_BORROWER: Cell<u64> = const { Cell::new(0) };
}

/// Names a borrower of a [`CapacityLimiter`] for the `*_on_behalf_of` methods (Trio's
/// `borrower` argument).
///
/// Each [`BorrowerId::new`] is distinct from every other id of its thread. Like the
/// limiter, it is `!Send`: ids are only compared on the runtime's thread.
///
/// # Examples
///
/// ```
/// use trellis::BorrowerId;
///
/// let (a, b) = (BorrowerId::new(), BorrowerId::new());
/// assert_ne!(a, b);
/// assert_eq!(a, a.clone());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BorrowerId {
    id: u64,
    _not_send: PhantomData<Rc<()>>,
}

impl BorrowerId {
    #[allow(
        clippy::new_without_default,
        reason = "each call makes a different id; `Default` would read as a fixed value"
    )]
    /// A new id, distinct from every other id made on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let limiter = trellis::CapacityLimiter::new(1).unwrap();
    /// let worker = trellis::BorrowerId::new();
    /// limiter.try_acquire_on_behalf_of(worker).unwrap();
    /// assert!(limiter.is_borrowing(worker));
    /// ```
    pub fn new() -> BorrowerId {
        let id = LAST_BORROWER.with(|last| {
            let id = last.get() + 1;
            last.set(id);
            id
        });
        BorrowerId {
            id,
            _not_send: PhantomData,
        }
    }
}

/// What went wrong with a [`CapacityLimiter`].
///
/// # Examples
///
/// ```
/// use trellis::{BorrowerId, CapacityLimiter, LimiterError};
///
/// let limiter = CapacityLimiter::new(1).unwrap();
/// let err = limiter.release_on_behalf_of(BorrowerId::new()).unwrap_err();
/// assert_eq!(err, LimiterError::NotBorrowing);
/// println!("{err}"); // this borrower holds no token of the capacity limiter; ...
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimiterError {
    /// A `try_` method found no token free for it.
    WouldBlock,
    /// The borrower already holds a token of this limiter, or waits for one.
    AlreadyBorrowing,
    /// The borrower holds no token of this limiter.
    NotBorrowing,
    /// A limiter's `total_tokens` must be at least 1.
    ZeroTotalTokens,
}

impl fmt::Display for LimiterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimiterError::WouldBlock => {
                "no token of the capacity limiter is free (or borrowers wait for the free \
                 ones); await `acquire` to queue for one"
            }
            LimiterError::AlreadyBorrowing => {
                "this borrower already holds a token of the capacity limiter, or waits for \
                 one; release it first, or borrow on behalf of another `BorrowerId`"
            }
            LimiterError::NotBorrowing => {
                "this borrower holds no token of the capacity limiter (it never borrowed one, \
                 released it already, or is still waiting); release only what was borrowed, \
                 once"
            }
            LimiterError::ZeroTotalTokens => {
                "total_tokens must be >= 1: a capacity limiter with no tokens would block \
                 every borrower forever"
            }
        })
    }
}

impl std::error::Error for LimiterError {}
