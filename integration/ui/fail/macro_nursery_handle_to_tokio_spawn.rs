// A tokio task is another task (and maybe another thread): the handle cannot go there.
use trellis::{Nursery, nursery};

#[nursery]
async fn bridge(n: Nursery) {
    let _task = tokio::spawn(async move {
        n.start_soon(async {});
    });
}

fn main() {}
