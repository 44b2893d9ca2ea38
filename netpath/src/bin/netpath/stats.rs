//! `netpath stats`: per interface (and pod), direction and class.
use netpath::{
    model::{self, stats},
    node::ifaces,
};

use crate::{args::ReadArgs, daemon};

pub fn run(read: &ReadArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let rows = match daemon::connect(&read.socket, &rt)? {
        Some(c) => rt.block_on(c.stats())?,
        None => stats::rows(&daemon::open_pins(read)?.iface_counters()?, ifaces::display_name),
    };
    print!("{}", model::render(&rows, read.output, |r| stats::table(r))?);
    Ok(())
}
