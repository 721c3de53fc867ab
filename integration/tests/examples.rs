//! The programs in the root's `examples/` run here on virtual time, and what they report is
//! checked: the job runner's outcomes, the graceful shutdown's order and timing, the request
//! ids of the request-scoped logging, the HTTP client's responses and timeout, the
//! multicore echo's connections per thread, the echo server's grace period and cap, the
//! Happy Eyeballs races' winners and times. The TLS echo of `examples/tls_echo.rs` here runs on
//! loopback and its log is checked. The guide's tokio program, `examples/inside_tokio.rs`
//! here, runs too, and is checked to be the guide's code. (`cargo test` only builds
//! examples; this runs them.)

mod common;

#[allow(dead_code)]
#[path = "../../examples/job_runner.rs"]
mod job_runner;

#[allow(dead_code)]
#[path = "../../examples/graceful_shutdown.rs"]
mod graceful_shutdown;

#[allow(dead_code)]
#[path = "../../examples/request_id.rs"]
mod request_id;

#[allow(dead_code)]
#[path = "../../examples/echo_server.rs"]
mod echo_server;

#[allow(dead_code)]
#[path = "../../examples/happy_eyeballs.rs"]
mod happy_eyeballs;

#[allow(dead_code)]
#[path = "../../examples/http_client.rs"]
mod http_client;

#[allow(dead_code)]
#[path = "../../examples/multicore_echo.rs"]
mod multicore_echo;

#[allow(dead_code)]
#[path = "../../examples/tree_dump.rs"]
mod tree_dump;

#[allow(dead_code)]
#[path = "../examples/tls_echo.rs"]
mod tls_echo;

/// The guide's tokio program, spliced in with `include!` rather than a `#[path]` module:
/// the guide's `main` is private, so only code inside the module can call it (and rustfmt
/// does not follow an `include!`, so the file keeps the guide's layout).
mod inside_tokio {
    include!("../examples/inside_tokio.rs");

    pub(super) fn run() {
        main();
    }
}

/// The guide, whose "Inside a tokio program" shows `examples/inside_tokio.rs`.
const GUIDE: &str = include_str!("../../runtime/guide.rs");
const INSIDE_TOKIO: &str = include_str!("../examples/inside_tokio.rs");

use std::time::Duration;

use common::{HANG_LIMIT, run_virtual, watchdog};

#[test]
fn the_job_runner_reports_each_jobs_own_outcome_and_ends_at_the_batch_deadline() {
    use job_runner::Outcome::{Cancelled, Done, Failed, TimedOut};
    watchdog(HANG_LIMIT, || {
        let (jobs, overall) = job_runner::sample_batch();
        let (outcomes, took) = run_virtual(async {
            let start = trellis::now();
            let outcomes = job_runner::run_jobs(&jobs, overall).await;
            (outcomes, trellis::now() - start)
        });
        assert_eq!(
            outcomes,
            [
                Done("thumbnails processed".into()),
                Failed("invoices hit a bad record".into()),
                TimedOut,
                Cancelled,
                Done("emails processed".into()),
            ]
        );
        assert_eq!(
            took, overall,
            "the backup job runs until the batch deadline"
        );
    });
}

#[test]
fn the_job_runner_reports_outcomes_in_completion_order_as_they_happen() {
    use job_runner::Outcome::{Cancelled, Done, Failed, TimedOut};
    watchdog(HANG_LIMIT, || {
        let (jobs, overall) = job_runner::sample_batch();
        let (in_order, reported) = run_virtual(async {
            let start = trellis::now();
            let mut reported = Vec::new();
            let in_order = job_runner::run_jobs_as_completed(&jobs, overall, |job, _| {
                reported.push((job.name, (trellis::now() - start).as_millis()));
            })
            .await;
            (in_order, reported)
        });
        assert_eq!(
            in_order,
            [
                ("emails", Done("emails processed".into())),
                ("invoices", Failed("invoices hit a bad record".into())),
                ("thumbnails", Done("thumbnails processed".into())),
                ("reindex", TimedOut),
                ("backup", Cancelled),
            ],
            "completion order, the job cut off by the batch deadline last"
        );
        assert_eq!(
            reported,
            [
                ("emails", 30),
                ("invoices", 40),
                ("thumbnails", 120),
                ("reindex", 200)
            ],
            "each outcome is reported when its job ends, not at the end of the batch"
        );
    });
}

