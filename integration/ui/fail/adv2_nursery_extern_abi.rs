// A nursery with a foreign ABI: it returns a future, which no foreign caller can poll.
use trellis::{Nursery, nursery};

#[nursery]
async extern "C" fn exported(n: Nursery) {
    n.start_soon(async {});
}

fn main() {}
