//! Control-plane reliability: restarts under load, hot-plugged veths, coexistence with other
//! programs, configuration reload, access control. Root; throwaway namespaces only.
use std::{
    net::UdpSocket,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use netpath_tests::*;

fn netpath_on(ns: &Netns, dev: &str) -> Vec<String> {
    attached_programs(ns, dev)
        .into_iter()
        .filter(|p| p.contains("netpath_"))
        .collect()
}

fn udp_ingress(maps: &netpath::datapath::maps::Maps, ifindex: u32) -> u64 {
    maps.iface_counters()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ifindex == ifindex && k.direction == netpath_common::DIR_INGRESS)
        .map(|(_, c)| c.class[netpath_common::class::UDP as usize].packets)
        .unwrap_or(0)
}

/// kill -9 the daemon ten times under a sequence-numbered UDP stream: the programs never leave
/// the interface (sampled every 10 ms), the counter never goes back, and every packet sent is
/// counted exactly once.
#[test]
fn daemon_survives_ten_kill9_restarts_without_losing_a_packet() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let run: Vec<&str> = [
        "--netns",
        pair.a.name.as_str(),
        "--iface",
        "veth-a",
        "--persist",
        "--quiet",
    ]
    .into_iter()
    .chain(pins.args())
    .collect();
    let mut daemon = Some(Daemon::start(&run));
    let ifindex: u32 = in_netns(&pair.a.name, || {
        netpath::node::ifaces::resolve("veth-a", None).unwrap().ifindex
    });
    // The maps are pinned: one handle reads them across every daemon generation.
    let maps = netpath::datapath::maps::Maps::open_pinned(&pins.path).unwrap();

    const PACKETS: u64 = 12_000;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (b, sent) = (pair.b.name.clone(), Arc::clone(&sent));
        std::thread::spawn(move || {
            in_netns(&b, || {
                let sock = UdpSocket::bind("10.77.0.2:0").unwrap();
                let start = Instant::now();
                for seq in 0..PACKETS {
                    // 1000 packets/s, bounded by count (and so by time: 12 s).
                    let due = start + Duration::from_micros(seq * 1000);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    sock.send_to(&seq.to_be_bytes(), "10.77.0.1:9999").unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
    };
    let sampler = {
        let (a, stop) = (pair.a.name.clone(), Arc::clone(&stop));
        let maps = netpath::datapath::maps::Maps::open_pinned(&pins.path).unwrap();
        std::thread::spawn(move || {
            let (mut samples, mut last, mut gaps, mut backwards) = (0u64, 0u64, 0u64, 0u64);
            let ns = Netns { name: a };
            while !stop.load(Ordering::Relaxed) {
                if netpath_on(&ns, "veth-a").len() != 2 {
                    gaps += 1;
                }
                let now = udp_ingress(&maps, ifindex);
                if now < last {
                    backwards += 1;
                }
                last = now;
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            std::mem::forget(ns); // the Pair owns the namespace
            (samples, gaps, backwards)
        })
    };
    for round in 1..=10 {
        std::thread::sleep(Duration::from_millis(700));
        daemon.take().unwrap().kill9();
        let t = Instant::now();
        daemon = Some(Daemon::start(&run));
        eprintln!(
            "restart {round}: re-adopted in {:?}, {} packets counted so far",
            t.elapsed(),
            udp_ingress(&maps, ifindex)
        );
    }
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (samples, gaps, backwards) = sampler.join().unwrap();
    let counted = udp_ingress(&maps, ifindex);
    eprintln!(
        "sent {} packets, counted {counted}; {samples} samples, {gaps} without programs, {backwards} backwards",
        sent.load(Ordering::Relaxed)
    );
    assert!(samples > 500, "sampler ran only {samples} times");
    assert_eq!(gaps, 0, "programs left the interface");
    assert_eq!(backwards, 0, "counter went backwards");
    assert_eq!(counted, PACKETS, "every packet counted exactly once");
    assert!(daemon.take().unwrap().stop().success());
    // --persist leaves the programs attached on exit; `down` removes them.
    assert_eq!(netpath_on(&pair.a, "veth-a").len(), 2);
    assert!(netpath(&["down", "--pin-dir", pins.arg()]).status.success());
    assert!(netpath_on(&pair.a, "veth-a").is_empty(), "down left programs attached");
}

/// 100 veths created and deleted on a watched bridge: each one attached, latency reported, and
/// nothing left behind.
#[test]
fn daemon_follows_100_hotplugged_veths_and_leaks_nothing() {
    require_root();
    let node = Netns::new("nph");
    node.ip(&["link", "add", "name", "br0", "type", "bridge"]);
    node.ip(&["link", "set", "br0", "up"]);
    let pins = PinDir::new();
    let run: Vec<&str> = ["--netns", node.name.as_str(), "--iface", "br0", "--persist", "--quiet"]
        .into_iter()
        .chain(pins.args())
        .collect();
    let d = Daemon::start(&run);
    let started = Instant::now();
    let mut latencies = Vec::new();
    for i in 0..100 {
        let (host, peer) = (format!("vh{i}"), format!("vp{i}"));
        node.ip(&["link", "add", "name", &host, "type", "veth", "peer", "name", &peer]);
        node.ip(&["link", "set", &host, "master", "br0", "up"]);
        let t = Instant::now();
        while netpath_on(&node, &host).len() < 2 {
            assert!(t.elapsed() < Duration::from_secs(5), "{host} not attached after 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        node.ip(&["link", "del", &host]);
    }
    let total = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (latencies[49], latencies[98]);
    eprintln!("100 veths in {total:?}; attach latency from `ip link set master` p50 {p50:.1} ms, p99 {p99:.1} ms");
    assert!(total < Duration::from_secs(30), "took {total:?}");
    // Let the daemon see the last deletion.
    std::thread::sleep(Duration::from_millis(300));
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    assert_eq!(status["daemon"]["departed"]["interfaces"], 100, "{status:#}");
    assert_eq!(status["daemon"]["attached_interfaces"], 1, "only br0 left: {status:#}");
    let pinned: Vec<String> = std::fs::read_dir(pins.path.join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pinned.len(), 2, "only br0's two links stay pinned: {pinned:?}");
    assert!(pinned.iter().all(|p| p.starts_with("br0:")), "{pinned:?}");
    let links = node.ip(&["-o", "link", "show"]);
    assert!(!links.contains("vh") && !links.contains("vp"), "{links}");
    assert!(d.stop().success());
    assert!(netpath(&["down", "--pin-dir", pins.arg()]).status.success());
    assert!(netpath_on(&node, "br0").is_empty());
}

/// An XDP program netpath did not load stays, and the error names it.
#[test]
fn daemon_leaves_a_foreign_xdp_program_alone() {
    require_root();
    let pair = Pair::new();
    // The "foreign" program: loaded and attached by this test process, not by the daemon.
    let foreign = testrun::Datapath::load(16);
    let mut foreign = foreign.bench;
    let ifindex: u32 = in_netns(&pair.a.name, || {
        netpath::node::ifaces::resolve("veth-a", None).unwrap().ifindex
    });
    let prog: &mut aya::programs::Xdp = foreign
        .program_mut(testrun::PROG_XDP_EMPTY)
        .unwrap()
        .try_into()
        .unwrap();
    in_netns(&pair.a.name, || {
        prog.attach_to_if_index(ifindex, aya::programs::XdpMode::Skb).unwrap()
    });
    let id = prog.info().unwrap().id();
    let pins = PinDir::new();
    let out = netpath(&[
        "run",
        "--netns",
        &pair.a.name,
        "--iface",
        "veth-a:xdp",
        "--pin-dir",
        pins.arg(),
        "--socket",
        pins.sock(),
        "--metrics",
        "none",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("XDP program {id} (netpath_xdp_nop)")) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        attached_programs(&pair.a, "veth-a"),
        ["xdp:netpath_xdp_nop"],
        "foreign program touched"
    );
}

/// The socket is root's: another user cannot read through it.
#[test]
fn daemon_socket_refuses_non_root() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let run: Vec<&str> = ["--netns", pair.a.name.as_str(), "--iface", "veth-a", "--quiet"]
        .into_iter()
        .chain(pins.args())
        .collect();
    let d = Daemon::start(&run);
    let root = netpath(&["status", "--socket", pins.sock(), "-o", "json"]);
    assert!(root.status.success(), "{}", String::from_utf8_lossy(&root.stderr));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(netpath_bin())
        .args(["status", "--socket", pins.sock(), "--pin-dir", pins.arg(), "-o", "json"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "non-root read status: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pins.socket).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600);
    assert!(d.stop().success());
}

/// SIGHUP re-reads the config file: a newly listed interface is attached, a dropped one detached;
/// a broken file keeps the running configuration.
#[test]
fn daemon_sighup_reloads_the_config_file() {
    require_root();
    let pair = Pair::new();
    pair.a.ip(&[
        "link", "add", "name", "extra0", "type", "veth", "peer", "name", "extra1",
    ]);
    pair.a.ip(&["link", "set", "extra0", "up"]);
    let pins = PinDir::new();
    let dir = std::env::temp_dir().join(unique("npcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("netpath.toml");
    std::fs::write(&cfg, "iface = [\"veth-a\"]\nquiet = true\n").unwrap();
    let run: Vec<&str> = ["--netns", pair.a.name.as_str(), "--config", cfg.to_str().unwrap()]
        .into_iter()
        .chain(pins.args())
        .collect();
    let d = Daemon::start_expecting(&run, 1);
    assert_eq!(netpath_on(&pair.a, "veth-a").len(), 2);
    let hup = |d: &Daemon| unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    let wait_for = |dev: &str, n: usize| {
        let t = Instant::now();
        while netpath_on(&pair.a, dev).len() != n {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{dev}: expected {n} programs, have {:?}",
                netpath_on(&pair.a, dev)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::fs::write(&cfg, "iface = [\"extra0\"]\nquiet = true\n").unwrap();
    hup(&d);
    wait_for("extra0", 2);
    wait_for("veth-a", 0);
    std::fs::write(&cfg, "iface = [\"extra0\"\nthis is not toml").unwrap();
    hup(&d);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        netpath_on(&pair.a, "extra0").len(),
        2,
        "a broken file must not change anything"
    );
    assert!(d.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// On clsact, netpath adds its own filters and removes only those: another tool's filter and the
/// qdisc stay.
#[test]
fn daemon_clsact_coexists_with_other_filters() {
    require_root();
    let pair = Pair::new();
    pair.a.exec(&["tc", "qdisc", "add", "dev", "veth-a", "clsact"]);
    // Another tool's filter: a classic-BPF cls_bpf filter that classifies everything (the test
    // kernel has no matchall/u32 classifiers).
    let out = pair.a.exec(&[
        "tc",
        "filter",
        "add",
        "dev",
        "veth-a",
        "ingress",
        "prio",
        "7",
        "handle",
        "7",
        "bpf",
        "bytecode",
        "1,6 0 0 4294967295,",
        "classid",
        "1:1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pins = PinDir::new();
    let run: Vec<&str> = [
        "--netns",
        pair.a.name.as_str(),
        "--iface",
        "veth-a",
        "--tc-hook",
        "clsact",
        "--quiet",
    ]
    .into_iter()
    .chain(pins.args())
    .collect();
    let d = Daemon::start(&run);
    let filters = String::from_utf8_lossy(
        &pair
            .a
            .exec(&["tc", "filter", "show", "dev", "veth-a", "ingress"])
            .stdout,
    )
    .into_owned();
    assert!(
        filters.contains("netpath_tc_in") && filters.contains("bytecode"),
        "{filters}"
    );
    pair.ping_from_a(2);
    let rows = netpath_json(&["stats", "--socket", pins.sock()]);
    assert_eq!(stat(&rows, "veth-a", "ingress", "icmp", "packets"), 2, "{rows}");
    assert!(d.stop().success());
    let filters = String::from_utf8_lossy(
        &pair
            .a
            .exec(&["tc", "filter", "show", "dev", "veth-a", "ingress"])
            .stdout,
    )
    .into_owned();
    assert!(
        !filters.contains("netpath") && filters.contains("bytecode"),
        "{filters}"
    );
    let qdisc = String::from_utf8_lossy(&pair.a.exec(&["tc", "qdisc", "show", "dev", "veth-a"]).stdout).into_owned();
    assert!(qdisc.contains("clsact"), "{qdisc}");
}

/// With a CRI runtime (a fake one here), the daemon names the pod behind each veth: in `ifaces`,
/// in stats rows and in flows.
#[test]
fn daemon_names_pods_through_cri() {
    use netpath_tests::fake_cri::{FakeSandbox, FakeServer, TempDir};
    require_root();
    let pair = Pair::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let info = serde_json::json!({
        "pid": 1,
        "runtimeSpec": { "linux": { "namespaces": [
            { "type": "pid" },
            { "type": "network", "path": format!("/run/netns/{}", pair.b.name) },
        ] } },
    })
    .to_string();
    let cri = FakeServer::start(
        &rt,
        TempDir::new(),
        vec![FakeSandbox::new("sb1", "default", "tea-6fb46d", Some(info))],
    );
    let pins = PinDir::new();
    let cri_sock = cri.socket.to_str().unwrap().to_string();
    let d = Daemon::on_veth_a(&pair, &pins, &["--quiet", "--cri-socket", &cri_sock]);
    pair.ping_from_a(2);
    let ifaces = netpath_json(&["ifaces", "--socket", pins.sock()]);
    let row = ifaces
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["iface"] == "veth-a")
        .expect("veth-a row")
        .clone();
    assert_eq!(
        (row["pod"].as_str(), row["pod_namespace"].as_str()),
        (Some("tea-6fb46d"), Some("default")),
        "{row:#}"
    );
    assert_eq!(row["peer_netns"], pair.b.name.as_str(), "{row:#}");
    assert_eq!(row["mode"], "tc", "{row:#}");
    let rows = netpath_json(&["stats", "--socket", pins.sock()]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["iface"] == "veth-a" && r["pod"] == "tea-6fb46d" && r["pod_namespace"] == "default"),
        "{rows}"
    );
    let flows = netpath_json(&["flows", "--socket", pins.sock(), "--class", "icmp"]);
    assert!(
        flows.as_array().unwrap().iter().all(|f| f["pod"] == "tea-6fb46d"),
        "{flows}"
    );
    let text = String::from_utf8(netpath(&["ifaces", "--socket", pins.sock()]).stdout).unwrap();
    assert!(text.contains("default/tea-6fb46d"), "{text}");
    assert!(d.stop().success());
    drop(cri);
}

/// `--tcx-order first|last` places netpath before or after another tcx program on the same hook.
#[test]
fn daemon_honours_tcx_order() {
    require_root();
    let pair = Pair::new();
    // Another tool's tcx program on veth-a's ingress, attached by this test process.
    let mut other = testrun::Datapath::load(16).ebpf;
    let prog: &mut aya::programs::SchedClassifier = other
        .program_mut(netpath::datapath::PROG_TC_EGRESS)
        .unwrap()
        .try_into()
        .unwrap();
    let other_id = prog.info().unwrap().id();
    in_netns(&pair.a.name, || {
        prog.attach("veth-a", aya::programs::TcAttachType::Ingress).unwrap()
    });
    let ingress_order = || -> Vec<u32> {
        in_netns(&pair.a.name, || {
            let (_, progs) =
                aya::programs::SchedClassifier::query_tcx("veth-a", aya::programs::TcAttachType::Ingress).unwrap();
            progs.iter().map(|p| p.id()).collect()
        })
    };
    for (order, first_is_netpath) in [("first", true), ("last", false)] {
        let pins = PinDir::new();
        let d = Daemon::on_veth_a(&pair, &pins, &["--quiet", "--tcx-order", order]);
        let ids = ingress_order();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert_eq!(
            ids[0] != other_id,
            first_is_netpath,
            "--tcx-order {order}: {ids:?} (other is {other_id})"
        );
        assert!(d.stop().success());
        assert_eq!(ingress_order(), [other_id], "netpath left, the other program stays");
    }
}

/// Two daemons on one pin directory counted every packet twice, and `netpath down` pulled the maps
/// from under a running daemon. The pin directory is now locked for a daemon's lifetime.
#[test]
fn daemon_pin_directory_is_one_daemons_and_down_refuses_under_it() {
    require_root();
    let pair = Pair::new();
    let pins = PinDir::new();
    let run = |sock: &str| -> Vec<String> {
        [
            "--netns",
            &pair.a.name,
            "--iface",
            "veth-a",
            "--quiet",
            "--pin-dir",
            pins.arg(),
            "--socket",
            sock,
        ]
        .map(String::from)
        .to_vec()
    };
    let first: Vec<String> = run(pins.sock());
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let d = Daemon::start(&first);
    let other_sock = format!("{}-2", pins.sock());
    let mut second: Vec<String> = run(&other_sock);
    second.extend(["--metrics", "none", "--duration", "5s"].map(String::from));
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let mut args = vec!["run"];
    args.extend(&second);
    let out = netpath(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pid {}", d.pid())) && err.contains(pins.arg()),
        "the refusal should name the holder and the directory: {err}"
    );
    assert_eq!(netpath_on(&pair.a, "veth-a").len(), 2, "the second daemon attached");
    let _ = std::fs::remove_file(&other_sock);

    let out = netpath(&["down", "--pin-dir", pins.arg()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pid {}", d.pid())) && err.contains("--force"),
        "{err}"
    );
    assert!(
        pins.path.join(netpath_common::maps::FLOWS).exists(),
        "a refused down removed pins"
    );

    // The lock dies with its holder, however it dies.
    d.kill9();
    let d = Daemon::start(&first);
    let out = netpath(&["down", "--pin-dir", pins.arg(), "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !pins.path.join(netpath_common::maps::FLOWS).exists(),
        "down --force left the maps"
    );
    assert!(d.stop().success());
    assert!(netpath(&["down", "--pin-dir", pins.arg()]).status.success());
    assert!(!pins.path.exists(), "down left {}", pins.path.display());
}
