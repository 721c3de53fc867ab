// A `start_soon` child naming the handle, inside a nested closure: it captures the handle.
use trellis::{Nursery, nursery};

#[nursery]
async fn workers(n: Nursery, jobs: &[u32]) {
    n.start_soon(async move {
        jobs.iter().for_each(|_| n.start_soon(async {}));
    });
}

fn main() {}
