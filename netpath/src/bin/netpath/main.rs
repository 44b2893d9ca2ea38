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
    // `run --ebpf-log debug` asks for the datapath's debug records: let them through.
    let ebpf_log = matches
        .subcommand_matches("run")
        .and_then(|m| m.get_one::<log::LevelFilter>("ebpf_log").copied())
        .unwrap_or(log::LevelFilter::Off);
    init_logging(ebpf_log.max(log::LevelFilter::Info));
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
    if let Err(e) = dispatch(cli, given) {
        eprintln!("netpath: error: {e:#}");
        let code = e.downcast_ref::<netpath::Error>().map(|e| e.exit_code()).unwrap_or(1);
        std::process::exit(code);
    }
}

/// The library logs through `log`; people read it on stderr as `netpath: ...` lines, at `level`
/// unless `RUST_LOG` says otherwise (e.g. `RUST_LOG=debug`, or `RUST_LOG=warn` for a quiet daemon).
fn init_logging(level: log::LevelFilter) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level.as_str()))
        .format(|buf, record| match record.level() {
            log::Level::Info => writeln!(buf, "netpath: {}", record.args()),
            level => writeln!(buf, "netpath: {}: {}", level.as_str().to_lowercase(), record.args()),
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
