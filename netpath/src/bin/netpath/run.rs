//! `netpath run`: the daemon (see `netpath::daemon`).
use crate::args::RunArgs;

pub fn run(args: &RunArgs, given: Vec<String>) -> anyhow::Result<()> {
    Ok(netpath::daemon::run(args.invocation(given))?)
}
