//! `notes/API.md` names exactly what the crate exports.
//!
//! Two checks keep the notes honest. At run time, the items re-exported by `runtime/lib.rs`
//! (its `pub use` and `pub mod` lines) and the items the notes list must be the same sets,
//! and the methods the notes list must be the ones referenced below. At compile time,
//! [`every_method_the_notes_name_exists`] names each of those methods by path, so a method
//! that does not exist (or was renamed) is a compile error. The entry format is described
//! at the top of the notes.

use std::collections::BTreeSet;
use std::future::Ready;

use futures::future::FusedFuture as _;

/// A handler for `serve_listeners` / `serve_tcp`, as a function pointer (any
/// `Fn(TcpStream) -> impl Future` is an `AsyncFn`).
type ServeHandler<O = ()> = fn(trellis::net::TcpStream) -> Ready<O>;
/// What `serve_*` report their addresses through.
type ServeStatus = trellis::TaskStatus<Vec<std::net::SocketAddr>>;

/// `ContextVar::<u8>::with` with its `impl FnOnce` parameter fixed to a function pointer.
type VarWith = fn(&trellis::ContextVar<u8>, fn(Option<&u8>));

/// Each method the notes list, by path: this fails to compile when one is missing. Generic
/// methods get placeholder types (a turbofish, or a function-pointer type where a parameter
/// is `impl Trait`). `api_notes_list_exactly_the_methods_checked_here` reads this function
/// back, so keep one `let _ … = trellis::Type::method…;` per method.
#[test]
fn every_method_the_notes_name_exists() {
    use futures::Stream as _;
    // Functions generic over `impl ToSocketAddrs` / `AsRef<Path>` cannot be named without
    // a call; `checked(..)` takes the call's closure (a statement the parser skips).
    fn checked<T>(_: T) {}
    let _ = trellis::Builder::new;
    let _ = trellis::Builder::mock_clock;
    let _ = trellis::Builder::autojump;
    let _ = trellis::Builder::thread_limit;
    let _ = trellis::Builder::instrument::<trellis::instrument::Tracing>;
    let _ = trellis::Builder::dump_tree_on_signal;
    let _ = trellis::Builder::task_tree;
    let _ = trellis::Builder::shuffle_seed;
    let _ = trellis::Builder::run::<Ready<()>>;

    let _ = trellis::Sleep::deadline;
    let _ = trellis::Interval::tick;
    let _ = trellis::Interval::period;
    let _ = trellis::Interval::reset;
    let _ = trellis::Interval::missed_tick_behavior;
    let _ = trellis::Interval::set_missed_tick_behavior;
    let _ = trellis::Interval::with_missed_tick_behavior;

    let _ = trellis::Nursery::<()>::spawn::<Ready<()>, ()>;
    let _ = trellis::Nursery::<()>::start_soon::<Ready<()>, ()>;
    let _ = trellis::Nursery::<()>::spawn_named::<&str, Ready<()>, ()>;
    let _ = trellis::Nursery::<()>::spawn_with::<
        for<'c> fn(trellis::Nursery<'c, '_, ()>) -> Ready<()>,
        (),
    >;
    let _ = trellis::Nursery::<()>::start::<
        for<'c> fn(trellis::Nursery<'c, '_, ()>, trellis::TaskStatus<u8>) -> Ready<()>,
        u8,
        (),
    >;
    let _ = trellis::Nursery::<()>::start_named::<
        &str,
        for<'c> fn(trellis::Nursery<'c, '_, ()>, trellis::TaskStatus<u8>) -> Ready<()>,
        u8,
        (),
    >;
    let _ = trellis::TaskStatus::<u8>::started;
    let _ = trellis::JoinHandle::<u8>::is_finished;
    let _ = trellis::JoinHandle::<u8>::cancel;

    let _ = trellis::ErrorGroup::<()>::len;
    let _ = trellis::ErrorGroup::<()>::is_empty;
    let _ = trellis::ErrorGroup::<()>::failures;
    let _ = trellis::ErrorGroup::<()>::errors;
    let _ = trellis::ErrorGroup::<()>::first;
    let _ = trellis::ErrorGroup::<()>::into_first;
    let _ = trellis::ErrorGroup::<()>::into_errors;
    let _ = trellis::ErrorGroup::<()>::into_failures;
    let _ = trellis::Failure::<()>::task;
    let _ = trellis::Failure::<()>::label;
    let _ = trellis::Failure::<()>::error;
    let _ = trellis::Failure::<()>::into_error;
    let _ = trellis::JoinError::task;
    let _ = trellis::JoinError::name;
    let _ = trellis::JoinError::is_failed;
    let _ = trellis::JoinError::is_cancelled;
    let _ = trellis::StartError::<()>::task;
    let _ = trellis::StartError::<()>::name;
    let _ = trellis::StartError::<()>::error;
    let _ = trellis::StartError::<()>::into_error;
    let _ = trellis::StartError::<()>::is_not_ready;
    let _ = trellis::StartError::<()>::is_cancelled;

    let _ = trellis::CancelScope::new;
    let _ = trellis::CancelScope::with_deadline;
    let _ = trellis::CancelScope::with_timeout;
    let _ = trellis::CancelScope::with_shield;
    let _ = trellis::CancelScope::clear_deadline;
    let _ = trellis::CancelScope::run_with::<fn(trellis::CancelScope) -> Ready<()>, ()>;
    let _ = trellis::CancelScope::run::<Ready<()>>;
    let _ = trellis::CancelScope::cancel;
    let _ = trellis::CancelScope::cancel_called;
    let _ = trellis::CancelScope::cancel_reason;
    let _ = trellis::CancelScope::cancelled_caught;
    let _ = trellis::CancelScope::deadline;
    let _ = trellis::CancelScope::set_deadline;
    let _ = trellis::CancelScope::shield;
    let _ = trellis::CancelScope::set_shield;
    let _ = trellis::CancelScope::remote;
    let _ = trellis::RemoteCancel::cancel;
    let _ = trellis::RemoteCancel::is_cancelled;
    let _ = trellis::TimedOut::deadline;

    let _ = trellis::RuntimeHandle::current;
    let _ = trellis::RuntimeHandle::try_current;
    let _ = trellis::RuntimeHandle::is_finished;
    let _ = trellis::RuntimeHandle::run_sync::<fn() -> u8, u8>;
    let _ = trellis::RuntimeHandle::run::<fn() -> Ready<u8>, Ready<u8>>;
    let _ = trellis::FromThreadError::is_runtime_gone;
    let _ = trellis::FromThreadError::is_on_runtime_thread;

    let _ = trellis::SignalReceiver::recv;
    let _ = trellis::SignalReceiver::signals;

    let _ = trellis::ContextVar::<u8>::new;
    let _ = trellis::ContextVar::<u8>::with_default;
    let _ = trellis::ContextVar::<u8>::no_inherit;
    let _ = trellis::ContextVar::<u8>::name;
    let _ = trellis::ContextVar::<u8>::is_inherited;
    let _ = trellis::ContextVar::<u8>::get;
    let _: VarWith = trellis::ContextVar::<u8>::with;
    let _ = trellis::ContextVar::<u8>::set;
    let _ = trellis::ContextVar::<u8>::reset;
    let _ = trellis::ContextVar::<u8>::scope::<Ready<()>>;
    let _ = trellis::Token::<u8>::old_value;
    let _ = trellis::Token::<u8>::var_name;
    let _ = trellis::ResetError::var_name;
    let _ = trellis::ResetError::is_other_var;
    let _ = trellis::ResetError::is_other_context;
    let _ = trellis::Context::new;
    let _ = trellis::Context::current;
    let _ = trellis::Context::copy;
    let _ = trellis::Context::ptr_eq;
    let _ = trellis::Context::run::<Ready<()>>;
    let _: fn(&trellis::Context, fn()) = trellis::Context::run_sync;
    let _ = trellis::Context::get::<u8>;
    let _ = trellis::Context::contains::<u8>;
    let _ = trellis::Context::len;
    let _ = trellis::Context::is_empty;
    let _ = trellis::Context::iter;
    let _ = trellis::ContextEntry::name;
    let _ = trellis::ContextEntry::type_name;
    let _ = trellis::ContextEntry::is_inherited;
    let _ = trellis::ContextEntry::downcast_ref::<u8>;

    let _ = trellis::Event::new;
    let _ = trellis::Event::set;
    let _ = trellis::Event::is_set;
    let _ = trellis::Event::wait;
    let _ = trellis::Event::waiting;
    let _ = trellis::Lock::<u8>::new;
    let _ = trellis::Lock::<u8>::lock;
    let _ = trellis::Lock::<u8>::try_lock;
    let _ = trellis::Lock::<u8>::is_locked;
    let _ = trellis::Lock::<u8>::waiting;
    let _ = trellis::Lock::<u8>::into_inner;
    let _ = trellis::Semaphore::new;
    let _ = trellis::Semaphore::with_max_value;
    let _ = trellis::Semaphore::acquire;
    let _ = trellis::Semaphore::try_acquire;
    let _ = trellis::Semaphore::release;
    let _ = trellis::Semaphore::value;
    let _ = trellis::Semaphore::max_value;
    let _ = trellis::Semaphore::waiting;
    let _ = trellis::SemaphorePermit::forget;
    let _ = trellis::CapacityLimiter::new;
    let _ = trellis::CapacityLimiter::acquire;
    let _ = trellis::CapacityLimiter::try_acquire;
    let _ = trellis::CapacityLimiter::acquire_on_behalf_of;
    let _ = trellis::CapacityLimiter::try_acquire_on_behalf_of;
    let _ = trellis::CapacityLimiter::release_on_behalf_of;
    let _ = trellis::CapacityLimiter::is_borrowing;
    let _ = trellis::CapacityLimiter::total_tokens;
    let _ = trellis::CapacityLimiter::set_total_tokens;
    let _ = trellis::CapacityLimiter::borrowed_tokens;
    let _ = trellis::CapacityLimiter::available_tokens;
    let _ = trellis::CapacityLimiter::waiting;
    let _ = trellis::BorrowerId::new;
    let _ = trellis::Condition::<u8>::new;
    let _ = trellis::Condition::<u8>::lock;
    let _ = trellis::Condition::<u8>::as_lock;
    let _ = trellis::Condition::<u8>::wait;
    let _ = trellis::Condition::<u8>::notify;
    let _ = trellis::Condition::<u8>::notify_all;
    let _ = trellis::Condition::<u8>::waiting;
    let _ = trellis::Sender::<u8>::send;
    let _ = trellis::Sender::<u8>::try_send;
    let _ = trellis::Sender::<u8>::close;
    let _ = trellis::Sender::<u8>::capacity;
    let _ = trellis::Sender::<u8>::statistics;
    let _ = trellis::Receiver::<u8>::recv;
    let _ = trellis::Receiver::<u8>::try_recv;
    let _ = trellis::Receiver::<u8>::close;
    let _ = trellis::Receiver::<u8>::capacity;
    let _ = trellis::Receiver::<u8>::statistics;
    let _ = trellis::SendError::<u8>::into_inner;
    let _ = trellis::TrySendError::<u8>::into_inner;

    // The `testing` module: its functions and types, each under the module's name.
    let _ = trellis::testing::wait_all_tasks_blocked;
    let _ = trellis::testing::WaitAllTasksBlocked::is_terminated;
    let _ = trellis::testing::Sequencer::new;
    let _ = trellis::testing::Sequencer::block;
    let _ = trellis::testing::SequencerBlock::is_terminated;
    let _ = trellis::testing::SequencerTurn::number;
    let _ = trellis::testing::SequenceBroken::block;
    struct Noop;
    impl trellis::instrument::Instrument for Noop {}
    let _: fn(&Noop) = trellis::instrument::Instrument::before_run;
    let _ = trellis::instrument::remove;
    let _ = trellis::instrument::TaskId::as_u64;
    let _ = trellis::instrument::TaskInfo::id;
    let _ = trellis::instrument::TaskInfo::parent;
    let _ = trellis::instrument::TaskInfo::nursery;
    let _ = trellis::instrument::ScopeInfo::id;
    let _ = trellis::instrument::ScopeInfo::parent;
    let _ = trellis::instrument::ScopeInfo::task;
    let _ = trellis::instrument::ScopeInfo::is_nursery;
    let _ = trellis::instrument::ScopeInfo::deadline;
    let _ = trellis::instrument::ScopeInfo::is_shielded;
    let _ = trellis::instrument::TaskInfo::name;
    let _ = trellis::instrument::TaskInfo::label;
    let _ = trellis::instrument::TaskOutcome::Panicked;
    let _ = trellis::instrument::Tracing::new;
    let _ = trellis::instrument::add::<Noop>;
    let _ = trellis::instrument::InstrumentKey::clone;
    let _ = trellis::TaskLabel::name;
    let _ = trellis::TaskLabel::location;
    let _ = trellis::TaskTree::task_count;

    checked(|a: &str| trellis::net::TcpListener::bind(a));
    checked(|a: &str| trellis::net::TcpListener::bind_reuse_port(a));
    let _ = trellis::net::Incoming::poll_next;
    let _ = trellis::net::UnixIncoming::poll_next;
    let _ = trellis::net::ReuniteError::<trellis::net::TcpStream>::to_string;
    let _ = trellis::net::TcpListener::from_std;
    let _ = trellis::net::TcpListener::into_std;
    let _ = trellis::net::TcpListener::accept;
    let _ = trellis::net::TcpListener::poll_accept;
    let _ = trellis::net::TcpListener::incoming;
    let _ = trellis::net::TcpListener::local_addr;
    let _ = trellis::net::TcpStream::connect;
    let _ = trellis::net::TcpStream::from_std;
    let _ = trellis::net::TcpStream::into_std;
    let _ = trellis::net::TcpStream::read;
    let _ = trellis::net::TcpStream::read_exact;
    let _ = trellis::net::TcpStream::write;
    let _ = trellis::net::TcpStream::write_all;
    let _ = trellis::net::TcpStream::shutdown;
    let _ = trellis::net::TcpStream::split;
    let _ = trellis::net::TcpStream::peer_addr;
    let _ = trellis::net::TcpStream::local_addr;
    let _ = trellis::net::TcpStream::set_nodelay;
    let _ = trellis::net::TcpStream::nodelay;
    let _ = trellis::net::ReadHalf::<trellis::net::TcpStream>::read;
    let _ = trellis::net::ReadHalf::<trellis::net::TcpStream>::stream;
    let _ = trellis::net::ReadHalf::<trellis::net::TcpStream>::reunite;
    let _ = trellis::net::WriteHalf::<trellis::net::TcpStream>::write;
    let _ = trellis::net::WriteHalf::<trellis::net::TcpStream>::stream;
    checked(|a: &str| trellis::net::UdpSocket::bind(a));
    let _ = trellis::net::UdpSocket::from_std;
    checked(|s: &trellis::net::UdpSocket| s.connect("127.0.0.1:1"));
    let _ = trellis::net::UdpSocket::send;
    let _ = trellis::net::UdpSocket::recv;
    let _ = trellis::net::UdpSocket::send_to;
    let _ = trellis::net::UdpSocket::recv_from;
    let _ = trellis::net::UdpSocket::poll_recv_from;
    let _ = trellis::net::UdpSocket::local_addr;
    let _ = trellis::net::UdpSocket::peer_addr;
    checked(|p: &str| trellis::net::UnixListener::bind(p));
    let _ = trellis::net::UnixListener::from_std;
    let _ = trellis::net::UnixListener::accept;
    let _ = trellis::net::UnixListener::poll_accept;
    let _ = trellis::net::UnixListener::incoming;
    let _ = trellis::net::UnixListener::local_addr;
    checked(trellis::net::UnixStream::connect("p"));
    let _ = trellis::net::UnixStream::pair;
    let _ = trellis::net::UnixStream::from_std;
    let _ = trellis::net::UnixStream::into_std;
    let _ = trellis::net::UnixStream::read;
    let _ = trellis::net::UnixStream::split;
    let _ = trellis::net::UnixStream::peer_addr;
    let _ = trellis::net::UnixStream::local_addr;
    checked(|p: &str| trellis::net::UnixDatagram::bind(p));
    let _ = trellis::net::UnixDatagram::unbound;
    let _ = trellis::net::UnixDatagram::pair;
    let _ = trellis::net::UnixDatagram::from_std;
    checked(|s: &trellis::net::UnixDatagram| s.connect("p"));
    let _ = trellis::net::UnixDatagram::send;
    let _ = trellis::net::UnixDatagram::recv;
    checked(|s: &trellis::net::UnixDatagram| drop(s.send_to(b"", "p")));
    let _ = trellis::net::UnixDatagram::recv_from;
    let _ = trellis::net::UnixDatagram::local_addr;
    let _ = trellis::net::lookup_host;
    let _ = trellis::net::open_tcp_stream;
    let _ = trellis::net::open_tcp_stream_with_delay;
    let _ = trellis::net::connect_happy_eyeballs::<Vec<std::net::SocketAddr>>;
    let _ = trellis::net::HAPPY_EYEBALLS_DELAY;
    let _ = trellis::net::ConnectError::attempts;
    let _ = trellis::net::ConnectError::into_attempts;
    let _ = trellis::net::open_tcp_listeners;
    let _ = trellis::net::serve_listeners::<ServeHandler, (), Option<ServeStatus>>;
    let _ = trellis::net::serve_tcp::<
        ServeHandler<std::io::Result<()>>,
        std::io::Result<()>,
        ServeStatus,
    >;
}

