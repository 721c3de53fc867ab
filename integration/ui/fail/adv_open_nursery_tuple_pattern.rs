use trellis::open_nursery;

fn main() {
    trellis::run(async {
        let _ = open_nursery! { |(n, m)| };
    });
}
