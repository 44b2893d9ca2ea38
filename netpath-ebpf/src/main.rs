//! netpath's datapath: XDP and TC programs that parse every frame (netpath_common::parse), count it
//! per interface, direction and class, and account it to its flow. They never drop or alter a
//! frame: on a parse error they count it as malformed and pass it on (fail open).
#![no_std]
#![no_main]

mod cursor;

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{Array, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap},
    programs::{TcContext, XdpContext},
};
use cursor::Packet;
use netpath_common::{
    class, diag,
    parse::{parse_into, Frame, Parsed},
    Config, FlowKey, FlowValue, IfaceCounters, IfaceKey, DEFAULT_FLOW_TABLE_SIZE, DIR_EGRESS,
    DIR_INGRESS, IFACE_TABLE_SIZE,
};

// Maps are created unpinned here; user space pins them by name (EbpfLoader::map_pin_path) so the
// TEST_RUN tests can load private copies.
#[map]
static NP_IFACE_STATS: PerCpuHashMap<IfaceKey, IfaceCounters> =
    PerCpuHashMap::with_max_entries(IFACE_TABLE_SIZE, 0);

/// Sized at load time (`--flow-table-size`); LRU so a full table evicts the coldest flow instead of
/// refusing new ones.
#[map]
static NP_FLOWS: LruPerCpuHashMap<FlowKey, FlowValue> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

#[map]
static NP_DIAG: PerCpuArray<u64> = PerCpuArray::with_max_entries(diag::COUNT, 0);

#[map]
static NP_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Per-CPU working memory. The parse result, a flow key and value, and a zeroed counter block
/// together exceed the 512-byte BPF stack, so they live here. Never pinned, never read by user space.
struct Scratch {
    parsed: Parsed,
    key: FlowKey,
    value: FlowValue,
    /// Never written: the initial value for a new interface entry.
    zero: IfaceCounters,
}

#[map]
static NP_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// How much of a paged skb TC pulls into the linear area so the headers can be read directly:
/// enough for QinQ + IPv6 + extension headers + VXLAN + an inner IPv6/TCP header.
const TC_PULL_LEN: u32 = 256;

