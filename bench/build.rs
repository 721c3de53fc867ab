//! Records how this crate was built, for the harness to print (`trellis_bench::profile`):
//! the profile, opt-level, LTO, codegen units, panic strategy and rustc, and a build id
//! that tells whether the harness and the timing binary link the same library build.
//!
//! Cargo tells a build script the opt-level and the panic strategy but not LTO or codegen
//! units: those come from `CARGO_PROFILE_<NAME>_LTO` / `_CODEGEN_UNITS` when set, else from
//! the workspace `Cargo.toml`'s `[profile.<name>]`, else Cargo's default for the profile.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    let out_dir = env::var("OUT_DIR").unwrap_or_default();
    // OUT_DIR is <target>[/<triple>]/<profile dir>/build/<package>-<hash>/out.
    let dir = Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into());
    let profile = if dir == "debug" {
        "dev".to_string()
    } else {
        dir
    };
    let key = profile.to_uppercase().replace('-', "_");
    let manifest =
        Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../Cargo.toml");
    let toml = std::fs::read_to_string(&manifest).unwrap_or_default();

    let setting = |name: &str, default: &str| -> String {
        let var = format!(
            "CARGO_PROFILE_{key}_{}",
            name.to_uppercase().replace('-', "_")
        );
        println!("cargo:rerun-if-env-changed={var}");
        if let Ok(v) = env::var(&var) {
            return format!("{v} (from {var})");
        }
        if let Some(v) = from_toml(&toml, &profile, name) {
            return format!("{v} (from [profile.{profile}])");
        }
        format!("{default} (the default)")
    };
    let release_like = profile != "dev" && profile != "test";
    let lto = setting("lto", "false");
    let cgu = setting("codegen-units", if release_like { "16" } else { "256" });
    let opt = env::var("OPT_LEVEL").unwrap_or_default();
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS")
        .unwrap_or_default()
        .replace('\u{1f}', " ");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );

    println!("cargo:rustc-env=BENCH_PROFILE={profile}");
    println!("cargo:rustc-env=BENCH_OPT_LEVEL={opt}");
    println!("cargo:rustc-env=BENCH_LTO={lto}");
    println!("cargo:rustc-env=BENCH_CODEGEN_UNITS={cgu}");
    println!("cargo:rustc-env=BENCH_RUSTFLAGS={}", rustflags.trim());
    println!("cargo:rustc-env=BENCH_RUSTC={rustc_version}");
    println!("cargo:rustc-env=BENCH_BUILD_ID={id}");
    // A new build id whenever what the binaries are built from changes.
    for path in [
        "src",
        "build.rs",
        "../runtime",
        "../macros",
        "../Cargo.toml",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// The value of `name` in the `[profile.<profile>]` table of `toml` (a line scan: enough
/// for `lto = "fat"`, `codegen-units = 1`).
fn from_toml(toml: &str, profile: &str, name: &str) -> Option<String> {
    let header = format!("[profile.{profile}]");
    let mut inside = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == name
        {
            let v = v.split('#').next().unwrap_or("").trim();
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}
