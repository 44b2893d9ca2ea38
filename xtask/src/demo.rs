//! `cargo xtask demo`: the lab, netpath on node 1, real traffic, live counters, clean teardown.
//! It checks its own result: every class the lab's traffic must produce is non-zero at the end.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use netpath_lab::{Lab, TrafficOpts};

const PREFIX: &str = "np";
const NODE1: &str = "np-node1";
/// Its own pin directory, so the demo never touches a real node's /sys/fs/bpf/netpath.
const PIN_DIR: &str = "/sys/fs/bpf/netpath-demo";
/// Likewise its own control socket.
const SOCKET: &str = "/run/netpath/demo.sock";
const EXPECTED: [&str; 5] = ["arp", "icmp", "tcp", "udp", "vxlan"];

struct Cleanup<'a> {
    bin: &'a Path,
    lab: &'a Lab,
    daemon: Option<Child>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGINT) };
            let _ = d.wait();
        }
        let _ = Command::new(self.bin)
            .args(["down", "--pin-dir", PIN_DIR])
            .stdout(Stdio::null())
            .status();
        match self.lab.down() {
            Ok(()) => println!("lab '{PREFIX}' removed"),
            Err(e) => eprintln!("xtask demo: removing the lab: {e}"),
        }
    }
}

/// How long `netpath run` may take to attach (loading the programs included).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// Interfaces the demo's daemon has attached to, 0 while it does not answer yet.
fn attached(bin: &Path) -> Result<u64> {
    let out = Command::new(bin)
        .args(["status", "--socket", SOCKET, "--pin-dir", PIN_DIR, "-o", "json"])
        .stderr(Stdio::null())
        .output()
        .context("netpath status")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v["daemon"]["attached_interfaces"].as_u64().unwrap_or(0))
}

/// Ask `ready` every `every` until it says yes, fails, or `timeout` passes.
fn wait_until(timeout: Duration, every: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("not ready after {timeout:?}");
        }
        std::thread::sleep(every);
    }
}

fn netpath_json(bin: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("netpath {args:?}"))?;
    if !out.status.success() {
        bail!("netpath {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing output of netpath {args:?}"))
}

/// A staged drop: UDP from one node-1 pod to a port nothing listens on in another. The kernel
/// drops it inside the receiving pod (NO_SOCKET); `netpath drops` must show it with the pod.
fn stage_drop(bin: &Path, pods: &[netpath_lab::PodInfo]) -> Result<()> {
    let on1: Vec<_> = pods.iter().filter(|p| p.node == 1).collect();
    let [from, to, ..] = on1[..] else {
        bail!("the lab has fewer than two pods on node 1");
    };
    const PORT: u16 = 9;
    for _ in 0..3 {
        // A traffic tool in the pod's namespace; bash's /dev/udp needs no listener.
        let st = Command::new("ip")
            .args(["netns", "exec", &from.netns, "bash", "-c"])
            .arg(format!("echo drop-me > /dev/udp/{}/{PORT}", to.ip))
            .status()
            .context("sending the staged drop")?;
        if !st.success() {
            bail!("sending UDP from {} failed ({st})", from.name);
        }
    }
    println!(
        "\n== drops: UDP {} -> {}:{PORT}, where nothing listens ==",
        from.name, to.ip
    );
    let read = ["drops", "--socket", SOCKET];
    wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let rows = netpath_json(bin, &[&read[..], &["--reason", "NO_SOCKET", "-o", "json"]].concat())?;
        Ok(rows.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["pod"].is_string() && r["packets"].as_u64() >= Some(1))
        }))
    })
    .context("netpath drops did not show the staged NO_SOCKET drop with its pod")?;
    let _ = Command::new(bin).args(read).status();
    Ok(())
}

