// A `spawn_with` child gets its own handle; naming the outer one is still an escape.
use trellis::{Nursery, nursery};

#[nursery]
async fn supervisor(n: Nursery) {
    n.spawn_with(async |_own| {
        n.start_soon(async {});
    });
}

fn main() {}
