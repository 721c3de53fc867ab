use trellis::{Nursery, nursery};

#[nursery(map_err)]
async fn spawn_nothing(n: Nursery) -> Result<(), String> {
    Ok(())
}

fn main() {}
