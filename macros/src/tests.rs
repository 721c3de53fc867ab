//! Unit tests of the expansion functions, on `proc_macro2` tokens (a proc-macro entry point
//! cannot be called outside the compiler).
//!
//! - the escape detector on a table of bodies: what it reports, and where it must stay
//!   silent (whether the silent shapes compile is checked by `integration/ui/pass` and
//!   `integration/tests/escape_table.rs`);
//! - the four macros under random input (issue 16): token streams and attribute arguments,
//!   random and mutated from valid inputs; the macros must never panic, and what they emit
//!   without a `compile_error!` must parse. The case count is 256 per property, or
//!   `TRELLIS_PROPTEST_CASES`.

use proc_macro2::TokenStream;
use proptest::prelude::*;

use crate::escape::{OuterParam, find_escape};
use crate::parse::EntryKind;

/// The detector's verdict on `body` for the handle `n`, with `out` and `slot` parameters
/// declared outside (`out`'s type names `Nursery`): the first words of its message.
fn verdict(body: &str) -> Option<String> {
    let block: syn::Block = syn::parse_str(&format!("{{ {body} }}")).expect("a valid body");
    let outer = [
        OuterParam {
            ident: syn::parse_quote!(out),
            holds_handles: true,
        },
        OuterParam {
            ident: syn::parse_quote!(slot),
            holds_handles: false,
        },
    ];
    find_escape(&block, &syn::parse_quote!(n), &outer).map(|escape| {
        let message = escape.message;
        if message.starts_with("a child cannot use") {
            "child".to_string()
        } else if message.contains("'static` box") {
            "box".to_string()
        } else if message.starts_with("a nursery belongs to one task") {
            "thread".to_string()
        } else if message.contains("declared outside the body") {
            "stored".to_string()
        } else {
            message
        }
    })
}

