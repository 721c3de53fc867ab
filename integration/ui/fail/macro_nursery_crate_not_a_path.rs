use trellis::{Nursery, nursery};

#[nursery(crate = 42)]
async fn spawn_nothing(n: Nursery) {}

fn main() {}
