//! netpath's counters against an independent dissector. `tests/scripts/mkcapture.py` writes a mixed
//! capture (every class, VLAN/QinQ, VXLAN, IPv6 extension headers, fragments, malformed frames),
//! `tests/scripts/tshark_truth.py` derives the expected per-class and per-flow counts from tshark's
//! dissection of it (netpath's documented rules applied to tshark's fields), tcpreplay sends it from
//! the peer namespace into veth-a, and netpath's `stats` and `flows` for veth-a ingress must match
//! exactly: packets and bytes per class, and every flow (key, packets, bytes, TCP flags), no extra.
//!
//! Run once with TC (the kernel moves the outer VLAN tag into skb metadata before TC ingress and
//! netpath adds it back) and once with XDP (the tag is still in the frame): same numbers.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netpath_tests::*;
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const CLASSES: [&str; 9] = [
    "arp",
    "icmp",
    "icmp6",
    "tcp",
    "udp",
    "vxlan",
    "other_ip",
    "other_l2",
    "malformed",
];

/// A directory under the system temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("netpath-tshark-"));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// Write the capture into `dir` (or take the one named by NETPATH_TSHARK_PCAP, to check netpath
/// against any capture of whole Ethernet frames) and compute tshark's truth for it.
fn capture_and_truth(dir: &Path) -> (String, Value) {
    let pcap = match std::env::var("NETPATH_TSHARK_PCAP") {
        Ok(p) => p,
        Err(_) => {
            let p = dir.join("mixed.pcap").to_str().expect("utf-8 path").to_string();
            sh(&[PYTHON, &script("mkcapture.py"), &p]);
            p
        }
    };
    let truth: Value = serde_json::from_str(&sh(&[PYTHON, &script("tshark_truth.py"), &pcap])).expect("truth JSON");
    (pcap, truth)
}

/// The fields that identify a flow in `netpath flows -o json`, as one comparable string. Addresses
/// are re-formatted by std so both sides spell IPv6 the same way.
fn flow_key(r: &Value) -> String {
    let ip = |v: &Value| match v.as_str() {
        Some(s) => s
            .parse::<IpAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| s.to_string()),
        None => "-".to_string(),
    };
    let opt = |v: &Value| {
        if v.is_null() {
            "-".to_string()
        } else {
            v.to_string().trim_matches('"').to_string()
        }
    };
    format!(
        "{} {} > {} proto {} ports {}>{} icmp {}/{} vni {} vlan {} outer {} > {} arp {}",
        opt(&r["family"]),
        ip(&r["src"]),
        ip(&r["dst"]),
        opt(&r["proto"]),
        r["sport"],
        r["dport"],
        opt(&r["icmp_type"]),
        opt(&r["icmp_code"]),
        r["vni"],
        r["vlan"],
        ip(&r["outer_src"]),
        ip(&r["outer_dst"]),
        opt(&r["arp_op"]),
    )
}

#[derive(Debug, Default, Clone, PartialEq)]
struct FlowCount {
    packets: u64,
    bytes: u64,
    tcp_flags: String,
}

fn count(r: &Value) -> FlowCount {
    FlowCount {
        packets: r["packets"].as_u64().expect("packets"),
        bytes: r["bytes"].as_u64().expect("bytes"),
        tcp_flags: r["tcp_flags"].as_str().unwrap_or("").to_string(),
    }
}

fn ingress_packets(rows: &Value) -> u64 {
    CLASSES
        .iter()
        .map(|c| stat(rows, "veth-a", "ingress", c, "packets"))
        .sum()
}

/// Send the capture from namespace b into veth-b; every frame must leave.
fn replay(pair: &Pair, pcap: &str, frames: u64) {
    // A moderate rate: veth's XDP receive ring holds 256 frames and a noqueue veth drops when it
    // is full, which would turn a replay glitch into a counting "bug".
    let out = pair.b.exec(&["tcpreplay", "-i", "veth-b", "--pps", "4000", pcap]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tcpreplay failed: {text}");
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))?
            .split(':')
            .nth(1)?
            .trim()
            .parse()
            .ok()
    };
    assert_eq!(
        field("Successful packets"),
        Some(frames),
        "tcpreplay did not send every frame: {text}"
    );
    assert_eq!(field("Failed packets"), Some(0), "tcpreplay: {text}");
}

