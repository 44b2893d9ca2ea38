//! Drops: the kernel's (`tp_btf/kfree_skb`, with the reason it gives) and netpath's own (a rule's
//! `drop`), counted per site in `NP_DROPS`, per flow in `NP_FLOWS`, and reported as DROP events.
//!
//! The tracer reads `struct sk_buff`, `struct net_device` and `struct net` with
//! `bpf_probe_read_kernel` at the offsets user space read from the running kernel's BTF
//! (`NP_DROP_LAYOUT`): aya's Rust eBPF has no CO-RE relocations. It copies the dropped packet's
//! headers from its network header on into a map value, behind a made-up Ethernet header that
//! carries `skb->protocol`, and runs the frame parser over that copy: the flow key is the flow
//! table's, whatever layer the kernel dropped the packet at.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
    programs::BtfTracePointContext,
};
use netpath_common::{
    diag,
    drop::{DropKey, DropLayout, DropPending, DROP_COPY, PENDING_NS, REASON_NETPATH_RULE},
    parse::{parse_into, Parsed, ETH_HLEN},
    peer::{PeerCounters, PeerKey},
    zero_words, Config, Counter, FlowKey, FlowValue, IfaceKey, DIR_EGRESS, DIR_INGRESS,
};
use netpath_ebpf::cursor::Copied;

use crate::{
    count::diag_inc,
    events::emit_drop,
    observe::{self, Clock, Now, Precise},
    peer, NP_CONFIG, NP_DROPS, NP_DROP_LAYOUT, NP_DROP_NETNS, NP_DROP_PENDING, NP_DROP_SCRATCH, NP_FLOWS,
    NP_IFACE_STATS,
};

/// The copy of the headers: a 14-byte Ethernet header, then up to [`DROP_COPY`] bytes from the
/// network header (rounded up to whole words).
const BUF: usize = 208;
const _: () = assert!(BUF >= ETH_HLEN + DROP_COPY && BUF.is_multiple_of(8));

/// The tracer's per-CPU working memory. Its own, not the TC programs' `NP_SCRATCH`: the
/// tracepoint can fire inside a TC program's run on the same CPU (a redirect or a clone the
/// kernel frees), and must not overwrite what that program is using.
pub struct DropScratch {
    buf: [u8; BUF],
    parsed: Parsed,
    key: FlowKey,
    value: FlowValue,
    site: DropKey,
    peer_key: PeerKey,
    /// Never written: the initial value for a new per-peer entry.
    peer_zero: PeerCounters,
}

/// `skb->network_header` / `mac_header` when unset (`(u16)~0U`).
const HEADER_UNSET: u16 = 0xffff;

