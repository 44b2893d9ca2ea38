//! Per-peer VXLAN counters (`NP_VXLAN_PEERS`): every VXLAN frame by interface, direction and the
//! two underlay addresses, and the VXLAN frames the kernel dropped after netpath saw them.

use aya_ebpf::bindings::BPF_NOEXIST;
use netpath_common::{
    diag,
    parse::Parsed,
    peer::{PeerCounters, PeerKey},
    DIR_EGRESS,
};

use crate::{count::diag_inc, observe, NP_VXLAN_PEERS};

/// Count the VXLAN frame parsed into this CPU's scratch, seen on `ifindex` in `dir`, as `segs`
/// packets (a GSO/GRO packet's segments) of `wire_len` bytes.
//
// Not inlined: one walk for the verifier, on the VXLAN frames only, and the hot path of other
// frames pays a branch. It returns a scalar so that r0 holds one at its exit.
#[inline(never)]
pub fn count_seen(ifindex: u32, dir: u8, segs: u32, wire_len: u64) -> u32 {
    let Some(s) = observe::scratch() else { return 0 };
    fill_key(&mut s.peer_key, &s.parsed, ifindex, dir);
    add(&s.peer_key, &s.peer_zero, segs as u64, wire_len, 0);
    0
}

/// The key of a VXLAN frame `p` on `ifindex` in `dir`: on egress the outer source is ours and the
/// destination the peer's; on ingress the other way round.
#[inline(always)]
pub fn fill_key(key: &mut PeerKey, p: &Parsed, ifindex: u32, dir: u8) {
    let o = &p.outer;
    if dir == DIR_EGRESS {
        key.set(ifindex, dir, o.family, &o.src, &o.dst);
    } else {
        key.set(ifindex, dir, o.family, &o.dst, &o.src);
    }
}

/// Add `packets`/`bytes` seen, or (`dropped` 1) dropped, to `key`'s entry, creating it from
/// `zero` (a never-written, so zeroed, map value) when new. A full table: counted in
/// `diag::PEER_INSERT_FAILED`, the frame passes.
#[inline(always)]
pub fn add(key: &PeerKey, zero: &PeerCounters, packets: u64, bytes: u64, dropped: u8) {
    let c = match NP_VXLAN_PEERS.get_ptr_mut(key) {
        Some(c) => c,
        None => {
            // BPF_NOEXIST: another CPU may have created it meanwhile; the lookup finds it then.
            let _ = NP_VXLAN_PEERS.insert(key, zero, BPF_NOEXIST as u64);
            match NP_VXLAN_PEERS.get_ptr_mut(key) {
                Some(c) => c,
                None => {
                    diag_inc(diag::PEER_INSERT_FAILED);
                    return;
                }
            }
        }
    };
    // SAFETY: this CPU's value of a per-CPU hash entry.
    unsafe {
        if dropped != 0 {
            (*c).dropped_packets += packets;
            (*c).dropped_bytes += bytes;
        } else {
            (*c).packets += packets;
            (*c).bytes += bytes;
        }
    }
}
