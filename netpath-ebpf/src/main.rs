//! netpath's datapath: XDP and TC programs that parse every frame (netpath_common::parse), count it
//! per interface, direction and class, and account it to its flow. They never drop or alter a
//! frame: on a parse error they count it as malformed and pass it on (fail open).
#![no_std]
#![no_main]

mod cursor;

use aya_ebpf::{
    bindings::{
        xdp_action, BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_SHOT, TC_ACT_UNSPEC,
    },
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_redirect, bpf_redirect_peer},
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray, RingBuf},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use cursor::Packet;
use netpath_common::{
    class, copy_words, diag,
    event::{end_reason, kind, CaptureConfig, CaptureMeta, Event, RateState},
    parse::{parse_into, Frame, Parsed},
    rule::{self, action, FastTarget, MacKey, Rule, RuleCtl, FASTPATH_ENTRIES, MAX_RULES, MAX_RULE_IDS},
    zero_words, Config, Counter, FlowKey, FlowValue, IfaceCounters, IfaceKey, DEFAULT_FLOW_TABLE_SIZE, DIR_EGRESS,
    DIR_INGRESS, IFACE_TABLE_SIZE,
};

// A note on copies and zeroing, which shape much of this file: LLVM's BPF backend lowers every
// `memset` and `memmove` (struct assignments through pointers, `[0; N]`, `ptr::write_bytes`,
// neighbouring zero stores merged by LLVM) to calls into compiler_builtins' byte-at-a-time loops.
// On the per-packet path those calls cost more than the parse itself, so structs are zeroed and
// copied with the u64-word helpers of netpath_common (`zero_words`, `copy_words`, `Addr::set`).
// Check with `bpftool prog dump xlated name netpath_xdp | grep -c -E 'memset|memmove|memcpy'`:
// it should print 0 (see BENCHMARKS.md).

// Maps are created unpinned here; user space pins them by name (EbpfLoader::map_pin_path) so the
// TEST_RUN tests can load private copies.
#[map]
static NP_IFACE_STATS: PerCpuHashMap<IfaceKey, IfaceCounters> = PerCpuHashMap::with_max_entries(IFACE_TABLE_SIZE, 0);

/// Sized at load time (`--flow-table-size`); LRU so a full table evicts the coldest flow instead of
/// refusing new ones.
#[map]
static NP_FLOWS: LruPerCpuHashMap<FlowKey, FlowValue> = LruPerCpuHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

#[map]
static NP_DIAG: PerCpuArray<u64> = PerCpuArray::with_max_entries(diag::COUNT, 0);

#[map]
static NP_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Structured events for user space (one consumer: the daemon).
#[map]
static NP_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Pending event bytes that wake the reader (1/16 of the ring).
const EVENTS_WAKEUP_BYTES: u64 = 64 << 10;

#[map]
static NP_RATE: PerCpuArray<RateState> = PerCpuArray::with_max_entries(kind::COUNT as u32, 0);

/// Packet capture: metadata plus the packet bytes appended by the kernel
/// (bpf_perf_event_output with the packet length in BPF_F_CTXLEN_MASK, from XDP and TC alike).
#[map]
static NP_CAPTURE: PerfEventArray<CaptureMeta> = PerfEventArray::new(0);

#[map]
static NP_CAPTURE_CFG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// Interfaces to capture on when `CaptureConfig::iface_filter` is set (a pod's veth, say).
#[map]
static NP_CAPTURE_IFACES: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Fast-path rules: two banks of MAX_RULES slots; NP_RULE_CTL says which bank is live and how
/// many rules it holds (user space publishes a new table by flipping the bank).
#[map]
static NP_RULES: Array<Rule> = Array::with_max_entries(2 * MAX_RULES as u32, 0);

#[map]
static NP_RULE_CTL: Array<RuleCtl> = Array::with_max_entries(1, 0);

/// Packets and bytes each rule matched, by `id % MAX_RULE_IDS`.
#[map]
static NP_RULE_HITS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULE_IDS, 0);

/// Pod MAC -> host veth in front of it, for the pod-to-pod fast path.
#[map]
static NP_FASTPATH: HashMap<MacKey, FastTarget> = HashMap::with_max_entries(FASTPATH_ENTRIES, 0);

