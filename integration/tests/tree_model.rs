//! Random nursery trees (proptest) run on the autojump clock under random shuffle seeds,
//! compared with a model.
//!
//! A tree is a root nursery of tasks; a task is a list of operations: sleep, yield (then
//! sleep), fail, panic, cancel an enclosing scope, move an enclosing scope's deadline, run
//! a cancel scope (with a timeout, shielded or not), open a nested nursery, spawn a sibling
//! and `start` one, set one of three events and wait for one (with a timeout). Checked on every run, whatever the schedule:
//!
//! - no child outlives its nursery (a live count per nursery is zero when it returns);
//! - every spawned future is dropped exactly once (a drop counter per task);
//! - every `Err` is reported exactly once, and exactly the ones the model says;
//! - a panic is never lost: the run panics exactly when the model says, with one of the
//!   payloads it says;
//! - the virtual end time is the model's;
//! - `cancelled_caught` is true exactly on the scopes the model says.
//!
//! # The model
//!
//! Virtual time only: every operation that takes time (a sleep, a timeout, a deadline) gets
//! its own power of two of milliseconds, so two timers never fire at the same instant (the
//! instant of a timer is a sum of distinct powers, unique to the chain of timers that led
//! to it). Then what happens at an instant follows from one timer, and the schedule (the
//! shuffle seed) can only reorder units that the model treats alike: a suspended unit
//! whose region is cancelled at `c` is interrupted at `c` by the outermost cancelled frame
//! (scope or nursery) up to the nearest shield; a unit runs its first step whatever; a
//! nursery ends when its last child does and is abandoned when an enclosing frame was
//! cancelled by then. Cancel times depend on what tasks do, which depends on cancel times:
//! the model evaluates the tree with a table of cancel times, derives the table from what
//! that evaluation did, and repeats until the table is stable. What the model cannot order
//! (two different units deciding at the same instant as a cancellation one of them caused,
//! two deadline moves at one instant, a `start` cancelled at the instant it starts) makes
//! it reject the case rather than guess.
//!
//! `TRELLIS_PROPTEST_CASES` sets the number of trees (default 256, a few seconds in debug).

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{HANG_LIMIT, watchdog};
use proptest::prelude::*;
use trellis::{Builder, CancelScope, Nursery, nursery, sleep, yield_now};

// ---------------------------------------------------------------------------------------
// Trees as generated (durations as rank keys) and as run (durations assigned).

#[derive(Debug, Clone)]
enum Op {
    Sleep(u8),
    YieldSleep(u8),
    Fail,
    Panic,
    Cancel(u8),
    MoveDeadline(u8, u8),
    /// Sets one of the tree's events.
    Set(u8),
    /// Waits for one of the tree's events, at most the timeout.
    Wait(u8, u8),
    Spawn(Vec<Op>),
    StartSleep(Vec<Op>, u8),
    Nursery(Vec<Vec<Op>>),
    Scope {
        timeout: Option<u8>,
        shield: bool,
        body: Vec<Op>,
    },
}

/// Milliseconds of virtual time.
type Ms = u128;

/// How many events a tree has.
const EVENTS: u8 = 3;

#[derive(Debug, Clone)]
enum AOp {
    Sleep(Ms),
    YieldSleep(Ms),
    Fail(u32),
    Panic(u32),
    Cancel(u8),
    MoveDeadline(u8, Ms),
    Set(u8),
    Wait(u8, Ms),
    Spawn(ATask),
    StartSleep(ATask, Ms),
    Nursery(u32, Vec<ATask>),
    Scope {
        sid: u32,
        timeout: Option<Ms>,
        shield: bool,
        body: Vec<AOp>,
    },
}

#[derive(Debug, Clone)]
struct ATask {
    id: u32,
    ops: Vec<AOp>,
}

