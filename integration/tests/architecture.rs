//! The layers of `runtime/` import downwards only (ARCHITECTURE.md).
//!
//! Every folder under `runtime/` is a layer with a rank (and `thread.rs`, a layer of one
//! file); the other files directly in `runtime/` (the crate root, `finally`, the guide,
//! the macros' private API, signals) sit on top. A file may
//! name `crate::<layer>` only for a layer of its own rank or lower, and must name the layer
//! (not a root re-export such as `crate::now`, which would hide where it points). Comments
//! and doc links are free: they do not make a dependency.

use std::fmt;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A new folder under `runtime/` must be added here. `thread` is
/// a layer of one file, `runtime/thread.rs` (`to_thread` and `from_thread`), because `net`
/// resolves names on a worker thread and so stands on it.
const LAYERS: &[&str] = &[
    "context",
    "instrument",
    "rt",
    "scope",
    "nursery",
    "sync",
    "thread",
    "net",
];

/// The layers that are one file directly in `runtime/` rather than a folder.
const FILE_LAYERS: &[&str] = &["thread"];

/// The rank of the files directly in `runtime/`: above every layer.
const TOP: usize = LAYERS.len();

fn runtime_dir() -> PathBuf {
    // This package is `integration/`, beside `runtime/` in the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime")
}

/// One import that points the wrong way.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    text: String,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "runtime/{}:{}: `{}`: {}",
            self.file, self.line, self.text, self.why
        )
    }
}

fn rank_of_layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| *layer == name)
}

/// The code of a line, without its comment (`//`, `///`, `//!`). Strings holding `//` do
/// not occur in `crate::` paths, so a plain split is enough.
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// The identifiers that follow `crate::` in `code`, or `{` for a grouped `crate::{..}`.
fn crate_paths(code: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        // `$crate::` and identifiers ending in `crate` are not the crate root.
        if before.ends_with(|c: char| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        if rest.starts_with('{') {
            found.push("{");
            continue;
        }
        let end = rest
            .find(|c: char| !(c == '_' || c.is_alphanumeric()))
            .unwrap_or(rest.len());
        found.push(&rest[..end]);
    }
    found
}

/// The wrong-way imports of one file, whose path (relative to `runtime/`) is `file`.
fn violations(file: &str, source: &str) -> Vec<Violation> {
    let (own_rank, in_mod_rs) = match file.split_once('/') {
        Some((layer, rest)) => match rank_of_layer(layer) {
            Some(rank) => (rank, rest == "mod.rs"),
            None => {
                return vec![Violation {
                    file: file.to_string(),
                    line: 0,
                    text: String::new(),
                    why: format!(
                        "the folder `{layer}` is not a known layer: add it to LAYERS in \
                         integration/tests/architecture.rs and to ARCHITECTURE.md, at its rank"
                    ),
                }];
            }
        },
        None => match FILE_LAYERS
            .iter()
            .find(|layer| file.strip_suffix(".rs") == Some(**layer))
        {
            Some(layer) => (rank_of_layer(layer).expect("file layers are layers"), true),
            None => (TOP, false),
        },
    };
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let code = code_of(line);
        let mut report = |why: String| {
            found.push(Violation {
                file: file.to_string(),
                line: index + 1,
                text: line.trim().to_string(),
                why,
            })
        };
        if own_rank < TOP {
            let escapes = if in_mod_rs {
                "super::"
            } else {
                "super::super::"
            };
            if code.contains(escapes) {
                report(
                    "leaves its layer through `super`; name the layer: `crate::<layer>::..`".into(),
                );
            }
        }
        for target in crate_paths(code) {
            if own_rank == TOP {
                continue;
            }
            match rank_of_layer(target) {
                Some(rank) if rank <= own_rank => {}
                Some(_) => report(format!(
                    "`{}` imports from `{target}`, a higher layer; move the shared piece \
                     down, or invert the dependency (a trait the lower layer defines)",
                    LAYERS[own_rank]
                )),
                None if target == "{" => report(
                    "a grouped `crate::{..}` hides which layers it reaches; write one path \
                     per layer"
                        .into(),
                ),
                None => report(format!(
                    "`crate::{target}` is a root re-export, which hides its layer; write \
                     the layer's path (`crate::<layer>::..`)"
                )),
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`, as paths relative to `root`, sorted.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_layer_imports_only_from_itself_and_the_layers_below() {
    let root = runtime_dir();
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    assert!(
        files.len() > 20,
        "found only {files:?} under {}",
        root.display()
    );
    let wrong: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let source = std::fs::read_to_string(root.join(file)).expect("readable");
            violations(file, &source)
        })
        .map(|v| v.to_string())
        .collect();
    assert!(
        wrong.is_empty(),
        "imports that point up a layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_layer_folder_is_known() {
    let root = runtime_dir();
    for entry in std::fs::read_dir(&root).expect("runtime/") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                rank_of_layer(&name).is_some(),
                "runtime/{name}/ is not a known layer: add it to LAYERS (and ARCHITECTURE.md)"
            );
        }
    }
}

#[test]
fn the_check_catches_an_upward_import_and_names_the_file_and_line() {
    let source = "//! docs may link [`x`](crate::nursery::Nursery)\n\
                  use std::rc::Rc;\n\
                  use crate::scope::tree::ScopeNode;\n";
    let found = violations("rt/time.rs", source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, 3);
    assert_eq!(
        found[0].to_string(),
        "runtime/rt/time.rs:3: `use crate::scope::tree::ScopeNode;`: `rt` imports from \
         `scope`, a higher layer; move the shared piece down, or invert the dependency \
         (a trait the lower layer defines)"
    );
}

#[test]
fn the_check_catches_root_re_exports_groups_and_super_escapes() {
    let source = "let t = crate::now();\n\
                  use crate::{rt::time::now, nursery::open::nursery};\n\
                  use super::super::lib;\n\
                  use crate::rt::time::Sleep;\n\
                  use crate::context::values::Context;\n\
                  macro_rules! m { () => { $crate::x } }\n";
    let lines: Vec<usize> = violations("scope/tree.rs", source)
        .iter()
        .map(|v| v.line)
        .collect();
    assert_eq!(lines, [1, 2, 3]);
    assert_eq!(violations("scope/mod.rs", "use super::guide;\n").len(), 1);
    // The top files may use anything.
    assert!(violations("finally.rs", "use crate::nursery::open::nursery;\n").is_empty());
    assert_eq!(
        violations("web/tcp.rs", "").len(),
        1,
        "unknown folders are reported"
    );
    // `thread.rs` is a layer of one file: below `net`, above `sync`.
    assert!(violations("net/resolve.rs", "use crate::thread::to_thread;\n").is_empty());
    assert_eq!(
        violations("thread.rs", "use crate::net::tcp::TcpStream;\n").len(),
        1
    );
    assert_eq!(violations("thread.rs", "use super::lib;\n").len(), 1);
}
