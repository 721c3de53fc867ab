use trellis::nursery;

#[nursery]
struct Server;

fn main() {}
