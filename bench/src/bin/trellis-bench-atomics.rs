//! What a locked instruction, an uncontended `Mutex` and a thread-local `RefCell` cost on
//! this machine, one thread, pinned: the unit costs behind the callgrind figures of
//! BENCHMARKS.md ("locked RMWs per op"), which count instructions, not time.
//!
//! ```sh
//! cargo run --release -p trellis-bench --bin trellis-bench-atomics
//! ```
//!
//! Prints ns per operation, the minimum over 5 rounds of 20 million each.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

thread_local! {
    static LIST: RefCell<VecDeque<usize>> = RefCell::new(VecDeque::with_capacity(16));
}

const N: usize = 20_000_000;

fn per_op(mut op: impl FnMut(usize)) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for i in 0..N {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    if let Some(core) = core_affinity::get_core_ids().and_then(|ids| ids.last().copied()) {
        core_affinity::set_for_current(core);
    }
    let flag = AtomicBool::new(false);
    let count = AtomicUsize::new(0);
    let queue = Mutex::new(VecDeque::<usize>::with_capacity(16));
    let swap = per_op(|_| {
        black_box(flag.swap(black_box(true), Ordering::AcqRel));
    });
    let add = per_op(|_| {
        black_box(count.fetch_add(1, Ordering::Relaxed));
    });
    let store = per_op(|i| {
        count.store(black_box(i), Ordering::Release);
        black_box(count.load(Ordering::Acquire));
    });
    let locked = per_op(|i| {
        let mut q = queue.lock().unwrap();
        q.push_back(black_box(i));
        black_box(q.pop_front());
    });
    let local = per_op(|i| {
        LIST.with_borrow_mut(|q| {
            q.push_back(black_box(i));
            black_box(q.pop_front());
        })
    });
    println!("locked swap (AcqRel)              {swap:6.2} ns");
    println!("locked fetch_add (Relaxed)        {add:6.2} ns");
    println!("atomic store + load (no lock)     {store:6.2} ns");
    println!("Mutex lock, push+pop, unlock      {locked:6.2} ns");
    println!("thread-local RefCell, push+pop    {local:6.2} ns");
}