#[test]
fn the_detector_reports_the_common_escapes() {
    let cases = [
        ("n.spawn(async { n.spawn(async {}); });", "child"),
        ("n.spawn(async move { drop(n); });", "child"),
        ("n.spawn_named(\"worker\", async { drop(&n); });", "child"),
        ("n.start_soon(async { let _ = &n; });", "child"),
        (
            "n.spawn_with(async |m| { n.start_soon(async {}); });",
            "child",
        ),
        ("n.start(async |m, s| { drop(n); Ok(()) });", "child"),
        (
            "let r = &n; n.spawn(async move { r.start_soon(async {}); });",
            "child",
        ),
        (
            "n.spawn_with(async |m| { m.spawn(async { m.start_soon(async {}); }); });",
            "child",
        ),
        (
            "n.spawn(async { let f = || n.spawn(async {}); f(); });",
            "child",
        ),
        ("n.spawn(async { if true { drop(n) } });", "child"),
        ("*slot.borrow_mut() = Some(n);", "stored"),
        ("slot = n;", "stored"),
        ("outer.field = (1, n);", "stored"),
        ("stash = Some(Box::new(move || drop(n)));", "stored"),
        ("out.push(n);", "stored"),
        ("self.last = Some(&n);", "stored"),
        ("std::thread::spawn(move || drop(n));", "thread"),
        ("tokio::spawn(async move { drop(n) });", "thread"),
        (
            "std::thread::Builder::new().spawn(move || drop(n)).unwrap();",
            "thread",
        ),
        ("let b: Box<dyn Any> = Box::new(n);", "box"),
        ("let b = Box::new(n) as Box<dyn Any + Send>;", "box"),
        // In the arguments of std's macros, and named by a format string.
        ("n.spawn(async { println!(\"{n:?}\"); });", "child"),
        (
            "n.spawn(async { println!(\"{}\", describe(&n)); });",
            "child",
        ),
        ("n.spawn(async { assert_eq!(1, 1, \"{n:?}\"); });", "child"),
        ("n.spawn(async { let _ = vec![&n; 2]; });", "child"),
        (
            "std::thread::spawn(move || println!(\"{:?}\", n));",
            "thread",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(verdict(body).as_deref(), Some(expected), "body: {body}");
    }
}

#[test]
fn the_detector_is_silent_where_code_may_compile() {
    let cases = [
        // The handle used by the body, not by a child.
        "n.spawn(async {}); n.start_soon(async {});",
        "n.spawn_named(describe(&n), async {});",
        // A different `n` inside the child.
        "n.spawn(async { let n = 1; drop(n); });",
        "n.spawn(async { for n in 0..3 { drop(n); } });",
        "n.spawn(async { let _ = (0..3).map(|n| n + 1); });",
        "n.spawn(async { match x { Some(n) => drop(n), None => {} } });",
        "n.spawn(async { if let Some(n) = x { drop(n) } });",
        "n.spawn(async { let p = P { n: 1 }; drop(p.n); p.n(); });",
        // Shadowed before the child.
        "let n = 5; std::thread::spawn(move || n + 1);",
        // Handles of their own.
        "n.spawn_with(async |n| { n.spawn(async {}); });",
        "n.start(async |n, status| { n.start_soon(async {}); Ok(()) });",
        // The outer handle in a child of an inner nursery.
        "trellis::nursery(async |m| { m.start_soon(async { n.start_soon(async {}); }); });",
        // Not a future given to the handle.
        "n.spawn(child(&n));",
        "other.spawn(async { n.start_soon(async {}); });",
        // Values computed with the handle stored outside, or stored in locals.
        "*slot.borrow_mut() = Some(format(&n));",
        "let mut local = None; local = Some(n);",
        "slot.push(n);",
        "out.push(describe(&n));",
        "let boxed: Box<dyn Debug + '_> = Box::new(n);",
        // A closure made on this thread from the handle's data, then sent.
        "std::thread::spawn(report(&n));",
        "tokio::spawn(child_count(&n));",
        // `thread` may be the crate's own module, whose `spawn` runs the closure here.
        "thread::spawn(|| n.start_soon(async {}));",
        "thread::Builder::new().spawn(move || drop(n));",
        // A thread scope runs its closure on this thread.
        "std::thread::scope(|s| n.start_soon(async {}));",
        // Names the pass cannot resolve: an item, a statement macro, a glob import.
        "fn n() {} n.spawn(async { n(); });",
        "rebind!(n); n.spawn(async { drop(n); });",
        "use helpers::*; stash = Some(n);",
        // What other macros do is not looked at; a format string's `{n}` may name an
        // argument, and `{{n}}` is no name at all.
        "n.spawn(async { my_print!(n); });",
        "n.spawn(async { println!(\"{n:?}\", n = 1); });",
        "n.spawn(async { println!(\"{{n}}\"); });",
        "n.spawn(async { println!(\"{}\", \"{n}\"); });",
        "n.spawn(async { assert_eq!(\"{n}\", \"{n}\"); });",
        "n.spawn(async { let _ = matches!(x, n); });",
        "*slot.borrow_mut() = Some(format!(\"{n:?}\"));",
        // A trait with a lifetime parameter may bound itself by it (`trait Holder<'a>: 'a`):
        // `dyn Holder<'_>` is then not `'static` (adversarial pass 2).
        "let boxed: Box<dyn Holder<'_>> = Box::new(n);",
        "let boxed = Box::new(n) as Box<dyn Holder<'_> + Send>;",
        // A path whose first segment the body declares is the body's own.
        "mod std { pub mod thread { pub fn spawn(f: impl FnOnce()) { f() } } } \
         std::thread::spawn(|| n.start_soon(async {}));",
        "mod tokio { pub fn spawn(f: impl FnOnce()) { f() } } tokio::spawn(|| drop(n));",
        "use ::std as tokio; tokio::spawn(|| drop(n));",
        "mod trellis { pub fn nursery(f: impl FnOnce(u32)) { f(1) } } \
         trellis::nursery(|m| { std::thread::spawn(move || m); });",
        "struct Box<T>(T); impl<T> Box<T> { fn new(t: T) -> Self { Box(t) } } \
         let b: Box<dyn Debug> = Box::new(n);",
        "fn Some<T>(_: T) -> Option<u8> { None } stash = Some(n);",
    ];
    for body in cases {
        assert_eq!(verdict(body), None, "body: {body}");
    }
}

#[test]
fn the_detector_still_reports_a_static_box_of_a_trait_without_lifetimes() {
    for body in [
        "let boxed: Box<dyn Debug> = Box::new(n);",
        "let boxed: Box<dyn Holder<'static>> = Box::new(n);",
        "let boxed = Box::new(n) as Box<dyn Fn(&u8) + Send>;",
    ] {
        assert_eq!(verdict(body).as_deref(), Some("box"), "body: {body}");
    }
}

/// The expansion of `#[nursery] item`, as text.
fn expand_nursery(args: &str, item: &str) -> String {
    crate::nursery_tokens(lex(args).expect("args"), lex(item).expect("item")).to_string()
}

#[test]
fn a_plain_or_alias_return_type_binds_no_name_and_calls_no_common_method() {
    // A `let __trellis_output` pattern resolved to a user's unit struct of that name, and a
    // user's trait with a `kind` method for every type hijacked `(&probe).kind()`.
    let out = expand_nursery("", "async fn f(n: Nursery) -> Res<u8> { Ok(1) }");
    assert!(!out.contains("compile_error"), "{out}");
    assert!(!out.contains("let "), "{out}");
    assert!(!out.contains(". kind ("), "{out}");
    assert!(out.contains("trellis_output_kind"), "{out}");
}

#[test]
fn messages_write_types_as_the_user_does() {
    let text = |ty: &str| crate::parse::type_text(&syn::parse_str(ty).expect("a type"));
    assert_eq!(text("&mut u32"), "&mut u32");
    assert_eq!(text("& 'a  str"), "&'a str");
    assert_eq!(text("impl Fn(u8) -> u8"), "impl Fn(u8) -> u8");
    assert_eq!(text("dyn Debug + Send"), "dyn Debug + Send");
    assert_eq!(text("std::rc::Rc<u32>"), "std::rc::Rc<u32>");
    assert_eq!(text("Nursery<'_, '_, String>"), "Nursery<'_, '_, String>");
    let out = expand_nursery("", "async fn f(n: &mut u32) {}");
    assert!(
        out.contains("`n: &mut u32` is not a nursery handle"),
        "{out}"
    );
}

#[test]
fn a_nursery_with_a_foreign_abi_is_refused_and_a_rust_one_is_not() {
    for abi in ["extern \"C\"", "extern", "extern \"system\""] {
        let out = expand_nursery("", &format!("async {abi} fn f(n: Nursery) {{}}"));
        assert!(out.contains("a nursery cannot be"), "{abi}: {out}");
        // The fallback item has no ABI (no FFI-safety warning beside the error).
        assert!(out.contains("async fn f ()"), "{abi}: {out}");
    }
    let out = expand_nursery("", "async extern \"Rust\" fn f(n: Nursery) {}");
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn a_cfg_parameter_before_the_handle_does_not_take_its_place() {
    let out = expand_nursery("", "async fn f(#[cfg(any())] x: u8, n: Nursery, y: u8) {}");
    assert!(!out.contains("compile_error"), "{out}");
    let out = expand_nursery("", "async fn f(x: u8, n: Nursery) {}");
    assert!(out.contains("goes first"), "{out}");
}

#[test]
fn handle_lifetimes_are_checked_and_completed() {
    let out = expand_nursery("", "async fn f<'a>(n: Nursery<'a, 'a>) {}");
    assert!(out.contains("first lifetime is its nursery's own"), "{out}");
    // The second lifetime (what children borrow) may be named; a missing error type is
    // inferred.
    let out = expand_nursery("", "async fn f<'a>(n: Nursery<'_, 'a>, x: &'a u8) {}");
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("Nursery < '_ , 'a , _ >"), "{out}");
    let out = crate::open_nursery_tokens(lex("|n: Nursery<'static, '_>| {}").expect("input"));
    assert!(out.to_string().contains("first lifetime"), "{out}");
}

#[test]
fn an_entry_point_taking_a_handle_is_told_to_put_nursery_above() {
    let out = crate::entry(
        TokenStream::new(),
        lex("async fn main(n: Nursery) {}").expect("item"),
        EntryKind::Main,
    )
    .to_string();
    assert!(
        out.contains("put `#[nursery]` above `#[trellis::main]`"),
        "{out}"
    );
}

/// The case count of the properties: 256, or `TRELLIS_PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("TRELLIS_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256)
}

