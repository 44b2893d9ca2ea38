//! Suite `metrics`: `/metrics` render time and body size. netpath's exporter renders from a fake
//! backend with realistic data (200 pod interfaces, N flow rows), at 1k, 10k and 100k flows.
use std::time::Instant;

use anyhow::Result;
use netpath::model::{ifaces::IfaceRow, status::StatusReport};
use netpath_common::class;
use serde::Serialize;
use serde_json::json;

use crate::{
    cli::Opts,
    cpu::unpin,
    report::{ms, pass, Run},
    stats::Stat,
};

const GOAL_RENDER_MAX_MS: f64 = 50.0;
const GOAL_NS_PER_SERIES_MAX: f64 = 150.0;
const METRICS_IFACES: usize = 200;

/// A daemon double with realistic answers: what `/metrics` reads, served from memory.
struct FakeBackend {
    stats: Vec<netpath::model::stats::StatRow>,
    flows: Vec<netpath::model::flows::FlowRow>,
    status: StatusReport,
    ifaces: Vec<IfaceRow>,
}

impl netpath::service::api::Backend for FakeBackend {
    fn status(&self) -> std::result::Result<StatusReport, netpath::service::api::ApiError> {
        Ok(self.status.clone())
    }
    fn stats(&self) -> std::result::Result<Vec<netpath::model::stats::StatRow>, netpath::service::api::ApiError> {
        Ok(self.stats.clone())
    }
    /// As the daemon: with `top`, the heaviest flows are chosen on the raw entries (here the rows'
    /// counters) first, and only those are built (cloned); then the filter with flows::select.
    fn flows(
        &self,
        filter: &netpath::model::flows::Filter,
    ) -> std::result::Result<Vec<netpath::model::flows::FlowRow>, netpath::service::api::ApiError> {
        use netpath::model::flows::SortBy;
        let Some(n) = filter.top else {
            return Ok(netpath::model::flows::select(self.flows.clone(), filter));
        };
        let mut all: Vec<&netpath::model::flows::FlowRow> = self
            .flows
            .iter()
            .filter(|r| {
                filter.class.is_none_or(|c| r.class == c) && filter.iface.as_deref().is_none_or(|i| r.iface == i)
            })
            .collect();
        let by = filter.sort.unwrap_or(SortBy::Bytes);
        let weight = |r: &netpath::model::flows::FlowRow| match by {
            SortBy::Bytes => (r.bytes, r.packets),
            SortBy::Packets => (r.packets, r.bytes),
        };
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, |a, b| weight(b).cmp(&weight(a)));
            all.truncate(n);
        }
        Ok(netpath::model::flows::select(
            all.into_iter().cloned().collect(),
            filter,
        ))
    }
    fn ifaces(&self) -> std::result::Result<Vec<IfaceRow>, netpath::service::api::ApiError> {
        Ok(self.ifaces.clone())
    }
}

/// splitmix64: deterministic data, the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct PodIface {
    iface: String,
    ifindex: u32,
    pod: String,
    namespace: String,
    netns: String,
    ip: [u8; 4],
}

impl PodIface {
    fn owner(&self) -> netpath::model::owner::Owner {
        netpath::model::owner::Owner {
            netns: Some(self.netns.clone()),
            pod: Some(self.pod.clone()),
            pod_namespace: Some(self.namespace.clone()),
            ..Default::default()
        }
    }
}

fn fake_pods() -> Vec<PodIface> {
    let apps = [
        "web",
        "api",
        "checkout",
        "cart",
        "payments",
        "search",
        "redis",
        "postgres",
        "kafka",
        "prometheus",
        "coredns",
        "ingress-nginx",
    ];
    let namespaces = ["default", "shop", "payments", "data", "monitoring", "kube-system"];
    let mut rng = Rng(42);
    (0..METRICS_IFACES)
        .map(|i| {
            let app = apps[i % apps.len()];
            PodIface {
                iface: format!("veth{:08x}", rng.next() as u32),
                ifindex: 10 + i as u32,
                pod: format!("{app}-{:08x}-{:05x}", rng.next() as u32, rng.next() as u32 & 0xfffff),
                namespace: namespaces[i % namespaces.len()].to_string(),
                netns: format!(
                    "cni-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    rng.next() as u32,
                    rng.next() as u16,
                    rng.next() as u16,
                    rng.next() as u16,
                    rng.next() & 0xffff_ffff_ffff
                ),
                ip: [10, 244, (i / 250) as u8, (i % 250 + 2) as u8],
            }
        })
        .collect()
}

