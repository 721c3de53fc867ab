//! `#[trellis::main]` returning `()`.

#[trellis::main]
async fn main() {
    trellis::sleep(std::time::Duration::from_millis(1)).await;
}
