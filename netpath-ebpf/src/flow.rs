//! The flow table: one LRU per-CPU entry per flow and interface/direction.

use aya_ebpf::bindings::BPF_NOEXIST;
use netpath_common::{diag, parse::Parsed, FlowValue};

use crate::{count::diag_inc, log, observe::Scratch, NP_FLOWS};

/// Account the frame to its flow (key left in `s.key`); true when the flow is new. `now` is the
/// coarse clock (see FlowValue).
#[inline(always)]
pub fn count_flow(s: &mut Scratch, ifindex: u32, dir: u8, wire_len: u64, now: u64) -> bool {
    let p = &s.parsed;
    p.fill_key(&mut s.key);
    s.key.ifindex = ifindex;
    s.key.direction = dir;
    if let Some(v) = NP_FLOWS.get_ptr_mut(&s.key) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { bump(&mut *v, p, wire_len, now) };
        return false;
    }
    let v = &mut s.value;
    v.packets = 1;
    v.bytes = wire_len;
    v.first_seen = now;
    v.last_seen = now;
    p.write_underlay(&mut v.outer_family, &mut v.outer_src, &mut v.outer_dst);
    v.tcp_flags = p.flow().tcp_flags;
    match NP_FLOWS.insert(&s.key, &s.value, BPF_NOEXIST as u64) {
        Ok(()) => {
            diag_inc(diag::FLOWS_CREATED);
            true
        }
        // Lost a race with another CPU inserting the same flow: account on its entry.
        Err(e) => {
            match NP_FLOWS.get_ptr_mut(&s.key) {
                // SAFETY: per-CPU value of this CPU.
                Some(v) => unsafe { bump(&mut *v, &s.parsed, wire_len, now) },
                None => {
                    diag_inc(diag::FLOW_INSERT_FAILED);
                    s.log.note(log::FLOW_INSERT_FAILED, ifindex, e);
                }
            }
            false
        }
    }
}

#[inline(always)]
fn bump(v: &mut FlowValue, p: &Parsed, wire_len: u64, now: u64) {
    // A per-CPU entry created on another CPU starts zeroed on this one.
    if v.packets == 0 {
        v.first_seen = now;
        p.write_underlay(&mut v.outer_family, &mut v.outer_src, &mut v.outer_dst);
    }
    v.packets += 1;
    v.bytes += wire_len;
    v.last_seen = now;
    v.tcp_flags |= p.flow().tcp_flags;
}
