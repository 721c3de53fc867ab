use trellis::nursery;

fn main() {
    let _body = #[nursery] async |n| {};
}
