// netpath/build.rs compiles this crate. Rebuild the object whenever the linker
// changes, since xtask may rebuild bpf-linker for a new nightly toolchain.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
