// A body returning `()` makes a nursery that cannot fail (its error type is `Infallible`),
// so a child's `?` has nothing to convert into. Let the body return
// `Ok::<_, std::io::Error>(())` (or name the type in `async |n| -> io::Result<()>`).
fn read_config() -> std::io::Result<()> {
    Ok(())
}

fn main() {
    trellis::run(async {
        let _ = trellis::nursery(async |n| {
            n.spawn(async {
                read_config()?;
                Ok(())
            });
        })
        .await;
    });
}