/// Read a `T` at `base + off` of kernel memory (zero when unreadable).
#[inline(always)]
fn kread<T: Copy + Default>(base: u64, off: u32) -> T {
    // SAFETY: bpf_probe_read_kernel copes with any address; a fault reads as an error.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// `kfree_skb(skb, location, reason, rx_sk)`.
#[inline(always)]
pub fn on_kfree_skb(ctx: &BtfTracePointContext) {
    let (Some(l), Some(cfg)) = (NP_DROP_LAYOUT.get(0), NP_CONFIG.get(0)) else {
        return;
    };
    if l.enabled == 0 {
        return;
    }
    // The reason is an enum (int-sized); the context holds every argument as a u64.
    let reason = ctx.arg::<u64>(2) as u32;
    // Below NOT_SPECIFIED: not dropped (NOT_DROPPED_YET, CONSUMED). NOT_SPECIFIED itself is a free
    // the kernel gave no reason for: counted, by location.
    if reason < l.not_specified {
        return;
    }
    // The offsets are the running kernel's, known only at load time: every read of the skb (and
    // what it points to) goes through bpf_probe_read_kernel.
    let skb = ctx.arg::<u64>(0);
    let location = ctx.arg::<u64>(1);
    let dev: u64 = kread(skb, l.skb_dev);
    let iif: u32 = kread(skb, l.skb_iif);
    let (ifindex, netns) = if dev != 0 {
        let net: u64 = kread(dev, l.dev_net);
        let inum: u32 = if net != 0 { kread(net, l.net_inum) } else { 0 };
        (kread::<u32>(dev, l.dev_ifindex), inum)
    } else {
        (iif, 0)
    };
    // `skb_iif` is the device the skb arrived on: a drop on that device is on its way in; one on
    // another device (forwarded, locally sent, or without an input device) on its way out.
    let dir = if iif != 0 && iif == ifindex {
        DIR_INGRESS
    } else {
        DIR_EGRESS
    };
    let mut now = Precise::now();
    // The kernel's free of a frame a netpath rule just dropped: TC_INGRESS/TC_EGRESS after TC;
    // after generic XDP, XDP or (this kernel, `do_xdp_generic`) NOT_SPECIFIED. Counted once, as
    // the rule's.
    let rule_free = reason == l.tc_ingress || reason == l.tc_egress || reason == l.xdp || reason == l.not_specified;
    if rule_free && own_rule_drop(ifindex, now.0) {
        return;
    }
    let Some(s) = NP_DROP_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; the tracer does not run nested in itself (the kernel's recursion
    // guard for tracing programs).
    let s = unsafe { &mut *s };
    let bytes = copy_headers(s, l, cfg, skb);
    let site = &mut s.site;
    // SAFETY: a valid, exclusively borrowed DropKey.
    unsafe { zero_words(site) };
    site.netns = netns;
    site.ifindex = ifindex;
    site.reason = reason;
    site.direction = dir;
    site.location = location;
    let has_flow = s.parsed.has_flow();
    if has_flow {
        s.parsed.fill_key(&mut s.key);
        // The flow table keys flows by an interface in the daemon's namespace: a drop there is
        // accounted on the flow of its device; one inside a pod on the pod's flow on its veth,
        // where the packet went the other way (into the pod: the veth's egress).
        let at = if netns != 0 && netns == cfg.netns {
            Some((ifindex, dir))
        } else {
            // SAFETY: a plain lookup.
            unsafe { NP_DROP_NETNS.get(&netns) }.map(|v| (*v, 1 - dir))
        };
        if let Some((i, d)) = at {
            s.key.ifindex = i;
            s.key.direction = d;
            flow_drop(&s.key, &mut s.value, bytes, reason, now.coarse());
        }
        // The event names where it happened, as the site does.
        s.key.ifindex = ifindex;
        s.key.direction = dir;
    }
    count_site(&s.site, bytes);
    emit_drop(&s.site, &s.key, has_flow, cfg, &mut now);
    // A VXLAN frame dropped on one of this node's links after netpath's hook counted it (an
    // iptables rule on UDP 8472, say): what the peer counters subtract from what was seen.
    // Unconditional and last: a branch here would have the verifier walk the rest twice.
    netpath_peer_drop(ifindex, dir as u32, netns, bytes);
}

/// Copy the skb's headers into `s.buf` behind an Ethernet header that carries `skb->protocol`,
/// parse them into `s.parsed` (a frame without a network header parses as no flow), and return
/// the packet's length from its MAC header on (as the flow table counts bytes).
#[inline(always)]
fn copy_headers(s: &mut DropScratch, l: &DropLayout, cfg: &Config, skb: u64) -> u64 {
    let head: u64 = kread(skb, l.skb_head);
    let data: u64 = kread(skb, l.skb_data);
    let len: u32 = kread(skb, l.skb_len);
    let tail: u32 = kread(skb, l.skb_tail);
    let nh: u16 = kread(skb, l.skb_network_header);
    let mh: u16 = kread(skb, l.skb_mac_header);
    let proto: u16 = kread(skb, l.skb_protocol);
    let data_off = data.wrapping_sub(head);
    // `len` counts from `data`, which the stack has moved past the headers it handled (to the
    // UDP header for a socket lookup): the frame's length is `len` plus what lies between the MAC
    // header and `data`, when the MAC header is set and before it (bounded, against a stale one).
    let before = if mh != HEADER_UNSET && (mh as u64) <= data_off && data_off - (mh as u64) <= 512 {
        data_off - mh as u64
    } else {
        0
    };
    let bytes = len as u64 + before;
    // The made-up Ethernet header: zero MACs, then the EtherType as it lies in the skb (network
    // order), as two word stores.
    let p = proto.to_ne_bytes();
    let w = s.buf.as_mut_ptr() as *mut u64;
    // SAFETY: `buf` starts the 8-byte aligned map value and holds more than 16 bytes.
    unsafe {
        w.write_volatile(0);
        w.add(1)
            .write_volatile(u64::from_ne_bytes([0, 0, 0, 0, p[0], p[1], 0, 0]));
    }
    let mut n = 0usize;
    if nh != HEADER_UNSET && head != 0 && (nh as u32) < tail {
        let avail = (tail - nh as u32) as usize;
        n = if avail < DROP_COPY { avail } else { DROP_COPY };
        // SAFETY: n <= DROP_COPY bytes into buf[ETH_HLEN..], which holds DROP_COPY; the helper
        // copes with any source address.
        let rc = unsafe {
            generated::bpf_probe_read_kernel(
                s.buf.as_mut_ptr().add(ETH_HLEN) as *mut _,
                n as u32,
                (head + nh as u64) as *const _,
            )
        };
        if rc != 0 {
            n = 0;
        }
    }
    let frame = Copied::<BUF> {
        base: s.buf.as_ptr(),
        len: ETH_HLEN + n,
    };
    // Without headers the made-up Ethernet header alone parses as no flow.
    parse_into(&frame, cfg, None, &mut s.parsed);
    bytes
}

/// Whether this is the free of a frame a netpath rule dropped on `ifindex` just now (and forget
/// it): see [`DropPending`].
#[inline(always)]
fn own_rule_drop(ifindex: u32, now: u64) -> bool {
    let Some(p) = NP_DROP_PENDING.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    let p = unsafe { &mut *p };
    if p.set != 0 && p.ifindex == ifindex && now.wrapping_sub(p.at) < PENDING_NS {
        p.set = 0;
        return true;
    }
    false
}

/// Count the dropped packet in this CPU's drop scratch as a VXLAN peer's dropped frame, if it is a
/// VXLAN frame.
//
// A global function (`#[no_mangle] extern "C"`, so the object's BTF gives it global linkage): the
// kernel verifies it once, on its own, with its arguments as unknown scalars, instead of once
// per state the tracer reaches the call in. Inlined, or as a static subprogram, it doubled the
// tracer's verified instructions (76,000 to 155,000-196,000, wherever it was called from);
// global, it adds about 1,000. Called unconditionally, last: a branch in the caller would have
// the verifier walk the rest of the tracer twice.
#[inline(never)]
#[no_mangle]
pub extern "C" fn netpath_peer_drop(ifindex: u32, dir: u32, netns: u32, bytes: u64) -> u32 {
    let (Some(s), Some(cfg)) = (NP_DROP_SCRATCH.get_ptr_mut(0), NP_CONFIG.get(0)) else {
        return 0;
    };
    // SAFETY: this CPU's slot (see `on_kfree_skb`).
    let s = unsafe { &mut *s };
    // Only the daemon's own namespace: the table is keyed by its ifindexes.
    if !s.parsed.vxlan || ifindex == 0 || netns == 0 || netns != cfg.netns {
        return 0;
    }
    peer::fill_key(&mut s.peer_key, &s.parsed, ifindex, dir as u8);
    peer::add(&s.peer_key, &s.peer_zero, 1, bytes, 1);
    0
}

/// Count one drop of `bytes` at `site`.
#[inline(always)]
fn count_site(site: &DropKey, bytes: u64) {
    diag_inc(diag::DROPS_COUNTED);
    if let Some(c) = NP_DROPS.get_ptr_mut(site) {
        // SAFETY: this CPU's value.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
        return;
    }
    let first = Counter { packets: 1, bytes };
    if NP_DROPS.insert(site, &first, BPF_NOEXIST as u64).is_err() {
        // Another CPU may have created it meanwhile.
        match NP_DROPS.get_ptr_mut(site) {
            // SAFETY: this CPU's value.
            Some(c) => unsafe {
                (*c).packets += 1;
                (*c).bytes += bytes;
            },
            None => diag_inc(diag::DROP_INSERT_FAILED),
        }
    }
}

/// Account a drop to the flow `key`. A drop with a reason creates the entry (with no packets seen)
/// where netpath observes (the interface has counters): a drop on another link of the namespace
/// (a port scan of the node's own address, say) must not fill the flow table with flows nobody
/// sees, and a drop without a reason only adds to a flow that exists.
//
// Not inlined, and it returns a scalar: its branches end in one state at the return, and the
// verifier walks what follows once per path into it (inlined, the lookup of the interface's
// counters doubled the tracer's verified instructions, to 157,000).
#[inline(never)]
fn flow_drop(key: &FlowKey, value: &mut FlowValue, bytes: u64, reason: u32, now: u64) -> u32 {
    if let Some(v) = NP_FLOWS.get_ptr_mut(key) {
        // SAFETY: this CPU's value.
        unsafe {
            (*v).drop_packets += 1;
            (*v).drop_bytes += bytes;
            (*v).drop_reason = reason;
            (*v).drop_last_seen = now;
        }
        return 0;
    }
    let Some(l) = NP_DROP_LAYOUT.get(0) else { return 0 };
    if reason <= l.not_specified
        || NP_IFACE_STATS
            .get_ptr(&IfaceKey::new_words(key.ifindex, key.direction))
            .is_none()
    {
        return 0;
    }
    // SAFETY: a valid, exclusively borrowed FlowValue.
    unsafe { zero_words(value) };
    value.first_seen = now;
    value.last_seen = now;
    value.drop_packets = 1;
    value.drop_bytes = bytes;
    value.drop_reason = reason;
    value.drop_last_seen = now;
    let _ = NP_FLOWS.insert(key, value, BPF_ANY as u64);
    0
}

/// Count the frame in `NP_SCRATCH` that rule `rule_id` dropped (`NETPATH_RULE`), on its flow
/// too (the flow key `observe` left in the scratch).
#[inline(always)]
pub fn rule_drop(rule_id: u32) {
    let (Some(s), Some(cfg)) = (observe::scratch(), NP_CONFIG.get(0)) else {
        return;
    };
    let site = &mut s.drop_site;
    // SAFETY: a valid, exclusively borrowed DropKey.
    unsafe { zero_words(site) };
    site.netns = cfg.netns;
    site.ifindex = s.ifindex;
    site.reason = REASON_NETPATH_RULE;
    site.direction = s.direction;
    site.location = rule_id as u64;
    let mut now = Now::default();
    let has_flow = s.parsed.has_flow();
    if has_flow {
        flow_drop(&s.key, &mut s.value, s.wire_len, REASON_NETPATH_RULE, now.coarse());
    }
    count_site(&s.drop_site, s.wire_len);
    emit_drop(&s.drop_site, &s.key, has_flow, cfg, &mut now);
}

/// Remember that a rule on this CPU dropped a frame on `ifindex` (see [`DropPending`]).
#[inline(always)]
pub fn mark_rule_drop(ifindex: u32) {
    if let Some(p) = NP_DROP_PENDING.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; a plain helper call.
        unsafe {
            *p = DropPending {
                ifindex,
                set: 1,
                at: bpf_ktime_get_ns(),
            };
        }
    }
}