/// Numbers tasks, scopes, nurseries and failures, and gives the timed operations distinct
/// powers of two, in the order of their rank keys. `None` when there are too many timed
/// operations for the clock.
fn annotate(root: &[Vec<Op>]) -> Option<(Vec<ATask>, u32)> {
    struct Ann {
        next: u32,
        keys: Vec<(u8, usize)>,
    }
    impl Ann {
        fn id(&mut self) -> u32 {
            self.next += 1;
            self.next
        }
        fn key(&mut self, k: u8) -> Ms {
            let slot = self.keys.len();
            self.keys.push((k, slot));
            slot as Ms // replaced below
        }
        fn task(&mut self, ops: &[Op]) -> ATask {
            ATask {
                id: self.id(),
                ops: ops.iter().map(|op| self.op(op)).collect(),
            }
        }
        fn op(&mut self, op: &Op) -> AOp {
            match op {
                Op::Sleep(k) => AOp::Sleep(self.key(*k)),
                Op::YieldSleep(k) => AOp::YieldSleep(self.key(*k)),
                Op::Fail => AOp::Fail(self.id()),
                Op::Panic => AOp::Panic(self.id()),
                Op::Cancel(k) => AOp::Cancel(*k),
                Op::MoveDeadline(k, d) => AOp::MoveDeadline(*k, self.key(*d)),
                Op::Set(e) => AOp::Set(e % EVENTS),
                Op::Wait(e, k) => AOp::Wait(e % EVENTS, self.key(*k)),
                Op::Spawn(t) => AOp::Spawn(self.task(t)),
                Op::StartSleep(t, k) => {
                    let task = self.task(t);
                    AOp::StartSleep(task, self.key(*k))
                }
                Op::Nursery(ts) => {
                    let nid = self.id();
                    AOp::Nursery(nid, ts.iter().map(|t| self.task(t)).collect())
                }
                Op::Scope {
                    timeout,
                    shield,
                    body,
                } => AOp::Scope {
                    sid: self.id(),
                    timeout: timeout.map(|k| self.key(k)),
                    shield: *shield,
                    body: body.iter().map(|op| self.op(op)).collect(),
                },
            }
        }
    }
    let mut ann = Ann {
        next: 0,
        keys: Vec::new(),
    };
    let tasks: Vec<ATask> = root.iter().map(|t| ann.task(t)).collect();
    if ann.keys.len() > 60 {
        return None;
    }
    // Slot -> exponent, by rank key then position.
    let mut order = ann.keys.clone();
    order.sort();
    let mut exp = vec![0u32; order.len()];
    for (rank, &(_, slot)) in order.iter().enumerate() {
        exp[slot] = rank as u32;
    }
    fn fix_task(t: &mut ATask, exp: &[u32]) {
        for op in &mut t.ops {
            fix(op, exp);
        }
    }
    fn d(slot: &mut Ms, exp: &[u32]) {
        *slot = 1 << exp[*slot as usize];
    }
    fn fix(op: &mut AOp, exp: &[u32]) {
        match op {
            AOp::Sleep(s) | AOp::YieldSleep(s) | AOp::MoveDeadline(_, s) | AOp::Wait(_, s) => {
                d(s, exp)
            }
            AOp::StartSleep(t, s) => {
                fix_task(t, exp);
                d(s, exp);
            }
            AOp::Spawn(t) => fix_task(t, exp),
            AOp::Nursery(_, ts) => ts.iter_mut().for_each(|t| fix_task(t, exp)),
            AOp::Scope { timeout, body, .. } => {
                if let Some(s) = timeout {
                    d(s, exp);
                }
                body.iter_mut().for_each(|op| fix(op, exp));
            }
            AOp::Fail(_) | AOp::Panic(_) | AOp::Cancel(_) | AOp::Set(_) => {}
        }
    }
    let mut tasks = tasks;
    tasks.iter_mut().for_each(|t| fix_task(t, &exp));
    let root_nid = ann.id();
    Some((tasks, root_nid))
}

// ---------------------------------------------------------------------------------------
// What a run shows.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Outcome {
    /// The ids of the `Err`s the root reported, sorted (`None`: the run panicked).
    errors: Option<Vec<u32>>,
    /// The panic payload's id, when the run panicked.
    panic: Option<u32>,
    /// Virtual milliseconds from start to end (`None` when it panicked).
    end: Option<Ms>,
    /// `cancelled_caught` of every scope that returned.
    caught: BTreeMap<u32, bool>,
}

/// The panic payload of a `Panic` operation.
struct TreePanic(u32);

type Ids = Vec<u32>;

#[derive(Default)]
struct World {
    /// How many times each task's future was dropped.
    drops: RefCell<HashMap<u32, u32>>,
    spawned: RefCell<Vec<u32>>,
    /// Live children per nursery.
    live: RefCell<HashMap<u32, i32>>,
    caught: RefCell<BTreeMap<u32, bool>>,
    violations: RefCell<Vec<String>>,
    events: [trellis::Event; EVENTS as usize],
}

/// Held by a spawned future: counts its drop and its nursery's live children.
struct TaskGuard<'w> {
    world: &'w World,
    task: u32,
    nid: u32,
}

impl<'w> TaskGuard<'w> {
    fn new(world: &'w World, task: u32, nid: u32) -> Self {
        world.spawned.borrow_mut().push(task);
        *world.live.borrow_mut().entry(nid).or_default() += 1;
        TaskGuard { world, task, nid }
    }
}

impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        *self.world.drops.borrow_mut().entry(self.task).or_default() += 1;
        *self.world.live.borrow_mut().entry(self.nid).or_default() -= 1;
    }
}

/// Checks, when a nursery call is over (returned, or dropped with its task), that none of
/// its children is still alive.
struct NurseryCheck<'w> {
    world: &'w World,
    nid: u32,
}

impl Drop for NurseryCheck<'_> {
    fn drop(&mut self) {
        let live = self
            .world
            .live
            .borrow()
            .get(&self.nid)
            .copied()
            .unwrap_or(0);
        if live != 0 {
            self.world.violations.borrow_mut().push(format!(
                "nursery {} ended with {live} children alive",
                self.nid
            ));
        }
    }
}

