//! Integration tests: throwaway namespaces and veths, the real `netpath` binary attached with TC or
//! XDP, real traffic, asserted counters. Guards remove namespaces, pins and processes on panic.
use std::process::Command;

use netpath_tests::{proc::Proc, *};

fn netpath_progs_on(ns: &Netns, dev: &str) -> Vec<String> {
    attached_programs(ns, dev)
        .into_iter()
        .filter(|p| p.contains("netpath_"))
        .collect()
}

#[test]
fn netns_tc_counts_real_ping_exactly_and_detaches() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let d = Daemon::on_veth_a(&pair, &pins, &["--mode", "tc"]);
    assert_eq!(
        netpath_progs_on(&pair.a, "veth-a"),
        ["tcx-egress:netpath_tc_out", "tcx-ingress:netpath_tc_in"]
    );
    pair.ping_from_a(5);
    let rows = netpath_json(&[
        "stats",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--netns",
        &pair.a.name,
    ]);
    // Echo requests leave veth-a (egress), replies arrive (ingress); nothing else is ICMP here.
    assert_eq!(stat(&rows, "veth-a", "egress", "icmp", "packets"), 5, "{rows}");
    assert_eq!(stat(&rows, "veth-a", "ingress", "icmp", "packets"), 5, "{rows}");
    // 14 Ethernet + 20 IPv4 + 8 ICMP + 56 payload.
    assert_eq!(stat(&rows, "veth-a", "egress", "icmp", "bytes"), 5 * 98, "{rows}");
    assert!(stat(&rows, "veth-a", "egress", "arp", "packets") >= 1, "{rows}");
    let flows = netpath_json(&[
        "flows",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--netns",
        &pair.a.name,
        "--class",
        "icmp",
    ]);
    let f = flows.as_array().unwrap();
    assert!(
        f.iter().any(|r| r["src"] == PAIR_A_IP
            && r["dst"] == PAIR_B_IP
            && r["icmp_type"] == 8
            && r["packets"] == 5
            && r["direction"] == "egress"),
        "{flows}"
    );
    assert!(
        f.iter()
            .any(|r| r["src"] == PAIR_B_IP && r["icmp_type"] == 0 && r["packets"] == 5),
        "{flows}"
    );
    // The daemon picks the top N from the raw table: the heaviest flows, whatever else is there.
    let top = netpath_json(&["flows", "--socket", pins.sock(), "--top", "2", "--sort", "packets"]);
    let top = top.as_array().unwrap();
    assert_eq!(top.len(), 2, "{top:?}");
    assert!(top.iter().all(|r| r["proto"] == "icmp" && r["packets"] == 5), "{top:?}");
    let one = netpath_json(&["flows", "--socket", pins.sock(), "--top", "1", "--class", "arp"]);
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["proto"], "arp", "{one}");
    assert!(d.stop().success());
    assert_eq!(
        netpath_progs_on(&pair.a, "veth-a"),
        Vec::<String>::new(),
        "programs left attached after SIGINT"
    );
}

#[test]
fn netns_xdp_mode_counts_ingress_with_xdp_and_egress_with_tc() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let d = Daemon::start(&[
        "--netns",
        &pair.a.name,
        "--iface",
        "veth-a:xdp",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
    ]);
    assert_eq!(
        netpath_progs_on(&pair.a, "veth-a"),
        ["tcx-egress:netpath_tc_out", "xdp:netpath_xdp"]
    );
    pair.ping_from_a(3);
    let rows = netpath_json(&[
        "stats",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--netns",
        &pair.a.name,
    ]);
    assert_eq!(stat(&rows, "veth-a", "ingress", "icmp", "packets"), 3, "{rows}");
    assert_eq!(stat(&rows, "veth-a", "egress", "icmp", "packets"), 3, "{rows}");
    assert!(d.stop().success());
    assert_eq!(netpath_progs_on(&pair.a, "veth-a"), Vec::<String>::new());
}

#[test]
fn netns_counters_survive_a_restart() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    for round in 1..=2u64 {
        let d = Daemon::on_veth_a(&pair, &pins, &[]);
        pair.ping_from_a(3);
        assert!(d.stop().success());
        let rows = netpath_json(&[
            "stats",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
            "--netns",
            &pair.a.name,
        ]);
        assert_eq!(
            stat(&rows, "veth-a", "egress", "icmp", "packets"),
            3 * round,
            "round {round}: {rows}"
        );
    }
    let out = netpath(&["down", "--pin-dir", pins.arg()]);
    assert!(out.status.success());
    assert!(!pins.path.exists(), "down left {}", pins.path.display());
}

