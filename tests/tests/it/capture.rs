//! `netpath capture` against tcpdump and tshark: the same packets, byte for byte and in the same
//! order, as tcpdump sees on the same interface; filters by class, interface and pod; direction
//! flags; offloaded VLAN tags put back; live pcapng on stdout; bad input refused with exit 2; and
//! the datapath's capture switch always off again afterwards (read from the pinned map).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netpath_common::event::CaptureConfig;
use netpath_tests::{proc::Proc, *};

const PYTHON: &str = "/usr/bin/python3";

/// A directory under the system temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("netpath-capture-"));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// tcpdump on `iface` inside `ns`, packet-buffered so SIGINT leaves a complete file.
fn tcpdump(ns: &Netns, iface: &str, snaplen: u32, file: &str) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.name,
        "tcpdump",
        "--immediate-mode",
        "-U",
        "-n",
        "-i",
        iface,
        "-s",
        &snaplen.to_string(),
        "-w",
        file,
    ])
    .stdout(Stdio::null());
    Proc::spawn("tcpdump", cmd, "listening on")
}

/// `netpath capture ARGS` (stdout to null unless the caller pipes it), armed.
fn capture(args: &[&str]) -> Proc {
    let mut cmd = Command::new(netpath_bin());
    cmd.arg("capture").args(args).stdout(Stdio::null());
    Proc::spawn("netpath capture", cmd, "capturing on")
}

/// tshark's stderr without the line it prints whenever it runs as root.
fn tshark_complaints(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("Running as user \"root\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `tshark -r FILE -T fields -e F...` (with `-Y FILTER` if given): one row per packet. Asserts
/// tshark reads the file cleanly.
fn fields(file: &str, filter: Option<&str>, names: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r", file, "-T", "fields", "-E", "separator=|"]);
    if let Some(f) = filter {
        cmd.args(["-Y", f]);
    }
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = cmd.output().expect("tshark");
    let complaints = tshark_complaints(&out.stderr);
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark -r {file}: {:?}: {complaints}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// One packet as tshark reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    len: u32,
    cap_len: u32,
    hex: String,
}

fn frames(file: &str) -> Vec<Frame> {
    let out = Command::new("tshark")
        .args(["-n", "-r", file, "-T", "json", "-x"])
        .output()
        .expect("tshark");
    let complaints = tshark_complaints(&out.stderr);
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark -r {file}: {:?}: {complaints}",
        out.status
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let raws: Vec<String> = v
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            p["_source"]["layers"]["frame_raw"][0]
                .as_str()
                .expect("frame_raw")
                .to_string()
        })
        .collect();
    let lens = fields(file, None, &["frame.len", "frame.cap_len"]);
    assert_eq!(raws.len(), lens.len());
    raws.into_iter()
        .zip(lens)
        .map(|(hex, l)| Frame {
            len: l[0].parse().expect("len"),
            cap_len: l[1].parse().expect("cap_len"),
            hex,
        })
        .collect()
}

/// Wall-clock timestamps (s) of every packet.
fn times(file: &str) -> Vec<f64> {
    fields(file, None, &["frame.time_epoch"])
        .iter()
        .map(|r| r[0].parse().expect("epoch"))
        .collect()
}

/// The pinned capture switch and how many interfaces its filter lists.
fn capture_state(pins: &PinDir) -> (CaptureConfig, usize) {
    use aya::maps::{Array, HashMap, Map, MapData};
    let open =
        |name: &str| Map::from_map_data(MapData::from_pin(pins.path.join(name)).expect("pinned map")).expect("map");
    let cfg: Array<MapData, CaptureConfig> =
        Array::try_from(open(netpath_common::maps::CAPTURE_CFG)).expect("capture config map");
    let ifaces: HashMap<MapData, u32, u8> =
        HashMap::try_from(open(netpath_common::maps::CAPTURE_IFACES)).expect("capture iface map");
    (cfg.get(&0, 0).expect("config slot"), ifaces.keys().count())
}

#[track_caller]
fn assert_capture_off(pins: &PinDir, after: &str) {
    let (cfg, n) = capture_state(pins);
    assert_eq!(cfg.enabled, 0, "capture left enabled after {after}: {cfg:?}");
    assert_eq!(n, 0, "capture left {n} interface filter entries after {after}");
}

