//! Signals as a stream: Trio's `open_signal_receiver`, and [`ctrl_c`].
//!
//! # How a signal reaches a task
//!
//! The handler itself is signal-hook-registry's: one process-wide handler per signal, which
//! runs the actions registered for it in registration order. Each receiver registers two
//! actions per signal, both from signal-hook's safe set (so no `unsafe` here): set the
//! receiver's flag for that signal (an atomic store), then send one byte on a datagram
//! socket of the receiver's (a `send` with `MSG_DONTWAIT`). Those are the only things that
//! run inside the handler: no allocation, no lock.
//!
//! The sockets are a self-pipe into the reactor. Each signal has its own sending socket,
//! connected to the receiver's one receiving socket, which is registered with the runtime's
//! reactor; a task waiting in [`SignalReceiver::recv`] parks on it like any socket reader.
//! On Linux every sending socket is bound to an abstract address that names its signal, so
//! the order in which the datagrams queue up is the order of delivery, and the receiver
//! reads it back from the senders' addresses. A datagram only says "look at this flag": the
//! signal counts as delivered when the receiver swaps the flag from `true` to `false`, so a
//! datagram lost to a full queue loses no signal, and a stranger's datagram fakes none.
//! After the queue is empty, every flag is checked once more (elsewhere than Linux that is
//! the only source, in the order the signals were given).
//!
//! # The disposition while a receiver exists, and after
//!
//! signal-hook-registry never removes its handler once installed (its `unregister` only
//! removes an action; its documentation warns that a signal whose last action is gone is
//! then ignored). To give the default action back, the first receiver of a signal whose
//! disposition was the default one registers, before its own actions, signal-hook's
//! conditional default: an action that emulates the default action (terminate, stop,
//! ignore) while the signal's `NO_RECEIVER` flag is set. The flag is cleared while at least
//! one receiver of the signal is open and set again when the last one is dropped. A
//! signal that was ignored or caught by someone else before (as `/proc/self/status` tells,
//! on Linux) gets no such action: with no receiver left it is ignored again, or the other
//! handler runs again (the registry chains to the handler it replaced).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::{FusedFuture, FusedStream, Stream};
use signal_hook::SigId;

use crate::rt::reactor::{Direction, Registered};

/// The common signal numbers, for [`open_signal_receiver`], so that a program needs no
/// `libc` for them. They are the platform's own values (from `libc`, through signal-hook),
/// so `SIGUSR1` is 10 on Linux and 30 on macOS.
///
/// # Examples
///
/// ```
/// use trellis::signals::{SIGINT, SIGTERM};
///
/// assert_ne!(SIGINT, SIGTERM);
/// assert!(trellis::signals::FORBIDDEN.contains(&trellis::signals::SIGKILL));
/// ```
pub mod signals {
    pub use signal_hook::consts::signal::{
        SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGQUIT, SIGSTOP, SIGTERM,
        SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGUSR1, SIGUSR2, SIGWINCH,
    };

    /// The signals [`open_signal_receiver`](crate::open_signal_receiver) refuses:
    /// `SIGKILL` and `SIGSTOP` (no process can catch them) and `SIGILL`, `SIGFPE`,
    /// `SIGSEGV` (sent by the CPU for a fault in the thread itself, where returning from a
    /// handler would run the faulting instruction again).
    pub const FORBIDDEN: &[i32] = signal_hook::consts::FORBIDDEN;
}

/// The highest signal number a receiver accepts (Linux's `SIGRTMAX`); numbers below it that
/// the platform does not have are refused by the operating system.
const MAX_SIGNAL: i32 = 64;
const SLOTS: usize = MAX_SIGNAL as usize + 1;

/// Per signal: no receiver is open, so the conditional default action (where one was
/// registered) emulates the default disposition.
static NO_RECEIVER: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

/// The process-wide bookkeeping of the receivers, per signal number. Only touched when a
/// receiver opens or closes, never in a handler.
struct Table {
    /// The first receiver of the signal has looked at its disposition.
    decided: [bool; SLOTS],
    /// A conditional default action is registered for the signal.
    emulates_default: [bool; SLOTS],
    /// Open receivers of the signal.
    open: [usize; SLOTS],
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    decided: [false; SLOTS],
    emulates_default: [false; SLOTS],
    open: [0; SLOTS],
});