#[test]
fn netns_unknown_interface_is_exit_2_names_it_and_changes_nothing() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let out = netpath(&[
        "run",
        "--netns",
        &pair.a.name,
        "--iface",
        "veth-a",
        "--iface",
        "nope0",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--metrics",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'nope0' not found") && err.contains("veth-a") && err.contains("lo"),
        "{err}"
    );
    assert!(!pins.path.exists(), "bad input created pins");
    assert_eq!(
        netpath_progs_on(&pair.a, "veth-a"),
        Vec::<String>::new(),
        "bad input attached something"
    );
    let out = netpath(&[
        "run",
        "--netns",
        "no-such-ns-xyz",
        "--iface",
        "lo",
        "--metrics",
        "none",
        "--socket",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-ns-xyz"));
}

/// `NAME:MODE` with a mode that does not exist used to read as an interface name the kernel cut at
/// the ':' (so `cni0:bogusmode` resolved, matched nothing and ran attached to nothing).
#[test]
fn netns_unknown_iface_modes_are_exit_2_and_lone_globs_warn() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    for spec in ["veth-a:bogusmode", "veth-a:XDP"] {
        let out = netpath(&[
            "run",
            "--netns",
            &pair.a.name,
            "--iface",
            spec,
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
            "--metrics",
            "none",
            "--duration",
            "1s",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {err}");
        assert!(
            err.contains("unknown mode") && err.contains("tc, xdp, xdp-generic"),
            "{spec}: {err}"
        );
        assert!(!pins.path.exists(), "bad input created pins");
        assert!(netpath_progs_on(&pair.a, "veth-a").is_empty(), "bad input attached");
    }
    // A glob may match pods that come later: the daemon runs, and says so at start and in status.
    let d = Daemon::start_expecting(
        &[
            "--netns",
            &pair.a.name,
            "--iface",
            "nosuch*",
            "--iface",
            "veth-a",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
            "--quiet",
        ],
        0,
    );
    let warn = d
        .wait_for_line(&["matches no interface"], std::time::Duration::from_secs(20))
        .expect("no warning about the glob");
    assert!(warn.contains("'nosuch*'") && warn.contains("veth-a"), "{warn}");
    d.wait_for_line(&["attached to veth-a"], std::time::Duration::from_secs(20))
        .expect("veth-a not attached");
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    assert_eq!(
        status["daemon"]["unmatched_ifaces"],
        serde_json::json!(["nosuch*"]),
        "{status:#}"
    );
    let text = netpath(&["status", "--socket", pins.sock()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("warning: --iface 'nosuch*' matches no interface"),
        "{text}"
    );
    assert!(d.stop().success());
}

#[test]
fn netns_missing_privileges_are_named() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(netpath_bin())
        .args(["run", "--iface", "lo", "--no-pin"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(77), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("CAP_NET_ADMIN"), "{err}");
}

#[test]
fn netns_json_lines_every_interval() {
    require_root();
    let pair = Pair::new();
    let out = Command::new(netpath_bin())
        .args([
            "run",
            "--netns",
            &pair.a.name,
            "--iface",
            "veth-a",
            "--no-pin",
            "--socket",
            "none",
            "--metrics",
            "none",
            "-o",
            "json",
            "--interval",
            "200ms",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!((4..=7).contains(&lines.len()), "{} lines", lines.len());
    assert!(lines
        .iter()
        .all(|l| l["stats"].is_array() && l["time"].is_string() && l["flow_table"]["capacity"] == 65536));
}

/// `--ebpf-log info`: the datapath's own records (here a rule's drops) reach the daemon's log, and a
/// daemon without the flag loads programs that log nothing.
#[test]
fn netns_ebpf_log_reports_rule_actions_in_the_daemon_log() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let d = Daemon::start(&[
        "--netns",
        &pair.a.name,
        "--iface",
        "veth-a",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--mode",
        "tc",
        "--ebpf-log",
        "info",
    ]);
    let out = netpath(&[
        "rule",
        "--socket",
        pins.sock(),
        "add",
        "--iface",
        "veth-a",
        "--direction",
        "egress",
        "--class",
        "icmp",
        "--drop",
    ]);
    assert!(
        out.status.success(),
        "rule add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = pair.a.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", PAIR_B_IP]);
    assert!(!ping.status.success(), "the drop rule let pings through");
    // The datapath record, not the daemon's own "rule 1 added" line.
    let line = d.wait_for_line(&["drop: ifindex", "egress class"], std::time::Duration::from_secs(5));
    assert!(line.is_some(), "no datapath log record of the drop in the daemon's log");
    assert!(d.stop().success());
}

/// A frame sent on a packet socket with a virtio-net header whose `hdr_len` is 14 leaves with only
/// its Ethernet header in the skb's linear area and the rest in page fragments (packet_snd, for a
/// frame longer than a page): TC must pull the IPv4 and UDP headers in before it can parse them.
/// Every frame is counted UDP, none malformed, no pull fails, and the flow has its ports.
#[test]
fn netns_tc_parses_headers_in_the_paged_part_of_an_skb() {
    use netpath_common::craft::{eth, ipv4, udp};

    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    for (ns, dev) in [(&pair.a, "veth-a"), (&pair.b, "veth-b")] {
        ns.ip(&["link", "set", dev, "mtu", "9000"]);
    }
    let d = Daemon::on_veth_a(&pair, &pins, &["--quiet"]);
    const FRAMES: u64 = 5;
    // Longer than a page, so the packet socket builds a paged skb.
    let frame = eth(
        netpath_common::parse::ETH_P_IP,
        &ipv4([10, 79, 0, 1], [10, 79, 0, 2], 17, &udp(4242, 9999, &[0x5a; 5000])),
    );
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    // PACKET_VNET_HDR = 15; struct virtio_net_hdr: flags, gso_type (none), hdr_len = 14,
    // gso_size, csum_start, csum_offset.
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.setsockopt(263, 15, 1)\n\
         s.bind(('veth-a', 0))\n\
         f = bytes.fromhex('{hex}')\n\
         for _ in range({FRAMES}):\n    s.send(struct.pack('<BBHHHH', 0, 0, 14, 0, 0, 0) + f)\n"
    );
    let out = pair.a.exec(&["python3", "-c", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let socket = ["--socket", pins.sock(), "--netns", pair.a.name.as_str()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let rows = loop {
        let rows = netpath_json(&[&["stats"][..], &socket].concat());
        if stat(&rows, "veth-a", "egress", "udp", "packets") >= FRAMES || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(stat(&rows, "veth-a", "egress", "udp", "packets"), FRAMES, "{rows}");
    assert_eq!(stat(&rows, "veth-a", "egress", "malformed", "packets"), 0, "{rows}");
    let status = netpath_json(&[&["status"][..], &socket].concat());
    assert_eq!(status["pull_failed"], 0, "{status}");
    let flows = netpath_json(&[&["flows", "--class", "udp"][..], &socket].concat());
    assert!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["sport"] == 4242 && f["dport"] == 9999 && f["packets"] == FRAMES),
        "{flows}"
    );
    drop(d);
}

/// A TCP connection that closed (FIN seen) leaves the active flows: `flows --active` drops it,
/// `flows` marks it ended, and the status counts it among the table's entries but not as active;
/// a UDP flow still sending stays active.
#[test]
fn netns_ended_flows_leave_the_active_count() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let d = Daemon::on_veth_a(&pair, &pins, &["--quiet"]);
    // One TCP connection, opened, used and closed within the namespaces (bounded by timeouts).
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &pair.b.name, "timeout", "10", "python3", "-c"])
        .arg(format!(
            "import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{PAIR_B_IP}', 7070))\ns.listen(1)\nprint('listening', file=sys.stderr, flush=True)\n\
             c, _ = s.accept()\nc.recv(100)\nc.sendall(b'bye')\nc.close()\n"
        ));
    let _server = Proc::spawn("tcp server", cmd, "listening");
    let client = pair.a.exec(&[
        "timeout",
        "10",
        "python3",
        "-c",
        &format!(
            "import socket\nc = socket.create_connection(('{PAIR_B_IP}', 7070), timeout=5)\nc.sendall(b'hi')\nc.recv(100)\nc.close()\n"
        ),
    ]);
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    let socket = ["--socket", pins.sock(), "--netns", pair.a.name.as_str()];
    // The daemon counts active flows at its age scan (every 5 s); keep a UDP flow going meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        pair.a
            .exec(&["bash", "-c", &format!("echo x > /dev/udp/{PAIR_B_IP}/7071")]);
        let st = netpath_json(&[&["status"][..], &socket].concat());
        let ft = &st["flow_table"];
        if ft["active"].as_u64() < ft["entries"].as_u64() || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let ft = &status["flow_table"];
    assert!(ft["active"].as_u64() < ft["entries"].as_u64(), "{status}");
    let all = netpath_json(&[&["flows", "--class", "tcp"][..], &socket].concat());
    let tcp: Vec<&serde_json::Value> = all.as_array().unwrap().iter().collect();
    assert!(
        tcp.iter()
            .any(|f| f["active"] == false && f["tcp_flags"].as_str().unwrap_or("").contains('F')),
        "no ended TCP flow in {all}"
    );
    let active = netpath_json(&[&["flows", "--active"][..], &socket].concat());
    let rows = active.as_array().unwrap();
    assert!(
        rows.iter()
            .all(|f| f["active"] == true && !f["tcp_flags"].as_str().unwrap_or("").contains('F')),
        "{active}"
    );
    assert!(
        rows.iter().any(|f| f["proto"] == "udp" && f["dport"] == 7071),
        "the UDP flow still sending is active: {active}"
    );
    // After the daemon's own count (its age scan, every 5 s): the same answer.
    std::thread::sleep(std::time::Duration::from_secs(6));
    pair.a
        .exec(&["bash", "-c", &format!("echo x > /dev/udp/{PAIR_B_IP}/7071")]);
    let st = netpath_json(&[&["status"][..], &socket].concat());
    let ft = &st["flow_table"];
    assert!(
        ft["active"].as_u64() >= Some(1) && ft["active"].as_u64() < ft["entries"].as_u64(),
        "{st}"
    );
    drop(d);
}
