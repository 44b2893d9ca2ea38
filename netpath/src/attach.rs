//! Attaching the datapath to interfaces, and choosing the hook.
//!
//! `auto` picks TC for virtual devices (veth, bridge, vxlan, ...) and native XDP for physical NICs.
//! Native XDP on a veth defeats GSO/GRO (pod-to-pod TCP fell from 10.2 to 2.5 Gbit/s on the
//! reference machine) and XDP on a bridge never sees bridged pod-to-pod frames, so virtual devices
//! get TC. XDP has no egress hook: in the XDP modes, egress is still observed by TC.
//!
//! TC uses tcx links where the kernel has them (6.6+), which coexist with other programs by design;
//! older kernels get a clsact qdisc and a netlink filter. Links are owned by the loaded programs and
//! detached when they are dropped.
use crate::{
    error::{Error, Result},
    ifaces::{self, Iface},
    loader::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP},
};
use aya::{
    programs::{tc, tc::SchedClassifierLinkId, xdp::XdpLinkId, SchedClassifier, TcAttachType, Xdp, XdpMode},
    util::KernelVersion,
    Ebpf,
};
use std::{fmt, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// TC on virtual devices (veth, bridge, vxlan), native XDP on physical NICs.
    Auto,
    /// TC ingress and egress.
    Tc,
    /// Native (driver) XDP for ingress, TC for egress.
    Xdp,
    /// Generic (skb) XDP for ingress, TC for egress.
    XdpGeneric,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Tc => "tc",
            Mode::Xdp => "xdp",
            Mode::XdpGeneric => "xdp-generic",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "tc" => Ok(Mode::Tc),
            "xdp" => Ok(Mode::Xdp),
            "xdp-generic" => Ok(Mode::XdpGeneric),
            _ => Err(format!("unknown mode '{s}' (auto, tc, xdp, xdp-generic)")),
        }
    }
}

/// An interface request from the command line: `NAME` or `NAME:MODE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceSpec {
    pub name: String,
    pub mode: Option<Mode>,
}

impl FromStr for IfaceSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some((name, mode)) = s.rsplit_once(':') {
            if let Ok(mode) = mode.parse::<Mode>() {
                if name.is_empty() {
                    return Err(format!("'{s}': missing interface name before ':'"));
                }
                return Ok(IfaceSpec { name: name.to_string(), mode: Some(mode) });
            }
        }
        if s.is_empty() {
            return Err("empty interface name".into());
        }
        if s.len() >= libc::IF_NAMESIZE {
            return Err(format!("'{s}' is longer than an interface name can be ({} bytes)", libc::IF_NAMESIZE - 1));
        }
        Ok(IfaceSpec { name: s.to_string(), mode: None })
    }
}

/// The TC mechanism in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcHook {
    Tcx,
    Clsact,
}

impl TcHook {
    pub fn for_kernel() -> TcHook {
        match KernelVersion::current() {
            Ok(v) if v >= KernelVersion::new(6, 6, 0) => TcHook::Tcx,
            _ => TcHook::Clsact,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Attached {
    pub iface: String,
    pub ifindex: u32,
    /// The mode in effect (never `auto`).
    pub mode: Mode,
    pub tc_hook: TcHook,
    pub driver: Option<String>,
}

/// Load the datapath programs into the kernel (once per process, before any attach).
pub fn load_programs(ebpf: &mut Ebpf) -> Result<()> {
    for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
        tc_prog(ebpf, name)?.load().map_err(|source| Error::Program { what: format!("loading {name}"), source })?;
    }
    xdp_prog(ebpf)?.load().map_err(|source| Error::Program { what: format!("loading {PROG_XDP}"), source })?;
    Ok(())
}

fn tc_prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| Error::BadArgument(format!("program {name} missing from the eBPF object")))?
        .try_into()
        .map_err(|source| Error::Program { what: format!("program {name}"), source })
}

fn xdp_prog(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    ebpf.program_mut(PROG_XDP)
        .ok_or_else(|| Error::BadArgument(format!("program {PROG_XDP} missing from the eBPF object")))?
        .try_into()
        .map_err(|source| Error::Program { what: format!("program {PROG_XDP}"), source })
}

