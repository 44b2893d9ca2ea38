//! Interfaces of the current network namespace: names, indexes and the driver that backs them.
//! Everything here asks the kernel through the current network namespace (if_nameindex, ethtool
//! ioctl); /sys/class/net is avoided because it shows the namespace /sys was mounted in, not ours.
use std::{
    ffi::{CStr, CString},
    fs::File,
    os::fd::AsRawFd,
};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
}

/// All interfaces of the current network namespace, by index.
pub fn list() -> Vec<Iface> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return out;
        }
        let mut p = head;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            out.push(Iface {
                name: CStr::from_ptr((*p).if_name).to_string_lossy().into_owned(),
                ifindex: (*p).if_index,
            });
            p = p.add(1);
        }
        libc::if_freenameindex(head);
    }
    out.sort_by_key(|i| i.ifindex);
    out
}

/// Index of an interface, or an error naming it and listing those that exist.
pub fn resolve(name: &str, netns: Option<&str>) -> Result<Iface> {
    let c = CString::new(name).map_err(|_| Error::BadArgument(format!("interface name {name:?} contains NUL")))?;
    // The kernel cuts a name at ':' (an address label, `eth0:1`) and would answer for `eth0`.
    let ifindex = if name.contains(':') {
        0
    } else {
        // SAFETY: c is a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    if ifindex == 0 {
        let available: Vec<String> = list().into_iter().map(|i| i.name).collect();
        return Err(Error::UnknownInterface {
            name: name.to_string(),
            ns: netns
                .map(|n| format!(" in network namespace '{n}'"))
                .unwrap_or_default(),
            available: super::netns::list_or_none(available),
        });
    }
    Ok(Iface {
        name: name.to_string(),
        ifindex,
    })
}

/// The name of `ifindex` here, or `ifN` when no such link exists (any more).
pub fn display_name(ifindex: u32) -> String {
    name_of(ifindex).unwrap_or_else(|| format!("if{ifindex}"))
}

/// Name of an interface index in the current namespace.
pub fn name_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// The name of link `ifindex` in the namespace at `path`, read from a thread of its own that
/// enters it and ends (setns moves only the calling thread; a pooled one would stay there).
pub fn name_in(path: &str, ifindex: u32) -> Option<String> {
    let file = File::open(path).ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid fd we own, on this short-lived thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            name_of(ifindex)
        })
        .join()
        .ok()
        .flatten()
    })
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IF_NAMESIZE],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// The kernel driver behind an interface ("veth", "bridge", "vxlan", "virtio_net", ...), from the
/// ethtool GDRVINFO ioctl. None when the device does not answer it (e.g. loopback).
pub fn driver(name: &str) -> Option<String> {
    if name.len() >= libc::IF_NAMESIZE {
        return None;
    }
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = Ifreq {
        name: [0; libc::IF_NAMESIZE],
        data: &mut info as *mut _ as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket only to carry the ioctl; closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL as _, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Drivers of virtual devices: TC is the right hook for them (native XDP on a veth defeats GSO/GRO
/// and cut pod-to-pod TCP from 10.2 to 2.5 Gbit/s on the reference machine).
pub const VIRTUAL_DRIVERS: &[&str] = &[
    "veth",
    "bridge",
    "vxlan",
    "geneve",
    "tun",
    "macvlan",
    "ipvlan",
    "dummy",
    "802.1Q VLAN Support",
    "wireguard",
    "openvswitch",
    "bonding",
    "team",
    "nlmon",
    "ifb",
    "gre",
    "ipip",
];

pub fn is_virtual(name: &str) -> bool {
    match driver(name) {
        Some(d) => VIRTUAL_DRIVERS.contains(&d.as_str()),
        // Loopback and devices without ethtool support are virtual for our purposes.
        None => true,
    }
}
