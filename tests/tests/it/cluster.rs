//! The cluster view: `deploy/prometheus/rules.yml` passes `promtool check rules` and its unit
//! tests (`rules_test.yml`); and in the lab, netpath on both nodes scraped by one real Prometheus
//! with those rules loaded sees flannel issue 2388 staged (node 2 drops UDP 8472 on its underlay
//! ingress): `NetpathVxlanPeerLoss` fires for the pair node 1 -> node 2, and stops once the fault
//! is removed. The dashboard's "Cluster" row is checked against that Prometheus too.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netpath_tests::*;

use super::metrics::{
    dashboard_exprs, free_addr, prometheus_and_dashboard, report, result_count, row_panels, sample, substitute,
    Prometheus, PROMTOOL,
};

/// The lab's VTEPs (its fixed plan: `ul0` of node 1 and node 2, flannel.1's `local`).
const VTEP1: &str = "172.27.0.11";
const VTEP2: &str = "172.27.16.10";
const ALERT: &str = "NetpathVxlanPeerLoss";

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|e| panic!("running {PROMTOOL}: {e} (Debian package `prometheus`)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn cluster_rules_pass_promtool_check_and_their_unit_tests() {
    let check = promtool(&["check", "rules", "rules.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "rules_test.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");
    // The unit tests cover every alert, firing and quiet.
    let rules = std::fs::read_to_string(prometheus_dir().join("rules.yml")).expect("rules.yml");
    let tests = std::fs::read_to_string(prometheus_dir().join("rules_test.yml")).expect("rules_test.yml");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "rules_test.yml does not test {alert}"
        );
    }
    assert!(tests.contains("exp_alerts: []"), "no test where an alert stays quiet");
    // The example scrape configuration loads the rules and passes promtool.
    let config = promtool(&["check", "config", "scrape.yml"]);
    assert!(config.contains("SUCCESS") && config.contains("rules.yml"), "{config}");
}

/// The rules as the lab test loads them: the same expressions with windows and `for:` scaled
/// down (1m -> 10s, 2m -> 20s) for a 1 s scrape. `for:` stays twice the window, as in the file:
/// when traffic between two nodes stops, the two nodes' rates fall off a scrape apart (they are
/// scraped at different moments), a deficit that lasts up to one window and must not fire.
fn fast_rules() -> String {
    let text = std::fs::read_to_string(prometheus_dir().join("rules.yml")).expect("rules.yml");
    assert!(
        text.contains("[1m]") && text.contains("for: 2m"),
        "rules.yml changed shape"
    );
    text.replace("[1m]", "[10s]").replace("for: 2m", "for: 20s")
}

/// A child killed on drop (a ping that keeps traffic flowing).
struct Bg(Option<Child>);

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c);
        }
    }
}

/// Remove node 2's iptables rule on drop (on panic too; the lab's removal would take it anyway).
struct Fault<'a> {
    node: &'a str,
    on: bool,
}

const FAULT_RULE: [&str; 7] = ["INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP"];

impl Fault<'_> {
    fn iptables(&self, op: &str) {
        let mut args = vec!["netns", "exec", self.node, "iptables", "-w", op];
        args.extend(FAULT_RULE);
        let out = Command::new("ip").args(&args).output().expect("iptables");
        assert!(
            out.status.success(),
            "iptables {op} in {}: {}",
            self.node,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn stage(&mut self) {
        self.iptables("-I");
        self.on = true;
    }
    fn remove(&mut self) {
        self.iptables("-D");
        self.on = false;
    }
}

impl Drop for Fault<'_> {
    fn drop(&mut self) {
        if self.on {
            let mut args = vec!["netns", "exec", self.node, "iptables", "-w", "-D"];
            args.extend(FAULT_RULE);
            let _ = Command::new("ip").args(&args).output();
        }
    }
}

