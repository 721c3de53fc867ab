//! Children of a `#[nursery]` fn borrow its arguments, owned ones included.

use std::cell::{Cell, RefCell};

use trellis::{Nursery, nursery};

#[nursery]
async fn fill(n: Nursery, words: Vec<String>, out: &RefCell<Vec<String>>, count: &Cell<usize>) {
    for word in &words {
        let _child = n.spawn(async move {
            out.borrow_mut().push(word.clone());
            count.set(count.get() + 1);
        });
    }
}

#[nursery]
async fn consume(n: Nursery, words: Vec<String>) -> usize {
    let _child = n.spawn(async {});
    // The body may still take an argument by value.
    let owned = words;
    owned.len()
}

fn main() {
    trellis::run(async {
        let out = RefCell::new(Vec::new());
        let count = Cell::new(0);
        fill(vec!["a".into()], &out, &count).await;
        let _ = consume(vec![]).await;
    });
}