/// Send UDP datagrams of these payload sizes from `ns`, 50 ms apart.
fn udp(ns: &Netns, dst: &str, port: u16, sizes: &[usize]) {
    let code = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor n in {sizes:?}:\n  s.sendto(b'u'*n,('{dst}',{port}))\n  time.sleep(0.05)\n"
    );
    let out = ns.exec(&[PYTHON, "-c", &code]);
    assert!(
        out.status.success(),
        "udp from {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ping(ns: &Netns, dst: &str, count: u32) {
    let out = ns.exec(&["ping", "-n", "-c", &count.to_string(), "-i", "0.2", "-W", "2", dst]);
    assert!(
        out.status.success(),
        "ping {dst} from {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stdout)
    );
}

fn tc_daemon(pair: &Pair, pins: &PinDir, ifaces: &[&str], extra: &[&str]) -> Daemon {
    let mut args = vec!["--netns", pair.a.name.as_str(), "--mode", "tc"];
    for i in ifaces {
        args.extend(["--iface", i]);
    }
    args.extend(pins.args());
    args.extend(extra);
    Daemon::start(&args)
}

/// Let in-flight packets land in both captures before they are stopped.
fn settle() {
    std::thread::sleep(Duration::from_millis(700));
}

#[test]
fn capture_matches_tcpdump_packet_for_packet() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let _d = tc_daemon(&pair, &pins, &["veth-a"], &[]);
    let tmp = TempDir::new();
    let (theirs, ours) = (tmp.file("tcpdump.pcap"), tmp.file("netpath.pcapng"));
    let td = tcpdump(&pair.a, "veth-a", 200, &theirs);
    let np = capture(&[
        "--iface",
        "veth-a",
        "--netns",
        &pair.a.name,
        "-s",
        "200",
        "-w",
        &ours,
        pins.args()[0],
        pins.args()[1],
        pins.args()[2],
        pins.args()[3],
    ]);
    let (cfg, n) = capture_state(&pins);
    assert_eq!(
        (cfg.enabled, cfg.snaplen, cfg.class_mask, cfg.iface_filter, n),
        (1, 200, 0, 1, 1),
        "armed: {cfg:?}"
    );

    // Both directions, both initiators, frames shorter and longer than the snaplen.
    ping(&pair.b, PAIR_A_IP, 5);
    udp(&pair.b, PAIR_A_IP, 9, &[10, 300, 1400]);
    ping(&pair.a, PAIR_B_IP, 3);
    udp(&pair.a, PAIR_B_IP, 9, &[64, 900]);
    settle();
    let (st, err) = np.stop();
    assert!(st.success(), "netpath capture: {st:?}: {err}");
    assert!(td.stop().0.success());
    assert_capture_off(&pins, "SIGINT");

    let (t, o) = (frames(&theirs), frames(&ours));
    assert!(t.len() >= 21, "tcpdump saw only {} packets", t.len());
    assert_eq!(
        o.len(),
        t.len(),
        "packet counts differ: netpath {} tcpdump {}",
        o.len(),
        t.len()
    );
    for (i, (a, b)) in o.iter().zip(&t).enumerate() {
        assert_eq!(a, b, "packet {} differs (netpath, tcpdump)", i + 1);
    }
    assert!(
        o.iter().any(|f| f.cap_len == 200 && f.len > 200),
        "the snaplen cut nothing"
    );
    assert!(
        err.contains(&format!("{} packets captured, 0 lost", o.len())),
        "summary: {err}"
    );
    // Wall-clock timestamps from the monotonic ones: next to tcpdump's.
    for (i, (a, b)) in times(&ours).iter().zip(times(&theirs)).enumerate() {
        assert!(
            (a - b).abs() < 0.05,
            "packet {} at {a} (netpath) vs {b} (tcpdump)",
            i + 1
        );
    }
    let names = fields(&ours, None, &["frame.interface_name"]);
    assert!(names.iter().all(|r| r[0] == "veth-a"), "{names:?}");
}

/// Direction flags as tshark shows them (`frame.packet_flags_direction`: 1 inbound, 2 outbound).
fn direction(v: &str) -> u32 {
    u32::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("direction {v:?}"))
}

