//! Suite `fastpath` (`cargo xtask bench fastpath`): pod to pod on one node, through netpath's fast path
//! (`bpf_redirect_peer` from the sender's host veth straight into the receiver's namespace), the
//! plain bridge, the bridge with br_netfilter and kube-proxy-style iptables rules for 1,000
//! services, and the plain bridge with netpath observing. Goals are ratios measured in one run,
//! printed as PASS/MISS and never asserted.
//!
//! Everything happens in a private lab (`netpath_lab`, prefix `npfb<pid>`): the iptables rules and
//! the br_netfilter switch live in node 1's namespace only and vanish with it, traffic only ever
//! flows between two pods of node 1, and every namespace, daemon, pin and helper process is removed
//! on exit, on error and on panic (Drop guards; SIGINT/SIGTERM stop the run between steps).
//!
//! Per path and round (the four paths interleaved, their order rotating from round to round):
//! - CPU per packet: a sender thread in pod A sends a fixed number of 64-byte UDP datagrams as fast
//!   as it can (sendmmsg batches) to a receiver thread in pod B (recvmmsg), both pinned to the
//!   last CPU. Three figures per datagram received: the CPU time of what the test consists of
//!   (both threads' scheduler clocks, which include the softirq work run in their context, plus
//!   ksoftirqd and the netpath daemon; the headline, since it ignores other work on the machine),
//!   the busy time of the test CPU, and the whole machine's busy time, both from /proc/stat
//!   (user+nice+system+irq+softirq+steal).
//! - Request/response latency: `sockperf ping-pong --tcp` (half round trip, as sockperf reports).
//! - TCP throughput: `iperf3 -t N -J`, one stream.
//!
//! Client and server of each tool share the test CPU (so a path's cost shows up directly and no
//! cross-CPU wakeup noise is added) and run at nice -20; the session's scheduler autogroup is
//! raised to nice -20 for the run, since with autogroups another session's build would otherwise
//! take half of the test CPU whatever the tools' own nice level.
//!
//! The lab, the commands in its namespaces and the two traffic measurements (CPU per datagram,
//! iperf3) are `crate::pods`, shared with the drops suite.
//!
//! Results go to stdout and to `$NETPATH_BENCH_OUT/fastpath.json` (default `target/bench`).
use std::{
    fmt::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netpath_lab::PodInfo;
use serde_json::{json, Value};

use super::netpath_json;
use crate::{
    cli::FastpathOpts as Opts,
    machine::{cpu_model, kernel_version, loadavg, source_state, usable_cpus, utc_now, NETPATH_SOURCES},
    pods::{
        check_stop, iperf_tcp, ksoftirqd_pids, ns_ok, ns_run, ping, require_tools, set_br_nf, stop_on_signals,
        tcx_programs, udp_cpu_run, wait_listening, AutogroupGuard, Bg, CpuRun, Observer, PodLab, Tcp, BRNF, TOOL_NICE,
        TOOL_PORT_BASE, UDP_PAYLOAD,
    },
    report::{f, verdict, write_json},
    stats::{median, min_max},
};

// ---------------------------------------------------------------------------------------------
// Goals (ratios measured in the same run; reported, never asserted)

/// CPU per packet, fast path over bridge + netfilter.
const GOAL_CPU_VS_NETFILTER: f64 = 0.80;
/// CPU per packet, fast path over the plain bridge.
const GOAL_CPU_VS_BRIDGE: f64 = 0.95;
/// Latency of the fast path over the plain bridge: no worse.
const GOAL_LATENCY_VS_BRIDGE: f64 = 1.0;
/// TCP throughput of the fast path over the plain bridge: no worse.
const GOAL_TCP_VS_BRIDGE: f64 = 1.0;
/// TCP throughput with netpath observing over no netpath.
const GOAL_OBSERVE_TCP: f64 = 0.97;

/// Netfilter's bit kube-proxy uses to mark traffic that needs SNAT.
const KUBE_MARK: &str = "0x4000";

// ---------------------------------------------------------------------------------------------
// Commands

const TOOLS: [(&str, &str); 9] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ping", "iputils-ping"),
    ("bridge", "iproute2"),
    ("iptables-restore", "iptables"),
    ("iperf3", "iperf3"),
    ("sockperf", "sockperf"),
    ("taskset", "util-linux"),
    ("timeout", "coreutils"),
];

// ---------------------------------------------------------------------------------------------
// Node 1's netfilter

/// Make br_netfilter available (built in, or `modprobe br_netfilter`).
fn ensure_br_netfilter() -> Result<()> {
    if std::path::Path::new(BRNF).exists() {
        return Ok(());
    }
    let st = Command::new("modprobe")
        .arg("br_netfilter")
        .stdin(Stdio::null())
        .output();
    if std::path::Path::new(BRNF).exists() {
        return Ok(());
    }
    bail!(
        "br_netfilter is not available ({BRNF} missing; modprobe br_netfilter: {}): the bridge + netfilter path cannot be measured",
        match st {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        }
    )
}

/// `iptables v1.8.9 (nf_tables)` -> `nf_tables`.
fn iptables_variant() -> (String, String) {
    let v = Command::new("iptables")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kind = if v.contains("nf_tables") {
        "nft"
    } else if v.contains("legacy") {
        "legacy"
    } else {
        "unknown"
    };
    (kind.to_string(), v)
}

