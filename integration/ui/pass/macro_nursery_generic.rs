//! `#[nursery]` on generic functions, with lifetimes, type parameters and where clauses.

use std::fmt::Debug;

use trellis::{Nursery, nursery};

#[nursery]
async fn show_all<T: Debug>(n: Nursery, items: &[T]) {
    for item in items {
        let _child = n.spawn(async move { assert!(!format!("{item:?}").is_empty()) });
    }
}

#[nursery]
async fn first<'a, T>(n: Nursery, items: &'a [T]) -> Result<&'a T, String>
where
    T: Debug,
{
    let _child = n.spawn(async { assert!(format!("{items:?}").starts_with('[')) });
    items.first().ok_or_else(|| "empty".to_string())
}

#[nursery]
async fn convert<E: From<std::num::ParseIntError>>(n: Nursery, text: &str) -> Result<u32, E> {
    let _child = n.spawn(async { Ok::<(), E>(()) });
    Ok(text.parse::<u32>()?)
}

fn main() {
    trellis::run(async {
        show_all(&[1, 2, 3]).await;
        let _ = first(&["a"]).await;
        let _ = convert::<std::num::ParseIntError>("1").await;
    });
}
