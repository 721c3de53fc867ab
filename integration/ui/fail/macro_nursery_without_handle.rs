use trellis::nursery;

#[nursery]
async fn spawn_nothing(count: u32) {
    let _ = count;
}

fn main() {}
