//! The Debian packages each xtask command drives, installed when missing, so that the README's
//! commands are the whole set-up on a fresh machine. The one list per command is [`for_task`].
use std::process::Command;

use anyhow::Result;
use netpath_lab::image::Engine;

use crate::run_checked;

/// The commands that drive tools from Debian packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `cargo xtask lab`: the namespaces and links (`ip`, `bridge`), then ping, arping, iperf3.
    Lab,
    /// `cargo xtask lab up --runtime containerd` and `lab pod`: the lab, containerd (with its CRI
    /// plugin and `ctr`), runc, the CNI plugins (bridge, host-local), buildah for the pause image
    /// and a static C toolchain for its binary.
    LabContainerd,
    /// `cargo xtask demo`: the lab and its traffic.
    Demo,
    /// `cargo xtask test`: the lab's tools, and what the integration tests compare netpath with
    /// or drive (tshark, tcpdump, tcpreplay, scapy, bpftool, setpriv, a real Prometheus, nfdump's
    /// IPFIX collector).
    Test,
    /// `cargo xtask bench fastpath`: the lab, iperf3/sockperf and iptables.
    BenchFastpath,
    /// `cargo xtask bench drops`: the lab and iperf3.
    BenchDrops,
    /// The other benchmarks: ip, bpftool, and clang-16/libbpf headers for the C reference.
    Bench,
    /// `cargo xtask image`: the engine (buildah or podman), runc for the check that the binary
    /// starts inside the image, and the iproute2 tools and `ldd` whose files go into it.
    Image(Engine),
    /// `cargo xtask validate-manifests`: a Python venv (kubernetes-validate comes from PyPI).
    ValidateManifests,
}

const LAB: &[&str] = &["iproute2", "iputils-ping", "arping", "iperf3"];
/// What the containerd lab drives besides the lab's tools.
const CONTAINERD: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "buildah",
    "gcc",
    "libc6-dev",
    "util-linux",
];

/// What the integration tests compare netpath with or drive, besides the lab's and containerd's.
const TEST: &[&str] = &[
    "tcpdump",
    "tshark",
    "tcpreplay",
    "python3-scapy",
    "bpftool",
    "curl",
    "prometheus",
    "iptables",
    // nfcapd/nfdump: the IPFIX collector the export is read back with.
    "nfdump",
    // The image builder's other engine (`cargo xtask image --engine podman`).
    "podman",
];

/// The one list per command.
pub fn for_task(task: Task) -> Vec<&'static str> {
    let extra: &[&str] = match task {
        Task::Lab | Task::Demo => &[],
        Task::LabContainerd => CONTAINERD,
        // The containerd lab's tests and the image builder's are among them.
        Task::Test => return LAB.iter().chain(TEST).chain(CONTAINERD).copied().collect(),
        Task::BenchFastpath => &["sockperf", "iptables", "bpftool"],
        // The lab's iperf3 is all it drives.
        Task::BenchDrops => &[],
        Task::Bench => return vec!["iproute2", "bpftool", "clang-16", "libbpf-dev"],
        Task::Image(engine) => return vec![engine.binary(), "runc", "iproute2", "libc-bin"],
        Task::ValidateManifests => return vec!["python3", "python3-venv"],
    };
    LAB.iter().chain(extra).copied().collect()
}

/// Those of `packages` that `installed` says are not installed, in order.
fn missing<'a>(packages: &[&'a str], installed: impl Fn(&str) -> bool) -> Vec<&'a str> {
    packages.iter().copied().filter(|p| !installed(p)).collect()
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Install what `task` drives and is missing, saying what on one line. Needs root (apt-get).
pub fn ensure(task: Task) -> Result<()> {
    let missing = missing(&for_task(task), dpkg_installed);
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} (Debian packages this command drives)",
        missing.join(" ")
    );
    run_checked({
        let mut c = Command::new("apt-get");
        c.args(["update", "-qq"]);
        c
    })?;
    if missing.contains(&"tshark") {
        // tshark asks whether non-root users may capture; the answer does not matter for root, but
        // the question would stop a non-interactive install.
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections",
        ]);
        run_checked(c)?;
    }
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_checked(c)?;
    if missing.contains(&"prometheus") {
        // The tests start their own Prometheus on loopback; the service the package may have
        // started (where an init system runs) would only take the port and the CPU.
        let _ = Command::new("systemctl").args(["stop", "prometheus"]).status();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_installs_the_tools_it_drives() {
        for t in [Task::Lab, Task::Demo, Task::Test, Task::BenchFastpath, Task::BenchDrops] {
            for p in ["iproute2", "iputils-ping", "arping", "iperf3"] {
                assert!(for_task(t).contains(&p), "{t:?} lacks {p}");
            }
        }
        for p in [
            "tshark",
            "tcpreplay",
            "python3-scapy",
            "prometheus",
            "tcpdump",
            "bpftool",
        ] {
            assert!(for_task(Task::Test).contains(&p), "test lacks {p}");
            assert!(!for_task(Task::Demo).contains(&p), "the demo does not drive {p}");
        }
        assert!(for_task(Task::Bench).contains(&"clang-16"));
        // The containerd lab's tools, for the command and the tests that drive it.
        for p in CONTAINERD {
            assert!(
                for_task(Task::LabContainerd).contains(p),
                "lab --runtime containerd lacks {p}"
            );
            assert!(for_task(Task::Test).contains(p), "test lacks {p}");
        }
        assert!(for_task(Task::Image(Engine::Buildah)).contains(&"buildah"));
        assert!(for_task(Task::Image(Engine::Podman)).contains(&"podman"));
        assert!(for_task(Task::ValidateManifests).contains(&"python3-venv"));
        for p in ["buildah", "runc", "gcc", "libc6-dev"] {
            assert!(for_task(Task::Test).contains(&p), "test lacks {p}");
        }
        for t in [
            Task::Lab,
            Task::LabContainerd,
            Task::Demo,
            Task::Test,
            Task::BenchFastpath,
            Task::BenchDrops,
            Task::Bench,
            Task::Image(Engine::Buildah),
            Task::Image(Engine::Podman),
            Task::ValidateManifests,
        ] {
            let l = for_task(t);
            let mut d = l.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), l.len(), "{t:?} lists a package twice: {l:?}");
        }
    }

    #[test]
    fn only_missing_packages_are_installed_in_order() {
        let all = for_task(Task::Test);
        assert!(missing(&all, |_| true).is_empty());
        assert_eq!(missing(&all, |_| false), all);
        assert_eq!(
            missing(&all, |p| p != "tshark" && p != "arping"),
            vec!["arping", "tshark"]
        );
    }
}
