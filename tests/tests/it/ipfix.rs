//! IPFIX export read by a real collector: nfdump's `nfcapd` listens on loopback in the host's
//! namespace; netpath runs on lab node 1 (`--netns`, cni0 with its pod veths over TC, the
//! underlay over native XDP) with `--ipfix` at it and short timeouts; the lab carries pod traffic
//! (pings, TCP and UDP across and within the node). Once the traffic stopped and the daemon
//! exported the flows' ends, `nfdump` must list every pod flow of netpath's own flow table with
//! exactly its packets and bytes (the records' deltas summed), on the same interface and direction,
//! with the pod addresses, ports and protocol; nfcapd must have seen no sequence error. nfdump
//! does not decode the VNI (`layer2SegmentId`) nor enterprise elements, so tshark's IPFIX
//! dissector, reading the same datagrams off loopback, must show the VNI and the underlay
//! addresses of the VXLAN flows on `ul0`. A second daemon exporting to a port nobody listens on
//! counts refused sends and keeps answering its API.
use std::{
    collections::BTreeMap,
    net::UdpSocket,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use netpath_lab::TrafficOpts;
use netpath_tests::{proc::Proc, *};

const NFCAPD: &str = "/usr/bin/nfcapd";
const NFDUMP: &str = "/usr/bin/nfdump";
const TSHARK: &str = "/usr/bin/tshark";

/// A loopback UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// (interface index, direction, src, dst, proto, sport, dport): how both sides are summed. ICMP
/// carries no ports (netpath keys echo flows by identifier, IPFIX has no element for it).
type Key = (u32, String, String, String, u8, u16, u16);

fn proto_number(name: &str) -> u8 {
    match name {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        n => n.parse().unwrap_or(0),
    }
}

/// nfdump's CSV (`-o csv`): a header line naming the columns, then records, then a summary (or
/// `No matching flows`), which has other columns.
fn nfdump_records(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let out = Command::new(NFDUMP)
        .args(["-R", &dir.display().to_string(), "-o", "csv"])
        .output()
        .expect("run nfdump");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "nfdump: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    assert!(
        header.iter().any(|h| h == "ipkt"),
        "nfdump printed no CSV header: {text}"
    );
    lines
        .take_while(|l| l.split(',').count() == header.len())
        .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
        .collect()
}

fn num(r: &BTreeMap<String, String>, col: &str) -> u64 {
    r.get(col)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("nfdump column {col} in {r:?}"))
}