fn fake_backend(n_flows: usize) -> FakeBackend {
    let pods = fake_pods();
    let mut rng = Rng(7);
    let mut stats = Vec::new();
    for p in &pods {
        for dir in netpath_common::DIRECTIONS {
            for (c, name) in class::NAMES.iter().enumerate() {
                let packets = 1 + rng.below(10_000_000) / (c as u64 + 1);
                stats.push(netpath::model::stats::StatRow {
                    iface: p.iface.clone(),
                    ifindex: p.ifindex,
                    direction: dir.to_string(),
                    class: name.to_string(),
                    packets,
                    bytes: packets * (64 + rng.below(1400)),
                    owner: p.owner(),
                });
            }
        }
    }
    let ports: [(u16, &str, u8); 8] = [
        (80, "tcp", class::TCP),
        (443, "tcp", class::TCP),
        (8080, "tcp", class::TCP),
        (5432, "tcp", class::TCP),
        (6379, "tcp", class::TCP),
        (9090, "tcp", class::TCP),
        (53, "udp", class::UDP),
        (8125, "udp", class::UDP),
    ];
    let mut flows = Vec::with_capacity(n_flows);
    for i in 0..n_flows {
        let p = &pods[rng.below(pods.len() as u64) as usize];
        let (dport, proto, cls) = ports[rng.below(ports.len() as u64) as usize];
        let egress = rng.below(2) == 0;
        // The pod's address on its side, a peer (another pod or a service address) on the other.
        let peer = if rng.below(3) == 0 {
            format!("10.96.{}.{}", rng.below(8), rng.below(250) + 1)
        } else {
            format!("10.244.{}.{}", rng.below(4), rng.below(250) + 2)
        };
        let mine = format!("{}.{}.{}.{}", p.ip[0], p.ip[1], p.ip[2], p.ip[3]);
        let (src, dst) = if egress { (mine, peer) } else { (peer, mine) };
        // Heavy tail: a few elephants, many mice.
        let packets = 1 + 50_000_000 / (1 + rng.below(n_flows as u64 * 4));
        let bytes = packets * (64 + rng.below(1400));
        flows.push(netpath::model::flows::FlowRow {
            iface: p.iface.clone(),
            ifindex: p.ifindex,
            direction: if egress { "egress" } else { "ingress" }.into(),
            family: "ipv4".into(),
            src,
            dst,
            proto: proto.into(),
            sport: 32_768 + (i % 28_000) as u16,
            dport,
            packets,
            bytes,
            tcp_flags: if proto == "tcp" { "SA".into() } else { String::new() },
            first_seen: "2025-01-01T00:00:00.000000Z".into(),
            last_seen: "2025-01-01T00:05:00.000000Z".into(),
            active: true,
            owner: p.owner(),
            class: cls,
            ..Default::default()
        });
    }
    let by_kind: serde_json::Map<String, serde_json::Value> = netpath_common::event::kind::NAMES
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), (i as u64 * 1000).into()))
        .collect();
    let status = json!({
        "flow_table": { "capacity": 131_072, "active": n_flows, "created": n_flows * 3, "evictions": 0, "deleted": 0,
                        "insert_failed": 0, "fill_ratio": n_flows as f64 / 131_072.0 },
        "events": { "emitted": 12_345, "delivered": 12_345, "lost": 0, "suppressed": 10, "pending": 0, "by_kind": by_kind },
        "capture": { "captured": 0, "lost": 0 },
        "iface_insert_failed": 0,
        "pull_failed": 0,
        "malformed": {},
        "daemon": {
            "pid": 1234, "uptime_s": 3600, "attached_interfaces": pods.len() + 1,
            "programs": [
                { "program": "netpath_tc_in", "id": 101, "hook": "tc-ingress" },
                { "program": "netpath_tc_out", "id": 102, "hook": "tc-egress" },
                { "program": "netpath_xdp", "id": 103, "hook": "xdp" },
            ],
        },
    });
    let ifaces = pods
        .iter()
        .map(|p| IfaceRow {
            iface: p.iface.clone(),
            ifindex: p.ifindex,
            mode: Some("tc".into()),
            tc_hook: Some("tcx".into()),
            master: Some("cni0".into()),
            peer_netns: Some(p.netns.clone()),
            pod: Some(p.pod.clone()),
            pod_namespace: Some(p.namespace.clone()),
            ..Default::default()
        })
        .collect();
    FakeBackend {
        stats,
        flows,
        status: serde_json::from_value(status).expect("a status the daemon could answer"),
        ifaces,
    }
}

