//! Suite `startup`: how long `netpath run` takes to attach, and what each datapath program costs
//! the verifier. The daemon (the release `netpath` of `$NETPATH_BIN`) starts five times in a
//! throwaway namespace and attaches to one veth; the time from spawn to its "attached to" line is
//! the startup time. Each program is then loaded in this process, one at a time, with the
//! datapath's logging off (as `netpath run` loads it by default) and at trace level (the most the
//! verifier has to walk): the kernel's verified-instruction count and the load time.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::programs::Program;
use netpath::datapath::{
    loader::{self, LoadOptions},
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};
use serde_json::json;

use super::{daemon::BenchDaemon, ip};
use crate::{
    cli::Opts,
    cpu::unpin,
    report::{f, ms, verdict, Run},
    stats::{median, min_max},
};

/// From spawn to attached on a veth, median of the starts.
const GOAL_STARTUP_MS: f64 = 1000.0;
/// Per program, of the verifier's 1,000,000-instruction limit.
const GOAL_VERIFIED_INSNS: u32 = 150_000;
const STARTS: usize = 5;
/// aya-log's trace level (`LoadOptions::ebpf_log`).
const EBPF_LOG_TRACE: u8 = 5;

struct Load {
    program: &'static str,
    ebpf_log: &'static str,
    verified: Option<u32>,
    ms: f64,
}

/// Load every datapath program of a fresh copy of the object, one after the other.
fn loads(ebpf_log: u8) -> Result<Vec<Load>> {
    let mut ebpf = loader::load(&LoadOptions {
        flow_table_size: 1024,
        ebpf_log,
        ..LoadOptions::default()
    })?;
    let mut out = Vec::new();
    for name in [PROG_XDP, PROG_TC_INGRESS, PROG_TC_EGRESS] {
        let prog = ebpf
            .program_mut(name)
            .with_context(|| format!("{name} missing from the object"))?;
        let t = Instant::now();
        match prog {
            Program::Xdp(p) => p.load(),
            Program::SchedClassifier(p) => p.load(),
            _ => Ok(()),
        }
        .with_context(|| format!("loading {name}"))?;
        let elapsed = ms(t.elapsed());
        let info = ebpf.program(name).context("program")?.info()?;
        out.push(Load {
            program: name,
            ebpf_log: if ebpf_log == 0 { "off" } else { "trace" },
            verified: info.verified_instruction_count(),
            ms: elapsed,
        });
    }
    Ok(out)
}

pub fn run(opts: &Opts) -> Result<()> {
    unpin();
    let run = Run::start("startup", opts.quick);

    let node = netpath_tests::Netns::new("npbs");
    ip(&[
        "-n", &node.name, "link", "add", "name", "vstart", "type", "veth", "peer", "name", "vpeer",
    ])?;
    ip(&["-n", &node.name, "link", "set", "vstart", "up"])?;
    ip(&["-n", &node.name, "link", "set", "vpeer", "up"])?;
    let args = [
        "--netns",
        node.name.as_str(),
        "--iface",
        "vstart",
        "--quiet",
        "--no-pin",
        "--socket",
        "none",
        "--metrics",
        "none",
    ];
    println!(
        "Startup: netpath run {} (until \"attached to vstart\"), {STARTS} times",
        args.join(" ")
    );
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut d = BenchDaemon::start(&args, 1)?;
        starts.push(ms(t.elapsed()));
        d.stop();
        // Let the previous daemon's programs go before the next start.
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(node);
    let startup = median(&starts);
    let (lo, hi) = min_max(&starts);
    println!();
    println!(
        "  startup to attached   {:>8} ms median ({} .. {} ms)   goal <= {GOAL_STARTUP_MS:.0} ms   {}",
        f(startup, 0),
        f(lo, 0),
        f(hi, 0),
        verdict(startup, GOAL_STARTUP_MS, false)
    );

    let mut all = loads(0)?;
    all.extend(loads(EBPF_LOG_TRACE)?);
    println!();
    println!(
        "  {:<16} {:<9} {:>14} {:>10}   goal <= {GOAL_VERIFIED_INSNS} verified",
        "program", "ebpf-log", "verified insns", "load ms"
    );
    for l in &all {
        let v = l.verified.map(f64::from).unwrap_or(f64::NAN);
        println!(
            "  {:<16} {:<9} {:>14} {:>10}   {}",
            l.program,
            l.ebpf_log,
            l.verified.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            f(l.ms, 0),
            verdict(v, f64::from(GOAL_VERIFIED_INSNS), false)
        );
    }
    let mut doc = run.doc();
    doc["goals"] = json!({ "startup_ms": GOAL_STARTUP_MS, "verified_insns": GOAL_VERIFIED_INSNS });
    doc["startup_ms"] = json!({ "median": startup, "runs": starts });
    doc["programs"] = all
        .iter()
        .map(|l| json!({ "program": l.program, "ebpf_log": l.ebpf_log, "verified_insns": l.verified, "load_ms": l.ms }))
        .collect();
    run.finish(doc, None)
}