fn table() -> std::sync::MutexGuard<'static, Table> {
    // The table is consistent between statements; a panic elsewhere cannot tear it.
    TABLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers `register`'s actions for `signal` as an open receiver of it, first giving the
/// signal its conditional default action if this is the first receiver ever and the
/// signal's disposition is the default one.
fn acquire(
    signal: i32,
    register: impl FnOnce() -> io::Result<[SigId; 2]>,
) -> io::Result<[SigId; 2]> {
    let slot = signal as usize;
    let mut table = table();
    if !table.decided[slot] {
        table.decided[slot] = true;
        // An unknown signal (a real-time one) has no default to emulate: it stays ignored
        // once its last receiver is gone.
        if disposition_is_default(signal)
            && signal_hook::flag::register_conditional_default(signal, &NO_RECEIVER[slot]).is_ok()
        {
            table.emulates_default[slot] = true;
            // No receiver yet: until one registers, the default action stays in effect.
            NO_RECEIVER[slot].store(true, Ordering::SeqCst);
        }
    }
    let ids = register()?;
    table.open[slot] += 1;
    NO_RECEIVER[slot].store(false, Ordering::SeqCst);
    Ok(ids)
}

/// Removes one receiver's actions for `signal`; the last receiver gives the default action
/// back (where it is emulated), before its actions go.
fn release(signal: i32, ids: [SigId; 2]) {
    let slot = signal as usize;
    let mut table = table();
    table.open[slot] -= 1;
    if table.open[slot] == 0 && table.emulates_default[slot] {
        NO_RECEIVER[slot].store(true, Ordering::SeqCst);
    }
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
}

/// Whether `signal` has the default disposition (neither ignored nor caught), as the
/// `SigIgn` and `SigCgt` masks of `/proc/self/status` say. Where that file cannot be read
/// (not Linux), the disposition is assumed to be the default one.
fn disposition_is_default(signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    let bit = 1u64 << (signal - 1);
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigIgn:") | mask("SigCgt:")) & bit == 0
}

/// Refuses what no receiver can watch: a forbidden signal or a number out of range.
fn check(signal: i32) -> io::Result<()> {
    if signals::FORBIDDEN.contains(&signal) {
        let name = signal_hook::low_level::signal_name(signal).unwrap_or("this signal");
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot receive signal {signal} ({name}): SIGKILL and SIGSTOP cannot be caught, \
                 and SIGILL, SIGFPE and SIGSEGV report a fault in the thread that a handler \
                 cannot recover from; leave it out of `open_signal_receiver`"
            ),
        ));
    }
    if !(1..=MAX_SIGNAL).contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot receive signal {signal}: signal numbers run from 1 to {MAX_SIGNAL}; use \
                 the constants in `trellis::signals`"
            ),
        ));
    }
    Ok(())
}

/// One watched signal of a receiver.
struct Watched {
    signal: i32,
    /// Set by the handler, swapped back by the receiver.
    flag: Arc<AtomicBool>,
    /// The flag action and the wake action, removed on drop.
    ids: [SigId; 2],
}

/// A stream of the signals delivered to the process, from [`open_signal_receiver`].
///
/// While it exists, the signals it watches no longer have their default action (`SIGINT`
/// no longer ends the program): each delivery is reported here instead, to every open
/// receiver of that signal. Dropping it gives the default action back once no receiver of
/// the signal remains (see [`open_signal_receiver`] for exactly what is restored).
///
/// It belongs to the runtime it was opened in (`!Send`).
///
/// Reading: [`recv`](SignalReceiver::recv), or the [`Stream`] impl, whose items are the
/// same `io::Result<i32>` and which never ends.
pub struct SignalReceiver {
    /// The receiving end of the self-pipe, registered with the reactor.
    wake: Registered<UnixDatagram>,
    watched: Vec<Watched>,
    /// Delivered, not yet returned, in order of delivery; each signal at most once (see
    /// `take`).
    pending: VecDeque<i32>,
}

impl fmt::Debug for SignalReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalReceiver")
            .field(
                "signals",
                &self.watched.iter().map(|w| w.signal).collect::<Vec<_>>(),
            )
            .field("pending", &self.pending)
            .finish()
    }
}

