//! Events in the lab: ARP (and what is derived from it: unanswered requests, conflicting
//! claims), ICMP errors with the packet they quote, and the loss accounting under overload.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use netpath_lab::Lab;
use netpath_tests::*;

fn in_pod(netns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn scapy(netns: &str, code: &str) {
    let out = in_pod(
        netns,
        &[
            "/usr/bin/python3",
            "-c",
            &format!("from scapy.all import *\nconf.verb = 0\n{code}"),
        ],
    );
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn events_arp_unanswered_conflict_and_icmp_errors_in_the_lab() {
    require_root();
    let lab = LabGuard(Lab::new(&unique("npe")));
    lab.0.up().expect("lab up");
    let pods: Vec<_> = lab.0.pods().into_iter().filter(|p| p.node == 1).collect();
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let pins = PinDir::new();
    let d = Daemon::start_expecting(
        &[
            "--netns",
            &lab.0.node_ns(1),
            "--iface",
            "cni0",
            "--quiet",
            "--pin-dir",
            pins.arg(),
            "--socket",
            pins.sock(),
        ],
        4,
    );
    let w = Watch::start(pins.sock(), &[]);
    let (ip_a, ip_b, ip_c) = (a.ip.to_string(), b.ip.to_string(), c.ip.to_string());

    // ping and arping: ARP requests and replies, named by the pod's veth and namespace.
    assert!(in_pod(&a.netns, &["ping", "-c", "2", "-i", "0.2", &ip_b])
        .status
        .success());
    let req = w.wait_for("arp request", Duration::from_secs(5), |e| {
        e["kind"] == "arp"
            && e["arp_op"] == "request"
            && e["sender_ip"] == ip_a.as_str()
            && e["target_ip"] == ip_b.as_str()
    });
    assert_eq!(req["iface"], a.host_veth.as_str(), "{req}");
    assert_eq!(req["netns"], a.netns.as_str(), "{req}");
    w.wait_for("arp reply", Duration::from_secs(5), |e| {
        e["kind"] == "arp" && e["arp_op"] == "reply" && e["sender_ip"] == ip_b.as_str()
    });
    let out = in_pod(&a.netns, &["arping", "-c", "2", "-w", "3", "-i", "eth0", &ip_c]);
    assert!(out.status.success(), "arping: {}", String::from_utf8_lossy(&out.stdout));
    w.wait_for("arping reply", Duration::from_secs(5), |e| {
        e["kind"] == "arp" && e["arp_op"] == "reply" && e["sender_ip"] == ip_c.as_str()
    });

    // An ARP for an address nobody has: arp_unanswered.
    let _ = in_pod(&a.netns, &["arping", "-c", "1", "-w", "1", "-i", "eth0", "10.244.0.99"]);
    let u = w.wait_for("arp_unanswered", Duration::from_secs(5), |e| {
        e["kind"] == "arp_unanswered" && e["target_ip"] == "10.244.0.99"
    });
    assert!(u["waited_ms"].as_u64().unwrap() >= 1000, "{u}");

    // Pod c claims pod b's address (a spoofed reply to pod a): arp_conflict names both MACs.
    let mac_b = b.mac.clone().expect("planned MAC");
    scapy(
        &c.netns,
        &format!("sendp(Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(op=2, psrc='{ip_b}', hwsrc=get_if_hwaddr('eth0'), pdst='{ip_a}'), iface='eth0', count=2)"),
    );
    let conflict = w.wait_for("arp_conflict", Duration::from_secs(5), |e| {
        e["kind"] == "arp_conflict" && e["sender_ip"] == ip_b.as_str()
    });
    assert_eq!(conflict["previous_mac"], mac_b.as_str(), "{conflict}");
    assert_ne!(conflict["sender_mac"], mac_b.as_str(), "{conflict}");

    // ICMP errors from pod c to pod a, quoting packets a had sent: unreachable and time exceeded.
    scapy(
        &c.netns,
        &format!(
            "send(IP(src='{ip_c}', dst='{ip_a}')/ICMP(type=3, code=3)/IP(src='{ip_a}', dst='{ip_c}')/UDP(sport=5353, dport=53)/b'q')\n\
             send(IP(src='{ip_c}', dst='{ip_a}')/ICMP(type=11, code=0)/IP(src='{ip_a}', dst='10.244.1.2', ttl=1)/TCP(sport=40000, dport=80))"
        ),
    );
    let unreach = w.wait_for("icmp unreachable", Duration::from_secs(5), |e| {
        e["kind"] == "icmp_error" && e["icmp_type"] == 3
    });
    assert_eq!(unreach["icmp_code"], 3, "{unreach}");
    let q = &unreach["quoted"];
    assert_eq!(
        (q["proto"].as_str(), q["src"].as_str(), q["dst"].as_str()),
        (Some("udp"), Some(ip_a.as_str()), Some(ip_c.as_str())),
        "{unreach}"
    );
    assert_eq!(
        (q["sport"].as_u64(), q["dport"].as_u64()),
        (Some(5353), Some(53)),
        "{unreach}"
    );
    let ttl = w.wait_for("icmp time exceeded", Duration::from_secs(5), |e| {
        e["kind"] == "icmp_error" && e["icmp_type"] == 11
    });
    let q = &ttl["quoted"];
    assert_eq!(
        (
            q["proto"].as_str(),
            q["dst"].as_str(),
            q["sport"].as_u64(),
            q["dport"].as_u64()
        ),
        (Some("tcp"), Some("10.244.1.2"), Some(40000), Some(80)),
        "{ttl}"
    );

    // Text output, as people read it.
    let out = Command::new(netpath_bin())
        .args([
            "watch",
            "--socket",
            pins.sock(),
            "--kind",
            "arp",
            // Not the first ARP event alone: the other pods' neighbour refreshes (b asking for a
            // after the spoofed reply) may come first.
            "-c",
            "50",
            "--duration",
            "4s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(in_pod(&a.netns, &["arping", "-c", "1", "-w", "2", "-i", "eth0", &ip_b])
        .status
        .success());
    let text = String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap();
    let tell_a = format!("ARP who-has {ip_b} tell {ip_a}");
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("({})", a.netns)) && l.contains(&tell_a)),
        "{text}"
    );
    drop(w);
    assert!(d.stop().success());
}

