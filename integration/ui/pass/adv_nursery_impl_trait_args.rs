//! `#[nursery]` with `impl Trait` arguments and a where clause on a generic closure type.

#![deny(warnings)]
use std::cell::Cell;
use std::fmt::Display;
use trellis::{Nursery, nursery};

#[nursery]
async fn show(n: Nursery, items: impl IntoIterator<Item = u32>, label: &impl Display, out: &Cell<usize>) -> String {
    let text = label.to_string();
    for i in items {
        n.start_soon(async move { out.set(out.get() + i as usize) });
    }
    text
}

#[nursery]
async fn call<F>(n: Nursery, f: F, g: impl Fn(u32) -> u32) -> u32
where
    F: Fn() -> u32,
    F: Clone,
{
    let f2 = f.clone();
    let g = &g;
    n.start_soon(async move { assert_eq!(g(f2()), 2) });
    f() + g(0)
}

fn main() {
    let out = Cell::new(0);
    trellis::run(async {
        assert_eq!(show([1, 2, 3], &"x", &out).await, "x");
        assert_eq!(call(|| 1, |x| x + 1).await, 2);
    });
    assert_eq!(out.get(), 6);
}
