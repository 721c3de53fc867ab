//! `open_nursery!` with the `async` keyword before the closure, a `-> !` body ended by a
//! scope around it, and a body whose error type only a child names.

#![deny(warnings)]

use std::cell::Cell;
use std::time::Duration;

use trellis::open_nursery;

fn never_body() {
    let outcome = trellis::Builder::new().autojump().run(async {
        trellis::move_on_after(Duration::from_secs(5), async {
            let _ = open_nursery! { |n| -> !
                n.start_soon(async {});
                loop { trellis::sleep_forever().await }
            };
        })
        .await
    });
    assert!(outcome.is_none());
}

fn async_keyword() {
    let hits = Cell::new(0);
    trellis::run(async {
        let counted = open_nursery! { async |n| -> Result<u8, String>
            for i in 0..3u8 {
                let hits = &hits;
                n.spawn(async move { hits.set(hits.get() + i); Ok(()) });
            }
            Ok(7)
        };
        assert_eq!(counted.map_err(|e| e.into_first()), Ok(7));
        let failed: Result<(), _> = open_nursery! { |n|
            n.spawn(async { Err::<(), String>("boom".into()) });
            Ok(())
        };
        assert_eq!(failed.unwrap_err().into_errors(), ["boom".to_string()]);
    });
    assert_eq!(hits.get(), 3);
}

fn main() {
    never_body();
    async_keyword();
}
