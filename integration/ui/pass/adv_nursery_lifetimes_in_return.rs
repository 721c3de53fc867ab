//! `#[nursery]` returning borrowed data: a named lifetime, an elided one inside `Result`, and
//! a bare elided `&u8`.

#![deny(warnings)]
use trellis::{Nursery, nursery};

#[nursery]
async fn longest<'a>(n: Nursery, a: &'a str, b: &'a str) -> &'a str {
    n.start_soon(async { assert!(!a.is_empty()) });
    if a.len() >= b.len() { a } else { b }
}

#[nursery]
async fn first(n: Nursery, xs: &[String]) -> Result<&str, String> {
    n.spawn(async { if xs.is_empty() { Err("none".to_string()) } else { Ok(()) } });
    xs.first().map(|s| s.as_str()).ok_or_else(|| "none".to_string())
}

#[nursery]
async fn elided(n: Nursery, xs: &[u8]) -> &u8 {
    n.start_soon(async {});
    &xs[0]
}

fn main() {
    trellis::run(async {
        assert_eq!(longest("abc", "de").await, "abc");
        assert_eq!(first(&["a".to_string()]).await, Ok("a"));
        assert_eq!(first(&[]).await, Err("none".to_string()));
        assert_eq!(*elided(&[9]).await, 9);
    });
}