#[test]
fn the_job_runner_with_a_generous_batch_deadline_lets_every_job_end_by_itself() {
    watchdog(HANG_LIMIT, || {
        let (jobs, _) = job_runner::sample_batch();
        let outcomes = run_virtual(job_runner::run_jobs(&jobs, Duration::from_secs(60)));
        let cancelled = outcomes
            .iter()
            .filter(|o| **o == job_runner::Outcome::Cancelled)
            .count();
        assert_eq!(cancelled, 0, "{outcomes:?}");
        assert_eq!(
            outcomes[3],
            job_runner::Outcome::Done("backup processed".into())
        );
    });
}

/// The lines of one worker, as `(milliseconds, text)`.
fn lines_of(log: &graceful_shutdown::Log, worker: u32) -> Vec<(u128, String)> {
    let prefix = format!("worker {worker}:");
    log.lines()
        .into_iter()
        .filter(|(_, line)| line.starts_with(&prefix))
        .map(|(at, line)| (at.as_millis(), line))
        .collect()
}

#[test]
fn the_graceful_shutdown_finishes_requests_in_flight_then_flushes_within_its_deadline() {
    watchdog(HANG_LIMIT, || {
        let log = graceful_shutdown::Log::default();
        let stopped = run_virtual(async {
            let start = trellis::now();
            let out = trellis::move_on_after(
                Duration::from_millis(1020),
                graceful_shutdown::serve(graceful_shutdown::sample_config(), &log),
            )
            .await;
            (out, (trellis::now() - start).as_millis())
        });
        assert_eq!(
            stopped,
            (None, 1200),
            "the shutdown catches its cancellation once worker 3's flush deadline passed"
        );
        let tail = |worker| {
            let lines = lines_of(&log, worker);
            lines[lines.len() - 3..].to_vec()
        };
        let line = |at: u128, text: &str| (at, text.to_string());
        // Worker 1 was in a request (950..1050 ms): it finishes it, then flushes (60 ms).
        assert_eq!(
            tail(1),
            [
                line(1050, "worker 1: request 7 answered"),
                line(1050, "worker 1: flushing"),
                line(1110, "worker 1: flushed"),
            ]
        );
        // Worker 2 was waiting between requests: it stops at once and flushes (120 ms).
        assert_eq!(
            tail(2),
            [
                line(1000, "worker 2: request 4 answered"),
                line(1020, "worker 2: flushing"),
                line(1140, "worker 2: flushed"),
            ]
        );
        // Worker 3's flush (180 ms) is cut off by its 150 ms deadline.
        assert_eq!(
            tail(3),
            [
                line(1050, "worker 3: request 3 answered"),
                line(1050, "worker 3: flushing"),
                line(1200, "worker 3: flush cut off at its deadline"),
            ]
        );
    });
}

#[test]
fn the_graceful_shutdown_stops_on_a_cancel_from_another_thread() {
    watchdog(HANG_LIMIT, || {
        let log = graceful_shutdown::Log::default();
        let stopped = run_virtual(trellis::cancel_scope(async |scope| {
            let remote = scope.remote();
            std::thread::spawn(move || remote.cancel());
            graceful_shutdown::serve(graceful_shutdown::sample_config(), &log).await
        }));
        assert_eq!(stopped, None);
        for worker in 1..=3 {
            let last = lines_of(&log, worker)
                .pop()
                .expect("a worker logs its flush");
            assert!(
                last.1.ends_with("flushed") || last.1.ends_with("cut off at its deadline"),
                "worker {worker} ended with {last:?}"
            );
        }
    });
}

