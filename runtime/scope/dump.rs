//! [`dump_tree`]: a walk over the live scope tree, writing the task tree.
//!
//! The walk starts at the nodes opened outside every other (`top_nodes`: listed while the
//! runtime records its tasks, and the one the caller is inside) and goes down
//! the scope tree's child links; a nursery's tasks come from the records it keeps in its
//! node, the scopes inside each task from the nodes whose parent position is that task's
//! unit. It reads what is recorded and polls nothing.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::rc::Rc;

use crate::instrument::tree::{TaskRecord, TaskState, TaskTree, TreeWriter};
use crate::rt::state::with_core;
use crate::scope::tree::{Position, ScopeNode, current_position, top_nodes};
use crate::scope::unit::BODY;

/// A snapshot of the running runtime's tree of nurseries, cancel scopes and tasks, to
/// print: for each scope its deadline, shield and cancellation; for each task its name,
/// what it is doing (running, ready, waiting on a timer until when, waiting on which file
/// descriptor, in a shield, being cancelled), its age and how many times it was polled.
///
/// It reads what the runtime records and polls nothing, so it is cheap enough to call
/// from a task at any time. The tasks are listed when the runtime keeps their records:
/// on the mock clocks, with [`Builder::task_tree`](crate::Builder::task_tree) or an
/// instrument. Otherwise the tree shows the nurseries and scopes, and only those of the
/// tree the caller runs in (the runtime does not list the trees opened outside every
/// other unless it keeps records: it would cost every request). From another thread,
/// run it on the runtime with
/// [`RuntimeHandle::run_sync`](crate::RuntimeHandle::run_sync). The deadlock panic of the
/// mock clocks prints the same tree.
///
/// # Panics
///
/// Outside a runtime, with a message that says so.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// trellis::Builder::new().autojump().run(trellis::nursery(async |n| {
///     n.spawn_named("worker", trellis::sleep(Duration::from_secs(10)));
///     trellis::sleep(Duration::from_secs(1)).await;
///     let tree = trellis::dump_tree().to_string();
///     println!("{tree}");
///     assert!(tree.contains("the nursery body (spawned at "));
///     assert!(tree.contains(": running; age 1s, 1 poll")); // polls it finished
///     assert!(tree.contains("child 1 \"worker\": waiting on a timer, due in 9s; age 1s, 1 poll"));
/// }));
/// ```
#[track_caller]
pub fn dump_tree() -> TaskTree {
    let now = with_core(|core| core.clock.now());
    let running = running_units();
    let mut writer = TreeWriter::new(now);
    for node in top_nodes() {
        write_node(&mut writer, &node, &running);
    }
    writer.finish()
}

/// The tree as the deadlock panic prints it.
pub(crate) fn tree_text() -> String {
    dump_tree().to_string()
}

/// The units whose poll is on the stack: the current position and the ones enclosing it.
fn running_units() -> Vec<(*const ScopeNode, usize)> {
    let mut units = Vec::new();
    let mut at: Option<Position> = current_position();
    while let Some(position) = at {
        if let Some(unit) = &position.unit {
            let index = unit.index.load(std::sync::atomic::Ordering::Relaxed);
            units.push((Rc::as_ptr(&position.node), index));
        }
        at = position.node.parent_position();
    }
    units
}

fn write_node(w: &mut TreeWriter, node: &Rc<ScopeNode>, running: &[(*const ScopeNode, usize)]) {
    let reason = node.cancel_called().then(|| node.reason()).flatten();
    let heading = match (node.is_nursery.get(), node.keeps_records()) {
        (true, true) => "nursery",
        (true, false) => {
            "nursery (its tasks are not recorded: build the runtime with `Builder::task_tree()`)"
        }
        (false, _) => "cancel scope",
    };
    let mut inside: HashMap<Option<usize>, Vec<Rc<ScopeNode>>> = HashMap::new();
    for (child, unit) in node.running_children() {
        inside.entry(unit).or_default().push(child);
    }
    w.scope(
        format_args!("{heading}"),
        node.deadline(),
        node.shield(),
        reason.as_ref(),
        |w| {
            if !node.keeps_records() {
                // A scope's body, or a nursery whose tasks are not known: what runs inside.
                for child in inside.into_values().flatten() {
                    write_node(w, &child, running);
                }
                return;
            }
            let cancelled = node.is_cancelled();
            let (body, records): (_, Vec<(usize, TaskRecord)>) =
                match node.records.borrow().as_deref() {
                    Some(r) => (
                        r.body.clone(),
                        r.children().map(|(k, r)| (k, r.clone())).collect(),
                    ),
                    None => (None, Vec::new()),
                };
            for (index, record) in body.map(|b| (BODY, b)).into_iter().chain(records) {
                let scopes = inside.remove(&Some(index)).unwrap_or_default();
                let state = TaskState {
                    running: running.contains(&(Rc::as_ptr(node), index)),
                    shielded: scopes.iter().any(|s| s.holds_shield()),
                    cancelled,
                    nested: !scopes.is_empty(),
                };
                w.task(&record, state, |w| {
                    for scope in &scopes {
                        write_node(w, scope, running);
                    }
                });
            }
        },
    );
}
