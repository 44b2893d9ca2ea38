//! Per frame: parse it, then count it, account it to its flow, emit its events, capture it, and
//! ask the rules what to do with it.

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    programs::TcContext,
    EbpfContext,
};
use netpath_common::{
    class, diag,
    drop::DropKey,
    event::{end_reason, kind},
    parse::{parse_into, Frame, Parsed},
    peer::{PeerCounters, PeerKey},
    Config, FlowKey, FlowValue, IfaceCounters, DIR_EGRESS, FAMILY_ARP,
};
use netpath_ebpf::cursor::Skb;

use crate::{capture, count, events::emit, flow, log, peer, rules, NP_CONFIG, NP_RULE_CTL, NP_SCRATCH};

/// Per-CPU working memory (the `NP_SCRATCH` value). The parse result, a flow key and value, and a
/// zeroed counter block together exceed the 512-byte BPF stack, so they live in a map.
pub struct Scratch {
    pub parsed: Parsed,
    /// The frame's facts for the rules, stored so that `rules::decide` reads them from map memory.
    pub ifindex: u32,
    pub direction: u8,
    pub class: u8,
    pub mac: [u8; 6],
    pub wire_len: u64,
    pub key: FlowKey,
    pub value: FlowValue,
    /// Never written: the initial value for a new interface entry.
    pub zero: IfaceCounters,
    /// [`Skb`]'s flag: pulling the headers into the linear area failed.
    pub pull_failed: u8,
    /// A failure to report once the frame is counted (see `log::flush`).
    pub log: log::Pending,
    /// Where a rule dropped the frame (`drops::rule_drop`).
    pub drop_site: DropKey,
    /// A VXLAN frame's per-peer key (`peer::count_seen`).
    pub peer_key: PeerKey,
    /// Never written: the initial value for a new per-peer entry.
    pub peer_zero: PeerCounters,
}

/// What the rules (or the fast path) decided for a frame.
#[derive(Clone, Copy)]
pub struct Verdict {
    pub action: u8,
    pub target: u32,
    pub peer: u8,
}

/// No rule matched: observe only.
pub const NO_VERDICT: Verdict = Verdict {
    action: 0xff,
    target: 0,
    peer: 0,
};

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// The frame's clocks, each read at most once and only when the frame needs it. The precise clock
/// (`bpf_ktime_get_ns`) stamps events and capture records; it costs about 22 ns in a VM, as much
/// as the rest of the hot path, so flow times and the event rate limiter use the coarse clock
/// (`bpf_ktime_get_coarse_ns`, a few ns), and an event the limiter suppresses never reads the
/// precise one. All events of one frame share one timestamp.
#[derive(Default)]
pub struct Now {
    precise: u64,
    coarse: u64,
}

/// The clocks an event and its rate limit read (see [`Now`]).
pub trait Clock {
    fn precise(&mut self) -> u64;
    fn coarse(&mut self) -> u64;
}

/// One precise reading serving as both clocks (same base), for tracing programs: the verifier
/// refuses `bpf_ktime_get_coarse_ns` in them.
pub struct Precise(pub u64);

impl Precise {
    #[inline(always)]
    pub fn now() -> Precise {
        // SAFETY: plain helper call.
        Precise(unsafe { bpf_ktime_get_ns() })
    }
}

impl Clock for Precise {
    #[inline(always)]
    fn precise(&mut self) -> u64 {
        self.0
    }
    #[inline(always)]
    fn coarse(&mut self) -> u64 {
        self.0
    }
}

impl Clock for Now {
    #[inline(always)]
    fn precise(&mut self) -> u64 {
        Now::precise(self)
    }
    #[inline(always)]
    fn coarse(&mut self) -> u64 {
        Now::coarse(self)
    }
}

impl Now {
    #[inline(always)]
    pub fn precise(&mut self) -> u64 {
        if self.precise == 0 {
            // SAFETY: plain helper call.
            self.precise = unsafe { bpf_ktime_get_ns() };
        }
        self.precise
    }