/// The nursery a task belongs to: its number and the scopes around it.
#[derive(Clone)]
struct Home {
    nid: u32,
    scopes: Vec<CancelScope>,
}

fn ms(d: Ms) -> Duration {
    Duration::from_millis(d as u64)
}

fn spawn_task<'c, 'env>(w: &'env World, n: &Nursery<'c, 'env, Ids>, task: &'env ATask, home: Home) {
    let guard = TaskGuard::new(w, task.id, home.nid);
    n.spawn_with(async move |n2| {
        let _guard = guard;
        Box::pin(run_ops(w, &task.ops, &n2, &home, home.scopes.clone())).await
    });
}

async fn run_ops<'c, 'env>(
    w: &'env World,
    ops: &'env [AOp],
    n: &Nursery<'c, 'env, Ids>,
    home: &Home,
    scopes: Vec<CancelScope>,
) -> Result<(), Ids> {
    for op in ops {
        match op {
            AOp::Sleep(d) => sleep(ms(*d)).await,
            AOp::YieldSleep(d) => {
                yield_now().await;
                sleep(ms(*d)).await;
            }
            AOp::Fail(id) => return Err(vec![*id]),
            AOp::Panic(id) => std::panic::panic_any(TreePanic(*id)),
            AOp::Cancel(k) => {
                if !scopes.is_empty() {
                    scopes[*k as usize % scopes.len()].cancel();
                }
            }
            AOp::MoveDeadline(k, d) => {
                if !scopes.is_empty() {
                    scopes[*k as usize % scopes.len()].set_deadline(trellis::now() + ms(*d));
                }
            }
            AOp::Set(e) => w.events[*e as usize].set(),
            AOp::Wait(e, d) => {
                let _ = trellis::move_on_after(ms(*d), w.events[*e as usize].wait()).await;
            }
            AOp::Spawn(task) => spawn_task(w, n, task, home.clone()),
            AOp::StartSleep(task, d) => {
                let guard = TaskGuard::new(w, task.id, home.nid);
                let child_home = home.clone();
                let _ = n
                    .start(async move |n2, status| {
                        let _guard = guard;
                        status.started(());
                        let scopes = child_home.scopes.clone();
                        Box::pin(run_ops(w, &task.ops, &n2, &child_home, scopes)).await
                    })
                    .await;
                sleep(ms(*d)).await;
            }
            AOp::Nursery(nid, children) => {
                let _check = NurseryCheck {
                    world: w,
                    nid: *nid,
                };
                let inner = Home {
                    nid: *nid,
                    scopes: scopes.clone(),
                };
                let out = nursery(async |n2| {
                    for c in children {
                        spawn_task(w, &n2, c, inner.clone());
                    }
                    Ok::<(), Ids>(())
                })
                .await;
                out.map_err(|group| group.into_errors().concat())?;
            }
            AOp::Scope {
                sid,
                timeout,
                shield,
                body,
            } => {
                let mut scope = CancelScope::new().with_shield(*shield);
                if let Some(t) = timeout {
                    scope = scope.with_timeout(ms(*t));
                }
                let handle = scope.clone();
                let mut inner = scopes.clone();
                inner.push(handle.clone());
                let out = scope.run(Box::pin(run_ops(w, body, n, home, inner))).await;
                let caught = handle.cancelled_caught();
                if caught != out.is_none() {
                    w.violations.borrow_mut().push(format!(
                        "scope {sid}: cancelled_caught {caught} but run gave {}",
                        if out.is_none() { "None" } else { "Some" }
                    ));
                }
                w.caught.borrow_mut().insert(*sid, caught);
                if let Some(result) = out {
                    result?;
                }
            }
        }
    }
    Ok(())
}

