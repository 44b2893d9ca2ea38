//! Structured events to the `NP_EVENTS` ring buffer, behind a per-CPU, per-kind token bucket.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    maps::ring_buf::RingBufEntry,
};
use netpath_common::{
    copy_words, diag,
    drop::DropKey,
    event::{kind, Event},
    zero_words, Config, FlowKey,
};

use crate::{
    count::diag_inc,
    observe::{copy_mac, Clock, Now, Scratch},
    NP_EVENTS, NP_RATE,
};

/// Pending event bytes that wake the reader (1/16 of the ring).
const EVENTS_WAKEUP_BYTES: u64 = 64 << 10;

/// Per-CPU, per-kind token bucket, kept in nanoseconds of credit: each event costs
/// 1e9 / rate ns, the credit grows with time up to `burst` events' worth. `now` is the coarse
/// clock: the credit grows a tick at a time, which the burst absorbs.
#[inline(always)]
fn allow(k: u8, cfg: &Config, now: u64) -> bool {
    if cfg.events_per_sec == 0 {
        return true;
    }
    let Some(st) = NP_RATE.get_ptr_mut(k as u32) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    let st = unsafe { &mut *st };
    let cost = 1_000_000_000u64 / cfg.events_per_sec as u64;
    let cap = cost * cfg.events_burst.max(1) as u64;
    let credit = st.tokens + now.saturating_sub(st.last_ns);
    let credit = if credit > cap { cap } else { credit };
    st.last_ns = now;
    if credit >= cost {
        st.tokens = credit - cost;
        true
    } else {
        st.tokens = credit;
        false
    }
}

/// Emit an event about the frame in `s` (its flow key in `s.key` when `with_key`).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "inlined into one call site per event kind")]
pub fn emit(k: u8, s: &Scratch, ifindex: u32, dir: u8, reason: u8, cfg: &Config, now: &mut Now, with_key: bool) {
    let Some(mut entry) = reserve(k, cfg, now) else { return };
    let e = entry.as_mut_ptr();
    // SAFETY: `reserve` handed out a zeroed record, exclusively ours. Word stores and copies
    // throughout: `ptr::write_bytes` and plain array or struct assignments through `e` become
    // byte-loop memset/memmove calls.
    unsafe {
        (*e).ifindex = ifindex;
        (*e).direction = dir;
        (*e).reason = reason;
        if with_key {
            copy_words(&mut (*e).key, &s.key);
            let l = s.parsed.flow();
            copy_mac(&mut (*e).arp_sha, &l.arp_sha);
            copy_mac(&mut (*e).arp_tha, &l.arp_tha);
            (*e).quoted_family = l.err.family;
            (*e).quoted_proto = l.err.proto;
            (*e).quoted_sport = l.err.sport;
            (*e).quoted_dport = l.err.dport;
            (*e).quoted_src.set(&l.err.src);
            (*e).quoted_dst.set(&l.err.dst);
            s.parsed
                .write_underlay(&mut (*e).outer_family, &mut (*e).outer_src, &mut (*e).outer_dst);
        }
    }
    submit(entry);
}

/// Emit a DROP event: where (`d`), and the flow in `key` when `with_key`.
#[inline(always)]
pub fn emit_drop(d: &DropKey, key: &FlowKey, with_key: bool, cfg: &Config, now: &mut impl Clock) {
    let Some(mut entry) = reserve(kind::DROP, cfg, now) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: as in `emit`.
    unsafe {
        (*e).ifindex = d.ifindex;
        (*e).direction = d.direction;
        (*e).netns = d.netns;
        (*e).drop_reason = d.reason;
        (*e).location = d.location;
        if with_key {
            copy_words(&mut (*e).key, key);
        }
    }
    submit(entry);
}

/// A zeroed, timestamped record of kind `k` in the ring, when the rate limit allows one and the
/// ring has room (both counted otherwise).
#[inline(always)]
fn reserve(k: u8, cfg: &Config, now: &mut impl Clock) -> Option<RingBufEntry<Event>> {
    if !allow(k, cfg, now.coarse()) {
        diag_inc(diag::EVENTS_SUPPRESSED);
        return None;
    }
    diag_inc(diag::EVENTS_EMITTED);
    let Some(mut entry) = NP_EVENTS.reserve::<Event>(0) else {
        diag_inc(diag::EVENTS_LOST);
        return None;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, exclusively ours, size_of::<Event>() record (8-byte
    // aligned, as ring-buffer records are); it is zeroed first so no stale kernel memory reaches
    // user space (building the Event on the stack would not fit next to the parser).
    unsafe {
        zero_words(e);
        (*e).ts = now.precise();
        (*e).kind = k;
    }
    Some(entry)
}

#[inline(always)]
fn submit(entry: RingBufEntry<Event>) {
    // Waking the reader costs the producer microseconds per event in this VM (an interrupt per
    // record that lands in an idle ring): let records accumulate and wake it once the ring holds
    // a batch. The daemon also drains on a short timer, so sparse events still arrive promptly.
    let flags = if NP_EVENTS.query(BPF_RB_AVAIL_DATA as u64) < EVENTS_WAKEUP_BYTES {
        BPF_RB_NO_WAKEUP
    } else {
        BPF_RB_FORCE_WAKEUP
    };
    entry.submit(flags as u64);
}
