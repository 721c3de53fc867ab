//! A graceful shutdown: workers serve until asked to stop; then each finishes the request
//! it is in (with a limit), flushes what it buffered (with a deadline of its own), and only
//! then does the service return.
//!
//! - The service is a nursery of workers inside a scope; stopping it is cancelling the
//!   scope. Here a second thread does that through `CancelScope::remote` after a second,
//!   standing in for a signal handler.
//! - A request, once begun, runs in a shield with its own timeout, so a shutdown does not
//!   cut it in half (and a stuck one cannot hold the shutdown forever).
//! - Each worker's loop is wrapped in `trellis::finally`, whose clean-up (the flush) runs
//!   when the cancellation arrives, shielded, under `move_on_after(flush_limit, ..)`.
//!
//! Run it with `cargo run --example graceful_shutdown` (real time: about 1.2 s).
//! `integration/tests/examples.rs` runs the same service on virtual time and checks the log.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use trellis::{CancelScope, finally, move_on_after, sleep};

/// How the service behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// How many workers.
    pub(crate) workers: u32,
    /// How long a worker waits between requests.
    pub(crate) idle: Duration,
    /// How long worker `i`'s requests take: `i * request_unit`.
    pub(crate) request_unit: Duration,
    /// The most a request may take, shutdown or not.
    pub(crate) request_limit: Duration,
    /// How long worker `i`'s flush takes: `i * flush_unit`.
    pub(crate) flush_unit: Duration,
    /// The most a flush may take during the shutdown.
    pub(crate) flush_limit: Duration,
}

/// What the service did, with the time since it started.
#[derive(Debug, Default)]
pub(crate) struct Log {
    started: std::cell::OnceCell<Instant>,
    lines: RefCell<Vec<(Duration, String)>>,
}

impl Log {
    /// Records (and prints) one line.
    pub(crate) fn line(&self, what: String) {
        let now = trellis::now();
        let started = *self.started.get_or_init(|| now);
        let since = now - started;
        println!("{:>6} ms  {what}", since.as_millis());
        self.lines.borrow_mut().push((since, what));
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> Vec<(Duration, String)> {
        self.lines.borrow().clone()
    }
}

/// Runs the service until a scope around it is cancelled, then shuts it down gracefully:
/// it never returns, the cancelled scope ends it once every worker has cleaned up.
pub(crate) async fn serve(config: Config, log: &Log) {
    log.line(format!("serving with {} workers", config.workers));
    let stopped = trellis::nursery(async |n| {
        for id in 1..=config.workers {
            n.spawn(async move {
                let flush = move_on_after(config.flush_limit, flush(id, config, log));
                finally(work_loop(id, config, log), async {
                    if flush.await.is_none() {
                        log.line(format!("worker {id}: flush cut off at its deadline"));
                    }
                })
                .await
            });
        }
    })
    .await;
    match stopped {
        Ok(()) => unreachable!("the workers never finish"),
        Err(group) => match group.into_first() {}, // workers cannot fail
    }
}

/// Serves requests forever; a cancellation stops it between requests, never during one.
async fn work_loop(id: u32, config: Config, log: &Log) -> ! {
    let mut served = 0;
    loop {
        sleep(config.idle).await; // waiting for a request: a shutdown stops it here
        served += 1;
        let request = CancelScope::new()
            .with_shield(true)
            .with_timeout(config.request_limit)
            .run(handle(id, served, config));
        match request.await {
            Some(()) => log.line(format!("worker {id}: request {served} answered")),
            None => log.line(format!(
                "worker {id}: request {served} over its limit, dropped"
            )),
        }
    }
}

/// One request's work.
async fn handle(id: u32, _request: u32, config: Config) {
    sleep(config.request_unit * id).await;
}

/// Writes out what the worker buffered.
async fn flush(id: u32, config: Config, log: &Log) {
    log.line(format!("worker {id}: flushing"));
    sleep(config.flush_unit * id).await;
    log.line(format!("worker {id}: flushed"));
}

/// The configuration `main` runs, and the test too.
pub(crate) fn sample_config() -> Config {
    let ms = Duration::from_millis;
    Config {
        workers: 3,
        idle: ms(50),
        request_unit: ms(100),
        request_limit: ms(500),
        flush_unit: ms(60),
        flush_limit: ms(150), // worker 3's flush (180 ms) is cut off
    }
}

fn main() {
    let log = Log::default();
    let config = sample_config();
    let stopped = trellis::run(trellis::cancel_scope(async |scope| {
        let remote = scope.remote();
        std::thread::spawn(move || {
            // A signal handler thread would call `cancel` on SIGTERM.
            std::thread::sleep(Duration::from_millis(1020));
            remote.cancel();
        });
        serve(config, &log).await
    }));
    assert_eq!(stopped, None, "only the shutdown ends the service");
    let lines = log.lines();
    let answered = lines
        .iter()
        .filter(|(_, l)| l.ends_with("answered"))
        .count();
    let flushed = lines.iter().filter(|(_, l)| l.ends_with("flushed")).count();
    println!(
        "service stopped: {answered} requests answered, {flushed} of {} flushes complete",
        config.workers
    );
}
