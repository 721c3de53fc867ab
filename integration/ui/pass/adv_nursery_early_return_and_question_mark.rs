//! Early `return` and `?` in `#[nursery]` bodies of each output kind: the early value is what
//! the function returns, and a failing child still wins over a later `Ok` (first error).

#![deny(warnings)]

use std::cell::Cell;

use trellis::{ErrorGroup, Nursery, nursery};

#[nursery]
async fn parse_all(n: Nursery, texts: &[&str]) -> Result<u32, String> {
    let mut sum = 0;
    for text in texts {
        if text.is_empty() {
            return Err("empty".to_string());
        }
        n.spawn(async { Ok(()) });
        sum += text.parse::<u32>().map_err(|e| e.to_string())?;
    }
    Ok(sum)
}

#[nursery(map_err = |group: ErrorGroup<String>| group.into_errors().join("+"))]
async fn all_errors(n: Nursery, fail: bool) -> Result<(), String> {
    n.spawn(async { Err::<(), _>("a".to_string()) });
    if fail {
        return Err("b".to_string());
    }
    Ok(())
}

#[nursery]
async fn first_even(n: Nursery, xs: &[u32]) -> Option<u32> {
    n.start_soon(async {});
    let first = *xs.first()?;
    for &x in xs {
        if x % 2 == 0 {
            return Some(x);
        }
    }
    Some(first)
}

#[nursery]
async fn unit_early(n: Nursery, stop: bool, ran: &Cell<u32>) {
    n.start_soon(async { ran.set(ran.get() + 10) });
    if stop {
        return;
    }
    n.start_soon(async { ran.set(ran.get() + 100) });
}

fn main() {
    let ran = Cell::new(0);
    trellis::run(async {
        assert_eq!(parse_all(&["1", "2"]).await, Ok(3));
        assert_eq!(parse_all(&["1", ""]).await, Err("empty".to_string()));
        assert!(parse_all(&["x"]).await.is_err());
        assert_eq!(all_errors(false).await, Err("a".to_string()));
        // The body's own error comes first; the child spawned before it may have been
        // cancelled before it ran.
        let both = all_errors(true).await.unwrap_err();
        assert!(both == "b" || both == "b+a", "{both}");
        assert_eq!(first_even(&[1, 4, 6]).await, Some(4));
        assert_eq!(first_even(&[]).await, None);
        assert_eq!(first_even(&[3]).await, Some(3));
        unit_early(true, &ran).await;
        unit_early(false, &ran).await;
    });
    assert_eq!(ran.get(), 10 + 110);
}