/// Opens a receiver of `signals`: from now until it is dropped, each of these signals
/// delivered to the process is reported by the receiver instead of running its default
/// action. Trio's `open_signal_receiver`.
///
/// - Signals coalesce: a signal delivered several times before the receiver reports it is
///   reported once. Once reported, its next delivery is reported again.
/// - Distinct signals are reported in the order they were delivered (on Linux; elsewhere
///   the signals that arrived while the receiver was not reading come in the order
///   `signals` gave them).
/// - Every open receiver of a signal sees each of its deliveries.
/// - Use the constants of [`trellis::signals`](crate::signals) for the numbers.
///
/// # What dropping the receiver restores
///
/// When the last receiver of a signal is dropped, the signal's actions are unregistered
/// (`signal_hook_registry::unregister`); the registry's own handler stays installed, as it
/// always does. What a delivery does then depends on the signal's disposition before its
/// first receiver opened in this process:
///
/// - default (the usual case): the default action is emulated (signal-hook's
///   `emulate_default_handler`): `SIGINT` and `SIGTERM` end the process, as by the
///   signal (the handler is reset to the default and the signal raised again), `SIGTSTP`
///   stops it, `SIGWINCH` is ignored. A real-time signal has no emulation and is ignored.
/// - ignored (as `SIGHUP` under `nohup`): ignored again.
/// - caught by another handler: that handler runs again (the registry chains to it).
///
/// The disposition is read from `/proc/self/status`; where there is none (not Linux), it is
/// taken to be the default one.
///
/// # Errors
///
/// `InvalidInput` if `signals` is empty, or holds a forbidden signal
/// ([`signals::FORBIDDEN`](crate::signals::FORBIDDEN): `SIGKILL`, `SIGSTOP`, `SIGILL`,
/// `SIGFPE`, `SIGSEGV`) or a number out of range; the message names the signal. Outside
/// a trellis runtime, an error saying so. An error of the operating system (a number the
/// platform does not have, no more descriptors) is returned with the signal's number;
/// after any error, none of the receiver's actions is left registered.
///
/// # Examples
///
/// ```
/// use trellis::signals::{SIGUSR1, SIGUSR2};
///
/// # // Doctests share one process and run in parallel: each raises signals of its own.
/// trellis::run(async {
///     let mut signals = trellis::open_signal_receiver([SIGUSR1, SIGUSR2])?;
///     // Send them to ourselves (from a shell: `kill -USR2 <pid>`), here with the
///     // `signal-hook` crate's `raise` (a dependency of yours to add, as `futures-core`
///     // is for the `Stream` examples; `libc::raise` does the same).
///     signal_hook::low_level::raise(SIGUSR2)?;
///     signal_hook::low_level::raise(SIGUSR1)?;
///     assert_eq!(signals.recv().await?, SIGUSR2);
///     assert_eq!(signals.recv().await?, SIGUSR1);
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub fn open_signal_receiver(signals: impl IntoIterator<Item = i32>) -> io::Result<SignalReceiver> {
    let mut wanted: Vec<i32> = Vec::new();
    for signal in signals {
        check(signal)?;
        if !wanted.contains(&signal) {
            wanted.push(signal);
        }
    }
    if wanted.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "`open_signal_receiver` was given no signals; name at least one",
        ));
    }
    let (wake, senders) = wake_sockets(&wanted)?;
    wake.set_nonblocking(true)?;
    // Outside a runtime this fails before anything is registered with the process.
    let wake = Registered::new(wake)?;
    let mut receiver = SignalReceiver {
        wake,
        watched: Vec::with_capacity(wanted.len()),
        pending: VecDeque::new(),
    };
    for (signal, sender) in wanted.into_iter().zip(senders) {
        let flag = Arc::new(AtomicBool::new(false));
        let ids = acquire(signal, || {
            // The flag first: the registry runs a signal's actions in registration order,
            // so the flag is set when the datagram is read.
            let flag_id = signal_hook::flag::register(signal, flag.clone())?;
            match signal_hook::low_level::pipe::register(signal, sender) {
                Ok(wake_id) => Ok([flag_id, wake_id]),
                Err(e) => {
                    signal_hook::low_level::unregister(flag_id);
                    Err(e)
                }
            }
        })
        .map_err(|e| registration_error(signal, e))?;
        // On an error later on, the receiver's drop releases what is registered so far.
        receiver.watched.push(Watched { signal, flag, ids });
    }
    // The registration probes each sender with an empty datagram; drop them (a signal
    // that came meanwhile has its flag set, which the next read sees).
    let mut buf = [0u8; 1];
    while receiver.wake.get_ref().recv(&mut buf).is_ok() {}
    Ok(receiver)
}

