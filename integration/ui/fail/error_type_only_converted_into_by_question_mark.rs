// The body's `?` and the caller's `?` only convert into the nursery's error type (a `From`
// bound, with many candidates), so they do not name it; the compiler points at the
// child's `Ok(1)`. Name it in the body: `anyhow::Ok(())`, or `async |n| -> Result<..>`.
fn read_config() -> std::io::Result<()> {
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    trellis::nursery(async |n| {
        n.spawn(async { Ok(1) });
        read_config()?;
        Ok(())
    })
    .await?;
    Ok(())
}

fn main() {
    let _ = trellis::run(serve());
}
