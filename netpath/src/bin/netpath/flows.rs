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
            let rows = daemon::open_pins(&args.read)?
                .flows()?
                .iter()
                .map(|(k, v)| flows::row(k, v, ifaces::display_name(k.ifindex), &clock))
                .collect();
            flows::select(rows, &filter)
        }
    };
    print!("{}", model::render(&rows, args.read.output, |r| flows::table(r))?);
    Ok(())
}
