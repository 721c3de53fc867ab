//! `#[nursery]` in `macro_rules!` expansions: the return type and body as `$ret:ty` /
//! `$body:block` fragments (invisible groups), and a whole item passed through as tokens.

#![deny(warnings)]
use std::cell::Cell;
use trellis::{Nursery, nursery};

macro_rules! make {
    ($name:ident, $h:ident, $ret:ty, $c:ident, $body:block) => {
        #[nursery]
        async fn $name($h: Nursery, $c: &Cell<u32>) -> $ret $body
    };
}

make!(one, n, (), c, { n.start_soon(async { c.set(c.get() + 1) }); });
make!(two, m, Result<u32, String>, c, { m.spawn(async { c.set(c.get() + 1); Err::<(), _>("x".to_string()) }); Ok(2) });
make!(three, m, u8, c, { m.start_soon(async { c.set(c.get() + 1) }); 3 });

macro_rules! whole {
    ($($item:tt)*) => { $($item)* };
}
whole! {
    #[nursery]
    async fn four(n: Nursery, c: &Cell<u32>) -> Result<(), String> {
        n.spawn(async { c.set(c.get() + 1); Ok(()) });
        Ok(())
    }
}

fn main() {
    let c = Cell::new(0);
    trellis::run(async {
        one(&c).await;
        assert_eq!(two(&c).await, Err("x".to_string()));
        assert_eq!(three(&c).await, 3);
        assert_eq!(four(&c).await, Ok(()));
    });
    assert_eq!(c.get(), 4);
}