#[test]
fn the_request_logging_example_never_mixes_request_ids() {
    // `main` runs on virtual time and asserts, for every log line naming a request's path,
    // that it was logged under that request's id.
    watchdog(HANG_LIMIT, request_id::main);
}

#[test]
fn the_http_client_gets_the_quick_routes_and_times_out_on_the_slow_one_at_its_deadline() {
    watchdog(HANG_LIMIT, || {
        let (results, took) = run_virtual(async {
            let start = trellis::now();
            let results = http_client::demo().await.expect("the server starts");
            (results, trellis::now() - start)
        });
        let lines: Vec<String> = results
            .iter()
            .map(|(path, result)| http_client::describe(path, result))
            .collect();
        assert_eq!(
            lines,
            [
                r#"GET /hello -> 200 OK (text/plain, 13 bytes): "hello, world\n""#,
                "GET /slow -> error (TimedOut): GET /slow: no response within 500ms \
                 (the operation timed out: its deadline passed before it finished)",
                r#"GET /missing -> 404 Not Found (text/plain, 13 bytes): "no such page\n""#,
            ]
        );
        let hello = results[0].1.as_ref().expect("/hello answers");
        assert_eq!(hello.header("content-length"), Some("13"));
        assert_eq!(hello.header("connection"), Some("close"));
        assert_eq!(hello.body, b"hello, world\n");
        assert_eq!(
            took,
            http_client::DEADLINE,
            "the quick routes take no virtual time; the slow one takes exactly its deadline"
        );
        assert!(http_client::SLOW > http_client::DEADLINE);
    });
}

#[test]
fn the_multicore_echo_spreads_connections_over_its_threads_and_stops_them_remotely() {
    let connections = 64;
    let report = watchdog(HANG_LIMIT, move || multicore_echo::run(3, connections))
        .expect("the servers start, echo and stop");
    let sent: usize = (0..connections)
        .map(|i| multicore_echo::message(i).len())
        .sum();
    assert_eq!(report.echoed, sent, "every connection's bytes came back");
    assert_eq!(report.per_thread.len(), 3);
    assert_eq!(
        report.per_thread.iter().sum::<u64>(),
        connections as u64,
        "each connection was accepted by exactly one thread: {:?}",
        report.per_thread
    );
    // Linux hashes each connection to one of the listeners: with 64 connections and 3
    // listeners, one listener getting none has a probability of about 3 * (2/3)^64.
    if cfg!(target_os = "linux") {
        assert!(
            report.per_thread.iter().all(|&n| n > 0),
            "the kernel spreads the connections: {:?}",
            report.per_thread
        );
    }
}

#[test]
fn the_tls_echo_example_echoes_every_message_of_both_clients_then_stops_its_server() {
    // Real clock (the program has no timer), loopback only: a few milliseconds.
    let (echoed, lines) = watchdog(HANG_LIMIT, || {
        let log = tls_echo::Log::default();
        let echoed = tls_echo::run(&log).map_err(|e| e.to_string());
        (echoed, log.lines())
    });
    let per_client: usize = tls_echo::messages().iter().map(Vec::len).sum();
    assert_eq!(echoed, Ok(vec![per_client, per_client]), "{lines:#?}");
    // The clients' lines, in order; the server's lines name ports, so only their shape.
    let of = |who: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with(who))
            .cloned()
            .collect()
    };
    for id in 1..=2 {
        let mut client = of(&format!("client {id}:"));
        let connected = client.remove(0);
        assert!(
            connected.starts_with(&format!("client {id}: connected with TLSv1_3, TLS13_")),
            "{connected}"
        );
        assert_eq!(
            client,
            [
                format!("client {id}: 15 bytes echoed intact"),
                format!("client {id}: 14 bytes echoed intact"),
                format!("client {id}: 65536 bytes echoed intact"),
                format!("client {id}: closed, and so did the server"),
            ]
        );
    }
    let server = of("server:");
    assert_eq!(server.len(), 4, "{server:#?}");
    assert!(server[0].starts_with("server: listening on 127.0.0.1:"));
    for line in &server[1..3] {
        assert!(
            line.ends_with(&format!("closed after {per_client} bytes")),
            "{line}"
        );
    }
    assert_eq!(server[3], "server: cancelled", "the server stops last");
}

