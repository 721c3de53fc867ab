// A reference to the handle is the handle: a child that captures it escapes.
use trellis::{Nursery, nursery};

#[nursery]
async fn aliased(n: Nursery) {
    let handle = &n;
    n.start_soon(async move {
        handle.start_soon(async {});
    });
}

fn main() {}
