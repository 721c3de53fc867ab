//! `open_nursery!` in its forms: statements, a typed result, `move`, a typed handle.

use trellis::{ErrorGroup, open_nursery};

fn main() {
    trellis::run(async {
        let words = vec!["a", "b"];
        let unit: Result<(), ErrorGroup<std::convert::Infallible>> = open_nursery! { |n|
            for word in &words {
                let _child = n.spawn(async move { assert!(!word.is_empty()) });
            }
        };
        let _ = unit;

        let counted = open_nursery! { |n| -> Result<usize, String>
            let _child = n.spawn(async { Err::<(), _>("x".to_string()) });
            Ok(words.len())
        };
        let _ = counted.map_err(ErrorGroup::into_first);

        let owned = vec![1, 2];
        let moved = open_nursery!(move |n: trellis::Nursery| {
            let _child = n.spawn(async {});
            drop(owned);
        });
        let _ = moved;

        let _ = open_nursery! { crate = trellis; |n| let _child = n.spawn(async {}); };
    });
}
