//! A small HTTP/1.1 client with a deadline per request, and the tiny server it talks to,
//! on trellis's TCP sockets and nothing else (no HTTP crate).
//!
//! - `fetch(addr, path, deadline)` connects, sends a `GET`, and parses the response: the
//!   status line, the headers, and a body of `Content-Length` bytes. The whole exchange runs
//!   under `trellis::fail_after(deadline, ..)`; when the deadline passes first, the
//!   connection is dropped (closed) and the result is an `io::Error` of kind `TimedOut`.
//! - The server listens on 127.0.0.1 (a free port), one child task per connection:
//!   `/hello` answers at once, `/slow` after two seconds, anything else is a 404.
//! - `main` starts the server in a nursery, fetches three paths with a 500 ms deadline,
//!   prints what came back (the slow one times out), then cancels the server and ends.
//!
//! Run it with `cargo run --example http_client` (real time: about half a second).
//! `integration/tests/examples.rs` runs the same program on virtual time and checks it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use trellis::net::{TcpListener, TcpStream};

/// How long `/slow` takes to answer.
pub(crate) const SLOW: Duration = Duration::from_secs(2);

/// The deadline of each request in `main`.
pub(crate) const DEADLINE: Duration = Duration::from_millis(500);

/// The most a request's or a response's head (status or request line and headers) may be.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP response: status, headers (names in lower case, in order) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The value of the header `name` (lower case), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` from the server at `addr`, all of it (connect, request, response) within
/// `deadline`.
///
/// # Errors
///
/// `TimedOut` when the deadline passes first; `InvalidData` for a response that is not
/// HTTP/1.x with a `Content-Length`; the socket's error otherwise.
pub(crate) async fn fetch(
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
) -> io::Result<Response> {
    match trellis::fail_after(deadline, get(addr, path)).await {
        Ok(response) => response,
        // The `get` future was dropped at the deadline, closing its connection.
        Err(timed_out) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("GET {path}: no response within {deadline:?} ({timed_out})"),
        )),
    }
}

/// One request on a new connection (`Connection: close`: one request per connection).
async fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: trellis-http-client\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    read_response(&stream).await
}

/// Reads from `stream` until the blank line that ends a head; returns the head (without
/// the blank line) and whatever came after it.
async fn read_head(stream: &TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            let head =
                String::from_utf8(buf).map_err(|_| invalid("the head is not UTF-8".to_string()))?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid(format!("the head is longer than {MAX_HEAD} bytes")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection before the end of the head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads and parses a response: status line, headers, `Content-Length` bytes of body.
async fn read_response(stream: &TcpStream) -> io::Result<Response> {
    let (head, mut body) = read_head(stream).await?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    // "HTTP/1.1 200 OK": version, code, reason (which may contain spaces, or be empty).
    let mut parts = status_line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(invalid(format!(
            "not an HTTP/1.x status line: {status_line:?}"
        )));
    }
    let status = code
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("no status code in {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("a header line without a colon: {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        reason: reason.unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .ok_or_else(|| invalid("the response has no Content-Length".to_string()))?
        .parse()
        .map_err(|_| invalid("the Content-Length is not a number".to_string()))?;
    let mut chunk = [0; 4096];
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the body ended after {} of {length} bytes", body.len()),
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    response.body = body;
    Ok(response)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The server: one child per connection, until cancelled. A connection's error ends that
/// connection only.
pub(crate) async fn serve(listener: &TcpListener) -> io::Result<()> {
    trellis::nursery(async |conns| -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            conns.spawn(async move {
                if let Err(e) = answer(&stream).await {
                    println!("server: the connection from {peer} failed: {e}");
                }
            });
        }
    })
    .await
    .map_err(|group| io::Error::other(format!("the server failed: {group}")))
}

/// Reads one request and answers it.
async fn answer(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (head, _) = read_head(stream).await?;
    let request_line = head.lines().next().unwrap_or_default();
    let (status, body) = match request_line.split(' ').collect::<Vec<_>>()[..] {
        ["GET", "/hello", _] => ("200 OK", "hello, world\n"),
        ["GET", "/slow", _] => {
            trellis::sleep(SLOW).await;
            ("200 OK", "sorry, that took a while\n")
        }
        ["GET", _, _] => ("404 Not Found", "no such page\n"),
        _ => ("400 Bad Request", "only GET is served here\n"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

/// One line of the report for `GET path`: the response, or the error.
pub(crate) fn describe(path: &str, result: &io::Result<Response>) -> String {
    match result {
        Ok(r) => format!(
            "GET {path} -> {} {} ({}, {} bytes): {:?}",
            r.status,
            r.reason,
            r.header("content-type").unwrap_or("no content type"),
            r.body.len(),
            String::from_utf8_lossy(&r.body),
        ),
        Err(e) => format!("GET {path} -> error ({:?}): {e}", e.kind()),
    }
}

/// The program: the server in a nursery, the three requests, then the server's
/// cancellation. Returns each path with its result.
pub(crate) async fn demo() -> io::Result<Vec<(&'static str, io::Result<Response>)>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("server: listening on {addr}");
    trellis::nursery(async |n| {
        let server = n.spawn(serve(&listener));
        let mut results = Vec::new();
        for path in ["/hello", "/slow", "/missing"] {
            let result = fetch(addr, path, DEADLINE).await;
            println!("{}", describe(path, &result));
            results.push((path, result));
        }
        server.cancel(); // the slow handler, still asleep, is cancelled with it
        println!("server: cancelled");
        Ok::<_, io::Error>(results)
    })
    .await
    .map_err(io::Error::from)
}

fn main() -> io::Result<()> {
    trellis::run(demo())?;
    Ok(())
}