/// Runs the tree on the autojump clock (shuffled with `seed` when given).
fn run_tree(tasks: &[ATask], root_nid: u32, seed: Option<u64>) -> (Outcome, Vec<String>) {
    let world = World::default();
    let mut builder = Builder::new().autojump();
    if let Some(seed) = seed {
        builder = builder.shuffle_seed(seed);
    }
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder.run(async {
            let start = trellis::now();
            let _check = NurseryCheck {
                world: &world,
                nid: root_nid,
            };
            let home = Home {
                nid: root_nid,
                scopes: Vec::new(),
            };
            let out = nursery(async |n| {
                for t in tasks {
                    spawn_task(&world, &n, t, home.clone());
                }
                Ok::<(), Ids>(())
            })
            .await;
            (out, (trellis::now() - start).as_millis())
        })
    }));
    let mut outcome = Outcome {
        caught: world.caught.borrow().clone(),
        ..Outcome::default()
    };
    match ran {
        Ok((out, end)) => {
            let mut errors = match out {
                Ok(()) => Vec::new(),
                Err(group) => group.into_errors().concat(),
            };
            errors.sort_unstable();
            outcome.errors = Some(errors);
            outcome.end = Some(end);
        }
        Err(payload) => match payload.downcast::<TreePanic>() {
            Ok(p) => outcome.panic = Some(p.0),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
    let mut violations = world.violations.borrow().clone();
    let drops = world.drops.borrow();
    for task in world.spawned.borrow().iter() {
        let n = drops.get(task).copied().unwrap_or(0);
        if n != 1 {
            violations.push(format!("task {task} was dropped {n} times"));
        }
    }
    (outcome, violations)
}

// ---------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Copy, Debug)]
enum Frame {
    Scope { sid: u32, shield: bool },
    Nursery(u32),
}

/// Who cancelled: a unit (task id; 0 is the root's body), or a timer (a deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Unit(u32),
    Timer,
    /// Several units at the same instant: which came first depends on the schedule.
    Many,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CancelAt {
    at: Ms,
    cause: Cause,
}

enum Flow {
    Done(Ms),
    /// Failed at the instant; whether by a panic.
    Failed(Ms, bool),
    /// Interrupted at the instant by the frame at this index.
    Interrupted(Ms, usize),
}

#[derive(Clone)]
struct MHome {
    frames: Vec<Frame>,
    scopes: Vec<u32>,
}

#[derive(Default)]
struct Eval {
    /// The table this evaluation uses.
    table: BTreeMap<Frame2, CancelAt>,
    // What the evaluation did:
    explicit: BTreeMap<u32, CancelAt>,
    deadlines: BTreeMap<u32, Vec<(Ms, Ms)>>,
    failed: BTreeMap<u32, CancelAt>,
    /// When each event was first set, and by whom.
    sets: BTreeMap<u8, CancelAt>,
    errors: Vec<u32>,
    panics: Vec<u32>,
    caught: BTreeMap<u32, bool>,
    /// The path of units (task ids) from the root to each task.
    paths: HashMap<u32, Vec<u32>>,
    ambiguous: Option<String>,
}

/// A frame as a table key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Frame2 {
    Scope(u32),
    Nursery(u32),
    /// Not a frame: when an event is first set.
    Event(u8),
}

impl Frame {
    fn key(self) -> Frame2 {
        match self {
            Frame::Scope { sid, .. } => Frame2::Scope(sid),
            Frame::Nursery(nid) => Frame2::Nursery(nid),
        }
    }
}

impl Eval {
    fn cancel_of(&self, f: Frame) -> Option<CancelAt> {
        self.table.get(&f.key()).copied()
    }

    /// Whether unit `cause` acted at an instant in an order the model knows relative to
    /// `unit`'s decision there: the unit itself, a timer, or a unit inside it.
    fn ordered(&self, cause: Cause, unit: u32) -> bool {
        match cause {
            Cause::Timer => true,
            Cause::Many => false,
            Cause::Unit(u) => u == unit || self.paths.get(&u).is_some_and(|p| p.contains(&unit)),
        }
    }

    fn ambiguous(&mut self, why: impl FnOnce() -> String) {
        if self.ambiguous.is_none() {
            self.ambiguous = Some(why());
        }
    }

    /// Whether a unit suspended at `t` until `wake` (`wake == t`: a yield) is interrupted,
    /// and when and by which frame (the outermost cancelled one up to the nearest shield).
    ///
    /// A frame cancelled at this very instant by a unit the model cannot order with this
    /// one (`strict`: any such frame; otherwise: such a frame beside another one cancelled
    /// at this instant, as the catcher then depends on the order) makes the case
    /// ambiguous.
    fn interrupt(
        &mut self,
        frames: &[Frame],
        unit: u32,
        t: Ms,
        wake: Ms,
        strict: bool,
    ) -> Option<(Ms, usize)> {
        let start = frames
            .iter()
            .rposition(|f| matches!(f, Frame::Scope { shield: true, .. }))
            .unwrap_or(0);
        let mut first: Option<Ms> = None;
        let (mut now, mut unordered_now) = (0, 0);
        for &f in &frames[start..] {
            if let Some(c) = self.cancel_of(f) {
                if c.at == t {
                    now += 1;
                    if !self.ordered(c.cause, unit) {
                        unordered_now += 1;
                    }
                }
                first = Some(first.map_or(c.at, |m| m.min(c.at)));
            }
        }
        if unordered_now > 0 && (strict || now > 1) {
            self.ambiguous(|| format!("unit {unit} decides at {t} as a frame is cancelled"));
        }
        let c = first?;
        let hit = if wake == t { c <= t } else { c < wake };
        if !hit {
            return None;
        }
        let at = c.max(t);
        let idx = (start..frames.len())
            .find(|&i| self.cancel_of(frames[i]).is_some_and(|x| x.at <= at))
            .expect("a cancelled frame");
        Some((at, idx))
    }

