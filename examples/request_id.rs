//! Request ids in logs without passing them around: a context variable per request.
//!
//! A pretend server handles six requests at once. Each request task sets `REQUEST_ID` and
//! runs under its own deadline (`move_on_after`). The helpers it calls, and the sub-tasks
//! they spawn, log through `log`, which reads the id from the context: no function takes
//! the id as an argument. Time is virtual (autojump), so the program finishes at once.
//!
//! At the end, every log line is checked against the request whose path it mentions: the
//! ids never mix, although the requests' steps interleave.
//!
//! Run it with `cargo run --example request_id`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use trellis::{ContextVar, move_on_after, nursery, sleep};

/// The id of the request the running task works for.
static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");

/// When the server started (virtual time), so that log lines show short timestamps.
static START: ContextVar<Instant> = ContextVar::new("start");

thread_local! {
    /// Every line logged, as `(request id, message)`, for the check at the end.
    static LOG: RefCell<Vec<(Option<u32>, String)>> = const { RefCell::new(Vec::new()) };
}

/// Logs `msg` with the current request's id and the time left before its deadline.
fn log(msg: impl Into<String>) {
    let msg = msg.into();
    let id = REQUEST_ID.get();
    let now = trellis::now();
    let elapsed = now - START.get().expect("set by main");
    let budget = match trellis::current_effective_deadline() {
        Some(deadline) => format!("{:>4} ms left", (deadline - now).as_millis()),
        None => "    no deadline".to_string(),
    };
    let who = id.map_or_else(|| "server ".to_string(), |id| format!("req {id:<3}"));
    println!("{:>5} ms  [{who}] [{budget}]  {msg}", elapsed.as_millis());
    LOG.with_borrow_mut(|log| log.push((id, msg)));
}

/// A request: a path and how slow its database is (in virtual milliseconds).
struct Request {
    path: &'static str,
    db_ms: u64,
}

async fn handle(req: &Request) -> String {
    log(format!("GET {}", req.path));
    let user = authenticate(req.path).await;
    let (rows, extras) = fetch_all(req).await;
    render(req.path, &user, rows, extras).await
}

async fn authenticate(path: &str) -> String {
    sleep(Duration::from_millis(20)).await;
    let user = if path.contains("admin") {
        "root"
    } else {
        "guest"
    };
    log(format!("authenticated {path} as {user}"));
    user.to_string()
}

/// Two backend calls in parallel: the sub-tasks inherit the request's context.
async fn fetch_all(req: &Request) -> (usize, usize) {
    let (rows, extras) = (RefCell::new(0), RefCell::new(0));
    nursery(async |n| {
        n.spawn(async { *rows.borrow_mut() = query_db(req.path, req.db_ms).await });
        n.spawn(async { *extras.borrow_mut() = query_cache(req.path).await });
    })
    .await
    .expect("the backends do not fail");
    (rows.into_inner(), extras.into_inner())
}

async fn query_db(path: &str, ms: u64) -> usize {
    log(format!("db: query for {path} ({ms} ms)"));
    sleep(Duration::from_millis(ms)).await;
    let rows = path.len() % 7;
    log(format!("db: {rows} rows for {path}"));
    rows
}

async fn query_cache(path: &str) -> usize {
    sleep(Duration::from_millis(5)).await;
    log(format!("cache: hit for {path}"));
    1
}

/// Takes a few milliseconds: a checkpoint, where a passed deadline stops the request.
async fn render(path: &str, user: &str, rows: usize, extras: usize) -> String {
    sleep(Duration::from_millis(3)).await;
    let page = format!("{path} for {user}: {rows} rows, {extras} extras");
    log(format!("rendered {path}"));
    page
}

pub(crate) fn main() {
    let requests = [
        Request {
            path: "/users/ada",
            db_ms: 40,
        },
        Request {
            path: "/orders/1717",
            db_ms: 120,
        },
        Request {
            path: "/admin/stats",
            db_ms: 400,
        }, // too slow for its deadline
        Request {
            path: "/users/grace",
            db_ms: 10,
        },
        Request {
            path: "/search?q=trellis",
            db_ms: 260,
        }, // too slow as well
        Request {
            path: "/health",
            db_ms: 1,
        },
    ];
    const DEADLINE: Duration = Duration::from_millis(250);

    trellis::Builder::new().autojump().run(async {
        START.set(trellis::now());
        log("serving 6 requests");
        nursery(async |n| {
            for (id, req) in (1..).zip(&requests) {
                n.spawn(async move {
                    REQUEST_ID.set(id);
                    match move_on_after(DEADLINE, handle(req)).await {
                        Some(page) => log(format!("200 OK: {page}")),
                        None => log(format!(
                            "504: {} missed its {DEADLINE:?} deadline",
                            req.path
                        )),
                    }
                });
            }
        })
        .await
        .expect("request tasks do not fail");
        log("all requests answered");
    });

    // The check: a line that mentions a request's path was logged under that request's id.
    let lines = LOG.with_borrow(|log| log.clone());
    let mut checked = 0;
    for (logged_id, msg) in &lines {
        for (id, req) in (1..).zip(&requests) {
            if msg.contains(req.path) {
                assert_eq!(*logged_id, Some(id), "mixed ids in {msg:?}");
                checked += 1;
            }
        }
    }
    println!(
        "\nchecked {checked} of {} log lines: request ids never mixed",
        lines.len()
    );
}
