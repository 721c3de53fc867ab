use trellis::nursery;

#[nursery(n, m)]
async fn spawn_nothing() {}

fn main() {}
