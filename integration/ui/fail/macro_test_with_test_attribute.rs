#[trellis::test]
#[test]
async fn sleeps() {}

fn main() {}
