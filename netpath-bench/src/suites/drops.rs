//! Suite `drops` (`cargo xtask bench drops`): what the drop tracer (`tp_btf/kfree_skb`, issue 12)
//! costs traffic between two pods of one node, as ratios measured in one run: netpath observing
//! node 1's cni0 and its ports with the drop tracer on, against the same with it off
//! (`netpath run --drops on|off`). The goal,
//! TCP throughput on / off >= 0.97, is printed as PASS/MISS and never asserted; CPU per packet
//! on / off is reported beside it.
//!
//! Each round runs both variants, which one goes first alternating from round to round. Each
//! variant of each round is a fresh `netpath run --drops on|off`, and
//! in it:
//! - the tracer's state: `netpath status` must say `drop tracer: on` and list a program at
//!   tp_btf/kfree_skb with drops on, and say off and list none with drops off (the run stops with
//!   an error otherwise: its ratios would compare nothing);
//! - CPU per 64-byte UDP datagram and one iperf3 TCP stream, pod A to pod B on the test CPU, as
//!   in the fastpath suite (`crate::pods`);
//! - proof that the tracer ran, or did not: datagrams to a UDP port nothing listens on in pod B,
//!   which the kernel drops (NO_SOCKET). With drops on the daemon's pinned drop table must count
//!   every one of them; with drops off it must stay empty.
//!
//! Ratios are taken within each round (the two variants, seconds apart, drift less than rounds
//! do), and their median over the rounds is the verdict; the medians of the figures themselves are
//! printed too. Everything runs in a private lab (prefix `npbd<pid>`), torn down on exit, on error
//! and on panic. Results go to stdout and to `$NETPATH_BENCH_OUT/drops.json`.
use std::{
    collections::BTreeMap,
    net::UdpSocket,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netpath::{datapath::maps::Maps, model::drops::DropReasons, node::btf::KernelBtf};
use netpath_lab::PodInfo;
use serde_json::{json, Value};

use super::netpath_json;
use crate::{
    cli::DropsOpts as Opts,
    machine::{cpu_model, kernel_version, loadavg, source_state, usable_cpus, utc_now, NETPATH_SOURCES},
    pods::{
        check_stop, iperf_tcp, ksoftirqd_pids, require_tools, set_br_nf, stop_on_signals, tcx_programs, udp_cpu_run,
        AutogroupGuard, CpuRun, Observer, PodLab, Tcp, BRNF, TOOL_NICE, TOOL_PORT_BASE, UDP_PAYLOAD,
    },
    report::{f, verdict, write_json},
    stats::{median, min_max},
};

/// TCP throughput with the drop tracer on over off (issue 12).
const GOAL_TCP: f64 = 0.97;
/// Datagrams sent to a closed port after the measurements of each variant.
const STAGED: u64 = 20;
/// The port nothing listens on in pod B (the UDP run uses 40,000 and 40,001, the tools 41,001 on).
const CLOSED_PORT: u16 = 40_002;
/// Where `netpath status` lists the tracer's program.
const TRACER_HOOK: &str = "tp_btf/kfree_skb";

const TOOLS: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ping", "iputils-ping"),
    ("iperf3", "iperf3"),
    ("taskset", "util-linux"),
    ("timeout", "coreutils"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    On,
    Off,
}

const VARIANTS: [Variant; 2] = [Variant::On, Variant::Off];

impl Variant {
    fn flag(self) -> &'static str {
        match self {
            Variant::On => "on",
            Variant::Off => "off",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Variant::On => "drops_on",
            Variant::Off => "drops_off",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Variant::On => "a netpath, drops on",
            Variant::Off => "b netpath, drops off",
        }
    }
}