const LIB: &str = include_str!("../../runtime/lib.rs");
const NOTES: &str = include_str!("../../notes/API.md");
const THIS_FILE: &str = include_str!("api_notes.rs");

/// Every item exported by `runtime/lib.rs` is in the notes, and every item the notes list
/// is exported.
#[test]
fn api_notes_list_exactly_the_exported_items() {
    assert!(
        NOTES
            .lines()
            .next()
            .unwrap_or("")
            .contains("integration/tests/api_notes.rs"),
        "the first line of notes/API.md says which test keeps it in sync"
    );
    let exported = exported_items(LIB);
    let listed = Notes::parse(NOTES).items;
    let missing: Vec<_> = exported.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&exported).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "notes/API.md is out of date with runtime/lib.rs:\n\
         exported but not in the notes: {missing:?}\n\
         in the notes but not exported: {extra:?}"
    );
}

/// The methods the notes list are exactly the ones `every_method_the_notes_name_exists`
/// names, so a method in the notes cannot escape the compile check.
#[test]
fn api_notes_list_exactly_the_methods_checked_here() {
    let listed = Notes::parse(NOTES).methods;
    let checked = checked_methods(THIS_FILE);
    let unchecked: Vec<_> = listed.difference(&checked).collect();
    let unlisted: Vec<_> = checked.difference(&listed).collect();
    assert!(
        unchecked.is_empty() && unlisted.is_empty(),
        "notes/API.md and integration/tests/api_notes.rs disagree on methods:\n\
         in the notes, not in `every_method_the_notes_name_exists`: {unchecked:?}\n\
         in `every_method_the_notes_name_exists`, not in the notes: {unlisted:?}"
    );
}

