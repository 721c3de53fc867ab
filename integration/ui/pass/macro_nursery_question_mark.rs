//! `?` in a `#[nursery]` body converts into the function's error type, and `?` works on the
//! call.

use trellis::{Nursery, nursery};

#[derive(Debug)]
enum AppError {
    Parse(std::num::ParseIntError),
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Parse(e)
    }
}

#[nursery]
async fn parse_and_spawn(n: Nursery, text: &str) -> Result<u32, AppError> {
    let value: u32 = text.parse()?;
    let _child = n.spawn(async move {
        let _checked: u32 = text.parse()?;
        Ok::<(), AppError>(())
    });
    Ok(value)
}

async fn caller() -> Result<u32, AppError> {
    let value = parse_and_spawn("4").await?;
    Ok(value + 1)
}

fn main() {
    let _ = trellis::run(caller());
    if let Err(AppError::Parse(e)) = trellis::run(parse_and_spawn("x")) {
        let _ = e;
    }
}
