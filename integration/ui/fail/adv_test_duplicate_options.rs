#[trellis::test(autojump, autojump, shuffle, shuffle, crate = trellis, crate = trellis)]
async fn sleeps() {}

fn main() {}
