//! A `#[nursery]` fn returning an alias of a `Result` is a fallible nursery: its children
//! fail with the alias's error, `?` works, `map_err` applies. A plain value, a generic `T`
//! and `Self` stay plain values. `open_nursery!` takes `|n,|` as Rust closures do.

#![deny(warnings)]

use trellis::{ErrorGroup, Nursery, nursery, open_nursery};

type Res<T> = Result<T, String>;

#[nursery]
async fn child_fails(n: Nursery) -> Res<u32> {
    n.start_soon(async { Err::<(), String>("child".into()) });
    Ok(1)
}

#[nursery]
async fn body_fails(n: Nursery) -> Res<u32> {
    n.start_soon(async { Ok::<(), String>(()) });
    let parsed: u32 = "x".parse().map_err(|_| "parse".to_string())?;
    Ok(parsed)
}

fn count(group: ErrorGroup<String>) -> String {
    format!("{} errors", group.len())
}

#[nursery(map_err = count)]
async fn both_fail(n: Nursery) -> Res<u32> {
    n.start_soon(async { Err::<(), String>("a".into()) });
    n.start_soon(async { Err::<(), String>("b".into()) });
    Ok(1)
}

#[nursery]
async fn plain(n: Nursery, tag: u32) -> u32 {
    n.start_soon(async {});
    tag + 1
}

#[nursery]
async fn generic<T>(n: Nursery, value: T) -> T {
    n.start_soon(async {});
    value
}

#[derive(Debug, PartialEq)]
struct Point(u32);

impl Point {
    #[nursery]
    async fn make(n: Nursery) -> Self {
        n.start_soon(async {});
        Point(7)
    }
}

fn main() {
    assert_eq!(trellis::run(child_fails()), Err("child".to_string()));
    assert_eq!(trellis::run(body_fails()), Err("parse".to_string()));
    assert_eq!(trellis::run(both_fail()), Err("2 errors".to_string()));
    assert_eq!(trellis::run(plain(2)), 3);
    assert_eq!(trellis::run(generic(0_u8)), 0);
    // A type parameter is a plain value, even when it is a `Result`.
    assert_eq!(trellis::run(generic::<Res<u8>>(Err("e".into()))), Err("e".into()));
    assert_eq!(trellis::run(Point::make()), Point(7));
    trellis::run(async {
        open_nursery!(|n,| {
            n.start_soon(async {});
        })
        .unwrap();
    });
}
