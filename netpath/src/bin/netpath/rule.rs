//! `netpath rule add|list|del`: the daemon's rule table.
use netpath::model::{
    self,
    rules::{self, RuleSpec},
};

use crate::{
    args::{RuleAction, RuleArgs},
    daemon,
};

pub fn run(args: RuleArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let c = daemon::require(&rt, &args.socket)?;
    let rows = match args.action {
        RuleAction::List => daemon::answer(rt.block_on(c.rules()))?,
        RuleAction::Del { id } => vec![daemon::answer(rt.block_on(c.del_rule(id)))?],
        RuleAction::Add(a) => {
            let a = *a;
            let (action, target) = match (a.pass, a.drop, a.redirect, a.mirror) {
                (true, ..) => ("pass", None),
                (_, true, ..) => ("drop", None),
                (_, _, Some(t), _) => ("redirect", Some(t)),
                (_, _, _, Some(t)) => ("mirror", Some(t)),
                _ => unreachable!("clap requires one verdict"),
            };
            let spec = RuleSpec {
                iface: a.iface.or(a.pod),
                direction: a.direction,
                class: a.class,
                src: a.src,
                dst: a.dst,
                dst_mac: a.dst_mac,
                port: a.port,
                action: action.into(),
                target,
                priority: a.priority,
                force: a.force,
            };
            vec![daemon::answer(rt.block_on(c.add_rule(&spec)))?]
        }
    };
    print!("{}", model::render(&rows, args.output, |r| rules::table(r))?);
    Ok(())
}
