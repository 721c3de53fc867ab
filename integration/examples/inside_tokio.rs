use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let names = vec!["a", "b", "c"];
    let out = trellis::nursery(async |n| {
        for name in &names {
            n.spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await; // tokio's timer
                if *name == "b" { Err(format!("{name} failed")) } else { Ok(()) }
            });
        }
        Ok(())
    })
    .await;
    assert_eq!(out.unwrap_err().to_string(), "child 2 failed: b failed");

    // A trellis clock on its own thread:
    let ran = tokio::task::spawn_blocking(|| {
        trellis::Builder::new().autojump().run(trellis::move_on_after(
            Duration::from_secs(1),
            trellis::sleep_forever(),
        ))
    });
    assert_eq!(ran.await.unwrap(), None);
}