/// What showed, in one variant of one round, that the tracer ran or did not.
#[derive(Clone, Debug)]
struct TracerCheck {
    round: usize,
    /// `drop tracer:` of `netpath status`.
    state: String,
    /// The id of the program `netpath status` lists at tp_btf/kfree_skb.
    program_id: Option<u32>,
    /// Drops the tracer counted during the UDP and TCP runs, by reason: anywhere on the machine
    /// (it traces every namespace).
    during: BTreeMap<String, u64>,
    /// Of the `STAGED` datagrams to a closed port, how many the drop table counted in pod B's
    /// namespace (as NO_SOCKET where this kernel names that reason; any reason otherwise).
    staged_counted: u64,
    /// Packets in the whole drop table at the end.
    table_total: u64,
}

#[derive(Default)]
struct Results {
    cpu: Vec<CpuRun>,
    tcp: Vec<Tcp>,
    checks: Vec<TracerCheck>,
    errors: Vec<String>,
}

/// The daemon's pinned drop table: packets per reason, summed over sites and CPUs; only the sites
/// in the network namespace with inode `netns` when given.
fn drop_table(pins: &Path, netns: Option<u32>) -> Result<BTreeMap<u32, u64>> {
    let maps = Maps::open_pinned(pins).context("opening the daemon's pinned maps")?;
    let mut by = BTreeMap::new();
    for (key, packets, _) in maps.drops().context("reading the drop table")? {
        if netns.is_none_or(|n| n == key.netns) {
            *by.entry(key.reason).or_default() += packets;
        }
    }
    Ok(by)
}

/// The inode of a named network namespace (what the drop table keys sites by).
fn netns_inode(name: &str) -> Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let path = Path::new("/run/netns").join(name);
    let md = std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
    Ok(md.ino() as u32)
}

