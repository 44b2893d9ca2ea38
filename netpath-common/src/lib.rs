//! Types shared by the eBPF programs and user space, and the frame parser both run.
//!
//! Everything here is `no_std`, `#[repr(C)]` and `Copy`, with explicit padding so the kernel and
//! user space agree on every byte. The parser ([`parse`]) is generic over a [`parse::Frame`]
//! reader: the eBPF crate reads packet memory behind verifier-visible bounds checks, host tests
//! read a `&[u8]`.
#![no_std]

#[cfg(any(test, feature = "craft"))]
extern crate std;

#[cfg(any(test, feature = "craft"))]
pub mod craft;
pub mod event;
pub mod parse;
pub mod rule;

/// Direction of a frame relative to the interface it was seen on.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;
pub const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

/// Traffic classes. Every frame lands in exactly one, by this precedence:
/// malformed > vxlan > arp > icmp, icmp6, tcp, udp > other_ip > other_l2.
/// A VLAN-tagged frame is classed by its payload; a VXLAN frame is `vxlan` whatever it carries
/// (unless the outer or inner headers are truncated or invalid: then it is `malformed`).
pub mod class {
    pub const ARP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const ICMP6: u8 = 2;
    pub const TCP: u8 = 3;
    pub const UDP: u8 = 4;
    pub const VXLAN: u8 = 5;
    pub const OTHER_IP: u8 = 6;
    pub const OTHER_L2: u8 = 7;
    pub const MALFORMED: u8 = 8;
    pub const COUNT: usize = 9;
    pub const NAMES: [&str; COUNT] = [
        "arp", "icmp", "icmp6", "tcp", "udp", "vxlan", "other_ip", "other_l2", "malformed",
    ];

    pub fn name(class: u8) -> &'static str {
        NAMES.get(class as usize).copied().unwrap_or("unknown")
    }

    pub fn from_name(name: &str) -> Option<u8> {
        NAMES.iter().position(|n| *n == name).map(|i| i as u8)
    }
}

/// Why a frame was counted as malformed (recorded per CPU in [`ERR_*`-style] counters by
/// reason so a user can tell a truncated capture from a bad IHL).
pub mod malformed {
    pub const NONE: u8 = 0;
    pub const TRUNCATED_ETH: u8 = 1;
    pub const TRUNCATED_VLAN: u8 = 2;
    pub const TOO_MANY_VLANS: u8 = 3;
    pub const TRUNCATED_ARP: u8 = 4;
    pub const TRUNCATED_IPV4: u8 = 5;
    pub const BAD_IPV4_HEADER: u8 = 6;
    pub const TRUNCATED_IPV6: u8 = 7;
    pub const BAD_IPV6_HEADER: u8 = 8;
    pub const TOO_MANY_IPV6_EXT: u8 = 9;
    pub const TRUNCATED_L4: u8 = 10;
    pub const BAD_TCP_HEADER: u8 = 11;
    pub const TRUNCATED_VXLAN: u8 = 12;
    pub const BEYOND_PARSE_LIMIT: u8 = 13;
    pub const COUNT: usize = 14;
    pub const NAMES: [&str; COUNT] = [
        "none",
        "truncated_ethernet",
        "truncated_vlan",
        "too_many_vlan_tags",
        "truncated_arp",
        "truncated_ipv4",
        "bad_ipv4_header",
        "truncated_ipv6",
        "bad_ipv6_header",
        "too_many_ipv6_ext_headers",
        "truncated_l4",
        "bad_tcp_header",
        "truncated_vxlan",
        "beyond_parse_limit",
    ];
}

/// Address families in a [`FlowKey`].
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_ARP: u8 = 1;
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// Packets and bytes. Bytes are the L2 frame as on the wire: Ethernet header and every VLAN tag,
/// no FCS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of the per-interface counters: one entry per (interface, direction) holds every class, so
/// the datapath does one hash lookup per frame for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
}

impl IfaceKey {
    pub const fn new(ifindex: u32, direction: u8) -> Self {
        Self { ifindex, direction, _pad: [0; 3] }
    }
}

/// Per-class counters of one (interface, direction), indexed by [`class`] id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub class: [Counter; class::COUNT],
}

/// One flow: the 5-tuple and its context. For ICMP and ICMPv6, `sport` holds the echo identifier
/// (0 for other types) and `dport` is 0, as conntrack does. For ARP, `src`/`dst` are the sender and
/// target protocol addresses and `arp_op` the operation. For VXLAN, the key is the inner flow plus
/// `vni`; the outer (underlay) addresses live in the [`FlowValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub vni: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// Outermost VLAN id (0 when untagged).
    pub vlan: u16,
    pub direction: u8,
    pub family: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub arp_op: u8,
    /// [`ENCAP_VXLAN`] for the inner flow of a VXLAN frame: VNI 0 is a valid VNI, so `vni` alone
    /// cannot tell a tunnelled flow from a native one.
    pub encap: u8,
    pub _pad: [u8; 3],
}

pub const ENCAP_NONE: u8 = 0;
pub const ENCAP_VXLAN: u8 = 1;

/// Per-CPU flow state. Times are `bpf_ktime_get_ns` (CLOCK_MONOTONIC) nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Underlay addresses of a VXLAN flow (zero otherwise).
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    pub outer_family: u8,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    pub _pad: [u8; 6],
}

