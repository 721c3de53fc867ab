#[trellis::test(flavor = "multi_thread")]
async fn sleeps() {}

fn main() {}
