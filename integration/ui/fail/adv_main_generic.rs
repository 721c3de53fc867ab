#[trellis::main]
async fn main<T>() {}
