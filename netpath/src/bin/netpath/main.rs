//! `netpath`: the command line. One module per verb; the work is in the library (ARCHITECTURE.md).
use std::io::Write as _;

use clap::{parser::ValueSource, CommandFactory as _, FromArgMatches as _};

mod args;
mod capture;
mod daemon;
mod doctor;
mod down;
mod drops;
mod fastpath;
mod flows;
mod ifaces;
mod peers;
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
    // `run` starts logging itself, at the level its configuration asks for.
    if !matches!(cli.command, Command::Run(_)) {
        init_logging(log::LevelFilter::Off);
    }
    if let Err(e) = dispatch(cli, given) {
        eprintln!("netpath: error: {}", chain(&e));
        let code = exit_code(&e);
        std::process::exit(code);
    }
}

/// The library's exit code for its errors, and the API's for a daemon's answer (a 4xx is bad input).
fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(e) = e.downcast_ref::<netpath::Error>() {
        return e.exit_code();
    }
    if let Some(e) = e.downcast_ref::<netpath::service::api::ApiError>() {
        return e.exit_code();
    }
    1
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
/// (`netpath capture: ...` for a capture's), at `info`, or at `ebpf_log` when that is more (the
/// datapath's aya-log records carry the eBPF crate's module paths, which start with `netpath` like
/// the library's). Other crates' records stay out unless `RUST_LOG` asks for them (`RUST_LOG=warn`
/// makes a quiet agent, `RUST_LOG=debug,netlink_proto=trace` a talkative one).
fn init_logging(ebpf_log: log::LevelFilter) {
    let level = ebpf_log.max(log::LevelFilter::Info);
    let filter = format!("netpath={}", level.as_str().to_lowercase());
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format(|buf, record| writeln!(buf, "{}{}", line_prefix(record.target(), record.level()), record.args()))
        .init();
}

/// `netpath: `, `netpath capture: warning: `, ...: what a log line starts with.
fn line_prefix(target: &str, level: log::Level) -> String {
    let who = if target.starts_with("netpath::capture") {
        "netpath capture"
    } else {
        "netpath"
    };
    match level {
        log::Level::Info => format!("{who}: "),
        log::Level::Warn => format!("{who}: warning: "),
        level => format!("{who}: {}: ", level.as_str().to_lowercase()),
    }
}

fn dispatch(cli: Cli, given: Vec<String>) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(&args, given),
        Command::Stats(args) => stats::run(&args),
        Command::Status(read) => status::run(&read),
        Command::Flows(args) => flows::run(&args),
        Command::Ifaces(args) => ifaces::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Drops(args) => drops::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Peers(read) => peers::run(&read),
        Command::Capture(args) => capture::run(&args),
        Command::Down(args) => down::run(&args),
        Command::Rule(args) => rule::run(args),
        Command::Fastpath(args) => fastpath::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let e = anyhow::Error::new(netpath::Error::IoAt {
            what: "binding 127.0.0.1:9464".into(),
            source: io,
        })
        .context("starting the exporter");
        let s = chain(&e);
        assert_eq!(s.matches("address in use").count(), 1, "{s}");
        assert!(s.starts_with("starting the exporter: binding 127.0.0.1:9464"), "{s}");
    }

    #[test]
    fn log_lines_say_who_and_how_bad() {
        assert_eq!(line_prefix("netpath::daemon", log::Level::Info), "netpath: ");
        assert_eq!(
            line_prefix("netpath::capture::pcapng", log::Level::Warn),
            "netpath capture: warning: "
        );
        assert_eq!(line_prefix("netpath::log", log::Level::Debug), "netpath: debug: ");
    }
}
