//! Traffic through a lab that is up: ping, arping and iperf3 between its pods, each step bounded in
//! time so a broken lab cannot hang the caller.
use std::{
    io::Read,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    process::{bounded_command, run, run_bounded, stop_process_group},
    Lab, LabError, PodInfo,
};

const IPERF_PORT: u16 = 5201;

/// Options of [`Lab::drive_traffic`].
#[derive(Debug, Clone)]
pub struct TrafficOpts {
    /// Total time budget in seconds; steps that no longer fit are skipped (and reported in
    /// `errors`). 8 is enough for every step.
    pub seconds: u32,
}

impl Default for TrafficOpts {
    fn default() -> Self {
        TrafficOpts { seconds: 8 }
    }
}

/// Which kinds of traffic [`Lab::drive_traffic`] got through.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TrafficReport {
    /// ICMP n1-pod-a -> n1-pod-b (through cni0 only).
    pub ping_same_node_ok: bool,
    /// ICMP n1-pod-a -> n2-pod-a (through flannel.1 and the underlay).
    pub ping_cross_node_ok: bool,
    /// ARP n1-pod-a -> n1-pod-c.
    pub arping_ok: bool,
    /// iperf3 TCP n1-pod-a -> n2-pod-a.
    pub tcp_ok: bool,
    /// iperf3 UDP n1-pod-a -> n2-pod-a.
    pub udp_ok: bool,
    /// One line per failed or skipped step.
    pub errors: Vec<String>,
}

impl std::fmt::Display for TrafficReport {
    /// One line per kind of traffic, then the failed or skipped steps.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, ok) in [
            ("ping, same node (cni0)", self.ping_same_node_ok),
            ("ping, cross node (flannel.1)", self.ping_cross_node_ok),
            ("arping", self.arping_ok),
            ("tcp (iperf3, cross node)", self.tcp_ok),
            ("udp (iperf3, cross node)", self.udp_ok),
        ] {
            writeln!(f, "{what:<30} {}", if ok { "ok" } else { "FAILED" })?;
        }
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl Lab {
    /// Generate a little of every kind of traffic a pod network carries, all bounded in count and
    /// time and addressed only to lab IPs from inside lab namespaces. Fails only when the lab is
    /// not up; individual failures are recorded in the report.
    pub fn drive_traffic(&self, opts: &TrafficOpts) -> Result<TrafficReport, LabError> {
        self.validate()?;
        let (status, problems) = self.inspect()?;
        if !status.up {
            return Err(LabError::NotUp {
                prefix: self.prefix.clone(),
                problems,
            });
        }
        let pods = self.pods();
        let find = |name: &str| pods.iter().find(|p| p.name == name).expect("planned pod");
        let (a1, b1, c1, a2) = (find("n1-pod-a"), find("n1-pod-b"), find("n1-pod-c"), find("n2-pod-a"));
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(u64::from(opts.seconds)),
            total: opts.seconds,
        };
        let mut r = TrafficReport::default();

        let ping = |from: &PodInfo, to: &PodInfo, errors: &mut Vec<String>| -> bool {
            let what = format!("ping {} -> {}", from.name, to.name);
            let Some(t) = budget.slot(&what, 4.0, errors) else {
                return false;
            };
            let ip = to.ip.to_string();
            step_ok(
                &what,
                run_bounded(
                    &from.netns,
                    t,
                    &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", &ip],
                ),
                errors,
            )
        };
        r.ping_same_node_ok = ping(a1, b1, &mut r.errors);
        r.ping_cross_node_ok = ping(a1, a2, &mut r.errors);

        let what = format!("arping {} -> {}", a1.name, c1.name);
        if let Some(t) = budget.slot(&what, 4.0, &mut r.errors) {
            let ip = c1.ip.to_string();
            // Thomas Habets' arping (Debian's `arping`) names the interface with -i, iputils' with -I.
            let iface_flag = if arping_is_iputils() { "-I" } else { "-i" };
            r.arping_ok = step_ok(
                &what,
                run_bounded(&a1.netns, t, &["arping", "-c", "2", "-w", "2", iface_flag, "eth0", &ip]),
                &mut r.errors,
            );
        }

        r.tcp_ok = iperf(&budget, a1, a2, false, &mut r.errors);
        r.udp_ok = iperf(&budget, a1, a2, true, &mut r.errors);
        Ok(r)
    }
}

/// The wall-clock budget of `drive_traffic`.
struct Budget {
    deadline: Instant,
    total: u32,
}

impl Budget {
    fn remaining(&self) -> f64 {
        self.deadline.saturating_duration_since(Instant::now()).as_secs_f64()
    }

