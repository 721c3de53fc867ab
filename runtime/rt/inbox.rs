//! Work sent to a runtime by other threads (the engine side of `from_thread`), and the
//! system tasks that work starts.
//!
//! # State
//!
//! - [`Mailbox`] (an `Arc` shared by the runtime and every handle to it): a FIFO of
//!   [`Job`]s, `closed` and the root's waker (dropped at close, so a handle that outlives
//!   its runtime does not keep the poller's file descriptors open), under one mutex; `pending`, an atomic flag raised whenever the
//!   executor has something to do here (a job arrived, a system task was woken);
//!   `callbacks`, how many `to_thread` workers of this runtime are blocked in a call they
//!   sent here (see "Autojump" below).
//! - [`Inbox`] (owned by `Core`): the mailbox, `active` (a `Cell`: a handle was made, so
//!   the executor looks at `pending`), and the system tasks: the futures jobs started,
//!   each with its own wake flag, polled by the executor beside the root. They are few
//!   (one per `from_thread` call in flight), so the executor scans their flags.
//! - A job runs on the runtime's thread and returns the system task to start, if any.
//!   What a job does with its result (hand it to the blocked caller) is the layer above's
//!   business (`thread.rs`); a job dropped without running must tell its caller itself
//!   (its captured reply does, when dropped).
//!
//! # Invariants
//!
//! 1. While `active` is false, no handle was ever made and nothing can arrive: the
//!    executor's checks read one `Cell` and touch no atomic, so a runtime that never uses
//!    `from_thread` pays nothing.
//! 2. Every job is run once or dropped once, on the runtime's thread, and so is every
//!    system task; each under `catch_unwind`, so that nothing sent from another thread can
//!    unwind the runtime (the layer above sends the user's panics to the caller). Once `closed` is
//!    set (under the lock, by [`Inbox::close`] when the runtime ends), no job enters the
//!    queue: [`Mailbox::submit`] gives it back, and the caller reports that the runtime is
//!    gone. `close` drops the queued jobs and the system tasks, so every caller is told.
//! 3. A wake is never lost: a sender raises `pending` (SeqCst) and then reads `parked`;
//!    the executor announces `parked` and then re-reads `pending` before blocking
//!    (`rt/executor.rs`), so either it sees the flag or the sender calls
//!    `Poller::notify` (`Thread::unpark` while the runtime has no poller). The executor lowers `pending` before it drains the queue and
//!    polls the flags, so work that arrives meanwhile raises it again.
//!
//! # Autojump
//!
//! A `to_thread` call in flight holds autojump back (`Core::thread_work`). A worker that
//! is blocked in `from_thread` waits for the runtime, not the other way round: if the work
//! it sent waits for a timer, time must jump. So a job sent by a worker of this runtime
//! raises `callbacks` (under the lock, after `pending`), and the runtime's thread lowers
//! it once the job's reply is delivered or the job is dropped; the executor counts thread
//! work as in flight only while `thread_work > callbacks`. (A call abandoned by its caller
//! no longer counts in `thread_work` while its worker may still be blocked here; then the
//! difference undercounts by one, and another call in flight may see time jump.)

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use crate::rt::deadlock::deadlock_report;
use crate::rt::state::{RootWake, RuntimeId};

/// A future started on the runtime by a job, polled beside the root.
pub(crate) type SystemTask = Pin<Box<dyn Future<Output = ()>>>;

/// Work for the runtime's thread; returns the system task to start, if any.
pub(crate) type Job = Box<dyn FnOnce() -> Option<SystemTask> + Send>;

/// A job and whether a `to_thread` worker of this runtime is blocked waiting for it.
struct Queued {
    job: Job,
    from_worker: bool,
}

struct MailState {
    jobs: VecDeque<Queued>,
    /// The runtime has ended: nothing enters the queue any more.
    closed: bool,
    /// The root's waker, to notify a parked executor; `None` once closed, so that a handle
    /// kept after its runtime ended does not keep the runtime's poller (its file
    /// descriptors) alive.
    root: Option<Arc<RootWake>>,
}

