//! The build toolchain, provisioned from nothing: the nightly toolchain's rust-src (for
//! `-Z build-std=core`) and a bpf-linker built against the nightly toolchain's own libLLVM, cached
//! under target/tools so a second build costs nothing.
//!
//! bpf-linker must use exactly the LLVM that rustc emitted bitcode for. No prebuilt bpf-linker
//! matches the nightly here (LLVM 22), so we point llvm-sys at a scratch prefix whose
//! lib/libLLVM.so is a link to the toolchain's libLLVM.so.<ver>-rust-<ver>.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

pub const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let listed = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF crate with the nightly toolchain")?;
    if !listed.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "the nightly toolchain is missing; the eBPF crate needs it (-Z build-std=core).\n\
             Install it with: rustup toolchain install nightly --component rust-src"
        );
    }
    let sysroot = output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--toolchain", NIGHTLY, "--installed"]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the nightly toolchain");
    let st = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", NIGHTLY])
        .status()?;
    if !st.success() {
        bail!("rustup component add rust-src --toolchain nightly failed");
    }
    Ok(())
}

/// The nightly toolchain's own libLLVM (e.g. libLLVM.so.22.1-rust-1.97.0-nightly).
fn nightly_libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        })
        .collect();
    // Prefer the versioned soname (libLLVM.so.22.1-rust-...), which llvm-sys links by.
    found.sort_by_key(|p| !p.file_name().unwrap().to_string_lossy().starts_with("libLLVM.so."));
    found
        .into_iter()
        .next()
        .with_context(|| format!("no libLLVM in {} (is the nightly toolchain complete?)", lib.display()))
}

/// Make sure rust-src and a matching bpf-linker exist; return the directory to put first on PATH.
pub fn ensure() -> Result<PathBuf> {
    let sysroot = nightly_sysroot()?;
    ensure_rust_src()?;
    let libllvm = nightly_libllvm(&sysroot)?;
    let tag = libllvm.file_name().unwrap().to_string_lossy().replace(['/', ' '], "_");
    // Keyed by the exact LLVM build: a new nightly gets a new linker.
    let root = target_dir()
        .join("tools")
        .join(format!("bpf-linker-{BPF_LINKER_VERSION}-{tag}"));
    let bin = root.join("bin");
    let linker = bin.join("bpf-linker");
    if linker.exists()
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(bin);
    }
    let prefix = root.join("llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib").join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute, once)",
        libllvm.display()
    );
    let st = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
        ])
        .arg(BPF_LINKER_LLVM_FEATURE)
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &prefix)
        // The linker dlopens nothing at run time, but it links against libLLVM.so by path.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display()),
        )
        .status()
        .context("running cargo install bpf-linker")?;
    if !st.success() {
        bail!(
            "building bpf-linker failed (see above); it needs the nightly toolchain's libLLVM at {}",
            libllvm.display()
        );
    }
    Ok(bin)
}

/// PATH with the provisioned tools (bpf-linker) first.
pub fn path_with(tools_bin: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_bin.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    std::env::join_paths(paths).expect("PATH entries are valid")
}

/// A `cargo` command with bpf-linker on PATH.
pub fn cargo(tools_bin: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.env("PATH", path_with(tools_bin));
    c.current_dir(workspace_root());
    c
}