/// The parser itself: a renamed item, a method without its item, and the parts of the
/// notes that are free text.
#[test]
fn the_notes_parser_reads_items_methods_and_skips_free_text() {
    let notes = Notes::parse(
        "# title\n\
         - `ignored`: before the first heading\n\
         ## Section\n\
         - `Sleep`: a future, see `sleep`.\n  \
           - `.deadline() -> Option<Instant>`, `::new()`, and `free` text\n    \
             `.continued()` on a continuation line\n\
         ```rust\n\
         - `in_code`\n\
         ```\n\
         - `#[trellis::main]`: a macro; `open_nursery!(..)` is not the first span\n\
         - `open_nursery!(|n| ..)`\n",
    );
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(notes.items, names(&["Sleep", "main", "open_nursery"]));
    let pairs: BTreeSet<_> = ["deadline", "new", "continued"]
        .iter()
        .map(|m| ("Sleep".to_string(), m.to_string()))
        .collect();
    assert_eq!(notes.methods, pairs);
    let exported = exported_items(
        "// pub use commented::Out;\n\
         pub use a::{B, c as d, e::{F, G}};\n\
         pub use h::I;\n\
         #[doc(hidden)]\n\
         pub mod __private;\n\
         pub mod guide;\n\
         mod hidden;\n",
    );
    assert_eq!(exported, names(&["B", "d", "F", "G", "I", "guide"]));
    let checked = checked_methods(
        "#[test]\nfn every_method_the_notes_name_exists() {\n    \
         let _ = trellis::A::<'_, ()>::b::<fn() -> X<()>, ()>;\n    \
         let _: fn(&trellis::C) = trellis::C::d;\n}\n",
    );
    let pairs: BTreeSet<_> = [("A", "b"), ("C", "d")]
        .iter()
        .map(|(t, m)| (t.to_string(), m.to_string()))
        .collect();
    assert_eq!(checked, pairs);
}

