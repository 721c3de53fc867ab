//! The guide's recipe "Inside a tokio program" (`trellis::guide`), as a program:
//! nurseries and tokio's timers in a tokio runtime, and a trellis clock on a blocking
//! thread. The program is `../inside_tokio.rs`, byte for byte the guide's (which is why
//! this file only documents and includes it); `tests/examples.rs` checks that and runs it.

include!("../inside_tokio.rs");