/// kube-proxy's chain names: a prefix and 16 base32 characters of a hash of the service port
/// (kube-proxy hashes with SHA-256; any stable hash gives the same shape).
fn chain_name(prefix: &str, key: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut s = String::from(prefix);
    for round in 0..2u8 {
        for b in key.bytes().chain([round]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for i in 0..8 {
            s.push(ALPHABET[((h >> (i * 5)) & 31) as usize] as char);
        }
    }
    s
}

struct Ruleset {
    text: String,
    services: usize,
    endpoints: usize,
    rejecting: usize,
}

/// An iptables-restore file laid out as kube-proxy's iptables mode lays out `services` ClusterIP
/// services (1-3 endpoints each), plus a few services without endpoints (REJECT in the filter
/// table). ClusterIPs come from 10.96.0.0/16 (no test traffic goes there); endpoints from
/// 10.244.2.0 onwards, outside both lab nodes' pod CIDRs.
fn kube_proxy_rules(services: usize) -> Ruleset {
    const PORTS: [(&str, u16, u16); 5] = [
        ("http", 80, 8080),
        ("https", 443, 8443),
        ("grpc", 9090, 9090),
        ("metrics", 8080, 8080),
        ("redis", 6379, 6379),
    ];
    let cluster_ip = |i: usize| {
        let n = 10 + i as u32; // 10.96.0.10 onwards
        format!("10.96.{}.{}", n / 256, n % 256)
    };
    let rejecting = (services / 100).max(1);
    let mut nat_chains = String::new();
    let mut nat_rules = String::new();
    let mut filter_svc = String::new();
    let mut ep = 0usize;
    for i in 0..services {
        let (pname, port, target) = PORTS[i % PORTS.len()];
        let svc = format!("ns-{}/svc-{}:{pname}", i / 20, i);
        let ip = cluster_ip(i);
        let svc_chain = chain_name("KUBE-SVC-", &svc);
        let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            nat_rules,
            "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"{svc} cluster IP\" -m tcp --dport {port} -j {svc_chain}"
        );
        let _ = writeln!(
            nat_rules,
            "-A {svc_chain} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m comment --comment \"{svc} cluster IP\" -m tcp --dport {port} -j KUBE-MARK-MASQ"
        );
        let k = 1 + i % 3;
        let mut seps = Vec::new();
        for j in 0..k {
            let epip = format!("10.244.{}.{}", 2 + ep / 250, 2 + ep % 250);
            ep += 1;
            let sep = chain_name("KUBE-SEP-", &format!("{svc}/{epip}"));
            let _ = writeln!(nat_chains, ":{sep} - [0:0]");
            let left = k - j;
            if left > 1 {
                let _ = writeln!(
                    nat_rules,
                    "-A {svc_chain} -m comment --comment \"{svc} -> {epip}:{target}\" -m statistic --mode random --probability {:.10} -j {sep}",
                    1.0 / left as f64
                );
            } else {
                let _ = writeln!(
                    nat_rules,
                    "-A {svc_chain} -m comment --comment \"{svc} -> {epip}:{target}\" -j {sep}"
                );
            }
            seps.push((sep, epip));
        }
        for (sep, epip) in seps {
            let _ = writeln!(
                nat_rules,
                "-A {sep} -s {epip}/32 -m comment --comment \"{svc}\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                nat_rules,
                "-A {sep} -p tcp -m comment --comment \"{svc}\" -m tcp -j DNAT --to-destination {epip}:{target}"
            );
        }
    }
    for r in 0..rejecting {
        let ip = cluster_ip(services + r);
        let _ = writeln!(
            filter_svc,
            "-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment \"ns-empty/svc-{r}:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
        );
    }
    let mut t = String::new();
    t.push_str(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n\
         :KUBE-KUBELET-CANARY - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-CANARY - [0:0]\n\
         :KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n",
    );
    let _ = write!(
        t,
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
         -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A INPUT -j KUBE-FIREWALL\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
         -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -j KUBE-FIREWALL\n\
         -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {KUBE_MARK}/{KUBE_MARK} -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    );
    t.push_str(&filter_svc);
    t.push_str("COMMIT\n");
    t.push_str(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n",
    );
    t.push_str(&nat_chains);
    let _ = write!(
        t,
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark {KUBE_MARK}/{KUBE_MARK}\n\
         -A KUBE-POSTROUTING -m mark ! --mark {KUBE_MARK}/{KUBE_MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark {KUBE_MARK}/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"
    );
    t.push_str(&nat_rules);
    t.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    t.push_str("COMMIT\n");
    Ruleset {
        text: t,
        services,
        endpoints: ep,
        rejecting,
    }
}

/// Rules per table as `iptables-save` in `ns` reports them.
fn count_rules(ns: &str) -> Result<(usize, usize)> {
    let save = ns_ok(ns, 30.0, &["iptables-save"])?;
    let (mut table, mut filter, mut nat) = ("", 0, 0);
    for l in save.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = if t == "filter" {
                "filter"
            } else if t == "nat" {
                "nat"
            } else {
                ""
            };
        } else if l.starts_with("-A ") {
            match table {
                "filter" => filter += 1,
                "nat" => nat += 1,
                _ => {}
            }
        }
    }
    Ok((filter, nat))
}

/// Packets that went through the FORWARD hook of node 1's filter table: the counter of its
/// unconditional jump to KUBE-FORWARD (the largest counter in the chain).
fn forward_packets(ns: &str) -> Result<u64> {
    let out = ns_ok(
        ns,
        10.0,
        &["iptables", "-t", "filter", "-L", "FORWARD", "-v", "-x", "-n"],
    )?;
    Ok(out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0))
}

