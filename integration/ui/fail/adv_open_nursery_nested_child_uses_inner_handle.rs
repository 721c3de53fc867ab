// Nested nurseries with the same handle name: a child of the inner one uses the inner
// handle (the outer `n` is shadowed).
use trellis::open_nursery;

fn main() {
    trellis::run(async {
        let _ = open_nursery! { |n|
            let _ = open_nursery! { |n|
                n.start_soon(async { n.start_soon(async {}); });
            };
        };
    });
}
