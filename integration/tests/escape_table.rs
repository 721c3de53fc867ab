//! The escape detector of `#[nursery]` never rejects code that the compiler accepts, and
//! never hides an error the compiler would report (issue 17).
//!
//! Generated bodies place the handle at random positions (the body, a child, a `move`
//! child, a `spawn_with` closure with its own handle or another name, a closure, a thread
//! scope, a thread, an inner nursery, a shadowing block, a `match` arm, a closure stored
//! outside) and use it in random ways (a spawn, a borrow, a move, a value computed from it,
//! printed, shadowed). Each body is compiled twice in one `cargo check` of a crate
//! generated under the target directory: through the plain `trellis::nursery(async |n| ..)`
//! (no detector) and through `#[nursery]`. For every body both must compile or both fail;
//! the test also counts how many of the failures the detector explained.
//!
//! 40 bodies by default (one `cargo check` of 80 small binaries); `TRELLIS_ESCAPE_CASES`
//! and `TRELLIS_ESCAPE_SEED` choose others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Where the handle is put: a context with a hole `HOLE`.
const CONTEXTS: &[&str] = &[
    "HOLE",
    "n.start_soon(async { HOLE });",
    "n.start_soon(async move { HOLE });",
    "n.spawn_with(async |n| { HOLE });",
    "n.spawn_with(async |m| { m.start_soon(async {}); HOLE });",
    "(|| { HOLE })();",
    "std::thread::scope(|_s| { HOLE });",
    "let _ = std::thread::spawn(move || { HOLE }).join();",
    "for _i in 0..2 { HOLE }",
    "let _ = trellis::nursery(async |m| { m.start_soon(async { HOLE }); }).await;",
    "{ let n = &n; HOLE }",
    "match data.first() { Some(n) => { let _ = n; } None => { HOLE } }",
    "n.start_soon(async { let n = data.len(); let _ = n; HOLE });",
    "*slot.borrow_mut() = Some(Box::new(move || { HOLE }));",
];

/// How the handle is used at the hole.
const USES: &[&str] = &[
    "n.start_soon(async {});",
    "let _r = &n;",
    "let _ = describe(&n);",
    "drop(n);",
    "log.borrow_mut().push(describe(&n));",
    "*log.borrow_mut() = vec![describe(&n)];",
    "let _ = n.spawn(async { let _ = data.len(); });",
    "n.spawn_with(async |n| n.start_soon(async {}));",
    "let _ = &data;",
    "println!(\"{n:?}\");",
    "let _ = format!(\"{} {n:?}\", describe(&n));",
    "let n = 1; println!(\"{n}\");",
    "let _ = n.spawn_named(\"worker\", async { let _ = data.len(); });",
];

/// A small deterministic generator (xorshift64*), so that a seed replays a table.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x >> 33).unwrap() % n
    }
}

/// A random body: one or two contexts around one use, after a statement that uses the
/// handle plainly.
fn body(rng: &mut Rng) -> String {
    let mut text = USES[rng.below(USES.len())].to_string();
    for _ in 0..=rng.below(2) {
        let context = CONTEXTS[rng.below(CONTEXTS.len())];
        text = context.replacen("HOLE", &text, 1);
    }
    format!("let _ = &data; let _ = &slot; let _ = &log; {text}")
}

/// The shared part of every generated file.
const PRELUDE: &str = "#![allow(unused, clippy::all)]
use std::cell::RefCell;
use trellis::{Nursery, nursery};

type Slot<'a> = RefCell<Option<Box<dyn FnOnce() + 'a>>>;

fn describe<E>(n: &Nursery<'_, '_, E>) -> String {
    format!(\"{n:?}\")
}
";

/// The body through the plain function.
fn plain(body: &str) -> String {
    format!(
        "{PRELUDE}
async fn case(data: &[u32], slot: &Slot<'_>, log: &RefCell<Vec<String>>) {{
    let _ = trellis::nursery(async |n| {{ {body} }}).await;
}}

fn main() {{
    let slot = RefCell::new(None);
    trellis::run(case(&[1], &slot, &RefCell::new(Vec::new())));
}}
"
    )
}

