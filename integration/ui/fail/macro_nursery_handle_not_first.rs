use trellis::{Nursery, nursery};

#[nursery]
async fn spawn_nothing(count: u32, n: Nursery) {}

fn main() {}