#[test]
fn the_guides_tokio_program_runs_nurseries_under_tokio_and_a_trellis_clock_beside_it() {
    // `main` asserts the nursery's error under tokio's timers and the `move_on_after` of
    // the trellis runtime on tokio's blocking thread (real time: about a millisecond).
    watchdog(HANG_LIMIT, inside_tokio::run);
}

/// The code of the ```` ```ignore ```` block in the section `heading` of a `//!` doc, without
/// the `//! ` prefixes, or `None` when the section or its block is missing or unclosed.
fn ignored_block_in_section(doc: &str, heading: &str) -> Option<String> {
    let mut lines = doc
        .lines()
        .skip_while(|line| line.trim_end() != heading)
        .skip(1);
    for line in lines.by_ref() {
        match line.trim_end() {
            "//! ```ignore" => break,
            other if other.starts_with("//! #") => return None, // the next section
            _ => {}
        }
    }
    let mut code = String::new();
    for line in lines {
        let text = line
            .strip_prefix("//! ")
            .or_else(|| line.strip_prefix("//!"))?;
        if text.trim_end() == "```" {
            return Some(code);
        }
        code.push_str(text);
        code.push('\n');
    }
    None
}

/// The guide's other claim about tokio: cancel scopes, join handles, `finally`, remote
/// cancels and context variables are plain futures and work under tokio's executor; only
/// trellis's clock needs a trellis runtime (its panic says so).
#[test]
fn scopes_handles_finally_remote_cancels_and_context_variables_work_under_tokio() {
    static VAR: trellis::ContextVar<u32> = trellis::ContextVar::new("var");
    watchdog(HANG_LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async {
            let explicit = trellis::cancel_scope(async |scope| {
                scope.cancel();
                tokio::task::yield_now().await;
            })
            .await;
            assert_eq!(explicit, None);

            let remote = trellis::cancel_scope(async |scope| {
                let remote = scope.remote();
                std::thread::spawn(move || remote.cancel());
                tokio::time::sleep(Duration::from_secs(3600)).await; // dropped by the cancel
            })
            .await;
            assert_eq!(remote, None);

            let cleaned = std::cell::Cell::new(false);
            let out = trellis::finally(async { 7 }, async { cleaned.set(true) }).await;
            assert_eq!((out, cleaned.get()), (7, true));

            VAR.set(3);
            let seen = trellis::nursery(async |n| {
                let child = n.spawn(async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                });
                let reader = n.spawn(async { Ok(VAR.get()) });
                child.cancel();
                Ok::<_, std::convert::Infallible>((child.await.is_err(), reader.await))
            })
            .await
            .unwrap();
            assert_eq!(seen, (true, Ok(Some(3))));
        });
        let clock = std::panic::catch_unwind(|| rt.block_on(async { trellis::now() }));
        let message =
            common::panic_message(&*clock.expect_err("trellis's clock needs a trellis runtime"));
        assert!(message.contains("needs a trellis runtime"), "{message}");
    });
}

#[test]
fn the_guides_tokio_recipe_is_the_program_run_here() {
    let heading = "//! # Inside a tokio program";
    let shown = ignored_block_in_section(GUIDE, heading)
        .unwrap_or_else(|| panic!("runtime/guide.rs has no ```ignore block under {heading:?}"));
    assert!(
        shown == INSIDE_TOKIO,
        "the program in runtime/guide.rs under {heading:?} and \
         integration/examples/inside_tokio.rs differ; make them the same.\n\
         --- the guide's:\n{shown}--- the file's:\n{INSIDE_TOKIO}"
    );
}

