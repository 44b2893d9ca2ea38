//! `netpath ifaces`: each link with its veth peer, pod namespace, pod and attached programs.
use netpath::{
    caps,
    model::{self, ifaces},
    node::{netns, view},
};

use crate::{args::ReadArgs, daemon};

pub fn run(read: &ReadArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let rows = match daemon::connect(&read.socket, &rt)? {
        Some(c) => rt.block_on(c.ifaces())?,
        None => {
            caps::require_read()?;
            if let Some(ns) = &read.netns {
                netns::enter(ns)?;
            }
            // A fresh runtime after setns, so its threads are in the namespace.
            daemon::runtime()?.block_on(view::collect())?
        }
    };
    print!("{}", model::render(&rows, read.output, |r| ifaces::table(r))?);
    Ok(())
}
