#[trellis::test(autojump)]
fn sleeps() {}

fn main() {}
