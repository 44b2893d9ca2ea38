//! `netpath doctor`: each check sees a fault staged in a namespace made for it (or the lab), says
//! what fixes it, and turns ok once the fix it printed is applied.
use netpath_tests::*;
use serde_json::Value;

/// `netpath doctor --netns NS --check CHECK -o json` (exit 0 or 1: a failing check is not an error).
fn doctor(ns: &str, check: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut v = vec!["doctor", "--netns", ns, "--check", check, "-o", "json"];
    v.extend_from_slice(extra);
    let out = netpath(&v);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "netpath {v:?}: exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (code, rows)
}

/// The one finding about `subject`.
fn finding<'a>(rows: &'a [Value], subject: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no finding about {subject}: {rows:#?}"))
}

/// Run the fix the doctor printed, inside the namespace `ns`.
fn apply(ns: &str, fix: &str) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", fix])
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "fix `{fix}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stage, see the finding, apply its fix, see ok.
fn fixes(ns: &str, check: &str, subject: &str, want: &str) {
    let (code, rows) = doctor(ns, check, &[]);
    let f = finding(&rows, subject);
    assert_eq!(f["status"], want, "{check}: {f}");
    assert_eq!(code, i32::from(want == "fail"), "exit 1 only on a fail: {rows:#?}");
    let fix = f["fix"].as_str().unwrap_or_else(|| panic!("{check}: no fix in {f}"));
    apply(ns, fix);
    let (code, rows) = doctor(ns, check, &[]);
    assert!(
        rows.iter().all(|r| r["status"] == "ok"),
        "{check} after `{fix}`: {rows:#?}"
    );
    assert_eq!(code, 0);
}

#[test]
fn doctor_sysctl_and_netfilter_checks_turn_ok_with_their_fix() {
    require_root();
    let pair = Pair::new();
    let ns = &pair.a;
    let name = ns.name.as_str();
    // Strict rp_filter on a link, and forwarding off.
    let _ = ns.exec(&["sysctl", "-qw", "net.ipv4.conf.veth-a.rp_filter=1"]);
    fixes(name, "rp_filter", "veth-a", "warn");
    let _ = ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    fixes(name, "ip_forward", "node", "fail");
    // A FORWARD policy of DROP.
    let out = ns.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fixes(name, "forward_policy", "FORWARD", "warn");
    // A bridge whose traffic skips iptables.
    ns.ip(&["link", "add", "br-dr", "type", "bridge"]);
    if std::path::Path::new("/sys/module/br_netfilter").exists() {
        let _ = ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        fixes(name, "br_netfilter", "br-dr", "fail");
    } else {
        eprintln!("skipped br_netfilter staging: the br_netfilter module is not loaded (loading it changes the host)");
        let (_, rows) = doctor(name, "br_netfilter", &[]);
        assert_eq!(finding(&rows, "br-dr")["fix"], "modprobe br_netfilter");
    }
    // The tables are the node's (their limits only the host may change): read, and ok here.
    let (code, rows) = doctor(name, "conntrack,neigh_table", &[]);
    assert_eq!(code, 0, "{rows:#?}");
    assert!(finding(&rows, "ipv4 neighbours")["evidence"]
        .as_str()
        .unwrap()
        .contains("IPv4 neighbours"));
    // Bad input: unknown ids and namespaces are errors naming what exists, and change nothing.
    for (args, says) in [
        (vec!["doctor", "--check", "rp_filter,nope"], "rp_filter, ip_forward"),
        (vec!["doctor", "--netns", "np-no-such-ns"], "not found"),
    ] {
        let out = netpath(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}");
    }
}

