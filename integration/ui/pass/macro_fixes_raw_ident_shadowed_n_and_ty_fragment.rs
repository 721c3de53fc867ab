// Three shapes the macros once rejected or panicked on, each compiling with plain
// `trellis::nursery`: a raw identifier inside a pattern macro, a name `n` rebound and
// returned (the returned-handle check does not follow scopes, so it stays silent), and the
// handle's type passed through `macro_rules!` as a `$ty:ty` fragment; and `let _ = n;`.
use std::cell::Cell;

use trellis::{Nursery, nursery, open_nursery};

macro_rules! bind {
    ($x:ident) => {
        $x
    };
}

#[nursery]
async fn raw(n: Nursery) -> u32 {
    n.start_soon(async {});
    let bind!(r#type) = 5;
    r#type
}

#[nursery]
async fn first_big(n: Nursery, items: &[u32]) -> Option<u32> {
    n.start_soon(async {});
    for &n in items {
        if n > 3 {
            return Some(n);
        }
    }
    None
}

#[nursery]
async fn count(n: Nursery, items: &[u32]) -> usize {
    n.start_soon(async {});
    let n = items.len();
    n
}

macro_rules! make_ty {
    ($name:ident, $h:ident, $ty:ty, $c:ident, $body:block) => {
        #[nursery]
        async fn $name($h: $ty, $c: &Cell<u32>) $body
    };
}

make_ty!(one, n, Nursery, c, {
    n.start_soon(async { c.set(c.get() + 1) });
});

fn main() {
    let c = Cell::new(0);
    trellis::run(async {
        assert_eq!(raw().await, 5);
        assert_eq!(first_big(&[1, 5]).await, Some(5));
        assert_eq!(count(&[1, 2]).await, 2);
        one(&c).await;
        let r = open_nursery! { |n| -> Result<u32, String>
            n.start_soon(async {});
            let bind!(r#match) = 2;
            let n = r#match;
            Ok(n)
        };
        assert_eq!(r.map_err(|e| e.into_first()), Ok(2));
        let_underscore().await;
    });
    assert_eq!(c.get(), 1);
}

// `let _ = n;` moves nothing and captures nothing: it compiles in a child, a `'static` box
// and a thread's closure, so the escape check must not reject it.
#[nursery]
async fn let_underscore(n: Nursery) {
    n.start_soon(async {
        let _ = n;
    });
    let boxed: Box<dyn Fn()> = Box::new(|| {
        let _ = n;
    });
    boxed();
    std::thread::spawn(|| {
        let _ = n;
    })
    .join()
    .unwrap();
}