fn conntrack_count(ns: &str) -> Option<u64> {
    ns_ok(ns, 5.0, &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
        .ok()?
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// netpath: daemon sessions and the fast path

/// The daemon on node 1's cni0, and whether the fast path is enabled in it.
struct Session {
    obs: Observer,
    fast: bool,
}

fn fastpath_cmd(sock: &str, args: &[&str]) -> Result<Value> {
    netpath_json(&[&["fastpath", "--socket", sock], args].concat())
}

fn fastpath_status(sock: &str) -> Result<Value> {
    fastpath_cmd(sock, &["status"])
}

// ---------------------------------------------------------------------------------------------
// Request/response latency

#[derive(Clone, Debug, Default)]
struct Latency {
    round: usize,
    avg_us: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    observations: u64,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn parse_sockperf(out: &str) -> Result<Latency> {
    let s = strip_ansi(out);
    let num_after = |key: &str| -> Option<f64> {
        let i = s.find(key)? + key.len();
        let rest = s[i..].trim_start_matches([' ', '=']);
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let avg = num_after("avg-latency=").ok_or_else(|| anyhow!("no avg-latency in sockperf output: {}", s.trim()))?;
    Ok(Latency {
        round: 0,
        avg_us: avg,
        p50_us: num_after("percentile 50.000").unwrap_or(f64::NAN),
        p99_us: num_after("percentile 99.000").ok_or_else(|| anyhow!("no 99th percentile in sockperf output"))?,
        p999_us: num_after("percentile 99.900").unwrap_or(f64::NAN),
        // "Total 251236 observations" (not "[Total Run] ...").
        observations: s
            .match_indices("Total ")
            .find_map(|(i, _)| s[i + 6..].split_whitespace().next()?.parse().ok())
            .unwrap_or(0),
    })
}

fn sockperf(a: &PodInfo, b: &PodInfo, port: u16, secs: u32, cpu: Option<usize>) -> Result<Latency> {
    let bip = b.ip.to_string();
    let p = port.to_string();
    let mut srv = Bg::spawn(
        &b.netns,
        f64::from(secs) + 15.0,
        cpu,
        &["sockperf", "sr", "--tcp", "-i", &bip, "-p", &p],
    )?;
    wait_listening(&b.netns, port, &mut srv, "sockperf")?;
    let out = ns_run(
        &a.netns,
        f64::from(secs) + 10.0,
        cpu,
        true,
        &["sockperf", "pp", "--tcp", "-i", &bip, "-p", &p, "-t", &secs.to_string()],
    )?;
    drop(srv);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("sockperf pp failed ({}): {}", out.status, strip_ansi(text.trim()));
    }
    parse_sockperf(&text)
}

// ---------------------------------------------------------------------------------------------
// Paths

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathKind {
    Fast,
    Bridge,
    Netfilter,
    Observe,
}

const ALL_PATHS: [PathKind; 4] = [PathKind::Fast, PathKind::Bridge, PathKind::Netfilter, PathKind::Observe];

impl PathKind {
    fn key(self) -> &'static str {
        match self {
            PathKind::Fast => "fastpath",
            PathKind::Bridge => "bridge",
            PathKind::Netfilter => "bridge_netfilter",
            PathKind::Observe => "bridge_observe",
        }
    }
    fn label(self) -> &'static str {
        match self {
            PathKind::Fast => "1 fast path (netpath, fastpath on)",
            PathKind::Bridge => "2 plain bridge (no netpath)",
            PathKind::Netfilter => "3 bridge + netfilter (no netpath)",
            PathKind::Observe => "4 plain bridge + netpath observe",
        }
    }
    /// bridge-nf-call-iptables in node 1. The fast path runs as a Kubernetes node would: with
    /// br_netfilter on and the rules loaded; it is meant to bypass them.
    fn br_nf(self) -> bool {
        matches!(self, PathKind::Fast | PathKind::Netfilter)
    }
    fn daemon(self) -> bool {
        matches!(self, PathKind::Fast | PathKind::Observe)
    }
    fn describe(self) -> &'static str {
        match self {
            PathKind::Fast => {
                "netpath attached to cni0 and its ports, fastpath enabled; bridge-nf-call-iptables=1, rules loaded"
            }
            PathKind::Bridge => "no netpath; bridge-nf-call-iptables=0",
            PathKind::Netfilter => "no netpath; bridge-nf-call-iptables=1, kube-proxy rules loaded",
            PathKind::Observe => "netpath attached to cni0 and its ports (observe only); bridge-nf-call-iptables=0",
        }
    }
}

#[derive(Default)]
struct PathResults {
    cpu: Vec<CpuRun>,
    lat: Vec<Latency>,
    tcp: Vec<Tcp>,
    errors: Vec<String>,
}

enum FastState {
    Untried,
    Ok { entries: Value },
    Unavailable(String),
}

struct Bench<'a> {
    opts: &'a Opts,
    node: String,
    a: PodInfo,
    b: PodInfo,
    /// The CPU every traffic thread and tool is pinned to.
    cpu: Option<usize>,
    session: Option<Session>,
    fast: FastState,
    br_nf: Option<bool>,
    next_port: u16,
    daemon_starts: u32,
    ksoftirqd: Vec<u32>,
    round: usize,
}

