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
use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use aya::{
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        xdp::XdpLink,
        Program, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    util::KernelVersion,
    Ebpf,
};

use super::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP};
use crate::{
    error::{Error, Result},
    node::{
        ifaces::{self, Iface},
        view::current_xdp,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
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
        // Linux refuses ':' in interface names (it marks the old `eth0:1` address labels), so
        // whatever follows one is a mode, and a misspelt mode must not pass for part of a name.
        let (name, mode) = match s.split_once(':') {
            Some((name, mode)) => {
                let mode = mode
                    .parse::<Mode>()
                    .map_err(|_| format!("'{s}': unknown mode '{mode}' (modes: auto, tc, xdp, xdp-generic)"))?;
                if name.is_empty() {
                    return Err(format!("'{s}': missing interface name before ':'"));
                }
                (name, Some(mode))
            }
            None => (s, None),
        };
        if name.is_empty() {
            return Err("empty interface name".into());
        }
        if name.len() >= libc::IF_NAMESIZE {
            return Err(format!(
                "'{name}' is longer than an interface name can be ({} bytes)",
                libc::IF_NAMESIZE - 1
            ));
        }
        Ok(IfaceSpec {
            name: name.to_string(),
            mode,
        })
    }
}

/// The TC mechanism in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcHook {
    Tcx,
    Clsact,
}

impl fmt::Display for TcHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcHook::Tcx => "tcx",
            TcHook::Clsact => "clsact",
        })
    }
}

/// `--tc-hook`: which TC mechanism to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcHookChoice {
    /// tcx where the kernel has it (6.6+), clsact otherwise.
    Auto,
    Tcx,
    Clsact,
}

impl FromStr for TcHookChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "tcx" => Ok(Self::Tcx),
            "clsact" => Ok(Self::Clsact),
            _ => Err(format!("unknown tc hook '{s}' (auto, tcx, clsact)")),
        }
    }
}

impl fmt::Display for TcHookChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Tcx => "tcx",
            Self::Clsact => "clsact",
        })
    }
}

impl TcHookChoice {
    pub fn resolve(self) -> TcHook {
        match self {
            TcHookChoice::Tcx => TcHook::Tcx,
            TcHookChoice::Clsact => TcHook::Clsact,
            TcHookChoice::Auto => match KernelVersion::current() {
                Ok(v) if v >= KernelVersion::new(6, 6, 0) => TcHook::Tcx,
                _ => TcHook::Clsact,
            },
        }
    }
}

/// `--tcx-order`: netpath's place among the tcx programs of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcxOrder {
    /// Before every other program: netpath sees frames before anyone can drop or rewrite them.
    First,
    /// After every other program (it then sees only what they let through with TCX_NEXT).
    Last,
}

impl fmt::Display for TcxOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::First => "first",
            Self::Last => "last",
        })
    }
}

impl FromStr for TcxOrder {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "first" => Ok(Self::First),
            "last" => Ok(Self::Last),
            _ => Err(format!("unknown tcx order '{s}' (first, last)")),
        }
    }
}

/// On clsact, netpath's filters use their own handle, so they can be found, replaced and deleted
/// without touching anyone else's filters. Their priority follows `--tcx-order`: a filter that
/// classifies a frame ends the chain, so an observer that must see everything goes first.
pub const CLSACT_HANDLE: TcHandle = TcHandle::new(0x4e50, 1);
pub const CLSACT_PRIORITY_FIRST: u16 = 1;
pub const CLSACT_PRIORITY_LAST: u16 = 0xfff0;

#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub tc_hook: TcHookChoice,
    pub tcx_order: TcxOrder,
    pub force: bool,
    /// With `--persist`: pin every link here, and re-adopt links found pinned.
    pub links_dir: Option<PathBuf>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            tc_hook: TcHookChoice::Auto,
            tcx_order: TcxOrder::First,
            force: false,
            links_dir: None,
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
    /// Hooks whose pinned link from an earlier daemon was re-adopted (program swapped in place).
    pub readopted: Vec<&'static str>,
}

