//! Smoke test of `trellis-bench-echo` (issue 14): the real binary, every server, a very
//! short window and 2 connections, so the benchmark cannot rot. It checks that each run
//! prints its table with non-zero figures; it asserts no time and no ratio.
//!
//! It cannot hang: the harness puts a deadline on each child it starts (a server that
//! never says `ready`, a client that never finishes, a server that does not exit), and
//! this test kills the harness itself after [`LIMIT`].

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one harness run may take before the test kills it and fails.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the echo harness with `args`, returns its standard output.
fn harness(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis-bench-echo"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trellis-bench-echo");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "trellis-bench-echo {args:?} did not finish within {LIMIT:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(
        status.success(),
        "trellis-bench-echo {args:?}: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// The cells of the table row of `runtime` in the first table that has one.
fn row<'a>(out: &'a str, runtime: &str) -> Vec<&'a str> {
    let prefix = format!("| {runtime} |");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row for {runtime} in:\n{out}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn number(cell: &str) -> f64 {
    cell.trim_end_matches('×')
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

#[test]
fn echo_prints_a_table_with_requests_for_every_server() {
    let out = harness(&[
        "--mode", "echo", "--rounds", "1", "--secs", "0.2", "--warmup", "0.05", "--conns", "2",
    ]);
    for runtime in ["trellis", "tokio", "smol", "trellis-oneshot"] {
        let cells = row(&out, runtime);
        let rps = number(cells[1]);
        assert!(rps > 0.0, "{runtime}: {rps} req/s in:\n{out}");
        let cpu = number(cells[2]);
        assert!(cpu > 0.0, "{runtime}: {cpu} µs CPU per request in:\n{out}");
    }
    // The ratios of trellis to each peer are there too.
    for peer in ["tokio", "smol", "trellis-oneshot"] {
        let line = format!("| trellis ÷ {peer} |");
        assert!(out.contains(&line), "no {line} in:\n{out}");
    }
}

#[test]
fn multicore_spreads_connections_over_both_trellis_runtimes() {
    let out = harness(&[
        "--mode",
        "multicore",
        "--rounds",
        "1",
        "--secs",
        "0.2",
        "--warmup",
        "0.05",
        "--conns",
        "16",
    ]);
    for runtime in ["trellis-mc", "tokio-mc"] {
        let rps = number(row(&out, runtime)[1]);
        assert!(rps > 0.0, "{runtime}: {rps} req/s in:\n{out}");
    }
    // Both SO_REUSEPORT listeners accepted all 16 between them (the kernel's split is
    // by hash, so either may get any share; only the sum is certain).
    let split = row(&out, "trellis-mc")[7];
    let counts: Vec<u64> = split.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts.len(), 2, "two runtimes, {split:?} in:\n{out}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        16,
        "accepted per runtime {split:?} in:\n{out}"
    );
}

#[test]
fn idle_reports_rss_per_connection() {
    let out = harness(&["--mode", "idle", "--rounds", "1", "--conns", "100"]);
    for runtime in ["trellis", "tokio", "smol"] {
        let cells = row(&out, runtime);
        assert_eq!(number(cells[1]), 100.0, "{runtime}: connections in:\n{out}");
        let after = number(cells[3]);
        assert!(after > 0.0, "{runtime}: RSS after {after} MiB in:\n{out}");
    }
}

#[test]
fn bad_options_are_refused_with_the_usage() {
    let status = Command::new(env!("CARGO_BIN_EXE_trellis-bench-echo"))
        .args(["--mode", "multicore", "--runtimes", "smol"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
