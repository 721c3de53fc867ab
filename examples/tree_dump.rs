//! A server that can show what it is doing: its live task tree, on demand.
//!
//! - Every task has a name (`spawn_named`): the accept loop, each connection by its peer,
//!   each backend call. Names appear in the tree, in errors and in instruments.
//! - `trellis::dump_tree()` from any task: here, a client that sends `tree` gets the tree
//!   back, with every connection, what it waits on (a socket, a timer, until when) and
//!   which scope will cancel it (the backend call's deadline).
//! - `Builder::dump_tree_on_signal(SIGUSR1)`: `kill -USR1 <pid>` prints the tree to stderr
//!   while the server runs, without touching its code.
//!
//! Run it with `cargo run --example tree_dump`: it starts the server on loopback, connects
//! an idle client and one whose request waits on a slow backend, asks for the tree as a
//! third client, prints it and stops. `cargo run --example tree_dump -- --serve` keeps
//! serving on 127.0.0.1:7879 (`nc 127.0.0.1 7879`, type `tree` or `slow`; `kill -USR1`
//! the process to see the tree on stderr). `integration/tests/examples.rs` runs the demo
//! on virtual time and checks the tree.

use std::io;
use std::time::Duration;

use trellis::net::{TcpListener, TcpStream};

/// How long a backend call takes, and how long a request waits for it.
const BACKEND: Duration = Duration::from_secs(30);
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Accepts connections forever; each is a named child of the server's nursery.
pub(crate) async fn serve(listener: &TcpListener) -> io::Result<()> {
    trellis::nursery(async |n| -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            n.spawn_named(format!("connection from {peer}"), handle(stream));
        }
    })
    .await
    .map_err(trellis::ErrorGroup::into_first)
}

/// One connection: each line is a request. `tree` answers with the task tree and closes;
/// `slow` calls a slow backend under a deadline; anything else is echoed.
async fn handle(stream: TcpStream) -> io::Result<()> {
    let mut line = Vec::new();
    let mut byte = [0; 1];
    loop {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        if byte[0] != b'\n' {
            line.push(byte[0]);
            continue;
        }
        match line.as_slice() {
            b"tree" => {
                let tree = trellis::dump_tree().to_string();
                return stream.write_all(tree.as_bytes()).await;
            }
            b"slow" => {
                let answer = trellis::move_on_after(REQUEST_DEADLINE, backend_call()).await;
                let reply: &[u8] = if answer.is_some() {
                    b"done\n"
                } else {
                    b"timed out\n"
                };
                stream.write_all(reply).await?;
            }
            other => {
                stream.write_all(other).await?;
                stream.write_all(b"\n").await?;
            }
        }
        line.clear();
    }
}

/// A request to a slow backend, as a named child so the tree shows it.
async fn backend_call() {
    trellis::nursery(async |n| {
        n.spawn_named("backend call", trellis::sleep(BACKEND));
    })
    .await
    .unwrap_or_default();
}

/// Starts the server, connects an idle client and a slow one, asks for the tree, and
/// returns it.
pub(crate) async fn demo() -> io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let tree = std::cell::RefCell::new(String::new());
    trellis::cancel_scope(async |stop| {
        trellis::nursery(async |n| {
            n.spawn_named("accept loop", serve(&listener));
            let _idle = TcpStream::connect(addr).await?;
            let slow = TcpStream::connect(addr).await?;
            slow.write_all(b"slow\n").await?;
            trellis::sleep(Duration::from_secs(1)).await; // both are being served
            let admin = TcpStream::connect(addr).await?;
            admin.write_all(b"tree\n").await?;
            *tree.borrow_mut() = read_to_end(&admin).await?;
            // The demo is over: stop the server (the scope catches it, so the nursery
            // returns nothing: the tree is kept outside).
            stop.cancel();
            Ok::<_, io::Error>(())
        })
        .await
        .map_err(trellis::ErrorGroup::into_first)
    })
    .await
    .unwrap_or(Ok(()))?;
    Ok(tree.into_inner())
}

/// Reads until the peer closes.
async fn read_to_end(stream: &TcpStream) -> io::Result<String> {
    let mut text = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(String::from_utf8_lossy(&text).into_owned()),
            n => text.extend_from_slice(&buf[..n]),
        }
    }
}

fn main() -> io::Result<()> {
    let builder = trellis::Builder::new().dump_tree_on_signal(trellis::signals::SIGUSR1);
    if std::env::args().any(|a| a == "--serve") {
        return builder.run(async {
            let listener = TcpListener::bind("127.0.0.1:7879")?;
            println!(
                "serving on 127.0.0.1:7879; `kill -USR1 {}` prints the tree",
                std::process::id()
            );
            serve(&listener).await
        });
    }
    let tree = builder.run(demo())?;
    print!("{tree}");
    Ok(())
}