/// The hooks netpath uses on an interface; also the suffix of their link pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc_in",
            Hook::TcEgress => "tc_out",
        }
    }
    fn from_name(s: &str) -> Option<Hook> {
        [Hook::Xdp, Hook::TcIngress, Hook::TcEgress]
            .into_iter()
            .find(|h| h.name() == s)
    }
}

/// A link netpath holds. bpf links (tcx, XDP) are held by fd and optionally pinned; clsact
/// filters are netlink objects aya deletes when the link is dropped.
#[derive(Debug)]
enum Held {
    Fd {
        link: FdLink,
        pin: Option<PathBuf>,
    },
    /// Held only so that dropping it deletes the filter.
    Netlink {
        _link: SchedClassifierLink,
    },
}

/// The links netpath made (or re-adopted) on one interface.
#[derive(Debug, Default)]
pub struct IfaceLinks {
    held: Vec<(Hook, Held)>,
}

impl IfaceLinks {
    /// Detach: close the links and remove their pins.
    pub fn detach(self) {
        for (_, h) in self.held {
            if let Held::Fd { pin: Some(p), .. } = &h {
                let _ = detach_pinned(p);
            }
            drop(h);
        }
    }

    /// Let go of the links without detaching what is pinned (daemon exit with --persist): the
    /// programs stay attached and keep counting until the next daemon re-adopts them.
    pub fn release(self) {
        for (_, h) in self.held {
            match h {
                Held::Fd { link, pin: Some(_) } => drop(link),
                other => drop(other),
            }
        }
    }
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Detach the bpf link pinned at `path` now, then remove the pin. Removing a pin alone only drops
/// a reference: the kernel frees the link (and so detaches the program) later, asynchronously;
/// BPF_LINK_DETACH makes `netpath down` and daemon shutdown leave the hook empty on return.
pub fn detach_pinned(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // union bpf_attr, obj_get: pathname, bpf_fd, file_flags, path_fd.
    let mut get = [0u64; 3];
    get[0] = c.as_ptr() as u64;
    // SAFETY: bpf(2) with a zeroed attr large enough for BPF_OBJ_GET and a valid path pointer.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, get.as_mut_ptr(), size_of_val(&get)) };
    if fd >= 0 {
        // union bpf_attr, link_detach: link_fd.
        let mut detach = [0u64; 1];
        detach[0] = fd as u64;
        // SAFETY: as above; the fd is ours and closed right after.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_DETACH,
                detach.as_mut_ptr(),
                size_of_val(&detach),
            );
            libc::close(fd as i32);
        }
    }
    std::fs::remove_file(path)
}

/// Pin file of a hook: `NAME:IFINDEX:HOOK`. The ifindex makes a pin of a deleted interface
/// distinguishable from one of a new interface with the same name. ':' never occurs in interface
/// names; '.' does (flannel.1) but bpffs refuses it in file names, so it is escaped as `%2e`.
pub fn link_pin(dir: &Path, iface: &Iface, hook: Hook) -> PathBuf {
    let name = iface.name.replace('%', "%25").replace('.', "%2e");
    dir.join(format!("{name}:{}:{}", iface.ifindex, hook.name()))
}

/// Parse a link pin file name back into (name, ifindex, hook).
pub fn parse_link_pin(file: &str) -> Option<(String, u32, Hook)> {
    let mut parts = file.split(':');
    let (name, ifindex, hook) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        name.replace("%2e", ".").replace("%25", "%"),
        ifindex.parse().ok()?,
        Hook::from_name(hook)?,
    ))
}

/// Which programs [`load_programs`] loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programs {
    /// The two TC programs, which every interface uses (XDP is loaded on its first attach).
    Tc,
    /// TC and XDP.
    All,
}

