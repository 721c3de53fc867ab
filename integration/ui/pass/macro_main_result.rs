//! `#[trellis::main]` returning a `Result`, with `?` in the body, on virtual time.

#[derive(Debug)]
struct AppError;

fn check(ok: bool) -> Result<(), AppError> {
    if ok { Ok(()) } else { Err(AppError) }
}

#[trellis::main(autojump)]
async fn main() -> Result<(), AppError> {
    trellis::sleep(std::time::Duration::from_secs(3600)).await;
    check(true)?;
    Ok(())
}
