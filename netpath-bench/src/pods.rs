//! Pod to pod on one node of the lab, shared by the suites that measure traffic between two pods
//! (`fastpath`, `drops`): commands in the lab's namespaces at the tools' priority, helper
//! processes that die with their guard, the scheduling of the test CPU, and the measurements
//! themselves (CPU per 64-byte UDP datagram, iperf3 TCP throughput), plus `netpath run` observing
//! node 1's cni0 and its ports.
//!
//! CPU per packet (`udp_cpu_run`): a sender thread in pod A sends a fixed number of 64-byte UDP
//! datagrams as fast as it can (sendmmsg batches) to a receiver thread in pod B (recvmmsg), both
//! pinned to the test CPU. Three figures per datagram received: the CPU time of what the test
//! consists of (both threads' scheduler clocks, which include the softirq work run in their
//! context, plus ksoftirqd and the netpath daemon; the headline, since it ignores other work on the
//! machine), the busy time of the test CPU, and the whole machine's busy time, both from /proc/stat
//! (user+nice+system+irq+softirq+steal).
use std::{
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Barrier,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netpath_lab::{Lab, PodInfo};
use netpath_tests::{in_netns, Daemon, LabGuard, PinDir};
use serde_json::{json, Value};

use crate::cpu::{cpu_ticks, set_affinity, thread_cpu_ns, tick_ns};

// ---------------------------------------------------------------------------------------------
// Constants, and stopping between steps on SIGINT/SIGTERM

pub const UDP_PAYLOAD: usize = 64;
pub const UDP_SRC_PORT: u16 = 40_000;
pub const UDP_DST_PORT: u16 = 40_001;

/// sockperf and iperf3 servers use fresh ports from here on, one per run.
pub const TOOL_PORT_BASE: u16 = 41_000;
/// Nice level of the traffic threads and tools: other work on the machine (builds) gets little
/// of the test CPU while a measurement runs.
pub const TOOL_NICE: i32 = -20;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM stop the run between steps (`check_stop`), so that the guards
/// (lab, daemon, helper processes) clean up as on any error.
pub fn stop_on_signals() {
    // SAFETY: installing an async-signal-safe handler (it only stores an atomic).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commands

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Every `(tool, Debian package)` on PATH, or an error naming the package to install.
pub fn require_tools(tools: &[(&str, &str)]) -> Result<()> {
    for (tool, pkg) in tools {
        if !have(tool) {
            bail!("`{tool}` not found: install it (apt-get install {pkg})");
        }
    }
    Ok(())
}

/// `timeout -k 1 SECS ip netns exec NS [nice -n -20 taskset -c CPU] ARGS...`, in its own process
/// group. Traffic tools (`tool` true) run at nice -20 on the test CPU.
pub fn ns_command(ns: &str, secs: f64, cpu: Option<usize>, tool: bool, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "1", &format!("{secs:.1}"), "ip", "netns", "exec", ns]);
    if tool {
        c.args(["nice", "-n", &TOOL_NICE.to_string()]);
        if let Some(cpu) = cpu {
            c.args(["taskset", "-c", &cpu.to_string()]);
        }
    }
    c.args(args).stdin(Stdio::null()).process_group(0);
    c
}

pub fn ns_run(ns: &str, secs: f64, cpu: Option<usize>, tool: bool, args: &[&str]) -> Result<Output> {
    let out = ns_command(ns, secs, cpu, tool, args)
        .output()
        .with_context(|| format!("running {args:?} in {ns}"))?;
    if out.status.code() == Some(124) {
        bail!("{args:?} in {ns} did not finish within {secs:.0} s");
    }
    Ok(out)
}