/// Runs the echo server on virtual time with `clients` (given the server's address) and a
/// shutdown at `shutdown_at`; returns the stats and when `serve` returned.
fn run_echo_server<C>(
    config: echo_server::Config,
    shutdown_at: Duration,
    clients: impl FnOnce(std::net::SocketAddr) -> C,
) -> (echo_server::Stats, Duration)
where
    C: Future<Output = std::io::Result<()>>,
{
    let stats = echo_server::Stats::default();
    let took = run_virtual(async {
        let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let clients = clients(listener.local_addr().unwrap());
        let start = trellis::now();
        trellis::nursery(async |n| {
            n.spawn(clients);
            echo_server::serve(&listener, config, trellis::sleep(shutdown_at), &stats).await?;
            Ok(trellis::now() - start)
        })
        .await
        .unwrap()
    });
    (stats, took)
}

/// One client: connects, echoes `word`, then stays `linger` before closing (forever, if
/// `None`: it then waits for the server to hang up and returns what it read).
async fn echo_client(
    addr: std::net::SocketAddr,
    word: &str,
    linger: Option<Duration>,
) -> std::io::Result<usize> {
    let client = trellis::net::TcpStream::connect(addr).await?;
    client.write_all(word.as_bytes()).await?;
    let mut back = vec![0; word.len()];
    client.read_exact(&mut back).await?;
    assert_eq!(back, word.as_bytes());
    match linger {
        Some(linger) => {
            trellis::sleep(linger).await;
            Ok(0)
        }
        None => client.read(&mut [0; 16]).await,
    }
}

#[test]
fn the_echo_server_gives_connections_a_grace_period_then_cuts_off_the_rest() {
    watchdog(HANG_LIMIT, || {
        let config = echo_server::Config {
            max_connections: 10,
            grace: Duration::from_millis(500),
        };
        let (stats, took) = run_echo_server(config, Duration::from_secs(1), |addr| async move {
            trellis::nursery(async |n| {
                n.spawn(echo_client(addr, "quick", Some(Duration::ZERO)));
                // Still connected when the shutdown begins at 1 s, done at 1.3 s: within
                // the grace period, so it finishes by itself.
                n.spawn(echo_client(
                    addr,
                    "finisher",
                    Some(Duration::from_millis(1300)),
                ));
                for _ in 0..2 {
                    n.spawn(async move {
                        let read = echo_client(addr, "lingering", None).await?;
                        assert_eq!(read, 0, "cut off: the server closed the connection");
                        std::io::Result::Ok(())
                    });
                }
                Ok(())
            })
            .await
            .map_err(|group| std::io::Error::other(group.to_string()))
        });
        assert_eq!(
            took,
            Duration::from_millis(1500),
            "shutdown at 1 s + 500 ms of grace"
        );
        assert_eq!(stats.accepted.get(), 4);
        assert_eq!(stats.finished.get(), 2, "the quick client and the finisher");
        assert_eq!(stats.cut_off.get(), 2, "the two lingering clients");
        assert_eq!(stats.active.get(), 0, "nothing outlives serve");
    });
}

#[test]
fn the_echo_server_serves_at_most_its_cap_at_once() {
    watchdog(HANG_LIMIT, || {
        let config = echo_server::Config {
            max_connections: 2,
            grace: Duration::from_millis(100),
        };
        let (stats, _) = run_echo_server(config, Duration::from_secs(10), |addr| async move {
            trellis::nursery(async |n| {
                // Six clients at once, each staying 100 ms: served two at a time, the
                // others wait in the backlog, and all are served before the shutdown.
                for _ in 0..6 {
                    n.spawn(echo_client(
                        addr,
                        "capped",
                        Some(Duration::from_millis(100)),
                    ));
                }
                Ok(())
            })
            .await
            .map_err(|group| std::io::Error::other(group.to_string()))
        });
        assert_eq!(stats.accepted.get(), 6);
        assert_eq!(stats.finished.get(), 6);
        assert_eq!(stats.peak.get(), 2, "never more than the cap at once");
    });
}

