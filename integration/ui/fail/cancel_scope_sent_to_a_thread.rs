// A `CancelScope` belongs to the runtime of its thread: it cannot be sent to another one.
// `CancelScope::remote()` is the handle for that.
fn main() {
    let scope = trellis::CancelScope::new();
    std::thread::spawn(move || scope.cancel());
}
