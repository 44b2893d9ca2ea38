//! What the datapath reports through aya-log: the rare paths only (a table that refused an
//! insert, a failed `bpf_skb_pull_data`, a rule that dropped, redirected or mirrored), never the
//! per-frame path.
//!
//! Off unless user space enables it. aya-log-ebpf gates every statement on its `AYA_LOG_LEVEL`
//! global (a `.rodata` value, 0xff = all in the object as built), which netpath's loader overrides
//! at load time (0 = off unless `LoadOptions::ebpf_log` says otherwise). aya freezes `.rodata`, so
//! the verifier knows the level and never walks the logging code of a disabled level: with logging
//! off the programs verify as if it were absent. The records go to aya-log's own `AYA_LOGS` ring
//! buffer, which `aya_log::EbpfLogger` drains in user space.

use aya_ebpf::EbpfContext;
use aya_log_ebpf::{
    info,
    macro_support::{level_enabled, Level},
    warn,
};
use netpath_common::rule::{action, Rule};

use crate::NP_SCRATCH;

/// A failure on the per-frame path, noted in the scratch map where it happens and reported by
/// [`flush`] once the frame is counted. Reported there, not inline: after the parser the verifier
/// carries one state per parse path, and a logging statement inline on a failure branch is walked
/// once per state (with logging on, `netpath_tc_in` then exceeded the million instructions). At
/// the flush the frame's facts are read back from map memory, so the states meet and the
/// statement is walked about once.
#[derive(Clone, Copy)]
pub struct Pending {
    pub what: u8,
    pub err: i32,
    pub ifindex: u32,
}

pub const NONE: u8 = 0;
pub const FLOW_INSERT_FAILED: u8 = 1;
pub const IFACE_INSERT_FAILED: u8 = 2;

impl Pending {
    #[inline(always)]
    pub fn note(&mut self, what: u8, ifindex: u32, err: i32) {
        self.what = what;
        self.ifindex = ifindex;
        self.err = err;
    }
}

/// Report what the frame left pending. With warnings off (the level is a load-time constant) the
/// verifier prunes the call itself.
#[inline(always)]
pub fn flush<C: EbpfContext>(ctx: &C) {
    if level_enabled(Level::Warn) {
        flush_pending(ctx);
    }
}

#[inline(never)]
fn flush_pending<C: EbpfContext>(ctx: &C) {
    let Some(s) = NP_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch slot, as in `observe`.
    let p = unsafe { &mut (*s).log };
    match p.what {
        FLOW_INSERT_FAILED => warn!(
            ctx,
            "flow table insert failed on ifindex {}: error {}", p.ifindex, p.err
        ),
        IFACE_INSERT_FAILED => warn!(
            ctx,
            "interface counter insert failed for ifindex {}: error {}", p.ifindex, p.err
        ),
        _ => return,
    }
    p.what = NONE;
}

/// `bpf_skb_pull_data` failed: the headers stay where they are and are parsed as far as linear.
/// Before the parse, so inline: the verifier has one state there.
#[inline(always)]
pub fn pull_failed<C: EbpfContext>(ctx: &C, ifindex: u32, len: u32) {
    warn!(
        ctx,
        "bpf_skb_pull_data failed on ifindex {} ({} bytes): headers in the paged part not parsed", ifindex, len
    );
}

/// A rule dropped, redirected or mirrored a frame (the class as its number: a name looked up by a
/// runtime index would be a variable-length read the verifier has to bound). Its own subprogram,
/// called from the rule loop with the rule's map value and scalars: walked once, not once per rule
/// slot (and BPF passes at most five arguments in registers, so the rule goes by reference).
#[inline(always)]
pub fn rule_action<C: EbpfContext>(ctx: &C, r: &Rule, ifindex: u32, dir: u8, cls: u8) {
    if level_enabled(Level::Info) {
        rule_action_log(ctx, r, ifindex, dir, cls);
    }
}

#[inline(never)]
fn rule_action_log<C: EbpfContext>(ctx: &C, r: &Rule, ifindex: u32, dir: u8, cls: u8) {
    let verb = match r.action {
        action::DROP => "drop",
        action::REDIRECT => "redirect",
        _ => "mirror",
    };
    let direction = if dir == 0 { "ingress" } else { "egress" };
    info!(
        ctx,
        "rule {} {}: ifindex {} {} class {} -> ifindex {}", r.id, verb, ifindex, direction, cls, r.target_ifindex
    );
}
