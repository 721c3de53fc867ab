//! The `channel_*` workloads on `flume` (its async API, default features), with the
//! producers and the consumer as tasks of smol's executor (`async_executor::LocalExecutor`
//! under `async_io::block_on`, as in [`crate::rt_smol`]): flume has no executor of its
//! own, and smol's is the one whose other peer (`async-channel`) runs there too. flume's
//! `bounded(0)` is a rendezvous, as trellis's is. Every other workload is n/a here.

#![forbid(unsafe_code)]

use std::hint::black_box;

use async_executor::{LocalExecutor, Task};

use crate::measure::{Probe, Report};
use crate::workload::{self as wl, Workload};

/// Runs `w` at size `n` (see [`crate::workload::run`]); `None` for every workload but the
/// channels.
pub fn run(w: Workload, n: usize) -> Option<Report> {
    let (producers, capacity) = wl::channel_shape(w)?;
    let ex = LocalExecutor::new();
    Some(async_io::block_on(ex.run(async {
        let p = Probe::start();
        let (tx, rx) = flume::bounded::<u64>(capacity);
        let mut tasks: Vec<Task<()>> = Vec::new();
        for i in 0..producers {
            let tx = tx.clone();
            let k = wl::producer_share(n, producers, i);
            tasks.push(ex.spawn(async move {
                for j in 0..k {
                    tx.send_async(j as u64)
                        .await
                        .expect("the consumer is there");
                }
            }));
        }
        drop(tx);
        tasks.push(ex.spawn(async move {
            let mut got = 0usize;
            while let Ok(v) = rx.recv_async().await {
                black_box(v);
                got += 1;
            }
            assert_eq!(got, n, "every message arrived");
        }));
        for t in tasks {
            t.await;
        }
        wl::standard(w, &p.stop(), n)
    })))
}
