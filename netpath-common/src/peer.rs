//! Per-peer VXLAN counters: VXLAN frames per interface, direction and remote VTEP, for the
//! cluster view (what node A sent to node B against what B received from A).
//!
//! A small table of its own rather than a sum over the flow table: flows are evicted (LRU) and
//! removed with their interface, so a sum over them goes backwards; these entries only grow,
//! and are pinned, so they survive a daemon restart like the interface counters.

use crate::Addr;

/// Entries kept: (interface, direction, local VTEP, remote VTEP). A node sees one entry per
/// direction for each peer node on its underlay; a full table fails open (the frame passes,
/// `diag::PEER_INSERT_FAILED` counts it).
pub const PEER_TABLE_SIZE: u32 = 16_384;

/// One row of `NP_VXLAN_PEERS`: the interface the VXLAN frame was seen on, its direction, and
/// the two underlay addresses: on egress `local` is the outer source and `peer` the outer
/// destination; on ingress the other way round. So A's egress row to B and B's ingress row
/// from A carry the same pair, swapped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    pub ifindex: u32,
    pub direction: u8,
    /// `FAMILY_IPV4` or `FAMILY_IPV6` (the outer header's).
    pub family: u8,
    pub _pad: [u8; 2],
    pub local: Addr,
    pub peer: Addr,
}

impl PeerKey {
    /// Fill every byte of the key in place with word stores (`_pad` written as zero): a struct
    /// assignment would become a call into the BPF backend's byte loop (see [`crate::Words`]).
    #[inline(always)]
    pub fn set(&mut self, ifindex: u32, direction: u8, family: u8, local: &Addr, peer: &Addr) {
        let p = self as *mut PeerKey as *mut u32;
        // SAFETY: the first 8 bytes are `ifindex`, then `direction`, `family` and `_pad`
        // (repr(C)); both u32 words lie inside the key.
        unsafe {
            p.write_volatile(ifindex);
            p.add(1).write_volatile(u32::from_ne_bytes([direction, family, 0, 0]));
        }
        self.local.set(local);
        self.peer.set(peer);
    }
}

/// What was seen of one [`PeerKey`]: packets and bytes at netpath's hook (a GSO or GRO packet
/// counts as its segments, so both ends count alike whether or not the stack merged them; bytes
/// are the frame as the hook sees it), and the VXLAN frames the kernel then dropped on this
/// node after the hook saw them (the drop tracer: an iptables rule on UDP 8472, say), so that
/// `packets - dropped_packets` on ingress is what the node really received.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounters {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<PeerKey>() == 40 && align_of::<PeerKey>() == 8);
    assert!(size_of::<PeerCounters>() == 32);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_fills_the_key_as_a_literal_would() {
        let (l, p) = (Addr::v4([172, 27, 0, 11]), Addr::v4([172, 27, 16, 10]));
        let mut k = PeerKey {
            _pad: [0xff; 2],
            ..Default::default()
        };
        k.set(7, 1, 4, &l, &p);
        assert_eq!(
            k,
            PeerKey {
                ifindex: 7,
                direction: 1,
                family: 4,
                _pad: [0; 2],
                local: l,
                peer: p,
            }
        );
    }
}
