//! `netpath stats`: per interface (and pod), direction and class.
use netpath::model::{self, stats};

use crate::{args::ReadArgs, daemon};

pub fn run(read: &ReadArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let rows = match daemon::connect(&read.socket, &rt)? {
        Some(c) => rt.block_on(c.stats())?,
        None => {
            let counters = daemon::open_pins(read)?.iface_counters()?;
            let names = daemon::PinNames::read(read);
            let mut rows = stats::rows(&counters, |i| names.get(i).iface);
            for r in &mut rows {
                r.owner = names.get(r.ifindex).owner;
            }
            names.warn_unknown();
            rows
        }
    };
    print!("{}", model::render(&rows, read.output, |r| stats::table(r))?);
    Ok(())
}