/// What the runtime and every handle to it share.
pub(crate) struct Mailbox {
    /// The executor has something to do here (invariant 3).
    pending: AtomicBool,
    state: Mutex<MailState>,
    /// Workers of this runtime blocked in a job they sent (see "Autojump").
    callbacks: AtomicUsize,
    id: RuntimeId,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("id", &self.id)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("closed", &self.lock().closed)
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, MailState> {
        // Nothing panics while the lock is held (jobs run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runtime this mailbox belongs to.
    pub(crate) fn id(&self) -> RuntimeId {
        self.id
    }

    /// Whether the runtime has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Queues `job` and wakes the runtime; gives it back when the runtime has ended.
    /// `from_worker`: the caller is a `to_thread` worker of this runtime that will block
    /// until the job's reply (see "Autojump").
    pub(crate) fn submit(&self, job: Job, from_worker: bool) -> Result<(), Job> {
        let mut state = self.lock();
        if state.closed {
            return Err(job);
        }
        state.jobs.push_back(Queued { job, from_worker });
        // Under the lock, `pending` before `callbacks`: an executor that sees the count
        // raised also sees that work is pending, and does not jump time past it.
        self.pending.store(true, Ordering::SeqCst);
        if from_worker {
            self.callbacks.fetch_add(1, Ordering::SeqCst);
        }
        // Under the lock, which `close` takes too: the root is still there.
        if let Some(root) = &state.root {
            unpark(root);
        }
        Ok(())
    }
}

/// Wakes a parked executor (invariant 3): `Poller::notify`, or `Thread::unpark` while the
/// runtime has no poller (`RootWake::unpark`). From the runtime's own thread `parked` is
/// never set, so no system call is made.
fn unpark(root: &RootWake) {
    root.unpark();
}

/// The waker of one system task.
struct TaskWake {
    woken: AtomicBool,
    mailbox: Arc<Mailbox>,
    root: Arc<RootWake>,
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.mailbox.pending.store(true, Ordering::SeqCst);
        unpark(&self.root);
    }
}

struct Running {
    wake: Arc<TaskWake>,
    task: SystemTask,
    /// Its job came from a worker counted in `callbacks`.
    from_worker: bool,
}

/// The runtime's side: its mailbox and the system tasks started from it.
pub(crate) struct Inbox {
    /// Invariant 1.
    active: Cell<bool>,
    mailbox: Arc<Mailbox>,
    /// For the system tasks' wakers.
    root: Arc<RootWake>,
    tasks: RefCell<Vec<Running>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("active", &self.active.get())
            .field("system_tasks", &self.tasks.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// The inbox of the runtime `id`, whose root is woken through `root`.
    pub(crate) fn new(id: RuntimeId, root: Arc<RootWake>) -> Inbox {
        Inbox {
            active: Cell::new(false),
            mailbox: Arc::new(Mailbox {
                pending: AtomicBool::new(false),
                state: Mutex::new(MailState {
                    jobs: VecDeque::new(),
                    closed: false,
                    root: Some(root.clone()),
                }),
                callbacks: AtomicUsize::new(0),
                id,
            }),
            root,
            tasks: RefCell::new(Vec::new()),
        }
    }

    /// The mailbox, for a new handle; from now on the executor looks at it.
    pub(crate) fn mailbox(&self) -> Arc<Mailbox> {
        self.active.set(true);
        self.mailbox.clone()
    }

    /// Starts a system task from the runtime's own thread (what a `Builder` setting runs
    /// beside the root, such as printing the task tree on a signal).
    pub(crate) fn start(&self, task: SystemTask) {
        self.active.set(true);
        self.tasks.borrow_mut().push(Running {
            wake: Arc::new(TaskWake {
                woken: AtomicBool::new(true),
                mailbox: self.mailbox.clone(),
                root: self.root.clone(),
            }),
            task,
            from_worker: false,
        });
        self.mailbox.pending.store(true, Ordering::SeqCst);
    }

    /// Whether the executor has work here: a job arrived or a system task was woken.
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.active.get() && self.mailbox.pending.load(Ordering::SeqCst)
    }

    /// Workers of this runtime blocked in `from_thread` work (see "Autojump").
    pub(crate) fn callbacks(&self) -> usize {
        if !self.active.get() {
            return 0;
        }
        self.mailbox.callbacks.load(Ordering::SeqCst)
    }