#[xdp]
pub fn netpath_xdp(ctx: XdpContext) -> u32 {
    let pkt = Packet { data: ctx.data(), data_end: ctx.data_end(), len: ctx.data_end() - ctx.data() };
    let ifindex = ctx.ingress_ifindex() as u32;
    observe(&pkt, ifindex, DIR_INGRESS, pkt.len as u64, None);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn netpath_tc_in(ctx: TcContext) -> i32 {
    tc_observe(&ctx, DIR_INGRESS);
    // TCX_NEXT / TC_ACT_UNSPEC: let the next program (or the stack) decide; netpath observes only.
    TC_ACT_UNSPEC
}

#[classifier]
pub fn netpath_tc_out(ctx: TcContext) -> i32 {
    tc_observe(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

/// The benchmark baseline: what an XDP hook costs with no work at all.
#[xdp]
pub fn netpath_xdp_nop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The parser alone, for `cargo xtask bench`. The verdict depends on parsed fields so the compiler
/// cannot drop the parse.
#[xdp]
pub fn netpath_xdp_prs(ctx: XdpContext) -> u32 {
    let pkt = Packet { data: ctx.data(), data_end: ctx.data_end(), len: ctx.data_end() - ctx.data() };
    let Some(scratch) = NP_SCRATCH.get_ptr_mut(0) else { return xdp_action::XDP_PASS };
    // SAFETY: this CPU's scratch slot.
    let p = unsafe { &mut (*scratch).parsed };
    parse_into(&pkt, &Config::default(), None, p);
    let l = p.flow();
    let fold = p.class ^ (l.sport as u8) ^ l.dst[15] ^ l.src[3] ^ (p.vni as u8);
    if fold == 0xa5 && l.dport == 0xa5a5 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn tc_observe(ctx: &TcContext, dir: u8) {
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    let len = skb.len;
    if ((ctx.data_end() - ctx.data()) as u32) < min(len, TC_PULL_LEN) && ctx.pull_data(min(len, TC_PULL_LEN)).is_err() {
        diag_inc(diag::PULL_FAILED);
    }
    // The kernel moves the outer VLAN tag into skb metadata before TC ingress (skb_vlan_untag):
    // count its 4 bytes as on the wire, and parse the frame as tagged.
    let (hw_vlan, wire_len) = if skb.vlan_present != 0 {
        (Some(skb.vlan_tci as u16), len as u64 + 4)
    } else {
        (None, len as u64)
    };
    let pkt = Packet { data: ctx.data(), data_end: ctx.data_end(), len: len as usize };
    observe(&pkt, skb.ifindex, dir, wire_len, hw_vlan);
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

#[inline(always)]
fn observe<F: Frame>(pkt: &F, ifindex: u32, dir: u8, wire_len: u64, hw_vlan: Option<u16>) {
    let Some(scratch) = NP_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot of a per-CPU array; nothing else runs on it during this program.
    let s = unsafe { &mut *scratch };
    match NP_CONFIG.get(0) {
        Some(cfg) => parse_into(pkt, cfg, hw_vlan, &mut s.parsed),
        None => parse_into(pkt, &Config::default(), hw_vlan, &mut s.parsed),
    }
    count_iface(ifindex, dir, s.parsed.class, wire_len, &s.zero);
    if s.parsed.class == class::MALFORMED {
        diag_inc(diag::MALFORMED_BASE + s.parsed.reason as u32);
    }
    if s.parsed.has_flow() {
        count_flow(s, ifindex, dir, wire_len);
    }
}

#[inline(always)]
fn diag_inc(index: u32) {
    if let Some(c) = NP_DIAG.get_ptr_mut(index) {
        // SAFETY: per-CPU slot of an array map, valid for the program's run; no other writer on
        // this CPU while we run (programs are not preempted by themselves).
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn count_iface(ifindex: u32, dir: u8, class: u8, wire_len: u64, zero: &IfaceCounters) {
    let key = IfaceKey::new(ifindex, dir);
    let counters = match NP_IFACE_STATS.get_ptr_mut(&key) {
        Some(c) => c,
        None => {
            // BPF_NOEXIST: another CPU may have created the entry meanwhile; that is fine, the
            // second lookup finds it either way.
            let _ = NP_IFACE_STATS.insert(&key, zero, BPF_NOEXIST as u64);
            match NP_IFACE_STATS.get_ptr_mut(&key) {
                Some(c) => c,
                None => {
                    diag_inc(diag::IFACE_INSERT_FAILED);
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

#[inline(always)]
fn count_flow(s: &mut Scratch, ifindex: u32, dir: u8, wire_len: u64) {
    let p = &s.parsed;
    p.fill_key(&mut s.key);
    s.key.ifindex = ifindex;
    s.key.direction = dir;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(v) = NP_FLOWS.get_ptr_mut(&s.key) {
        // SAFETY: per-CPU value of this CPU.
        unsafe { bump(&mut *v, p, wire_len, now) };
        return;
    }
    let (family, outer_src, outer_dst) = p.underlay();
    let v = &mut s.value;
    v.packets = 1;
    v.bytes = wire_len;
    v.first_seen = now;
    v.last_seen = now;
    v.outer_src = *outer_src;
    v.outer_dst = *outer_dst;
    v.outer_family = family;
    v.tcp_flags = p.flow().tcp_flags;
    match NP_FLOWS.insert(&s.key, &s.value, BPF_NOEXIST as u64) {
        Ok(()) => diag_inc(diag::FLOWS_CREATED),
        // Lost a race with another CPU inserting the same flow: account on its entry.
        Err(_) => match NP_FLOWS.get_ptr_mut(&s.key) {
            // SAFETY: per-CPU value of this CPU.
            Some(v) => unsafe { bump(&mut *v, &s.parsed, wire_len, now) },
            None => diag_inc(diag::FLOW_INSERT_FAILED),
        },
    }
}

#[inline(always)]
fn bump(v: &mut FlowValue, p: &Parsed, wire_len: u64, now: u64) {
    // A per-CPU entry created on another CPU starts zeroed on this one.
    if v.packets == 0 {
        let (family, outer_src, outer_dst) = p.underlay();
        v.first_seen = now;
        v.outer_src = *outer_src;
        v.outer_dst = *outer_dst;
        v.outer_family = family;
    }
    v.packets += 1;
    v.bytes += wire_len;
    v.last_seen = now;
    v.tcp_flags |= p.flow().tcp_flags;
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