/// Load the datapath programs into the kernel (once per process, before any attach), each on its
/// own thread: verification is most of a load, and the kernel verifies programs in parallel.
pub fn load_programs(ebpf: &mut Ebpf, which: Programs) -> Result<()> {
    let wanted: &[&str] = match which {
        Programs::Tc => &[PROG_TC_INGRESS, PROG_TC_EGRESS],
        Programs::All => &[PROG_TC_INGRESS, PROG_TC_EGRESS, PROG_XDP],
    };
    let mut found: Vec<(&str, &mut Program)> = ebpf.programs_mut().filter(|(n, _)| wanted.contains(n)).collect();
    if let Some(missing) = wanted.iter().find(|w| !found.iter().any(|(n, _)| n == *w)) {
        return Err(Error::MissingFromObject(format!("program {missing}")));
    }
    std::thread::scope(|scope| {
        let loads: Vec<_> = found
            .iter_mut()
            .map(|(name, prog)| {
                let name = *name;
                scope.spawn(move || {
                    let r = match prog {
                        Program::SchedClassifier(p) => p.load(),
                        Program::Xdp(p) => p.load(),
                        _ => Ok(()),
                    };
                    r.map_err(|source| Error::Program {
                        what: format!("loading {name}"),
                        source,
                    })
                })
            })
            .collect();
        loads
            .into_iter()
            .map(|h| h.join().expect("a program load thread panicked"))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

fn tc_prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .ok_or_else(|| Error::BadArgument(format!("program {name} missing from the eBPF object")))?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {name}"),
            source,
        })
}

/// The XDP program, loaded on first use: most nodes attach TC only, and verifying XDP would add
/// to every start.
fn xdp_prog(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let p: &mut Xdp = ebpf
        .program_mut(PROG_XDP)
        .ok_or_else(|| Error::MissingFromObject(format!("program {PROG_XDP}")))?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {PROG_XDP}"),
            source,
        })?;
    if p.fd().is_err() {
        p.load().map_err(|source| Error::Program {
            what: format!("loading {PROG_XDP}"),
            source,
        })?;
    }
    Ok(p)
}

/// What `auto` means for this interface.
pub fn resolve_mode(iface: &str, requested: Mode) -> Mode {
    match requested {
        Mode::Auto if ifaces::is_virtual(iface) => Mode::Tc,
        Mode::Auto => Mode::Xdp,
        m => m,
    }
}

fn prog_err(what: String) -> impl FnOnce(ProgramError) -> Error {
    move |source| Error::Program { what, source }
}

/// Swap our program into a link pinned by an earlier daemon (BPF_LINK_UPDATE: the hook is never
/// empty). Returns None when there is no usable pin; a stale one is removed.
fn readopt(ebpf: &mut Ebpf, pin: &Path, hook: Hook) -> Option<Held> {
    if !pin.exists() {
        return None;
    }
    let fd: FdLink = match PinnedLink::from_pin(pin) {
        Ok(p) => p.into(),
        Err(_) => {
            let _ = std::fs::remove_file(pin);
            return None;
        }
    };
    // Any failure only decides between re-adopting and attaching anew; it is logged, not returned.
    let swapped: std::result::Result<FdLink, Box<dyn std::error::Error>> = match hook {
        Hook::Xdp => (|| {
            let p = xdp_prog(ebpf)?;
            let id = p.attach_to_link(XdpLink::try_from(fd)?)?;
            Ok(FdLink::try_from(p.take_link(id)?)?)
        })(),
        Hook::TcIngress | Hook::TcEgress => (|| {
            let name = if hook == Hook::TcIngress {
                PROG_TC_INGRESS
            } else {
                PROG_TC_EGRESS
            };
            let p = tc_prog(ebpf, name)?;
            let id = p.attach_to_link(SchedClassifierLink::try_from(fd)?)?;
            Ok(FdLink::try_from(p.take_link(id)?)?)
        })(),
    };
    match swapped {
        Ok(link) => Some(Held::Fd {
            link,
            pin: Some(pin.to_path_buf()),
        }),
        Err(e) => {
            // A link of a deleted device (defunct) cannot be updated: start afresh.
            log::info!("pinned link {} not re-adoptable ({e}); attaching anew", pin.display());
            let _ = std::fs::remove_file(pin);
            None
        }
    }
}

/// Keep a freshly made bpf link: pin it when persisting.
fn hold_fd(link: FdLink, pin: Option<PathBuf>) -> Result<Held> {
    match pin {
        None => Ok(Held::Fd { link, pin: None }),
        Some(path) => {
            let pinned = link.pin(&path).map_err(|source| Error::Pin {
                path: path.clone(),
                source,
            })?;
            Ok(Held::Fd {
                link: pinned.into(),
                pin: Some(path),
            })
        }
    }
}