/// Runtime configuration read by the datapath from the single-entry `NP_CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// UDP destination ports decoded as VXLAN; 0 marks an unused slot.
    pub vxlan_ports: [u16; MAX_VXLAN_PORTS],
    /// Kernel events allowed per second, per CPU and kind (0: unlimited).
    pub events_per_sec: u32,
    /// Burst of the event token bucket.
    pub events_burst: u32,
    pub _pad: [u8; 4],
}

pub const DEFAULT_EVENTS_PER_SEC: u32 = 5_000;
pub const DEFAULT_EVENTS_BURST: u32 = 1_000;

pub const MAX_VXLAN_PORTS: usize = 4;
pub const VXLAN_PORT_FLANNEL: u16 = 8472;
pub const VXLAN_PORT_IANA: u16 = 4789;

impl Default for Config {
    fn default() -> Self {
        Self {
            vxlan_ports: [VXLAN_PORT_FLANNEL, VXLAN_PORT_IANA, 0, 0],
            events_per_sec: DEFAULT_EVENTS_PER_SEC,
            events_burst: DEFAULT_EVENTS_BURST,
            _pad: [0; 4],
        }
    }
}

impl Config {
    #[inline(always)]
    pub fn is_vxlan_port(&self, port: u16) -> bool {
        // Unrolled by hand: a const-bounded loop the verifier need not walk.
        port != 0
            && (port == self.vxlan_ports[0]
                || port == self.vxlan_ports[1]
                || port == self.vxlan_ports[2]
                || port == self.vxlan_ports[3])
    }
}

/// Indices of the per-CPU datapath health counters in `NP_DIAG`.
pub mod diag {
    /// New flows inserted into the flow table.
    pub const FLOWS_CREATED: u32 = 0;
    /// Flow inserts the kernel refused (other than a racing insert of the same key).
    pub const FLOW_INSERT_FAILED: u32 = 1;
    /// Interface counter entries that could not be created (table full).
    pub const IFACE_INSERT_FAILED: u32 = 2;
    /// `bpf_skb_pull_data` failures: the headers stayed non-linear and were parsed as far as seen.
    pub const PULL_FAILED: u32 = 3;
    /// Flows user space removed (their interface went away); written by user space only, so
    /// evictions = created - active - deleted.
    pub const FLOWS_DELETED: u32 = 4;
    /// Events submitted to the ring buffer, and reserves that failed (buffer full): user space
    /// checks delivered + lost == emitted.
    pub const EVENTS_EMITTED: u32 = 5;
    pub const EVENTS_LOST: u32 = 6;
    /// Events the per-CPU rate limit suppressed (never emitted).
    pub const EVENTS_SUPPRESSED: u32 = 7;
    /// Capture records the perf buffer refused (full).
    pub const CAPTURE_LOST: u32 = 8;
    pub const CAPTURED: u32 = 9;
    /// Events user space read from the ring buffer (written by the daemon, so it survives
    /// restarts like the kernel's counts do).
    pub const EVENTS_DELIVERED: u32 = 10;
    /// Malformed frames by reason start here: `MALFORMED_BASE + malformed::*`.
    pub const MALFORMED_BASE: u32 = 16;
    pub const COUNT: u32 = MALFORMED_BASE + super::malformed::COUNT as u32;
}

/// Names of the pinned maps (the pin file names under the bpffs directory).
pub mod maps {
    pub const IFACE_STATS: &str = "NP_IFACE_STATS";
    pub const FLOWS: &str = "NP_FLOWS";
    pub const DIAG: &str = "NP_DIAG";
    pub const CONFIG: &str = "NP_CONFIG";
    pub const EVENTS: &str = "NP_EVENTS";
    pub const CAPTURE: &str = "NP_CAPTURE";
    pub const CAPTURE_CFG: &str = "NP_CAPTURE_CFG";
    pub const CAPTURE_IFACES: &str = "NP_CAPTURE_IFACES";
    /// Pinned so a restarted daemon, `netpath watch` and `netpath capture` find them.
    pub const ALL: [&str; 8] = [IFACE_STATS, FLOWS, DIAG, CONFIG, EVENTS, CAPTURE, CAPTURE_CFG, CAPTURE_IFACES];
}

pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
pub const IFACE_TABLE_SIZE: u32 = 16_384;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, made only of integers and byte arrays, and have
    // explicit padding fields so that every byte is initialised.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceKey {}
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<IfaceKey>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<IfaceCounters>(), 16 * class::COUNT);
        // 4 + 4 + 16 + 16 + 2*3 + 7*1 + 3 padding = 56
        assert_eq!(size_of::<FlowKey>(), 56);
        assert_eq!(size_of::<FlowValue>(), 32 + 32 + 8);
        assert_eq!(size_of::<Config>(), 20);
    }

    #[test]
    fn class_names_round_trip() {
        for (i, n) in class::NAMES.iter().enumerate() {
            assert_eq!(class::from_name(n), Some(i as u8));
            assert_eq!(class::name(i as u8), *n);
        }
        assert_eq!(class::from_name("nope"), None);
    }

    #[test]
    fn vxlan_ports_default_and_zero_never_matches() {
        let c = Config::default();
        assert!(c.is_vxlan_port(8472));
        assert!(c.is_vxlan_port(4789));
        assert!(!c.is_vxlan_port(0));
        assert!(!c.is_vxlan_port(53));
    }
}