    fn ops(
        &mut self,
        ops: &[AOp],
        mut t: Ms,
        unit: u32,
        frames: &[Frame],
        scopes: &[u32],
        spawns: &mut Vec<(ATask, Ms)>,
    ) -> Flow {
        for op in ops {
            match op {
                AOp::Sleep(d) => {
                    if let Some((at, i)) = self.interrupt(frames, unit, t, t + d, false) {
                        return Flow::Interrupted(at, i);
                    }
                    t += d;
                }
                AOp::YieldSleep(d) => {
                    if let Some((at, i)) = self.interrupt(frames, unit, t, t, false) {
                        return Flow::Interrupted(at, i);
                    }
                    if let Some((at, i)) = self.interrupt(frames, unit, t, t + d, false) {
                        return Flow::Interrupted(at, i);
                    }
                    t += d;
                }
                AOp::Fail(id) => {
                    self.errors.push(*id);
                    return Flow::Failed(t, false);
                }
                AOp::Panic(id) => {
                    self.panics.push(*id);
                    return Flow::Failed(t, true);
                }
                AOp::Cancel(k) => {
                    if !scopes.is_empty() {
                        let sid = scopes[*k as usize % scopes.len()];
                        let e = self.explicit.entry(sid).or_insert(CancelAt {
                            at: t,
                            cause: Cause::Unit(unit),
                        });
                        if e.at > t {
                            *e = CancelAt {
                                at: t,
                                cause: Cause::Unit(unit),
                            };
                        } else if e.at == t && e.cause != Cause::Unit(unit) {
                            e.cause = Cause::Many;
                        }
                    }
                }
                AOp::MoveDeadline(k, d) => {
                    if !scopes.is_empty() {
                        let sid = scopes[*k as usize % scopes.len()];
                        self.deadlines.entry(sid).or_default().push((t, t + d));
                    }
                }
                AOp::Set(e) => {
                    let me = CancelAt {
                        at: t,
                        cause: Cause::Unit(unit),
                    };
                    let set = self.sets.entry(*e).or_insert(me);
                    if set.at > t {
                        *set = me;
                    } else if set.at == t && set.cause != me.cause {
                        set.cause = Cause::Many;
                    }
                }
                AOp::Wait(e, d) => {
                    // Set already (at this instant, or before): no suspension. Otherwise
                    // woken by the set, or by the timeout's deadline.
                    let found = self.table.get(&Frame2::Event(*e)).copied();
                    if found.is_some_and(|c| c.at == t) {
                        // Set at this very instant: before or after this wait (by another
                        // unit, or by this one later on: found by this test) is more than
                        // the model knows.
                        self.ambiguous(|| format!("wait by {unit} at {t} as the event is set"));
                    }
                    let set = found.map(|c| c.at);
                    if set.is_none_or(|s| s > t) {
                        let wake = set.map_or(t + d, |s| s.min(t + d));
                        // Woken by a set at the instant a frame around is cancelled: the
                        // set belongs to that instant's cascade, and whether it comes before
                        // the cancellation reaches this wait depends on the order (found
                        // by this test: the model had taken the set first).
                        if set == Some(wake)
                            && frames
                                .iter()
                                .any(|&f| self.cancel_of(f).is_some_and(|c| c.at == wake))
                        {
                            self.ambiguous(|| {
                                format!("wait by {unit} woken at {wake} as a frame is cancelled")
                            });
                        }
                        if let Some((at, i)) = self.interrupt(frames, unit, t, wake, false) {
                            return Flow::Interrupted(at, i);
                        }
                        t = wake;
                    }
                }
                AOp::Spawn(task) => spawns.push((task.clone(), t)),
                AOp::StartSleep(task, d) => {
                    // The starter waits for the child's first step. Cancelled before this
                    // instant, it is dropped at once and the child never runs; cancelled at
                    // this instant, which comes first depends on the schedule.
                    // The cancellations that came before the call (the child's own, at this
                    // instant, come after its first step: it runs).
                    let start = frames
                        .iter()
                        .rposition(|f| matches!(f, Frame::Scope { shield: true, .. }))
                        .unwrap_or(0);
                    let mut before: Option<(Ms, usize)> = None;
                    for (i, &f) in frames.iter().enumerate().skip(start) {
                        let Some(c) = self.cancel_of(f) else { continue };
                        let child_side = matches!(c.cause, Cause::Unit(u)
                            if self.paths.get(&u).is_some_and(|p| p.contains(&task.id)));
                        if c.at < t || (c.at == t && c.cause == Cause::Unit(unit)) {
                            before.get_or_insert((t, i));
                        } else if c.at == t && !child_side && !self.ordered(c.cause, unit) {
                            self.ambiguous(|| format!("start by {unit} cancelled at {t}"));
                        }
                    }
                    if let Some((at, i)) = before {
                        return Flow::Interrupted(at, i);
                    }
                    spawns.push((task.clone(), t));
                    if let Some((at, i)) = self.interrupt(frames, unit, t, t + d, false) {
                        return Flow::Interrupted(at, i);
                    }
                    t += d;
                }
                AOp::Nursery(nid, children) => {
                    let (end, failed) = self.nursery(*nid, children, t, unit, frames, scopes);
                    t = end;
                    if let Some(panic) = failed {
                        return Flow::Failed(t, panic);
                    }
                    // Abandoned: an enclosing frame was cancelled by the time it ended.
                    if let Some((at, i)) = self.interrupt(frames, unit, t, t, true) {
                        return Flow::Interrupted(at, i);
                    }
                }
                AOp::Scope {
                    sid,
                    timeout,
                    shield,
                    body,
                } => {
                    let mut inner = frames.to_vec();
                    inner.push(Frame::Scope {
                        sid: *sid,
                        shield: *shield,
                    });
                    let mut inner_scopes = scopes.to_vec();
                    inner_scopes.push(*sid);
                    let mut moves = vec![];
                    if let Some(d) = timeout {
                        moves.push((t, t + d));
                    }
                    self.deadlines.entry(*sid).or_default().splice(0..0, moves);
                    let me = inner.len() - 1;
                    match self.ops(body, t, unit, &inner, &inner_scopes, spawns) {
                        Flow::Done(x) => {
                            self.caught.insert(*sid, false);
                            t = x;
                        }
                        Flow::Failed(x, panic) => {
                            if !panic {
                                self.caught.insert(*sid, false);
                            }
                            return Flow::Failed(x, panic);
                        }
                        Flow::Interrupted(x, i) if i == me => {
                            self.caught.insert(*sid, true);
                            t = x;
                        }
                        Flow::Interrupted(x, i) => return Flow::Interrupted(x, i),
                    }
                }
            }
        }
        Flow::Done(t)
    }

