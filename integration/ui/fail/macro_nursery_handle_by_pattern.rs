use trellis::{Nursery, nursery};

#[nursery]
async fn spawn_nothing(_: Nursery) {}

fn main() {}
