// The handle's first lifetime is its nursery's own: a lifetime of the function cannot be it
// (rustc says "implementation of `AsyncFnOnce` is not general enough").
use trellis::{Nursery, nursery};

#[nursery]
async fn branded<'a>(n: Nursery<'a, 'a>, data: &'a [u8]) -> usize {
    n.start_soon(async {});
    data.len()
}

fn main() {}
