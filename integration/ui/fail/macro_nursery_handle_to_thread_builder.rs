// `thread::Builder` starts a thread as well.
use trellis::{Nursery, nursery};

#[nursery]
async fn offload(n: Nursery) {
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || n.start_soon(async {}));
    let _ = worker;
}

fn main() {}