/// The consumer stopped (SIGSTOP) while a flood of new flows arrives: the ring buffer overflows,
/// every event is either delivered or counted lost (delivered + lost == emitted), and forwarding
/// and counting are unaffected.
#[test]
fn events_overload_loses_nothing_silently_and_forwarding_goes_on() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    // No rate limit here: the point is the ring buffer overflowing (the limit has its own test).
    let d = Daemon::on_veth_a(&pair, &pins, &["--quiet", "--events-rate", "0"]);
    // SAFETY: signalling the daemon child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    const PACKETS: u64 = 40_000;
    let b = pair.b.name.clone();
    let flood = std::thread::spawn(move || {
        in_netns(&b, || {
            let sock = std::net::UdpSocket::bind("10.77.0.2:0").unwrap();
            let start = Instant::now();
            for i in 0..PACKETS {
                // Every packet a new flow (distinct destination ports, clear of the VXLAN ports
                // 4789 and 8472, where a 5-byte payload would be a truncated VXLAN header).
                sock.send_to(b"flood", ("10.77.0.1", 10_000 + (i % 50_000) as u16))
                    .unwrap();
                assert!(start.elapsed() < Duration::from_secs(30), "flood took too long");
            }
        })
    });
    // Forwarding during the flood.
    pair.ping_from_a(5);
    flood.join().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(1500));
    let s = netpath_json(&["status", "--socket", pins.sock()]);
    let ev = &s["events"];
    let (emitted, delivered, lost, suppressed) = (
        ev["emitted"].as_u64().unwrap(),
        ev["delivered"].as_u64().unwrap(),
        ev["lost"].as_u64().unwrap(),
        ev["suppressed"].as_u64().unwrap(),
    );
    eprintln!("events: emitted {emitted}, delivered {delivered}, lost {lost}, suppressed {suppressed}");
    assert!(lost > 0, "the ring buffer should have overflowed: {ev}");
    assert_eq!(suppressed, 0, "no rate limit was set: {ev}");
    assert_eq!(delivered + lost, emitted, "{ev}");
    let rows = netpath_json(&["stats", "--socket", pins.sock()]);
    assert_eq!(
        stat(&rows, "veth-a", "ingress", "udp", "packets"),
        PACKETS,
        "every flood packet counted: {rows}"
    );
    assert!(d.stop().success());
}

/// A filter on a name that does not exist used to match nothing, silently: `watch` waited forever
/// and `flows` printed an empty table. Now the daemon (and, without one, the CLI) refuses it.
#[test]
fn events_unknown_iface_or_pod_filters_are_exit_2_naming_what_exists() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let d = Daemon::on_veth_a(&pair, &pins, &["--quiet"]);
    let refused = |args: &[&str], names: &[&str]| {
        let out = netpath(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for n in names {
            assert!(err.contains(n), "{args:?} should name {n}: {err}");
        }
    };
    let sock = pins.sock();
    refused(
        &["watch", "--socket", sock, "--iface", "nosuch0", "--duration", "5s"],
        &["nosuch0", "veth-a"],
    );
    refused(
        &["watch", "--socket", sock, "--pod", "ghost", "--duration", "5s"],
        &["ghost", &pair.b.name],
    );
    refused(&["flows", "--socket", sock, "--iface", "nosuch"], &["nosuch", "veth-a"]);
    // Names that exist still work: the peer's namespace stands for the pod behind veth-a.
    for args in [
        &["watch", "--socket", sock, "--iface", "veth-a", "--duration", "300ms"][..],
        &["watch", "--socket", sock, "--pod", &pair.b.name, "--duration", "300ms"][..],
        &["flows", "--socket", sock, "--iface", "veth-a"][..],
    ] {
        let out = netpath(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(d.stop().success());
    // Without a daemon, `flows` reads the pins and checks the name in the namespace given.
    let ns = pair.a.name.as_str();
    refused(
        &[
            "flows",
            "--socket",
            sock,
            "--pin-dir",
            pins.arg(),
            "--netns",
            ns,
            "--iface",
            "nosuch",
        ],
        &["nosuch", "veth-a"],
    );
    let out = netpath(&[
        "flows",
        "--socket",
        sock,
        "--pin-dir",
        pins.arg(),
        "--netns",
        ns,
        "--iface",
        "veth-a",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
