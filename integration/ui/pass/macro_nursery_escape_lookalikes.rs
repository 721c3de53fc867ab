//! Shapes that look like a handle escaping but compile: the escape detector of `#[nursery]`
//! and `open_nursery!` must stay silent on each (a shadowed handle, a different `n` inside a
//! child, handles of their own in `spawn_with` / `start` closures, nested nurseries, values
//! computed from the handle stored outside, a scoped thread that stays on this thread).

use std::cell::RefCell;

use trellis::{Nursery, nursery, open_nursery};

struct Point {
    n: u32,
}

impl Point {
    fn n(&self) -> u32 {
        self.n
    }
}

/// A different variable `n` inside the children: a `let`, a `for`, a closure parameter, a
/// `match` arm, an `if let`, a field and a method of that name.
#[nursery]
async fn other_variables_named_n(n: Nursery, data: &[u32], point: &Point) {
    n.start_soon(async move {
        let n = data.len();
        assert!(n < 10);
    });
    n.start_soon(async {
        for n in data {
            let _ = n;
        }
    });
    n.start_soon(async { assert!(data.iter().map(|n| n + 1).count() < 10) });
    n.start_soon(async {
        match data.first() {
            Some(n) => assert!(*n < 10),
            None => {}
        }
    });
    n.start_soon(async {
        if let Some(n) = data.first() {
            assert!(*n < 10);
        }
    });
    n.start_soon(async { assert_eq!(point.n, point.n()) });
    n.start_soon(async { assert_eq!(Point { n: 1 }.n, 1) });
}

/// The handle's name shadowed by a local: from there on `n` is a number.
#[nursery]
async fn shadowed_by_a_local(n: Nursery, out: &RefCell<Vec<u32>>) {
    n.start_soon(async {});
    let n = 3_u32;
    out.borrow_mut().push(n);
    let _ = std::thread::spawn(move || n + 1).join();
}

/// Children with handles of their own.
#[nursery]
async fn handles_of_their_own(n: Nursery) -> Result<(), String> {
    n.spawn_with(async |n| {
        n.start_soon(async {});
        n.spawn_with(async |n| n.start_soon(async {}));
    });
    n.spawn_with(async move |m| {
        m.start_soon(async {});
    });
    let ready = n
        .start(async |n, status| {
            status.started(7_u8);
            n.start_soon(async {});
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(ready, 7);
    Ok(())
}

/// Nested nurseries: the inner handle used in the inner children, and the outer handle used
/// by children of the inner nursery (which ends before the outer body does).
#[nursery]
async fn nested(n: Nursery) {
    let inner = open_nursery! { |n|
        n.start_soon(async {});
    };
    let _ = inner;
    let _ = trellis::nursery(async |m| {
        m.start_soon(async {});
        m.start_soon(async { n.start_soon(async {}) });
    })
    .await;
    let _ = open_nursery! { |m| m.start_soon(async { n.start_soon(async {}) }); };
}

/// Values computed with the handle, stored outside; the handle used on this thread inside
/// `std::thread::scope`; a box with a lifetime.
#[nursery]
async fn values_not_handles(n: Nursery, out: &RefCell<Vec<String>>, log: &mut Vec<String>) {
    *out.borrow_mut() = vec![format!("{n:?}")];
    log.push(format!("{:?}", n));
    std::thread::scope(|_scope| n.start_soon(async {}));
    let boxed: Box<dyn std::fmt::Debug + '_> = Box::new(&n);
    let _ = boxed;
}

fn main() {
    trellis::run(async {
        other_variables_named_n(&[1, 2], &Point { n: 1 }).await;
        shadowed_by_a_local(&RefCell::new(Vec::new())).await;
        handles_of_their_own().await.unwrap();
        nested().await;
        values_not_handles(&RefCell::new(Vec::new()), &mut Vec::new()).await;

        let mut stash = None;
        let mut count = 0;
        let _ = open_nursery! { |n|
            stash = Some(format!("{n:?}"));
            count += 1;
            let n = 5;
            count += n;
        };
        assert_eq!(count, 6);
        assert!(stash.is_some());
    });
}
