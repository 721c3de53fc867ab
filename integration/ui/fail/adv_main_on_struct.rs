#[trellis::main]
struct Main;

fn main() {}
