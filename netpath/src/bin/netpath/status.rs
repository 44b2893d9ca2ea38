//! `netpath status`: flow table fill, evictions, events emitted/delivered/lost, capture, malformed
//! frames by reason, and the daemon's own state when one runs.
use netpath::model::{self, status::StatusReport};

use crate::{args::ReadArgs, daemon};

pub fn run(read: &ReadArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let report = match daemon::connect(&read.socket, &rt)? {
        Some(c) => rt.block_on(c.status())?,
        None => daemon::open_pins(read)?.status(None)?,
    };
    print!("{}", model::render(&report, read.output, StatusReport::text)?);
    Ok(())
}
