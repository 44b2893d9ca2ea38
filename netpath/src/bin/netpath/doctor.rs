//! `netpath doctor`: the daemon's last findings when one answers, else the checks run here (in
//! `--netns` when given) with what the pinned maps saw. Exit 1 when a check fails.
use std::collections::HashMap;

use netpath::{
    doctor::{self, Observed},
    model::{
        self,
        doctor::{exit_code, parse_checks, Finding},
        drops::DropFilter,
    },
    node::netns,
};

use crate::{args::DoctorArgs, daemon};

pub fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    // Bad input first: an unknown check or namespace changes nothing and reads nothing.
    let checks = parse_checks(&args.checks)?;
    let read = &args.read;
    let findings = match &read.netns {
        None => {
            let rt = daemon::runtime()?;
            match daemon::connect(&read.socket, &rt)? {
                // The daemon's last run: every traffic fact it has (unanswered ARP included).
                Some(c) => {
                    let want: Vec<String> = checks.iter().map(|c| c.to_string()).collect();
                    rt.block_on(c.doctor(&want))?
                }
                None => local(args, &checks, rt)?,
            }
        }
        Some(ns) => {
            // Before the runtime: its threads (and the commands the checks run) inherit it.
            netns::enter(ns)?;
            local(args, &checks, daemon::runtime()?)?
        }
    };
    print!(
        "{}",
        model::render(&findings, read.output, |f| model::doctor::table(f))?
    );
    if exit_code(&findings) != 0 {
        std::process::exit(exit_code(&findings));
    }
    Ok(())
}

/// The checks here, with the drops and VXLAN flows of the pins when a datapath left some.
fn local(args: &DoctorArgs, checks: &[&'static str], rt: tokio::runtime::Runtime) -> anyhow::Result<Vec<Finding>> {
    let observed = observed_from_pins(args, &rt);
    Ok(rt.block_on(doctor::run(checks, &observed))?)
}

fn observed_from_pins(args: &DoctorArgs, rt: &tokio::runtime::Runtime) -> Observed {
    let read = &args.read;
    if !read.pin.pin_dir.exists() {
        return Observed::default();
    }
    let mut read = read.clone();
    // Entered already: the pins are read (and named) from here.
    read.netns = None;
    let Ok(maps) = daemon::open_pins(&read) else {
        return Observed::default();
    };
    let drops = daemon::drop_rows(&read, &DropFilter::default(), rt).unwrap_or_default();
    let vxlan_to = match maps.peers.is_some() {
        true => doctor::vxlan_to_peers(&maps.vxlan_peers().unwrap_or_default()),
        false => doctor::vxlan_to(&maps.flows().unwrap_or_default()),
    };
    Observed {
        available: true,
        drops,
        since: "since the drop table was created".into(),
        arp_unanswered: HashMap::new(),
        vxlan_to,
        events: false,
    }
}
