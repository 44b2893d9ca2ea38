//! `netpath`: the command line. One module per verb; the work is in the library (ARCHITECTURE.md).
use std::io::Write as _;

use clap::{parser::ValueSource, CommandFactory as _, FromArgMatches as _};

mod args;
mod capture;
mod daemon;
mod down;
mod fastpath;
mod flows;
mod ifaces;
mod rule;
mod run;
mod stats;
mod status;
mod watch;

use args::{Cli, Command};

fn main() {
    let matches = Cli::command().get_matches();
    // The flags typed on the command line of `run` (they win over its config file).
    let given: Vec<String> = matches
        .subcommand_matches("run")
        .map(|m| {
            m.ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.as_str().replace('_', "-"))
                .collect()
        })
        .unwrap_or_default();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(&cli, &given);
    if let Err(e) = dispatch(cli, given) {
        eprintln!("netpath: error: {}", chain(&e));
        let code = e.downcast_ref::<netpath::Error>().map(|e| e.exit_code()).unwrap_or(1);
        std::process::exit(code);
    }
}

/// The error and its causes, each said once: many of netpath's messages already name their cause
/// (`metrics listener ...: Address already in use`) and also keep it as the source.
fn chain(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

/// The library logs through `log`; people read netpath's records on stderr as `netpath: ...` lines
/// (`netpath capture: ...` for a capture's), at `info`, or more for `run --ebpf-log debug|trace`
/// (from the flag or the config file). Other crates' records stay out unless `RUST_LOG` asks for
/// them (`RUST_LOG=warn` makes a quiet agent, `RUST_LOG=debug,netlink_proto=trace` a talkative one).
fn init_logging(cli: &Cli, given: &[String]) {
    let ebpf_log = match &cli.command {
        // A config file that fails to resolve is reported by `run` itself.
        Command::Run(args) => args
            .invocation(given.to_vec())
            .resolve()
            .map(|c| c.ebpf_log)
            .unwrap_or(log::LevelFilter::Off),
        _ => log::LevelFilter::Off,
    };
    let level = ebpf_log.max(log::LevelFilter::Info);
    // The datapath's aya-log records carry the eBPF crate's module paths, which start with
    // `netpath` like the library's.
    let filter = format!("netpath={}", level.as_str().to_lowercase());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format(|buf, record| {
            let who = if record.target().starts_with("netpath::capture") {
                "netpath capture"
            } else {
                "netpath"
            };
            match record.level() {
                log::Level::Info => writeln!(buf, "{who}: {}", record.args()),
                log::Level::Warn => writeln!(buf, "{who}: warning: {}", record.args()),
                level => writeln!(buf, "{who}: {}: {}", level.as_str().to_lowercase(), record.args()),
            }
        })
        .init();
}

fn dispatch(cli: Cli, given: Vec<String>) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(&args, given),
        Command::Stats(read) => stats::run(&read),
        Command::Status(read) => status::run(&read),
        Command::Flows(args) => flows::run(&args),
        Command::Ifaces(read) => ifaces::run(&read),
        Command::Watch(args) => watch::run(&args),
        Command::Capture(args) => capture::run(&args),
        Command::Down(pin) => down::run(&pin),
        Command::Rule(args) => rule::run(args),
        Command::Fastpath(args) => fastpath::run(args),
    }
}
