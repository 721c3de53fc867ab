use trellis::{Nursery, nursery};

#[nursery]
async fn leak(n: Nursery) -> Nursery {
    n
}

fn main() {}
