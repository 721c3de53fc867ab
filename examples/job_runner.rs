//! A batch job runner: every job has a deadline of its own, the whole batch has one too,
//! and one job's failure or timeout does not stop the others.
//!
//! Each job runs as a child of one nursery, inside `fail_after(job.limit, ..)`. A job's error
//! or timeout is its outcome, recorded in the report, not a failure of the nursery (so its
//! siblings go on). The batch runs inside `move_on_after(overall, ..)`: when the overall
//! deadline passes, the jobs still running are cancelled and reported as such.
//!
//! The second run, [`run_jobs_as_completed`], reports each outcome as the job ends, in
//! completion order (what tokio's `JoinSet::join_next` gives): each child sends its
//! outcome into a channel and the nursery's body receives them as they come.
//!
//! Run it with `cargo run --example job_runner` (real time: about 0.7 s, two batches).
//! `integration/tests/examples.rs` runs the same batch on virtual time and checks the report.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use trellis::{channel, fail_after, move_on_after, nursery, sleep};

/// A job: how long it may take, how long it takes, and whether it fails.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// What the report calls it.
    pub(crate) name: &'static str,
    /// The job's own deadline, from its start.
    pub(crate) limit: Duration,
    /// How long its work takes.
    pub(crate) takes: Duration,
    /// Whether it fails half-way.
    pub(crate) fails: bool,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It finished, with its result.
    Done(String),
    /// It returned an error.
    Failed(String),
    /// It took longer than its own deadline.
    TimedOut,
    /// The batch's deadline passed while it ran.
    Cancelled,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(result) => write!(f, "done: {result}"),
            Outcome::Failed(error) => write!(f, "failed: {error}"),
            Outcome::TimedOut => f.write_str("timed out (its own deadline)"),
            Outcome::Cancelled => f.write_str("cancelled (the batch's deadline)"),
        }
    }
}

/// What a job returns when it fails.
#[derive(Debug)]
pub(crate) struct JobError(String);

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JobError {}

/// The job's work: here, waiting; in a real runner, a request, a query, a subprocess.
async fn work(job: &Job) -> Result<String, JobError> {
    sleep(job.takes / 2).await;
    if job.fails {
        return Err(JobError(format!("{} hit a bad record", job.name)));
    }
    sleep(job.takes - job.takes / 2).await;
    Ok(format!("{} processed", job.name))
}

/// One job under its own deadline: its error or timeout is its outcome, not a failure.
async fn run_one(job: &Job) -> Outcome {
    match fail_after(job.limit, work(job)).await {
        Ok(Ok(result)) => Outcome::Done(result),
        Ok(Err(error)) => Outcome::Failed(error.to_string()),
        Err(_timed_out) => Outcome::TimedOut,
    }
}

/// Runs every job at once, the whole batch for at most `overall`; returns each job's
/// outcome, in the jobs' order.
pub(crate) async fn run_jobs(jobs: &[Job], overall: Duration) -> Vec<Outcome> {
    // Every job starts as `Cancelled`: a job the batch deadline cuts off never writes.
    let outcomes = RefCell::new(vec![Outcome::Cancelled; jobs.len()]);
    let batch = move_on_after(
        overall,
        nursery(async |n| {
            for (slot, job) in jobs.iter().enumerate() {
                let outcomes = &outcomes;
                n.spawn(async move {
                    let outcome = run_one(job).await;
                    outcomes.borrow_mut()[slot] = outcome;
                });
            }
        }),
    );
    match batch.await {
        Some(Ok(())) | None => {} // all finished, or the overall deadline cut some off
        Some(Err(group)) => match group.into_first() {}, // the jobs cannot fail the nursery
    }
    outcomes.into_inner()
}

/// Runs every job at once, like [`run_jobs`], and calls `report` with each outcome as the
/// job ends (results in completion order). Returns the outcomes in that order; the jobs
/// the batch deadline cut off come last, as `Cancelled`, in the jobs' order.
pub(crate) async fn run_jobs_as_completed(
    jobs: &[Job],
    overall: Duration,
    mut report: impl FnMut(&Job, &Outcome),
) -> Vec<(&'static str, Outcome)> {
    let finished = RefCell::new(Vec::new());
    let batch = move_on_after(
        overall,
        nursery(async |n| {
            // One slot per job: no child ever waits to send its outcome.
            let (tx, rx) = channel(jobs.len());
            for (slot, job) in jobs.iter().enumerate() {
                let tx = tx.clone();
                n.spawn(async move {
                    let outcome = run_one(job).await;
                    // The body receives until every sender is gone, so this cannot fail
                    // (and if the body were gone, the outcome would come back in the error).
                    let _ = tx.send((slot, outcome)).await;
                });
            }
            // The children now hold the only senders: the loop ends after the last job.
            drop(tx);
            while let Ok((slot, outcome)) = rx.recv().await {
                report(&jobs[slot], &outcome);
                finished.borrow_mut().push((slot, outcome));
            }
        }),
    );
    match batch.await {
        Some(Ok(())) | None => {}
        Some(Err(group)) => match group.into_first() {},
    }
    let mut finished = finished.into_inner();
    let cut_off: Vec<usize> = (0..jobs.len())
        .filter(|slot| finished.iter().all(|(done, _)| done != slot))
        .collect();
    finished.extend(cut_off.into_iter().map(|slot| (slot, Outcome::Cancelled)));
    finished
        .into_iter()
        .map(|(slot, outcome)| (jobs[slot].name, outcome))
        .collect()
}

/// The batch `main` runs, and the test too: jobs and the batch's deadline.
pub(crate) fn sample_batch() -> (Vec<Job>, Duration) {
    let ms = Duration::from_millis;
    let job = |name, limit, takes, fails| Job {
        name,
        limit: ms(limit),
        takes: ms(takes),
        fails,
    };
    let jobs = vec![
        job("thumbnails", 200, 120, false),
        job("invoices", 200, 80, true),
        job("reindex", 200, 450, false), // longer than it may take
        job("backup", 600, 500, false),  // within its own limit, but the batch ends first
        job("emails", 100, 30, false),
    ];
    (jobs, ms(350))
}

fn main() {
    let (jobs, overall) = sample_batch();
    println!("{} jobs, {overall:?} for the batch", jobs.len());
    let started = std::time::Instant::now();
    let outcomes = trellis::run(run_jobs(&jobs, overall));
    for (job, outcome) in jobs.iter().zip(&outcomes) {
        println!("  {:<10} (limit {:>5?})  {outcome}", job.name, job.limit);
    }
    println!("batch over after {:?}", started.elapsed());

    println!("again, each outcome as its job ends:");
    let started = std::time::Instant::now();
    let in_order = trellis::run(run_jobs_as_completed(&jobs, overall, |job, outcome| {
        println!("  {:>9.3?}  {:<10} {outcome}", started.elapsed(), job.name);
    }));
    for (name, outcome) in in_order.iter().filter(|(_, o)| *o == Outcome::Cancelled) {
        println!("  at the batch deadline  {name:<10} {outcome}");
    }
    println!("batch over after {:?}", started.elapsed());
}
