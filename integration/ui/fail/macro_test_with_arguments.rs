#[trellis::test(autojump)]
async fn sleeps(seconds: u64) {
    let _ = seconds;
}

fn main() {}
