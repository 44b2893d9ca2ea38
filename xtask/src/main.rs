//! `cargo xtask`: build, run, lint, test, lab, demo and bench for netpath, from a fresh machine.
mod debs;
mod demo;
mod image;
mod lab;
mod lint;
mod manifests;
mod tools;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and demo netpath (provisions the eBPF toolchain on first use)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision the toolchain (rust-src, bpf-linker) and build netpath with its eBPF object.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build netpath (release) with the provisioned toolchain and install it with `cargo install`:
    /// into `ROOT/bin`, or cargo's own bin directory (`~/.cargo/bin`) without --root.
    Install {
        /// e.g. `/usr/local` (then `netpath` is `/usr/local/bin/netpath`, on root's PATH).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Build, then run `netpath run ARGS` (as root), e.g. `cargo xtask run -- --iface cni0`.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt (nightly) check, then clippy with warnings denied on the user-space crates and on
    /// netpath-ebpf for the BPF target.
    Lint,
    /// Host unit tests, then BPF_PROG_TEST_RUN and network-namespace integration tests (root).
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// The simulated two-node lab: up, down, status, traffic (root; builds nothing).
    Lab(lab::LabArgs),
    /// Build, bring the lab up, run netpath on node 1 while driving traffic, then tear down.
    Demo {
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Build netpath's container image offline (release binary, FROM scratch) into an archive
    /// that `ctr images import` loads and `skopeo copy` pushes.
    Image(image::ImageArgs),
    /// Validate deploy/kubernetes offline (kubernetes-validate --strict, in a venv under target/).
    ValidateManifests,
    /// Benchmarks (BPF_PROG_TEST_RUN ns/packet as ratios to an empty XDP program).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        // Bad input (a lab prefix, a pod name) is exit 2, as netpath's own.
        let bad = e
            .downcast_ref::<netpath_lab::LabError>()
            .is_some_and(netpath_lab::LabError::is_bad_input);
        std::process::exit(if bad { 2 } else { 1 });
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Build { release } => {
            build(release)?;
        }
        Cmd::Install { root } => {
            let tools = tools::ensure()?;
            let mut c = tools::cargo(&tools);
            c.args(install_args(root.as_deref(), &tools::target_dir()));
            run_checked(c)?;
            let bin = match &root {
                Some(r) => r.join("bin").display().to_string(),
                None => "cargo's bin directory (~/.cargo/bin)".into(),
            };
            eprintln!("xtask: installed netpath into {bin}; it runs as root (see README, Requirements)");
        }
        Cmd::Run { release, args } => {
            let bin = build(release)?;
            require_root("netpath run")?;
            let st = Command::new(&bin).arg("run").args(&args).status()?;
            std::process::exit(st.code().unwrap_or(1));
        }
        Cmd::Lint => lint::run()?,
        Cmd::Test { filter } => test(filter)?,
        Cmd::Lab(args) => {
            require_root("the lab")?;
            match &args.action {
                lab::LabAction::Down | lab::LabAction::Status => {}
                lab::LabAction::Up {
                    runtime: lab::Runtime::Containerd,
                }
                | lab::LabAction::Pod { .. } => debs::ensure(debs::Task::LabContainerd)?,
                _ => debs::ensure(debs::Task::Lab)?,
            }
            lab::run(&args)?;
        }
        Cmd::Demo { duration } => {
            let bin = build(false)?;
            require_root("the demo")?;
            debs::ensure(debs::Task::Demo)?;
            demo::run(&bin, duration)?;
        }
        Cmd::Image(args) => {
            let bin = build(true)?;
            debs::ensure(debs::Task::Image(args.engine()))?;
            image::run(&bin, &args)?;
        }
        Cmd::ValidateManifests => {
            debs::ensure(debs::Task::ValidateManifests)?;
            manifests::validate()?;
        }
        Cmd::Bench { args } => bench(&args)?,
    }
    Ok(())
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON): run `sudo -E cargo xtask ...`");
    }
    Ok(())
}

fn run_checked(mut cmd: Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Build netpath (and so the eBPF object) and return the binary's path.
fn build(release: bool) -> Result<PathBuf> {
    let tools = tools::ensure()?;
    let mut c = tools::cargo(&tools);
    c.args(["build", "--package", "netpath"]);
    if release {
        c.arg("--release");
    }
    run_checked(c)?;
    Ok(tools::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("netpath"))
}

/// `cargo install` of the netpath crate, reusing the workspace's target directory (the eBPF object
/// and the dependencies are built there already, and so not twice).
fn install_args(root: Option<&std::path::Path>, target_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = ["install", "--locked", "--force", "--path"]
        .into_iter()
        .map(Into::into)
        .collect();
    v.push(tools::workspace_root().join("netpath").into());
    v.push("--target-dir".into());
    v.push(target_dir.into());
    if let Some(r) = root {
        v.push("--root".into());
        v.push(r.into());
    }
    v
}

fn test(filter: Option<String>) -> Result<()> {
    let bin = build(false)?;
    let tools = tools::ensure()?;
    eprintln!("xtask: host unit tests");
    let mut c = tools::cargo(&tools);
    c.args([
        "test",
        "--package",
        "netpath-common",
        "--package",
        "netpath",
        "--package",
        "netpath-lab",
        "--package",
        "xtask",
    ]);
    if let Some(f) = &filter {
        c.arg(f);
    }
    run_checked(c)?;
    require_root("the BPF and network-namespace tests")?;
    debs::ensure(debs::Task::Test)?;
    eprintln!("xtask: BPF_PROG_TEST_RUN and network-namespace integration tests");
    let mut c = tools::cargo(&tools);
    // netpath-bench's unit tests (statistics, argument parsing) are host-only, but the crate builds
    // with netpath-tests, so they run here.
    c.args(["test", "--package", "netpath-tests", "--package", "netpath-bench"])
        .env("NETPATH_BIN", &bin);
    c.arg("--");
    if let Some(f) = &filter {
        c.arg(f);
    }
    // Namespaced tests use unique names and could run in parallel, but they measure traffic and
    // share two CPUs; one at a time keeps their timing honest.
    c.args(["--test-threads", "1"]);
    run_checked(c)
}

fn bench(args: &[String]) -> Result<()> {
    let netpath = build(true)?;
    let tools = tools::ensure()?;
    require_root("the benchmarks")?;
    debs::ensure(match args.first().map(String::as_str) {
        Some("fastpath") => debs::Task::BenchFastpath,
        Some("drops") => debs::Task::BenchDrops,
        _ => debs::Task::Bench,
    })?;
    let mut c = tools::cargo(&tools);
    c.args(["run", "--release", "--package", "netpath-bench", "--"])
        .args(args)
        .env("NETPATH_BIN", &netpath)
        .env("NETPATH_BENCH_OUT", tools::target_dir().join("bench"));
    run_checked(c)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn install_builds_the_netpath_crate_into_root() {
        let a: Vec<String> = install_args(Some(Path::new("/usr/local")), Path::new("/t"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let path = tools::workspace_root().join("netpath").display().to_string();
        assert_eq!(
            a,
            [
                "install",
                "--locked",
                "--force",
                "--path",
                &path,
                "--target-dir",
                "/t",
                "--root",
                "/usr/local"
            ]
        );
        let a = install_args(None, Path::new("/t"));
        assert!(!a.iter().any(|s| s == "--root"), "{a:?}");
    }
}
