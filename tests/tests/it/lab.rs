//! Integration tests of `netpath_lab`, the two-node pod network in network namespaces. They need
//! root (network namespaces, veth/bridge/vxlan links, tcpdump) and the iproute2, iputils-ping,
//! arping, iperf3 and tcpdump binaries. Each test builds a private lab under its own prefix, so the
//! tests can run in parallel and never touch a developer's `np` lab; a Drop guard removes it even
//! when an assertion fails.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use netpath_lab::{Lab, TrafficOpts};
use netpath_tests::LabGuard;

fn require_root() {
    let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the lab tests need root (network namespaces, veth/vxlan links); run them with `cargo xtask test`"
    );
}

/// Short, per-process prefix: namespace names stay short and parallel test runs do not collide.
fn prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// Named namespaces belonging to `prefix` (`{prefix}-...`).
fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run `ip netns list`");
    assert!(
        out.status.success(),
        "ip netns list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// `ifindex: name` of every link in `ns`, to show a second `up()` recreated nothing.
fn link_indexes(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("run ip link");
    assert!(
        out.status.success(),
        "ip -n {ns} link show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.splitn(3, ':').take(2).collect::<Vec<_>>().join(":"))
        .collect()
}

#[test]
fn lab_cross_node_ping_rides_vxlan_underlay() {
    require_root();
    let guard = LabGuard(Lab::new(&prefix("npt")));
    let lab = &guard.0;

    let status = lab.up().expect("lab up");
    assert!(
        status.up,
        "lab not up after up():\n{status}\nproblems: {:?}",
        lab.problems()
    );
    let status = lab.status().expect("lab status");
    assert!(
        status.up,
        "status() says not up:\n{status}\nproblems: {:?}",
        lab.problems()
    );
    assert_eq!(status.namespaces.len(), 7, "{status}");
    assert_eq!(status.pods.len(), 5);
    assert_eq!(
        status.underlay,
        [
            "node1 ul0 172.27.0.11/20".to_string(),
            "node2 ul0 172.27.16.10/20".to_string()
        ]
    );

    // A second up() finds the lab complete and leaves it alone.
    let node1 = lab.node_ns(1);
    let before = link_indexes(&node1);
    let again = lab.up().expect("second lab up");
    assert!(again.up, "lab not up after the second up():\n{again}");
    assert_eq!(link_indexes(&node1), before, "the second up() rebuilt links in {node1}");

    let pods = lab.pods();
    let src = pods.iter().find(|p| p.node == 1).expect("a node1 pod");
    let dst = pods.iter().find(|p| p.node == 2).expect("a node2 pod");

    // Capture VXLAN on node1's underlay while pinging across nodes.
    let mut tcpdump = Command::new("ip")
        .args([
            "netns", "exec", &node1, "timeout", "10", "tcpdump", "-i", "ul0", "-nn", "-l", "-c", "3",
        ])
        .args(["udp", "port", "8472"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let stderr = tcpdump.stderr.take().expect("tcpdump stderr");
    let (tx, rx) = mpsc::channel();
    let stderr_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // tcpdump says "listening on ul0" once the capture is armed; fall back to a fixed wait.
    if rx.recv_timeout(Duration::from_secs(5)).is_err() {
        std::thread::sleep(Duration::from_secs(1));
    }

    let ping = Command::new("ip")
        .args([
            "netns", "exec", &src.netns, "timeout", "10", "ping", "-c", "3", "-i", "0.2", "-W", "1",
        ])
        .arg(dst.ip.to_string())
        .output()
        .expect("run ping");
    let captured = tcpdump.wait_with_output().expect("wait for tcpdump");
    let tcpdump_err = stderr_reader.join().unwrap_or_default();

    assert!(
        ping.status.success(),
        "ping {} -> {} failed: {}{}",
        src.name,
        dst.name,
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    let stdout = String::from_utf8_lossy(&captured.stdout);
    let vxlan_packets: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(".8472:") && l.contains("172.27.0.11") && l.contains("172.27.16.10"))
        .collect();
    assert!(
        !vxlan_packets.is_empty(),
        "no UDP 8472 packet between the underlay addresses seen on {node1} ul0\nstdout:\n{stdout}\nstderr:\n{tcpdump_err}"
    );

    lab.down().expect("lab down");
    let left = namespaces_with_prefix(&lab.prefix);
    assert!(left.is_empty(), "namespaces left after down(): {left:?}");
    // down() is idempotent.
    lab.down().expect("second lab down");
    assert!(!lab.status().expect("status after down").up);
}

#[test]
fn lab_drive_traffic_succeeds_on_fresh_lab() {
    require_root();
    let guard = LabGuard(Lab::new(&prefix("npd")));
    let lab = &guard.0;

    let status = lab.up().expect("lab up");
    assert!(status.up, "lab not up after up():\n{status}");

    // 8 s covers every step; a little headroom for a busy CI machine.
    let report = lab.drive_traffic(&TrafficOpts { seconds: 10 }).expect("drive_traffic");
    assert!(report.ping_same_node_ok, "same-node ping failed: {report:?}");
    assert!(report.ping_cross_node_ok, "cross-node ping failed: {report:?}");
    assert!(report.arping_ok, "arping failed: {report:?}");
    assert!(report.tcp_ok, "iperf3 TCP failed: {report:?}");
    assert!(report.udp_ok, "iperf3 UDP failed: {report:?}");
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);

    // No iperf3 server (or anything else) outlives drive_traffic in the lab's namespaces.
    for pod in lab.pods() {
        let out = Command::new("ip")
            .args(["netns", "pids", &pod.netns])
            .output()
            .expect("ip netns pids");
        let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(pids.is_empty(), "processes still running in {}: {pids}", pod.netns);
    }

    lab.down().expect("lab down");
    let left = namespaces_with_prefix(&lab.prefix);
    assert!(left.is_empty(), "namespaces left after down(): {left:?}");
}
