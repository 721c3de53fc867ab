#[trellis::test(crate = "not a path!")]
async fn sleeps() {}

fn main() {}
