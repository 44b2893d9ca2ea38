//! The command line: `netpath-bench [SUITE] [OPTIONS]`, testrun then startup when no suite is named.
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use netpath_common::DEFAULT_FLOW_TABLE_SIZE;

#[derive(Parser, Debug)]
#[command(
    name = "netpath-bench",
    about = "netpath's benchmarks: goals are ratios to baselines measured in the same run, reported as PASS/MISS, never \
             asserted. Results go to stdout and to $NETPATH_BENCH_OUT/SUITE.json (default target/bench).",
    // Options before a suite belong to the default suite; `netpath-bench all --quick` is the form.
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "SUITE",
    subcommand_help_heading = "Suites",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub suite: Option<Suite>,
    /// The options of the default suites, testrun and startup.
    #[command(flatten)]
    pub opts: Opts,
}

impl Cli {
    /// The suite to run, with its options.
    pub fn suite(self) -> Suite {
        self.suite.unwrap_or(Suite::Testrun(self.opts))
    }
}

#[derive(Subcommand, Debug)]
pub enum Suite {
    /// Datapath ns/packet via BPF_PROG_TEST_RUN, as ratios to an empty XDP program (the default, with startup)
    Testrun(Opts),
    /// Time from `netpath run` to attached on a veth (median of 5), verified instructions and load time per program
    Startup(Opts),
    /// Hot-plug attach latency and daemon RSS idle / at 100k flows (runs the release `netpath` of $NETPATH_BIN)
    Daemon(Opts),
    /// Ring-buffer events drained per second, count-only and full decode
    Events(Opts),
    /// /metrics render time, body size and ns per series at 1k/10k/100k flows
    Metrics(Opts),
    /// Every suite above, in order
    All(Opts),
    /// Pod to pod on one node: fast path vs bridge vs bridge + netfilter (needs iperf3, sockperf, iptables)
    Fastpath(FastpathOpts),
    /// What the drop tracer costs pod-to-pod TCP throughput and CPU per packet: netpath observing
    /// with drops on vs off, interleaved, as on/off ratios (needs iperf3; not in `all`)
    Drops(DropsOpts),
    /// This build's datapath against another build's (--against DIR), interleaved in one process,
    /// as new/old ratios (not in `all`)
    Compare(CompareOpts),
}

impl Suite {
    /// The names a suite is run by: what an unknown one is answered with.
    pub const NAMES: [&str; 9] = [
        "testrun", "startup", "daemon", "events", "metrics", "all", "fastpath", "drops", "compare",
    ];
}

/// Options of the testrun suite; the startup, daemon, events and metrics suites take only `--quick`.
#[derive(Args, Debug, Clone)]
pub struct Opts {
    /// Smaller counts and shorter runs
    #[arg(long)]
    pub quick: bool,
    /// Flow table capacity for the scaling suite
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FLOW_TABLE_SIZE, value_parser = flow_table_size)]
    pub flow_table_size: u32,
    /// BPF_PROG_TEST_RUN repeat count for the steady-state figures [quick: 100000]
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = repeat,
          default_value_if("quick", "true", "100000"))]
    pub repeat: u32,
    /// Interleaved measurement rounds; every reported number is the median over them [quick: 5]
    #[arg(long, value_name = "N", default_value = "7", value_parser = positive::<usize>,
          default_value_if("quick", "true", "5"))]
    pub rounds: usize,
    /// Distinct frames per round in the per-flow (repeat = 1) batches of the scaling suite [quick: 1000]
    #[arg(long, value_name = "N", default_value = "4000", value_parser = positive::<usize>,
          default_value_if("quick", "true", "1000"))]
    pub batch: usize,
}

/// Options of the fastpath suite.
#[derive(Args, Debug, Clone)]
pub struct FastpathOpts {
    /// One round, 200,000 datagrams, 2 s sockperf/iperf3 runs (about a minute)
    #[arg(long)]
    pub quick: bool,
    /// Interleaved rounds over the four paths, medians reported [quick: 1]
    #[arg(long, value_name = "N", default_value = "3", value_parser = up_to::<15, usize>,
          default_value_if("quick", "true", "1"))]
    pub rounds: usize,
    /// 64-byte UDP datagrams per CPU-per-packet run [quick: 200000]
    #[arg(long, value_name = "N", default_value = "500000", value_parser = up_to::<5_000_000, u64>,
          default_value_if("quick", "true", "200000"))]
    pub packets: u64,
    /// Datagrams per sendmmsg call; 1 = one send() per datagram
    #[arg(long, value_name = "N", default_value = "32", value_parser = up_to::<1024, usize>)]
    pub batch: usize,
    /// Length of each sockperf ping-pong and iperf3 TCP run [quick: 2]
    #[arg(long, value_name = "N", default_value = "5", value_parser = up_to::<30, u32>,
          default_value_if("quick", "true", "2"))]
    pub seconds: u32,
    /// kube-proxy services loaded into node 1's iptables
    #[arg(long, value_name = "N", default_value = "1000", value_parser = up_to::<20_000, usize>)]
    pub services: usize,
    /// Exit with status 3 when the fast path cannot be enabled or does not redirect
    #[arg(long)]
    pub require_fastpath: bool,
    /// Let the scheduler place the traffic threads and tools (default: all on the last CPU)
    #[arg(long)]
    pub no_pin: bool,
}

