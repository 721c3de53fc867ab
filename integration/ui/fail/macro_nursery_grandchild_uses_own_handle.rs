// The handle a `spawn_with` child receives is the child's: its own children cannot use it.
use trellis::{Nursery, nursery};

#[nursery]
async fn tree(n: Nursery) {
    n.spawn_with(async |m| {
        m.start_soon(async {
            m.start_soon(async {});
        });
    });
}

fn main() {}