    /// A nursery opened at `t` by `unit`; its end, and `Some(panicked)` if it failed.
    fn nursery(
        &mut self,
        nid: u32,
        children: &[ATask],
        t: Ms,
        unit: u32,
        frames: &[Frame],
        scopes: &[u32],
    ) -> (Ms, Option<bool>) {
        let mut inner = frames.to_vec();
        inner.push(Frame::Nursery(nid));
        let home = MHome {
            frames: inner,
            scopes: scopes.to_vec(),
        };
        let parent_path = self.paths.get(&unit).cloned().unwrap_or_default();
        let mut queue: Vec<(ATask, Ms)> = children.iter().map(|c| (c.clone(), t)).collect();
        let mut end = t;
        let mut failed: Option<bool> = None;
        let mut first_failure: Option<CancelAt> = None;
        while let Some((task, start)) = queue.pop() {
            let mut path = parent_path.clone();
            path.push(task.id);
            self.paths.insert(task.id, path);
            let mut spawns = Vec::new();
            let flow = self.ops(
                &task.ops,
                start,
                task.id,
                &home.frames,
                &home.scopes,
                &mut spawns,
            );
            // Siblings spawned by this task join this nursery (with this task's path's
            // parent: they are its siblings).
            queue.extend(spawns);
            let x = match flow {
                Flow::Done(x) | Flow::Interrupted(x, _) => x,
                Flow::Failed(x, panic) => {
                    failed = Some(failed.unwrap_or(false) || panic);
                    match &mut first_failure {
                        Some(f) if f.at < x => {}
                        Some(f) if f.at == x => f.cause = Cause::Many,
                        _ => {
                            first_failure = Some(CancelAt {
                                at: x,
                                cause: Cause::Unit(task.id),
                            });
                        }
                    }
                    x
                }
            };
            end = end.max(x);
        }
        if let Some(f) = first_failure {
            self.failed.insert(nid, f);
        }
        (end, failed)
    }

    /// The table this evaluation's events give.
    fn derived(&self) -> BTreeMap<Frame2, CancelAt> {
        let mut table = BTreeMap::new();
        for (&nid, &c) in &self.failed {
            table.insert(Frame2::Nursery(nid), c);
        }
        for (&sid, &c) in &self.explicit {
            table.insert(Frame2::Scope(sid), c);
        }
        for (&e, &c) in &self.sets {
            table.insert(Frame2::Event(e), c);
        }
        for (&sid, moves) in &self.deadlines {
            // The deadline in force from each set until the next; it fires if it comes
            // before the next set, or at its instant: a deadline's timer is what starts
            // everything at its instant, the move included (found by this test).
            let mut moves = moves.clone();
            moves.sort();
            for (i, &(_, deadline)) in moves.iter().enumerate() {
                let next = moves.get(i + 1).map_or(Ms::MAX, |m| m.0);
                if deadline <= next {
                    let e = table.entry(Frame2::Scope(sid)).or_insert(CancelAt {
                        at: deadline,
                        cause: Cause::Timer,
                    });
                    if deadline < e.at {
                        *e = CancelAt {
                            at: deadline,
                            cause: Cause::Timer,
                        };
                    }
                    break;
                }
            }
        }
        table
    }

    fn two_moves_at_one_instant(&self) -> bool {
        self.deadlines.values().any(|moves| {
            let mut at: Vec<Ms> = moves.iter().map(|m| m.0).collect();
            at.sort_unstable();
            at.windows(2).any(|w| w[0] == w[1])
        })
    }
}