/// Per-CPU working memory. The parse result, a flow key and value, and a zeroed counter block
/// together exceed the 512-byte BPF stack, so they live here. Never pinned, never read by user space.
struct Scratch {
    parsed: Parsed,
    /// The frame's facts for the rules, stored so that `decide` reads them from map memory.
    ifindex: u32,
    direction: u8,
    class: u8,
    mac: [u8; 6],
    wire_len: u64,
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
    let pkt = Packet {
        data: ctx.data(),
        data_end: ctx.data_end(),
        len: ctx.data_end() - ctx.data(),
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    // XDP applies pass and drop only: an XDP redirect to a veth is dropped unless the target's
    // peer runs XDP, and loses CHECKSUM_PARTIAL, so user space refuses such rules on XDP hooks.
    if observe(&ctx, &pkt, ifindex, DIR_INGRESS, pkt.len as u64, None).action == action::DROP {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[classifier]
pub fn netpath_tc_in(ctx: TcContext) -> i32 {
    tc_main(&ctx, DIR_INGRESS)
}

#[classifier]
pub fn netpath_tc_out(ctx: TcContext) -> i32 {
    tc_main(&ctx, DIR_EGRESS)
}

#[inline(always)]
fn tc_main(ctx: &TcContext, dir: u8) -> i32 {
    let v = tc_observe(ctx, dir);
    tc_verdict(ctx, dir, v)
}

/// Apply a rule's action on TC. Without one: TCX_NEXT / TC_ACT_UNSPEC, so the next program (or the
/// stack) decides; netpath then only observed. Redirects keep the skb, and with it GSO and
/// checksum offload (unlike an XDP redirect).
#[inline(always)]
fn tc_verdict(ctx: &TcContext, dir: u8, v: Verdict) -> i32 {
    match v.action {
        action::DROP => TC_ACT_SHOT as i32,
        // bpf_redirect_peer delivers into the target veth's peer (the pod's namespace) without
        // a second trip through the stack; it only works from TC ingress.
        // SAFETY: plain helper calls with an ifindex and no flags.
        action::REDIRECT if v.peer != 0 && dir == DIR_INGRESS => unsafe { bpf_redirect_peer(v.target, 0) as i32 },
        action::REDIRECT => unsafe { bpf_redirect(v.target, 0) as i32 },
        action::MIRROR => {
            let _ = ctx.clone_redirect(v.target, 0);
            TC_ACT_UNSPEC
        }
        _ => TC_ACT_UNSPEC,
    }
}

/// What the rules (or the fast path) decided for a frame.
#[derive(Clone, Copy)]
struct Verdict {
    action: u8,
    target: u32,
    peer: u8,
}

/// No rule matched: observe only.
const NO_VERDICT: Verdict = Verdict {
    action: 0xff,
    target: 0,
    peer: 0,
};

/// The benchmark baseline: what an XDP hook costs with no work at all.
#[xdp]
pub fn netpath_xdp_nop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The parser alone, for `cargo xtask bench`. The verdict depends on parsed fields so the compiler
/// cannot drop the parse.
#[xdp]
pub fn netpath_xdp_prs(ctx: XdpContext) -> u32 {
    let pkt = Packet {
        data: ctx.data(),
        data_end: ctx.data_end(),
        len: ctx.data_end() - ctx.data(),
    };
    let Some(scratch) = NP_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
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
fn tc_observe(ctx: &TcContext, dir: u8) -> Verdict {
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    let len = skb.len;
    if ((ctx.data_end() - ctx.data()) as u32) < min(len, TC_PULL_LEN) && ctx.pull_data(min(len, TC_PULL_LEN)).is_err() {
        diag_inc(diag::PULL_FAILED);
    }
    // The kernel moves the outer VLAN tag into skb metadata before TC ingress (skb_vlan_untag):
    // count its 4 bytes as on the wire, and parse the frame as tagged.
    let (hw_vlan, wire_len) = if skb.vlan_present != 0 {
        (Some((skb.vlan_tci as u16, skb.vlan_proto as u16)), len as u64 + 4)
    } else {
        (None, len as u64)
    };
    let pkt = Packet {
        data: ctx.data(),
        data_end: ctx.data_end(),
        len: len as usize,
    };
    observe(ctx, &pkt, skb.ifindex, dir, wire_len, hw_vlan)
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b {
        a
    } else {
        b
    }
}

/// `hw_vlan`: (TCI, TPID) of a tag the kernel moved into skb metadata.
#[inline(always)]
/// Count the frame, emit its events, capture it, and say what the rules decided.
fn observe<C: EbpfContext, F: Frame>(
    ctx: &C,
    pkt: &F,
    ifindex: u32,
    dir: u8,
    wire_len: u64,
    hw_vlan: Option<(u16, u16)>,
) -> Verdict {
    let Some(scratch) = NP_SCRATCH.get_ptr_mut(0) else {
        return NO_VERDICT;
    };
    // SAFETY: this CPU's slot of a per-CPU array; nothing else runs on it during this program.
    let s = unsafe { &mut *scratch };
    let default_cfg = Config::default();
    let cfg = NP_CONFIG.get(0).unwrap_or(&default_cfg);
    parse_into(pkt, cfg, hw_vlan.map(|(tci, _)| tci), &mut s.parsed);
    let class = s.parsed.class;
    count_iface(ifindex, dir, class, wire_len, &s.zero);
    let mut now = Now::default();
    if class == class::MALFORMED {
        diag_inc(diag::MALFORMED_BASE + s.parsed.reason as u32);
        emit(
            kind::MALFORMED,
            s,
            ifindex,
            dir,
            s.parsed.reason,
            cfg,
            now.precise(),
            false,
        );
    }
    if s.parsed.has_flow() {
        // SAFETY: plain helper call. Flow times use the coarse clock (see FlowValue).
        let coarse = unsafe { bpf_ktime_get_coarse_ns() };
        let new = count_flow(s, ifindex, dir, wire_len, coarse);
        if new {
            emit(kind::FLOW_NEW, s, ifindex, dir, 0, cfg, now.precise(), true);
        }
        let flow = s.parsed.flow();
        let (flags, err, family) = (flow.tcp_flags, flow.err.family, flow.family);
        if flags & TCP_RST != 0 {
            emit(
                kind::FLOW_END,
                s,
                ifindex,
                dir,
                end_reason::RST,
                cfg,
                now.precise(),
                true,
            );
        } else if flags & TCP_FIN != 0 {
            emit(
                kind::FLOW_END,
                s,
                ifindex,
                dir,
                end_reason::FIN,
                cfg,
                now.precise(),
                true,
            );
        }
        if family == netpath_common::FAMILY_ARP {
            emit(kind::ARP, s, ifindex, dir, 0, cfg, now.precise(), true);
        } else if err != 0 {
            emit(kind::ICMP_ERROR, s, ifindex, dir, 0, cfg, now.precise(), true);
        }
    }
    capture(ctx, ifindex, dir, class, wire_len, pkt.len() as u32, hw_vlan, &mut now);
    match NP_RULE_CTL.get(0) {
        Some(ctl) if ctl.count != 0 || ctl.fastpath != 0 => {}
        _ => return NO_VERDICT,
    }
    s.ifindex = ifindex;
    s.direction = dir;
    s.class = class;
    s.wire_len = wire_len;
    let mac = pkt.bytes::<6>(0).unwrap_or([0; 6]);
    copy_mac(&mut s.mac, &mac);
    decide()
}

/// The first rule that matches (rules are in priority order), else the fast path.
//
// It runs last, and reads every fact about the frame back from the scratch map: loaded from map
// memory they are unknown scalars to the verifier, so the states of all the parser's paths meet
// here and the rule loop is verified once instead of once per path (inline, with the facts in
// registers, it exceeded the verifier's million instructions). It is not a tail-called program
// because on this kernel a TC_ACT_REDIRECT returned by a tail-called program was not carried out,
// while the same bpf_redirect_peer from the main program was.
#[inline(never)]
fn decide() -> Verdict {
    let Some(ctl) = NP_RULE_CTL.get(0) else {
        return NO_VERDICT;
    };
    let Some(s) = NP_SCRATCH.get(0) else { return NO_VERDICT };
    let (ifindex, dir, class, wire_len, mac) = (s.ifindex, s.direction, s.class, s.wire_len, s.mac);
    if ctl.count != 0 {
        let l = s.parsed.flow();
        let dport = if class == class::TCP || class == class::UDP {
            l.dport
        } else {
            0
        };
        let p = rule::Packet {
            ifindex,
            direction: dir,
            class,
            family: l.family,
            src: &l.src.0,
            dst: &l.dst.0,
            dport,
            dst_mac: &mac,
        };
        let base = (ctl.bank & 1) * MAX_RULES as u32;
        for i in 0..MAX_RULES as u32 {
            if i >= ctl.count {
                break;
            }
            let Some(r) = NP_RULES.get(base + i) else { break };
            // A redirect or mirror never applies on its own target: a copy sent there would be
            // seen there again and copied forever.
            if r.target_ifindex == ifindex && (r.action == action::REDIRECT || r.action == action::MIRROR) {
                continue;
            }
            if rule::matches(r, &p) {
                if let Some(h) = NP_RULE_HITS.get_ptr_mut(r.id % MAX_RULE_IDS) {
                    // SAFETY: this CPU's slot.
                    unsafe {
                        (*h).packets += 1;
                        (*h).bytes += wire_len;
                    }
                }
                if r.action != action::PASS {
                    diag_inc(diag::RULE_ACTIONS);
                }
                return Verdict {
                    action: r.action,
                    target: r.target_ifindex,
                    peer: r.peer,
                };
            }
        }
    }
    // Pod to pod on the fast path's bridge: unicast frames addressed to a known pod MAC go straight
    // into that pod. ARP and broadcast/multicast (low bit of the first octet) keep using the bridge.
    if ctl.fastpath != 0 && dir == DIR_INGRESS && class != class::ARP && mac[0] & 1 == 0 {
        let key = MacKey { mac, _pad: [0; 2] };
        // SAFETY: a plain lookup.
        if let Some(t) = unsafe { NP_FASTPATH.get(&key) } {
            if t.ifindex != ifindex {
                diag_inc(diag::FASTPATH_REDIRECTED);
                return Verdict {
                    action: action::REDIRECT,
                    target: t.ifindex,
                    peer: 1,
                };
            }
        }
    }
    NO_VERDICT
}

/// The precise clock (`bpf_ktime_get_ns`), read at most once per frame and only when the frame
/// needs it: for events (their `ts` and the rate limiter) and capture records. It costs about
/// 22 ns in a VM, as much as the rest of the hot path; flow times use the coarse clock instead.
/// All events of one frame share one timestamp, as before.
#[derive(Default)]
struct Now(u64);

impl Now {
    #[inline(always)]
    fn precise(&mut self) -> u64 {
        if self.0 == 0 {
            // SAFETY: plain helper call.
            self.0 = unsafe { bpf_ktime_get_ns() };
        }
        self.0
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// Per-CPU, per-kind token bucket, kept in nanoseconds of credit: each event costs
/// 1e9 / rate ns, the credit grows with time up to `burst` events' worth.
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
#[allow(clippy::too_many_arguments)]
fn emit(k: u8, s: &Scratch, ifindex: u32, dir: u8, reason: u8, cfg: &Config, now: u64, with_key: bool) {
    if !allow(k, cfg, now) {
        diag_inc(diag::EVENTS_SUPPRESSED);
        return;
    }
    diag_inc(diag::EVENTS_EMITTED);
    let Some(mut entry) = NP_EVENTS.reserve::<Event>(0) else {
        diag_inc(diag::EVENTS_LOST);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, exclusively ours, size_of::<Event>() record (8-byte
    // aligned, as ring-buffer records are); it is zeroed first so no stale kernel memory reaches
    // user space, then filled field by field (building the 160-byte Event on the stack would not
    // fit next to the parser). Word stores and copies throughout: `ptr::write_bytes` and plain
    // array or struct assignments through `e` become byte-loop memset/memmove calls.
    unsafe {
        zero_words(e);
        (*e).ts = now;
        (*e).ifindex = ifindex;
        (*e).kind = k;
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

/// A MAC copied byte by byte with volatile stores: an array assignment (alignment 1) becomes a
/// call into the byte-loop memmove, six stores do not.
#[inline(always)]
fn copy_mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    let d = dst.as_mut_ptr();
    let mut i = 0;
    while i < 6 {
        // SAFETY: i < 6, inside `dst`.
        unsafe { d.add(i).write_volatile(src[i]) };
        i += 1;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn capture<C: EbpfContext>(
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
    let key = IfaceKey::new_words(ifindex, dir);
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

/// Account the frame to its flow (key left in `s.key`); true when the flow is new. `now` is the
/// coarse clock (see FlowValue).
#[inline(always)]
fn count_flow(s: &mut Scratch, ifindex: u32, dir: u8, wire_len: u64, now: u64) -> bool {
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
        Err(_) => {
            match NP_FLOWS.get_ptr_mut(&s.key) {
                // SAFETY: per-CPU value of this CPU.
                Some(v) => unsafe { bump(&mut *v, &s.parsed, wire_len, now) },
                None => diag_inc(diag::FLOW_INSERT_FAILED),
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
