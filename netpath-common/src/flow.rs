//! The flow table's key and value.

use crate::{Addr, Words};

/// Address families in a [`FlowKey`].
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_ARP: u8 = 1;
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;

/// One flow: the 5-tuple and its context. For ICMP and ICMPv6, `sport` holds the echo identifier
/// (0 for other types) and `dport` is 0, as conntrack does. For ARP, `src`/`dst` are the sender and
/// target protocol addresses and `arp_op` the operation. For VXLAN, the key is the inner flow plus
/// `vni`; the outer (underlay) addresses live in the [`FlowValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub vni: u32,
    pub src: Addr,
    pub dst: Addr,
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

/// Per-CPU flow state. `first_seen` and `last_seen` are `bpf_ktime_get_coarse_ns` nanoseconds:
/// CLOCK_MONOTONIC_COARSE, the same base as CLOCK_MONOTONIC (and as the events' precise
/// `bpf_ktime_get_ns`), but advancing once per jiffy (4 ms at HZ=250), and up to one jiffy behind
/// the precise clock. The coarse read costs about 3 ns per packet against about 22 for the precise
/// one in a VM, and a flow's times need no finer resolution. Two packets within one jiffy get
/// the same stamp.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Underlay addresses of a VXLAN flow (zero otherwise).
    pub outer_src: Addr,
    pub outer_dst: Addr,
    pub outer_family: u8,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    pub _pad: [u8; 6],
    /// Packets and bytes of this flow the kernel dropped (the drop tracer: in this namespace on
    /// this interface, or inside the pod behind it), or a netpath rule did.
    pub drop_packets: u64,
    pub drop_bytes: u64,
    /// When the last drop was seen (the coarse clock, as `last_seen`).
    pub drop_last_seen: u64,
    /// The last drop's reason (a [`DropKey`](crate::drop::DropKey) reason; 0: none).
    pub drop_reason: u32,
    pub _pad2: u32,
}

// SAFETY (Words): 8-byte aligned (an Addr or a u64 inside), sizes multiples of 8, integers and
// byte arrays only (all-zero is valid), explicit padding fields (so `copy_words` reads no padding).
unsafe impl Words for FlowKey {}
unsafe impl Words for FlowValue {}

// The byte layouts user space and the kernel share: the Addr newtype and its alignment must change
// none of them.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<FlowKey>() == 56 && align_of::<FlowKey>() == 8);
    assert!(offset_of!(FlowKey, src) == 8 && offset_of!(FlowKey, dst) == 24 && offset_of!(FlowKey, sport) == 40);
    assert!(offset_of!(FlowKey, encap) == 52 && offset_of!(FlowKey, _pad) == 53);
    assert!(size_of::<FlowValue>() == 104 && align_of::<FlowValue>() == 8);
    assert!(offset_of!(FlowValue, drop_packets) == 72 && offset_of!(FlowValue, _pad2) == 100);
    assert!(offset_of!(FlowValue, outer_src) == 32 && offset_of!(FlowValue, outer_dst) == 48);
    assert!(offset_of!(FlowValue, outer_family) == 64 && offset_of!(FlowValue, _pad) == 66);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, made only of integers, byte arrays and `Addr` (a repr(C) byte
    // array), with explicit padding fields so that every byte is initialised.
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;
    use crate::{copy_words, zero_words};

    #[test]
    fn layouts_have_no_implicit_padding() {
        // 4 + 4 + 16 + 16 + 2*3 + 7*1 + 3 padding = 56
        assert_eq!(size_of::<FlowKey>(), 56);
        assert_eq!(size_of::<FlowValue>(), 32 + 32 + 8 + 32);
    }

    #[test]
    fn word_zeroing_and_copying() {
        let mut k = FlowKey {
            ifindex: 7,
            vni: 9,
            src: Addr([3; 16]),
            dst: Addr([4; 16]),
            sport: 1,
            dport: 2,
            vlan: 3,
            direction: 1,
            family: 6,
            proto: 17,
            icmp_type: 1,
            icmp_code: 2,
            arp_op: 3,
            encap: 1,
            _pad: [5; 3],
        };
        let mut c = FlowKey::default();
        // SAFETY: valid, distinct FlowKeys.
        unsafe { copy_words(&mut c, &k) };
        assert_eq!(c, k);
        // SAFETY: as above.
        unsafe { zero_words(&mut k) };
        assert_eq!(k, FlowKey::default());
    }
}
