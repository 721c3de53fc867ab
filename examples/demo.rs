//! The trellis tour in one program: children that borrow the caller's data, a failure
//! that cancels its siblings, and the `ErrorGroup` that reports it.
//!
//! Run it with `cargo run --example demo`.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use trellis::{nursery, sleep};

/// What a failing download reports.
#[derive(Debug)]
struct FetchError {
    url: String,
    reason: &'static str,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetching {} failed: {}", self.url, self.reason)
    }
}

impl std::error::Error for FetchError {}

/// Pretends to download `url`, taking `ms` milliseconds; `broken` urls fail half-way.
async fn fetch(url: &str, ms: u64, log: &RefCell<Vec<String>>) -> Result<usize, FetchError> {
    sleep(Duration::from_millis(ms / 2)).await;
    if url.contains("broken") {
        return Err(FetchError {
            url: url.to_string(),
            reason: "connection reset",
        });
    }
    sleep(Duration::from_millis(ms / 2)).await;
    log.borrow_mut().push(format!("fetched {url}"));
    Ok(url.len() * 100)
}

fn main() {
    // Data owned by `main`, borrowed by every child: no Arc, no 'static, no clone.
    let urls = vec![
        ("https://example.org/a", 40),
        ("https://example.org/b", 60),
        ("https://example.org/c", 80),
    ];
    let log = RefCell::new(Vec::new());

    trellis::run(async {
        println!("== all children succeed: the body collects their values");
        let total = nursery(async |n| {
            let handles: Vec<_> = urls
                .iter()
                .map(|(url, ms)| n.spawn(fetch(url, *ms, &log)))
                .collect();
            let mut total = 0;
            for h in handles {
                total += h.await.expect("a child that succeeded yields its value");
            }
            Ok::<_, FetchError>(total)
        })
        .await;
        println!("total bytes: {total:?}");
        for line in log.borrow_mut().drain(..) {
            println!("  {line}");
        }

        println!("\n== one child fails: its siblings are cancelled, the error is reported");
        let outcome = nursery(async |n| {
            for (url, ms) in &urls {
                n.spawn(async { fetch(url, *ms * 10, &log).await.map(drop) });
            }
            n.spawn(fetch("https://example.org/broken", 30, &log));
            n.spawn(fetch("https://example.org/also-broken", 30, &log));
            Ok(())
        })
        .await;
        println!(
            "finished downloads: {:?} (the slow ones were cancelled)",
            log.borrow()
        );
        match outcome {
            Ok(_) => println!("no errors"),
            Err(group) => {
                println!("the nursery failed: {group}");
                for failure in group.failures() {
                    println!("  - {} -> {}", failure.task(), failure.error());
                }
            }
        }
    });
}
