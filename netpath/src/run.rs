//! `netpath run` entry and its argument checks.
//! `netpath run`: load, attach, report every interval, detach on SIGINT/SIGTERM.
use netpath_common::{Config, MAX_VXLAN_PORTS};

use crate::{
    cli::RunArgs,
    error::{Error, Result},
};

pub fn vxlan_config(ports: &[u16]) -> Result<Config> {
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(Error::BadArgument(format!(
            "at most {MAX_VXLAN_PORTS} --vxlan-port values"
        )));
    }
    if ports.contains(&0) {
        return Err(Error::BadArgument("--vxlan-port 0 is not a port".into()));
    }
    let mut c = Config {
        vxlan_ports: [0; MAX_VXLAN_PORTS],
        ..Config::default()
    };
    c.vxlan_ports[..ports.len()].copy_from_slice(ports);
    Ok(c)
}

/// `netpath run`: see [`crate::daemon`]. `given` names the flags typed on the command line (they
/// win over the config file).
pub fn run(args: &RunArgs, given: Vec<String>) -> Result<()> {
    crate::daemon::main(args.clone(), given)
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
