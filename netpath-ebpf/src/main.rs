//! netpath's datapath: XDP and TC programs that parse every frame (netpath_common::parse), count it
//! per interface, direction and class, and account it to its flow. They never drop or alter a
//! frame unless a rule says so: on a parse error they count it as malformed and pass it on (fail
//! open).
//!
//! This file holds the maps and the entry points; each concern has its module: `observe` (the
//! parse and what follows it, per frame), `count` (interface and health counters), `flow` (the flow
//! table), `events`, `capture`, `peer` (per-peer VXLAN counters), `rules` (rules, the fast path and the TC
//! verdict), `drops` (the
//! kernel's drops, traced at `kfree_skb`, and the rules') and `log` (the rare paths aya-log
//! reports, off unless user space enables it at load time).
#![no_std]
#![no_main]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "map keys and values go by reference: passed by value, the struct is copied first, and \
              LLVM's BPF backend copies it with a call into a byte-at-a-time memmove"
)]

mod capture;
mod count;
mod drops;
mod events;
mod flow;
mod log;
mod observe;
mod peer;
mod rules;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{btf_tracepoint, classifier, map, xdp},
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray, RingBuf},
    programs::{BtfTracePointContext, TcContext, XdpContext},
};
use netpath_common::{
    diag,
    drop::{DropKey, DropLayout, DropPending, DROP_TABLE_SIZE},
    event::{kind, CaptureConfig, CaptureMeta, RateState},
    parse::{parse_into, Frame as _},
    peer::{PeerCounters, PeerKey, PEER_TABLE_SIZE},
    rule::{action, FastTarget, MacKey, Rule, RuleCtl, FASTPATH_ENTRIES, MAX_RULES, MAX_RULE_IDS},
    Config, Counter, FlowKey, FlowValue, IfaceCounters, IfaceKey, DEFAULT_FLOW_TABLE_SIZE, DIR_EGRESS, DIR_INGRESS,
    IFACE_TABLE_SIZE,
};
use netpath_ebpf::cursor::Packet;
use observe::Scratch;

// A note on copies and zeroing, which shape much of this crate: LLVM's BPF backend lowers every
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

/// VXLAN frames per interface, direction and remote VTEP (see `peer`). Not LRU: its counters
/// must only grow; a full table fails open and is counted.
#[map]
static NP_VXLAN_PEERS: PerCpuHashMap<PeerKey, PeerCounters> = PerCpuHashMap::with_max_entries(PEER_TABLE_SIZE, 0);

#[map]
static NP_DIAG: PerCpuArray<u64> = PerCpuArray::with_max_entries(diag::COUNT, 0);

#[map]
static NP_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Structured events for user space (one consumer: the daemon).
#[map]
static NP_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

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

/// Per-CPU working memory (see [`Scratch`]). Never pinned, never read by user space.
#[map]
static NP_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Drops by site (namespace, interface, direction, reason, location), kernel's and rules'. LRU:
/// sites are keyed by namespace and ifindex, and pods come and go; the coldest site makes room.
#[map]
static NP_DROPS: LruPerCpuHashMap<DropKey, Counter> = LruPerCpuHashMap::with_max_entries(DROP_TABLE_SIZE, 0);

/// The kernel layout the drop tracer reads (see `DropLayout`), written by user space before it
/// attaches the tracer.
#[map]
static NP_DROP_LAYOUT: Array<DropLayout> = Array::with_max_entries(1, 0);

/// A pod's network namespace (inode) -> the host veth leading to it: drops inside a pod are
/// accounted to the pod's flow on that veth.
#[map]
static NP_DROP_NETNS: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);

/// The frame a TC program just shot (see `DropPending`).
#[map]
static NP_DROP_PENDING: PerCpuArray<DropPending> = PerCpuArray::with_max_entries(1, 0);

/// The drop tracer's working memory (see `drops::DropScratch`).
#[map]
static NP_DROP_SCRATCH: PerCpuArray<drops::DropScratch> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn netpath_xdp(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // XDP applies pass and drop only: an XDP redirect to a veth is dropped unless the target's
    // peer runs XDP, and loses CHECKSUM_PARTIAL, so user space refuses such rules on XDP hooks.
    let (Some(s), Some(cfg)) = (observe::scratch(), NP_CONFIG.get(0)) else {
        return xdp_action::XDP_PASS;
    };
    let pkt = Packet::linear(ctx.data(), ctx.data_end());
    parse_into(&pkt, cfg, None, &mut s.parsed);
    let v = observe::observe(&ctx, &pkt, s, cfg, ifindex, DIR_INGRESS, pkt.len() as u64, None);
    if s.parsed.vxlan {
        // XDP sees every frame before GRO: one packet each.
        peer::count_seen(ifindex, DIR_INGRESS, 1, pkt.len() as u64);
    }
    if v.action == action::DROP {
        // In generic mode the kernel then frees the skb (reason XDP): counted once, as the rule's.
        drops::mark_rule_drop(ifindex);
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
    let v = observe::tc_observe(ctx, dir);
    rules::tc_verdict(ctx, dir, v)
}

/// Every skb the kernel frees as dropped (`kfree_skb`), with the reason it gives.
#[btf_tracepoint(function = "kfree_skb")]
pub fn netpath_drops(ctx: BtfTracePointContext) -> i32 {
    drops::on_kfree_skb(&ctx);
    0
}
