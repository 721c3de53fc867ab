use trellis::{Nursery, nursery};

#[nursery]
async fn spawn_nothing(n: Nursery, m: Nursery) {}

fn main() {}
