//! `netpath capture`: packets copied in the kernel, to pcapng (see `netpath::capture`).
use crate::args::CaptureArgs;

pub fn run(args: &CaptureArgs) -> anyhow::Result<()> {
    Ok(netpath::capture::run(&args.options())?)
}
