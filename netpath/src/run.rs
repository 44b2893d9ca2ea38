//! `netpath run`: load, attach, report every interval, detach on SIGINT/SIGTERM.
use crate::{
    attach, caps,
    cli::{Output, RunArgs},
    error::{Error, Result},
    ifaces,
    loader::{self, LoadOptions},
    maps::Maps,
    netns, report,
};
use netpath_common::{Config, MAX_VXLAN_PORTS};
use std::{
    collections::HashSet,
    io::Write as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

pub fn vxlan_config(ports: &[u16]) -> Result<Config> {
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(Error::BadArgument(format!("at most {MAX_VXLAN_PORTS} --vxlan-port values")));
    }
    if ports.contains(&0) {
        return Err(Error::BadArgument("--vxlan-port 0 is not a port".into()));
    }
    let mut c = Config { vxlan_ports: [0; MAX_VXLAN_PORTS], _pad: [0; 4] };
    c.vxlan_ports[..ports.len()].copy_from_slice(ports);
    Ok(c)
}

pub fn run(args: &RunArgs) -> Result<()> {
    // Validate everything before changing anything.
    let config = vxlan_config(&args.vxlan_ports)?;
    if args.interval.is_zero() {
        return Err(Error::BadArgument("--interval must be positive".into()));
    }
    caps::require_datapath()?;
    if let Some(ns) = &args.netns {
        netns::enter(ns)?;
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for spec in &args.ifaces {
        let iface = ifaces::resolve(&spec.name, args.netns.as_deref())?;
        if seen.insert(iface.ifindex) {
            targets.push((iface, spec.mode.unwrap_or(args.mode)));
        }
    }

    let opts = LoadOptions {
        pin_dir: (!args.no_pin).then(|| args.pin.pin_dir.clone()),
        flow_table_size: args.flow_table_size,
        config,
    };
    let mut ebpf = loader::load(&opts)?;
    attach::load_programs(&mut ebpf)?;
    let mut links = Vec::new();
    let mut attached = Vec::new();
    for (iface, mode) in &targets {
        match attach::attach(&mut ebpf, iface, *mode) {
            Ok((a, l)) => {
                eprintln!(
                    "netpath: attached to {} (ifindex {}, {} via {:?}{})",
                    a.iface,
                    a.ifindex,
                    a.mode,
                    a.tc_hook,
                    a.driver.as_deref().map(|d| format!(", driver {d}")).unwrap_or_default()
                );
                attached.push(a);
                links.push(l);
            }
            Err(e) => {
                for l in links {
                    attach::detach(&mut ebpf, l);
                }
                return Err(e);
            }
        }
    }
    let maps = Maps::take(&mut ebpf)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let started = Instant::now();
    let tty = args.output == Output::Table && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut next = started + args.interval;
    loop {
        let deadline = args.duration.map(|d| started + d);
        while !stop.load(Ordering::Relaxed) && Instant::now() < next && deadline.is_none_or(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(50).min(next.saturating_duration_since(Instant::now())));
        }
        let finished = stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d);
        let mut out = std::io::stdout().lock();
        match args.output {
            Output::Table => {
                if tty {
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                let _ = write!(out, "{}", report::stats_table(&maps, started.elapsed())?);
            }
            Output::Json => {
                let _ = writeln!(out, "{}", report::stats_json_line(&maps)?);
            }
        }
        let _ = out.flush();
        if finished {
            break;
        }
        next += args.interval;
    }
    for l in links {
        attach::detach(&mut ebpf, l);
    }
    drop(ebpf);
    eprintln!("netpath: detached from {} interface(s)", attached.len());
    if !args.no_pin {
        eprintln!("netpath: counters stay pinned in {} (`netpath down` removes them)", args.pin.pin_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_ports_are_validated() {
        assert_eq!(vxlan_config(&[8472]).unwrap().vxlan_ports, [8472, 0, 0, 0]);
        assert!(vxlan_config(&[1, 2, 3, 4, 5]).is_err());
        assert!(vxlan_config(&[0]).is_err());
    }
}