/// What the notes list: item names, and `(item, method)` pairs.
#[derive(Debug, Default)]
struct Notes {
    items: BTreeSet<String>,
    methods: BTreeSet<(String, String)>,
}

impl Notes {
    fn parse(text: &str) -> Notes {
        let mut notes = Notes::default();
        let mut started = false;
        let mut in_code = false;
        let mut item: Option<String> = None;
        let mut in_methods = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            if line.starts_with("## ") {
                started = true;
                item = None;
                in_methods = false;
                continue;
            }
            if !started {
                continue;
            }
            if let Some(rest) = line.strip_prefix("- ") {
                let span = code_spans(rest)
                    .next()
                    .unwrap_or_else(|| panic!("an item's bullet starts with its name: {line}"));
                let name =
                    item_name(span).unwrap_or_else(|| panic!("no item name in `{span}`: {line}"));
                notes.items.insert(name.clone());
                item = Some(name);
                in_methods = false;
            } else if line.starts_with("  - ") || (in_methods && line.starts_with("    ")) {
                in_methods = true;
                let owner = item
                    .clone()
                    .unwrap_or_else(|| panic!("a method bullet outside an item: {line}"));
                for method in code_spans(line).filter_map(method_name) {
                    notes.methods.insert((owner.clone(), method));
                }
            } else if !line.starts_with("  ") {
                item = None;
                in_methods = false;
            }
        }
        notes
    }
}

