//! (being written) `cargo xtask bench fastpath`.
fn main() {
    eprintln!("netpath-fastpath-bench: not written yet");
    std::process::exit(1);
}
