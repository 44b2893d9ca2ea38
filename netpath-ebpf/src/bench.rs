//! The benchmark-only programs, built as their own object so that netpath's production object
//! never carries them: `cargo xtask bench` and the tests load this one beside it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use netpath_common::{
    parse::{parse_into, Parsed},
    Config,
};
use netpath_ebpf::cursor::Packet;

/// Where the parser writes, as in the datapath (a per-CPU map value, not the 512-byte stack).
#[map]
static NP_SCRATCH: PerCpuArray<Parsed> = PerCpuArray::with_max_entries(1, 0);

/// The benchmark baseline: what an XDP hook costs with no work at all.
#[xdp]
pub fn netpath_xdp_nop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The parser alone. The verdict depends on parsed fields so the compiler cannot drop the parse.
#[xdp]
pub fn netpath_xdp_prs(ctx: XdpContext) -> u32 {
    let pkt = Packet::linear(ctx.data(), ctx.data_end());
    let Some(p) = NP_SCRATCH.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's scratch slot.
    let p = unsafe { &mut *p };
    parse_into(&pkt, &Config::default(), None, p);
    let l = p.flow();
    let fold = p.class ^ (l.sport as u8) ^ l.dst[15] ^ l.src[3] ^ (p.vni as u8);
    if fold == 0xa5 && l.dport == 0xa5a5 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
