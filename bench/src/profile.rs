//! How this binary was built (recorded by `build.rs`), for the harness's output: the
//! figures depend on it (panic strategy, LTO, opt-level), so every run says which it was.

/// The Cargo profile (`release`, `dev`, or a custom one).
pub const PROFILE: &str = env!("BENCH_PROFILE");
/// The opt-level Cargo passed.
pub const OPT_LEVEL: &str = env!("BENCH_OPT_LEVEL");
/// The LTO setting and where it came from.
pub const LTO: &str = env!("BENCH_LTO");
/// The codegen units and where the number came from.
pub const CODEGEN_UNITS: &str = env!("BENCH_CODEGEN_UNITS");
/// The rustc that built it.
pub const RUSTC: &str = env!("BENCH_RUSTC");
/// Extra rustc flags (`RUSTFLAGS`), if any.
pub const RUSTFLAGS: &str = env!("BENCH_RUSTFLAGS");
/// Changes whenever the build script reruns (whenever the sources change): equal in two
/// binaries that link the same build of this library.
pub const BUILD_ID: &str = env!("BENCH_BUILD_ID");

/// The panic strategy, as compiled (`cfg!(panic = ..)`).
pub fn panic_strategy() -> &'static str {
    if cfg!(panic = "abort") {
        "abort"
    } else if cfg!(panic = "unwind") {
        "unwind"
    } else {
        "other"
    }
}

/// One line describing the build.
pub fn describe() -> String {
    format!(
        "profile {PROFILE}, opt-level {OPT_LEVEL}, lto {LTO}, codegen-units {CODEGEN_UNITS}, \
         panic={}, debug-assertions {}, rustflags {}, {RUSTC}",
        panic_strategy(),
        if cfg!(debug_assertions) { "on" } else { "off" },
        if RUSTFLAGS.is_empty() {
            "none"
        } else {
            RUSTFLAGS
        },
    )
}
