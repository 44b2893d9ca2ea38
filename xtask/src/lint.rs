//! `cargo xtask lint`: the gate `.ci/run` applies before the tests. Every step runs even when an
//! earlier one fails, so one run lists everything to fix; the summary names the failed steps.
use std::process::Command;

use anyhow::{bail, Result};

use crate::tools;

pub fn run() -> Result<()> {
    // clippy builds netpath's build script, which builds the eBPF object: it needs bpf-linker.
    let tools_bin = tools::ensure()?;
    let mut failed = Vec::new();

    // rustfmt.toml groups imports, which only nightly rustfmt does.
    let mut fmt = Command::new("rustup");
    fmt.args(["run", tools::NIGHTLY, "cargo", "fmt", "--all", "--check"])
        .current_dir(tools::workspace_root());
    step("rustfmt (nightly, --check)", fmt, &mut failed);

    // netpath-ebpf only builds for the BPF target; the next step covers it.
    let mut user = tools::cargo(&tools_bin);
    user.args([
        "clippy",
        "--workspace",
        "--exclude",
        "netpath-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy on the user-space crates", user, &mut failed);

    // As aya-template's CI lints its eBPF crate: nightly, the BPF target, core built from source.
    // The nightly cargo's environment must not carry the stable toolchain's choice of rustc.
    let mut ebpf = Command::new("rustup");
    ebpf.args(["run", tools::NIGHTLY, "cargo", "clippy", "--package", "netpath-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"])
        .env("PATH", tools::path_with(&tools_bin))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .current_dir(tools::workspace_root());
    step("clippy on netpath-ebpf (bpfel-unknown-none)", ebpf, &mut failed);

    // The library is layered (ARCHITECTURE.md): a module uses only those below it.
    let mut cycles = Command::new("python3");
    cycles
        .arg(tools::workspace_root().join("xtask/scripts/module_cycles.py"))
        .arg(tools::workspace_root().join("netpath/src"));
    step("no import cycles in netpath/src", cycles, &mut failed);

    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join("; "));
    }
    eprintln!("xtask lint: all steps passed");
    Ok(())
}

fn step(name: &'static str, mut cmd: Command, failed: &mut Vec<&'static str>) {
    eprintln!("xtask lint: {name}");
    match cmd.status() {
        Ok(st) if st.success() => {}
        Ok(st) => {
            eprintln!("xtask lint: FAILED: {name} ({st})");
            failed.push(name);
        }
        Err(e) => {
            eprintln!("xtask lint: FAILED: {name}: cannot run {cmd:?}: {e}");
            failed.push(name);
        }
    }
}