#[test]
fn doctor_on_the_lab_is_healthy_then_finds_staged_faults() {
    require_root();
    let lab = LabGuard::up("npdoc");
    let node1 = lab.0.node_ns(1);
    let ip = |args: &[&str]| {
        let mut v = vec!["ip", "-n", node1.as_str()];
        v.extend_from_slice(args);
        sh(&v)
    };
    let (code, rows) = doctor(
        &node1,
        "rp_filter,ip_forward,mtu,vxlan_fdb,veth_bridge,forward_policy",
        &[],
    );
    assert_eq!(code, 0, "the lab as built is healthy: {rows:#?}");
    let fdb = rows
        .iter()
        .find(|r| r["check"] == "vxlan_fdb" && r["subject"].as_str().unwrap().starts_with("flannel.1 "))
        .unwrap_or_else(|| panic!("no peer of flannel.1: {rows:#?}"));
    assert!(
        fdb["evidence"].as_str().unwrap().contains("fdb dst 172.27.16.10"),
        "{fdb}"
    );

    // A pod veth bigger than the bridge (and the VXLAN device) can carry.
    let veth = lab
        .0
        .pods()
        .into_iter()
        .find(|p| p.node == 1)
        .map(|p| p.host_veth)
        .unwrap();
    ip(&["link", "set", &veth, "mtu", "1500"]);
    fixes(&node1, "mtu", &veth, "fail");
    // A pod veth off the bridge.
    ip(&["link", "set", &veth, "nomaster"]);
    fixes(&node1, "veth_bridge", &veth, "fail");
    // The peer's FDB entry gone: the fix names the MAC; the peer's underlay address is the one
    // thing the node cannot know (flannel keeps it in the node's annotation).
    let subject = fdb["subject"].as_str().unwrap().to_string();
    let mac = fdb["evidence"].as_str().unwrap().split("lladdr ").nth(1).unwrap();
    let mac = mac.split(',').next().unwrap().to_string();
    sh(&[
        "bridge",
        "-n",
        &node1,
        "fdb",
        "del",
        &mac,
        "dev",
        "flannel.1",
        "dst",
        "172.27.16.10",
    ]);
    let (code, rows) = doctor(&node1, "vxlan_fdb", &[]);
    let f = finding(&rows, &subject);
    assert_eq!((code, f["status"].as_str()), (1, Some("fail")), "{f}");
    let fix = f["fix"].as_str().unwrap().replace("PEER_UNDERLAY_IP", "172.27.16.10");
    apply(&node1, &fix);
    let (code, rows) = doctor(&node1, "vxlan_fdb", &[]);
    assert_eq!(
        (code, finding(&rows, &subject)["status"].as_str()),
        (0, Some("ok")),
        "{rows:#?}"
    );
}

#[test]
fn the_daemons_doctor_joins_traffic_reports_changes_and_exports_them() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let metrics = free_local_addr();
    // Forwarding off where the daemon runs: its first run finds it.
    let _ = pair.a.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let _d = Daemon::on_veth_a(&pair, &pins, &["--doctor-interval", "1s", "--metrics", &metrics]);
    let w = Watch::start(pins.sock(), &["--kind", "doctor"]);
    let t = std::time::Duration::from_secs(10);
    w.wait_for("ip_forward fail", t, |e| {
        e["kind"] == "doctor" && e["check"] == "ip_forward" && e["reason"] == "fail"
    });
    // Traffic only the daemon sees: an ARP request nobody answers, UDP to a closed port.
    let _ = pair
        .b
        .exec(&["arping", "-c", "1", "-w", "1", "-I", "veth-b", "10.77.0.99"]);
    let _ = pair
        .b
        .exec(&["bash", "-c", &format!("echo x > /dev/udp/{PAIR_A_IP}/9")]);
    w.wait_for("arp_unanswered", t, |e| {
        e["check"] == "arp_unanswered" && e["subject"] == "veth-a 10.77.0.99" && e["reason"] == "warn"
    });
    w.wait_for("drops", t, |e| e["check"] == "drops" && e["subject"] == "NO_SOCKET");
    // `netpath doctor` asks the daemon: its findings, exit 1 on the failure.
    let out = netpath(&[
        "doctor",
        "--socket",
        pins.sock(),
        "--check",
        "ip_forward,drops",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.iter().all(|r| r["check"] == "ip_forward" || r["check"] == "drops"),
        "{rows:#?}"
    );
    let f = finding(&rows, "node");
    assert_eq!(f["fix"], "sysctl -w net.ipv4.ip_forward=1");
    let scrape = || sh(&["curl", "-sf", &format!("http://{metrics}/metrics")]);
    let series = "netpath_doctor_status{check=\"ip_forward\",subject=\"node\"}";
    assert!(scrape().lines().any(|l| l == format!("{series} 2")), "{}", scrape());
    // The printed fix, applied: the next run says so, and the gauge follows.
    apply(&pair.a.name, f["fix"].as_str().unwrap());
    w.wait_for("ip_forward ok", t, |e| {
        e["kind"] == "doctor" && e["check"] == "ip_forward" && e["reason"] == "ok"
    });
    assert!(scrape().lines().any(|l| l == format!("{series} 0")), "{}", scrape());
    let status = netpath(&["status", "--socket", pins.sock()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("doctor:"));
    // Bad input through the daemon too.
    let out = netpath(&["doctor", "--socket", pins.sock(), "--check", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
