//! In the lab: a ping from a node 1 pod to a node 2 pod, seen by netpath on the pod's veth (TC) and
//! on the underlay (native XDP ingress, TC egress): the pod flow on the veth, and on the underlay
//! class vxlan with VNI 1, the inner pod flow and the outer node addresses.
use netpath_lab::Lab;
use netpath_tests::*;

fn find(flows: &serde_json::Value, pred: impl Fn(&serde_json::Value) -> bool) -> Option<&serde_json::Value> {
    flows.as_array().unwrap().iter().find(|f| pred(f))
}

#[test]
fn lab_ping_across_nodes_shows_pod_flow_and_vxlan_underlay_flow() {
    require_root();
    let lab = LabGuard(Lab::new(&unique("npf")));
    lab.0.up().expect("lab up");
    let pods = lab.0.pods();
    let src = pods.iter().find(|p| p.node == 1).unwrap();
    let dst = pods.iter().find(|p| p.node == 2).unwrap();
    let node1 = lab.0.node_ns(1);
    let pins = PinDir::new();
    let d = Daemon::start(&[
        "--netns",
        &node1,
        "--iface",
        &src.host_veth,
        "--iface",
        "ul0:xdp",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
    ]);

    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &src.netns,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &dst.ip.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cross-node ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (s, t) = (src.ip.to_string(), dst.ip.to_string());
    let flows = netpath_json(&[
        "flows",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--netns",
        &node1,
    ]);
    // The pod sends into its veth: ingress on the host side.
    let veth = find(&flows, |f| {
        f["iface"] == src.host_veth.as_str()
            && f["direction"] == "ingress"
            && f["proto"] == "icmp"
            && f["src"] == s.as_str()
            && f["dst"] == t.as_str()
    })
    .unwrap_or_else(|| panic!("no pod icmp flow on {}: {flows:#}", src.host_veth));
    assert_eq!(
        (
            veth["packets"].as_u64(),
            veth["vni"].as_u64(),
            veth["icmp_type"].as_u64()
        ),
        (Some(3), Some(0), Some(8)),
        "{veth}"
    );

    let out_flow = find(&flows, |f| {
        f["iface"] == "ul0" && f["direction"] == "egress" && f["src"] == s.as_str() && f["dst"] == t.as_str()
    })
    .unwrap_or_else(|| panic!("no underlay egress flow: {flows:#}"));
    assert_eq!(out_flow["vni"], 1, "{out_flow}");
    assert_eq!(out_flow["proto"], "icmp", "{out_flow}");
    assert_eq!(out_flow["packets"], 3, "{out_flow}");
    assert_eq!(
        (out_flow["outer_src"].as_str(), out_flow["outer_dst"].as_str()),
        (Some("172.27.0.11"), Some("172.27.16.10")),
        "{out_flow}"
    );
    // 50 bytes of VXLAN encapsulation (outer Ethernet, IPv4, UDP, VXLAN) on each 98-byte pod frame.
    assert_eq!(out_flow["bytes"].as_u64(), Some(3 * (98 + 50)), "{out_flow}");

    let reply = find(&flows, |f| {
        f["iface"] == "ul0" && f["direction"] == "ingress" && f["src"] == t.as_str() && f["dst"] == s.as_str()
    })
    .unwrap_or_else(|| panic!("no underlay reply flow (XDP ingress): {flows:#}"));
    assert_eq!(
        (
            reply["vni"].as_u64(),
            reply["icmp_type"].as_u64(),
            reply["packets"].as_u64()
        ),
        (Some(1), Some(0), Some(3)),
        "{reply}"
    );
    assert_eq!(reply["outer_src"], "172.27.16.10", "{reply}");

    let rows = netpath_json(&[
        "stats",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--netns",
        &node1,
    ]);
    assert!(stat(&rows, "ul0", "egress", "vxlan", "packets") >= 3, "{rows}");
    assert!(stat(&rows, "ul0", "ingress", "vxlan", "packets") >= 3, "{rows}");
    assert_eq!(
        stat(&rows, "ul0", "egress", "icmp", "packets"),
        0,
        "underlay ICMP must be classed vxlan: {rows}"
    );
    assert!(d.stop().success());
}

