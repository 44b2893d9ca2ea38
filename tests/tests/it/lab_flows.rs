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