    /// Time this step may take: its own cap, or what is left of the budget; None (and a note in
    /// `errors`) when less than a second is left.
    fn slot(&self, what: &str, cap: f64, errors: &mut Vec<String>) -> Option<f64> {
        let left = self.remaining();
        if left < 1.0 {
            errors.push(format!(
                "{what}: skipped, the {} s traffic budget is used up",
                self.total
            ));
            return None;
        }
        Some(cap.min(left))
    }
}

/// Record a failed step; true on exit status 0.
fn step_ok(what: &str, res: Result<Output, String>, errors: &mut Vec<String>) -> bool {
    match res {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            errors.push(format!("{what}: {}", describe_failure(&o)));
            false
        }
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            false
        }
    }
}

fn describe_failure(o: &Output) -> String {
    let status = match o.status.code() {
        Some(124) => "timed out".to_string(),
        _ => o.status.to_string(),
    };
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    };
    let (err, out) = (tail(&o.stderr), tail(&o.stdout));
    match (err.is_empty(), out.is_empty()) {
        (false, _) => format!("{status}: {err}"),
        (true, false) => format!("{status}: {out}"),
        (true, true) => status,
    }
}

fn arping_is_iputils() -> bool {
    Command::new("timeout")
        .args(["2", "arping", "-V"])
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let s = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            s.contains("iputils")
        })
        .unwrap_or(false)
}

/// An iperf3 server we spawned; dropping it terminates its process group if it is still running.
struct Server(Child);

impl Server {
    fn exited(&mut self) -> bool {
        !matches!(self.0.try_wait(), Ok(None))
    }
    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s.trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_process_group(&mut self.0);
    }
}

/// True once something listens on TCP `port` inside `ns`.
fn listening(ns: &str, port: u16) -> bool {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "ss",
        "-H",
        "-l",
        "-t",
        "-n",
        &format!("sport = :{port}"),
    ])
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false)
}

/// One iperf3 stream from `client` to `server`: a one-off server (`-s -1`) in the server pod,
/// killed afterwards if it is still there, and a client whose JSON result must show data received.
fn iperf(budget: &Budget, client: &PodInfo, server: &PodInfo, udp: bool, errors: &mut Vec<String>) -> bool {
    let what = format!(
        "iperf3 {} {} -> {}",
        if udp { "UDP" } else { "TCP" },
        client.name,
        server.name
    );
    // Server start (<= 1 s), the stream and its wrap-up must fit.
    let left = budget.remaining();
    let secs: u32 = if left >= 5.0 { 2 } else { 1 };
    let Some(cap) = budget.slot(&what, f64::from(secs) + 4.0, errors) else {
        return false;
    };
    if cap < f64::from(secs) + 1.0 {
        errors.push(format!("{what}: skipped, only {cap:.1} s of the traffic budget left"));
        return false;
    }
    let port = IPERF_PORT.to_string();
    let bind = server.ip.to_string();
    let child = bounded_command(&server.netns, cap, &["iperf3", "-s", "-1", "-B", &bind, "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut srv = match child {
        Ok(c) => Server(c),
        Err(e) => {
            errors.push(format!("{what}: cannot start iperf3 server: {e}"));
            return false;
        }
    };
    let until = Instant::now() + Duration::from_secs(1).min(Duration::from_secs_f64(cap / 2.0));
    loop {
        if listening(&server.netns, IPERF_PORT) {
            break;
        }
        if srv.exited() {
            errors.push(format!("{what}: iperf3 server exited: {}", srv.stderr()));
            return false;
        }
        if Instant::now() >= until {
            errors.push(format!("{what}: iperf3 server not listening on :{port} after 1 s"));
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let t = secs.to_string();
    let mut args = vec!["iperf3", "-c", &bind, "-p", &port, "-t", &t, "-J"];
    if udp {
        args.extend(["-u", "-b", "10M"]);
    }
    let left = budget.remaining().max(f64::from(secs) + 0.5);
    let out = match run_bounded(&client.netns, (f64::from(secs) + 3.0).min(left), &args) {
        Ok(o) => o,
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            return false;
        }
    };
    drop(srv);
    let json: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let msg = json
            .as_ref()
            .and_then(|j| j["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| describe_failure(&out));
        errors.push(format!("{what}: {msg}"));
        return false;
    }
    let Some(j) = json else {
        errors.push(format!("{what}: iperf3 printed no JSON result"));
        return false;
    };
    let end = &j["end"];
    let received = if udp {
        // iperf 3.12 reports UDP totals in end.sum; the receiver's view is packets - lost_packets.
        let s = if end["sum_received"].is_object() {
            &end["sum_received"]
        } else {
            &end["sum"]
        };
        let packets = s["packets"].as_u64().unwrap_or(0);
        let lost = s["lost_packets"].as_u64().unwrap_or(0);
        packets.saturating_sub(lost)
    } else {
        end["sum_received"]["bytes"].as_u64().unwrap_or(0)
    };
    if received == 0 {
        errors.push(format!("{what}: the server received nothing"));
        return false;
    }
    true
}
