//! VXLAN: the Ethernet frame inside a UDP datagram to a configured port, parsed as a second level.

use network_types::vxlan::VxlanHdr;

use super::{parse_level, set_malformed, Bounded, Frame, Parsed};
use crate::{class, malformed, zero_words};

/// Parse the VXLAN header after the outer UDP header and the frame it carries into `p.inner`;
/// on success the frame is classed `vxlan`, else malformed.
#[inline(always)]
pub fn parse_vxlan<F: Frame + ?Sized>(f: &F, max_off: usize, p: &mut Parsed) {
    let v = p.outer.udp_payload;
    // The VXLAN header and the inner frame lie inside the outer IP packet.
    let outer = Bounded { f, end: p.outer.l3_end };
    match outer.header::<VxlanHdr>(v) {
        Some(h) => p.vni = h.vni(),
        None => return set_malformed(p, malformed::TRUNCATED_VXLAN),
    }
    // Zeroed only here: most frames are not VXLAN, and the inner level is read only when it is.
    // SAFETY: `p.inner` is a valid, exclusively borrowed Level.
    unsafe { zero_words(&mut p.inner) };
    if let Err(reason) = parse_level(&outer, v + VxlanHdr::LEN, max_off, None, &mut p.inner) {
        return set_malformed(p, reason);
    }
    p.vxlan = true;
    p.class = class::VXLAN;
}
