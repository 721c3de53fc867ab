// `?` in the body of a `#[nursery]` function that returns `()`: the function must return
// `Result` (rustc's message points at the function).
use trellis::{Nursery, nursery};

fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    text.parse()
}

#[nursery]
async fn load(n: Nursery, text: &str) {
    n.start_soon(async {});
    let _ = parse(text)?;
}

fn main() {}
