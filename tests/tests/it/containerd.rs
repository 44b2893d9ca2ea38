//! netpath against a real container runtime: the lab's containerd (CRI plugin, CNI bridge plugin on
//! cni0, host-local IPAM) on node 1 creates and deletes pods through CRI, and netpath names them
//! from CRI, follows them as they come and go, counts their traffic and captures by pod name.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netpath_lab::containerd::{CriPod, LAB_LABEL, POD_NAMESPACE};
use netpath_tests::{proc::Proc, *};
use serde_json::Value;

/// The `ifaces` row of `iface` from the daemon.
fn iface_row(pins: &PinDir, iface: &str) -> Option<Value> {
    let rows = netpath_json(&["ifaces", "--socket", pins.sock()]);
    rows.as_array()?.iter().find(|r| r["iface"] == iface).cloned()
}

/// Wait (at most `within`) until `iface` is attached and named as pod `name`; returns the row and
/// how long it took.
fn wait_named(pins: &PinDir, iface: &str, name: &str, within: Duration) -> (Value, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(r) = iface_row(pins, iface) {
            if r["pod"] == name && r["mode"].is_string() {
                return (r, t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < within,
            "{iface} not attached and named {name} within {within:?}: {:?}",
            iface_row(pins, iface)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn host_veth(p: &CriPod) -> &str {
    p.host_veth
        .as_deref()
        .unwrap_or_else(|| panic!("{} has no host veth: {p:?}", p.name))
}

fn pod_exec(p: &CriPod, args: &[&str]) -> std::process::Output {
    let ns = p.netns.as_deref().expect("pod netns");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec")
}

fn ping(from: &CriPod, to: &CriPod, count: u32) {
    let dst = to.ip.as_deref().expect("pod ip");
    let out = pod_exec(
        from,
        &["ping", "-n", "-c", &count.to_string(), "-i", "0.2", "-W", "2", dst],
    );
    assert!(
        out.status.success(),
        "ping {dst} from {}: {}",
        from.name,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Packets of the flows on `iface` the daemon holds.
fn flow_packets(pins: &PinDir, iface: &str) -> u64 {
    let rows = netpath_json(&["flows", "--socket", pins.sock()]);
    rows.as_array()
        .expect("flow rows")
        .iter()
        .filter(|r| r["iface"] == iface)
        .map(|r| r["packets"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn containerd_pods_are_named_followed_counted_and_captured() {
    require_root();
    let lab = LabGuard::up("npr");
    let cri = lab.0.containerd();
    cri.start(&|m| eprintln!("[lab] {m}")).expect("containerd on node 1");
    let v = cri.version().expect("CRI Version");
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    let web = cri.add_pod("web-0").expect("RunPodSandbox web-0");
    let db = cri.add_pod("db-0").expect("RunPodSandbox db-0");
    for p in [&web, &db] {
        // The runtime's own names: the bridge plugin's veth, containerd's cni-<uuid> namespace,
        // an address from host-local's range.
        assert!(host_veth(p).starts_with("veth") && host_veth(p).len() == 12, "{p:?}");
        assert!(p.netns.as_deref().is_some_and(|n| n.starts_with("cni-")), "{p:?}");
        assert!(p.ip.as_deref().is_some_and(|ip| ip.starts_with("10.244.0.1")), "{p:?}");
    }
    let socket = cri.socket();
    let pins = PinDir::new();
    let node1 = lab.0.node_ns(1);
    let args: Vec<&str> = ["--netns", node1.as_str(), "--iface", "cni0", "--cri-socket"]
        .into_iter()
        .chain([socket.to_str().expect("utf-8")])
        .chain(pins.args())
        .collect();
    let daemon = Daemon::start(&args);

    // Named from CRI: pod, Kubernetes namespace, labels.
    for (p, app) in [(&web, "web"), (&db, "db")] {
        let (row, _) = wait_named(&pins, host_veth(p), &p.name, Duration::from_secs(10));
        assert_eq!(row["pod_namespace"], POD_NAMESPACE, "{row}");
        assert_eq!(row["pod_labels"]["app"], app, "{row}");
        assert_eq!(row["pod_labels"][LAB_LABEL], lab.0.prefix.as_str(), "{row}");
        assert_eq!(row["peer_netns"], p.netns.as_deref().unwrap(), "{row}");
    }
    let table = String::from_utf8(netpath(&["ifaces", "--socket", pins.sock()]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(host_veth(&web)) && l.contains("default/web-0") && l.contains("app=web")),
        "{table}"
    );

    // A pod created after netpath started: attached and named.
    let t0 = Instant::now();
    let late = cri.add_pod("web-1").expect("RunPodSandbox web-1");
    let returned = t0.elapsed();
    let (_, named_after) = wait_named(&pins, host_veth(&late), "web-1", Duration::from_secs(10));
    eprintln!("web-1: RunPodSandbox took {returned:?}; attached and named {named_after:?} after it returned");
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    eprintln!("attach latency: {}", status["daemon"]["attach_latency_ms"]);
    assert!(
        status["daemon"]["attach_latency_ms"]["count"].as_u64().unwrap_or(0) >= 1,
        "the hot-plug was not timed: {status}"
    );

    // Its traffic is counted on its veth, under its name.
    ping(&late, &db, 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while flow_packets(&pins, host_veth(&late)) < 10 {
        assert!(
            Instant::now() < deadline,
            "web-1's 5 echo requests and replies not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let flows = netpath_json(&["flows", "--socket", pins.sock(), "--pod", "web-1"]);
    assert!(
        flows
            .as_array()
            .is_some_and(|f| !f.is_empty() && f.iter().all(|r| r["pod"] == "web-1")),
        "{flows}"
    );

    // Deleted through CRI: the veth goes, and what it carried is accounted as departed.
    let before = status["daemon"]["departed"]["packets"].as_u64().unwrap_or(0);
    cri.del_pod("web-1").expect("StopPodSandbox/RemovePodSandbox web-1");
    let line = daemon
        .wait_for_line(&[host_veth(&late), "removed", "default/web-1"], Duration::from_secs(10))
        .expect("the daemon accounts the departed pod's veth by name");
    eprintln!("{line}");
    let status = netpath_json(&["status", "--socket", pins.sock()]);
    let departed = &status["daemon"]["departed"];
    assert!(departed["interfaces"].as_u64() >= Some(1), "{status}");
    assert!(departed["packets"].as_u64().unwrap_or(0) >= before + 10, "{status}");
    assert!(
        !cri.pods().expect("pods").iter().any(|p| p.name == "web-1"),
        "CRI still lists web-1"
    );
    assert!(
        !Path::new("/run/netns").join(late.netns.as_deref().unwrap()).exists(),
        "web-1's namespace is still there"
    );

    // capture --pod finds web-0's veth through the daemon and writes its frames.
    let dir = std::env::temp_dir().join(unique("netpath-cri-capture-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web-0.pcapng");
    let mut cmd = Command::new(netpath_bin());
    cmd.args([
        "capture", "--pod", "web-0", "--kind", "icmp", "-c", "4", "--netns", &node1, "-w",
    ])
    .arg(&file)
    .args(pins.args())
    .stdout(Stdio::null());
    let cap = Proc::spawn("netpath capture", cmd, "capturing on");
    ping(&web, &db, 2);
    let (st, stderr) = cap.wait(Duration::from_secs(10));
    assert!(st.success(), "capture --pod web-0: {st:?}: {stderr}");
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .output()
        .expect("tshark");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let (w, d) = (web.ip.as_deref().unwrap(), db.ip.as_deref().unwrap());
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows.iter()
            .all(|r| r[0] == host_veth(&web) && ((r[1] == w && r[2] == d) || (r[1] == d && r[2] == w))),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(daemon);

    // lab down removes containerd, its pods, shims, mounts and directories.
    let netns: Vec<String> = [&web, &db].iter().filter_map(|p| p.netns.clone()).collect();
    lab.0.down().expect("lab down");
    assert!(cri.pid().is_none(), "containerd still runs");
    for n in &netns {
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} is left behind");
    }
    for d in [cri.state_dir(), cri.root_dir()] {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    let cgroup = format!("netpath-lab-{}", lab.0.prefix);
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(&cgroup))
        .chain([Path::new("/sys/fs/cgroup").join(&cgroup)])
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "the pods' cgroups are left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&format!("netpath-lab/{}/", lab.0.prefix)),
        "mounts left behind: {mounts}"
    );
}
