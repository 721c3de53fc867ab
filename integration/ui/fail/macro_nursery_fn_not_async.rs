use trellis::{Nursery, nursery};

#[nursery]
fn spawn_nothing(n: Nursery) {}

fn main() {}
