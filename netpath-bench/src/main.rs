//! `cargo xtask bench [SUITE] [OPTIONS]`: netpath's benchmarks. Goals are ratios to baselines
//! measured in the same run (an empty XDP program, the plain bridge), printed next to the numbers
//! as PASS/MISS and never asserted. Every suite prints a table and writes
//! `$NETPATH_BENCH_OUT/SUITE.json` (default `target/bench`); BENCHMARKS.md explains the methods and
//! the results.
//!
//! Shared: `cli` (the arguments), `stats` (medians, spreads, percentiles), `machine` (what a
//! result records about the machine and the source), `cpu` (placement and CPU time), `report`
//! (headers, verdicts, formats, the JSON file), `cref` (the C reference the testrun suite times
//! netpath against), `pods` (pod to pod in the lab: the traffic the fastpath and drops suites
//! measure). One module per suite under `suites`.
mod cli;
mod cpu;
mod cref;
mod machine;
mod pods;
mod report;
mod stats;
mod suites;

use clap::{error::ErrorKind, Parser as _};
use cli::{Cli, Suite};
use suites::{compare, daemon, drops, events, fastpath, metrics, startup, testrun};

fn main() {
    let (default, suite) = match Cli::try_parse() {
        Ok(cli) => (cli.suite.is_none(), cli.suite()),
        Err(e) if e.kind() == ErrorKind::InvalidSubcommand => {
            // clap suggests a similar name at best; list them all, as before clap.
            let _ = e.print();
            eprintln!("\nsuites: {} (default testrun)", Suite::NAMES.join(", "));
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    // The other build of `compare` is checked before root: a missing build is a usage error.
    let against = match &suite {
        Suite::Compare(o) => match compare::Against::resolve(o) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("netpath-bench: compare: {e}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        match suite {
            Suite::Fastpath(_) => eprintln!(
                "netpath-bench: needs root (network namespaces, iptables, BPF): run `sudo -E cargo xtask bench fastpath`"
            ),
            Suite::Drops(_) => eprintln!(
                "netpath-bench: needs root (network namespaces, BPF): run `sudo -E cargo xtask bench drops`"
            ),
            Suite::Compare(_) => eprintln!(
                "netpath-bench: needs root (CAP_BPF and CAP_PERFMON to load both datapaths and run BPF_PROG_TEST_RUN): \
                 run `sudo -E cargo xtask bench compare --against DIR`"
            ),
            _ => eprintln!(
                "netpath-bench: needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON to load the datapath and run \
                 BPF_PROG_TEST_RUN): run `sudo -E cargo xtask bench`"
            ),
        }
        std::process::exit(1);
    }
    let result = match &suite {
        // No suite named: the datapath's cost per frame, then its start.
        Suite::Testrun(o) if default => testrun::run(o).and_then(|()| {
            println!();
            startup::run(o)
        }),
        Suite::Testrun(o) => testrun::run(o),
        Suite::Startup(o) => startup::run(o),
        Suite::Daemon(o) => daemon::run(o),
        Suite::Events(o) => events::run(o),
        Suite::Metrics(o) => metrics::run(o),
        Suite::All(o) => suites::all(o),
        Suite::Compare(o) => compare::run(o, against.as_ref().expect("resolved above")),
        Suite::Fastpath(o) => match fastpath::run(o) {
            Ok(false) if o.require_fastpath => {
                eprintln!("netpath-bench: --require-fastpath: the fast path was unavailable (see above)");
                std::process::exit(3);
            }
            r => r.map(drop),
        },
        Suite::Drops(o) => drops::run(o),
    };
    if let Err(e) = result {
        eprintln!("netpath-bench: error: {e:#}");
        // A build that lacks what the comparison needs is bad input, like a missing one; so is a
        // missing C compiler for the C reference.
        std::process::exit(if e.is::<compare::BadInput>() || e.is::<cref::MissingCompiler>() {
            2
        } else {
            1
        });
    }
}