/// Tokens the random inputs are made of: what the macros look for, and noise.
const VOCABULARY: &[&str] = &[
    "async",
    "fn",
    "move",
    "n",
    "m",
    "self",
    "Nursery",
    "nursery",
    "spawn",
    "spawn_with",
    "start",
    "start_soon",
    "open_nursery",
    "trellis",
    "crate",
    "map_err",
    "name",
    "mock_clock",
    "autojump",
    "test",
    "main",
    "Result",
    "Ok",
    "Some",
    "Box",
    "dyn",
    "let",
    "return",
    "impl",
    "trait",
    "struct",
    "where",
    "for",
    "match",
    "if",
    "loop",
    "std",
    "thread",
    "tokio",
    "=",
    "==",
    ":",
    "::",
    ",",
    ";",
    ".",
    "|",
    "||",
    "&",
    "&mut",
    "*",
    "->",
    "=>",
    "!",
    "?",
    "#",
    "'a",
    "'_",
    "'static",
    "_",
    "<",
    ">",
    "1",
    "\"s\"",
    "{n}",
    "..",
];

/// A random token tree, as source text: vocabulary tokens and nested groups.
fn random_tokens() -> impl Strategy<Value = String> {
    let leaf = proptest::sample::select(VOCABULARY).prop_map(str::to_string);
    leaf.prop_recursive(4, 64, 8, |inner| {
        (
            proptest::sample::select(&["()", "[]", "{}"][..]),
            proptest::collection::vec(inner, 0..8),
        )
            .prop_map(|(delimiters, items)| {
                let (open, close) = delimiters.split_at(1);
                format!("{open} {} {close}", items.join(" "))
            })
    })
}

