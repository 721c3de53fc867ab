// The clock options are flags.
#[trellis::test(autojump = true)]
async fn jumps() {}

#[trellis::test(shuffle = 8)]
async fn shuffled() {}

fn main() {}