/// Packets per reason in `after` that were not in `before`.
fn table_delta(after: &BTreeMap<u32, u64>, before: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    after
        .iter()
        .map(|(r, n)| (*r, n.saturating_sub(before.get(r).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `netpath status` once the daemon has started (or given up on) the drop tracer, which it does
/// off the startup path: the tracer's state and the id of a program at tp_btf/kfree_skb.
fn tracer_status(obs: &Observer) -> Result<(String, Option<u32>)> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let st = netpath_json(&["status", "--socket", obs.sock(), "--pin-dir", obs.pins.arg()])?;
        let d = &st["daemon"];
        let state = d["drop_tracer"].as_str().unwrap_or_default().to_string();
        let program = d["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["hook"] == TRACER_HOOK)
            .and_then(|p| p["id"].as_u64())
            .map(|id| id as u32);
        if !(state.is_empty() || state == "starting") || Instant::now() > until {
            return Ok((state, program));
        }
        check_stop()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send `n` UDP datagrams from pod A to a port nothing listens on in pod B: the kernel answers
/// each with ICMP port unreachable and drops it (NO_SOCKET).
fn send_to_closed_port(a: &PodInfo, b: &PodInfo, n: u64) -> Result<()> {
    let (ns, a_ip, b_ip) = (a.netns.clone(), a.ip, b.ip);
    std::thread::spawn(move || -> Result<()> {
        netpath::node::netns::enter(&ns)?;
        // Not connected: the ICMP errors coming back do not fail the sends.
        let s = UdpSocket::bind((a_ip, 0)).with_context(|| format!("binding UDP {a_ip}"))?;
        for _ in 0..n {
            s.send_to(b"netpath drop check", (b_ip, CLOSED_PORT))
                .with_context(|| format!("sending to {b_ip}:{CLOSED_PORT}"))?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("the closed-port sender panicked"))?
}

struct Bench<'a> {
    opts: &'a Opts,
    lab: &'a PodLab,
    /// The CPU every traffic thread and tool is pinned to.
    cpu: Option<usize>,
    ksoftirqd: Vec<u32>,
    next_port: u16,
    reasons: DropReasons,
    /// NO_SOCKET's value in this kernel.
    no_socket: Option<u32>,
    daemon_starts: u32,
}

impl Bench<'_> {
    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    fn named(&self, by_reason: &BTreeMap<u32, u64>) -> BTreeMap<String, u64> {
        by_reason.iter().map(|(r, n)| (self.reasons.name(*r), *n)).collect()
    }

    /// One variant of one round: a fresh daemon with drops on or off, measured, checked, stopped.
    fn measure(&mut self, v: Variant, round: usize, res: &mut Results) -> Result<()> {
        let (node, a, b) = (&self.lab.node, &self.lab.a, &self.lab.b);
        let obs = Observer::start(node, [a, b], &["--drops", v.flag()])?;
        self.daemon_starts += 1;
        let outcome = self.measure_with(&obs, v, round, res);
        obs.stop("drops");
        for p in [a, b] {
            let left = tcx_programs(node, &p.host_veth);
            if !left.is_empty() {
                bail!(
                    "netpath stopped, but {} still has TC programs {left:?}: the next variant would not start clean",
                    p.host_veth
                );
            }
        }
        outcome
    }

    fn measure_with(&mut self, obs: &Observer, v: Variant, round: usize, res: &mut Results) -> Result<()> {
        let (a, b) = (&self.lab.a, &self.lab.b);
        let label = v.label();
        let (state, program_id) = tracer_status(obs)?;
        let program = program_id
            .map(|id| format!(", program {id} at {TRACER_HOOK}"))
            .unwrap_or_else(|| format!(", no program at {TRACER_HOOK}"));
        match v {
            Variant::On if state != "on" || program_id.is_none() => {
                bail!("drops on, but netpath status says drop tracer: {state}{program}: nothing to compare")
            }
            Variant::Off if !state.starts_with("off") || program_id.is_some() => {
                bail!("drops off, but netpath status says drop tracer: {state}{program}")
            }
            _ => {}
        }
        eprintln!("  {label:<24} status: drop tracer: {state}{program}");
        let pins = obs.pins.path.as_path();
        let t0 = drop_table(pins, None)?;

        let errors_before = res.errors.len();
        let limit = Duration::from_secs(if self.opts.quick { 10 } else { 20 });
        match udp_cpu_run(
            a,
            b,
            self.opts.packets,
            self.opts.batch,
            limit,
            self.cpu,
            &self.ksoftirqd,
            Some(obs.daemon.pid()),
        ) {
            Ok(mut c) => {
                eprintln!("  {label:<24} {}; rcvbuf drops {}", c.summary(), c.rcvbuf_drops);
                c.round = round;
                res.cpu.push(c);
            }
            Err(e) => res.errors.push(format!("error: udp cpu run: {e:#}")),
        }
        check_stop()?;
        let port = self.port();
        match iperf_tcp(a, b, port, self.opts.seconds, self.cpu) {
            Ok(mut t) => {
                eprintln!(
                    "  {label:<24} iperf3 tcp: {:.2} Gbit/s ({} retransmits)",
                    t.gbps, t.retransmits
                );
                t.round = round;
                res.tcp.push(t);
            }
            Err(e) => res.errors.push(format!("error: iperf3: {e:#}")),
        }
        check_stop()?;

        let t1 = drop_table(pins, None)?;
        let pod_b = netns_inode(&b.netns)?;
        let b1 = drop_table(pins, Some(pod_b))?;
        send_to_closed_port(a, b, STAGED)?;
        std::thread::sleep(Duration::from_millis(300));
        let t2 = drop_table(pins, None)?;
        let staged = table_delta(&drop_table(pins, Some(pod_b))?, &b1);
        let staged_counted = match self.no_socket {
            Some(r) => staged.get(&r).copied().unwrap_or(0),
            None => staged.values().sum(),
        };
        let table_total: u64 = t2.values().sum();
        let during = self.named(&table_delta(&t1, &t0));
        let during_text = by_reason_text(during.iter().map(|(r, n)| (r.as_str(), *n)));
        let reason = if self.no_socket.is_some() {
            "NO_SOCKET"
        } else {
            "any reason"
        };
        eprintln!(
            "  {label:<24} drop table: {staged_counted} of {STAGED} datagrams to a closed port counted in {} ({reason}); during the runs (anywhere): {during_text}",
            b.name
        );
        match v {
            Variant::On if staged_counted < STAGED => bail!(
                "drops on: the drop table counted {staged_counted} of the {STAGED} datagrams {} sent to closed port {CLOSED_PORT} of {} ({reason}): the tracer does not see drops",
                a.name,
                b.name
            ),
            Variant::Off if table_total > 0 => bail!(
                "drops off, but the drop table counted {table_total} packets ({:?}): something traced drops",
                self.named(&t2)
            ),
            _ => {}
        }
        res.checks.push(TracerCheck {
            round,
            state,
            program_id,
            during,
            staged_counted,
            table_total,
        });
        for e in &res.errors[errors_before..] {
            eprintln!("  {label:<24} {e}");
        }
        Ok(())
    }
}

/// On / off of one figure: the ratio within each round, its median, and the medians' ratio.
struct Ratio {
    key: &'static str,
    what: &'static str,
    per_round: Vec<f64>,
    median: f64,
    of_medians: f64,
    goal: Option<f64>,
}

impl Ratio {
    fn new(
        key: &'static str,
        what: &'static str,
        res: &[(Variant, Results)],
        rounds: usize,
        figure: fn(&Results, usize) -> Option<f64>,
        goal: Option<f64>,
    ) -> Ratio {
        let get = |v: Variant| &res.iter().find(|(k, _)| *k == v).expect("variant").1;
        let (on, off) = (get(Variant::On), get(Variant::Off));
        let per_round: Vec<f64> = (0..rounds)
            .filter_map(|k| Some(figure(on, k)? / figure(off, k)?))
            .collect();
        let med = |r: &Results| median((0..rounds).filter_map(|k| figure(r, k)));
        Ratio {
            key,
            what,
            median: median(&per_round),
            of_medians: med(on) / med(off),
            per_round,
            goal,
        }
    }

    fn verdict(&self) -> &'static str {
        self.goal.map(|g| verdict(self.median, g, true)).unwrap_or("-")
    }
}

fn tcp_at(r: &Results, k: usize) -> Option<f64> {
    r.tcp.iter().find(|t| t.round == k).map(|t| t.gbps)
}
fn cpu_at(r: &Results, k: usize) -> Option<f64> {
    r.cpu.iter().find(|c| c.round == k).map(CpuRun::ns_per_pkt)
}
fn test_cpu_at(r: &Results, k: usize) -> Option<f64> {
    r.cpu.iter().find(|c| c.round == k).map(CpuRun::test_cpu_ns_per_pkt)
}

pub fn run(opts: &Opts) -> Result<()> {
    let started = Instant::now();
    stop_on_signals();
    require_tools(&TOOLS)?;
    let ncpu = usable_cpus();
    let cpu = if opts.no_pin { None } else { Some(ncpu - 1) };
    let (kernel, cpu_name, date, load0) = (kernel_version(), cpu_model(), utc_now(), loadavg());
    let (commit, dirty) = source_state(NETPATH_SOURCES);
    let reasons = KernelBtf::load().map(|k| k.drop_reasons()).unwrap_or_default();
    let no_socket = reasons.parse("NO_SOCKET").ok();

    println!("netpath-bench drops: the drop tracer's cost, pod to pod on one node: netpath observing cni0 and its ports, drop tracer on vs off");
    println!(
        "  {date}  kernel {kernel}  cpu {cpu_name} x{ncpu}  load {load0}  source {}{}",
        commit.as_deref().unwrap_or("unknown"),
        if dirty == Some(true) {
            " + uncommitted changes"
        } else {
            ""
        }
    );
    println!(
        "  {} rounds, the variants' order alternating; per variant and round: a fresh `netpath run --drops on|off`, {} x {}-byte UDP datagrams (sendmmsg batch {}), iperf3 TCP {} s, then {STAGED} datagrams to a closed port",
        opts.rounds, opts.packets, UDP_PAYLOAD, opts.batch, opts.seconds
    );
    match cpu {
        Some(c) => println!("  traffic threads and iperf3 pinned to CPU {c}, nice {TOOL_NICE}"),
        None => println!("  traffic threads and iperf3 placed by the scheduler (--no-pin), nice {TOOL_NICE}"),
    }
    let autogroup = AutogroupGuard::raise();
    if autogroup.active() {
        println!("  this session's scheduler autogroup runs at nice {TOOL_NICE} for the run (restored at the end)");
    }

    let lab = PodLab::up("drops", "npbd")?;
    // Bridged frames skip iptables, as on the fastpath suite's observe path (the switch exists
    // only once br_netfilter is loaded).
    let br_nf = Path::new(BRNF).exists();
    if br_nf {
        set_br_nf(&lab.node, false)?;
    }
    if !lab.pods_reach_each_other() {
        bail!("{} and {} cannot ping each other through cni0", lab.a.name, lab.b.name);
    }
    let mut bench = Bench {
        opts,
        lab: &lab,
        cpu,
        ksoftirqd: ksoftirqd_pids(),
        next_port: TOOL_PORT_BASE,
        reasons,
        no_socket,
        daemon_starts: 0,
    };

    let mut results: Vec<(Variant, Results)> = VARIANTS.iter().map(|v| (*v, Results::default())).collect();
    for round in 0..opts.rounds {
        let mut order = VARIANTS;
        order.rotate_left(round % VARIANTS.len());
        eprintln!(
            "round {}/{}: {}",
            round + 1,
            opts.rounds,
            order.map(Variant::key).join(", ")
        );
        for v in order {
            check_stop()?;
            let res = &mut results.iter_mut().find(|(k, _)| *k == v).expect("variant").1;
            bench.measure(v, round, res)?;
        }
    }

    // Medians.
    struct Med {
        tcp: f64,
        cpu: f64,
        test_cpu: f64,
        machine: f64,
        mpps: f64,
    }
    let med = |r: &Results| Med {
        tcp: median(r.tcp.iter().map(|t| t.gbps)),
        cpu: median(r.cpu.iter().map(CpuRun::ns_per_pkt)),
        test_cpu: median(r.cpu.iter().map(CpuRun::test_cpu_ns_per_pkt)),
        machine: median(r.cpu.iter().map(CpuRun::machine_ns_per_pkt)),
        mpps: median(r.cpu.iter().map(CpuRun::mpps)),
    };
    let test_cpu_what = match cpu {
        Some(c) => format!("busy time of CPU {c} (where all traffic ran) from /proc/stat"),
        None => "whole-machine busy time (nothing pinned)".to_string(),
    };
    println!();
    println!(
        "Medians of {} round(s); CPU per 64-byte datagram received:",
        opts.rounds
    );
    println!("  ns/pkt:   CPU time of the sender and receiver threads (with the softirq work in their context), ksoftirqd and the netpath daemon");
    println!("  test CPU: {test_cpu_what}");
    println!("  machine:  whole-machine busy time from /proc/stat (includes everything else running)");
    println!(
        "  {:<24} {:>8} {:>8} {:>9} {:>9} {:>7} {:>6}",
        "variant", "TCP Gb/s", "ns/pkt", "test CPU", "machine", "Mpps", "runs"
    );
    for (v, r) in &results {
        let m = med(r);
        println!(
            "  {:<24} {:>8} {:>8} {:>9} {:>9} {:>7} {:>6}",
            v.label(),
            f(m.tcp, 2),
            f(m.cpu, 0),
            f(m.test_cpu, 0),
            f(m.machine, 0),
            f(m.mpps, 3),
            format!("{}/{}", r.cpu.len(), r.tcp.len())
        );
    }
    println!("Spread over the rounds (min-max):");
    for (v, r) in &results {
        let range = |x: Vec<f64>, prec: usize| {
            let (lo, hi) = min_max(&x);
            format!("{}-{}", f(lo, prec), f(hi, prec))
        };
        println!(
            "  {:<24} TCP {:>11}  ns/pkt {:>11}  test CPU {:>11}",
            v.label(),
            range(r.tcp.iter().map(|t| t.gbps).collect(), 2),
            range(r.cpu.iter().map(CpuRun::ns_per_pkt).collect(), 0),
            range(r.cpu.iter().map(CpuRun::test_cpu_ns_per_pkt).collect(), 0),
        );
    }

    let ratios = [
        Ratio::new(
            "tcp_on_vs_off",
            "TCP Gbit/s on / off",
            &results,
            opts.rounds,
            tcp_at,
            Some(GOAL_TCP),
        ),
        Ratio::new(
            "cpu_on_vs_off",
            "CPU ns/pkt on / off",
            &results,
            opts.rounds,
            cpu_at,
            None,
        ),
        Ratio::new(
            "test_cpu_on_vs_off",
            "test CPU ns/pkt on / off",
            &results,
            opts.rounds,
            test_cpu_at,
            None,
        ),
    ];
    println!();
    println!("Drop tracer on / off, within each round (median over the rounds; reported, not asserted):");
    println!(
        "  {:<26} {:>7} {:>9} {:>7}  {:>10}  per round",
        "ratio", "median", "target", "", "of medians"
    );
    for r in &ratios {
        println!(
            "  {:<26} {:>7} {:>9} {:>7}  {:>10}  {}",
            r.what,
            f(r.median, 3),
            r.goal.map(|g| format!(">= {g:.2}")).unwrap_or_else(|| "-".into()),
            r.verdict(),
            f(r.of_medians, 3),
            r.per_round.iter().map(|x| f(*x, 3)).collect::<Vec<_>>().join("  ")
        );
    }

    println!();
    println!("Drop tracer, checked in every variant of every round:");
    for (v, r) in &results {
        let states: Vec<&str> = r.checks.iter().map(|c| c.state.as_str()).collect();
        let ids: Vec<String> = r
            .checks
            .iter()
            .filter_map(|c| c.program_id.map(|i| i.to_string()))
            .collect();
        let staged: Vec<String> = r.checks.iter().map(|c| c.staged_counted.to_string()).collect();
        let mut during: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &r.checks {
            for (reason, n) in &c.during {
                *during.entry(reason.as_str()).or_default() += n;
            }
        }
        let during = by_reason_text(during.into_iter());
        println!(
            "  {:<24} status \"drop tracer: {}\"; programs at {TRACER_HOOK}: {}; closed-port datagrams counted, of {STAGED}: {}; drops counted during the runs (anywhere): {during}",
            v.label(),
            dedup(&states).join("\" / \""),
            if ids.is_empty() { "none".to_string() } else { ids.join(", ") },
            staged.join(", "),
        );
    }
    let load1 = loadavg();
    println!();
    println!(
        "  load average {load0} -> {load1}; {} daemon start(s); {:.0} s in all",
        bench.daemon_starts,
        started.elapsed().as_secs_f64()
    );
    for (v, r) in &results {
        for e in &r.errors {
            println!("  {}: {e}", v.key());
        }
    }

    let variant_json = |v: Variant, r: &Results| {
        let m = med(r);
        json!({
            "label": v.label(),
            "netpath_args": format!("run --netns NODE1 --iface cni0 -q --drops {}", v.flag()),
            "median": {
                "tcp_gbit_s": m.tcp, "cpu_ns_per_packet": m.cpu, "test_cpu_ns_per_packet": m.test_cpu,
                "machine_cpu_ns_per_packet": m.machine, "mpps": m.mpps,
            },
            "udp_runs": r.cpu.iter().map(CpuRun::json).collect::<Vec<_>>(),
            "tcp_runs": r.tcp.iter().map(|t| json!({"round": t.round, "gbit_s": t.gbps, "retransmits": t.retransmits})).collect::<Vec<_>>(),
            "tracer_checks": r.checks.iter().map(|c| json!({
                "round": c.round, "drop_tracer": c.state, "program_id": c.program_id,
                "drops_during_runs_any_namespace": c.during, "closed_port_sent": STAGED, "closed_port_counted_in_pod_b": c.staged_counted,
                "drop_table_packets_at_end": c.table_total,
            })).collect::<Vec<_>>(),
            "errors": r.errors,
        })
    };
    let doc = json!({
        "bench": "drops",
        "date": date,
        "kernel": kernel,
        "cpu_model": cpu_name,
        "cpus": ncpu,
        "commit": commit,
        "netpath_sources_dirty": dirty,
        "load_average": {"start": load0, "end": load1},
        "counts": {
            "rounds": opts.rounds, "quick": opts.quick, "udp_datagrams_per_run": opts.packets, "udp_payload_bytes": UDP_PAYLOAD,
            "sendmmsg_batch": opts.batch, "iperf3_seconds": opts.seconds, "closed_port_datagrams": STAGED,
            "daemon_starts": bench.daemon_starts,
        },
        "test_cpu": cpu,
        "tool_nice": TOOL_NICE,
        "autogroup_raised": autogroup.active(),
        "bridge_nf_call_iptables": if br_nf { json!(0) } else { Value::Null },
        "variants": results.iter().map(|(v, r)| (v.key().to_string(), variant_json(*v, r))).collect::<serde_json::Map<_, _>>(),
        "ratios": ratios.iter().map(|r| (r.key.to_string(), json!({
            "what": r.what, "median_of_rounds": r.median, "per_round": r.per_round, "ratio_of_medians": r.of_medians,
            "goal": r.goal, "comparison": r.goal.map(|_| ">="), "verdict": r.goal.map(|_| r.verdict()),
        }))).collect::<serde_json::Map<_, _>>(),
        "elapsed_seconds": started.elapsed().as_secs_f64(),
    });
    let out = write_json("drops", &doc)?;
    println!("  wrote {}", out.display());
    drop(lab);
    drop(autogroup);
    Ok(())
}

/// `REASON n, REASON n`, or `none`.
fn by_reason_text<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> String {
    let parts: Vec<String> = counts.map(|(r, n)| format!("{r} {n}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// `v` without repeats, in first-seen order.
fn dedup<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in v {
        if !out.contains(s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_delta_keeps_what_grew() {
        let before = BTreeMap::from([(2, 5), (3, 1)]);
        let after = BTreeMap::from([(2, 25), (3, 1), (7, 4)]);
        assert_eq!(table_delta(&after, &before), BTreeMap::from([(2, 20), (7, 4)]));
        assert!(table_delta(&before, &before).is_empty());
    }

    #[test]
    fn ratios_are_taken_within_rounds() {
        let tcp = |g: &[f64]| Results {
            tcp: g
                .iter()
                .enumerate()
                .map(|(round, gbps)| Tcp {
                    round,
                    gbps: *gbps,
                    retransmits: 0,
                })
                .collect(),
            ..Results::default()
        };
        // Round 1 of the off variant is missing: its ratio is left out, not paired with another round.
        let mut off = tcp(&[10.0, 20.0, 10.0]);
        off.tcp.remove(1);
        let res = vec![(Variant::On, tcp(&[9.0, 18.0, 11.0])), (Variant::Off, off)];
        let r = Ratio::new("k", "w", &res, 3, tcp_at, Some(GOAL_TCP));
        assert_eq!(r.per_round, vec![0.9, 1.1]);
        assert!((r.median - 1.0).abs() < 1e-12);
        // The medians' ratio pairs the medians, whatever their rounds: 11 / 10.
        assert!((r.of_medians - 1.1).abs() < 1e-12);
        assert_eq!(r.verdict(), "PASS");
        assert_eq!(Ratio::new("k", "w", &res, 3, cpu_at, None).verdict(), "-");
        assert_eq!(dedup(&["on", "on", "off", "on"]), vec!["on", "off"]);
    }
}