/// A sequence of random token trees.
fn random_stream() -> impl Strategy<Value = String> {
    proptest::collection::vec(random_tokens(), 0..12).prop_map(|trees| trees.join(" "))
}

/// Valid inputs to start mutations from: (attribute arguments, item) pairs.
const SEEDS: &[&str] = &[
    "async fn f(n: Nursery, data: &[u8]) -> Result<(), String> { n.spawn(async { Ok(()) }); Ok(()) }",
    "async fn f(n: Nursery) { n.spawn(async { n.spawn(async {}); }); }",
    "async fn f(n: Nursery, out: &mut Vec<Nursery<'_, '_, E>>) { out.push(n); }",
    "async fn f(n: Nursery) -> ! { loop { n.start_soon(async {}); } }",
    "async fn f(&self, mut n: Nursery<E>) -> u32 { let m = &n; m.spawn_with(async |n| {}); 1 }",
    "async fn main() -> Result<(), std::io::Error> { trellis::sleep(d).await; Ok(()) }",
    "#[should_panic] async fn t() { std::thread::spawn(move || drop(n)); }",
    "|n| -> Result<u32, E> let x = 1; n.spawn(async move { x }); Ok(x)",
    "crate = trellis; move |n: Nursery| { stash = Some(n); }",
];

/// A valid seed with random edits: tokens deleted, replaced or inserted (delimiters kept
/// balanced).
fn mutated_seed() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(SEEDS),
        proptest::collection::vec(
            (
                0..3_u8,
                any::<prop::sample::Index>(),
                proptest::sample::select(VOCABULARY),
            ),
            1..6,
        ),
    )
        .prop_map(|(seed, edits)| {
            let stream: TokenStream = seed.parse().expect("seeds lex");
            let mut tokens = flatten(stream);
            for (kind, index, token) in edits {
                let at = index.index(tokens.len() + 1);
                let is_delimiter = |t: &str| ["(", ")", "[", "]", "{", "}"].contains(&t);
                match kind {
                    0 if at < tokens.len() && !is_delimiter(&tokens[at]) => {
                        tokens.remove(at);
                    }
                    1 if at < tokens.len() && !is_delimiter(&tokens[at]) => {
                        tokens[at] = token.to_string();
                    }
                    _ => tokens.insert(at.min(tokens.len()), token.to_string()),
                }
            }
            tokens.join(" ")
        })
}

