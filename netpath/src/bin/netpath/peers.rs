//! `netpath peers`: this node's cluster view, VXLAN frames per remote VTEP (what the Prometheus
//! rules compare across nodes).
use netpath::{
    daemon::config::host_name,
    model::{self, peers},
};

use crate::{args::ReadArgs, daemon};

pub fn run(read: &ReadArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let view = match daemon::connect(&read.socket, &rt)? {
        Some(c) => rt.block_on(c.vxlan_peers())?,
        None => {
            // From the pins: interfaces named as the daemon named them; the node by the
            // namespace asked for (as `run --netns` names it), else the host; its VTEPs those the
            // frames carried.
            let entries = daemon::open_pins(read)?.vxlan_peers()?;
            let names = daemon::PinNames::read(read);
            let rows = peers::rows(&entries, |i| names.get(i).iface);
            names.warn_unknown();
            peers::VxlanPeers {
                node: read.netns.clone().unwrap_or_else(host_name),
                vteps: peers::vteps([], &rows),
                peers: rows,
            }
        }
    };
    print!("{}", model::render(&view, read.output, peers::table)?);
    Ok(())
}