pub fn run(bin: &Path, duration: Option<u64>) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let lab = Lab::new(PREFIX);
    let mut cleanup = Cleanup {
        bin,
        lab: &lab,
        daemon: None,
    };
    let status = lab.up().context("lab up failed")?;
    print!("{status}");
    let veths: Vec<String> = status
        .pods
        .iter()
        .filter(|p| p.node == 1)
        .map(|p| p.host_veth.clone())
        .collect();
    let mut args = vec![
        "run".to_string(),
        "--netns".into(),
        NODE1.into(),
        "--pin-dir".into(),
        PIN_DIR.into(),
        "--socket".into(),
        SOCKET.into(),
    ];
    // An ephemeral port: the demo must not take a real netpath's 9464 (the URL is printed).
    args.extend([
        "--interval".into(),
        "3s".into(),
        "--metrics".into(),
        "127.0.0.1:0".into(),
    ]);
    // The bridge and its veths by TC, the underlay by native XDP so both hooks are exercised.
    for i in std::iter::once("cni0".to_string())
        .chain(veths)
        .chain(std::iter::once("ul0:xdp".to_string()))
    {
        args.extend(["--iface".into(), i]);
    }
    let want = args.iter().filter(|a| *a == "--iface").count() as u64;
    eprintln!("xtask demo: netpath {}", args.join(" "));
    cleanup.daemon = Some(Command::new(bin).args(&args).spawn().context("starting netpath run")?);
    // Traffic and the first `ifaces` only once the daemon answers with every interface attached:
    // before that, its socket is not there and the read commands would show the host instead.
    let daemon = cleanup.daemon.as_mut().expect("just started");
    wait_until(ATTACH_TIMEOUT, Duration::from_millis(100), || {
        if let Some(st) = daemon.try_wait()? {
            bail!("netpath run exited before attaching ({st})");
        }
        Ok(attached(bin)? >= want)
    })
    .with_context(|| format!("netpath run did not attach to its {want} interfaces"))?;
    eprintln!("xtask demo: netpath attached to {want} interfaces");
    let started = Instant::now();
    let until = duration.map(Duration::from_secs);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| started.elapsed() < u) {
        // A failed round is reported and the next one tried, as the counters may still be read.
        let report = match lab.drive_traffic(&TrafficOpts::default()) {
            Ok(r) => serde_json::to_string(&r)?,
            Err(e) => format!("error: {e}"),
        };
        rounds += 1;
        eprintln!("xtask demo: traffic round {rounds}: {report}");
        if rounds == 1 {
            println!("\n== node 1 interfaces: veth peer, the pod namespace behind it, attached programs ==");
            let _ = Command::new(bin)
                .args(["ifaces", "--socket", SOCKET, "--netns", NODE1])
                .status();
            stage_drop(bin, &status.pods)?;
        }
        if let Some(d) = cleanup.daemon.as_mut() {
            if let Some(st) = d.try_wait()? {
                bail!("netpath run exited early ({st})");
            }
        }
    }
    if let Some(mut d) = cleanup.daemon.take() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(d.id() as i32, libc::SIGINT) };
        let st = d.wait()?;
        if !st.success() {
            bail!("netpath run exited with {st}");
        }
    }
    println!("\n== top flows on node 1 ==");
    // The daemon is gone: the read commands read node 1's pins.
    let read = ["--socket", SOCKET, "--pin-dir", PIN_DIR, "--netns", NODE1];
    let _ = Command::new(bin).arg("flows").args(read).args(["--top", "15"]).status();
    let rows = netpath_json(bin, &[&["stats"][..], &read, &["-o", "json"]].concat())?;
    let mut missing = Vec::new();
    for class in EXPECTED {
        let n: u64 = rows
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["class"] == class)
                    .filter_map(|r| r["packets"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        println!("{class:>6}: {n} packets");
        if n == 0 {
            missing.push(class);
        }
    }
    drop(cleanup);
    if !missing.is_empty() {
        bail!("no {} traffic was counted", missing.join(", "));
    }
    println!(
        "demo: all of {} counted, the staged drop shown with its reason and pod; lab and pins removed",
        EXPECTED.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_ready_and_no_longer_than_the_timeout() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            Ok(calls == 3)
        })
        .unwrap();
        assert_eq!(calls, 3);
        let t = Instant::now();
        let e = wait_until(Duration::from_millis(50), Duration::from_millis(5), || Ok(false)).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(2) && e.to_string().contains("not ready"),
            "{e}"
        );
        let e = wait_until(Duration::from_secs(5), Duration::from_millis(1), || bail!("exited")).unwrap_err();
        assert_eq!(e.to_string(), "exited");
    }
}
