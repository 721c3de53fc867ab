#[trellis::main]
fn main() {}