/// What `auto` means for this interface.
pub fn resolve_mode(iface: &str, requested: Mode) -> Mode {
    match requested {
        Mode::Auto if ifaces::is_virtual(iface) => Mode::Tc,
        Mode::Auto => Mode::Xdp,
        m => m,
    }
}

/// The links netpath made on one interface, so exactly those can be detached.
#[derive(Debug, Default)]
pub struct IfaceLinks {
    xdp: Option<XdpLinkId>,
    tc: Vec<(&'static str, SchedClassifierLinkId)>,
}

/// Attach to one interface. On error nothing stays attached to it.
pub fn attach(ebpf: &mut Ebpf, iface: &Iface, requested: Mode) -> Result<(Attached, IfaceLinks)> {
    let hook = TcHook::for_kernel();
    let driver = ifaces::driver(&iface.name);
    let mut links = IfaceLinks::default();
    let mut mode = resolve_mode(&iface.name, requested);
    if matches!(mode, Mode::Xdp | Mode::XdpGeneric) {
        let xdp_mode = if mode == Mode::Xdp { XdpMode::Driver } else { XdpMode::Skb };
        match xdp_prog(ebpf)?.attach_to_if_index(iface.ifindex, xdp_mode) {
            Ok(id) => links.xdp = Some(id),
            // auto on a NIC whose driver has no native XDP: TC still sees everything.
            Err(e) if requested == Mode::Auto => {
                eprintln!("netpath: {}: native XDP unavailable ({e}); using TC", iface.name);
                mode = Mode::Tc;
            }
            Err(source) => {
                return Err(Error::Program { what: format!("attaching XDP ({mode}) to {}", iface.name), source })
            }
        }
    }
    let mut directions = vec![(PROG_TC_EGRESS, TcAttachType::Egress)];
    if mode == Mode::Tc {
        directions.insert(0, (PROG_TC_INGRESS, TcAttachType::Ingress));
    }
    if hook == TcHook::Clsact {
        // EEXIST is fine: another tool's clsact is shared, never replaced or removed.
        if let Err(e) = tc::qdisc_add_clsact(&iface.name) {
            if !matches!(&e, tc::TcError::IoError(io) if io.kind() == std::io::ErrorKind::AlreadyExists) {
                detach(ebpf, links);
                return Err(Error::Io(std::io::Error::other(format!("adding clsact qdisc to {}: {e}", iface.name))));
            }
        }
    }
    for (name, dir) in directions {
        match tc_prog(ebpf, name)?.attach(&iface.name, dir) {
            Ok(id) => links.tc.push((name, id)),
            Err(source) => {
                detach(ebpf, links);
                return Err(Error::Program { what: format!("attaching {name} ({hook:?}) to {}", iface.name), source });
            }
        }
    }
    Ok((Attached { iface: iface.name.clone(), ifindex: iface.ifindex, mode, tc_hook: hook, driver }, links))
}

/// Detach exactly the links of one interface. Errors are ignored: the interface may already be
/// gone, which detaches its links in the kernel.
pub fn detach(ebpf: &mut Ebpf, links: IfaceLinks) {
    if let Some(id) = links.xdp {
        if let Ok(p) = xdp_prog(ebpf) {
            let _ = p.detach(id);
        }
    }
    for (name, id) in links.tc {
        if let Ok(p) = tc_prog(ebpf, name) {
            let _ = p.detach(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_spec_parses_optional_mode() {
        assert_eq!("cni0".parse::<IfaceSpec>().unwrap(), IfaceSpec { name: "cni0".into(), mode: None });
        assert_eq!("ul0:xdp".parse::<IfaceSpec>().unwrap(), IfaceSpec { name: "ul0".into(), mode: Some(Mode::Xdp) });
        assert_eq!(
            "eth1:xdp-generic".parse::<IfaceSpec>().unwrap(),
            IfaceSpec { name: "eth1".into(), mode: Some(Mode::XdpGeneric) }
        );
        // Not a mode: part of the name (aliases like eth0:1 are rejected later as unknown).
        assert_eq!("eth0:1".parse::<IfaceSpec>().unwrap().name, "eth0:1");
        assert!(":tc".parse::<IfaceSpec>().is_err());
        assert!("".parse::<IfaceSpec>().is_err());
        assert!("averyveryverylongname".parse::<IfaceSpec>().is_err());
    }
}