/// Samples in an exposition (every line that is not metadata).
fn series_count(body: &str) -> usize {
    body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

#[derive(Serialize)]
struct FormatRun {
    render_ms: Stat,
    body_bytes: usize,
    series: usize,
    ns_per_series: f64,
}

#[derive(Serialize)]
struct MetricsRun {
    flows_in_table: usize,
    top_flows: usize,
    /// The first render of a fresh exporter (it creates every series' state).
    cold_render_ms: f64,
    text: FormatRun,
    openmetrics: FormatRun,
    /// Steady-state breakdown of one text render: the backend's answers (Data::read: stats,
    /// flows (clone + sort + top), status, ifaces), the exporter's state update, and the encoding.
    backend_ms: Stat,
    /// Of which the flows() call alone (pick the top on the raw counters, clone those rows).
    backend_flows_ms: Stat,
    update_ms: Stat,
    encode_text_ms: Stat,
    encode_openmetrics_ms: Stat,
    /// update + encode, ns per series (the exporter's own cost).
    exporter_ns_per_series: f64,
    flow_series: usize,
}

fn metrics_run(fake: &FakeBackend, top_flows: usize, runs: usize) -> Result<MetricsRun> {
    use netpath::service::metrics::{Data, Exporter, MetricsOptions};
    let mut exp = Exporter::new(MetricsOptions {
        top_flows,
        ..MetricsOptions::default()
    });
    let t = Instant::now();
    std::hint::black_box(exp.render(fake, false, Instant::now())?);
    let cold = ms(t.elapsed());
    let mut fmt = |om: bool| -> Result<FormatRun> {
        let mut times = Vec::new();
        let mut body = String::new();
        for _ in 0..runs {
            let t = Instant::now();
            body = exp.render(fake, om, Instant::now())?;
            times.push(ms(t.elapsed()));
        }
        let series = series_count(&body);
        let render_ms = Stat::of(times);
        Ok(FormatRun {
            ns_per_series: render_ms.median * 1e6 / series.max(1) as f64,
            render_ms,
            body_bytes: body.len(),
            series,
        })
    };
    let text = fmt(false)?;
    let openmetrics = fmt(true)?;
    let (mut b, mut u, mut et, mut eo, mut bf) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let filter = netpath::model::flows::Filter {
        top: Some(top_flows),
        sort: Some(netpath::model::flows::SortBy::Bytes),
        ..Default::default()
    };
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(netpath::service::api::Backend::flows(fake, &filter)?);
        bf.push(ms(t.elapsed()));
        let t = Instant::now();
        let data = Data::read(fake, top_flows)?;
        b.push(ms(t.elapsed()));
        let t = Instant::now();
        exp.update(&data, Instant::now());
        u.push(ms(t.elapsed()));
        let t = Instant::now();
        std::hint::black_box(exp.encode(false)?);
        et.push(ms(t.elapsed()));
        let t = Instant::now();
        std::hint::black_box(exp.encode(true)?);
        eo.push(ms(t.elapsed()));
    }
    let (update_ms, encode_text_ms) = (Stat::of(u), Stat::of(et));
    Ok(MetricsRun {
        flows_in_table: fake.flows.len(),
        top_flows,
        cold_render_ms: cold,
        exporter_ns_per_series: (update_ms.median + encode_text_ms.median) * 1e6 / text.series.max(1) as f64,
        text,
        openmetrics,
        backend_ms: Stat::of(b),
        backend_flows_ms: Stat::of(bf),
        update_ms,
        encode_text_ms,
        encode_openmetrics_ms: Stat::of(eo),
        flow_series: exp.flow_series(),
    })
}