/// A token stream as a flat list of token texts, delimiters as tokens of their own.
fn flatten(stream: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    for tree in stream {
        match tree {
            proc_macro2::TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    proc_macro2::Delimiter::Parenthesis => ("(", ")"),
                    proc_macro2::Delimiter::Bracket => ("[", "]"),
                    proc_macro2::Delimiter::Brace => ("{", "}"),
                    proc_macro2::Delimiter::None => ("", ""),
                };
                out.push(open.to_string());
                out.extend(flatten(group.stream()));
                out.push(close.to_string());
            }
            proc_macro2::TokenTree::Punct(punct) => out.push(punct.as_char().to_string()),
            other => out.push(other.to_string()),
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

/// Lexes `text` (random text may not lex: a lone `'`); `None` when it does not.
fn lex(text: &str) -> Option<TokenStream> {
    text.parse().ok()
}

/// What every expansion must satisfy: an error, or output of the expected syntax.
fn check_output(output: &TokenStream, parses: impl Fn(TokenStream) -> bool) {
    let text = output.to_string();
    if text.contains("compile_error") {
        return;
    }
    assert!(
        parses(output.clone()),
        "the expansion is neither an error nor valid syntax: {text}"
    );
}

fn is_file(tokens: TokenStream) -> bool {
    syn::parse2::<syn::File>(tokens).is_ok()
}

fn is_expr(tokens: TokenStream) -> bool {
    syn::parse2::<syn::Expr>(tokens).is_ok()
}

/// Runs `#[nursery(args)] item` and checks the output; `item` is kept only when it parsed as
/// a function (anything else is passed through as written, errors aside).
fn run_nursery(args: &str, item: &str) {
    let (Some(args), Some(item)) = (lex(args), lex(item)) else {
        return;
    };
    let is_fn = syn::parse2::<syn::ItemFn>(item.clone()).is_ok();
    let output = crate::nursery_tokens(args, item);
    if is_fn {
        check_output(&output, is_file);
    }
}

fn run_open_nursery(input: &str) {
    let Some(input) = lex(input) else { return };
    let output = crate::open_nursery_tokens(input);
    check_output(&output, is_expr);
}

fn run_entry(args: &str, item: &str, kind: EntryKind) {
    let (Some(args), Some(item)) = (lex(args), lex(item)) else {
        return;
    };
    let is_fn = syn::parse2::<syn::ItemFn>(item.clone()).is_ok();
    let output = crate::entry(args, item, kind);
    if is_fn {
        check_output(&output, is_file);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn nursery_never_panics_on_random_tokens(args in random_stream(), item in random_stream()) {
        run_nursery(&args, &item);
        run_nursery("", &format!("async fn f(n: Nursery) {{ {item} }}"));
    }

    #[test]
    fn nursery_never_panics_on_mutated_functions(args in random_stream(), item in mutated_seed()) {
        run_nursery("", &item);
        run_nursery(&args, &item);
    }

    #[test]
    fn open_nursery_never_panics(input in random_stream(), seed in mutated_seed()) {
        run_open_nursery(&input);
        run_open_nursery(&format!("|n| {input}"));
        run_open_nursery(&seed);
    }

    #[test]
    fn main_and_test_never_panic(args in random_stream(), item in random_stream(), seed in mutated_seed()) {
        for kind in [EntryKind::Main, EntryKind::Test] {
            run_entry(&args, &item, kind);
            run_entry(&args, &seed, kind);
            run_entry("", &format!("async fn t() {{ {item} }}"), kind);
        }
    }
}
