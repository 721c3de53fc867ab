// A first parameter `n` of another type: not a handle.
#[trellis::nursery]
async fn f(n: std::rc::Rc<u32>) {
    drop(n);
}

fn main() {}
