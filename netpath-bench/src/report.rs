//! What the suites print and write: the header every table starts with, goal verdicts, number
//! formats, and `$NETPATH_BENCH_OUT/SUITE.json`.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::{
    cpu::online_cpus,
    machine::{cpu_model, kernel_version, loadavg, source_state, utc_now, DATAPATH_SOURCES},
};

/// Where the JSON goes: `$NETPATH_BENCH_OUT` (`cargo xtask bench` sets `target/bench`).
pub fn out_dir() -> PathBuf {
    std::env::var_os("NETPATH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

/// Write `doc` to `$NETPATH_BENCH_OUT/NAME.json`; returns the path.
pub fn write_json(name: &str, doc: &serde_json::Value) -> Result<PathBuf> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(doc)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A run of the daemon, events or metrics suite: its header printed, its start time and load kept
/// for the JSON.
pub struct Run {
    suite: &'static str,
    quick: bool,
    started: Instant,
    load0: String,
}

impl Run {
    pub fn start(suite: &'static str, quick: bool) -> Run {
        let started = Instant::now();
        let load0 = loadavg();
        header(suite, quick);
        Run {
            suite,
            quick,
            started,
            load0,
        }
    }

    /// What the suite's JSON starts with.
    pub fn doc(&self) -> serde_json::Value {
        env_doc(self.suite, self.quick, &self.load0)
    }

    /// `doc` completed with the load and the time at the end, written as `SUITE.json`.
    /// Write the suite's JSON and say where (and what else the suite wrote, e.g. `daemon.log`).
    pub fn finish(self, doc: serde_json::Value, also: Option<&str>) -> Result<()> {
        let path = write_doc(self.suite, doc, self.started)?;
        println!();
        let also = also.map(|a| format!(" and {a}")).unwrap_or_default();
        println!(
            "Wrote {}{also} ({:.1} s)",
            path.display(),
            self.started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn env_doc(suite: &str, quick: bool, load0: &str) -> serde_json::Value {
    let (commit, dirty) = source_state(DATAPATH_SOURCES);
    json!({
        "suite": suite,
        "date": utc_now(),
        "commit": commit,
        "datapath_dirty": dirty,
        "kernel": kernel_version(),
        "cpu_model": cpu_model(),
        "cpus": online_cpus(),
        "loadavg_start": load0,
        "quick": quick,
    })
}

fn write_doc(name: &str, mut doc: serde_json::Value, started: Instant) -> Result<PathBuf> {
    doc["loadavg_end"] = loadavg().into();
    doc["elapsed_seconds"] = started.elapsed().as_secs_f64().into();
    write_json(name, &doc)
}

fn header(suite: &str, quick: bool) {
    let (commit, dirty) = source_state(DATAPATH_SOURCES);
    println!("netpath-bench {suite}{}", if quick { " (--quick)" } else { "" });
    println!(
        "  {}  kernel {}  cpu {} x{}  load {}  source {}{}",
        utc_now(),
        kernel_version(),
        cpu_model(),
        online_cpus(),
        loadavg(),
        commit.as_deref().unwrap_or("unknown"),
        if dirty == Some(true) {
            " + uncommitted datapath changes"
        } else {
            ""
        }
    );
    println!();
}

pub fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// Verdict for `value <= goal` (or `>=` when `higher_is_better`); N/A when not measured.
pub fn verdict(value: f64, goal: f64, higher_is_better: bool) -> &'static str {
    if !value.is_finite() {
        "N/A"
    } else {
        pass(if higher_is_better { value >= goal } else { value <= goal })
    }
}

/// `x` with `prec` decimals, `-` when not measured.
pub fn f(x: f64, prec: usize) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        "-".into()
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Millions per second.
pub fn mps(x: f64) -> String {
    format!("{:.2} M/s", x / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_formats() {
        assert_eq!(verdict(0.9, 1.0, false), "PASS");
        assert_eq!(verdict(1.1, 1.0, false), "MISS");
        assert_eq!(verdict(1.1, 1.0, true), "PASS");
        assert_eq!(verdict(f64::NAN, 1.0, true), "N/A");
        assert_eq!(
            (f(1.234, 2), f(f64::INFINITY, 2)),
            ("1.23".to_string(), "-".to_string())
        );
        assert_eq!(mps(2_500_000.0), "2.50 M/s");
        assert!(utc_now().ends_with('Z'));
    }
}