/// The body through `#[nursery]`.
fn with_macro(body: &str) -> String {
    format!(
        "{PRELUDE}
#[nursery]
async fn case(n: Nursery, data: &[u32], slot: &Slot<'_>, log: &RefCell<Vec<String>>) {{
    {body}
}}

fn main() {{
    let slot = RefCell::new(None);
    trellis::run(case(&[1], &slot, &RefCell::new(Vec::new())));
}}
"
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first error of each binary, from cargo's JSON messages: target name → message.
fn first_errors(json: &str) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    for line in json.lines() {
        if !line.contains("\"reason\":\"compiler-message\"")
            || !line.contains("\"level\":\"error\"")
        {
            continue;
        }
        let target = field_after(line, "\"target\":{").and_then(|t| field_after(t, "\"name\":\""));
        let message = field_after(line, "\"message\":{\"rendered\":")
            .or_else(|| field_after(line, "\"message\":\""));
        if let (Some(target), Some(message)) = (target, message) {
            let name = target.split('"').next().unwrap_or_default().to_string();
            let text = field_after(line, "\"message\":\"")
                .map(|m| m.split("\",").next().unwrap_or_default().to_string())
                .unwrap_or_else(|| message.chars().take(200).collect());
            errors.entry(name).or_insert(text);
        }
    }
    errors
}

/// The text after the first `key` in `line`.
fn field_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.find(key).map(|at| &line[at + key.len()..])
}

#[test]
fn the_detector_agrees_with_the_compiler() {
    let cases = env_number("TRELLIS_ESCAPE_CASES", 40);
    let mut rng = Rng(env_number("TRELLIS_ESCAPE_SEED", 0x5eed_1717) | 1);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("escape-table");
    let bins = root.join("src/bin");
    let _ = std::fs::remove_dir_all(&bins);
    std::fs::create_dir_all(&bins).unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"escape-table\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\ntrellis = {{ path = {:?} }}\n\n[workspace]\n",
            workspace.display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let mut bodies = Vec::new();
    for i in 0..cases {
        let body = body(&mut rng);
        std::fs::write(bins.join(format!("plain_{i:03}.rs")), plain(&body)).unwrap();
        std::fs::write(bins.join(format!("macro_{i:03}.rs")), with_macro(&body)).unwrap();
        bodies.push(body);
    }
    let output = Command::new(env!("CARGO"))
        .args([
            "check",
            "--bins",
            "--keep-going",
            "--offline",
            "--message-format=json",
            "--quiet",
        ])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&output.stdout);
    let errors = first_errors(&json);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("error: failed to") && !stderr.contains("could not find"),
        "cargo failed before compiling the cases:\n{stderr}"
    );

    let mut table = String::new();
    let (mut both_ok, mut explained, mut raw) = (0, 0, 0);
    let mut disagreements = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let plain = errors.get(&format!("plain_{i:03}"));
        let macro_ = errors.get(&format!("macro_{i:03}"));
        let verdict = match (plain, macro_) {
            (None, None) => {
                both_ok += 1;
                "compiles"
            }
            (Some(_), Some(message)) if is_detector_message(message) => {
                explained += 1;
                "rejected by the detector"
            }
            (Some(_), Some(_)) => {
                raw += 1;
                "rejected by the compiler"
            }
            (None, Some(_)) => {
                disagreements.push(i);
                "FALSE POSITIVE"
            }
            (Some(_), None) => {
                disagreements.push(i);
                "ERROR HIDDEN"
            }
        };
        let first = macro_.or(plain).map(String::as_str).unwrap_or("");
        let _ = writeln!(table, "{i:3} {verdict:26} {body}\n      {first}");
    }
    println!("{table}");
    println!(
        "{cases} bodies: {both_ok} compile both ways, {explained} rejected with the detector's \
         message, {raw} rejected by the compiler (no shape the detector knows)"
    );
    assert!(
        disagreements.is_empty(),
        "the detector and the compiler disagree on cases {disagreements:?}:\n{table}"
    );
    // The table is not vacuous: it has bodies that compile and escapes the detector explains.
    assert!(both_ok > 0 && explained > 0, "{table}");
}

/// Whether an error is one of the detector's (see macros/src/escape.rs).
fn is_detector_message(message: &str) -> bool {
    message.starts_with("a child cannot use")
        || message.starts_with("a nursery belongs to one task")
        || message.starts_with("the nursery handle `")
}