#[test]
fn capture_pod_filter_and_kind_filter() {
    require_root();
    let pair = Pair::new();
    // A second veth from a to a third namespace, standing in for a second pod.
    let c = Netns::new("npc");
    pair.a.ip(&[
        "link", "add", "name", "veth-c", "type", "veth", "peer", "name", "veth-d", "netns", &c.name,
    ]);
    pair.a.ip(&["addr", "add", "10.78.0.1/24", "dev", "veth-c"]);
    c.ip(&["addr", "add", "10.78.0.2/24", "dev", "veth-d"]);
    let _ = pair
        .a
        .exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/veth-c/disable_ipv6"]);
    let _ = c.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/veth-d/disable_ipv6"]);
    pair.a.ip(&["link", "set", "veth-c", "up"]);
    c.ip(&["link", "set", "veth-d", "up"]);
    let pins = PinDir::new();
    let _d = tc_daemon(&pair, &pins, &["veth-a", "veth-c"], &[]);
    let tmp = TempDir::new();
    let p = pins.args();
    let traffic = || {
        ping(&pair.a, PAIR_B_IP, 3);
        ping(&pair.a, "10.78.0.2", 3);
        udp(&pair.a, PAIR_B_IP, 9, &[100, 200]);
        udp(&pair.a, "10.78.0.2", 9, &[100]);
        settle();
    };

    // --kind icmp on both interfaces: ICMP only, from both, each with its own interface block.
    let f = tmp.file("icmp.pcapng");
    let np = capture(&[
        "--iface",
        "veth-a",
        "--iface",
        "veth-c",
        "--netns",
        &pair.a.name,
        "--kind",
        "icmp",
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    assert_eq!(capture_state(&pins).0.class_mask, 1 << netpath_common::class::ICMP);
    traffic();
    assert!(np.stop().0.success());
    assert_capture_off(&pins, "--kind icmp");
    let rows = fields(
        &f,
        None,
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "frame.protocols",
            "icmp.type",
        ],
    );
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r[2].contains(":icmp")),
        "non-ICMP frames with --kind icmp: {rows:?}"
    );
    for iface in ["veth-a", "veth-c"] {
        let echo: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| r[0] == iface && (r[3] == "8" || r[3] == "0"))
            .collect();
        assert_eq!(echo.len(), 6, "{iface}: echo requests and replies: {rows:?}");
        // Requests leave (egress: outbound), replies arrive (ingress: inbound).
        for r in echo {
            let want = if r[3] == "8" { 2 } else { 1 };
            assert_eq!(
                direction(&r[1]),
                want,
                "{iface}: icmp type {} has direction {}",
                r[3],
                r[1]
            );
        }
    }

    // --iface picks one interface of the two the daemon watches.
    let f = tmp.file("one.pcapng");
    let np = capture(&[
        "--iface",
        "veth-a",
        "--netns",
        &pair.a.name,
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    traffic();
    assert!(np.stop().0.success());
    let rows = fields(
        &f,
        None,
        &[
            "frame.interface_name",
            "ip.addr",
            "frame.protocols",
            "frame.packet_flags_direction",
        ],
    );
    assert!(rows.iter().any(|r| r[2].contains(":udp")), "{rows:?}");
    assert!(
        rows.iter().all(|r| r[0] == "veth-a" && !r[1].contains("10.78.")),
        "other interface leaked in: {rows:?}"
    );
    // UDP from a leaves veth-a: outbound.
    assert!(
        rows.iter()
            .filter(|r| r[2] == "eth:ethertype:ip:udp:data")
            .all(|r| direction(&r[3]) == 2),
        "{rows:?}"
    );

    // --pod by the network namespace behind the veth (no CRI here): the daemon names it.
    let f = tmp.file("pod.pcapng");
    let np = capture(&[
        "--pod",
        &c.name,
        "--netns",
        &pair.a.name,
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    traffic();
    let (st, err) = np.stop();
    assert!(st.success(), "{err}");
    assert!(err.contains("capturing on veth-c"), "{err}");
    let rows = fields(
        &f,
        None,
        &["frame.interface_name", "frame.interface_description", "ip.addr"],
    );
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r[0] == "veth-c" && r[1].contains(&c.name) && !r[2].contains("10.77.")),
        "{rows:?}"
    );
    assert_capture_off(&pins, "--pod");
}

#[test]
fn capture_reinserts_offloaded_vlan_tag() {
    require_root();
    let pair = Pair::new();
    // TC: the kernel has moved the tag into skb metadata; XDP: the tag is still in the frame.
    for mode in ["tc", "xdp"] {
        let pins = PinDir::new();
        let iface = if mode == "xdp" { "veth-a:xdp" } else { "veth-a" };
        let mut args = vec!["--netns", pair.a.name.as_str(), "--iface", iface];
        args.extend(pins.args());
        let _d = Daemon::start(&args);
        let tmp = TempDir::new();
        let (theirs, ours) = (tmp.file("tcpdump.pcap"), tmp.file("netpath.pcapng"));
        let td = tcpdump(&pair.a, "veth-a", 200, &theirs);
        let p = pins.args();
        let np = capture(&[
            "--iface",
            "veth-a",
            "--netns",
            &pair.a.name,
            "-s",
            "200",
            "-w",
            &ours,
            p[0],
            p[1],
            p[2],
            p[3],
        ]);
        let code = "from scapy.all import *\n\
                    for n in (20, 400):\n  sendp(Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=42, prio=5)/IP(dst='10.77.0.1')/UDP(dport=9)/(b'x'*n), iface='veth-b', count=3, verbose=0)\n";
        let out = pair.b.exec(&[PYTHON, "-c", code]);
        assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
        settle();
        let (st, err) = np.stop();
        assert!(st.success(), "{err}");
        assert!(td.stop().0.success());
        assert_capture_off(&pins, mode);

        let rows = fields(
            &ours,
            Some("udp.dstport == 9"),
            &[
                "vlan.id",
                "vlan.priority",
                "frame.len",
                "frame.cap_len",
                "ip.dst",
                "frame.packet_flags_direction",
            ],
        );
        let got: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()))
            .collect();
        let small = ("42".to_string(), "5".to_string(), "66".to_string(), "66".to_string());
        let large = ("42".to_string(), "5".to_string(), "446".to_string(), "200".to_string());
        assert_eq!(
            got,
            [small.clone(), small.clone(), small, large.clone(), large.clone(), large],
            "{mode}: {rows:?}"
        );
        assert!(
            rows.iter().all(|r| r[4] == PAIR_A_IP && direction(&r[5]) == 1),
            "{mode}: {rows:?}"
        );
        // And exactly what tcpdump (libpcap re-inserting the tag) wrote.
        assert_eq!(frames(&ours), frames(&theirs), "{mode}: netpath and tcpdump differ");
    }
}

