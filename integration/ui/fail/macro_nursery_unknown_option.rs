use trellis::{Nursery, nursery};

#[nursery(timeout = 3)]
async fn spawn_nothing(n: Nursery) {}

fn main() {}
