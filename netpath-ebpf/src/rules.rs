//! Rules (first match in priority order) and the pod-to-pod fast path, and how TC carries out
//! their verdict.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    cty::c_void,
    helpers::{bpf_loop, bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
    EbpfContext,
};
use netpath_common::{
    class, diag,
    rule::{self, action, MacKey, MAX_RULES, MAX_RULE_IDS},
    DIR_INGRESS,
};

use crate::{
    count::diag_inc,
    drops, log,
    observe::{account_peer_redirect, Verdict, NO_VERDICT},
    NP_FASTPATH, NP_RULES, NP_RULE_CTL, NP_RULE_HITS, NP_SCRATCH,
};

/// Apply a rule's action on TC. Without one: TCX_NEXT / TC_ACT_UNSPEC, so the next program (or the
/// stack) decides; netpath then only observed. Redirects keep the skb, and with it GSO and
/// checksum offload (unlike an XDP redirect).
#[inline(always)]
pub fn tc_verdict(ctx: &TcContext, dir: u8, v: Verdict) -> i32 {
    match v.action {
        action::DROP => {
            // SAFETY: ctx.skb.skb is the __sk_buff the kernel passed to this program.
            drops::mark_rule_drop(unsafe { (*ctx.skb.skb).ifindex });
            TC_ACT_SHOT
        }
        // bpf_redirect_peer delivers into the target veth's peer (the pod's namespace) without
        // a second trip through the stack; it only works from TC ingress. The frame skips the
        // target's TC egress, so it is accounted there first.
        action::REDIRECT if v.peer != 0 && dir == DIR_INGRESS => {
            account_peer_redirect(ctx, v.target);
            // SAFETY: a plain helper call with an ifindex and no flags.
            unsafe { bpf_redirect_peer(v.target, 0) as i32 }
        }
        // SAFETY: a plain helper call with an ifindex and no flags.
        action::REDIRECT => unsafe { bpf_redirect(v.target, 0) as i32 },
        action::MIRROR => {
            let _ = ctx.clone_redirect(v.target, 0);
            TC_ACT_UNSPEC
        }
        _ => TC_ACT_UNSPEC,
    }
}

/// `bpf_loop`'s context for [`match_one`]: the slot of the first matching rule.
#[repr(C)]
struct Search {
    base: u32,
    found: u32,
}

/// No rule matched ([`Search::found`]).
const NOT_FOUND: u32 = u32::MAX;

/// The first rule that matches (rules are in priority order), else the fast path.
//
// It runs last, and reads every fact about the frame back from the scratch map. The rule walk is
// a `bpf_loop` over [`match_one`]: the verifier checks the callback's body once instead of once
// per slot (an inline 64-slot loop cost it about 780,000 instructions per program, most of the
// million-instruction limit), and the kernel inlines the loop into the program at load time.
#[inline(never)]
pub fn decide<C: EbpfContext>(ctx: &C) -> Verdict {
    let Some(ctl) = NP_RULE_CTL.get(0) else {
        return NO_VERDICT;
    };
    let Some(s) = NP_SCRATCH.get(0) else { return NO_VERDICT };
    let (ifindex, dir, class, wire_len, mac) = (s.ifindex, s.direction, s.class, s.wire_len, s.mac);
    let count = ctl.count;
    if count != 0 {
        let mut search = Search {
            base: (ctl.bank & 1) * MAX_RULES as u32,
            found: NOT_FOUND,
        };
        let n = if count < MAX_RULES as u32 {
            count
        } else {
            MAX_RULES as u32
        };
        // SAFETY: `match_one` has the callback signature bpf_loop expects, and `search` outlives
        // the call.
        unsafe {
            bpf_loop(
                n,
                match_one as *mut c_void,
                &mut search as *mut Search as *mut c_void,
                0,
            )
        };
        if search.found != NOT_FOUND {
            if let Some(r) = NP_RULES.get(search.found) {
                if let Some(h) = NP_RULE_HITS.get_ptr_mut(r.id % MAX_RULE_IDS) {
                    // SAFETY: this CPU's slot.
                    unsafe {
                        (*h).packets += 1;
                        (*h).bytes += wire_len;
                    }
                }
                if r.action != action::PASS {
                    diag_inc(diag::RULE_ACTIONS);
                    log::rule_action(ctx, r, ifindex, dir, class);
                }
                if r.action == action::DROP {
                    drops::rule_drop(r.id);
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

/// One slot of the rule walk (`bpf_loop` callback): 1 stops the walk at the first match, whose
/// slot goes to `Search::found`.
#[inline(never)]
extern "C" fn match_one(i: u64, search: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `decide` gave it, to its live `Search`.
    let search = unsafe { &mut *(search as *mut Search) };
    let Some(s) = NP_SCRATCH.get(0) else { return 1 };
    let slot = search.base + i as u32;
    let Some(r) = NP_RULES.get(slot) else { return 1 };
    // A redirect or mirror never applies on its own target: a copy sent there would be seen
    // there again and copied forever.
    if r.target_ifindex == s.ifindex && (r.action == action::REDIRECT || r.action == action::MIRROR) {
        return 0;
    }
    let l = s.parsed.flow();
    let dport = if s.class == class::TCP || s.class == class::UDP {
        l.dport
    } else {
        0
    };
    let p = rule::Packet {
        ifindex: s.ifindex,
        direction: s.direction,
        class: s.class,
        family: l.family,
        src: &l.src.0,
        dst: &l.dst.0,
        dport,
        dst_mac: &s.mac,
    };
    if rule::matches(r, &p) {
        search.found = slot;
        return 1;
    }
    0
}