pub fn run(opts: &Opts) -> Result<()> {
    unpin();
    let run = Run::start("metrics", opts.quick);
    let runs = if opts.quick { 3 } else { 11 };
    let top = netpath::service::metrics::MetricsOptions::default().top_flows;
    println!(
        "Fake backend: {METRICS_IFACES} pod interfaces x 2 directions x {} classes of interface counters (pod names), N flow rows;",
        class::COUNT
    );
    println!(
        "flows() picks the top N on the raw counters, clones those rows and applies flows::select, as the daemon does."
    );
    println!("Exporter::render timed; steady state = median of {runs} renders after the first (cold) one.");
    println!();
    let mut out = Vec::new();
    for (n, top_flows) in [(1_000, top), (10_000, top), (100_000, top), (10_000, 10_000)] {
        eprint!("\r  metrics: {n} flows, top {top_flows}        ");
        let fake = fake_backend(n);
        out.push(metrics_run(&fake, top_flows, runs)?);
    }
    eprintln!();
    println!(
        "  {:>7} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "flows",
        "cap",
        "series",
        "text ms",
        "om ms",
        "cold ms",
        "body KiB",
        "backend",
        "flows()",
        "update",
        "encode",
        "ns/series",
        "exp ns/s",
        "spread"
    );
    for r in &out {
        println!(
            "  {:>7} {:>6} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.0} {:>8.0} {:>7.0}%",
            r.flows_in_table,
            r.top_flows,
            r.text.series,
            r.text.render_ms.median,
            r.openmetrics.render_ms.median,
            r.cold_render_ms,
            r.text.body_bytes as f64 / 1024.0,
            r.backend_ms.median,
            r.backend_flows_ms.median,
            r.update_ms.median,
            r.encode_text_ms.median,
            r.text.ns_per_series,
            r.exporter_ns_per_series,
            r.text.render_ms.spread_pct()
        );
    }
    println!(
        "  (ms are medians; text = Prometheus text 0.0.4, om = OpenMetrics; series = sample lines of the text body;"
    );
    println!("   backend / update / encode = the steady-state parts of a text render (flows() = the backend's flow call alone:");
    println!("   pick the top N on the raw counters, then build those rows); ns/series = text render / series;");
    println!("   exp ns/s = (update + encode) / series, the exporter without the backend; spread = (max - min) / median of the text renders)");
    println!();
    println!("Goals (reported, not asserted), on the steady-state text render with the cap (top {top} flows):");
    let mut goals = Vec::new();
    for r in out.iter().filter(|r| r.top_flows == top) {
        let (t, nps) = (r.text.render_ms.median, r.text.ns_per_series);
        println!(
            "  {}  {:>6} flows: render {:.2} ms < {GOAL_RENDER_MAX_MS} ms   {}  {:.0} ns per series <= {GOAL_NS_PER_SERIES_MAX} (exporter alone {:.0} ns {})",
            pass(t < GOAL_RENDER_MAX_MS),
            r.flows_in_table,
            t,
            pass(nps <= GOAL_NS_PER_SERIES_MAX),
            nps,
            r.exporter_ns_per_series,
            pass(r.exporter_ns_per_series <= GOAL_NS_PER_SERIES_MAX)
        );
        goals.push(json!({"flows": r.flows_in_table, "render_ms": t, "render_met": t < GOAL_RENDER_MAX_MS, "ns_per_series": nps,
            "ns_per_series_met": nps <= GOAL_NS_PER_SERIES_MAX, "exporter_ns_per_series": r.exporter_ns_per_series}));
    }
    if let (Some(capped), Some(uncapped)) = (
        out.iter().find(|r| r.flows_in_table == 10_000 && r.top_flows == top),
        out.iter().find(|r| r.top_flows == 10_000),
    ) {
        println!(
            "  the cap at 10k flows: {} series / {:.0} KiB / {:.2} ms with top {top}, {} series / {:.0} KiB / {:.2} ms without ({} flow series)",
            capped.text.series,
            capped.text.body_bytes as f64 / 1024.0,
            capped.text.render_ms.median,
            uncapped.text.series,
            uncapped.text.body_bytes as f64 / 1024.0,
            uncapped.text.render_ms.median,
            uncapped.flow_series
        );
    }

    let mut doc = run.doc();
    doc["method"] = "netpath::service::metrics::Exporter over a fake Backend (200 interfaces x 2 directions x 9 classes with pod names; N flow rows; \
                     flows() picks the top N on the raw counters and builds only those rows, like the daemon); render = Exporter::render (steady state: median after \
                     one cold render); breakdown = Data::read, Exporter::update, Exporter::encode timed separately"
        .into();
    doc["runs"] = runs.into();
    doc["interfaces"] = METRICS_IFACES.into();
    doc["results"] = json!(out);
    doc["goals"] = json!(goals);
    run.finish(doc, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_sample_lines() {
        assert_eq!(
            series_count("# HELP a x\n# TYPE a counter\na_total 1\nb{x=\"1\"} 2\n# EOF\n"),
            2
        );
    }

    #[test]
    fn metrics_fake_backend_renders_every_interface_series_and_caps_flows() {
        let fake = fake_backend(1_000);
        assert_eq!(fake.stats.len(), METRICS_IFACES * 2 * class::COUNT);
        let r = metrics_run(&fake, 100, 1).unwrap();
        // packets + bytes per interface row, the same per shown flow, and a few scalar series.
        assert!(r.text.series > 2 * fake.stats.len() + 2 * 100, "{}", r.text.series);
        assert!(r.text.series < 2 * fake.stats.len() + 2 * 100 + 50, "{}", r.text.series);
        assert_eq!(r.flow_series, 100);
        assert_eq!(r.text.series, r.openmetrics.series);
    }
}
