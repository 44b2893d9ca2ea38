//! `netpath flows`: the flow table, heaviest first.
use netpath::{
    model::{
        self,
        flows::{self, Clock, Filter},
    },
    node::ifaces,
};

use crate::{args::FlowsArgs, daemon};

pub fn run(args: &FlowsArgs) -> anyhow::Result<()> {
    let class = args.class.as_deref().map(model::parse_class).transpose()?;
    let filter = Filter {
        iface: args.iface.clone(),
        class,
        top: args.top,
        sort: Some(args.sort),
    };
    let rt = daemon::runtime()?;
    let rows = match daemon::connect(&args.read.socket, &rt)? {
        Some(c) => rt.block_on(c.flows(&filter))?,
        None => {
            let clock = Clock::now();
            let pinned = daemon::open_pins(&args.read)?.flows()?;
            let names = daemon::PinNames::read(&args.read);
            let rows: Vec<_> = pinned
                .iter()
                .map(|(k, v)| {
                    let n = names.get(k.ifindex);
                    let mut r = flows::row(k, v, n.iface, &clock);
                    r.owner = n.owner;
                    r
                })
                .collect();
            names.warn_unknown();
            // A name with flows is known (even if its link is gone); one without must exist.
            if let Some(name) = &filter.iface {
                if !rows.iter().any(|r| &r.iface == name) {
                    ifaces::resolve(name, args.read.netns.as_deref())?;
                }
            }
            flows::select(rows, &filter)
        }
    };
    print!("{}", model::render(&rows, args.read.output, |r| flows::table(r))?);
    Ok(())
}
