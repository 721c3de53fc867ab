// `open_nursery!` awaits the nursery, so it needs async code around it.
use trellis::open_nursery;

fn main() {
    let _ = open_nursery! { |n| n.start_soon(async {}); };
}
