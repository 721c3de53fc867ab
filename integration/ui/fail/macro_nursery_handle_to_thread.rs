// A nursery lives on its runtime's thread: the handle cannot move to another one.
use trellis::{Nursery, nursery};

#[nursery]
async fn offload(n: Nursery) {
    let worker = std::thread::spawn(move || {
        drop(n);
    });
    let _ = worker.join();
}

fn main() {}