#[test]
fn nfdump_reads_netpath_ipfix_with_the_flow_tables_counts() {
    require_root();
    for bin in [NFCAPD, NFDUMP, TSHARK] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: this test runs a real IPFIX collector (Debian packages nfdump, tshark)"
        );
    }
    let lab = LabGuard::up("npx");
    let node1 = lab.0.node_ns(1);
    let pods = lab.0.pods();
    let pod_ips: Vec<String> = pods.iter().map(|p| p.ip.to_string()).collect();

    let flows_dir = TempDir::new();
    let port = free_udp_port();
    let port_s = port.to_string();
    let mut nfcapd_cmd = Command::new(NFCAPD);
    nfcapd_cmd.args([
        "-b",
        "127.0.0.1",
        "-p",
        &port_s,
        "-w",
        &flows_dir.0.display().to_string(),
        "-t",
        "3600",
    ]);
    let nfcapd = Proc::spawn("nfcapd", nfcapd_cmd, "Startup nfcapd");
    let capture_dir = TempDir::new();
    let pcap = capture_dir.0.join("ipfix.pcapng");
    let mut tshark_cmd = Command::new(TSHARK);
    tshark_cmd.args([
        "-i",
        "lo",
        "-f",
        &format!("udp dst port {port}"),
        "-w",
        &pcap.display().to_string(),
    ]);
    let tshark = Proc::spawn("tshark", tshark_cmd, "Capturing on");

    let pins = PinDir::new();
    let collector = format!("127.0.0.1:{port}");
    let metrics = free_local_addr();
    let mut args = vec![
        "--metrics",
        &metrics,
        "--netns",
        &node1,
        "--iface",
        "cni0",
        "--iface",
        "ul0:xdp",
        "--ipfix",
        &collector,
        "--ipfix-interval",
        "2s",
        "--ipfix-idle-timeout",
        "2s",
        "--ipfix-template-interval",
        "3s",
    ];
    args.extend(pins.args());
    // cni0, its three pod veths and ul0.
    let daemon = Daemon::start_expecting(&args, 5);

    let traffic = lab.0.drive_traffic(&TrafficOpts { seconds: 8 }).expect("drive traffic");
    eprintln!("ipfix test: traffic {traffic:?}");
    assert!(
        traffic.ping_same_node_ok && traffic.ping_cross_node_ok,
        "pings failed: {traffic:?}"
    );
    // A flow longer than the active timeout: reported in several records, which must add up.
    let (a1, a2) = (
        pods.iter().find(|p| p.name == "n1-pod-a").expect("n1-pod-a"),
        pods.iter().find(|p| p.name == "n2-pod-a").expect("n2-pod-a"),
    );
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a1.netns, "ping", "-n", "-q", "-c", "25", "-i", "0.2", "-W", "1",
        ])
        .arg(a2.ip.to_string())
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "ping a1 -> a2: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The traffic stopped: every pod flow goes idle and its last delta is exported within the
    // idle timeout and a tick; then the daemon stops (exporting whatever is left).
    std::thread::sleep(Duration::from_secs(4));
    let status = netpath_json(&["status", "--pin-dir", pins.arg(), "--socket", pins.sock()]);
    eprintln!("ipfix test: exporter status {:#}", status["daemon"]["ipfix"]);
    // The exporter's health as Prometheus reads it: this collector's records, no failed send.
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{metrics}/metrics")])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in the exposition:\n{text}"))
    };
    let records = value(&format!(r#"netpath_ipfix_records_total{{collector="{collector}"}}"#));
    assert!(records > 0.0, "{text}");
    for kind in ["refused", "unreachable", "would_block", "other"] {
        let errors = value(&format!(
            r#"netpath_ipfix_send_errors_total{{collector="{collector}",kind="{kind}"}}"#
        ));
        assert_eq!(errors, 0.0, "{kind}");
    }
    let st = daemon.stop();
    assert!(st.success(), "netpath run exited {st}");
    let (_, tshark_log) = tshark.stop();
    let (_, nfcapd_log) = nfcapd.stop();
    let seq = nfcapd_log
        .lines()
        .find(|l| l.contains("Sequence Errors"))
        .unwrap_or_else(|| panic!("nfcapd printed no summary: {nfcapd_log}"));
    assert!(seq.contains("Sequence Errors: 0"), "nfcapd: {seq}");
    assert!(tshark_log.contains("Capturing on"), "{tshark_log}");

    // netpath's own flow table (from the pins: the daemon is gone, the counts are final).
    let flows = netpath_json(&["flows", "--pin-dir", pins.arg(), "--netns", &node1]);
    let mut want: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    let mut ifaces: BTreeMap<u32, String> = BTreeMap::new();
    for f in flows.as_array().expect("flow rows") {
        let (src, dst) = (f["src"].as_str().unwrap_or(""), f["dst"].as_str().unwrap_or(""));
        if f["family"] != "ipv4" || !pod_ips.iter().any(|p| p == src) || !pod_ips.iter().any(|p| p == dst) {
            continue;
        }
        let proto = proto_number(f["proto"].as_str().unwrap_or(""));
        let ports = proto != 1;
        let port = |k: &str| if ports { f[k].as_u64().unwrap_or(0) as u16 } else { 0 };
        let ifindex = f["ifindex"].as_u64().unwrap() as u32;
        ifaces.insert(ifindex, f["iface"].as_str().unwrap_or("").to_string());
        let key = (
            ifindex,
            f["direction"].as_str().unwrap().to_string(),
            src.to_string(),
            dst.to_string(),
            proto,
            port("sport"),
            port("dport"),
        );
        let e = want.entry(key).or_default();
        e.0 += f["packets"].as_u64().unwrap();
        e.1 += f["bytes"].as_u64().unwrap();
    }
    assert!(want.len() >= 6, "too few pod flows in netpath's table: {flows:#}");

    // What nfdump decoded, summed the same way.
    let records = nfdump_records(&flows_dir.0);
    let mut got: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    let mut records_of: BTreeMap<Key, usize> = BTreeMap::new();
    for r in &records {
        let (sa, da) = (r["sa"].clone(), r["da"].clone());
        if !pod_ips.contains(&sa) || !pod_ips.contains(&da) {
            continue;
        }
        // nfdump names the protocols it knows (ICMP, TCP, UDP).
        let proto = proto_number(&r["pr"].trim().to_ascii_lowercase());
        let (input, output) = (num(r, "in") as u32, num(r, "out") as u32);
        let (ifindex, direction) = if input != 0 {
            (input, "ingress")
        } else {
            (output, "egress")
        };
        let ports = proto != 1;
        let key = (
            ifindex,
            direction.to_string(),
            sa,
            da,
            proto,
            if ports { num(r, "sp") as u16 } else { 0 },
            if ports { num(r, "dp") as u16 } else { 0 },
        );
        *records_of.entry(key.clone()).or_default() += 1;
        let e = got.entry(key).or_default();
        e.0 += num(r, "ipkt");
        e.1 += num(r, "ibyt");
    }
    let mut problems = Vec::new();
    for (k, w) in &want {
        match got.get(k) {
            Some(g) if g == w => {}
            Some(g) => problems.push(format!("{k:?} on {}: netpath {w:?}, nfdump {g:?}", ifaces[&k.0])),
            None => problems.push(format!("{k:?} on {}: netpath {w:?}, not in nfdump", ifaces[&k.0])),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("{k:?}: in nfdump {:?}, not in netpath's flow table", got[k]));
    }
    let packets: u64 = want.values().map(|v| v.0).sum();
    eprintln!(
        "ipfix test: {} nfdump records, {} pod flows ({packets} packets) compared, {} equal",
        records.len(),
        want.len(),
        want.len() - problems.len().min(want.len())
    );
    assert!(
        problems.is_empty(),
        "nfdump and netpath disagree:\n  {}",
        problems.join("\n  ")
    );
    let split = records_of.values().filter(|n| **n > 1).count();
    eprintln!("ipfix test: {split} flows were exported in several records (active timeout)");
    assert!(split > 0, "no flow outlived the active timeout: {records_of:?}");

    // The VXLAN flows on the underlay: tshark decodes the VNI (layer2SegmentId: segment type 1,
    // VxLAN, in the top octet) and shows netpath's enterprise elements 3 and 4 (the underlay
    // source and destination) as bytes.
    let out = Command::new(TSHARK)
        .args([
            "-r",
            &pcap.display().to_string(),
            "-d",
            &format!("udp.port=={port},cflow"),
            "-V",
        ])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let decoded = tshark_flows(&String::from_utf8_lossy(&out.stdout));
    let mut vxlan = 0;
    for f in flows.as_array().unwrap() {
        let (Some(outer_src), Some(outer_dst)) = (f["outer_src"].as_str(), f["outer_dst"].as_str()) else {
            continue;
        };
        if f["family"] != "ipv4" || f["packets"].as_u64() == Some(0) {
            continue;
        }
        let hex = |a: &str| {
            a.parse::<std::net::Ipv4Addr>()
                .unwrap()
                .octets()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let vni = f["vni"].as_u64().unwrap();
        let want = (
            f["src"].as_str().unwrap().to_string(),
            f["dst"].as_str().unwrap().to_string(),
            ((1u64 << 56) | vni).to_string(),
            hex(outer_src),
            hex(outer_dst),
            f["iface"].as_str().unwrap().to_string(),
        );
        assert!(
            decoded.contains(&want),
            "VXLAN flow {want:?} (vni {vni}) not in tshark's decoding: {decoded:#?}"
        );
        vxlan += 1;
    }
    eprintln!("ipfix test: {vxlan} VXLAN flows with their VNI and underlay addresses in tshark");
    assert!(vxlan >= 2, "too few VXLAN flows: {flows:#}");
}

/// The flow records of tshark's `-V` dissection: (src, dst, layer2SegmentId, netpath element 3
/// and 4 as hex bytes, interface name) of those that carry a segment id.
fn tshark_flows(text: &str) -> Vec<(String, String, String, String, String, String)> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<&str, String> = BTreeMap::new();
    let mut flush = |cur: &mut BTreeMap<&str, String>| {
        if let (Some(s), Some(d), Some(l2), Some(u3), Some(u4), Some(i)) = (
            cur.get("src"),
            cur.get("dst"),
            cur.get("l2"),
            cur.get("e3"),
            cur.get("e4"),
            cur.get("if"),
        ) {
            out.push((s.clone(), d.clone(), l2.clone(), u3.clone(), u4.clone(), i.clone()));
        }
        cur.clear();
    };
    for l in text.lines().map(str::trim) {
        let value = |prefix: &str| l.strip_prefix(prefix).map(|v| v.trim().to_string());
        // `Flow 3` starts a record (not `Flow End Reason: ...`), `Frame 5` a datagram.
        let numbered = |p: &str| {
            l.strip_prefix(p).is_some_and(|n| {
                n.split(':')
                    .next()
                    .is_some_and(|n| n.trim().chars().all(|c| c.is_ascii_digit()))
            })
        };
        if numbered("Flow ") || l.starts_with("Frame ") {
            flush(&mut cur);
        } else if let Some(v) = value("SrcAddr:") {
            cur.insert("src", v);
        } else if let Some(v) = value("DstAddr:") {
            cur.insert("dst", v);
        } else if let Some(v) = value("Layer2 Segment Id:") {
            cur.insert("l2", v);
        } else if let Some(v) = value("IfName:") {
            cur.insert("if", v);
        } else if l.starts_with("Enterprise Private entry:") {
            for (ty, key) in [("Type 3:", "e3"), ("Type 4:", "e4")] {
                if let Some((_, v)) = l.split_once(ty) {
                    let hex = v.split_once("(hex bytes):").map_or("", |x| x.1).trim();
                    cur.insert(key, hex.to_string());
                }
            }
        }
    }
    flush(&mut cur);
    out
}

/// A collector nobody listens on: every send is refused (ICMP port unreachable on loopback), the
/// daemon counts it by kind and goes on answering its API at once; the sequence of data records
/// still advances for the records it tried to send.
#[test]
fn unreachable_collector_counts_errors_and_blocks_nothing() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let dead = format!("127.0.0.1:{}", free_udp_port());
    let d = Daemon::on_veth_a(
        &pair,
        &pins,
        &[
            "--ipfix",
            &dead,
            "--ipfix-interval",
            "1s",
            "--ipfix-idle-timeout",
            "1s",
            "--ipfix-template-interval",
            "1s",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let collector = loop {
        pair.ping_from_a(2);
        let started = Instant::now();
        let status = netpath_json(&["status", "--socket", pins.sock()]);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "status took {took:?} while the export fails"
        );
        let c = status["daemon"]["ipfix"]["collectors"][0].clone();
        assert_eq!(c["address"], dead.as_str(), "{status:#}");
        let refused = c["errors"]["refused"].as_u64().unwrap_or(0);
        if refused >= 3 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no refused sends counted within 15 s: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("ipfix test: dead collector {collector}");
    // A connected UDP socket hears of the port unreachable on its next send: about every other
    // message is refused (the one in between leaves, and is lost at the closed port).
    let (sent, refused) = (
        collector["messages"].as_u64().unwrap(),
        collector["errors"]["refused"].as_u64().unwrap(),
    );
    assert!(refused + 1 >= sent, "sent {sent}, refused only {refused}: {collector}");
    assert!(
        collector["last_error"].as_str().unwrap_or("").contains("refused"),
        "{collector}"
    );
    let flows = netpath_json(&["flows", "--socket", pins.sock()]);
    assert!(
        flows.as_array().is_some_and(|f| !f.is_empty()),
        "the datapath counted nothing: {flows:#}"
    );
    let st = d.stop();
    assert!(st.success(), "netpath run exited {st}");
}

/// `--ipfix` values that are not HOST:PORT or have port 0: exit 2, nothing
/// attached, the message naming the value.
#[test]
fn bad_ipfix_addresses_exit_2() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    for bad in ["127.0.0.1", "127.0.0.1:0", "collector", "1.2.3.4:99999", "[::1]"] {
        let out = Command::new(netpath_bin())
            .args([
                "run",
                "--netns",
                &pair.a.name,
                "--iface",
                "veth-a",
                "--metrics",
                "none",
                "--ipfix",
                bad,
            ])
            .args(pins.args())
            .args(["--duration", "1s"])
            .output()
            .expect("run netpath");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--ipfix {bad}: {err}");
        assert!(err.contains(bad) && err.contains("--ipfix"), "--ipfix {bad}: {err}");
        assert!(!err.contains("attached to"), "{err}");
    }
}

/// A pod goes away while its flows run: their last packets leave with the interface's final counts
/// (`forced end`), not lost as vanished. The veth is removed before any timeout exported them, so
/// nfdump's records must add up to what the flow table had counted on it.
#[test]
fn flows_of_a_removed_interface_are_exported_from_their_final_counts() {
    require_root();
    for bin in [NFCAPD, NFDUMP] {
        assert!(Path::new(bin).exists(), "{bin} is missing (Debian package nfdump)");
    }
    let pair = Pair::new();
    let pins = PinDir::new();
    let flows_dir = TempDir::new();
    let port = free_udp_port().to_string();
    let mut cmd = Command::new(NFCAPD);
    cmd.args([
        "-b",
        "127.0.0.1",
        "-p",
        &port,
        "-w",
        &flows_dir.0.display().to_string(),
        "-t",
        "3600",
    ]);
    let nfcapd = Proc::spawn("nfcapd", cmd, "Startup nfcapd");
    let collector = format!("127.0.0.1:{port}");
    let d = Daemon::on_veth_a(
        &pair,
        &pins,
        &[
            "--ipfix",
            &collector,
            "--ipfix-interval",
            "8s",
            "--ipfix-idle-timeout",
            "8s",
        ],
    );
    pair.ping_from_a(5);
    let flows = netpath_json(&["flows", "--socket", pins.sock()]);
    let counted: (u64, u64) = flows
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["family"] == "ipv4")
        .fold((0, 0), |(p, b), f| {
            (p + f["packets"].as_u64().unwrap(), b + f["bytes"].as_u64().unwrap())
        });
    assert_eq!(counted.0, 10, "5 echo requests and 5 replies on veth-a: {flows:#}");
    pair.a.ip(&["link", "del", "veth-a"]);
    assert!(
        d.wait_for_line(&["veth-a", "removed"], Duration::from_secs(10))
            .is_some(),
        "the daemon did not see veth-a go"
    );
    // The next round (every 2 s with these timeouts) exports them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = netpath_json(&["status", "--socket", pins.sock()]);
        let x = &status["daemon"]["ipfix"];
        if x["flows_exported"].as_u64() >= Some(2) {
            assert_eq!(x["flows_vanished"], 0, "{x:#}");
            break;
        }
        assert!(Instant::now() < deadline, "the removed flows were not exported: {x:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let st = d.stop();
    assert!(st.success(), "netpath run exited {st}");
    let (_, log) = nfcapd.stop();
    assert!(log.contains("Sequence Errors: 0"), "{log}");
    let records = nfdump_records(&flows_dir.0);
    let exported = records
        .iter()
        .filter(|r| r["sa"].starts_with("10.77.0."))
        .fold((0, 0), |(p, b), r| (p + num(r, "ipkt"), b + num(r, "ibyt")));
    eprintln!("ipfix test: removed interface: counted {counted:?}, exported {exported:?}");
    assert_eq!(exported, counted, "{records:#?}");
}
