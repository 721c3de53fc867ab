// The `open_nursery!` twin of handle_sent_to_a_thread.rs.
use trellis::open_nursery;

fn main() {
    trellis::run(async {
        let _ = open_nursery! { |n|
            std::thread::spawn(move || drop(n));
        };
    });
}
