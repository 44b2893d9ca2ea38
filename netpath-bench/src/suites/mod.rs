//! One module per suite; each `run` prints its table and writes `$NETPATH_BENCH_OUT/SUITE.json`.
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::cli::Opts;

pub mod compare;
pub mod daemon;
pub mod drops;
pub mod events;
pub mod fastpath;
pub mod metrics;
pub mod startup;
pub mod testrun;

type Run = fn(&Opts) -> Result<()>;

/// The suites `all` runs, in order. fastpath and drops are not among them: they need their own tools
/// and run for minutes; nor is compare, which needs another build.
const ALL: [(&str, Run); 5] = [
    ("testrun", testrun::run),
    ("startup", startup::run),
    ("daemon", daemon::run),
    ("events", events::run),
    ("metrics", metrics::run),
];

/// Every suite of `ALL`, even when one fails (its guards clean up on error and on panic).
pub fn all(opts: &Opts) -> Result<()> {
    let mut failed = Vec::new();
    for (i, (name, suite)) in ALL.iter().enumerate() {
        if i > 0 {
            println!();
            println!("{}", "=".repeat(100));
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| suite(opts))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("netpath-bench: {name}: error: {e:#}");
                failed.push(*name);
            }
            Err(_) => {
                eprintln!("netpath-bench: {name}: panicked");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("suites failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `netpath ARGS -o json` (the CLI the user runs, `$NETPATH_BIN`), parsed; an error carries its
/// stderr.
pub fn netpath_json(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(netpath_tests::netpath_bin())
        .args(args)
        .args(["-o", "json"])
        .output()
        .context("running netpath")?;
    if !out.status.success() {
        bail!(
            "netpath {} -o json failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("netpath {} -o json printed bad JSON", args.join(" ")))
}

/// Run `ip ARGS`; an error carries its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
