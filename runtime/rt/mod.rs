//! The engine: one runtime per thread. Its state ([`Core`](state::Core)), the executor
//! loop and [`Builder`](executor::Builder), the reactor on `polling`, the clock, the
//! timer queue, the sleeping futures and intervals, the worker threads of `to_thread`, the
//! deadlock report of the mock clock, the idle waiters of
//! `testing::wait_all_tasks_blocked` (`idle.rs`), and the inbox of work other threads send
//! through a `RuntimeHandle` (`inbox.rs`, for `from_thread`).
//!
//! It knows nothing of nurseries or scopes: a timer wakes a waker or expires an
//! [`Expire`](timers::Expire) target that the layer above implements; the deadlock report
//! takes sections that the layer above registers. It imports only `context` (the root task
//! runs in a context of its own).

// Not `forbid`: the reactor opts in to `unsafe`; every other file forbids it itself.

pub(crate) mod clock;
pub(crate) mod deadlock;
pub(crate) mod executor;
pub(crate) mod idle;
pub(crate) mod inbox;
pub(crate) mod interval;
pub(crate) mod pool;
// The one module that may use `unsafe`: registration with `polling`.
pub(crate) mod reactor;
pub(crate) mod shuffle;
pub(crate) mod sleep;
pub(crate) mod state;
pub(crate) mod timers;