fn registration_error(signal: i32, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidInput {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot receive signal {signal}: this platform has no such signal, or reserves \
                 it ({e}); use the constants in `trellis::signals`"
            ),
        )
    } else {
        io::Error::new(
            e.kind(),
            format!("cannot install the handler of signal {signal}: {e}"),
        )
    }
}

/// The receiving socket and one sending socket per signal, connected to it. On Linux each
/// sender is bound to an abstract address ending in `-<signal>`, which `sender_signal` reads
/// back from a datagram.
#[cfg(target_os = "linux")]
fn wake_sockets(signals: &[i32]) -> io::Result<(UnixDatagram, Vec<UnixDatagram>)> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::linux::net::SocketAddrExt;

    let mut attempt = 0;
    let (wake, name) = loop {
        // Abstract addresses are shared by the network namespace: a random part keeps two
        // processes (or two receivers) apart.
        let nonce = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let name = format!("trellis-signal-{}-{nonce:016x}", std::process::id());
        match UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?) {
            Ok(wake) => break (wake, name),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let target = wake.local_addr()?;
    let senders = signals
        .iter()
        .map(|signal| {
            let own = format!("{name}-{signal}");
            let sender = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(own.as_bytes())?)?;
            sender.connect_addr(&target)?;
            Ok(sender)
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok((wake, senders))
}

/// Elsewhere the senders are unnamed: a datagram only wakes the receiver, which then looks
/// at every flag.
#[cfg(not(target_os = "linux"))]
fn wake_sockets(signals: &[i32]) -> io::Result<(UnixDatagram, Vec<UnixDatagram>)> {
    let (wake, sender) = UnixDatagram::pair()?;
    let senders = signals
        .iter()
        .map(|_| sender.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    Ok((wake, senders))
}

/// The signal a datagram's sender stands for (its address's suffix).
#[cfg(target_os = "linux")]
fn sender_signal(from: &SocketAddr) -> Option<i32> {
    use std::os::linux::net::SocketAddrExt;

    let name = from.as_abstract_name()?;
    let name = std::str::from_utf8(name).ok()?;
    name.rsplit('-').next()?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn sender_signal(_from: &SocketAddr) -> Option<i32> {
    None
}

impl SignalReceiver {
    /// Waits for the next signal and returns its number.
    ///
    /// A signal already delivered and not yet reported is returned at the first poll,
    /// without suspending (like every trellis primitive, this is then not a checkpoint).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: dropping the future midway loses no signal. What was delivered stays
    /// pending in the receiver (its flag, its datagram, the queue) and the next `recv`
    /// returns it.
    ///
    /// # Errors
    ///
    /// Polled in a runtime other than the one the receiver was opened in (or outside any)
    /// with nothing to report, an error saying so (the task could not be woken there); a
    /// later delivery stays pending for a `recv` in the right runtime. An error of the
    /// operating system reading the self-pipe is passed on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::signals::SIGWINCH;
    ///
    /// trellis::Builder::new().autojump().run(async {
    ///     let mut signals = trellis::open_signal_receiver([SIGWINCH])?;
    ///     // Nothing yet: give up after a second.
    ///     let nothing = trellis::move_on_after(Duration::from_secs(1), signals.recv()).await;
    ///     assert!(nothing.is_none());
    ///     // The abandoned `recv` lost nothing, and two deliveries coalesce into one.
    ///     signal_hook::low_level::raise(SIGWINCH)?;
    ///     signal_hook::low_level::raise(SIGWINCH)?;
    ///     assert_eq!(signals.recv().await?, SIGWINCH);
    ///     let again = trellis::move_on_after(Duration::from_secs(1), signals.recv()).await;
    ///     assert!(again.is_none());
    ///     Ok::<(), std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn recv(&mut self) -> SignalRecv<'_> {
        SignalRecv {
            receiver: self,
            done: false,
        }
    }

    /// The signals this receiver watches, in the order given (without repeats).
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::signals::{SIGHUP, SIGTERM};
    ///
    /// trellis::run(async {
    ///     let signals = trellis::open_signal_receiver([SIGTERM, SIGHUP, SIGTERM]).unwrap();
    ///     assert_eq!(signals.signals(), vec![SIGTERM, SIGHUP]);
    /// });
    /// ```
    pub fn signals(&self) -> Vec<i32> {
        self.watched.iter().map(|w| w.signal).collect()
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<i32>> {
        loop {
            if let Some(signal) = self.pending.pop_front() {
                return Poll::Ready(Ok(signal));
            }
            let mut buf = [0u8; 1];
            match self
                .wake
                .poll_io(Direction::Read, cx, |socket| socket.recv_from(&mut buf))
            {
                Poll::Ready(Ok((_, from))) => {
                    if let Some(signal) = sender_signal(&from) {
                        self.take(signal);
                    }
                }
                Poll::Ready(Err(e)) => {
                    // Delivered signals come before the error (another runtime's, or the
                    // system's): their flags say which, whatever the self-pipe holds.
                    self.take_flagged();
                    if self.pending.is_empty() {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Pending => {
                    // The queue is empty: the flags whose datagrams were lost (or carry no
                    // name). The task is parked already; if this finds one, its later wake
                    // is spurious.
                    self.take_flagged();
                    if self.pending.is_empty() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Queues every watched signal delivered since it was last taken, in the order given.
    fn take_flagged(&mut self) {
        for i in 0..self.watched.len() {
            self.take(self.watched[i].signal);
        }
    }

    /// Queues `signal` if it was delivered since it was last taken. The flag is what
    /// coalesces: deliveries before the swap are one. A signal is never queued twice,
    /// since the queue fills only while it is empty (one datagram's signal, or the sweep,
    /// which takes each flag once).
    fn take(&mut self, signal: i32) {
        let Some(watched) = self.watched.iter().find(|w| w.signal == signal) else {
            return;
        };
        if watched.flag.swap(false, Ordering::SeqCst) {
            self.pending.push_back(signal);
        }
    }
}

impl Drop for SignalReceiver {
    fn drop(&mut self) {
        for watched in self.watched.drain(..) {
            release(watched.signal, watched.ids);
        }
    }
}

/// A stream of signal numbers that never ends (the same items as
/// [`recv`](SignalReceiver::recv)).
///
/// # Examples
///
/// ```
/// use futures_core::Stream;
/// use trellis::signals::SIGALRM;
///
/// trellis::run(async {
///     let mut signals = trellis::open_signal_receiver([SIGALRM])?;
///     signal_hook::low_level::raise(SIGALRM)?;
///     let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut signals).poll_next(cx));
///     assert_eq!(next.await.unwrap()?, SIGALRM);
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
impl Stream for SignalReceiver {
    type Item = io::Result<i32>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<i32>>> {
        self.get_mut().poll_recv(cx).map(Some)
    }
}

/// The stream never ends, so it is never terminated.
///
/// # Examples
///
/// ```
/// use futures_core::FusedStream;
/// use trellis::signals::SIGUSR2;
///
/// trellis::run(async {
///     let signals = trellis::open_signal_receiver([SIGUSR2]).unwrap();
///     assert!(!signals.is_terminated());
/// });
/// ```
impl FusedStream for SignalReceiver {
    fn is_terminated(&self) -> bool {
        false
    }
}

/// The future of [`SignalReceiver::recv`] (`FusedFuture`).
///
/// # Cancellation
///
/// Cancel-safe: dropping it loses no signal; the next `recv` returns what was delivered.
#[must_use = "a SignalRecv does nothing unless awaited"]
#[derive(Debug)]
pub struct SignalRecv<'a> {
    receiver: &'a mut SignalReceiver,
    /// It has returned `Ready` (for [`FusedFuture::is_terminated`]).
    done: bool,
}

impl Future for SignalRecv<'_> {
    type Output = io::Result<i32>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<i32>> {
        let this = &mut *self;
        let poll = this.receiver.poll_recv(cx);
        this.done = poll.is_ready();
        poll
    }
}

/// `futures::select!` and other `futures-core` combinators take a `SignalRecv` without
/// `.fuse()`.
///
/// # Examples
///
/// ```
/// use futures_core::FusedFuture;
/// use trellis::signals::SIGURG;
///
/// trellis::run(async {
///     let mut signals = trellis::open_signal_receiver([SIGURG])?;
///     signal_hook::low_level::raise(SIGURG)?;
///     let mut recv = signals.recv();
///     assert!(!recv.is_terminated());
///     (&mut recv).await?;
///     assert!(recv.is_terminated());
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
impl FusedFuture for SignalRecv<'_> {
    /// True once it has completed.
    fn is_terminated(&self) -> bool {
        self.done
    }
}

/// Waits for one `SIGINT` (Ctrl-C in a terminal).
///
/// From the first poll until it completes or is dropped, `SIGINT` no longer ends the
/// process: it completes this future instead. Afterwards the default action is back (as
/// [`open_signal_receiver`] describes), unless another receiver of `SIGINT` is open. For
/// a program that handles Ctrl-C more than once, keep an
/// `open_signal_receiver([SIGINT])` open instead: between two `ctrl_c` calls a `SIGINT`
/// ends the process.
///
/// # Cancellation
///
/// Dropping it unregisters its handler; a `SIGINT` delivered before the drop is lost with
/// it (nothing else saw it).
///
/// # Errors
///
/// As [`open_signal_receiver`]: outside a trellis runtime, or an error of the operating
/// system.
///
/// # Examples
///
/// ```no_run
/// // `no_run`: it waits for a real Ctrl-C (integration/tests/signal.rs raises one).
/// trellis::run(async {
///     println!("press Ctrl-C to stop");
///     trellis::ctrl_c().await?;
///     println!("stopping");
///     Ok::<(), std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    let mut receiver = open_signal_receiver([signals::SIGINT])?;
    receiver.recv().await.map(drop)
}

impl crate::Builder {
    /// Prints the task tree ([`dump_tree`](crate::dump_tree)) to stderr each time the
    /// process receives `signal` while the runtime runs: `kill -USR1 <pid>` shows what a
    /// live server is doing. Off by default; it turns on
    /// [`task_tree`](crate::Builder::task_tree).
    ///
    /// A receiver for the signal (as [`open_signal_receiver`]) runs beside the root, outside
    /// every nursery, and ends with it. It is an I/O source, so on a mock clock a runtime
    /// with this setting waits for the signal where it would otherwise report a deadlock.
    ///
    /// # Panics
    ///
    /// When `signal` cannot be received ([`signals::FORBIDDEN`](crate::signals::FORBIDDEN)
    /// or out of range), with a message that says why.
    ///
    /// # Examples
    ///
    /// ```
    /// use trellis::signals::SIGUSR1;
    ///
    /// trellis::Builder::new()
    ///     .dump_tree_on_signal(SIGUSR1)
    ///     .run(trellis::nursery(async |n| {
    ///         n.spawn_named("server", async {
    ///             // in real life: `kill -USR1 <pid>` from a shell; here the
    ///             // `signal-hook` crate's `raise` (add it to run this yourself)
    ///             signal_hook::low_level::raise(SIGUSR1).unwrap();
    ///             trellis::yield_now().await; // the tree is printed meanwhile
    ///         });
    ///     }));
    /// ```
    #[track_caller]
    pub fn dump_tree_on_signal(self, signal: i32) -> crate::Builder {
        if let Err(e) = check(signal) {
            panic!("Builder::dump_tree_on_signal: {e}");
        }
        // The receiver is opened as the runtime starts, before the root's first poll, so a
        // signal that comes at once is not left to its default action (for SIGUSR1: exit).
        self.task_tree().with_system_task(Arc::new(move || {
            Box::pin(print_tree_on(signal, open_signal_receiver([signal])))
        }))
    }
}

/// Prints the task tree to stderr at each delivery of `signal`, until dropped.
async fn print_tree_on(signal: i32, receiver: io::Result<SignalReceiver>) {
    let mut receiver = match receiver {
        Ok(receiver) => receiver,
        Err(e) => {
            eprintln!("trellis: cannot print the task tree on signal {signal}: {e}");
            return;
        }
    };
    while receiver.recv().await.is_ok() {
        eprintln!("{}", crate::scope::dump::dump_tree());
    }
}
