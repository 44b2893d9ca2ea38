//! IPv4 (options, fragments) and IPv6 (extension headers, fragments).

use core::mem::offset_of;

use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use super::{l4, Bounded, Frame, Level, MAX_IPV6_EXT};
use crate::{malformed, Addr, FAMILY_IPV4, FAMILY_IPV6};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub(crate) const IPPROTO_HOPOPTS: u8 = 0;
pub(crate) const IPPROTO_ROUTING: u8 = 43;
pub(crate) const IPPROTO_FRAGMENT: u8 = 44;
pub(crate) const IPPROTO_AH: u8 = 51;
pub(crate) const IPPROTO_DSTOPTS: u8 = 60;

/// IPv4 addresses are stored in the first 4 bytes of a 16-byte field (the rest zero). The parser
/// itself writes them in place with [`Addr::set_v4`] (two word stores): building the array and
/// copying it costs `memset` calls in BPF.
#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    Addr::v4(a).0
}

#[inline(always)]
pub(super) fn parse_ipv4<F: Frame + ?Sized>(f: &F, off: usize, max_off: usize, l: &mut Level) -> Result<u8, u8> {
    let h = match f.header::<Ipv4Hdr>(off) {
        Some(h) => h,
        None => return Err(malformed::TRUNCATED_IPV4),
    };
    if h.version() != 4 {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    let hlen = h.ihl() as usize;
    if hlen < Ipv4Hdr::LEN {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    let total = h.tot_len() as usize;
    if total < hlen {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    // Options: the whole header must be present.
    if f.u8_at(off + hlen - 1).is_none() || off + total > f.len() {
        return Err(malformed::TRUNCATED_IPV4);
    }
    l.family = FAMILY_IPV4;
    l.l3_end = off + total;
    l.src.set_v4(h.src_addr);
    l.dst.set_v4(h.dst_addr);
    let proto = h.proto;
    l.proto = proto;
    // MF is the lowest of the three flag bits.
    let more_fragments = h.frag_flags() & 1 != 0;
    let frag_offset = h.frag_offset();
    l.fragment = more_fragments || frag_offset != 0;
    if frag_offset != 0 {
        return Ok(l4::class_of_proto(proto, FAMILY_IPV4));
    }
    l4::parse_l4(
        &Bounded { f, end: off + total },
        off + hlen,
        max_off,
        proto,
        FAMILY_IPV4,
        l,
    )
}

#[inline(always)]
pub(super) fn parse_ipv6<F: Frame + ?Sized>(f: &F, off: usize, max_off: usize, l: &mut Level) -> Result<u8, u8> {
    // The whole fixed header in one read: a frame shorter than it was truncated whichever field
    // the cut falls in.
    let h = match f.header::<Ipv6Hdr>(off) {
        Some(h) => h,
        None => {
            // A wrong version in a cut header is still a bad header, not a truncated one (the
            // reason the parser gave when it read the first 8 bytes on their own).
            return match f.bytes::<8>(off) {
                Some(b) if b[0] >> 4 != 6 => Err(malformed::BAD_IPV6_HEADER),
                _ => Err(malformed::TRUNCATED_IPV6),
            };
        }
    };
    if h.version() != 6 {
        return Err(malformed::BAD_IPV6_HEADER);
    }
    let payload = h.payload_len() as usize;
    if off + Ipv6Hdr::LEN + payload > f.len() {
        return Err(malformed::TRUNCATED_IPV6);
    }
    l.family = FAMILY_IPV6;
    l.l3_end = off + Ipv6Hdr::LEN + payload;
    // The addresses straight from the frame at Ipv6Hdr's offsets, as words, not from the header
    // copy: LLVM forwards a 16-byte field of the copy into a `memmove` call (the BPF backend's byte
    // loop), and copies a `[u8; 16]` read byte by byte; two 8-byte loads per address do neither.
    // The fixed header is in the frame (read above), so these reads succeed.
    let (s, d) = (off + offset_of!(Ipv6Hdr, src_addr), off + offset_of!(Ipv6Hdr, dst_addr));
    match (f.ne_u64_at(s), f.ne_u64_at(s + 8), f.ne_u64_at(d), f.ne_u64_at(d + 8)) {
        (Some(s0), Some(s1), Some(d0), Some(d1)) => {
            l.src.set_words(s0, s1);
            l.dst.set_words(d0, d1);
        }
        _ => return Err(malformed::TRUNCATED_IPV6),
    }
    // Extension headers and L4 lie inside the payload, not in Ethernet padding after it.
    let f = &Bounded {
        f,
        end: off + Ipv6Hdr::LEN + payload,
    };
    let mut nh = h.next_hdr;
    let mut off = off + Ipv6Hdr::LEN;
    let mut nonfirst_fragment = false;
    for _ in 0..MAX_IPV6_EXT {
        // Extension headers by hand: network-types 0.2 has no layout for them, and only their
        // first 4 bytes (next header, length, fragment offset) matter here.
        let len = match nh {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
                let e = match f.bytes::<4>(off) {
                    Some(e) => e,
                    None => return Err(malformed::TRUNCATED_IPV6),
                };
                let len = match nh {
                    IPPROTO_FRAGMENT => {
                        l.fragment = true;
                        // Offset in 8-byte units, top 13 bits of bytes 2..4.
                        if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                            nonfirst_fragment = true;
                        }
                        8
                    }
                    IPPROTO_AH => (e[1] as usize + 2) * 4,
                    _ => (e[1] as usize + 1) * 8,
                };
                nh = e[0];
                len
            }
            _ => break,
        };
        if off + len > max_off {
            return Err(malformed::BEYOND_PARSE_LIMIT);
        }
        if f.u8_at(off + len - 1).is_none() {
            return Err(malformed::TRUNCATED_IPV6);
        }
        off += len;
        if nonfirst_fragment {
            break;
        }
    }
    l.proto = nh;
    if nonfirst_fragment {
        return Ok(l4::class_of_proto(nh, FAMILY_IPV6));
    }
    if matches!(
        nh,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    ) {
        return Err(malformed::TOO_MANY_IPV6_EXT);
    }
    l4::parse_l4(f, off, max_off, nh, FAMILY_IPV6, l)
}
