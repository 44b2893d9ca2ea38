//! `netpath run`: the daemon (see `netpath::daemon`).
use crate::args::RunArgs;

pub fn run(args: &RunArgs, given: Vec<String>) -> anyhow::Result<()> {
    let invocation = args.invocation(given);
    let cfg = invocation.resolve();
    // `--ebpf-log debug` (flag or config file) asks for the datapath's debug records: let them
    // through. A configuration that does not resolve is reported once logging is up.
    crate::init_logging(cfg.as_ref().map_or(log::LevelFilter::Off, |c| c.ebpf_log));
    Ok(netpath::daemon::run(invocation, cfg?)?)
}
