//! The Prometheus exporter in the lab, scraped by a real Prometheus: netpath on node 1 (cni0 with
//! its pod veths over TC, the underlay over native XDP) serves `--metrics` on loopback; a private
//! Prometheus scrapes it every second while the lab carries traffic; then every PromQL expression
//! of `deploy/grafana/netpath-node.json` must parse and return data, the exposition must pass
//! `promtool check metrics`, and OpenMetrics must be negotiated on request. (The dashboard's
//! "Cluster" row needs two nodes and the rules: `cluster.rs` checks it.)
use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netpath::service::api::percent_encode;
use netpath_lab::{Lab, TrafficOpts};
use netpath_tests::*;

pub(crate) const PROMETHEUS: &str = "/usr/bin/prometheus";
pub(crate) const PROMTOOL: &str = "/usr/bin/promtool";

/// A directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private Prometheus on loopback, killed on drop (its directory goes after it).
pub(crate) struct Prometheus {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Start it scraping `target` every second (job `netpath`) and wait until it is ready.
    fn start(target: SocketAddr) -> Prometheus {
        Self::start_with(&[target], None)
    }

    /// Start it scraping `targets` every second (job `netpath`), evaluating the rules of `rules`
    /// (a copy is loaded) every second, and wait until it is ready.
    pub(crate) fn start_with(targets: &[SocketAddr], rules: Option<&str>) -> Prometheus {
        let dir = TempDir::new("netpath-prom-");
        let config = dir.0.join("prometheus.yml");
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let rule_files = match rules {
            Some(text) => {
                std::fs::write(dir.0.join("rules.yml"), text).expect("write rules.yml");
                "rule_files:\n  - rules.yml\n"
            }
            None => "",
        };
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: netpath\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = free_addr();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
        let mut p = Prometheus {
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = http_get(p.addr, "/-/ready", None) {
                break;
            }
            if let Some(Ok(Some(st))) = p.child.as_mut().map(|c| c.try_wait()) {
                panic!("prometheus exited ({st}) before it was ready:\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/query`: the HTTP status and the parsed answer.
    pub(crate) fn query(&self, expr: &str) -> (u16, serde_json::Value) {
        let (status, _, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
            None,
        )
        .unwrap_or_else(|e| panic!("querying prometheus for {expr}: {e}"));
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {status} with non-JSON ({e}): {body}"));
        (status, v)
    }

    /// `GET PATH` of its API, parsed (`/api/v1/alerts`, say).
    pub(crate) fn api(&self, path: &str) -> serde_json::Value {
        let (status, _, body) =
            http_get(self.addr, path, None).unwrap_or_else(|e| panic!("asking prometheus for {path}: {e}"));
        assert_eq!(status, 200, "prometheus answered {status} to {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("prometheus answered non-JSON ({e}): {body}"))
    }

    /// Poll `expr` until it has a non-empty result (or `within` passed); panics unless it parses.
    /// Returns the result count (0 if it stayed empty) and the last answer.
    pub(crate) fn query_until_data(&self, expr: &str, within: Duration) -> (usize, serde_json::Value) {
        let deadline = Instant::now() + within;
        loop {
            let (status, v) = self.query(expr);
            assert_eq!(status, 200, "prometheus rejected `{expr}`: {v}");
            assert_eq!(v["status"], "success", "`{expr}`: {v}");
            let n = result_count(&v["data"]);
            if n > 0 || Instant::now() >= deadline {
                return (n, v);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Samples in a query result: vector/matrix entries; a scalar or string counts as one.
pub(crate) fn result_count(data: &serde_json::Value) -> usize {
    match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"].as_array().map_or(0, Vec::len),
        Some(_) => 1,
        None => 0,
    }
}

/// A loopback address nobody listens on (right now).
pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `promtool check metrics` on an exposition; panics on any problem it reports.
fn promtool_check(text: &str) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {PROMTOOL}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}): {}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first sample line starting with `prefix` (metric name and labels).
pub(crate) fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Every `expr` in the dashboard (panel targets, also inside rows).
pub(crate) fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// The rows that need more than one node and the rules loaded (checked by `cluster.rs`).
pub(crate) const CLUSTER_ROWS: &[&str] = &["Cluster"];

/// The dashboard's panels under the row titled `title` (Some) or under none of `except` (None),
/// whether the row is open (its panels follow it) or collapsed (they are inside it).
pub(crate) fn row_panels<'a>(
    dashboard: &'a serde_json::Value,
    title: Option<&str>,
    except: &[&str],
) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    for p in dashboard["panels"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if p["type"] == "row" {
            current = p["title"].as_str();
            let nested = p["panels"].as_array().map(Vec::as_slice).unwrap_or_default();
            out.extend(nested.iter().filter(|_| wanted(current, title, except)));
            continue;
        }
        if wanted(current, title, except) {
            out.push(p);
        }
    }
    out
}

fn wanted(row: Option<&str>, title: Option<&str>, except: &[&str]) -> bool {
    match title {
        Some(t) => row == Some(t),
        None => !row.is_some_and(|r| except.contains(&r)),
    }
}

/// Grafana `label_values(SELECTOR, LABEL)` of the query variables, as a PromQL check that the
/// selector has series with that label: `count by (LABEL) (SELECTOR)`.
fn variable_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: unexpected query {q}", var["name"]));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {}: label_values without a selector: {q}", var["name"]));
        out.push(format!("count by ({}) ({})", label.trim(), selector.trim()));
    }
    out
}

