// The `open_nursery!` twin of spawned_child_captures_handle.rs.
use trellis::open_nursery;

fn main() {
    trellis::run(async {
        let _ = open_nursery! { |n|
            n.start_soon(async {
                n.start_soon(async {});
            });
        };
    });
}