#[test]
fn capture_to_stdout_pipes_into_tshark() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let _d = tc_daemon(&pair, &pins, &["veth-a"], &[]);
    let p = pins.args();
    let base = [
        "--iface",
        "veth-a",
        "--netns",
        pair.a.name.as_str(),
        "-w",
        "-",
        p[0],
        p[1],
        p[2],
        p[3],
    ];

    // -c 3 | tshark -r -: three packets, then netpath exits by itself.
    let mut cmd = Command::new(netpath_bin());
    cmd.arg("capture")
        .args(base)
        .args(["-c", "3", "--kind", "icmp"])
        .stdout(Stdio::piped());
    let mut np = Proc::spawn("netpath capture", cmd, "capturing on");
    let out = np.child.as_mut().unwrap().stdout.take().unwrap();
    let tshark = Command::new("tshark")
        .args(["-n", "-r", "-"])
        .stdin(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    let mut pinger = pair.b.exec_spawn(&["ping", "-n", "-c", "30", "-i", "0.1", PAIR_A_IP]);
    let (st, err) = np.wait(Duration::from_secs(15));
    let t = tshark.wait_with_output().expect("tshark");
    assert!(
        st.success() && err.contains("3 packets captured") && err.contains("count reached"),
        "{st:?}: {err}"
    );
    assert!(
        t.status.success() && tshark_complaints(&t.stderr).is_empty(),
        "tshark: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&t.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("ICMP")), "{lines:?}");
    assert_capture_off(&pins, "-c 3");

    // The reader goes away (tshark -c 1): netpath notices the closed pipe and stops cleanly.
    let mut cmd = Command::new(netpath_bin());
    cmd.arg("capture").args(base).stdout(Stdio::piped());
    let mut np = Proc::spawn("netpath capture", cmd, "capturing on");
    let out = np.child.as_mut().unwrap().stdout.take().unwrap();
    let tshark = Command::new("tshark")
        .args(["-n", "-r", "-", "-c", "1"])
        .stdin(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    let (st, err) = np.wait(Duration::from_secs(10));
    let t = tshark.wait_with_output().expect("tshark");
    assert!(st.success() && err.contains("output closed"), "{st:?}: {err}");
    assert_eq!(String::from_utf8_lossy(&t.stdout).lines().count(), 1);
    assert_capture_off(&pins, "a closed pipe");
    let _ = pinger.kill();
    let _ = pinger.wait();
}

trait ExecSpawn {
    fn exec_spawn(&self, args: &[&str]) -> Child;
}

impl ExecSpawn for Netns {
    fn exec_spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec")
    }
}

#[test]
fn capture_refuses_bad_input_and_always_switches_off() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let _d = tc_daemon(&pair, &pins, &["veth-a"], &[]);
    let tmp = TempDir::new();
    let f = tmp.file("x.pcapng");
    let p = pins.args();
    let ns = pair.a.name.as_str();
    let bad: [(&[&str], &str); 5] = [
        (&["--iface", "veth-a", "--netns", ns, "--kind", "icmp,bogus"], "'bogus'"),
        (
            &["--iface", "veth-a", "--netns", ns, "--kind", "icmp", "--iface", "nope0"],
            "'nope0' not found",
        ),
        (&["--netns", ns], "--iface"),
        (&["--pod", "no-such-pod", "--netns", ns], "'no-such-pod'"),
        (&["--iface", "veth-a", "--netns", ns, "-c", "0"], "-c"),
    ];
    for (args, needle) in bad {
        let out = netpath(&[&["capture", "-w", f.as_str()][..], args, &p[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!Path::new(&f).exists(), "{args:?} created the output file");
        assert_capture_off(&pins, &format!("{args:?}"));
    }

    // One capture at a time: the second is refused, naming the first, which keeps running.
    let f1 = tmp.file("first.pcapng");
    let first = capture(&[
        "--iface", "veth-a", "--netns", ns, "--kind", "icmp", "-w", &f1, p[0], p[1], p[2], p[3],
    ]);
    let out = netpath(&[
        "capture", "--iface", "veth-a", "--netns", ns, "-w", &f, p[0], p[1], p[2], p[3],
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already capturing") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    assert_eq!(
        capture_state(&pins).0.enabled,
        1,
        "the refused capture touched the first one's filter"
    );
    ping(&pair.a, PAIR_B_IP, 2);
    settle();
    let (st, err) = first.stop();
    assert!(st.success() && err.contains("4 packets captured"), "{err}");
    assert_capture_off(&pins, "SIGINT");

    // --duration ends a capture; SIGTERM too.
    let out = netpath(&[
        "capture",
        "--iface",
        "veth-a",
        "--netns",
        ns,
        "--duration",
        "300ms",
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("duration elapsed"),
        "{out:?}"
    );
    assert_capture_off(&pins, "--duration");
    let np = capture(&["--iface", "veth-a", "--netns", ns, "-w", &f, p[0], p[1], p[2], p[3]]);
    np.signal(libc::SIGTERM);
    let (st, _) = np.wait(Duration::from_secs(10));
    assert!(st.success());
    assert_capture_off(&pins, "SIGTERM");

    // SIGKILL leaves the switch on, and nobody reads the copies: the daemon notices that no
    // capture holds the lock and switches it off within its 5 s housekeeping period.
    let mut np = capture(&["--iface", "veth-a", "--netns", ns, "-w", &f, p[0], p[1], p[2], p[3]]);
    np.kill();
    let deadline = Instant::now() + Duration::from_secs(8);
    while capture_state(&pins).0.enabled != 0 {
        assert!(Instant::now() < deadline, "the daemon left an abandoned capture armed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_capture_off(&pins, "SIGKILL and the daemon's housekeeping");
    let out = netpath(&[
        "capture",
        "--iface",
        "veth-a",
        "--netns",
        ns,
        "--duration",
        "200ms",
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_capture_off(&pins, "a capture after the recovery");
}

#[test]
fn capture_without_daemon_reads_pins_and_finds_the_pod_by_netlink() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    // --persist leaves the programs attached after the daemon exits.
    let d = tc_daemon(&pair, &pins, &["veth-a"], &["--persist"]);
    assert!(d.stop().success());
    let tmp = TempDir::new();
    let f = tmp.file("pod.pcapng");
    let p = pins.args();
    let np = capture(&[
        "--pod",
        &pair.b.name,
        "--netns",
        &pair.a.name,
        "--kind",
        "icmp",
        "-w",
        &f,
        p[0],
        p[1],
        p[2],
        p[3],
    ]);
    ping(&pair.a, PAIR_B_IP, 2);
    settle();
    let (st, err) = np.stop();
    assert!(
        st.success() && err.contains("capturing on veth-a") && err.contains("4 packets captured"),
        "{err}"
    );
    let rows = fields(&f, None, &["frame.interface_name", "frame.interface_description"]);
    assert!(
        rows.len() == 4 && rows.iter().all(|r| r[0] == "veth-a" && r[1].contains(&pair.b.name)),
        "{rows:?}"
    );
    assert_capture_off(&pins, "a capture without daemon");
}
