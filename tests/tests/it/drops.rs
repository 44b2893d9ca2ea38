//! Drops: where and why the kernel dropped packets, with the reason it gives. A router namespace
//! between a client and a server stages each drop the issue names; the daemon observes the router
//! and the tracer sees the whole node. Every reason asserted is one this kernel's BTF names.
use std::time::{Duration, Instant};

use netpath::node::btf::KernelBtf;
use netpath_tests::*;
use serde_json::Value;

const CLIENT: &str = "10.80.1.2";
const ROUTER_C: &str = "10.80.1.1";
const SERVER: &str = "10.80.2.2";

/// client `c0` 10.80.1.2/24 <-> `rc` 10.80.1.1/24 router `rs` 10.80.2.1/24 <-> `s0` 10.80.2.2/24
/// server; the router forwards, the others route through it. No IPv6 on the links (its multicast
/// chatter would add drops of its own).
struct Routed {
    client: Netns,
    router: Netns,
    server: Netns,
}

impl Routed {
    fn new() -> Routed {
        let (client, router, server) = (Netns::new("npdc"), Netns::new("npdr"), Netns::new("npds"));
        client.ip(&[
            "link",
            "add",
            "c0",
            "type",
            "veth",
            "peer",
            "name",
            "rc",
            "netns",
            &router.name,
        ]);
        server.ip(&[
            "link",
            "add",
            "s0",
            "type",
            "veth",
            "peer",
            "name",
            "rs",
            "netns",
            &router.name,
        ]);
        for (ns, dev, addr) in [
            (&client, "c0", "10.80.1.2/24"),
            (&router, "rc", "10.80.1.1/24"),
            (&router, "rs", "10.80.2.1/24"),
            (&server, "s0", "10.80.2.2/24"),
        ] {
            let _ = ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
            ns.ip(&["addr", "add", addr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        client.ip(&["route", "add", "default", "via", ROUTER_C]);
        server.ip(&["route", "add", "default", "via", "10.80.2.1"]);
        sysctl(&router, "net.ipv4.ip_forward=1");
        Routed { client, router, server }
    }

    /// A UDP datagram from the client (bash's /dev/udp: no listener needed, nothing waits).
    fn udp_from_client(&self, dst: &str, port: u16, count: u32) {
        for _ in 0..count {
            let out = self
                .client
                .exec(&["bash", "-c", &format!("echo x > /dev/udp/{dst}/{port}")]);
            assert!(
                out.status.success(),
                "udp send: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn ping_from_client(&self, args: &[&str]) {
        // Drops are the point: a ping that gets no answer is expected.
        let mut v = vec!["ping", "-c", "1", "-W", "1"];
        v.extend_from_slice(args);
        let _ = self.client.exec(&v);
    }
}

fn sysctl(ns: &Netns, kv: &str) {
    let out = ns.exec(&["sysctl", "-qw", kv]);
    assert!(
        out.status.success(),
        "sysctl {kv}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The reasons among `candidates` that this kernel's `enum skb_drop_reason` has (at least one).
fn reasons_here(candidates: &[&str]) -> Vec<String> {
    let reasons = KernelBtf::load().expect("kernel BTF").drop_reasons();
    let v: Vec<String> = candidates
        .iter()
        .filter(|c| reasons.parse(c).is_ok())
        .map(|c| c.to_string())
        .collect();
    assert!(!v.is_empty(), "this kernel names none of {candidates:?}");
    v
}

fn drops_json(sock: &str, extra: &[&str]) -> Value {
    let mut v = vec!["drops", "--socket", sock];
    v.extend_from_slice(extra);
    netpath_json(&v)
}

/// Poll `netpath drops` until a row satisfies `pred` (bounded).
fn wait_row(sock: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = drops_json(sock, &[]);
        if let Some(r) = rows.as_array().unwrap().iter().find(|r| pred(r)) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no {what} row within 10 s; rows: {rows:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is(e: &Value, reason: &str, iface: &str) -> bool {
    e["kind"] == "drop" && e["reason"] == reason && e["iface"] == iface
}

fn flow_is(e: &Value, src: &str, dst: &str) -> bool {
    e["src"] == src && e["dst"] == dst
}

#[test]
fn the_kernels_reasons_for_a_routers_drops() {
    require_root();
    let net = Routed::new();
    let pins = PinDir::new();
    let router = net.router.name.clone();
    let mut args = vec!["--netns", router.as_str(), "--iface", "rc", "--iface", "rs"];
    args.extend(pins.args());
    let d = Daemon::start(&args);
    assert!(
        d.wait_for_line(&["drop tracer on", "kfree_skb"], Duration::from_secs(10))
            .is_some(),
        "the drop tracer did not start"
    );
    let w = Watch::start(pins.sock(), &["--kind", "drop"]);
    let t = Duration::from_secs(10);

    // iptables FORWARD DROP: NETFILTER_DROP on the router's interface toward the client.
    let ipt = |args: &[&str]| {
        let mut v = vec!["iptables"];
        v.extend_from_slice(args);
        let out = net.router.exec(&v);
        assert!(
            out.status.success(),
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ipt(&["-A", "FORWARD", "-p", "udp", "--dport", "5001", "-j", "DROP"]);
    net.udp_from_client(SERVER, 5001, 3);
    let e = w.wait_for("NETFILTER_DROP", t, |e| {
        is(e, "NETFILTER_DROP", "rc") && flow_is(e, CLIENT, SERVER) && e["dport"] == 5001
    });
    assert_eq!(e["direction"], "ingress");
    assert_eq!(e["netns"], router.as_str());
    assert!(e["location"].as_str().unwrap().contains('+'), "a symbol: {e}");
    ipt(&["-D", "FORWARD", "-p", "udp", "--dport", "5001", "-j", "DROP"]);

    // Strict rp_filter, and a source the router routes toward the server: IP_RPFILTER.
    sysctl(&net.router, "net.ipv4.conf.all.rp_filter=1");
    sysctl(&net.router, "net.ipv4.conf.rc.rp_filter=1");
    net.client.ip(&["addr", "add", "10.80.2.50/32", "dev", "c0"]);
    net.ping_from_client(&["-I", "10.80.2.50", SERVER]);
    w.wait_for("IP_RPFILTER", t, |e| {
        is(e, "IP_RPFILTER", "rc") && flow_is(e, "10.80.2.50", SERVER)
    });
    // The doctor joins the setting with what it cost: strict rp_filter with IP_RPFILTER drops on
    // that interface is a failure, with the fix.
    let out = netpath(&[
        "doctor",
        "--netns",
        &router,
        "--socket",
        pins.sock(),
        "--pin-dir",
        pins.arg(),
        "--check",
        "rp_filter",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rc = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subject"] == "rc")
        .unwrap_or_else(|| panic!("{findings:#}"));
    assert_eq!(rc["status"], "fail", "{rc}");
    assert!(
        rc["evidence"]
            .as_str()
            .unwrap()
            .contains("dropped with reason IP_RPFILTER on rc"),
        "{rc}"
    );
    assert_eq!(rc["fix"], "sysctl -w net.ipv4.conf.rc.rp_filter=2");
    sysctl(&net.router, "net.ipv4.conf.all.rp_filter=0");
    sysctl(&net.router, "net.ipv4.conf.rc.rp_filter=0");

    // No route to the destination.
    let noroute = reasons_here(&["IP_INNOROUTES", "IP_NOROUTE", "IP_OUTNOROUTES"]);
    net.ping_from_client(&["10.80.9.9"]);
    w.wait_for("no-route", t, |e| {
        noroute.iter().any(|r| is(e, r, "rc")) && flow_is(e, CLIENT, "10.80.9.9")
    });

    // TTL 1 through the router.
    let ttl = reasons_here(&["IP_INHDR", "IP_INADDRERRORS"]);
    net.ping_from_client(&["-t", "1", SERVER]);
    w.wait_for("TTL", t, |e| {
        ttl.iter().any(|r| is(e, r, "rc")) && flow_is(e, CLIENT, SERVER)
    });

    // A next hop that never answers ARP: the queued packets die when resolution fails.
    let neigh = reasons_here(&["NEIGH_FAILED", "NEIGH_QUEUEFULL"]);
    net.router
        .ip(&["route", "add", "10.80.3.0/24", "via", "10.80.2.99", "dev", "rs"]);
    for kv in [
        "mcast_solicit=1",
        "retrans_time_ms=100",
        "app_solicit=0",
        "ucast_solicit=0",
    ] {
        sysctl(&net.router, &format!("net.ipv4.neigh.rs.{kv}"));
    }
    net.udp_from_client("10.80.3.3", 5000, 3);
    let e = w.wait_for("neighbour", t, |e| {
        neigh.iter().any(|r| is(e, r, "rs")) && flow_is(e, CLIENT, "10.80.3.3")
    });
    assert_eq!(e["direction"], "egress", "{e}");

    // UDP to a closed port on the server (a pod behind the router's rs): NO_SOCKET inside it,
    // and on the flow the router saw leave toward it. A watch of drops takes the server's own
    // interface, which the daemon does not observe.
    let in_server = Watch::start(pins.sock(), &["--kind", "drop", "--iface", "s0"]);
    net.udp_from_client(SERVER, 9, 2);
    in_server.wait_for("NO_SOCKET on s0", t, |e| is(e, "NO_SOCKET", "s0"));
    assert!(
        in_server.events.lock().unwrap().iter().all(|e| e["iface"] == "s0"),
        "only s0's drops"
    );
    let bad = netpath(&["watch", "--socket", pins.sock(), "--kind", "drop", "--iface", "nope0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let e = w.wait_for("NO_SOCKET", t, |e| {
        is(e, "NO_SOCKET", "s0") && flow_is(e, CLIENT, SERVER) && e["dport"] == 9
    });
    assert_eq!(e["netns"], net.server.name.as_str(), "{e}");
    assert_eq!(e["pod"], net.server.name.as_str(), "{e}");
    let flows = netpath_json(&["flows", "--socket", pins.sock()]);
    let f = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["iface"] == "rs" && f["direction"] == "egress" && f["dport"] == 9)
        .unwrap_or_else(|| panic!("no flow to port 9 on rs egress: {flows:#}"));
    assert!(f["drop_packets"].as_u64().unwrap() >= 1, "{f}");
    assert_eq!(f["drop_reason"], "NO_SOCKET", "{f}");

    // A frame to another host's MAC: the router's stack refuses it (OTHERHOST).
    net.client.ip(&[
        "neigh",
        "replace",
        ROUTER_C,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "c0",
        "nud",
        "permanent",
    ]);
    net.udp_from_client(SERVER, 5002, 2);
    w.wait_for("OTHERHOST", t, |e| {
        is(e, "OTHERHOST", "rc") && flow_is(e, CLIENT, SERVER) && e["dport"] == 5002
    });
    net.client.ip(&["neigh", "del", ROUTER_C, "dev", "c0"]);

    // The table: heaviest first, one row per site, and filters that check their input.
    let r = wait_row(pins.sock(), "NETFILTER_DROP", |r| r["reason"] == "NETFILTER_DROP");
    assert_eq!(r["iface"], "rc");
    assert_eq!(r["netns"], router.as_str());
    assert_eq!(r["subsystem"], "core");
    assert!(
        r["packets"].as_u64().unwrap() >= 3 && r["bytes"].as_u64().unwrap() >= 3 * 42,
        "{r}"
    );
    let rows = drops_json(pins.sock(), &[]);
    let packets: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets"].as_u64().unwrap())
        .collect();
    assert!(packets.windows(2).all(|w| w[0] >= w[1]), "heaviest first: {packets:?}");
    for want in ["NETFILTER_DROP", "IP_RPFILTER", "NO_SOCKET", "OTHERHOST"] {
        assert!(
            rows.as_array().unwrap().iter().any(|r| r["reason"] == want),
            "no {want} row: {rows:#}"
        );
    }
    let only = drops_json(pins.sock(), &["--reason", "netfilter_drop"]);
    assert!(
        !only.as_array().unwrap().is_empty()
            && only.as_array().unwrap().iter().all(|r| r["reason"] == "NETFILTER_DROP"),
        "{only:#}"
    );
    let in_pod = drops_json(pins.sock(), &["--pod", &net.server.name]);
    assert!(
        in_pod.as_array().unwrap().iter().any(|r| r["reason"] == "NO_SOCKET"),
        "{in_pod:#}"
    );
    for (bad, says) in [
        (vec!["--reason", "NETFILTER"], "NETFILTER_DROP"),
        (vec!["--iface", "nope0"], "nope0"),
        (vec!["--pod", "nopod"], "nopod"),
    ] {
        let mut v = vec!["drops", "--socket", pins.sock()];
        v.extend(bad.iter());
        let out = netpath(&v);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?} should name {says}: {err}");
    }
    let status = netpath(&["status", "--socket", pins.sock()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("drop tracer: on"));
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    let counted = status["drops"]["counted"].as_u64().unwrap();
    let in_rows: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert!(
        counted >= in_rows && in_rows > 0,
        "status counts every drop the rows show: {status:#}"
    );
    assert_eq!(status["drops"]["table_full"], 0);
    drop((w, in_server));
    d.stop();
    // The counters are pinned: after the daemon, `netpath drops` reads them from the pins.
    let after = netpath_json(&["drops", "--pin-dir", pins.arg(), "--socket", "none"]);
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "NETFILTER_DROP" && r["iface"] == "rc"),
        "{after:#}"
    );
}

#[test]
fn a_rule_drop_is_netpath_rule_counted_once() {
    rule_drop_counted_once("veth-a");
}

/// In generic XDP the kernel frees the dropped skb too (reason XDP): still counted once.
#[test]
fn a_rule_drop_in_generic_xdp_is_counted_once() {
    rule_drop_counted_once("veth-a:xdp-generic");
}

/// A netpath `--drop` rule on `iface` (veth-a, in a hook mode) drops 3 echo requests: they are
/// counted as NETPATH_RULE with the rule's id, on the flow, in the exporter, and nowhere else.
fn rule_drop_counted_once(iface: &str) {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let metrics = free_local_addr();
    let mut args = vec!["--netns", pair.a.name.as_str(), "--iface", iface, "--metrics", &metrics];
    args.extend(pins.args());
    let d = Daemon::start(&args);
    assert!(d.wait_for_line(&["drop tracer on"], Duration::from_secs(10)).is_some());
    let out = netpath(&[
        "rule",
        "--socket",
        pins.sock(),
        "add",
        "--class",
        "icmp",
        "--drop",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rule: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = rule[0]["id"].as_u64().unwrap();
    let w = Watch::start(pins.sock(), &["--kind", "drop"]);
    // From b: veth-a's ingress hook drops every echo request.
    let _ = pair.b.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", PAIR_A_IP]);
    let e = w.wait_for("NETPATH_RULE", Duration::from_secs(10), |e| {
        is(e, "NETPATH_RULE", "veth-a") && flow_is(e, PAIR_B_IP, PAIR_A_IP)
    });
    assert_eq!(e["location"], format!("rule {id}"));
    let rows = wait_row(pins.sock(), "NETPATH_RULE", |r| r["reason"] == "NETPATH_RULE");
    assert_eq!(rows["packets"], 3, "{rows}");
    assert_eq!(rows["direction"], "ingress");
    assert_eq!(rows["subsystem"], "netpath");
    // The kernel's free of each frame netpath dropped (TC_INGRESS, or XDP in generic mode) is
    // not counted again: the drops on veth-a are the rule's 3, and nothing in a's namespace else.
    let all = drops_json(pins.sock(), &[]);
    let on_a: u64 = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["iface"] == "veth-a" && r["netns"] == pair.a.name.as_str())
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(on_a, 3, "counted once, as NETPATH_RULE: {all:#}");
    let flows = netpath_json(&["flows", "--socket", pins.sock()]);
    let f = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["iface"] == "veth-a" && f["direction"] == "ingress" && f["proto"] == "icmp")
        .unwrap_or_else(|| panic!("{flows:#}"));
    assert_eq!(f["drop_packets"], 3, "{f}");
    assert_eq!(f["drop_reason"], "NETPATH_RULE");
    // The exporter: one series per reason and interface, the rows' count.
    let text = sh(&["curl", "-sf", &format!("http://{metrics}/metrics")]);
    let line = text
        .lines()
        .find(|l| l.starts_with("netpath_drops_total{") && l.contains("reason=\"NETPATH_RULE\""))
        .unwrap_or_else(|| panic!("no NETPATH_RULE series:\n{text}"));
    assert!(line.contains("iface=\"veth-a\"") && line.ends_with(" 3"), "{line}");
}

#[test]
fn drops_off_is_said_and_loads_no_tracer() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let _d = Daemon::on_veth_a(&pair, &pins, &["--drops", "off"]);
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    assert_eq!(status["daemon"]["drop_tracer"], "off (--drops off)", "{status:#}");
    let progs: Vec<&str> = status["daemon"]["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["program"].as_str())
        .collect();
    assert!(!progs.contains(&"netpath_drops"), "{progs:?}");
    let bad = netpath(&["run", "--iface", "x", "--drops", "maybe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither on nor off"));
}