    fn delivered(&self, from_worker: bool) {
        if from_worker {
            self.mailbox.callbacks.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs the jobs that arrived and polls the woken system tasks; does nothing (one
    /// `Cell` read, inlined into the executor's loop) while no handle was made.
    #[inline]
    pub(crate) fn run(&self) {
        if self.active.get() {
            self.run_pending();
        }
    }

    #[inline(never)]
    fn run_pending(&self) {
        // A load before the swap: once a handle exists, each turn of the loop costs a
        // plain load, not a locked read-modify-write, while nothing is pending.
        if !self.mailbox.pending.load(Ordering::SeqCst)
            || !self.mailbox.pending.swap(false, Ordering::SeqCst)
        {
            return;
        }
        let jobs = std::mem::take(&mut self.mailbox.lock().jobs);
        // Taken out, so that nothing a job or a task does can find the list borrowed.
        let mut tasks = self.tasks.take();
        for Queued { job, from_worker } in jobs {
            // The layer above catches the user's panics and sends them to the caller; this
            // guards the runtime against one in what is left (a value's destructor).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                Ok(Some(task)) => tasks.push(Running {
                    wake: Arc::new(TaskWake {
                        woken: AtomicBool::new(true),
                        mailbox: self.mailbox.clone(),
                        root: self.root.clone(),
                    }),
                    task,
                    from_worker,
                }),
                Ok(None) => self.delivered(from_worker),
                Err(_) => {
                    self.delivered(from_worker);
                    report_panic();
                }
            }
        }
        // In start order; finished ones are dropped after the loop, each under
        // `catch_unwind`. (`Vec::extract_if` would do, but needs Rust 1.87.)
        let mut finished = Vec::new();
        let mut i = 0;
        while i < tasks.len() {
            let running = &mut tasks[i];
            if !running.wake.woken.swap(false, Ordering::SeqCst) {
                i += 1;
                continue;
            }
            let waker = Waker::from(running.wake.clone());
            let task = running.task.as_mut();
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                task.poll(&mut Context::from_waker(&waker))
            }));
            match polled {
                Ok(Poll::Pending) => i += 1,
                Ok(Poll::Ready(())) => finished.push(tasks.remove(i)),
                Err(_) => {
                    report_panic();
                    finished.push(tasks.remove(i));
                }
            }
        }
        for running in finished {
            self.delivered(running.from_worker);
            quietly_drop(running);
        }
        let mut slot = self.tasks.borrow_mut();
        tasks.append(&mut slot);
        *slot = tasks;
    }

    /// The runtime has ended: refuses new jobs and drops the queued ones and the system
    /// tasks (invariant 2), each under `catch_unwind` so that a destructor's panic cannot
    /// turn the runtime's end (maybe an unwind already) into an abort.
    pub(crate) fn close(&self) {
        let jobs = {
            let mut state = self.mailbox.lock();
            state.closed = true;
            state.root = None;
            std::mem::take(&mut state.jobs)
        };
        for queued in jobs {
            quietly_drop(queued);
        }
        for running in self.tasks.take() {
            quietly_drop(running);
        }
    }
}

impl Inbox {
    /// [`close`](Inbox::close) for a deadlock report being collected (`rt/deadlock.rs`):
    /// each system task is dropped under a heading of its own, so the nurseries it holds
    /// list their blocked units beneath it.
    pub(crate) fn close_for_report(&self) {
        for running in self.tasks.take() {
            let _section = deadlock_report(|w| {
                w.heading(format_args!(
                    "a `RuntimeHandle::run` future sent from another thread (a system task)"
                ));
            });
            drop(running);
        }
        self.close();
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// Drops `value`, reporting a panic in its destructor instead of unwinding the runtime.
fn quietly_drop<T>(value: T) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value))).is_err() {
        report_panic();
    }
}

/// The panic's message was printed by the panic hook; its payload has no caller to go to.
#[cold]
fn report_panic() {
    eprintln!(
        "trellis: a destructor of `from_thread` work panicked on the runtime's thread; the \
         panic was caught (see its message above) and the runtime goes on"
    );
}
