//! `netpath ifaces`: each link with its veth peer (its addresses and MAC), pod namespace, pod and
//! attached programs.
use netpath::{
    caps,
    model::{self, ifaces, owner},
    node::{netns, view},
};

use crate::{args::IfacesArgs, daemon};

pub fn run(args: &IfacesArgs) -> anyhow::Result<()> {
    let read = &args.read;
    let rt = daemon::runtime()?;
    let mut rows = match daemon::connect(&read.socket, &rt)? {
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
    if let Some(pod) = &args.pod {
        let owners: Vec<_> = rows.iter().map(|r| r.owner()).collect();
        owner::check_pod(pod, &owners)?;
        rows.retain(|r| r.owner().matches(pod));
    }
    print!("{}", model::render(&rows, read.output, |r| ifaces::table(r))?);
    Ok(())
}