pub(crate) fn substitute(expr: &str, vars: &[(&str, String)]) -> String {
    let mut e = expr.to_string();
    // Longest names first, so `$__rate_interval` is not taken for `$__rate`.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in &vars {
        e = e.replace(&format!("${{{}}}", &name[1..]), value).replace(name, value);
    }
    assert!(
        !e.contains('$'),
        "dashboard expression uses a variable the test does not know: {expr}"
    );
    e
}

pub(crate) fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/netpath-node.json")
}

/// The dashboard, once Prometheus and promtool are there (the tests that use it run both).
pub(crate) fn prometheus_and_dashboard() -> serde_json::Value {
    for bin in [PROMETHEUS, PROMTOOL] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: this test runs a real Prometheus (Debian package `prometheus`)"
        );
    }
    serde_json::from_str(&std::fs::read_to_string(dashboard_path()).expect("read the dashboard"))
        .expect("dashboard is JSON")
}

/// Print to the real stderr (past the test harness' capture), so CI logs show the summary.
pub(crate) fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn lab_metrics_scraped_by_prometheus_feed_every_dashboard_query() {
    require_root();
    let dashboard = prometheus_and_dashboard();

    let lab = LabGuard(Lab::new(&unique("npm")));
    lab.0.up().expect("lab up");
    let node1 = lab.0.node_ns(1);
    let pods = lab.0.pods();
    let a1 = pods.iter().find(|p| p.name == "n1-pod-a").expect("n1-pod-a");
    let a2 = pods.iter().find(|p| p.name == "n2-pod-a").expect("n2-pod-a");
    let pins = PinDir::new();
    let metrics = free_addr();
    let metrics_arg = metrics.to_string();
    let mut args = vec![
        "--netns",
        &node1,
        "--iface",
        "cni0",
        "--iface",
        "ul0:xdp",
        "--metrics",
        &metrics_arg,
    ];
    args.extend(pins.args());
    let daemon = Daemon::start(&args);

    // cni0 pulls in its three pod veths: wait until all five interfaces are attached.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = http_get(metrics, "/metrics", None).expect("scrape /metrics");
        assert_eq!(status, 200, "{body}");
        let tc = sample(&body, r#"netpath_attached_interfaces{mode="tc"}"#);
        let xdp = sample(&body, r#"netpath_attached_interfaces{mode="xdp"}"#);
        if tc == Some(4.0) && xdp == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all of cni0, its 3 ports and ul0 attached within 20s (tc {tc:?}, xdp {xdp:?}):\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let prom = Prometheus::start(metrics);
    let (n, v) = prom.query_until_data(r#"up{job="netpath"} == 1"#, Duration::from_secs(20));
    assert_eq!(n, 1, "prometheus does not scrape netpath: {v}\n{}", prom.log());

    let traffic = lab.0.drive_traffic(&TrafficOpts { seconds: 8 }).expect("drive traffic");
    report(&format!("metrics test: traffic {traffic:?}"));
    assert!(
        traffic.ping_same_node_ok && traffic.ping_cross_node_ok,
        "pings failed: {traffic:?}"
    );
    // ICMP spread over several scrapes, so its rate is visible whatever the scrape phase.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a1.netns,
            "ping",
            "-n",
            "-q",
            "-c",
            "5",
            "-i",
            "0.5",
            "-W",
            "1",
            &a2.ip.to_string(),
        ])
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "ping a1 -> a2: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(3));

    // The exposition as Prometheus saw it: the target is healthy (OpenMetrics negotiated).
    let (n, v) = prom.query_until_data(r#"scrape_samples_scraped{job="netpath"} > 0"#, Duration::from_secs(5));
    assert_eq!(n, 1, "{v}");
    let (n, v) = prom.query_until_data(
        r#"rate(netpath_packets_total{class="icmp"}[1m]) > 0"#,
        Duration::from_secs(15),
    );
    report(&format!(
        "metrics test: {n:>3} series  rate(netpath_packets_total{{class=\"icmp\"}}[1m]) > 0"
    ));
    assert!(n > 0, "no ICMP packet rate in prometheus: {v}");
    // Pod veths carry the pod's netns name (no CRI in the lab).
    let pod = a1.netns.clone();
    let (n, v) = prom.query_until_data(
        &format!(r#"netpath_packets_total{{pod="{pod}", namespace=""}}"#),
        Duration::from_secs(5),
    );
    assert!(n > 0, "no series for pod {pod}: {v}");

    let (_, v) = prom.query(r#"sum by (kind) (netpath_events_total{job="netpath"})"#);
    let kinds: Vec<String> = v["data"]["result"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["metric"]["kind"].as_str().unwrap_or("?"),
                r["value"][1].as_str().unwrap_or("?")
            )
        })
        .collect();
    report(&format!("metrics test: events by kind: {}", kinds.join(" ")));

    // Every dashboard expression (and the selectors of its variables) parses and has data.
    let vars: Vec<(&str, String)> = vec![
        ("$__rate_interval", "1m".into()),
        ("$__interval", "1s".into()),
        ("$__range", "5m".into()),
        ("$instance", metrics.to_string()),
        ("$iface", ".*".into()),
        ("$pod", pod.clone()),
        ("$underlay", "ul0".into()),
    ];
    let mut exprs = Vec::new();
    for p in row_panels(&dashboard, None, CLUSTER_ROWS) {
        dashboard_exprs(p, &mut exprs);
    }
    assert!(exprs.len() >= 10, "the dashboard has only {} expressions", exprs.len());
    exprs.extend(variable_exprs(&dashboard));
    let mut failures = Vec::new();
    report(&format!(
        "metrics test: {} dashboard expressions, variables {vars:?}",
        exprs.len()
    ));
    for e in &exprs {
        let q = substitute(e, &vars);
        let (n, v) = prom.query_until_data(&q, Duration::from_secs(10));
        report(&format!("metrics test: {n:>3} series  {q}"));
        if n == 0 {
            failures.push(format!("{q}: {v}"));
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard expressions without data in the lab:\n{}",
        failures.join("\n")
    );

    // A direct scrape: the Prometheus text format passes promtool, OpenMetrics is negotiated.
    let (status, headers, text) = http_get(metrics, "/metrics", None).expect("scrape /metrics");
    assert_eq!(status, 200, "{text}");
    assert!(headers.contains("content-type: text/plain; version=0.0.4"), "{headers}");
    assert!(!text.contains("# EOF"), "{text}");
    promtool_check(&text);
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    report(&format!(
        "metrics test: promtool check metrics clean on {families} families, {series} series"
    ));
    for family in [
        "netpath_packets_total",
        "netpath_bytes_total",
        "netpath_flow_packets_total",
        "netpath_flow_bytes_total",
        "netpath_flows_active",
        "netpath_flow_evictions_total",
        "netpath_map_fill_ratio",
        "netpath_events_total",
        "netpath_events_lost_total",
        "netpath_capture_lost_total",
        "netpath_attached_interfaces",
        "netpath_program_info",
        "netpath_build_info",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family) && !l.starts_with('#')),
            "no {family} series:\n{text}"
        );
    }
    let flow_series = text
        .lines()
        .filter(|l| l.starts_with("netpath_flow_bytes_total{"))
        .count();
    assert!((1..=100).contains(&flow_series), "{flow_series} flow series (cap 100)");
    let (status, headers, om) =
        http_get(metrics, "/metrics", Some("application/openmetrics-text; version=1.0.0")).expect("scrape /metrics");
    assert_eq!(status, 200, "{om}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(om.ends_with("# EOF\n"), "OpenMetrics must end with # EOF:\n{om}");
    assert!(om.contains("# TYPE netpath_packets counter\n"), "{om}");
    let (status, _, body) = http_get(metrics, "/healthz", None).expect("healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = http_get(metrics, "/readyz", None).expect("readyz");
    assert_eq!((status, body.as_str()), (200, "ready: 5 interface(s) attached\n"));

    drop(prom);
    assert!(daemon.stop().success());
}

/// `GET path` until `pred(status, body)` holds (connection errors while the daemon starts are
/// retried), at most `timeout`; the last answer either way.
fn http_until(addr: SocketAddr, path: &str, timeout: Duration, pred: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match http_get(addr, path, None) {
            Ok((st, _, body)) => (st, body),
            Err(e) => (0, e.to_string()),
        };
        if pred(last.0, &last.1) || Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Kubernetes readiness probe on `/readyz` of a real daemon: ready while its `--iface` glob
/// matches nothing yet (a node whose CNI has not made the bridge: the daemon waits for it), and
/// ready with the interface once the link appears and is attached. The 503 answers (programs not
/// loaded, first attach not done) are the exporter's unit tests: a real daemon passes them too
/// fast to observe.
#[test]
fn readyz_of_a_daemon_waiting_for_its_interface_then_attached() {
    require_root();
    let ns = Netns::new("npr");
    let pins = PinDir::new();
    let metrics = free_addr();
    let metrics_arg = metrics.to_string();
    let mut args = vec![
        "--netns",
        ns.name.as_str(),
        "--iface",
        "npz[0]",
        "--metrics",
        &metrics_arg,
    ];
    args.extend(pins.args());
    let daemon = Daemon::start_expecting(&args, 0);
    let (st, body) = http_until(metrics, "/readyz", Duration::from_secs(15), |st, _| st == 200);
    assert_eq!(
        (st, body.as_str()),
        (200, "ready: waiting for an interface to match npz[0] (none does yet)\n")
    );
    let t = Instant::now();
    ns.ip(&["link", "add", "npz0", "type", "veth", "peer", "name", "npz1"]);
    ns.ip(&["link", "set", "npz0", "up"]);
    let (st, body) = http_until(metrics, "/readyz", Duration::from_secs(10), |_, b| {
        b.contains("attached")
    });
    assert_eq!((st, body.as_str()), (200, "ready: 1 interface(s) attached\n"));
    report(&format!(
        "metrics test: /readyz said attached {} ms after the link appeared",
        t.elapsed().as_millis()
    ));
    let (st, _, body) = http_get(metrics, "/healthz", None).expect("healthz");
    assert_eq!((st, body.as_str()), (200, "ok\n"));
    assert!(daemon.stop().success());
}
