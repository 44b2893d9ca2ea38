//! Events the datapath emits to the `NP_EVENTS` ring buffer, and packet capture records for the
//! `NP_CAPTURE` perf event array. One fixed layout for every kind keeps the producer a single
//! reserve-fill-submit with no variable-size arithmetic for the verifier.
use crate::{Addr, FlowKey, Words};

pub mod kind {
    /// A flow entered the table (kernel).
    pub const FLOW_NEW: u8 = 0;
    /// A flow ended: TCP FIN/RST (kernel), or aged out / evicted (user space).
    pub const FLOW_END: u8 = 1;
    /// An ARP request, reply or gratuitous ARP (kernel).
    pub const ARP: u8 = 2;
    /// An ARP request with no reply in time (user space, from `ARP`).
    pub const ARP_UNANSWERED: u8 = 3;
    /// One IP claimed by two MACs (user space, from `ARP`).
    pub const ARP_CONFLICT: u8 = 4;
    /// ICMP destination unreachable, time exceeded, packet too big... (kernel).
    pub const ICMP_ERROR: u8 = 5;
    /// A VNI / VTEP pair seen for the first time (user space, from `FLOW_NEW`).
    pub const VXLAN_PEER: u8 = 6;
    /// A malformed frame, with the reason (kernel).
    pub const MALFORMED: u8 = 7;
    /// A packet the kernel dropped, with its reason (the drop tracer), or a netpath rule dropped.
    pub const DROP: u8 = 8;
    /// A doctor check changed state for one subject (user space, the daemon's periodic doctor).
    pub const DOCTOR: u8 = 9;
    pub const COUNT: usize = 10;
    pub const NAMES: [&str; COUNT] = [
        "flow_new",
        "flow_end",
        "arp",
        "arp_unanswered",
        "arp_conflict",
        "icmp_error",
        "vxlan_peer",
        "malformed",
        "drop",
        "doctor",
    ];
    /// Kinds the kernel produces (and rate-limits).
    pub const KERNEL: [u8; 6] = [FLOW_NEW, FLOW_END, ARP, ICMP_ERROR, MALFORMED, DROP];

    pub fn name(k: u8) -> &'static str {
        NAMES.get(k as usize).copied().unwrap_or("unknown")
    }

    pub fn from_name(n: &str) -> Option<u8> {
        NAMES.iter().position(|x| *x == n).map(|i| i as u8)
    }
}

/// `Event::reason` of `FLOW_END`.
pub mod end_reason {
    pub const FIN: u8 = 1;
    pub const RST: u8 = 2;
    pub const AGED: u8 = 3;
    pub const EVICTED: u8 = 4;
    pub const INTERFACE_GONE: u8 = 5;
    pub const NAMES: [&str; 6] = ["", "fin", "rst", "aged", "evicted", "interface_gone"];
}

/// One event. Fields a kind does not use are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub ts: u64,
    pub ifindex: u32,
    pub kind: u8,
    pub direction: u8,
    /// Malformed reason, flow end reason.
    pub reason: u8,
    pub _pad0: u8,
    /// The flow (FLOW_NEW, FLOW_END, ARP: sender/target IPs and op, ICMP_ERROR: the error itself).
    pub key: FlowKey,
    /// Underlay addresses of a VXLAN flow (FLOW_NEW).
    pub outer_src: Addr,
    pub outer_dst: Addr,
    pub outer_family: u8,
    /// ICMP_ERROR: the quoted packet's family and protocol.
    pub quoted_family: u8,
    pub quoted_proto: u8,
    pub _pad1: u8,
    pub quoted_sport: u16,
    pub quoted_dport: u16,
    pub quoted_src: Addr,
    pub quoted_dst: Addr,
    /// ARP sender / target hardware addresses.
    pub arp_sha: [u8; 6],
    pub arp_tha: [u8; 6],
    /// DROP: inode of the device's network namespace (0: the skb had no device).
    pub netns: u32,
    /// DROP: the reason and location, as in [`DropKey`](crate::drop::DropKey).
    pub drop_reason: u32,
    pub _pad2: u32,
    pub location: u64,
}

/// A token bucket per (CPU, kernel event kind): an ARP storm cannot starve the node, nor crowd
/// out flow events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub tokens: u64,
    pub last_ns: u64,
}

/// What `netpath capture` asks the datapath to copy (`NP_CAPTURE_CFG[0]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// 0: capture off (the datapath does one array lookup per frame to learn this).
    pub enabled: u32,
    pub snaplen: u32,
    /// Bit per traffic class; 0 means every class.
    pub class_mask: u32,
    /// 1: only interfaces listed in `NP_CAPTURE_IFACES`.
    pub iface_filter: u32,
}

/// Metadata before the packet bytes of a capture record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureMeta {
    pub ts: u64,
    pub ifindex: u32,
    /// Length of the frame as on the wire (the VLAN tag in skb metadata included).
    pub len: u32,
    /// How many packet bytes follow.
    pub caplen: u32,
    pub direction: u8,
    pub class: u8,
    /// 1 when the outer VLAN tag was in skb metadata (TC ingress): user space puts it back
    /// into the captured bytes, as libpcap does.
    pub vlan_offloaded: u8,
    pub _pad: u8,
    pub vlan_tci: u16,
    pub vlan_proto: u16,
    pub _pad2: u32,
}

// SAFETY (Words): 8-byte aligned (u64 and Addr fields), sizes multiples of 8, integers and byte
// arrays only, explicit padding. The datapath zeroes a reserved ring-buffer Event and a
// CaptureMeta with u64 stores instead of `ptr::write_bytes`/`[0; N]`, which the BPF backend turns
// into calls to a byte-at-a-time memset loop.
unsafe impl Words for Event {}
unsafe impl Words for CaptureMeta {}

// The layouts user space reads: the 8-byte aligned `Addr` fields change no offset.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Event>() == 176 && align_of::<Event>() == 8);
    assert!(offset_of!(Event, key) == 16 && offset_of!(Event, outer_src) == 72 && offset_of!(Event, outer_dst) == 88);
    assert!(offset_of!(Event, outer_family) == 104 && offset_of!(Event, quoted_sport) == 108);
    assert!(offset_of!(Event, quoted_src) == 112 && offset_of!(Event, quoted_dst) == 128);
    assert!(offset_of!(Event, arp_sha) == 144 && offset_of!(Event, arp_tha) == 150 && offset_of!(Event, netns) == 156);
    assert!(offset_of!(Event, drop_reason) == 160 && offset_of!(Event, location) == 168);
    assert!(size_of::<CaptureMeta>() == 32 && align_of::<CaptureMeta>() == 8);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::CaptureConfig {}
    unsafe impl aya::Pod for super::CaptureMeta {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(size_of::<Event>(), 8 + 8 + 56 + 32 + 4 + 4 + 32 + 12 + 4 + 8 + 8);
        assert_eq!(size_of::<Event>() % 8, 0, "ring buffer records are 8-byte aligned");
        assert!(align_of::<Event>() <= 8);
        assert_eq!(size_of::<CaptureMeta>(), 32);
        for (i, n) in kind::NAMES.iter().enumerate() {
            assert_eq!(kind::from_name(n), Some(i as u8));
        }
    }
}