#[test]
fn the_echo_server_cancelled_from_outside_gives_the_same_grace_period() {
    watchdog(HANG_LIMIT, || {
        let config = echo_server::Config {
            max_connections: 10,
            grace: Duration::from_millis(500),
        };
        let stats = echo_server::Stats::default();
        let (served, took) = run_virtual(async {
            let listener = trellis::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let start = trellis::now();
            let served = trellis::nursery(async |n| {
                n.spawn(echo_client(
                    addr,
                    "finisher",
                    Some(Duration::from_millis(1300)),
                ));
                n.spawn(echo_client(addr, "lingering", None));
                // No shutdown of its own: an enclosing deadline at 1 s stops it.
                let shutdown = std::future::pending::<()>();
                let served = trellis::move_on_after(
                    Duration::from_secs(1),
                    echo_server::serve(&listener, config, shutdown, &stats),
                );
                std::io::Result::Ok(served.await)
            })
            .await
            .unwrap();
            (served, trellis::now() - start)
        });
        assert!(served.is_none(), "the deadline's cancellation is reported");
        assert_eq!(took, Duration::from_millis(1500), "1 s + the grace period");
        assert_eq!(
            stats.finished.get(),
            1,
            "the finisher, within the grace period"
        );
        assert_eq!(stats.cut_off.get(), 1, "the lingering client");
    });
}

#[test]
fn the_happy_eyeballs_races_end_with_the_winners_and_times_of_rfc_8305() {
    use happy_eyeballs::Outcome::{AllFailed, Won};
    use std::io::ErrorKind::ConnectionRefused;
    watchdog(HANG_LIMIT, || {
        let peers = happy_eyeballs::Peers::new().unwrap();
        let outcomes: Vec<_> = happy_eyeballs::races(&peers)
            .into_iter()
            .map(|(_, addrs)| {
                run_virtual(happy_eyeballs::race(
                    &addrs,
                    trellis::net::HAPPY_EYEBALLS_DELAY,
                ))
            })
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            outcomes,
            [
                // Two silent attempts, each given 250 ms before the next starts.
                Won {
                    index: 2,
                    after: ms(500)
                },
                // A refusal starts the next attempt at once.
                Won {
                    index: 1,
                    after: ms(0)
                },
                // 250 ms for the silent one, then the refusal, then at once the winner.
                Won {
                    index: 2,
                    after: ms(250)
                },
                AllFailed(vec![ConnectionRefused, ConnectionRefused]),
            ]
        );
    });
}

#[test]
fn the_tree_dump_server_shows_every_connection_and_what_it_waits_on() {
    let tree = common::watchdog(common::HANG_LIMIT, || {
        trellis::Builder::new().autojump().run(tree_dump::demo())
    })
    .unwrap();
    let has = |line: &str| assert!(tree.contains(line), "no {line:?} in:\n{tree}");
    has("task 2: child 1 \"accept loop\": running; age 1s, 1 poll");
    // The idle connection waits on its socket; the slow one inside its request's scope,
    // whose deadline (10 s after the request, 1 s ago) is shown, and the backend call on
    // its timer.
    has("\"connection from 127.0.0.1:");
    has(": waiting inside; age 1s, 1 poll");
    has("cancel scope, deadline in 9s");
    has("child 1 \"backend call\": waiting on a timer, due in 29s; age 1s, 1 poll");
    // The connection that asked is the one running.
    let running = tree.lines().filter(|l| l.contains(": running;")).count();
    assert_eq!(
        running, 2,
        "the accept loop and the asking connection:\n{tree}"
    );
    let waiting_on_fd = tree
        .lines()
        .filter(|l| l.contains("\"connection from") && l.contains("waiting on fd "))
        .count();
    assert_eq!(waiting_on_fd, 1, "the idle connection:\n{tree}");
}
