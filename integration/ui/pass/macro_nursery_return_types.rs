//! `#[nursery]` on free functions with each kind of return type.

use trellis::{Nursery, nursery};

#[nursery]
async fn unit(n: Nursery) {
    let _child = n.spawn(async {});
}

#[nursery]
async fn explicit_unit(n: Nursery) -> () {
    let _child = n.spawn(async {});
}

#[nursery]
async fn result(n: Nursery) -> Result<u32, String> {
    let _child = n.spawn(async { Err::<(), _>("failed".to_string()) });
    Ok(1)
}

#[nursery]
async fn io_result(n: Nursery) -> std::io::Result<()> {
    let _child = n.spawn(async { Ok::<_, std::io::Error>(()) });
    Ok(())
}

#[nursery]
async fn value(n: Nursery) -> Vec<u8> {
    let _child = n.spawn(async {});
    vec![1, 2]
}

#[nursery]
async fn option(n: Nursery) -> Option<u8> {
    let _child = n.spawn(async {});
    let first = [1u8].first()?;
    Some(*first)
}

#[nursery]
async fn early_return(n: Nursery, early: bool) -> u8 {
    let _child = n.spawn(async {});
    if early {
        return 1;
    }
    2
}

#[nursery]
async fn returns_impl_trait(n: Nursery) -> impl std::fmt::Display {
    let _child = n.spawn(async {});
    7
}

fn main() {
    trellis::run(async {
        unit().await;
        explicit_unit().await;
        let _: Result<u32, String> = result().await;
        let _: std::io::Result<()> = io_result().await;
        let _: Vec<u8> = value().await;
        let _: Option<u8> = option().await;
        let _: u8 = early_return(true).await;
        let _ = returns_impl_trait().await.to_string();
    });
}
