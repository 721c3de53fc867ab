//! Every `#[nursery]` option: the handle named in the attribute, `name = ...`, `crate = ...`,
//! `map_err = ...`, a `mut` handle, a qualified handle type, an explicit error type.

use trellis::{ErrorGroup, nursery};

mod reexport {
    pub use trellis;
}

#[nursery(n)]
async fn named(words: &[&str]) {
    for word in words {
        let _child = n.spawn(async move { assert!(!word.is_empty()) });
    }
}

#[nursery(name = handle)]
async fn named_with_key() {
    let _child = handle.spawn(async {});
}

#[nursery(crate = reexport::trellis)]
async fn through_reexport(n: reexport::trellis::Nursery) {
    let _child = n.spawn(async {});
}

#[nursery(crate = "reexport::trellis")]
async fn through_reexport_string(n: trellis::Nursery) {
    let _child = n.spawn(async {});
}

#[derive(Debug)]
struct AllErrors(Vec<String>);

fn collect(group: ErrorGroup<AllErrors>) -> AllErrors {
    AllErrors(group.into_errors().into_iter().flat_map(|e| e.0).collect())
}

#[nursery(map_err = collect)]
async fn mapped(n: trellis::Nursery) -> Result<(), AllErrors> {
    let _child = n.spawn(async { Err::<(), _>(AllErrors(vec!["a".into()])) });
    Ok(())
}

#[nursery(map_err = |group: ErrorGroup<String>| group.to_string())]
async fn mapped_by_closure(n: trellis::Nursery) -> Result<(), String> {
    let _child = n.spawn(async { Err::<(), _>("b".to_string()) });
    Ok(())
}

#[nursery]
async fn mutable(mut n: trellis::Nursery) {
    let _child = n.spawn(async {});
    let _again = &mut n;
}

#[nursery]
async fn explicit_error(n: trellis::Nursery<String>) -> Result<(), String> {
    let _child = n.spawn(async { Err::<(), _>("c".to_string()) });
    Ok(())
}

fn main() {
    trellis::run(async {
        named(&["a"]).await;
        named_with_key().await;
        through_reexport().await;
        through_reexport_string().await;
        let _ = mapped().await;
        let _ = mapped_by_closure().await;
        mutable().await;
        let _ = explicit_error().await;
    });
}
