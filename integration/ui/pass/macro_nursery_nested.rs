//! `#[nursery]` functions calling each other: each call is a nursery inside its caller's child.

use trellis::{Nursery, nursery};

#[nursery]
async fn leaf(n: Nursery, depth: u32) -> Result<u32, String> {
    let _child = n.spawn(async move {
        if depth > 100 {
            Err("too deep".to_string())
        } else {
            Ok(())
        }
    });
    Ok(depth)
}

#[nursery]
async fn branch(n: Nursery, width: u32) -> Result<u32, String> {
    for i in 0..width {
        let _child = n.spawn(async move { leaf(i).await.map(drop) });
    }
    leaf(width).await
}

#[nursery]
async fn root(n: Nursery) -> Result<u32, String> {
    let _child = n.spawn(async { branch(2).await.map(drop) });
    branch(3).await
}

fn main() {
    let _ = trellis::run(root());
}