/// The code spans of a line (the text between pairs of backticks).
fn code_spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

fn identifier(text: &str) -> Option<String> {
    let id: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!id.is_empty()).then_some(id)
}

/// `sleep(..)` → `sleep`, `Sleep<T>` → `Sleep`, `#[trellis::main]` → `main`.
fn item_name(span: &str) -> Option<String> {
    let span = span.strip_prefix("#[").unwrap_or(span);
    identifier(span.strip_prefix("trellis::").unwrap_or(span))
}

/// `.len()` → `len`, `::new(..)` → `new`; any other span is not a method.
fn method_name(span: &str) -> Option<String> {
    let rest = span.strip_prefix("::").or_else(|| span.strip_prefix('.'))?;
    identifier(rest)
}

/// The names a crate root exports: its `pub use` leaves (after `as`) and `pub mod`s, except
/// `__`-prefixed (hidden) ones.
fn exported_items(lib: &str) -> BTreeSet<String> {
    let code: String = lib
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = BTreeSet::new();
    for (i, _) in code.match_indices("pub use ") {
        let tree = &code[i + "pub use ".len()..];
        let tree = &tree[..tree.find(';').expect("a `pub use` ends with `;`")];
        use_leaves(tree, &mut names);
    }
    for (i, _) in code.match_indices("pub mod ") {
        let rest = &code[i + "pub mod ".len()..];
        names.extend(identifier(rest));
    }
    names.retain(|n| !n.starts_with("__"));
    names
}

