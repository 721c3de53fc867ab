//! Synchronisation between the tasks of one runtime, with Trio's names and semantics:
//! events, locks, semaphores, capacity limiters, conditions and memory channels.
//!
//! Everything here is `!Send` and belongs to one runtime: the state sits in `Rc`/`Cell`,
//! with no atomics on the fast path. A waiter dropped while queued (a cancelled task)
//! loses nothing and leaves no one starved: what it was given passes to the next waiter.

#![forbid(unsafe_code)]

pub(crate) mod channel;