/// `flows`, `stats` and `watch` select by `--pod`, `--ip` (CIDR) and `--port`; `ifaces` shows each
/// pod's address and MAC and selects by `--pod`; `watch` lines show a VXLAN flow's outer addresses.
#[test]
fn lab_select_by_pod_ip_and_port_and_ifaces_show_pod_addresses() {
    require_root();
    let lab = LabGuard::up("nps");
    let pods = lab.0.pods();
    let a = pods.iter().find(|p| p.name == "n1-pod-a").unwrap();
    let b = pods.iter().find(|p| p.name == "n1-pod-b").unwrap();
    let remote = pods.iter().find(|p| p.node == 2).unwrap();
    let node1 = lab.0.node_ns(1);
    let pins = PinDir::new();
    let n1_pods = pods.iter().filter(|p| p.node == 1).count();
    let _d = Daemon::start_expecting(
        &[
            "--netns",
            &node1,
            "--iface",
            "cni0",
            "--iface",
            "ul0",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
        ],
        2 + n1_pods,
    );
    let sock = pins.sock();

    // Pod addresses and MACs, and --pod, in `ifaces`.
    let rows = netpath_json(&["ifaces", "--socket", sock, "--pod", "n1-pod-a"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["iface"], a.host_veth.as_str());
    let addrs: Vec<&str> = rows[0]["peer_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(addrs.contains(&format!("{}/24", a.ip).as_str()), "{addrs:?}");
    assert_eq!(rows[0]["peer_mac"].as_str(), a.mac.as_deref(), "{:?}", rows[0]);
    let table = String::from_utf8_lossy(&netpath(&["ifaces", "--socket", sock]).stdout).into_owned();
    assert!(table.contains(&format!("{}/24", b.ip)), "{table}");
    let out = netpath(&["ifaces", "--socket", sock, "--pod", "n9-pod-z"]);
    assert_eq!(out.status.code(), Some(2));

    // A watch for the remote pod's address, started before the traffic it should show.
    let watch = std::process::Command::new(netpath_bin())
        .args([
            "watch",
            "--socket",
            sock,
            "--ip",
            &remote.ip.to_string(),
            "--kind",
            "flow_new",
        ])
        .args(["--count", "6", "--duration", "20s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (p, dst) in [(a, remote.ip.to_string()), (b, a.ip.to_string())] {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", &p.netns, "ping", "-c", "2", "-i", "0.2", "-W", "2", &dst,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "ping from {}", p.name);
    }
    let text = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        text.lines().all(|l| l.contains(&remote.ip.to_string())),
        "watch --ip let other flows through:\n{text}"
    );
    assert!(
        text.contains("vni 1 outer 172.27.0.11 > 172.27.16.10")
            || text.contains("vni 1 outer 172.27.16.10 > 172.27.0.11"),
        "no VXLAN outer addresses in:\n{text}"
    );

    let flows = netpath_json(&["flows", "--socket", sock, "--pod", "n1-pod-b"]);
    let flows = flows.as_array().unwrap();
    assert!(!flows.is_empty());
    assert!(flows.iter().all(|f| f["iface"] == b.host_veth.as_str()), "{flows:?}");
    let flows = netpath_json(&["flows", "--socket", sock, "--ip", &format!("{}/32", remote.ip)]);
    let flows = flows.as_array().unwrap();
    assert!(flows.iter().any(|f| f["iface"] == "ul0" && f["vni"] == 1), "{flows:?}");
    assert!(
        flows
            .iter()
            .all(|f| f["src"] == remote.ip.to_string().as_str() || f["dst"] == remote.ip.to_string().as_str()),
        "{flows:?}"
    );
    let flows = netpath_json(&["flows", "--socket", sock, "--ip", "172.27.16.10"]);
    assert!(
        flows.as_array().unwrap().iter().all(|f| f["iface"] == "ul0"),
        "only the underlay carries the outer address: {flows}"
    );
    // No TCP or UDP ran: ICMP's echo id is not a port.
    let flows = netpath_json(&["flows", "--socket", sock, "--port", "5201"]);
    assert_eq!(flows, serde_json::json!([]));

    // stats: --pod keeps the pod's rows; --ip sums the matching flows per interface.
    let rows = netpath_json(&["stats", "--socket", sock, "--pod", "n1-pod-a"]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["iface"] == a.host_veth.as_str()),
        "{rows}"
    );
    let rows = netpath_json(&["stats", "--socket", sock, "--ip", &remote.ip.to_string()]);
    assert_eq!(stat(&rows, &a.host_veth, "ingress", "icmp", "packets"), 2, "{rows}");
    assert_eq!(stat(&rows, "ul0", "egress", "vxlan", "packets"), 2, "{rows}");
    assert_eq!(stat(&rows, &b.host_veth, "ingress", "icmp", "packets"), 0, "{rows}");
    for bad in [
        &["flows", "--socket", sock, "--ip", "10.244.0.2/24"][..],
        &["flows", "--socket", sock, "--pod", "np-node2"][..],
        &["stats", "--socket", sock, "--pod", "nobody"][..],
        &["watch", "--socket", sock, "--port", "x", "--duration", "1s"][..],
    ] {
        assert_eq!(netpath(bad).status.code(), Some(2), "{bad:?}");
    }
}
