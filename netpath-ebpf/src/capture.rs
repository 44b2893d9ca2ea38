//! Packet capture (`netpath capture`): a metadata record plus the packet bytes, appended by the
//! kernel, to the `NP_CAPTURE` perf event array.

use aya_ebpf::EbpfContext;
use netpath_common::{diag, event::CaptureMeta, zero_words};

use crate::{count::diag_inc, observe::Now, NP_CAPTURE, NP_CAPTURE_CFG, NP_CAPTURE_IFACES};

#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined once; the frame's facts as the caller has them"
)]
pub fn capture<C: EbpfContext>(
    ctx: &C,
    ifindex: u32,
    dir: u8,
    class: u8,
    wire_len: u64,
    len: u32,
    hw_vlan: Option<(u16, u16)>,
    now: &mut Now,
) {
    let Some(c) = NP_CAPTURE_CFG.get(0) else { return };
    if c.enabled == 0 {
        return;
    }
    if c.class_mask != 0 && c.class_mask & (1u32 << (class as u32 & 31)) == 0 {
        return;
    }
    // SAFETY: a plain lookup of a u32 key.
    if c.iface_filter != 0 && unsafe { NP_CAPTURE_IFACES.get(&ifindex) }.is_none() {
        return;
    }
    let caplen = if len < c.snaplen { len } else { c.snaplen };
    // Zeroed as four u64 words, then filled: a struct literal whose zero fields LLVM merges into
    // a memset call (the byte loop again).
    let mut meta = core::mem::MaybeUninit::<CaptureMeta>::uninit();
    let m = meta.as_mut_ptr();
    // SAFETY: `m` is valid for writes of a CaptureMeta; once zeroed, every field is initialised.
    let meta = unsafe {
        zero_words(m);
        (*m).ts = now.precise();
        (*m).ifindex = ifindex;
        (*m).len = wire_len as u32;
        (*m).caplen = caplen;
        (*m).direction = dir;
        (*m).class = class;
        if let Some((tci, proto)) = hw_vlan {
            (*m).vlan_offloaded = 1;
            (*m).vlan_tci = tci;
            (*m).vlan_proto = proto;
        }
        meta.assume_init_ref()
    };
    // The upper 32 flag bits (BPF_F_CTXLEN_MASK) ask the kernel to append `caplen` bytes of the
    // packet itself; a full buffer is reported to the reader as a PERF_RECORD_LOST.
    NP_CAPTURE.output(ctx, meta, caplen);
    diag_inc(diag::CAPTURED);
}
