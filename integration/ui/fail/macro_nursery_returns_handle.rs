use trellis::{Nursery, nursery};

#[nursery]
async fn leak(n: Nursery, early: bool) -> Option<Nursery> {
    if early {
        return Some(n);
    }
    None
}

fn main() {}