/// What the model says, or why it cannot say.
fn model(tasks: &[ATask], root_nid: u32) -> Result<Outcome, String> {
    let mut table = BTreeMap::new();
    // The units' paths are the tree's: kept from one evaluation to the next, so that a
    // cause from the last one is known before its unit runs in this one.
    let mut paths = HashMap::from([(0, vec![0])]);
    for _ in 0..1000 {
        let mut eval = Eval {
            table: table.clone(),
            paths: std::mem::take(&mut paths),
            ..Eval::default()
        };
        let (end, failed) = eval.nursery(root_nid, tasks, 0, 0, &[], &[]);
        let derived = eval.derived();
        paths = eval.paths.clone();
        if derived != table {
            // Keep what is certain: the table agrees with this evaluation up to the
            // earliest instant where they differ, and only that instant is redone.
            let keys = table
                .keys()
                .chain(derived.keys())
                .copied()
                .collect::<Vec<_>>();
            let horizon = keys
                .iter()
                .filter(|k| table.get(k) != derived.get(k))
                .flat_map(|k| table.get(k).into_iter().chain(derived.get(k)).map(|c| c.at))
                .min()
                .expect("they differ");
            table = derived
                .into_iter()
                .filter(|(_, c)| c.at <= horizon)
                .collect();
            continue;
        }
        {
            if let Some(why) = eval.ambiguous {
                return Err(why);
            }
            if eval.two_moves_at_one_instant() {
                return Err("two deadline moves at one instant".into());
            }
            let mut outcome = Outcome {
                caught: eval.caught,
                ..Outcome::default()
            };
            if failed == Some(true) {
                // Which panic resumes depends on the order: `errors` holds every panic
                // the run may resume with, and `panic` says there is one.
                outcome.panic = Some(u32::MAX);
                outcome.errors = Some(eval.panics);
                return Ok(outcome);
            }
            let mut errors = eval.errors;
            errors.sort_unstable();
            outcome.errors = Some(errors);
            outcome.end = Some(end);
            return Ok(outcome);
        }
    }
    Err("the model did not settle".into())
}

// ---------------------------------------------------------------------------------------
// Generation and the property.

fn op_strategy() -> impl Strategy<Value = Op> {
    let leaf = prop_oneof![
        4 => any::<u8>().prop_map(Op::Sleep),
        2 => any::<u8>().prop_map(Op::YieldSleep),
        1 => Just(Op::Fail),
        1 => Just(Op::Panic),
        1 => any::<u8>().prop_map(Op::Cancel),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(k, d)| Op::MoveDeadline(k, d)),
        1 => any::<u8>().prop_map(Op::Set),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(e, k)| Op::Wait(e, k)),
    ];
    leaf.prop_recursive(6, 40, 8, |inner| {
        let task = task_strategy(inner.clone());
        prop_oneof![
            2 => prop::collection::vec(task.clone(), 1..=8).prop_map(Op::Nursery),
            2 => (prop::option::of(any::<u8>()), prop::bool::weighted(0.25), prop::collection::vec(inner, 0..4))
                .prop_map(|(timeout, shield, body)| Op::Scope { timeout, shield, body }),
            1 => task.clone().prop_map(Op::Spawn),
            1 => (task, any::<u8>()).prop_map(|(t, k)| Op::StartSleep(t, k)),
        ]
    })
}

/// A task: most start with a sleep of their own, so that siblings rarely act at one
/// instant (which the model may not be able to order); the others run their first step
/// at once.
fn task_strategy(op: impl Strategy<Value = Op> + 'static) -> BoxedStrategy<Vec<Op>> {
    (
        prop::bool::weighted(0.75),
        any::<u8>(),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(sleep_first, k, mut ops)| {
            if sleep_first {
                ops.insert(0, Op::Sleep(k));
            }
            ops
        })
        .boxed()
}

fn tree_strategy() -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(task_strategy(op_strategy()), 1..=8)
}

fn cases() -> u32 {
    std::env::var("TRELLIS_PROPTEST_CASES")
        .ok()
        .map(|v| {
            v.parse()
                .expect("TRELLIS_PROPTEST_CASES must be a number of cases")
        })
        .unwrap_or(256)
}

/// Silences the panic hook for the trees' own panics (thousands of them otherwise), and
/// only for those.
fn quiet_tree_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<TreePanic>().is_none() {
                default(info);
            }
        }));
    });
}

/// What the trees run showed, printed at the end: trees run, trees the model could not
/// order (rejected), trees that failed with an `Err`, that panicked, in which some scope
/// caught a cancellation, the largest tree (operations).
static STATS: [std::sync::atomic::AtomicU32; 6] =
    [const { std::sync::atomic::AtomicU32::new(0) }; 6];