/// Like `ns_run`, but a non-zero exit is an error carrying stderr; returns stdout.
pub fn ns_ok(ns: &str, secs: f64, args: &[&str]) -> Result<String> {
    let out = ns_run(ns, secs, None, false, args)?;
    if !out.status.success() {
        bail!(
            "{args:?} in {ns} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A helper process (a traffic server) in a lab namespace; its whole process group is terminated
/// on drop.
pub struct Bg(Child);

impl Bg {
    pub fn spawn(ns: &str, secs: f64, cpu: Option<usize>, args: &[&str]) -> Result<Bg> {
        let child = ns_command(ns, secs, cpu, true, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {args:?} in {ns}"))?;
        Ok(Bg(child))
    }
    fn exited(&mut self) -> bool {
        !matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        netpath_lab::stop_process_group(&mut self.0);
    }
}

/// Wait until something listens on TCP `port` in `ns`.
pub fn wait_listening(ns: &str, port: u16, srv: &mut Bg, what: &str) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let out = ns_run(
            ns,
            5.0,
            None,
            false,
            &["ss", "-H", "-l", "-t", "-n", &format!("sport = :{port}")],
        )?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        if srv.exited() {
            bail!("{what} server exited before listening on :{port}");
        }
        if Instant::now() > until {
            bail!("{what} server not listening on :{port} after 3 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The lab

/// Node 1's switch for bridged frames through iptables (exists once br_netfilter is loaded).
pub const BRNF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Write bridge-nf-call-iptables inside the node namespace (it is per namespace since Linux 5.3)
/// and read it back.
pub fn set_br_nf(node: &str, on: bool) -> Result<()> {
    let v = if on { "1" } else { "0" };
    let got = ns_ok(node, 10.0, &["sh", "-c", &format!("echo {v} > {BRNF} && cat {BRNF}")])?;
    if got.trim() != v {
        bail!("{BRNF} in {node} reads {:?} after writing {v}", got.trim());
    }
    Ok(())
}

/// TC programs (tcx ingress/egress) attached to `dev` in `ns`.
pub fn tcx_programs(ns: &str, dev: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let (ns, dev) = (ns.to_string(), dev.to_string());
    in_netns(&ns, move || {
        let mut v = Vec::new();
        for (dir, t) in [("ingress", TcAttachType::Ingress), ("egress", TcAttachType::Egress)] {
            if let Ok((_, progs)) = SchedClassifier::query_tcx(&dev, t) {
                v.extend(
                    progs
                        .iter()
                        .map(|p| format!("{dir}:{}", p.name_as_str().unwrap_or("?"))),
                );
            }
        }
        v
    })
}

/// A private lab (prefix `PREFIX<pid>`), up, and the two pods of node 1 the traffic runs between;
/// torn down on drop (also on error and on panic).
pub struct PodLab {
    pub lab: LabGuard,
    /// Node 1's namespace.
    pub node: String,
    pub a: PodInfo,
    pub b: PodInfo,
}

impl PodLab {
    /// Build the lab and check that pod A and pod B reach each other through cni0. `suite` names
    /// the suite in what it prints.
    pub fn up(suite: &str, prefix: &str) -> Result<PodLab> {
        let lab = LabGuard(Lab::new(&format!("{prefix}{}", std::process::id() % 100_000)));
        eprintln!("netpath-bench {suite}: building lab {}", lab.0.prefix);
        lab.0.up().with_context(|| format!("building lab {}", lab.0.prefix))?;
        check_stop()?;
        let node = lab.0.node_ns(1);
        let pods = lab.0.pods();
        let pick = |name: &str| {
            pods.iter()
                .find(|p| p.name == name)
                .cloned()
                .ok_or_else(|| anyhow!("lab has no {name}"))
        };
        let (a, b) = (pick("n1-pod-a")?, pick("n1-pod-b")?);
        Ok(PodLab { lab, node, a, b })
    }

    /// Whether the two pods ping each other, both ways.
    pub fn pods_reach_each_other(&self) -> bool {
        ping(&self.a, &self.b, 3) && ping(&self.b, &self.a, 3)
    }
}

/// A `netpath run` on node 1's cni0 (and so its three ports) with its own pins and socket. Fields
/// drop in order: the daemon stops before its pins are removed.
pub struct Observer {
    pub daemon: Daemon,
    pub pins: PinDir,
}

impl Observer {
    /// Start `netpath run --netns NODE --iface cni0 ... -q EXTRA` and wait until it has attached
    /// to cni0 and its ports; check that both pods' host veths carry its TC programs.
    pub fn start(node: &str, pods: [&PodInfo; 2], extra: &[&str]) -> Result<Observer> {
        let pins = PinDir::new();
        let (pin, sock) = (pins.arg().to_string(), pins.sock().to_string());
        let args: Vec<&str> = [
            "--netns",
            node,
            "--iface",
            "cni0",
            "--pin-dir",
            &pin,
            "--socket",
            &sock,
            "-q",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
        // cni0 and its three ports.
        let daemon = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Daemon::start_expecting(&args, 4)))
            .map_err(|_| anyhow!("netpath run {args:?} did not attach (see its output above)"))?;
        let obs = Observer { daemon, pins };
        for p in pods {
            if tcx_programs(node, &p.host_veth).is_empty() {
                bail!("netpath runs, but nothing is attached to {} ({})", p.host_veth, p.name);
            }
        }
        Ok(obs)
    }

    pub fn sock(&self) -> &str {
        self.pins.sock()
    }

    /// Stop the daemon (SIGINT), then remove its pins; a failed exit is reported, not an error.
    pub fn stop(self, suite: &str) {
        let Observer { daemon, pins } = self;
        let st = daemon.stop();
        drop(pins);
        if !st.success() {
            eprintln!("netpath-bench {suite}: netpath run exited with {st}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduling: the test's share of the CPU, and the CPU time of the tasks it consists of

/// With autogroup scheduling every session is one group of equal weight, so another session's
/// build takes half of the test CPU whatever the tools' own nice level. For the run, this
/// session's group gets nice -20 (it holds only the bench, its daemon and tools while they run);
/// the old level is restored on drop.
pub struct AutogroupGuard {
    old: Option<i32>,
}

pub const AUTOGROUP: &str = "/proc/self/autogroup";

impl AutogroupGuard {
    pub fn raise() -> AutogroupGuard {
        // "/autogroup-34 nice 0"
        let old = std::fs::read_to_string(AUTOGROUP)
            .ok()
            .and_then(|s| s.split_whitespace().last()?.parse::<i32>().ok());
        if old.is_some() && std::fs::write(AUTOGROUP, TOOL_NICE.to_string()).is_err() {
            return AutogroupGuard { old: None };
        }
        AutogroupGuard { old }
    }
    pub fn active(&self) -> bool {
        self.old.is_some()
    }
}

impl Drop for AutogroupGuard {
    fn drop(&mut self) {
        if let Some(n) = self.old {
            let _ = std::fs::write(AUTOGROUP, n.to_string());
        }
    }
}

/// CPU time (ns, the scheduler's sum_exec_runtime) of every thread of `pid`.
pub fn process_runtime_ns(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The ksoftirqd threads: network softirq work the kernel defers lands there.
pub fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("ksoftirqd/")))
        .collect()
}

pub fn runtime_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|p| process_runtime_ns(*p)).sum()
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// Pin the calling thread to `cpu` (if any) and give it the traffic tools' nice level.
pub fn pin_thread(cpu: Option<usize>) {
    // SAFETY: setpriority on the calling thread (tid); gettid has no preconditions.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, TOOL_NICE) };
    if let Some(cpu) = cpu {
        set_affinity(&[cpu]);
    }
}

/// `Udp: ... RcvbufErrors ...` of the calling thread's network namespace.
pub fn udp_snmp(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let vals: Vec<&str> = lines[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == field)
        .and_then(|i| vals.get(i)?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Debug, Default)]
pub struct CpuRun {
    pub round: usize,
    pub sent: u64,
    pub received: u64,
    pub rcvbuf_drops: u64,
    pub wall_s: f64,
    /// Whole-machine busy time over the run.
    pub busy_ns: f64,
    /// Busy time of the test CPU over the run (None when nothing is pinned).
    pub cpu_busy_ns: Option<f64>,
    /// Sender + receiver thread CPU time.
    pub thread_ns: f64,
    /// ksoftirqd threads' CPU time over the run.
    pub ksoftirqd_ns: f64,
    /// The netpath daemon's CPU time over the run (0 without a daemon).
    pub daemon_ns: f64,
    /// Busy fraction of the whole machine (0..1 of all CPUs) in the 0.5 s before the run.
    pub background: f64,
    /// Busy fraction of the test CPU in the 0.5 s before the run.
    pub background_cpu: Option<f64>,
    /// Frames through node 1's iptables FORWARD hook during the run (the fastpath suite's).
    pub nf_forward: u64,
    /// Fast-path redirects during the run (the fastpath suite's; None without a daemon).
    pub redirected: Option<u64>,
}

impl CpuRun {
    /// The headline: CPU time of everything the test consists of (sender and receiver threads,
    /// with the softirq work that runs in their context, ksoftirqd, the netpath daemon), per
    /// datagram received. Other work on the machine does not count.
    pub fn ns_per_pkt(&self) -> f64 {
        (self.thread_ns + self.ksoftirqd_ns + self.daemon_ns) / self.received.max(1) as f64
    }
    /// Busy time of the CPU all the traffic was pinned to (the whole machine when nothing is
    /// pinned), per datagram received.
    pub fn test_cpu_ns_per_pkt(&self) -> f64 {
        self.cpu_busy_ns.unwrap_or(self.busy_ns) / self.received.max(1) as f64
    }
    pub fn machine_ns_per_pkt(&self) -> f64 {
        self.busy_ns / self.received.max(1) as f64
    }
    pub fn thread_ns_per_pkt(&self) -> f64 {
        self.thread_ns / self.received.max(1) as f64
    }
    pub fn mpps(&self) -> f64 {
        self.received as f64 / self.wall_s.max(1e-9) / 1e6
    }

    /// One line on what the run counted and cost (`udp: ... busy before: ...`).
    pub fn summary(&self) -> String {
        format!(
            "udp: {} of {} datagrams in {:.2} s ({:.2} Mpps); ns/pkt: {:.0} attributed ({:.0} threads, {:.0} ksoftirqd, {:.0} daemon), {:.0} test CPU, {:.0} machine; busy before: test CPU {}%, machine {:.0}%",
            self.received,
            self.sent,
            self.wall_s,
            self.mpps(),
            self.ns_per_pkt(),
            self.thread_ns_per_pkt(),
            self.ksoftirqd_ns / self.received.max(1) as f64,
            self.daemon_ns / self.received.max(1) as f64,
            self.test_cpu_ns_per_pkt(),
            self.machine_ns_per_pkt(),
            self.background_cpu
                .map(|b| format!("{:.0}", b * 100.0))
                .unwrap_or_else(|| "-".into()),
            self.background * 100.0,
        )
    }

    /// The run in a suite's JSON (without the fastpath suite's netfilter and redirect counts).
    pub fn json(&self) -> Value {
        json!({
            "round": self.round, "sent": self.sent, "received": self.received, "rcvbuf_drops": self.rcvbuf_drops, "wall_s": self.wall_s,
            "machine_busy_ns": self.busy_ns, "test_cpu_busy_ns": self.cpu_busy_ns, "thread_cpu_ns": self.thread_ns,
            "ksoftirqd_cpu_ns": self.ksoftirqd_ns, "daemon_cpu_ns": self.daemon_ns, "test_cpu_ns_per_packet": self.test_cpu_ns_per_pkt(),
            "machine_busy_fraction_before": self.background, "test_cpu_busy_fraction_before": self.background_cpu,
            "cpu_ns_per_packet": self.ns_per_pkt(), "thread_cpu_ns_per_packet": self.thread_ns_per_pkt(),
            "machine_cpu_ns_per_packet": self.machine_ns_per_pkt(),
        })
    }
}

/// A UDP socket of the calling thread's namespace bound to ip:port.
pub fn udp_socket(ip: std::net::Ipv4Addr, port: u16) -> Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind((ip, port)).with_context(|| format!("binding UDP {ip}:{port}"))?;
    Ok(s)
}

pub fn set_int_opt(fd: i32, level: i32, name: i32, v: i32) {
    // SAFETY: valid fd and pointer to an int of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
}

/// One `mmsghdr` per buffer of `iov`, for sendmmsg/recvmmsg.
fn mmsghdrs(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

/// Send `n` 64-byte UDP datagrams from pod A to pod B as fast as the sender thread can and count
/// what pod B's socket receives; sample /proc/stat around it.
#[expect(
    clippy::too_many_arguments,
    reason = "one run's configuration, each argument a separate axis"
)]
pub fn udp_cpu_run(
    a: &PodInfo,
    b: &PodInfo,
    n: u64,
    batch: usize,
    limit: Duration,
    cpu: Option<usize>,
    ksoftirqd: &[u32],
    daemon: Option<u32>,
) -> Result<CpuRun> {
    // Background load just before.
    let s0 = cpu_ticks()?;
    std::thread::sleep(Duration::from_millis(500));
    let s1 = cpu_ticks()?;
    let background = s1.all.busy_fraction_since(&s0.all);
    let background_cpu = cpu.map(|c| s1.cpu(c).busy_fraction_since(&s0.cpu(c)));

    let go = Arc::new(Barrier::new(3));
    let ready = Arc::new(Barrier::new(3));
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    let (a_ns, b_ns, a_ip, b_ip) = (a.netns.clone(), b.netns.clone(), a.ip, b.ip);

    let recv = {
        let (go, ready, sent_total) = (go.clone(), ready.clone(), sent_total.clone());
        std::thread::spawn(move || -> Result<(u64, u64, u64)> {
            let r = (|| -> Result<std::net::UdpSocket> {
                netpath::node::netns::enter(&b_ns)?;
                pin_thread(cpu);
                let s = udp_socket(b_ip, UDP_DST_PORT)?;
                set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
                s.set_read_timeout(Some(Duration::from_millis(20)))?;
                Ok(s)
            })();
            ready.wait();
            let s = match r {
                Ok(s) => s,
                Err(e) => {
                    go.wait();
                    return Err(e);
                }
            };
            let drops0 = udp_snmp("RcvbufErrors");
            go.wait();
            let c0 = thread_cpu_ns();
            const B: usize = 64;
            let mut bufs = vec![[0u8; 2048]; B];
            let mut iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            let mut msgs = mmsghdrs(&mut iov);
            let mut got = 0u64;
            let mut idle_since: Option<Instant> = None;
            let hard = Instant::now() + limit + Duration::from_secs(2);
            loop {
                // SAFETY: msgs point at live buffers of the stated sizes.
                let r = unsafe { libc::recvmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), B as u32, 0, std::ptr::null_mut()) };
                if r > 0 {
                    got += r as u64;
                    idle_since = None;
                } else {
                    let done = sent_total.load(Ordering::SeqCst) != u64::MAX;
                    if done {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(100) {
                            break;
                        }
                    }
                }
                if got >= sent_total.load(Ordering::SeqCst) || Instant::now() > hard {
                    break;
                }
            }
            let used = thread_cpu_ns() - c0;
            Ok((got, used, udp_snmp("RcvbufErrors").saturating_sub(drops0)))
        })
    };
    let send = {
        let (go, ready, sent_total) = (go.clone(), ready.clone(), sent_total.clone());
        std::thread::spawn(move || -> Result<(u64, u64)> {
            let r = (|| -> Result<std::net::UdpSocket> {
                netpath::node::netns::enter(&a_ns)?;
                pin_thread(cpu);
                let s = udp_socket(a_ip, UDP_SRC_PORT)?;
                s.connect((b_ip, UDP_DST_PORT))?;
                Ok(s)
            })();
            ready.wait();
            let s = match r {
                Ok(s) => s,
                Err(e) => {
                    sent_total.store(0, Ordering::SeqCst);
                    go.wait();
                    return Err(e);
                }
            };
            go.wait();
            let c0 = thread_cpu_ns();
            let start = Instant::now();
            let mut payload = [0u8; UDP_PAYLOAD];
            payload[..8].copy_from_slice(b"netpath!");
            let mut iov: Vec<libc::iovec> = (0..batch)
                .map(|_| libc::iovec {
                    iov_base: payload.as_mut_ptr().cast(),
                    iov_len: UDP_PAYLOAD,
                })
                .collect();
            let mut msgs = mmsghdrs(&mut iov);
            let mut sent = 0u64;
            let mut calls = 0u64;
            let mut err = None;
            while sent < n {
                let want = (n - sent).min(batch as u64) as u32;
                // SAFETY: msgs point at the live payload buffer.
                let r = if batch == 1 {
                    unsafe { libc::send(s.as_raw_fd(), payload.as_ptr().cast(), UDP_PAYLOAD, 0) as i32 }
                } else {
                    unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), want, 0) }
                };
                if r > 0 {
                    sent += r as u64;
                } else {
                    let e = std::io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EINTR) | Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::ECONNREFUSED) => {}
                        _ => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                calls += 1;
                if calls.is_multiple_of(64) && (start.elapsed() > limit || STOP.load(Ordering::Relaxed)) {
                    break;
                }
            }
            let used = thread_cpu_ns() - c0;
            sent_total.store(sent, Ordering::SeqCst);
            match err {
                Some(e) => Err(anyhow!("sending: {e}")),
                None => Ok((sent, used)),
            }
        })
    };
    ready.wait();
    let (k0, d0) = (runtime_sum(ksoftirqd), daemon.map(process_runtime_ns).unwrap_or(0));
    let s0 = cpu_ticks()?;
    let w0 = Instant::now();
    go.wait();
    let rr = recv.join().map_err(|_| anyhow!("receiver thread panicked"))?;
    let sr = send.join().map_err(|_| anyhow!("sender thread panicked"))?;
    let wall = w0.elapsed().as_secs_f64();
    let s1 = cpu_ticks()?;
    let (k1, d1) = (runtime_sum(ksoftirqd), daemon.map(process_runtime_ns).unwrap_or(0));
    let (sent, scpu) = sr?;
    let (received, rcpu, drops) = rr?;
    if received == 0 {
        bail!("pod B received none of the {sent} datagrams");
    }
    Ok(CpuRun {
        round: 0,
        sent,
        received,
        rcvbuf_drops: drops,
        wall_s: wall,
        busy_ns: (s1.all.busy - s0.all.busy) as f64 * tick_ns(),
        cpu_busy_ns: cpu.map(|c| (s1.cpu(c).busy - s0.cpu(c).busy) as f64 * tick_ns()),
        thread_ns: (scpu + rcpu) as f64,
        ksoftirqd_ns: k1.saturating_sub(k0) as f64,
        daemon_ns: d1.saturating_sub(d0) as f64,
        background,
        background_cpu,
        nf_forward: 0,
        redirected: None,
    })
}