impl Bench<'_> {
    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    fn sock(&self) -> Option<String> {
        self.session.as_ref().map(|s| s.obs.sock().to_string())
    }

    fn start_daemon(&mut self) -> Result<()> {
        if self.session.is_some() {
            return Ok(());
        }
        let obs = Observer::start(&self.node, [&self.a, &self.b], &[])?;
        self.daemon_starts += 1;
        self.session = Some(Session { obs, fast: false });
        Ok(())
    }

    fn stop_daemon(&mut self) -> Result<()> {
        if let Some(s) = self.session.take() {
            if s.fast {
                let _ = fastpath_cmd(s.obs.sock(), &["disable"]);
            }
            s.obs.stop("fastpath");
        }
        for p in [&self.a, &self.b] {
            let left = tcx_programs(&self.node, &p.host_veth);
            if !left.is_empty() {
                bail!(
                    "netpath stopped, but {} still has TC programs {left:?}: the no-netpath paths would not be clean",
                    p.host_veth
                );
            }
        }
        Ok(())
    }

    /// Enable the fast path and check it redirects. Ok(false) (and FastState::Unavailable) when it
    /// cannot.
    fn enable_fast(&mut self) -> Result<bool> {
        if let FastState::Unavailable(_) = self.fast {
            return Ok(false);
        }
        let sock = self.sock().ok_or_else(|| anyhow!("no daemon"))?;
        let attempt = (|| -> std::result::Result<Value, String> {
            fastpath_cmd(&sock, &["enable", "--bridge", "cni0"]).map_err(|e| format!("enable failed: {e:#}"))?;
            // The daemon learns MACs from the bridge FDB about once a second: traffic both ways.
            ping(&self.a, &self.b, 3);
            ping(&self.b, &self.a, 3);
            std::thread::sleep(Duration::from_millis(1600));
            let st = fastpath_status(&sock).map_err(|e| format!("status failed: {e:#}"))?;
            if st["enabled"] != true {
                return Err(format!("enabled, but status says {st}"));
            }
            let r0 = st["redirected"].as_u64().unwrap_or(0);
            ping(&self.a, &self.b, 5);
            let st2 = fastpath_status(&sock).map_err(|e| format!("status failed: {e:#}"))?;
            let r1 = st2["redirected"].as_u64().unwrap_or(0);
            if r1 <= r0 {
                return Err(format!(
                    "enabled, but `redirected` stayed at {r0} over 5 pings {} -> {} (entries: {})",
                    self.a.name, self.b.name, st2["entries"]
                ));
            }
            Ok(st2["entries"].clone())
        })();
        if let Some(s) = self.session.as_mut() {
            s.fast = true;
        }
        match attempt {
            Ok(entries) => {
                self.fast = FastState::Ok { entries };
                Ok(true)
            }
            Err(why) => {
                eprintln!("netpath-bench fastpath: fast path unavailable: {why}");
                let _ = fastpath_cmd(&sock, &["disable"]);
                if let Some(s) = self.session.as_mut() {
                    s.fast = false;
                }
                self.fast = FastState::Unavailable(why);
                Ok(false)
            }
        }
    }

    fn disable_fast(&mut self) -> Result<()> {
        if let Some(s) = self.session.as_mut() {
            if s.fast {
                fastpath_cmd(s.obs.sock(), &["disable"])?;
                s.fast = false;
            }
        }
        Ok(())
    }

    /// Put node 1 into the configuration of `path`. Ok(false): the path cannot run (fast path
    /// unavailable).
    fn prepare(&mut self, path: PathKind) -> Result<bool> {
        if self.br_nf != Some(path.br_nf()) {
            set_br_nf(&self.node, path.br_nf())?;
            self.br_nf = Some(path.br_nf());
        }
        if !path.daemon() {
            self.stop_daemon()?;
            return Ok(true);
        }
        if path == PathKind::Fast && matches!(self.fast, FastState::Unavailable(_)) {
            return Ok(false);
        }
        self.start_daemon()?;
        if path == PathKind::Fast {
            if self.session.as_ref().is_some_and(|s| s.fast) {
                return Ok(true);
            }
            return self.enable_fast();
        }
        self.disable_fast()?;
        Ok(true)
    }

    fn redirected(&self) -> Option<u64> {
        let s = self.session.as_ref()?;
        fastpath_status(s.obs.sock()).ok()?["redirected"].as_u64()
    }

    fn measure(&mut self, path: PathKind, res: &mut PathResults) -> Result<()> {
        let secs = self.opts.seconds;
        let errors_before = res.errors.len();
        // CPU per packet.
        let nf0 = forward_packets(&self.node).unwrap_or(0);
        let r0 = self.redirected();
        let limit = Duration::from_secs(if self.opts.quick { 10 } else { 20 });
        let daemon = self.session.as_ref().map(|s| s.obs.daemon.pid());
        match udp_cpu_run(
            &self.a,
            &self.b,
            self.opts.packets,
            self.opts.batch,
            limit,
            self.cpu,
            &self.ksoftirqd,
            daemon,
        ) {
            Ok(mut c) => {
                c.nf_forward = forward_packets(&self.node).unwrap_or(0).saturating_sub(nf0);
                c.redirected = match (r0, self.redirected()) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                    _ => None,
                };
                eprintln!(
                    "  {:<36} {}; netfilter saw {}{}",
                    path.label(),
                    c.summary(),
                    c.nf_forward,
                    c.redirected.map(|r| format!(", redirected {r}")).unwrap_or_default()
                );
                if path == PathKind::Fast && c.redirected.unwrap_or(0) < c.received * 9 / 10 {
                    res.errors.push(format!(
                        "note: the fast path redirected only {} of the {} datagrams received",
                        c.redirected.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                        c.received
                    ));
                }
                if path == PathKind::Netfilter && c.nf_forward < c.received * 9 / 10 {
                    res.errors.push(format!(
                        "note: netfilter's FORWARD hook saw only {} of the {} datagrams",
                        c.nf_forward, c.received
                    ));
                }
                c.round = self.round;
                res.cpu.push(c);
            }
            Err(e) => res.errors.push(format!("error: udp cpu run: {e:#}")),
        }
        check_stop()?;
        let port = self.port();
        match sockperf(&self.a, &self.b, port, secs, self.cpu) {
            Ok(l) => {
                eprintln!(
                    "  {:<36} sockperf tcp: avg {:.2} us, p50 {:.2}, p99 {:.2}, p99.9 {:.2} ({} observations)",
                    path.label(),
                    l.avg_us,
                    l.p50_us,
                    l.p99_us,
                    l.p999_us,
                    l.observations
                );
                let mut l = l;
                l.round = self.round;
                res.lat.push(l);
            }
            Err(e) => res.errors.push(format!("error: sockperf: {e:#}")),
        }
        check_stop()?;
        let port = self.port();
        match iperf_tcp(&self.a, &self.b, port, secs, self.cpu) {
            Ok(t) => {
                eprintln!(
                    "  {:<36} iperf3 tcp: {:.2} Gbit/s ({} retransmits)",
                    path.label(),
                    t.gbps,
                    t.retransmits
                );
                let mut t = t;
                t.round = self.round;
                res.tcp.push(t);
            }
            Err(e) => res.errors.push(format!("error: iperf3: {e:#}")),
        }
        for e in &res.errors[errors_before..] {
            eprintln!("  {:<36} {e}", path.label());
        }
        check_stop()
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// Returns whether the fast path was measured.
pub fn run(opts: &Opts) -> Result<bool> {
    let started = Instant::now();
    stop_on_signals();
    require_tools(&TOOLS)?;
    ensure_br_netfilter()?;
    let (ipt_kind, ipt_version) = iptables_variant();
    let ncpu = usable_cpus();
    // Sender and client on the last CPU, receiver and server on the first.
    let cpu = if opts.no_pin { None } else { Some(ncpu - 1) };
    let (kernel, cpu_name, date, load0) = (kernel_version(), cpu_model(), utc_now(), loadavg());
    let (commit, dirty) = source_state(NETPATH_SOURCES);
    println!("netpath-bench fastpath: pod to pod on one node: fast path vs bridge vs bridge + netfilter");
    println!("  {date}  kernel {kernel}  cpu {cpu_name} x{ncpu}  load {load0}");
    println!("  iptables: {ipt_version} ({ipt_kind})");
    println!(
        "  {} rounds; per path and round: {} x {}-byte UDP datagrams (sendmmsg batch {}), sockperf ping-pong --tcp {} s, iperf3 TCP {} s",
        opts.rounds, opts.packets, UDP_PAYLOAD, opts.batch, opts.seconds, opts.seconds
    );

    match cpu {
        Some(c) => println!(
            "  traffic threads and tools (sender, receiver, sockperf, iperf3) pinned to CPU {c}, nice {TOOL_NICE}"
        ),
        None => println!("  traffic threads and tools placed by the scheduler (--no-pin), nice {TOOL_NICE}"),
    }
    let autogroup = AutogroupGuard::raise();
    if autogroup.active() {
        println!("  this session's scheduler autogroup runs at nice {TOOL_NICE} for the run (restored at the end)");
    }

    let lab = PodLab::up("fastpath", "npfb")?;
    let (node, a, b) = (lab.node.clone(), lab.a.clone(), lab.b.clone());

    // kube-proxy-style rules, in node 1's namespace only.
    let rules = kube_proxy_rules(opts.services);
    let t0 = Instant::now();
    let file = std::env::temp_dir().join(format!("{}-iptables.rules", lab.lab.0.prefix));
    std::fs::write(&file, &rules.text).context("writing the rules file")?;
    let restored = ns_ok(
        &node,
        120.0,
        &["iptables-restore", file.to_str().expect("utf-8 temp path")],
    );
    let _ = std::fs::remove_file(&file);
    restored.context("iptables-restore in node 1")?;
    let restore_s = t0.elapsed().as_secs_f64();
    let (filter_rules, nat_rules) = count_rules(&node)?;
    println!(
        "  node 1 netfilter: {} services ({} endpoints, {} without endpoints): {nat_rules} nat + {filter_rules} filter rules, loaded in {restore_s:.1} s",
        rules.services, rules.endpoints, rules.rejecting
    );

    let mut bench = Bench {
        opts,
        node: node.clone(),
        a: a.clone(),
        b: b.clone(),
        cpu,
        session: None,
        fast: FastState::Untried,
        br_nf: None,
        next_port: TOOL_PORT_BASE,
        daemon_starts: 0,
        ksoftirqd: ksoftirqd_pids(),
        round: 0,
    };
    if !lab.pods_reach_each_other() {
        bail!("{} and {} cannot ping each other through cni0", a.name, b.name);
    }

    let mut results: Vec<(PathKind, PathResults)> = ALL_PATHS.iter().map(|p| (*p, PathResults::default())).collect();
    let base = [PathKind::Bridge, PathKind::Netfilter, PathKind::Observe, PathKind::Fast];
    let outcome = (|| -> Result<()> {
        for round in 0..opts.rounds {
            let mut order = base;
            order.rotate_left(round % base.len());
            eprintln!(
                "round {}/{}: {}",
                round + 1,
                opts.rounds,
                order.map(|p| p.key()).join(", ")
            );
            for path in order {
                check_stop()?;
                if !bench.prepare(path)? {
                    continue;
                }
                let res = &mut results.iter_mut().find(|(p, _)| *p == path).expect("path").1;
                bench.round = round;
                bench.measure(path, res)?;
            }
        }
        Ok(())
    })();
    let fast_entries = match &bench.fast {
        FastState::Ok { entries } => entries.clone(),
        _ => Value::Null,
    };
    let conntrack = conntrack_count(&node);
    let stop = bench.stop_daemon();
    outcome?;
    stop?;

    // Medians.
    struct Med {
        cpu: f64,
        thread: f64,
        test_cpu: f64,
        machine: f64,
        mpps: f64,
        lat_avg: f64,
        lat_p99: f64,
        tcp: f64,
    }
    let med = |r: &PathResults| Med {
        cpu: median(r.cpu.iter().map(CpuRun::ns_per_pkt)),
        thread: median(r.cpu.iter().map(CpuRun::thread_ns_per_pkt)),
        test_cpu: median(r.cpu.iter().map(CpuRun::test_cpu_ns_per_pkt)),
        machine: median(r.cpu.iter().map(CpuRun::machine_ns_per_pkt)),
        mpps: median(r.cpu.iter().map(CpuRun::mpps)),
        lat_avg: median(r.lat.iter().map(|l| l.avg_us)),
        lat_p99: median(r.lat.iter().map(|l| l.p99_us)),
        tcp: median(r.tcp.iter().map(|t| t.gbps)),
    };
    let get = |p: PathKind| &results.iter().find(|(k, _)| *k == p).expect("path").1;
    let m: Vec<(PathKind, Med)> = ALL_PATHS.iter().map(|p| (*p, med(get(*p)))).collect();
    let mm = |p: PathKind| &m.iter().find(|(k, _)| *k == p).expect("path").1;
    let (fast, bridge, nf, obs) = (
        mm(PathKind::Fast),
        mm(PathKind::Bridge),
        mm(PathKind::Netfilter),
        mm(PathKind::Observe),
    );

    let test_cpu_what = match cpu {
        Some(c) => format!("busy time of CPU {c} (where all traffic ran) from /proc/stat"),
        None => "whole-machine busy time (nothing pinned)".to_string(),
    };
    println!();
    println!("Medians of {} round(s), per 64-byte datagram received:", opts.rounds);
    println!("  ns/pkt:   CPU time of the sender and receiver threads (with the softirq work in their context), ksoftirqd and the netpath daemon");
    println!("  test CPU: {test_cpu_what}");
    println!("  machine:  whole-machine busy time from /proc/stat (includes everything else running)");
    println!("Latency: sockperf ping-pong --tcp, half round trip, usec.");
    println!(
        "  {:<36} {:>8} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6}",
        "path", "ns/pkt", "test CPU", "machine", "Mpps", "lat avg", "lat p99", "TCP Gb/s", "runs"
    );
    for (p, x) in &m {
        let r = get(*p);
        println!(
            "  {:<36} {:>8} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6}",
            p.label(),
            f(x.cpu, 0),
            f(x.test_cpu, 0),
            f(x.machine, 0),
            f(x.mpps, 3),
            f(x.lat_avg, 2),
            f(x.lat_p99, 2),
            f(x.tcp, 2),
            format!("{}/{}/{}", r.cpu.len(), r.lat.len(), r.tcp.len())
        );
    }
    println!("Spread over the rounds (min-max):");
    for (p, _) in &m {
        let r = get(*p);
        let range = |v: Vec<f64>, prec: usize| {
            let (lo, hi) = min_max(&v);
            format!("{}-{}", f(lo, prec), f(hi, prec))
        };
        println!(
            "  {:<36} ns/pkt {:>11}  test CPU {:>11}  lat avg {:>11}  p99 {:>13}  TCP {:>11}",
            p.label(),
            range(r.cpu.iter().map(CpuRun::ns_per_pkt).collect(), 0),
            range(r.cpu.iter().map(CpuRun::test_cpu_ns_per_pkt).collect(), 0),
            range(r.lat.iter().map(|l| l.avg_us).collect(), 2),
            range(r.lat.iter().map(|l| l.p99_us).collect(), 2),
            range(r.tcp.iter().map(|t| t.gbps).collect(), 2),
        );
    }
    let fast_reason = match &bench.fast {
        FastState::Ok { .. } => None,
        FastState::Unavailable(why) => Some(why.clone()),
        FastState::Untried => Some("not tried".to_string()),
    };
    if let Some(why) = &fast_reason {
        println!("  FAST PATH UNAVAILABLE: {why}");
        println!("  (path 1 was not measured; its goals are N/A)");
    }

    struct Goal {
        key: &'static str,
        what: &'static str,
        value: f64,
        goal: f64,
        higher: bool,
        /// The same ratio from the test CPU's and the whole machine's busy time (CPU goals).
        alt: Option<(f64, f64)>,
        /// The ratio within each round (paths measured minutes apart drift less than across rounds).
        per_round: Vec<f64>,
    }
    type Metric = fn(&PathResults, usize) -> Option<f64>;
    let cpu_at: Metric = |r, k| r.cpu.iter().find(|c| c.round == k).map(CpuRun::ns_per_pkt);
    let lat_avg_at: Metric = |r, k| r.lat.iter().find(|l| l.round == k).map(|l| l.avg_us);
    let lat_p99_at: Metric = |r, k| r.lat.iter().find(|l| l.round == k).map(|l| l.p99_us);
    let tcp_at: Metric = |r, k| r.tcp.iter().find(|t| t.round == k).map(|t| t.gbps);
    let per_round = |num: PathKind, den: PathKind, m: Metric| -> Vec<f64> {
        (0..opts.rounds)
            .filter_map(|k| Some(m(get(num), k)? / m(get(den), k)?))
            .collect()
    };
    let goals = [
        Goal {
            key: "cpu_fast_vs_netfilter",
            what: "CPU/pkt fast path / bridge+netfilter",
            value: fast.cpu / nf.cpu,
            goal: GOAL_CPU_VS_NETFILTER,
            higher: false,
            alt: Some((fast.test_cpu / nf.test_cpu, fast.machine / nf.machine)),
            per_round: per_round(PathKind::Fast, PathKind::Netfilter, cpu_at),
        },
        Goal {
            key: "cpu_fast_vs_bridge",
            what: "CPU/pkt fast path / plain bridge",
            value: fast.cpu / bridge.cpu,
            goal: GOAL_CPU_VS_BRIDGE,
            higher: false,
            alt: Some((fast.test_cpu / bridge.test_cpu, fast.machine / bridge.machine)),
            per_round: per_round(PathKind::Fast, PathKind::Bridge, cpu_at),
        },
        Goal {
            key: "latency_avg_fast_vs_bridge",
            what: "latency avg fast path / plain bridge",
            value: fast.lat_avg / bridge.lat_avg,
            goal: GOAL_LATENCY_VS_BRIDGE,
            higher: false,
            alt: None,
            per_round: per_round(PathKind::Fast, PathKind::Bridge, lat_avg_at),
        },
        Goal {
            key: "latency_p99_fast_vs_bridge",
            what: "latency p99 fast path / plain bridge",
            value: fast.lat_p99 / bridge.lat_p99,
            goal: GOAL_LATENCY_VS_BRIDGE,
            higher: false,
            alt: None,
            per_round: per_round(PathKind::Fast, PathKind::Bridge, lat_p99_at),
        },
        Goal {
            key: "tcp_fast_vs_bridge",
            what: "TCP Gbit/s fast path / plain bridge",
            value: fast.tcp / bridge.tcp,
            goal: GOAL_TCP_VS_BRIDGE,
            higher: true,
            alt: None,
            per_round: per_round(PathKind::Fast, PathKind::Bridge, tcp_at),
        },
        Goal {
            key: "tcp_observe_vs_bridge",
            what: "TCP Gbit/s observe / no netpath",
            value: obs.tcp / bridge.tcp,
            goal: GOAL_OBSERVE_TCP,
            higher: true,
            alt: None,
            per_round: per_round(PathKind::Observe, PathKind::Bridge, tcp_at),
        },
    ];
    println!();
    println!("Goals (ratios of the medians above; reported, not asserted):");
    println!(
        "  {:<40} {:>7} {:>11} {:>6}  {:>8}  (CPU: the same ratio from test-CPU and whole-machine busy time)",
        "goal", "ratio", "target", "", ""
    );
    for g in &goals {
        println!(
            "  {:<40} {:>7} {:>11} {:>6}  {}",
            g.what,
            f(g.value, 3),
            format!("{} {:.2}", if g.higher { ">=" } else { "<=" }, g.goal),
            verdict(g.value, g.goal, g.higher),
            g.alt
                .map(|(t, mch)| format!("  test CPU {}, machine {}", f(t, 3), f(mch, 3)))
                .unwrap_or_default()
        );
    }
    println!("  The same ratios within each round:");
    for g in &goals {
        println!(
            "  {:<40} {}",
            g.what,
            g.per_round.iter().map(|x| f(*x, 3)).collect::<Vec<_>>().join("  ")
        );
    }
    println!(
        "  (reference) CPU/pkt bridge+netfilter / plain bridge: {} (test CPU {})",
        f(nf.cpu / bridge.cpu, 3),
        f(nf.test_cpu / bridge.test_cpu, 3)
    );
    println!(
        "  (reference) CPU/pkt observe / plain bridge:          {} (test CPU {})",
        f(obs.cpu / bridge.cpu, 3),
        f(obs.test_cpu / bridge.test_cpu, 3)
    );
    println!(
        "  (reference) latency avg observe / plain bridge:      {}",
        f(obs.lat_avg / bridge.lat_avg, 3)
    );

    let bg: Vec<f64> = results
        .iter()
        .flat_map(|(_, r)| r.cpu.iter().map(|c| c.background * 100.0))
        .collect();
    let bg_cpu: Vec<f64> = results
        .iter()
        .flat_map(|(_, r)| r.cpu.iter().filter_map(|c| c.background_cpu.map(|b| b * 100.0)))
        .collect();
    let ((bg_lo, bg_hi), (bgc_lo, bgc_hi)) = (min_max(&bg), min_max(&bg_cpu));
    let load1 = loadavg();
    println!();
    println!(
        "  busy before the UDP runs (other work on the machine): {}-{}% of the machine, {}-{}% of the test CPU",
        f(bg_lo, 0),
        f(bg_hi, 0),
        f(bgc_lo, 0),
        f(bgc_hi, 0)
    );
    println!(
        "  load average {load0} -> {load1}; {} daemon start(s); {:.0} s in all",
        bench.daemon_starts,
        started.elapsed().as_secs_f64()
    );
    for (p, r) in &results {
        for e in &r.errors {
            println!("  {}: {e}", p.key());
        }
    }

    // JSON.
    let path_json = |p: PathKind, r: &PathResults, x: &Med| {
        json!({
            "label": p.label(),
            "config": p.describe(),
            "median": {
                "cpu_ns_per_packet": x.cpu, "thread_cpu_ns_per_packet": x.thread,
                "machine_cpu_ns_per_packet": x.machine, "test_cpu_ns_per_packet": x.test_cpu, "mpps": x.mpps,
                "latency_avg_us": x.lat_avg, "latency_p99_us": x.lat_p99, "tcp_gbit_s": x.tcp,
            },
            "udp_runs": r.cpu.iter().map(|c| {
                let mut j = c.json();
                j["netfilter_forward_packets"] = c.nf_forward.into();
                j["fastpath_redirected"] = c.redirected.into();
                j
            }).collect::<Vec<_>>(),
            "latency_runs": r.lat.iter().map(|l| json!({
                "round": l.round, "avg_us": l.avg_us, "p50_us": l.p50_us, "p99_us": l.p99_us, "p99_9_us": l.p999_us, "observations": l.observations,
            })).collect::<Vec<_>>(),
            "tcp_runs": r.tcp.iter().map(|t| json!({"round": t.round, "gbit_s": t.gbps, "retransmits": t.retransmits})).collect::<Vec<_>>(),
            "errors": r.errors,
        })
    };
    let doc = json!({
        "bench": "fastpath",
        "date": date,
        "kernel": kernel,
        "cpu_model": cpu_name,
        "cpus": ncpu,
        "commit": commit,
        "netpath_sources_dirty": dirty,
        "load_average": {"start": load0, "end": load1},
        "iptables": {"variant": ipt_kind, "version": ipt_version},
        "netfilter": {
            "services": rules.services, "endpoints": rules.endpoints, "services_without_endpoints": rules.rejecting,
            "nat_rules": nat_rules, "filter_rules": filter_rules, "restore_seconds": restore_s,
            "conntrack_entries_at_end": conntrack,
        },
        "counts": {
            "rounds": opts.rounds, "quick": opts.quick, "udp_datagrams_per_run": opts.packets, "udp_payload_bytes": UDP_PAYLOAD,
            "sendmmsg_batch": opts.batch, "sockperf_seconds": opts.seconds, "iperf3_seconds": opts.seconds,
            "daemon_starts": bench.daemon_starts,
        },
        "test_cpu": cpu,
        "tool_nice": TOOL_NICE,
        "autogroup_raised": autogroup.active(),
        "fastpath": {
            "available": fast_reason.is_none(),
            "unavailable_reason": fast_reason,
            "entries": fast_entries,
        },
        "paths": m.iter().map(|(p, x)| (p.key().to_string(), path_json(*p, get(*p), x))).collect::<serde_json::Map<_, _>>(),
        "goals": goals.iter().map(|g| (g.key.to_string(), json!({
            "what": g.what, "value": g.value, "goal": g.goal,
            "comparison": if g.higher { ">=" } else { "<=" },
            "per_round": g.per_round,
            "test_cpu_ratio": g.alt.map(|a| a.0), "machine_ratio": g.alt.map(|a| a.1),
            "verdict": verdict(g.value, g.goal, g.higher),
        }))).collect::<serde_json::Map<_, _>>(),
        "elapsed_seconds": started.elapsed().as_secs_f64(),
    });
    let out = write_json("fastpath", &doc)?;
    println!("  wrote {}", out.display());
    drop(lab);
    drop(autogroup);
    Ok(fast_reason.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockperf_output_parses() {
        let out = "sockperf: \x1b[2;35m====> avg-latency=3.070 (std-dev=8.488)\x1b[0m\n\
                   sockperf: \x1b[2;35mTotal 251236 observations\x1b[0m; each percentile contains 2512.36 observations\n\
                   sockperf: ---> percentile 99.900 =   18.464\n\
                   sockperf: ---> percentile 99.000 =    3.239\n\
                   sockperf: ---> percentile 50.000 =    2.954\n";
        let out = format!("sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec\n{out}");
        let l = parse_sockperf(&out).unwrap();
        assert_eq!(l.avg_us, 3.070);
        assert_eq!(l.p99_us, 3.239);
        assert_eq!(l.p50_us, 2.954);
        assert_eq!(l.p999_us, 18.464);
        assert_eq!(l.observations, 251236);
    }

    #[test]
    fn rules_have_kube_proxy_shape() {
        let r = kube_proxy_rules(1000);
        assert_eq!(r.services, 1000);
        // 1, 2, 3 endpoints in turn: 334 + 333 * 2 + 333 * 3.
        assert_eq!(r.endpoints, 1999);
        assert_eq!(r.text.matches("-A KUBE-SERVICES -d 10.96.").count(), 1000 + r.rejecting);
        // One probability rule fewer than endpoints per service.
        assert_eq!(r.text.matches("--mode random").count(), 1999 - 1000);
        assert_eq!(r.text.matches("-j DNAT").count(), 1999);
        for lab_cidr in ["--to-destination 10.244.0.", "--to-destination 10.244.1."] {
            assert!(
                !r.text.contains(lab_cidr),
                "endpoints must stay out of the lab's pod CIDRs"
            );
        }
        let svc: std::collections::HashSet<&str> =
            r.text.lines().filter_map(|l| l.strip_prefix(":KUBE-SVC-")).collect();
        assert_eq!(svc.len(), 1000, "chain names must be unique");
    }
}
