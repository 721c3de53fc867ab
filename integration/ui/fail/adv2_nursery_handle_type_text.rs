// The type in the message is written as the user wrote it (`&mut u32`, not `&mutu32`).
#[trellis::nursery]
async fn count(n: &mut u32) {
    *n += 1;
}

fn main() {}
