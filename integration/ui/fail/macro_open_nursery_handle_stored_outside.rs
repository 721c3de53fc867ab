// Storing the handle in a variable of the enclosing function would let it outlive the
// nursery (the `open_nursery!` twin of store_handle_in_outer_variable.rs).
use trellis::open_nursery;

fn main() {
    trellis::run(async {
        let mut stash = None;
        let _ = open_nursery! { |n|
            stash = Some(n);
        };
        drop(stash);
    });
}