/// The last segments (or `as` names) of a use tree such as `a::{B, c as d, e::{F}}`.
fn use_leaves(tree: &str, names: &mut BTreeSet<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let inner = &tree[open + 1..tree.rfind('}').expect("a use group closes")];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_leaves(&inner[start..i], names);
                    start = i + 1;
                }
                _ => {}
            }
        }
        use_leaves(&inner[start..], names);
    } else if !tree.is_empty() {
        assert!(
            !tree.ends_with('*'),
            "list glob re-exports one by one: {tree}"
        );
        let leaf = tree.rsplit(" as ").next().unwrap_or(tree);
        let leaf = leaf.rsplit("::").next().unwrap_or(leaf).trim();
        names.insert(leaf.to_string());
    }
}

/// The `(Type, method)` pairs named by `every_method_the_notes_name_exists` in `source`:
/// for each `let` statement, the path after ` = `, as `trellis::Type[::<..>]::method`.
fn checked_methods(source: &str) -> BTreeSet<(String, String)> {
    let start = source
        .find("\nfn every_method_the_notes_name_exists() {\n")
        .expect("the compile check is in this file");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("the compile check ends")];
    let mut pairs = BTreeSet::new();
    for statement in body.split(';') {
        let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some((_, path)) = statement.split_once(" = ") else {
            continue;
        };
        let path = path
            .strip_prefix("trellis::")
            .unwrap_or_else(|| panic!("the compile check names `trellis::` paths: {path}"));
        let ty = identifier(path).expect("a type");
        let mut rest = &path[ty.len()..];
        if let Some(generics) = rest.strip_prefix("::<") {
            rest = skip_generics(generics);
        }
        let method = rest
            .strip_prefix("::")
            .and_then(identifier)
            .unwrap_or_else(|| panic!("expected `::method` after `{ty}` in `{path}`"));
        pairs.insert((ty, method));
    }
    pairs
}

/// The text after the `>` that closes generics opened just before `text` (a `->` inside
/// them does not close anything).
fn skip_generics(text: &str) -> &str {
    let mut depth = 1;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if previous != '-' => {
                depth -= 1;
                if depth == 0 {
                    return &text[i + 1..];
                }
            }
            _ => {}
        }
        previous = c;
    }
    panic!("unclosed generics in `{text}`")
}