    #[inline(always)]
    pub fn coarse(&mut self) -> u64 {
        if self.coarse == 0 {
            // SAFETY: plain helper call.
            self.coarse = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.coarse
    }
}

#[inline(always)]
pub fn tc_observe(ctx: &TcContext, dir: u8) -> Verdict {
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    let len = skb.len;
    // The kernel moves the outer VLAN tag into skb metadata before TC ingress (skb_vlan_untag):
    // count its 4 bytes as on the wire, and parse the frame as tagged.
    let (hw_vlan, wire_len) = if skb.vlan_present != 0 {
        (Some((skb.vlan_tci as u16, skb.vlan_proto as u16)), len as u64 + 4)
    } else {
        (None, len as u64)
    };
    // Neither lookup fails (index 0 of one-entry arrays); the verifier needs the check.
    let (Some(s), Some(cfg)) = (scratch(), NP_CONFIG.get(0)) else {
        return NO_VERDICT;
    };
    if parse_skb(ctx, s, cfg, hw_vlan.map_or(NO_HW_VLAN, |(tci, _)| tci as u32)) != 0 {
        count::diag_inc(diag::PULL_FAILED);
        log::pull_failed(ctx, skb.ifindex, len);
    }
    // SAFETY: a field of this CPU's scratch map value, which outlives the program run.
    let pkt = unsafe { Skb::new(ctx, &mut s.pull_failed) };
    let v = observe(ctx, &pkt, s, cfg, skb.ifindex, dir, wire_len, hw_vlan);
    if s.parsed.vxlan {
        // A GSO packet (egress) or a GRO-merged one (ingress) counts as its segments, so the
        // sender's and the receiver's counts agree whichever side merged.
        let segs = if skb.gso_segs > 1 { skb.gso_segs } else { 1 };
        peer::count_seen(skb.ifindex, dir, segs, wire_len);
    }
    v
}

/// [`parse_skb`]'s `hw_tci` when the skb carries no VLAN tag in its metadata.
const NO_HW_VLAN: u32 = u32::MAX;

/// Parse the skb into `s.parsed`; 1 when its headers could not be pulled into the linear area.
//
// Not inlined, and the parse goes to map memory: the verifier meets all of the parser's paths in
// one state where it returns (the return value is 0 or 1 on every path), and walks what follows
// once; inlined, LLVM and the verifier carried the parse's constants into the rest of the
// program. `hw_tci` is a u32 because an Option would take two argument registers, one of them
// left unset for None, which the verifier refuses to read.
#[inline(never)]
fn parse_skb(ctx: &TcContext, s: &mut Scratch, cfg: &Config, hw_tci: u32) -> u32 {
    let hw_vlan = if hw_tci == NO_HW_VLAN {
        None
    } else {
        Some(hw_tci as u16)
    };
    // SAFETY: a field of this CPU's scratch map value, which outlives the program run.
    let pkt = unsafe { Skb::new(ctx, &mut s.pull_failed) };
    parse_into(&pkt, cfg, hw_vlan, &mut s.parsed);
    pkt.pull_failed() as u32
}

/// Account a frame the fast path (or a rule) redirects into a veth's peer to that veth's egress:
/// `bpf_redirect_peer` hands it straight to the pod's side, so it never passes the veth's own TC
/// egress hook, and without this the pod's veth would show only the traffic the pod sends. The
/// frame's facts come from the scratch map, as the rules read them; it is counted, accounted to
/// its flow on the target and offered to capture, as if seen there (no events: the ingress side
/// already emitted them).
//
// Not inlined: one walk for the verifier, on the rare redirect path. It returns 0 rather than
// nothing so that r0 holds a scalar at its exit (the verifier refuses a subprogram that leaves a
// stack pointer there).
#[inline(never)]
pub fn account_peer_redirect(ctx: &TcContext, target: u32) -> u32 {
    let Some(s) = scratch() else { return 0 };
    let (class, wire_len) = (s.class, s.wire_len);
    count::count_iface(target, DIR_EGRESS, class, wire_len, &s.zero, &mut s.log);
    let mut now = Now::default();
    if s.parsed.has_flow() {
        flow::count_flow(s, target, DIR_EGRESS, wire_len, now.coarse());
    }
    // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed to this program.
    let skb = unsafe { &*ctx.skb.skb };
    let hw_vlan = (skb.vlan_present != 0).then_some((skb.vlan_tci as u16, skb.vlan_proto as u16));
    capture::capture(ctx, target, DIR_EGRESS, class, wire_len, skb.len, hw_vlan, &mut now);
    0
}

/// This CPU's [`Scratch`].
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: this CPU's slot of a per-CPU array; nothing else runs on it during this program.
    NP_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Count the frame parsed into `s`, emit its events, capture it, and say what the rules decided.
/// `hw_vlan`: (TCI, TPID) of a tag the kernel moved into skb metadata.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into each hook; the frame's facts as the hook has them"
)]
pub fn observe<C: EbpfContext, F: Frame>(
    ctx: &C,
    pkt: &F,
    s: &mut Scratch,
    cfg: &Config,
    ifindex: u32,
    dir: u8,
    wire_len: u64,
    hw_vlan: Option<(u16, u16)>,
) -> Verdict {
    let class = s.parsed.class;
    count::count_iface(ifindex, dir, class, wire_len, &s.zero, &mut s.log);
    let mut now = Now::default();
    if class == class::MALFORMED {
        count::diag_inc(diag::MALFORMED_BASE + s.parsed.reason as u32);
        emit(kind::MALFORMED, s, ifindex, dir, s.parsed.reason, cfg, &mut now, false);
    }
    if s.parsed.has_flow() {
        // Flow times use the coarse clock (see FlowValue).
        let new = flow::count_flow(s, ifindex, dir, wire_len, now.coarse());
        if new {
            emit(kind::FLOW_NEW, s, ifindex, dir, 0, cfg, &mut now, true);
        }
        let flow = s.parsed.flow();
        let (flags, err, family) = (flow.tcp_flags, flow.err.family, flow.family);
        if flags & TCP_RST != 0 {
            emit(kind::FLOW_END, s, ifindex, dir, end_reason::RST, cfg, &mut now, true);
        } else if flags & TCP_FIN != 0 {
            emit(kind::FLOW_END, s, ifindex, dir, end_reason::FIN, cfg, &mut now, true);
        }
        if family == FAMILY_ARP {
            emit(kind::ARP, s, ifindex, dir, 0, cfg, &mut now, true);
        } else if err != 0 {
            emit(kind::ICMP_ERROR, s, ifindex, dir, 0, cfg, &mut now, true);
        }
    }
    capture::capture(ctx, ifindex, dir, class, wire_len, pkt.len() as u32, hw_vlan, &mut now);
    log::flush(ctx);
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
    rules::decide(ctx)
}

/// A MAC copied byte by byte with volatile stores: an array assignment (alignment 1) becomes a
/// call into the byte-loop memmove, six stores do not.
#[inline(always)]
pub fn copy_mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    let d = dst.as_mut_ptr();
    let mut i = 0;
    while i < 6 {
        // SAFETY: i < 6, inside `dst`.
        unsafe { d.add(i).write_volatile(src[i]) };
        i += 1;
    }
}
