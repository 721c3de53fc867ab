// A format string that names the handle captures it: the child escapes with it.
use trellis::{Nursery, nursery};

#[nursery]
async fn report(n: Nursery) {
    n.start_soon(async {
        println!("children: {n:?}");
    });
}

fn main() {}
