//! `#[trellis::main]` returning `impl Termination`.

#![deny(warnings)]

#[trellis::main]
async fn main() -> impl std::process::Termination {
    std::process::ExitCode::SUCCESS
}
