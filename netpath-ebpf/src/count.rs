//! The per-interface counters and the datapath's health counters.

use aya_ebpf::bindings::BPF_NOEXIST;
use netpath_common::{class, diag, IfaceCounters, IfaceKey};

use crate::{log, NP_DIAG, NP_IFACE_STATS};

#[inline(always)]
pub fn diag_inc(index: u32) {
    if let Some(c) = NP_DIAG.get_ptr_mut(index) {
        // SAFETY: per-CPU slot of an array map, valid for the program's run; no other writer on
        // this CPU while we run (programs are not preempted by themselves).
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_iface(ifindex: u32, dir: u8, class: u8, wire_len: u64, zero: &IfaceCounters, pending: &mut log::Pending) {
    let key = IfaceKey::new_words(ifindex, dir);
    let counters = match NP_IFACE_STATS.get_ptr_mut(&key) {
        Some(c) => c,
        None => {
            // BPF_NOEXIST: another CPU may have created the entry meanwhile; that is fine, the
            // second lookup finds it either way.
            let inserted = NP_IFACE_STATS.insert(&key, zero, BPF_NOEXIST as u64);
            match NP_IFACE_STATS.get_ptr_mut(&key) {
                Some(c) => c,
                None => {
                    diag_inc(diag::IFACE_INSERT_FAILED);
                    pending.note(log::IFACE_INSERT_FAILED, ifindex, inserted.err().unwrap_or(0));
                    return;
                }
            }
        }
    };
    let i = class as usize;
    if i < class::COUNT {
        // SAFETY: per-CPU value of this CPU; index checked against the array length.
        unsafe {
            let c = &mut (*counters).class[i];
            c.packets += 1;
            c.bytes += wire_len;
        }
    }
}
