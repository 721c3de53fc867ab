#[trellis::test(mock_clock, autojump)]
async fn sleeps() {}

fn main() {}
