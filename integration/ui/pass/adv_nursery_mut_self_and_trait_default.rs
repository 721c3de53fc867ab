//! `#[nursery]` on a `&mut self` method (the body mutates `self`, children borrow a field),
//! on a trait default method, and on a trait-impl method taking `&mut self`.

#![deny(warnings)]
use std::cell::Cell;
use trellis::{Nursery, nursery};

struct Counter { total: u32, seen: Cell<u32>, data: Vec<u32> }

impl Counter {
    #[nursery]
    async fn run(&mut self, n: Nursery, extra: u32) -> u32 {
        self.total += extra;
        let seen = &self.seen;
        for x in &self.data {
            n.start_soon(async move { seen.set(seen.get() + x) });
        }
        self.total
    }
}

trait Job {
    async fn go(&mut self, k: u32) -> Result<u32, String>;
    #[nursery]
    async fn default_go(&self, n: Nursery) -> Result<u32, String> {
        n.spawn(async { Ok(()) });
        Ok(1)
    }
}

impl Job for Counter {
    #[nursery]
    async fn go(&mut self, n: Nursery, k: u32) -> Result<u32, String> {
        let data = &self.data;
        n.spawn(async move { if data.is_empty() { Err("empty".to_string()) } else { Ok(()) } });
        self.total += k;
        Ok(self.total)
    }
}

fn main() {
    let mut c = Counter { total: 0, seen: Cell::new(0), data: vec![1, 2, 3] };
    trellis::run(async {
        assert_eq!(c.run(5).await, 5);
        assert_eq!(c.go(1).await, Ok(6));
        assert_eq!(c.default_go().await, Ok(1));
    });
    assert_eq!(c.seen.get(), 6);
    c.data.clear();
    trellis::run(async { assert_eq!(c.go(1).await, Err("empty".to_string())) });
}
