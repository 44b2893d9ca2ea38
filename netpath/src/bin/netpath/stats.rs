//! `netpath stats`: per interface (and pod), direction and class.
use netpath::model::{self, flows::Filter, owner, stats};

use crate::{args::StatsArgs, daemon};

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let (read, sel) = (&args.read, &args.select);
    let rt = daemon::runtime()?;
    let rows = if sel.ip.is_some() || sel.port.is_some() {
        // Interfaces count per class, not per address or port: the flow table does.
        let filter = Filter {
            pod: sel.pod.clone(),
            ip: sel.ip,
            port: sel.port,
            ..Filter::default()
        };
        stats::from_flows(&daemon::flow_rows(read, &filter, &rt)?)
    } else {
        let (mut rows, owners) = match daemon::connect(&read.socket, &rt)? {
            Some(c) => {
                let rows = rt.block_on(c.stats())?;
                let owners = match &sel.pod {
                    Some(_) => rt.block_on(c.ifaces())?.iter().map(|r| r.owner()).collect(),
                    None => Vec::new(),
                };
                (rows, owners)
            }
            None => {
                let counters = daemon::open_pins(read)?.iface_counters()?;
                let names = daemon::PinNames::read(read);
                let mut rows = stats::rows(&counters, |i| names.get(i).iface);
                for r in &mut rows {
                    r.owner = names.get(r.ifindex).owner;
                }
                names.warn_unknown();
                (rows, names.owners())
            }
        };
        if let Some(pod) = &sel.pod {
            owner::check_pod(pod, owners.iter().chain(rows.iter().map(|r| &r.owner)))?;
            rows.retain(|r| r.owner.matches(pod));
        }
        rows
    };
    print!("{}", model::render(&rows, read.output, |r| stats::table(r))?);
    Ok(())
}
