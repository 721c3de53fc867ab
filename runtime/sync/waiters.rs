//! The FIFO queue of waiting tasks that every primitive of `sync/` is built on.
//!
//! # State
//!
//! A [`Waiters`] holds one entry per waiting future, in a slab, each with the future's
//! waker and a payload of the primitive's choosing (a borrower for the capacity limiter).
//! An entry is in one of two states:
//!
//! - **queued**: linked into the FIFO list (`head` … `tail`); [`Waiters::len`] counts these;
//! - **notified**: unlinked by [`notify_front`](Waiters::notify_front) or
//!   [`notify_all`](Waiters::notify_all), and given what it waited for (the lock, a permit, a
//!   token, the event). It stays in the slab until its future sees it (at its next poll) or
//!   is dropped.
//!
//! # Invariants
//!
//! - A [`WaiterKey`] belongs to exactly one future, which removes its entry exactly once
//!   ([`Waiters::remove`]: in its poll, once notified, or in its `Drop`). So a key is never
//!   reused while its future still holds it.
//! - Notification is strictly FIFO: entries are notified in the order they were pushed.
//! - **Hand-off**: a notified entry has been *given* something. When its future is dropped
//!   before it ran, `remove` says so (`Removed::notified`), and the primitive gives the
//!   same thing to the next queued entry (or back to its own count): nothing is lost and
//!   no one starves. Each primitive does that with the same code as its release.
//! - Wakers are returned to the caller, not called here, so that primitives can wake
//!   after their `RefCell` borrow ends: a waker that runs arbitrary code (another
//!   executor's) then cannot re-enter a primitive that is still borrowed.

#![forbid(unsafe_code)]

use std::marker::PhantomData;
use std::rc::Rc;
use std::task::Waker;

use slab::Slab;

/// The key of one waiting future's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterKey(usize);

/// A FIFO queue of waiting futures (see the module docs for its states and invariants).
#[derive(Debug)]
pub(crate) struct Waiters<T = ()> {
    entries: Slab<Entry<T>>,
    /// The oldest queued entry: the next to be notified.
    head: Option<usize>,
    /// The youngest queued entry.
    tail: Option<usize>,
    /// How many entries are queued (not yet notified).
    queued: usize,
    /// The primitives belong to one runtime's thread; this keeps them `!Send`.
    _not_send: PhantomData<Rc<()>>,
}

#[derive(Debug)]
struct Entry<T> {
    data: T,
    waker: Option<Waker>,
    link: Link,
}

#[derive(Debug, Clone, Copy)]
enum Link {
    Queued {
        prev: Option<usize>,
        next: Option<usize>,
    },
    Notified,
}

/// What [`Waiters::remove`] took out.
#[derive(Debug)]
pub(crate) struct Removed<T> {
    pub(crate) data: T,
    /// The entry had been notified (given the lock, a permit, …) but its future had not
    /// seen it: the caller must pass that on.
    pub(crate) notified: bool,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Waiters<T> {
    pub(crate) const fn new() -> Self {
        Waiters {
            entries: Slab::new(),
            head: None,
            tail: None,
            queued: 0,
            _not_send: PhantomData,
        }
    }

    /// How many entries wait (queued, not yet notified).
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a new entry at the back.
    pub(crate) fn push(&mut self, data: T, waker: Waker) -> WaiterKey {
        let prev = self.tail;
        let key = self.entries.insert(Entry {
            data,
            waker: Some(waker),
            link: Link::Queued { prev, next: None },
        });
        match prev {
            Some(p) => self.set_next(p, Some(key)),
            None => self.head = Some(key),
        }
        self.tail = Some(key);
        self.queued += 1;
        WaiterKey(key)
    }

    /// Whether the entry has been notified.
    pub(crate) fn is_notified(&self, key: WaiterKey) -> bool {
        matches!(self.entries[key.0].link, Link::Notified)
    }

    /// Records the waker of the entry's latest poll (cloned only when it changed).
    pub(crate) fn set_waker(&mut self, key: WaiterKey, waker: &Waker) {
        let slot = &mut self.entries[key.0].waker;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// The payload of an entry.
    pub(crate) fn data_mut(&mut self, key: WaiterKey) -> &mut T {
        &mut self.entries[key.0].data
    }

    /// Notifies the oldest queued entry and returns its key and the waker to wake (after
    /// the caller's borrow ends); `None` when nothing is queued.
    pub(crate) fn notify_front(&mut self) -> Option<(WaiterKey, Waker)> {
        let key = self.head?;
        self.unlink(key);
        let entry = &mut self.entries[key];
        entry.link = Link::Notified;
        let waker = entry.waker.take().expect("a queued entry has a waker");
        Some((WaiterKey(key), waker))
    }

    /// Notifies every queued entry, oldest first; returns their wakers.
    pub(crate) fn notify_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::with_capacity(self.queued);
        while let Some((_, waker)) = self.notify_front() {
            wakers.push(waker);
        }
        wakers
    }

    /// Takes the entry out (queued or notified); the future that held `key` must not use it
    /// again.
    pub(crate) fn remove(&mut self, key: WaiterKey) -> Removed<T> {
        let notified = self.is_notified(key);
        if !notified {
            self.unlink(key.0);
        }
        let entry = self.entries.remove(key.0);
        Removed {
            data: entry.data,
            notified,
        }
    }

    fn set_next(&mut self, key: usize, next: Option<usize>) {
        if let Link::Queued { next: n, .. } = &mut self.entries[key].link {
            *n = next;
        }
    }

    fn set_prev(&mut self, key: usize, prev: Option<usize>) {
        if let Link::Queued { prev: p, .. } = &mut self.entries[key].link {
            *p = prev;
        }
    }

    /// Takes a queued entry out of the FIFO list (it stays in the slab).
    fn unlink(&mut self, key: usize) {
        let Link::Queued { prev, next } = self.entries[key].link else {
            unreachable!("unlinking an entry that is not queued");
        };
        match prev {
            Some(p) => self.set_next(p, next),
            None => self.head = next,
        }
        match next {
            Some(n) => self.set_prev(n, prev),
            None => self.tail = prev,
        }
        self.entries[key].link = Link::Notified;
        self.queued -= 1;
    }
}

/// Wakes what a notification returned, once the primitive's borrow has ended.
pub(crate) fn wake_all(wakers: impl IntoIterator<Item = Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn fifo_order_and_removal_from_the_middle() {
        let mut w: Waiters<u32> = Waiters::new();
        let keys: Vec<_> = (0..4).map(|i| w.push(i, Waker::noop().clone())).collect();
        assert_eq!(w.len(), 4);
        let removed = w.remove(keys[1]);
        assert_eq!((removed.data, removed.notified), (1, false));
        let (k, _) = w.notify_front().unwrap();
        assert_eq!(k, keys[0]);
        assert!(w.is_notified(k));
        assert_eq!(*w.data_mut(k), 0);
        let removed = w.remove(keys[0]);
        assert!(removed.notified);
        assert_eq!(w.notify_all().len(), 2);
        assert!(w.is_empty());
        assert!(w.is_notified(keys[2]) && w.is_notified(keys[3]));
        let tail = w.remove(keys[3]);
        assert_eq!((tail.data, tail.notified), (3, true));
        let k = w.push(9, Waker::noop().clone());
        assert_eq!(w.notify_front().map(|(key, _)| key), Some(k));
        assert_eq!(w.remove(k).data, 9);
        assert!(w.notify_front().is_none());
    }
}
