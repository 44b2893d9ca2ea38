//! `netpath flows`: the flow table, heaviest first.
use netpath::model::{
    self,
    flows::{self, Filter},
};

use crate::{args::FlowsArgs, daemon};

pub fn run(args: &FlowsArgs) -> anyhow::Result<()> {
    let class = args.class.as_deref().map(model::parse_class).transpose()?;
    let filter = Filter {
        iface: args.iface.clone(),
        class,
        top: args.top,
        sort: Some(args.sort),
        active: args.active,
        pod: args.select.pod.clone(),
        ip: args.select.ip,
        port: args.select.port,
    };
    let rt = daemon::runtime()?;
    let rows = daemon::flow_rows(&args.read, &filter, &rt)?;
    print!("{}", model::render(&rows, args.read.output, |r| flows::table(r))?);
    Ok(())
}