/// The alerts named [`ALERT`] Prometheus has now: (src_vtep, dst_vtep, state).
fn peer_alerts(prom: &Prometheus) -> Vec<(String, String, String)> {
    let v = prom.api("/api/v1/alerts");
    v["data"]["alerts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|a| a["labels"]["alertname"] == ALERT)
        .map(|a| {
            let s = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
            (
                s("src_vtep"),
                s("dst_vtep"),
                a["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The first value of an instant query (None when it has no result).
fn value(prom: &Prometheus, expr: &str) -> Option<f64> {
    let (status, v) = prom.query(expr);
    assert_eq!(status, 200, "prometheus rejected `{expr}`: {v}");
    v["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

fn pair(src: &str, dst: &str) -> String {
    format!(r#"{{src_vtep="{src}", dst_vtep="{dst}"}}"#)
}

/// Poll `f` every 500 ms until it returns Some, for at most `within`.
fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A scrape of one daemon's exporter.
fn scrape(addr: SocketAddr) -> String {
    let (status, _, body) = http_get(addr, "/metrics", None).expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn cluster_lab_vxlan_loss_to_node2_fires_the_alert_in_prometheus_and_stops() {
    require_root();
    let dashboard = prometheus_and_dashboard();
    let lab = LabGuard::up("npc");
    let nodes = [lab.0.node_ns(1), lab.0.node_ns(2)];
    let pods = lab.0.pods();
    let a1 = pods.iter().find(|p| p.name == "n1-pod-a").expect("n1-pod-a");
    let a2 = pods.iter().find(|p| p.name == "n2-pod-a").expect("n2-pod-a");

    // netpath on both nodes: their own pins, sockets and metrics ports, the underlay by TC.
    let pins = [PinDir::new(), PinDir::new()];
    let metrics = [free_addr(), free_addr()];
    let metrics_args = metrics.map(|m| m.to_string());
    let daemons: Vec<Daemon> = (0..2)
        .map(|i| {
            let mut args = vec![
                "--netns",
                &nodes[i],
                "--iface",
                "cni0",
                "--iface",
                "ul0",
                "--metrics",
                &metrics_args[i],
                "--doctor-interval",
                "off",
            ];
            args.extend(pins[i].args());
            Daemon::start(&args)
        })
        .collect();
    // Each node names itself (its --netns) and its VTEP (flannel.1's local address) at once.
    for (i, vtep) in [VTEP1, VTEP2].iter().enumerate() {
        let info = format!(r#"netpath_node_info{{node_name="{}",vtep="{vtep}"}}"#, nodes[i]);
        let seen = wait_for(Duration::from_secs(10), || {
            sample(&scrape(metrics[i]), &info).filter(|v| *v == 1.0)
        });
        assert!(
            seen.is_some(),
            "node {} exports no {info}:\n{}",
            i + 1,
            scrape(metrics[i])
        );
    }

    let prom = Prometheus::start_with(&metrics, Some(&fast_rules()));
    let (n, v) = prom.query_until_data(r#"count(up{job="netpath"} == 1) == 2"#, Duration::from_secs(20));
    assert_eq!(n, 1, "prometheus does not scrape both nodes: {v}\n{}", prom.log());

    // Pod a on node 1 pings pod a on node 2, 20 per second, across the VXLAN underlay.
    let ping = Bg(Some(
        Command::new("ip")
            .args(["netns", "exec", &a1.netns, "ping", "-q", "-i", "0.05", "-w", "300"])
            .arg(a2.ip.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping"),
    ));

    // Healthy: both directions are sent and received, a near-zero deficit, no alert.
    let forward = pair(VTEP1, VTEP2);
    let backward = pair(VTEP2, VTEP1);
    let sent = wait_for(Duration::from_secs(30), || {
        value(&prom, &format!("netpath:vxlan_pair_sent_packets:rate1m{forward} > 10"))
    });
    assert!(
        sent.is_some(),
        "no VXLAN rate node 1 -> node 2 in prometheus\n{}",
        prom.log()
    );
    // Past one whole rate window of traffic.
    std::thread::sleep(Duration::from_secs(11));
    let healthy_loss = value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{forward}"));
    let healthy_back = value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{backward}"));
    report(&format!(
        "cluster test: healthy: sent {sent:?} pkt/s, loss ratio {healthy_loss:?} forward, {healthy_back:?} back"
    ));
    assert!(healthy_loss.is_some_and(|r| r < 0.1), "healthy loss {healthy_loss:?}");
    assert!(
        healthy_back.is_some_and(|r| r < 0.1),
        "healthy loss back {healthy_back:?}"
    );
    assert!(
        peer_alerts(&prom).is_empty(),
        "alert while healthy: {:?}",
        peer_alerts(&prom)
    );
    // The two nodes' own counters agree on what went from 1 to 2 (a few in flight at most).
    let egress =
        format!(r#"netpath_vxlan_peer_packets_total{{iface="ul0",direction="egress",local="{VTEP1}",peer="{VTEP2}"}}"#);
    let ingress = format!(
        r#"netpath_vxlan_peer_packets_total{{iface="ul0",direction="ingress",local="{VTEP2}",peer="{VTEP1}"}}"#
    );
    let (e, i) = (
        sample(&scrape(metrics[0]), &egress),
        sample(&scrape(metrics[1]), &ingress),
    );
    report(&format!(
        "cluster test: node 1 sent {e:?} VXLAN packets to node 2, node 2 saw {i:?}"
    ));
    let (e, i) = (e.expect("node 1's egress series"), i.expect("node 2's ingress series"));
    assert!(e > 100.0 && (e - i).abs() <= 10.0, "sent {e}, received {i}");

    // The same view from the CLI (through node 1's daemon): its name, VTEP and rows.
    let v = netpath_json(&["peers", "--socket", pins[0].sock()]);
    assert_eq!(v["node"], nodes[0].as_str(), "{v}");
    assert!(
        v["vteps"].as_array().is_some_and(|a| a.iter().any(|x| x == VTEP1)),
        "{v}"
    );
    let row = v["peers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["direction"] == "egress" && r["peer"] == VTEP2))
        .unwrap_or_else(|| panic!("no egress row to {VTEP2}: {v}"));
    assert_eq!(
        (row["iface"].as_str(), row["local"].as_str()),
        (Some("ul0"), Some(VTEP1)),
        "{v}"
    );
    assert!(row["packets"].as_u64().is_some_and(|p| p >= e as u64), "{v}");
    let table = netpath(&["peers", "--socket", pins[0].sock()]);
    report(&format!(
        "cluster test: netpath peers (node 1):\n{}",
        String::from_utf8_lossy(&table.stdout)
    ));
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));

    // Flannel issue 2388: node 2 drops UDP 8472 on arrival.
    let mut fault = Fault {
        node: &nodes[1],
        on: false,
    };
    fault.stage();
    let staged = Instant::now();
    let firing = wait_for(Duration::from_secs(90), || {
        peer_alerts(&prom)
            .into_iter()
            .find(|(s, d, st)| s == VTEP1 && d == VTEP2 && st == "firing")
    });
    let fired_after = staged.elapsed();
    assert!(
        firing.is_some(),
        "{ALERT} did not fire within 90 s: alerts {:?}, loss {:?}\n{}",
        peer_alerts(&prom),
        value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{forward}")),
        prom.log()
    );
    let loss = value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{forward}"));
    report(&format!(
        "cluster test: {ALERT} firing {:.1} s after the fault, loss ratio {loss:?}",
        fired_after.as_secs_f64()
    ));
    assert!(loss.is_some_and(|r| r > 0.5), "loss ratio {loss:?}");
    // Only the broken direction fires: nothing reaches node 2's pod, so its replies stop, and
    // what node 2 still sends arrives. (The replies stopping may hold the reverse pair pending
    // for one window; see `fast_rules`.)
    let reverse_firing = || {
        peer_alerts(&prom)
            .into_iter()
            .any(|(s, _, st)| s == VTEP2 && st == "firing")
    };
    assert!(!reverse_firing(), "the reverse pair fires: {:?}", peer_alerts(&prom));
    // Node 2's hook saw them arrive, its drop tracer saw them dropped.
    let dropped = format!(
        r#"netpath_vxlan_peer_dropped_packets_total{{iface="ul0",direction="ingress",local="{VTEP2}",peer="{VTEP1}"}}"#
    );
    let d = sample(&scrape(metrics[1]), &dropped);
    report(&format!("cluster test: node 2 dropped {d:?} VXLAN packets from node 1"));
    assert!(d.is_some_and(|d| d > 20.0), "node 2's dropped series: {d:?}");

    // The dashboard's Cluster row has data now (the alert state included).
    let vars: Vec<(&str, String)> = vec![("$__rate_interval", "1m".into()), ("$instance", metrics[1].to_string())];
    let mut exprs = Vec::new();
    for p in row_panels(&dashboard, Some("Cluster"), &[]) {
        dashboard_exprs(p, &mut exprs);
    }
    assert!(exprs.len() >= 6, "the Cluster row has only {} expressions", exprs.len());
    let mut failures = Vec::new();
    for e in &exprs {
        let q = substitute(e, &vars);
        let (n, v) = prom.query_until_data(&q, Duration::from_secs(10));
        report(&format!("cluster test: {n:>3} series  {q}"));
        if n == 0 {
            failures.push(format!("{q}: {v}"));
        }
    }
    assert!(
        failures.is_empty(),
        "Cluster row expressions without data:\n{}",
        failures.join("\n")
    );
    let (status, v) =
        prom.query(r#"count(ALERTS{alertname="NetpathVxlanPeerLoss", alertstate="firing"}) or vector(0)"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(result_count(&v["data"]), 1, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");

    assert!(!reverse_firing(), "the reverse pair fires: {:?}", peer_alerts(&prom));

    // The fault removed: traffic flows again and the alert stops.
    fault.remove();
    let removed = Instant::now();
    let quiet = wait_for(Duration::from_secs(90), || peer_alerts(&prom).is_empty().then_some(()));
    assert!(
        quiet.is_some(),
        "{ALERT} still there 90 s after the fault was removed: {:?}",
        peer_alerts(&prom)
    );
    report(&format!(
        "cluster test: {ALERT} gone {:.1} s after the fault was removed",
        removed.elapsed().as_secs_f64()
    ));
    // And node 2 receives everything again, once the fault is out of the rate window.
    let recovered = wait_for(Duration::from_secs(30), || {
        value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{forward} < 0.05"))
    });
    report(&format!("cluster test: loss ratio after the fault: {recovered:?}"));
    assert!(
        recovered.is_some(),
        "loss stays: {:?}",
        value(&prom, &format!("netpath:vxlan_pair_loss_ratio:rate1m{forward}"))
    );
    drop(ping);
    drop(prom);
    for d in daemons {
        assert!(d.stop().success(), "a daemon exited badly");
    }

    // The counters are pinned: `netpath peers` reads them without a daemon, and a restarted
    // daemon counts on from there.
    let egress_row = |v: &serde_json::Value| -> u64 {
        v["peers"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["direction"] == "egress" && r["peer"] == VTEP2))
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no egress row to {VTEP2}: {v}"))
    };
    let pinned = netpath_json(&[
        "peers",
        "--pin-dir",
        pins[0].arg(),
        "--socket",
        "/nonexistent.sock",
        "--netns",
        &nodes[0],
    ]);
    assert_eq!(pinned["node"], nodes[0].as_str(), "{pinned}");
    let before = egress_row(&pinned);
    assert!(before >= e as u64, "pinned {before}, sent {e} before the fault alone");
    let mut args = vec![
        "--netns",
        &nodes[0],
        "--iface",
        "cni0",
        "--iface",
        "ul0",
        "--doctor-interval",
        "off",
    ];
    args.extend(pins[0].args());
    let again = Daemon::start(&args);
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a1.netns, "ping", "-q", "-c", "5", "-i", "0.05", "-W", "1",
        ])
        .arg(a2.ip.to_string())
        .output()
        .expect("ping");
    assert!(out.status.success(), "ping after the restart failed");
    let after = egress_row(&netpath_json(&["peers", "--socket", pins[0].sock()]));
    report(&format!(
        "cluster test: node 1's egress to node 2: {before} pinned, {after} after a restart and 5 pings"
    ));
    assert!(after >= before + 5, "before {before}, after {after}");
    assert!(again.stop().success(), "the restarted daemon exited badly");
}
