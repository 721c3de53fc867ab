//! A crate's own module named `thread`, whose `spawn` and `Builder` run the closure on this
//! thread: the handle used in that closure compiles, so `#[nursery]` and `open_nursery!`
//! must not reject it (only a full `std::thread::...` path is certainly std's).

use std::cell::Cell;

use trellis::{Nursery, nursery, open_nursery};

mod thread {
    /// Runs `f` here and now.
    pub fn spawn<T>(f: impl FnOnce() -> T) -> T {
        f()
    }

    pub struct Builder;

    impl Builder {
        pub fn new() -> Self {
            Builder
        }

        pub fn spawn<T>(self, f: impl FnOnce() -> T) -> T {
            f()
        }
    }
}

#[nursery]
async fn with_own_thread_module(n: Nursery, ran: &Cell<u32>) {
    thread::spawn(|| n.start_soon(async { ran.set(ran.get() + 1) }));
    thread::Builder::new().spawn(|| n.start_soon(async { ran.set(ran.get() + 1) }));
}

fn main() {
    let ran = Cell::new(0);
    trellis::run(with_own_thread_module(&ran));
    assert_eq!(ran.get(), 2);
    trellis::run(async {
        open_nursery!(|n| {
            thread::spawn(|| n.start_soon(async { ran.set(ran.get() + 1) }));
        })
        .unwrap();
    });
    assert_eq!(ran.get(), 3);
}
