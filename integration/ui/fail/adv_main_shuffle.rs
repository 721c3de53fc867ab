#[trellis::main(shuffle)]
async fn main() {}
