//! Builds the eBPF object (netpath-ebpf's bins, with the nightly toolchain, for
//! bpfel-unknown-none, with bpf-linker on PATH) into OUT_DIR, where datapath/loader.rs embeds it.
//! `cargo xtask build` provides the toolchain pieces.
//!
//! This is what aya-build's `build_ebpf` does, written here because aya-build 0.2 fixes the
//! compiler flags and the datapath needs one more: `-C target-feature=+allows-misaligned-mem-access`.
//! Without it LLVM's BPF backend reads every header field wider than a byte, at an offset it
//! cannot prove aligned, one byte at a time (an IPv6 address is sixteen loads, shifts and ors);
//! the kernel allows misaligned packet and map-value access where the CPU does (x86, arm64), and
//! the parser ran about 12% faster with it (`cargo xtask bench compare`, BENCHMARKS.md).
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _};
use cargo_metadata::{Artifact, CompilerMessage, Message};

const EBPF_PACKAGE: &str = "netpath-ebpf";
const TARGET: &str = "bpfel-unknown-none";
const TOOLCHAIN: &str = "nightly";

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
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} manifest has no parent directory"))?;
    // Cargo rebuilds us when the eBPF crate's library changes (a build-dependency), not its bins.
    println!("cargo:rerun-if-changed={root_dir}");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f.
    let flags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        "-Ctarget-feature=+allows-misaligned-mem-access".into(),
    ]
    .join("\x1f");

    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--package", EBPF_PACKAGE, "--bins"])
        .args([
            "--message-format=json",
            "--release",
            "--target",
            TARGET,
            "-Z",
            "build-std=core",
        ])
        // Apart from OUT_DIR's copies of the bins: a bin named like the directory would collide.
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        .env("CARGO_ENCODED_RUSTFLAGS", flags)
        // The outer build's compiler and wrappers are the stable toolchain's, not the nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {cmd:?} (is rustup installed?)"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    // The inner cargo's progress and errors: shown (as this build script's warnings) when it fails.
    let stderr = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut bins: Vec<(String, PathBuf)> = Vec::new();
    for message in Message::parse_stream(BufReader::new(child.stdout.take().expect("piped stdout"))) {
        match message.context("the eBPF build's cargo printed invalid JSON")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(exe),
                target,
                ..
            }) => bins.push((target.name.to_string(), exe.into_std_path_buf())),
            // Said once per crate, and known: the flag is deliberate (see above).
            Message::CompilerMessage(CompilerMessage { message, .. })
                if message.message.contains("allows-misaligned-mem-access") => {}
            Message::CompilerMessage(CompilerMessage { message, .. }) => {
                for line in message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        for line in stderr {
            println!("cargo:warning={line}");
        }
        bail!("building {EBPF_PACKAGE} failed ({status}): {cmd:?}");
    }
    // Every bin of netpath-ebpf: `netpath` (embedded by the loader) and `netpath-bench` (the
    // benchmark-only programs). The second goes to crates that depend on netpath through the
    // `links` metadata (DEP_NETPATH_DATAPATH_BENCH_OBJECT), so the tests and the benchmark load it
    // without a second eBPF build and netpath never embeds it.
    for (name, exe) in bins {
        std::fs::copy(&exe, out_dir.join(&name))
            .with_context(|| format!("copying {} to {}", exe.display(), out_dir.display()))?;
    }
    let bench = out_dir.join("netpath-bench");
    if !bench.exists() {
        bail!("the eBPF build made no netpath-bench object");
    }
    println!("cargo::metadata=bench_object={}", bench.display());
    Ok(())
}