// ---------------------------------------------------------------------------------------------
// TCP throughput, reachability

/// One iperf3 TCP run.
#[derive(Clone, Debug, Default)]
pub struct Tcp {
    pub round: usize,
    pub gbps: f64,
    pub retransmits: u64,
}

/// `iperf3 -J` for `secs` seconds, one TCP stream from pod A to pod B's `port`; client and server
/// on `cpu` at the tools' nice level.
pub fn iperf_tcp(a: &PodInfo, b: &PodInfo, port: u16, secs: u32, cpu: Option<usize>) -> Result<Tcp> {
    let bip = b.ip.to_string();
    let p = port.to_string();
    let mut srv = Bg::spawn(
        &b.netns,
        f64::from(secs) + 15.0,
        cpu,
        &["iperf3", "-s", "-1", "-B", &bip, "-p", &p],
    )?;
    wait_listening(&b.netns, port, &mut srv, "iperf3")?;
    let out = ns_run(
        &a.netns,
        f64::from(secs) + 10.0,
        cpu,
        true,
        &["iperf3", "-c", &bip, "-p", &p, "-t", &secs.to_string(), "-J"],
    )?;
    drop(srv);
    let j: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("iperf3 printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))?;
    if !out.status.success() {
        bail!("iperf3 failed: {}", j["error"].as_str().unwrap_or("?"));
    }
    let bps = j["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON without end.sum_received"))?;
    Ok(Tcp {
        round: 0,
        gbps: bps / 1e9,
        retransmits: j["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

/// Whether `count` pings from `from` to `to` are all answered.
pub fn ping(from: &PodInfo, to: &PodInfo, count: u32) -> bool {
    ns_run(
        &from.netns,
        10.0,
        None,
        false,
        &[
            "ping",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
            &to.ip.to_string(),
        ],
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}