fn run(mode: &str) {
    require_root();
    let started = Instant::now();
    let tmp = TempDir::new();
    let (pcap, truth) = capture_and_truth(&tmp.0);
    let frames = truth["frames"].as_u64().expect("frames");
    assert!(frames > 0, "empty capture");

    let pair = Pair::new();
    // Some frames carry headers up to the 2048-byte parse window: longer than a 1500-byte MTU,
    // and within what native XDP on a veth accepts (a frame must fit one page).
    for (ns, dev) in [(&pair.a, "veth-a"), (&pair.b, "veth-b")] {
        ns.ip(&["link", "set", dev, "mtu", "3000"]);
    }
    // Nothing but the capture may reach veth-a: without addresses (and with IPv6 disabled by Pair)
    // neither kernel sends or answers anything on the link.
    for (ns, dev) in [(&pair.a, "veth-a"), (&pair.b, "veth-b")] {
        ns.ip(&["addr", "flush", "dev", dev]);
    }
    let pins = PinDir::new();
    let iface = if mode == "xdp" { "veth-a:xdp" } else { "veth-a" };
    // A private control socket: the default one admits a single daemon per host, and the readers
    // must not ask some other test's daemon.
    let socket = tmp.0.join("api.sock").to_str().expect("utf-8 path").to_string();
    let mut args = vec![
        "--netns",
        &pair.a.name,
        "--iface",
        iface,
        "--pin-dir",
        pins.arg(),
        "--socket",
        &socket,
    ];
    if mode == "tc" {
        args.extend(["--mode", "tc"]);
    }
    let daemon = Daemon::start(&args);
    let read = |what: &str| {
        netpath_json(&[
            what,
            "--pin-dir",
            pins.arg(),
            "--netns",
            &pair.a.name,
            "--socket",
            &socket,
        ])
    };
    let read_stats = || read("stats");
    let before = read_stats();
    assert_eq!(
        ingress_packets(&before),
        0,
        "veth-a ingress saw traffic before the replay: {before}"
    );

    replay(&pair, &pcap, frames);
    // Wait until every frame is counted, then a little longer so anything extra would show too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ingress_packets(&read_stats()) < frames && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = read_stats();
    let flows = read("flows");
    assert!(daemon.stop().success(), "netpath run did not exit cleanly");

    let mut problems = Vec::new();

    // ---- per class ----
    eprintln!(
        "\n[{mode}] {frames} frames replayed into veth-a; truth from {}",
        truth["tshark"].as_str().unwrap_or("tshark")
    );
    eprintln!(
        "[{mode}] {:<10} {:>8} {:>8} {:>9} {:>9}",
        "class", "tshark", "netpath", "tshark B", "netpath B"
    );
    for c in CLASSES {
        let (tp, tb) = (
            truth["classes"][c]["packets"].as_u64().unwrap_or(0),
            truth["classes"][c]["bytes"].as_u64().unwrap_or(0),
        );
        let (np, nb) = (
            stat(&stats, "veth-a", "ingress", c, "packets"),
            stat(&stats, "veth-a", "ingress", c, "bytes"),
        );
        let ok = tp == np && tb == nb;
        eprintln!(
            "[{mode}] {c:<10} {tp:>8} {np:>8} {tb:>9} {nb:>9} {}",
            if ok { "ok" } else { "MISMATCH" }
        );
        if !ok {
            problems.push(format!(
                "class {c}: tshark {tp} packets / {tb} bytes, netpath {np} / {nb}"
            ));
        }
    }
    let (tp, tb) = (frames, truth["bytes"].as_u64().unwrap_or(0));
    let np: u64 = ingress_packets(&stats);
    let nb: u64 = CLASSES
        .iter()
        .map(|c| stat(&stats, "veth-a", "ingress", c, "bytes"))
        .sum();
    eprintln!("[{mode}] {:<10} {tp:>8} {np:>8} {tb:>9} {nb:>9}", "total");

    // ---- per flow ----
    let mut want: BTreeMap<String, (FlowCount, String)> = BTreeMap::new();
    for f in truth["flows"].as_array().expect("truth flows") {
        let frames: Vec<String> = f["frames"]
            .as_array()
            .map(|a| a.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        let prev = want.insert(flow_key(f), (count(f), frames.join(",")));
        assert!(prev.is_none(), "truth has a duplicate flow key {}", flow_key(f));
    }
    let mut got: BTreeMap<String, FlowCount> = BTreeMap::new();
    for r in flows.as_array().expect("flow rows") {
        if r["iface"] != "veth-a" || r["direction"] != "ingress" {
            continue;
        }
        let (k, c) = (flow_key(r), count(r));
        if let Some(prev) = got.insert(k.clone(), c) {
            problems.push(format!(
                "flow {k}: netpath prints two rows ({prev:?} and {:?})",
                got[&k]
            ));
        }
    }
    let mut flow_ok = 0;
    for (k, (w, frames)) in &want {
        match got.get(k) {
            Some(g) if g == w => flow_ok += 1,
            Some(g) => problems.push(format!("flow {k}: tshark {w:?} (frames {frames}), netpath {g:?}")),
            None => problems.push(format!("flow {k}: tshark {w:?} (frames {frames}), missing in netpath")),
        }
    }
    let truth_frames = truth["frame_classes"].as_array().expect("frame_classes");
    for r in flows.as_array().expect("flow rows") {
        let k = flow_key(r);
        if r["iface"] != "veth-a" || r["direction"] != "ingress" || want.contains_key(&k) {
            continue;
        }
        // Point at the frames tshark saw between these addresses that made no such flow.
        let suspects: Vec<String> = truth_frames
            .iter()
            .filter(|f| f["src"] == r["src"] && f["dst"] == r["dst"] && f["class"] == "malformed")
            .map(|f| {
                format!(
                    "#{} {} B {} ({})",
                    f["frame"],
                    f["len"],
                    f["protocols"].as_str().unwrap_or("?"),
                    f["reason"].as_str().unwrap_or("?")
                )
            })
            .collect();
        problems.push(format!("flow {k}: netpath {:?}, not in tshark's dissection; tshark's malformed frames between these addresses: [{}]", got[&k], suspects.join("; ")));
    }
    let disagree: Vec<String> = truth["tshark_disagreements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| format!("#{} {}", d["frame"], d["netpath_rule"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "[{mode}] flows: tshark {}, netpath {} (veth-a ingress), {flow_ok} equal",
        want.len(),
        got.len()
    );
    eprintln!(
        "[{mode}] tshark's malformed flag differs from netpath's rules (rule applied) for {} frames: {}",
        disagree.len(),
        disagree.join(", ")
    );
    eprintln!("[{mode}] {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        problems.is_empty(),
        "[{mode}] netpath disagrees with tshark:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn tshark_replay_matches_netpath_stats_and_flows() {
    run("tc");
}

#[test]
fn tshark_replay_matches_netpath_stats_and_flows_xdp() {
    run("xdp");
}

/// The truth script must work from tshark alone; make sure it keeps covering every class.
#[test]
fn tshark_truth_covers_every_class() {
    let tmp = TempDir::new();
    let (_, truth) = capture_and_truth(&tmp.0);
    for c in CLASSES {
        assert!(
            truth["classes"][c]["packets"].as_u64().unwrap_or(0) > 0,
            "no {c} frames in the capture: {}",
            truth["classes"]
        );
    }
    let flows = truth["flows"].as_array().expect("flows");
    assert!(flows.iter().any(|f| f["packets"].as_u64() > Some(1)), "no flow repeats");
    assert!(
        flows
            .iter()
            .any(|f| f["vni"].as_u64() > Some(0) && f["vlan"].as_u64() > Some(0)),
        "no tagged VXLAN flow"
    );
}
