//! Fast-path rules and the pod-to-pod fast path, in the lab: redirect, mirror, drop, interface
//! loss, bad input, persistence across restarts, and real TCP through the fast path.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use netpath_lab::Lab;
use netpath_tests::{proc::Proc, *};

fn in_pod(netns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn rule(sock: &str, args: &[&str]) -> std::process::Output {
    let mut v = vec!["rule", "--socket", sock];
    v.extend_from_slice(args);
    netpath(&v)
}

fn rule_json(sock: &str, args: &[&str]) -> serde_json::Value {
    let mut v = args.to_vec();
    v.extend(["-o", "json"]);
    let out = rule(sock, &v);
    assert!(
        out.status.success(),
        "netpath rule {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Node {
    lab: LabGuard,
    pins: PinDir,
    daemon: Option<Daemon>,
}

fn node1() -> Node {
    require_root();
    let lab = LabGuard(Lab::new(&unique("npr")));
    lab.0.up().expect("lab up");
    let pins = PinDir::new();
    let daemon = Some(start(&lab.0, &pins));
    Node { lab, pins, daemon }
}

fn start(lab: &Lab, pins: &PinDir) -> Daemon {
    Daemon::start_expecting(
        &[
            "--netns",
            &lab.node_ns(1),
            "--iface",
            "cni0",
            "--quiet",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
        ],
        4,
    )
}

fn iface_stat(sock: &str, iface: &str, dir: &str, class: &str) -> u64 {
    stat(
        &netpath_json(&["stats", "--socket", sock]),
        iface,
        dir,
        class,
        "packets",
    )
}

#[test]
fn rules_redirect_drop_mirror_and_interface_loss() {
    let n = node1();
    let sock = n.pins.sock();
    let pods: Vec<_> = n.lab.0.pods().into_iter().filter(|p| p.node == 1).collect();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let (ip_b, ip_c) = (b.ip.to_string(), c.ip.to_string());

    // Redirect ICMP from pod A's veth straight into pod B: pings are answered, and pod B's veth
    // counts each request once, when it was redirected (bpf_redirect_peer skips its TC egress);
    // a frame that also crossed the bridge would be counted there a second time.
    assert!(
        in_pod(&a.netns, &["ping", "-c", "1", "-W", "2", &ip_b])
            .status
            .success(),
        "warm-up ping (ARP)"
    );
    let before = iface_stat(sock, &b.host_veth, "egress", "icmp");
    let r = rule_json(
        sock,
        &[
            "add",
            "--iface",
            &a.host_veth,
            "--direction",
            "ingress",
            "--class",
            "icmp",
            "--redirect",
            &b.host_veth,
        ],
    );
    let id = r[0]["id"].as_u64().unwrap().to_string();
    assert_eq!(r[0]["peer"], true, "{r}");
    let out = in_pod(&a.netns, &["ping", "-c", "4", "-i", "0.2", "-W", "2", &ip_b]);
    assert!(
        out.status.success(),
        "ping through the redirect: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let listed = rule_json(sock, &["list"]);
    assert_eq!(listed[0]["hits_packets"], 4, "{listed}");
    assert_eq!(
        iface_stat(sock, &b.host_veth, "egress", "icmp"),
        before + 4,
        "redirected frames are accounted once on the target veth and never cross the bridge"
    );
    assert!(rule(sock, &["del", &id]).status.success());

    // Drop: pings fail, and the rule counts what it dropped.
    let r = rule_json(sock, &["add", "--pod", &a.netns, "--class", "icmp", "--drop"]);
    let id = r[0]["id"].as_u64().unwrap().to_string();
    assert!(!in_pod(&a.netns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", &ip_c])
        .status
        .success());
    let listed = rule_json(sock, &["list"]);
    assert_eq!(listed[0]["hits_packets"], 3, "{listed}");
    assert!(rule(sock, &["del", &id]).status.success());

    // Mirror ARP to a capture veth: tcpdump on its far side sees the copies.
    let node = n.lab.0.node_ns(1);
    let cap = Netns::new("npcap");
    sh(&[
        "ip", "-n", &node, "link", "add", "name", "vmirror", "type", "veth", "peer", "name", "eth0", "netns", &cap.name,
    ]);
    sh(&["ip", "-n", &node, "link", "set", "vmirror", "up"]);
    sh(&["ip", "-n", &cap.name, "link", "set", "eth0", "up"]);
    let r = rule_json(sock, &["add", "--class", "arp", "--mirror", "vmirror"]);
    let mirror_id = r[0]["id"].as_u64().unwrap();
    let tcpdump = Command::new("ip")
        .args([
            "netns", "exec", &cap.name, "timeout", "10", "tcpdump", "-i", "eth0", "-nn", "-c", "2", "-l", "arp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let _ = in_pod(&a.netns, &["arping", "-c", "2", "-w", "3", "-i", "eth0", &ip_c]);
    let seen = String::from_utf8(tcpdump.wait_with_output().unwrap().stdout).unwrap();
    assert!(seen.matches("ARP").count() >= 2, "tcpdump on the mirror saw: {seen}");

    // The mirror target goes away: its rule is disabled, and says why.
    sh(&["ip", "-n", &node, "link", "del", "vmirror"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let listed = rule_json(sock, &["list"]);
        let r = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == mirror_id)
            .unwrap()
            .clone();
        if r["enabled"] == false {
            assert_eq!(r["disabled_reason"], "interface_gone", "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rule not disabled: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(n);
}

#[test]
fn rules_bad_input_changes_nothing_and_rules_survive_restarts() {
    let mut n = node1();
    let sock = n.pins.sock().to_string();
    let pods: Vec<_> = n.lab.0.pods().into_iter().filter(|p| p.node == 1).collect();
    let r = rule_json(
        &sock,
        &[
            "add",
            "--iface",
            &pods[0].host_veth,
            "--class",
            "udp",
            "--port",
            "53",
            "--drop",
            "--priority",
            "10",
        ],
    );
    assert_eq!(r[0]["id"], 1);
    for (args, why) in [
        (vec!["add", "--iface", "nope0", "--drop"], "nope0"),
        (vec!["add", "--src", "10.0.0.0/40", "--drop"], "exceeds 32"),
        (
            vec!["add", "--iface", &pods[0].host_veth, "--redirect", &pods[0].host_veth],
            "loop",
        ),
        (vec!["add", "--class", "sctp", "--drop"], "unknown class"),
        (vec!["add", "--redirect", "nope1"], "nope1"),
        // A drop or redirect without match criteria cuts the traffic off: only with --force.
        (
            vec!["add", "--iface", &pods[0].host_veth, "--redirect", &pods[1].host_veth],
            "--force",
        ),
        (vec!["add", "--direction", "ingress", "--drop"], "every frame"),
        // Host bits set: neither the network nor the address is guessed.
        (
            vec!["add", "--src", "10.244.0.2/24", "--class", "tcp", "--drop"],
            "10.244.0.0/24",
        ),
    ] {
        let out = rule(&sock, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("bad argument: bad argument"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let forced = rule_json(
        &sock,
        &[
            "add",
            "--iface",
            &pods[0].host_veth,
            "--direction",
            "egress",
            "--drop",
            "--force",
        ],
    );
    assert_eq!(forced[0]["id"], 2);
    assert!(rule(&sock, &["del", "2"]).status.success());
    // A full table refuses the next rule. Ids are never reused: the first of these is 3, not 2.
    let next = rule_json(&sock, &["add", "--class", "tcp", "--port", "9", "--drop"]);
    assert_eq!(next[0]["id"], 3, "a deleted rule's id was reused");
    for _ in 2..netpath_common::rule::MAX_RULES {
        assert!(rule(&sock, &["add", "--class", "tcp", "--port", "9", "--drop"])
            .status
            .success());
    }
    let out = rule(&sock, &["add", "--class", "tcp", "--port", "9", "--drop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("full"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = rule_json(&sock, &["list"]);
    assert_eq!(listed.as_array().unwrap().len(), netpath_common::rule::MAX_RULES);
    assert_eq!(listed[0]["port"], 53, "priority 10 first");
    // Restart: the rules are still there.
    assert!(n.daemon.take().unwrap().stop().success());
    n.daemon = Some(start(&n.lab.0, &n.pins));
    let again = rule_json(&sock, &["list"]);
    assert_eq!(
        again.as_array().unwrap().len(),
        netpath_common::rule::MAX_RULES,
        "rules lost across a restart"
    );
    assert_eq!(again[0]["port"], 53);
    // Nor across restarts: the highest id issued is pinned with the table.
    let last = netpath_common::rule::MAX_RULES as u64 + 1;
    assert!(rule(&sock, &["del", &last.to_string()]).status.success());
    let r = rule_json(&sock, &["add", "--class", "udp", "--port", "9", "--drop"]);
    assert_eq!(r[0]["id"], last + 1, "the restarted daemon reused a deleted rule's id");
}

#[test]
fn fastpath_carries_real_tcp_between_pods_and_keeps_counting() {
    let n = node1();
    let sock = n.pins.sock();
    let pods: Vec<_> = n.lab.0.pods().into_iter().filter(|p| p.node == 1).collect();
    let (a, b) = (&pods[0], &pods[1]);
    let out = netpath(&["fastpath", "--socket", sock, "enable", "--bridge", "cni0", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Traffic teaches the bridge (and so the fast path) where each pod's MAC lives.
    assert!(in_pod(&a.netns, &["ping", "-c", "2", "-i", "0.2", &b.ip.to_string()])
        .status
        .success());
    assert!(in_pod(&b.netns, &["ping", "-c", "2", "-i", "0.2", &a.ip.to_string()])
        .status
        .success());
    std::thread::sleep(Duration::from_millis(1500));
    let st = netpath_json(&["fastpath", "--socket", sock, "status"]);
    let macs: Vec<&str> = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["iface"].as_str())
        .collect();
    assert!(
        macs.contains(&a.host_veth.as_str()) && macs.contains(&b.host_veth.as_str()),
        "{st:#}"
    );
    // A frame the fast path hands into pod B skips B's veth egress hook: it is accounted there at
    // redirect time, and capture on B's veth sees it. Five pings A -> B: the requests reach B's
    // veth egress (redirected from A's veth ingress), the replies A's.
    let node_ns = n.lab.0.node_ns(1);
    let pcap = std::env::temp_dir().join(format!("{}.pcapng", unique("np-fastpath-capture")));
    let _rm = RemoveOnDrop(pcap.clone());
    let mut cmd = Command::new(netpath_bin());
    cmd.args([
        "capture",
        "--socket",
        sock,
        "--pin-dir",
        n.pins.arg(),
        "--netns",
        &node_ns,
    ])
    .args(["--iface", &b.host_veth])
    .args(["--kind", "icmp", "-c", "10", "--duration", "15s", "-w"])
    .arg(&pcap)
    .stdout(Stdio::null());
    let capture = Proc::spawn("netpath capture", cmd, "capturing on");
    let icmp_before = (
        iface_stat(sock, &b.host_veth, "egress", "icmp"),
        iface_stat(sock, &a.host_veth, "egress", "icmp"),
    );
    let redirected_before = netpath_json(&["fastpath", "--socket", sock, "status"])["redirected"]
        .as_u64()
        .unwrap();
    assert!(in_pod(&a.netns, &["ping", "-c", "5", "-i", "0.2", &b.ip.to_string()])
        .status
        .success());
    let icmp_after = (
        iface_stat(sock, &b.host_veth, "egress", "icmp"),
        iface_stat(sock, &a.host_veth, "egress", "icmp"),
    );
    let redirected = netpath_json(&["fastpath", "--socket", sock, "status"])["redirected"]
        .as_u64()
        .unwrap()
        - redirected_before;
    assert!(
        redirected >= 10,
        "the pings did not take the fast path ({redirected} frames)"
    );
    assert!(
        icmp_after.0 - icmp_before.0 >= 5 && icmp_after.1 - icmp_before.1 >= 5,
        "redirected frames counted on the target veths' egress: {} on {}, {} on {}",
        icmp_after.0 - icmp_before.0,
        b.host_veth,
        icmp_after.1 - icmp_before.1,
        a.host_veth
    );
    let (exit, err) = capture.wait(Duration::from_secs(20));
    assert!(exit.success(), "netpath capture: {err}");
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args(["-Y", "icmp.type == 8", "-T", "fields", "-e", "icmp.seq"])
        .output()
        .expect("tshark");
    let requests = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        requests >= 5,
        "capture on {} saw {requests} of 5 echo requests",
        b.host_veth
    );

    let before = st["redirected"].as_u64().unwrap();
    let server = Command::new("ip")
        .args(["netns", "exec", &b.netns, "timeout", "20", "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let client = in_pod(
        &a.netns,
        &["timeout", "20", "iperf3", "-c", &b.ip.to_string(), "-t", "2", "-J"],
    );
    let _ = server.wait_with_output();
    assert!(
        client.status.success(),
        "iperf3 through the fast path: {}",
        String::from_utf8_lossy(&client.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap();
    let gbps = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e9;
    let st = netpath_json(&["fastpath", "--socket", sock, "status"]);
    let redirected = st["redirected"].as_u64().unwrap() - before;
    let flows = netpath_json(&["flows", "--socket", sock, "--class", "tcp", "--iface", &a.host_veth]);
    let counted: u64 = flows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["packets"].as_u64())
        .sum();
    eprintln!(
        "fast path: iperf3 {gbps:.2} Gbit/s, {redirected} frames redirected, {counted} TCP packets counted on {}",
        a.host_veth
    );
    assert!(
        redirected > 100,
        "the TCP stream did not take the fast path ({redirected} frames)"
    );
    assert!(
        counted >= redirected / 2,
        "netpath kept counting: {counted} packets vs {redirected} redirected"
    );
    assert!(netpath(&["fastpath", "--socket", sock, "disable"]).status.success());
    let st = netpath_json(&["fastpath", "--socket", sock, "status"]);
    assert_eq!(st["enabled"], false);
    assert!(st["entries"].as_array().unwrap().is_empty());
    assert!(
        in_pod(&a.netns, &["ping", "-c", "1", "-W", "2", &b.ip.to_string()])
            .status
            .success(),
        "the bridge works again"
    );
}

/// Removes a file when dropped (a test's output, on success and on panic).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
