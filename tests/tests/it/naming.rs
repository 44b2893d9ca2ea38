//! How netpath names what it counts, in the lab with the daemon in node 1's namespace: pods only
//! for pods (the underlay's peer is another node), the pod names the lab shows, the daemon's
//! interface names for `capture --iface`, pods named as their veth appears, and the names kept
//! with the pins after the daemon exits.
use std::{
    io::{Read as _, Write as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netpath_tests::*;

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the exporter");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read metrics");
    body
}

/// Background pings from a pod, stopped (by PID) on drop.
struct Pinger(std::process::Child);

impl Pinger {
    fn start(netns: &str, dst: &str) -> Pinger {
        Pinger(
            Command::new("ip")
                .args(["netns", "exec", netns, "ping", "-i", "0.1", "-w", "30", dst])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ping"),
        )
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn naming_pods_underlay_and_names_in_the_daemons_namespace() {
    require_root();
    let lab = LabGuard::up("npn");
    let pods = lab.0.pods();
    let a = pods.iter().find(|p| p.name == "n1-pod-a").unwrap();
    let remote = pods.iter().find(|p| p.node == 2).unwrap();
    let node1 = lab.0.node_ns(1);
    let node2 = lab.0.node_ns(2);
    let pins = PinDir::new();
    let port = free_port().to_string();
    let n1_pods = pods.iter().filter(|p| p.node == 1).count();
    let d = Daemon::start_expecting(
        &[
            "--netns",
            &node1,
            "--iface",
            "cni0",
            "--iface",
            "ul0:xdp",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1h",
        ],
        2 + n1_pods,
    );
    let _ping = Pinger::start(&a.netns, &remote.ip.to_string());

    // Item 3: the underlay leads to another node, not to a pod.
    let ifaces = netpath_json(&["ifaces", "--socket", pins.sock()]);
    let row = |name: &str| {
        ifaces
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["iface"] == name)
            .unwrap_or_else(|| panic!("no {name} in {ifaces:#}"))
            .clone()
    };
    let ul0 = row("ul0");
    assert_eq!(
        (ul0["role"].as_str(), ul0["pod"].as_str()),
        (Some("underlay"), None),
        "{ul0}"
    );
    assert_eq!(ul0["peer_netns"], node2.as_str(), "{ul0}");
    assert_eq!(row(&a.host_veth)["role"], "pod");
    assert_eq!(row("cni0")["role"], "host");
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = scrape(port.parse().unwrap());
        if m.contains("iface=\"ul0\"") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let ul0_series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("netpath_packets_total{") && l.contains("iface=\"ul0\""))
        .collect();
    assert!(!ul0_series.is_empty(), "no ul0 series:\n{metrics}");
    for l in &ul0_series {
        assert!(l.contains("pod=\"\""), "the underlay is not a pod: {l}");
    }
    let veth_series = metrics
        .lines()
        .find(|l| l.starts_with("netpath_packets_total{") && l.contains(&format!("iface=\"{}\"", a.host_veth)))
        .unwrap_or_else(|| panic!("no series for {}:\n{metrics}", a.host_veth));
    assert!(veth_series.contains(&format!("pod=\"{}\"", a.netns)), "{veth_series}");
    let stats = netpath(&["stats", "--socket", pins.sock()]);
    let text = ok(&stats, "stats");
    assert!(text.contains(&format!("ul0 (underlay to {node2})")), "{text}");
    let out = netpath(&["watch", "--socket", pins.sock(), "--pod", &node2, "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2), "a node's namespace is not a pod");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("n1-pod-a") && !err.contains(&format!("{node2},")), "{err}");

    // Item 4: the pod names `lab status` shows are accepted.
    let out = netpath(&[
        "watch",
        "--socket",
        pins.sock(),
        "--pod",
        "n1-pod-a",
        "--count",
        "1",
        "--duration",
        "20s",
        "--kind",
        "flow_new,flow_end,icmp_error,arp",
    ]);
    ok(&out, "watch --pod n1-pod-a");
    let added = netpath(&[
        "rule",
        "add",
        "--socket",
        pins.sock(),
        "--pod",
        "n1-pod-a",
        "--class",
        "icmp",
        "--pass",
        "-o",
        "json",
    ]);
    let rule: serde_json::Value = serde_json::from_str(&ok(&added, "rule add --pod n1-pod-a")).unwrap();
    let rule = rule.get(0).unwrap_or(&rule).clone();
    assert_eq!(rule["iface"], a.host_veth.as_str(), "{rule}");
    ok(
        &netpath(&["rule", "del", "--socket", pins.sock(), &rule["id"].to_string()]),
        "rule del",
    );

    // Item 5: `capture --iface cni0` names the daemon's cni0 (there is none in the host namespace).
    let file = std::env::temp_dir().join(format!("{}.pcapng", unique("npn-cap")));
    let out = netpath(&[
        "capture",
        "--socket",
        pins.sock(),
        "--pin-dir",
        pins.arg(),
        "--iface",
        "cni0",
        "-c",
        "2",
        "--duration",
        "20s",
        "-w",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    ok(&out, "capture --iface cni0 (the daemon's)");
    let out = netpath(&[
        "capture",
        "--socket",
        pins.sock(),
        "--pin-dir",
        pins.arg(),
        "--iface",
        "nope0",
        "-c",
        "1",
        "-w",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope0") && err.contains("cni0") && err.contains("ul0"),
        "{err}"
    );
    drop(_ping);

    // Item 1: after the daemon exits, the pins name the interfaces as it did, read from the host's
    // namespace (where those ifindexes are other links, or none).
    d.stop();
    let rows = netpath_json(&["stats", "--pin-dir", pins.arg(), "--socket", pins.sock()]);
    let names: std::collections::BTreeSet<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["iface"].as_str().unwrap())
        .collect();
    assert!(
        names.contains("ul0") && names.contains(a.host_veth.as_str()),
        "{names:?}"
    );
    let host_names: Vec<String> = netpath::node::ifaces::list().into_iter().map(|i| i.name).collect();
    for n in &names {
        assert!(
            !host_names.contains(&n.to_string()) || *n == "lo",
            "{n} is a host interface's name: {rows:#}"
        );
    }
    let veth = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["iface"] == a.host_veth.as_str())
        .unwrap();
    assert_eq!(
        (veth["netns"].as_str(), veth["role"].as_str()),
        (Some(a.netns.as_str()), Some("pod")),
        "{veth}"
    );
    let flows = netpath_json(&["flows", "--pin-dir", pins.arg(), "--socket", pins.sock()]);
    let ul0_flow = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["iface"] == "ul0")
        .unwrap_or_else(|| panic!("no ul0 flow: {flows:#}"));
    assert_eq!(ul0_flow["role"], "underlay", "{ul0_flow}");
}

/// Item 2: a pod is named as soon as its veth appears, not at the next print tick (1 h here).
#[test]
fn naming_a_new_pod_is_named_when_its_veth_appears() {
    require_root();
    let node = Netns::new("npt");
    let pod = Netns::new("npt");
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["link", "set", "br0", "up"]);
    let pins = PinDir::new();
    let _d = Daemon::start(&[
        "--netns",
        &node.name,
        "--iface",
        "br0",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--interval",
        "1h",
    ]);
    node.ip(&[
        "link", "add", "vethnew0", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
    ]);
    node.ip(&["link", "set", "vethnew0", "master", "br0", "up"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let ifaces = netpath_json(&["ifaces", "--socket", pins.sock()]);
        let named = ifaces
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["iface"] == "vethnew0" && r["peer_netns"] == pod.name.as_str() && r["role"] == "pod");
        if named {
            break;
        }
        assert!(Instant::now() < deadline, "vethnew0 not named within 3 s: {ifaces:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = netpath(&["watch", "--socket", pins.sock(), "--pod", &pod.name, "--duration", "1s"]);
    ok(&out, "watch --pod of the new pod");
}
