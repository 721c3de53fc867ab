use trellis::{Nursery, nursery};

#[nursery(crate = trellis, crate = trellis)]
async fn spawn_nothing(n: Nursery) {}

fn main() {}
