//! Builds the eBPF object with aya-build (nightly toolchain, bpfel-unknown-none, bpf-linker on PATH)
//! into OUT_DIR, where src/loader.rs embeds it. `cargo xtask build` provides the toolchain pieces.
use anyhow::{anyhow, Context as _};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    // The object also compiles netpath-common (shared types and the parser).
    println!("cargo:rerun-if-changed=../netpath-common/src");
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "netpath-ebpf")
        .ok_or_else(|| anyhow!("netpath-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("netpath-ebpf manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netpath-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    // aya-build copies every bin of netpath-ebpf into OUT_DIR: `netpath` (embedded by the loader)
    // and `netpath-bench` (the benchmark-only programs). The second goes to crates that depend on
    // netpath through the `links` metadata (DEP_NETPATH_DATAPATH_BENCH_OBJECT), so the tests and
    // the benchmark load it without a second eBPF build and netpath never embeds it.
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
    let bench = std::path::Path::new(&out_dir).join("netpath-bench");
    println!("cargo::metadata=bench_object={}", bench.display());
    Ok(())
}