/// Options of the drops suite.
#[derive(Args, Debug, Clone)]
pub struct DropsOpts {
    /// One round, 200,000 datagrams, 2 s iperf3 runs (about half a minute)
    #[arg(long)]
    pub quick: bool,
    /// Interleaved rounds over the two variants (on, off), medians reported [quick: 1]
    #[arg(long, value_name = "N", default_value = "5", value_parser = up_to::<15, usize>,
          default_value_if("quick", "true", "1"))]
    pub rounds: usize,
    /// 64-byte UDP datagrams per CPU-per-packet run [quick: 200000]
    #[arg(long, value_name = "N", default_value = "500000", value_parser = up_to::<5_000_000, u64>,
          default_value_if("quick", "true", "200000"))]
    pub packets: u64,
    /// Datagrams per sendmmsg call; 1 = one send() per datagram
    #[arg(long, value_name = "N", default_value = "32", value_parser = up_to::<1024, usize>)]
    pub batch: usize,
    /// Length of each iperf3 TCP run [quick: 2]
    #[arg(long, value_name = "N", default_value = "5", value_parser = up_to::<30, u32>,
          default_value_if("quick", "true", "2"))]
    pub seconds: u32,
    /// Let the scheduler place the traffic threads and tools (default: all on the last CPU)
    #[arg(long)]
    pub no_pin: bool,
}

/// Options of the compare suite: the other build (a checkout, or its objects), rounds and repeat.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("baseline").required(true).args(["against", "against_object"])))]
pub struct CompareOpts {
    /// Fewer rounds and a smaller repeat count
    #[arg(long)]
    pub quick: bool,
    /// A netpath checkout built with `cargo xtask build --release` (or `cargo xtask bench`): its
    /// newest target/release/build/netpath-*/out/netpath, and netpath-bench beside it if present
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
    /// The other build's production eBPF object, instead of --against
    #[arg(long, value_name = "FILE")]
    pub against_object: Option<PathBuf>,
    /// The other build's benchmark object (netpath_xdp_nop, netpath_xdp_prs), if they are not in
    /// its production object
    #[arg(long, value_name = "FILE", requires = "against_object", conflicts_with = "against")]
    pub against_bench_object: Option<PathBuf>,
    /// BPF_PROG_TEST_RUN repeat count per call [quick: 100000]
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = repeat,
          default_value_if("quick", "true", "100000"))]
    pub repeat: u32,
    /// Interleaved rounds; ratios are computed within a round, medians over rounds reported [quick: 11]
    #[arg(long, value_name = "N", default_value = "31", value_parser = positive::<usize>,
          default_value_if("quick", "true", "11"))]
    pub rounds: usize,
}

/// A positive whole number; `_` may group digits (`1_000_000`).
fn count(s: &str) -> Result<u64, String> {
    match s.replace('_', "").parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive number, got {s:?}")),
    }
}

fn positive<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    T::try_from(count(s)?).map_err(|_| format!("{s} is too large"))
}

fn up_to<const MAX: u64, T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    match count(s) {
        Ok(n) if n <= MAX => positive(s),
        _ => Err(format!("expected a number from 1 to {MAX}, got {s:?}")),
    }
}

/// Repeat counts beyond what the kernel takes are the kernel's maximum.
fn repeat(s: &str) -> Result<u32, String> {
    Ok(count(s)?.min(u64::from(u32::MAX)) as u32)
}

/// The datapath caps its flow table at 2^24 entries.
fn flow_table_size(s: &str) -> Result<u32, String> {
    Ok(count(s)?.min(1 << 24) as u32)
}

#[cfg(test)]
mod tests {
    use clap::{error::ErrorKind, CommandFactory as _};

    use super::*;

    fn parse(args: &[&str]) -> Result<Suite, clap::Error> {
        Cli::try_parse_from(std::iter::once("netpath-bench").chain(args.iter().copied())).map(Cli::suite)
    }

    fn opts(args: &[&str]) -> Opts {
        match parse(args).unwrap() {
            Suite::Testrun(o)
            | Suite::Startup(o)
            | Suite::Daemon(o)
            | Suite::Events(o)
            | Suite::Metrics(o)
            | Suite::All(o) => o,
            Suite::Fastpath(_) | Suite::Drops(_) | Suite::Compare(_) => {
                panic!("{args:?} parsed as another suite's options")
            }
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, Suite::NAMES);
    }