/// Attach to one interface. On error nothing stays attached to it.
pub fn attach(ebpf: &mut Ebpf, iface: &Iface, requested: Mode, opts: &AttachOptions) -> Result<(Attached, IfaceLinks)> {
    let hook = opts.tc_hook.resolve();
    let driver = ifaces::driver(&iface.name);
    let mut links = IfaceLinks::default();
    let mut readopted = Vec::new();
    let pin = |h: Hook| opts.links_dir.as_deref().map(|d| link_pin(d, iface, h));
    let mut mode = resolve_mode(&iface.name, requested);
    if matches!(mode, Mode::Xdp | Mode::XdpGeneric) {
        if let Some(held) = pin(Hook::Xdp).and_then(|p| readopt(ebpf, &p, Hook::Xdp)) {
            links.held.push((Hook::Xdp, held));
            readopted.push(Hook::Xdp.name());
        } else {
            if let Some((id, name)) = current_xdp(&iface.name) {
                if !opts.force {
                    return Err(Error::ForeignXdp {
                        iface: iface.name.clone(),
                        prog_id: id,
                        prog_name: name,
                    });
                }
                log::info!("{}: --force: removing XDP program {id} ({name})", iface.name);
                for m in ["xdp", "xdpgeneric", "xdpdrv"] {
                    let _ = std::process::Command::new("ip")
                        .args(["link", "set", "dev", &iface.name, m, "off"])
                        .status();
                }
            }
            let xdp_mode = if mode == Mode::Xdp {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let p = xdp_prog(ebpf)?;
            match p.attach_to_if_index(iface.ifindex, xdp_mode) {
                Ok(id) => {
                    let link = p
                        .take_link(id)
                        .map_err(prog_err(format!("taking XDP link of {}", iface.name)))?;
                    match FdLink::try_from(link) {
                        Ok(fd) => links.held.push((Hook::Xdp, hold_fd(fd, pin(Hook::Xdp))?)),
                        // Kernels without XDP links (< 5.9) attach by netlink; aya detaches on drop.
                        Err(_) => log::info!("{}: XDP attached without a bpf link; it cannot be pinned", iface.name),
                    }
                }
                // auto on a NIC whose driver has no native XDP: TC still sees everything.
                Err(e) if requested == Mode::Auto => {
                    log::warn!("{}: native XDP unavailable ({e}); using TC", iface.name);
                    mode = Mode::Tc;
                }
                Err(source) => {
                    return Err(Error::Program {
                        what: format!("attaching XDP ({mode}) to {}", iface.name),
                        source,
                    });
                }
            }
        }
    }
    let mut directions = vec![(Hook::TcEgress, PROG_TC_EGRESS, TcAttachType::Egress)];
    if mode == Mode::Tc {
        directions.insert(0, (Hook::TcIngress, PROG_TC_INGRESS, TcAttachType::Ingress));
    }
    if hook == TcHook::Clsact {
        // EEXIST is fine: another tool's clsact is shared, never replaced or removed.
        if let Err(e) = tc::qdisc_add_clsact(&iface.name) {
            let exists = match &e {
                tc::TcError::NetlinkError(n) => n.raw_os_error() == Some(libc::EEXIST),
                tc::TcError::IoError(io) => io.kind() == std::io::ErrorKind::AlreadyExists,
                tc::TcError::AlreadyAttached => true,
                _ => false,
            };
            if !exists {
                links.detach();
                return Err(Error::Tc {
                    what: format!("adding clsact qdisc to {}", iface.name),
                    source: e,
                });
            }
        }
    }
    for (h, name, dir) in directions {
        if hook == TcHook::Tcx {
            if let Some(held) = pin(h).and_then(|p| readopt(ebpf, &p, h)) {
                links.held.push((h, held));
                readopted.push(h.name());
                continue;
            }
        }
        let options = match hook {
            TcHook::Tcx => TcAttachOptions::TcxOrder(match opts.tcx_order {
                TcxOrder::First => LinkOrder::first(),
                TcxOrder::Last => LinkOrder::last(),
            }),
            TcHook::Clsact => TcAttachOptions::Netlink(NlOptions {
                priority: match opts.tcx_order {
                    TcxOrder::First => CLSACT_PRIORITY_FIRST,
                    TcxOrder::Last => CLSACT_PRIORITY_LAST,
                },
                handle: CLSACT_HANDLE,
                classid: None,
            }),
        };
        let p = tc_prog(ebpf, name)?;
        let res = p
            .attach_with_options(&iface.name, dir, options)
            .and_then(|id| p.take_link(id));
        match res {
            Ok(link) => {
                let held = match hook {
                    TcHook::Tcx => match FdLink::try_from(link) {
                        Ok(fd) => hold_fd(fd, pin(h)),
                        Err(source) => Err(Error::Link {
                            what: format!("tcx link of {}", iface.name),
                            source,
                        }),
                    },
                    TcHook::Clsact => Ok(Held::Netlink { _link: link }),
                };
                match held {
                    Ok(held) => links.held.push((h, held)),
                    Err(e) => {
                        links.detach();
                        return Err(e);
                    }
                }
            }
            Err(source) => {
                links.detach();
                return Err(Error::Program {
                    what: format!("attaching {name} ({hook:?}) to {}", iface.name),
                    source,
                });
            }
        }
    }
    Ok((
        Attached {
            iface: iface.name.clone(),
            ifindex: iface.ifindex,
            mode,
            tc_hook: hook,
            driver,
            readopted,
        },
        links,
    ))
}

/// Remove pinned links in `dir` that are not in `keep` (interfaces no longer wanted, or gone):
/// removing the pin detaches the program. Returns the removed pin names.
pub fn sweep_links(dir: &Path, keep: &dyn Fn(&str, u32, Hook) -> bool) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return removed };
    for e in rd.filter_map(|e| e.ok()) {
        let file = e.file_name().to_string_lossy().into_owned();
        let stale = match parse_link_pin(&file) {
            Some((name, ifindex, hook)) => !keep(&name, ifindex, hook),
            None => false,
        };
        if stale && detach_pinned(&e.path()).is_ok() {
            removed.push(file);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_spec_parses_optional_mode() {
        assert_eq!(
            "cni0".parse::<IfaceSpec>().unwrap(),
            IfaceSpec {
                name: "cni0".into(),
                mode: None
            }
        );
        assert_eq!(
            "ul0:xdp".parse::<IfaceSpec>().unwrap(),
            IfaceSpec {
                name: "ul0".into(),
                mode: Some(Mode::Xdp)
            }
        );
        assert_eq!(
            "eth1:xdp-generic".parse::<IfaceSpec>().unwrap(),
            IfaceSpec {
                name: "eth1".into(),
                mode: Some(Mode::XdpGeneric)
            }
        );
        // Interface names have no ':', so what follows one is a mode, spelt exactly.
        for bad in ["cni0:bogusmode", "ul0:XDP", "eth0:1", "a:tc:xdp"] {
            let e = bad.parse::<IfaceSpec>().unwrap_err();
            assert!(e.contains("unknown mode") && e.contains("xdp-generic"), "{bad}: {e}");
        }
        assert!(":tc".parse::<IfaceSpec>().is_err());
        assert!("".parse::<IfaceSpec>().is_err());
        assert!("averyveryverylongname".parse::<IfaceSpec>().is_err());
    }

    #[test]
    fn link_pins_round_trip() {
        let iface = Iface {
            name: "flannel.1%".into(),
            ifindex: 42,
        };
        let p = link_pin(Path::new("/x"), &iface, Hook::TcEgress);
        assert_eq!(p, Path::new("/x/flannel%2e1%25:42:tc_out"));
        assert!(
            !p.file_name().unwrap().to_str().unwrap().contains('.'),
            "bpffs refuses dots"
        );
        assert_eq!(
            parse_link_pin("flannel%2e1%25:42:tc_out"),
            Some(("flannel.1%".into(), 42, Hook::TcEgress))
        );
        assert_eq!(parse_link_pin("NP_FLOWS"), None);
        assert_eq!(parse_link_pin("eth0:x:xdp"), None);
    }
}
