use trellis::{Nursery, nursery};

#[nursery(m)]
async fn spawn_nothing(n: Nursery) {}

fn main() {}