    #[test]
    fn testrun_defaults_quick_and_errors() {
        let o = opts(&[]);
        assert!(matches!(parse(&[]).unwrap(), Suite::Testrun(_)));
        assert_eq!(
            (o.quick, o.repeat, o.rounds, o.batch, o.flow_table_size),
            (false, 1_000_000, 7, 4_000, DEFAULT_FLOW_TABLE_SIZE)
        );
        let o = opts(&["--quick"]);
        assert_eq!((o.quick, o.repeat, o.rounds, o.batch), (true, 100_000, 5, 1_000));
        let o = opts(&["--quick", "--rounds", "9", "--repeat", "1_000"]);
        assert_eq!((o.repeat, o.rounds, o.batch), (1_000, 9, 1_000));
        assert!(matches!(
            parse(&["all", "--quick"]).unwrap(),
            Suite::All(Opts {
                quick: true,
                repeat: 100_000,
                ..
            })
        ));
        for suite in ["testrun", "startup", "daemon", "events", "metrics", "all"] {
            assert!(opts(&[suite, "--quick"]).quick, "{suite}");
        }
        assert_eq!(opts(&["--flow-table-size", "99999999999"]).flow_table_size, 1 << 24);
        assert_eq!(opts(&["--repeat", "99999999999"]).repeat, u32::MAX);
        for bad in [
            &["nope"][..],
            &["--nope"],
            &["--repeat", "0"],
            &["--rounds", "x"],
            &["all", "daemon"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        assert_eq!(parse(&["nope"]).unwrap_err().kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn fastpath_defaults_quick_and_bounds() {
        let Suite::Fastpath(d) = parse(&["fastpath"]).unwrap() else {
            panic!("not fastpath")
        };
        assert_eq!(
            (d.rounds, d.packets, d.seconds, d.services, d.batch),
            (3, 500_000, 5, 1000, 32)
        );
        assert!(!d.quick && !d.require_fastpath && !d.no_pin);
        let Suite::Fastpath(q) = parse(&["fastpath", "--quick", "--require-fastpath"]).unwrap() else {
            panic!("not fastpath")
        };
        assert!(q.quick && q.require_fastpath);
        assert_eq!((q.rounds, q.packets, q.seconds, q.batch), (1, 200_000, 2, 32));
        for bad in [
            &["fastpath", "--bogus"][..],
            &["fastpath", "--rounds", "0"],
            &["fastpath", "--rounds", "16"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        // The testrun options are not the fast path's.
        assert_eq!(parse(&["fastpath", "--repeat", "5"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn drops_defaults_quick_and_bounds() {
        let Suite::Drops(d) = parse(&["drops"]).unwrap() else {
            panic!("not drops")
        };
        assert_eq!((d.rounds, d.packets, d.seconds, d.batch), (5, 500_000, 5, 32));
        assert!(!d.quick && !d.no_pin);
        let Suite::Drops(q) = parse(&["drops", "--quick", "--no-pin"]).unwrap() else {
            panic!("not drops")
        };
        assert!(q.quick && q.no_pin);
        assert_eq!((q.rounds, q.packets, q.seconds), (1, 200_000, 2));
        let Suite::Drops(r) = parse(&["drops", "--quick", "--rounds", "3"]).unwrap() else {
            panic!("not drops")
        };
        assert_eq!(r.rounds, 3);
        for bad in [
            &["drops", "--bogus"][..],
            &["drops", "--rounds", "0"],
            &["drops", "--rounds", "16"],
            &["drops", "--services", "10"],
            &["drops", "--repeat", "5"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn compare_needs_one_baseline() {
        let Suite::Compare(d) = parse(&["compare", "--against", "/b"]).unwrap() else {
            panic!("not compare")
        };
        assert_eq!((d.quick, d.repeat, d.rounds), (false, 1_000_000, 31));
        assert_eq!(d.against, Some(PathBuf::from("/b")));
        assert!(d.against_object.is_none() && d.against_bench_object.is_none());
        let Suite::Compare(q) = parse(&[
            "compare",
            "--quick",
            "--against-object",
            "/o",
            "--against-bench-object",
            "/ob",
        ])
        .unwrap() else {
            panic!("not compare")
        };
        assert_eq!((q.quick, q.repeat, q.rounds), (true, 100_000, 11));
        assert_eq!(
            (q.against_object, q.against_bench_object),
            (Some(PathBuf::from("/o")), Some(PathBuf::from("/ob")))
        );
        for bad in [
            &["compare"][..],
            &["compare", "--quick"],
            &["compare", "--against", "/b", "--against-object", "/o"],
            &["compare", "--against", "/b", "--against-bench-object", "/ob"],
            &["compare", "--against", "/b", "--rounds", "0"],
            &["compare", "--against", "/b", "--batch", "5"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