fn count(i: usize, n: u32) {
    STATS[i].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

fn size(ops: &[Op]) -> u32 {
    ops.iter()
        .map(|op| {
            1 + match op {
                Op::Spawn(t) | Op::StartSleep(t, _) => size(t),
                Op::Nursery(ts) => ts.iter().map(|t| size(t)).sum(),
                Op::Scope { body, .. } => size(body),
                _ => 0,
            }
        })
        .sum()
}

fn check(tree: Vec<Vec<Op>>, seed: u64) -> Result<(), TestCaseError> {
    let Some((tasks, root_nid)) = annotate(&tree) else {
        count(1, 1);
        return Err(TestCaseError::reject("too many timed operations"));
    };
    let expected = match model(&tasks, root_nid) {
        Ok(o) => o,
        Err(why) => {
            count(1, 1);
            return Err(TestCaseError::reject(why));
        }
    };
    count(0, 1);
    count(
        2,
        u32::from(
            expected.panic.is_none() && expected.errors.as_ref().is_some_and(|e| !e.is_empty()),
        ),
    );
    count(3, u32::from(expected.panic.is_some()));
    count(4, u32::from(expected.caught.values().any(|&c| c)));
    let ops: u32 = tree.iter().map(|t| size(t)).sum();
    STATS[5].fetch_max(ops, std::sync::atomic::Ordering::Relaxed);
    for seed in [None, Some(seed)] {
        let tasks2 = tasks.clone();
        let (got, violations) = watchdog(HANG_LIMIT, move || {
            quiet_tree_panics();
            run_tree(&tasks2, root_nid, seed)
        });
        prop_assert!(violations.is_empty(), "seed {seed:?}: {violations:?}");
        prop_assert_eq!(
            &got.caught,
            &expected.caught,
            "seed {:?}: cancelled_caught",
            seed
        );
        if expected.panic.is_some() {
            let possible = expected.errors.clone().unwrap_or_default();
            prop_assert!(
                got.panic.is_some_and(|p| possible.contains(&p)),
                "seed {:?}: expected a panic among {:?}, got {:?}",
                seed,
                possible,
                got
            );
        } else {
            prop_assert_eq!(
                &got.panic,
                &None,
                "seed {:?}: a panic the model did not expect",
                seed
            );
            prop_assert_eq!(&got.errors, &expected.errors, "seed {:?}: errors", seed);
            prop_assert_eq!(got.end, expected.end, "seed {:?}: virtual end time", seed);
        }
    }
    Ok(())
}

#[test]
fn random_trees_match_the_model() {
    // About half the trees are rejected (ambiguous or too big), so the reject limit grows
    // with the number of cases: a long run must not fail for having run long.
    let config = ProptestConfig {
        cases: cases(),
        max_global_rejects: cases().saturating_mul(4).max(100_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&(tree_strategy(), any::<u64>()), |(tree, seed)| {
        check(tree, seed)
    });
    let [run, rejected, failed, panicked, caught, largest] = STATS
        .each_ref()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!(
        "tree_model: {run} trees run against the model, each FIFO and under a shuffle seed \
         ({rejected} rejected as ambiguous or too big; {failed} ended in errors, {panicked} \
         in a panic, {caught} with a scope catching a cancellation; largest {largest} operations)"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A few trees written out, so that the model itself is checked on cases worked by hand.
#[test]
fn the_model_on_hand_worked_trees() {
    let one = |ops: Vec<Op>| vec![ops];
    // A sleep, then a failure: one error, at the sleep's end.
    let (tasks, nid) = annotate(&one(vec![Op::Sleep(0), Op::Fail])).unwrap();
    let m = model(&tasks, nid).unwrap();
    assert_eq!(m.errors.as_deref(), Some(&[2][..]));
    assert_eq!(m.end, Some(1));
    // A failure at 1 ms cancels a sibling sleeping 2 ms.
    let tree = vec![vec![Op::Sleep(0), Op::Fail], vec![Op::Sleep(1), Op::Fail]];
    let (tasks, nid) = annotate(&tree).unwrap();
    let m = model(&tasks, nid).unwrap();
    assert_eq!(m.errors.as_ref().map(Vec::len), Some(1));
    assert_eq!(m.end, Some(1));
    // A timeout of 1 ms around a 2 ms sleep catches; then 4 ms more.
    let tree = one(vec![
        Op::Scope {
            timeout: Some(0),
            shield: false,
            body: vec![Op::Sleep(1)],
        },
        Op::Sleep(2),
    ]);
    let (tasks, nid) = annotate(&tree).unwrap();
    let m = model(&tasks, nid).unwrap();
    assert_eq!(m.end, Some(1 + 4));
    assert_eq!(m.caught.values().copied().collect::<Vec<_>>(), [true]);
    // A shield keeps a child running past its nursery's failure.
    let tree = vec![
        vec![Op::Sleep(0), Op::Fail],
        vec![Op::Scope {
            timeout: None,
            shield: true,
            body: vec![Op::Sleep(1)],
        }],
    ];
    let (tasks, nid) = annotate(&tree).unwrap();
    let m = model(&tasks, nid).unwrap();
    assert_eq!(m.end, Some(2));
    // And the runtime agrees on the first one, under a seed.
    let (tasks, nid) = annotate(&one(vec![Op::Sleep(0), Op::Fail])).unwrap();
    let (got, v) = run_tree(&tasks, nid, Some(1));
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(got.errors, model(&tasks, nid).unwrap().errors);
}
