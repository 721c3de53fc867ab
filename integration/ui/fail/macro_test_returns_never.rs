#[trellis::test(autojump)]
async fn runs_forever() -> ! {
    loop {
        trellis::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn main() {}
