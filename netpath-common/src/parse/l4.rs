//! TCP, UDP, ICMP and ICMPv6, and the packet an ICMP error quotes.

use network_types::{
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
};

use super::{
    ip::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    is_icmp_error, Frame, Level, Quoted,
};
use crate::{class, malformed, FAMILY_IPV4, FAMILY_IPV6};

/// The class of an IP packet whose L4 header is not parsed (a non-first fragment).
#[inline(always)]
pub fn class_of_proto(proto: u8, family: u8) -> u8 {
    match proto {
        IPPROTO_TCP => class::TCP,
        IPPROTO_UDP => class::UDP,
        IPPROTO_ICMP if family == FAMILY_IPV4 => class::ICMP,
        IPPROTO_ICMPV6 if family == FAMILY_IPV6 => class::ICMP6,
        _ => class::OTHER_IP,
    }
}

#[inline(always)]
pub(super) fn parse_l4<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    max_off: usize,
    proto: u8,
    family: u8,
    l: &mut Level,
) -> Result<u8, u8> {
    if off > max_off {
        return Err(malformed::BEYOND_PARSE_LIMIT);
    }
    match class_of_proto(proto, family) {
        class::TCP => {
            // By hand, not network-types' 20-byte TcpHdr: the data offset is judged on the first
            // 14 bytes (a header cut after them with a data offset below 5 is `bad_tcp_header`,
            // as tshark and the tests have it), and the full header is then required up to the
            // data offset, options included.
            let h = match f.bytes::<14>(off) {
                Some(h) => h,
                None => return Err(malformed::TRUNCATED_L4),
            };
            let doff = (h[12] >> 4) as usize * 4;
            if doff < 20 {
                return Err(malformed::BAD_TCP_HEADER);
            }
            if f.u8_at(off + doff - 1).is_none() {
                return Err(malformed::TRUNCATED_L4);
            }
            l.sport = u16::from_be_bytes([h[0], h[1]]);
            l.dport = u16::from_be_bytes([h[2], h[3]]);
            l.tcp_flags = h[13];
            Ok(class::TCP)
        }
        class::UDP => {
            let h = match f.header::<UdpHdr>(off) {
                Some(h) => h,
                None => return Err(malformed::TRUNCATED_L4),
            };
            l.sport = h.src_port();
            l.dport = h.dst_port();
            l.udp_payload = off + UdpHdr::LEN;
            Ok(class::UDP)
        }
        c @ (class::ICMP | class::ICMP6) => {
            // ICMPv6's header (RFC 4443) has ICMP's layout (type, code, checksum, 4 bytes of
            // rest-of-header): one read with ICMP's struct serves both, so the quoted-packet
            // parse below is inlined once, not once per family.
            let h = match f.header::<Icmpv4Hdr>(off) {
                Some(h) => h,
                None => return Err(malformed::TRUNCATED_L4),
            };
            l.icmp_type = h.type_;
            l.icmp_code = h.code;
            let echo = if c == class::ICMP {
                h.type_ == 0 || h.type_ == 8
            } else {
                h.type_ == 128 || h.type_ == 129
            };
            if echo {
                // The echo identifier: the first half of the rest-of-header word.
                l.sport = u16::from_be_bytes([h.data[0], h.data[1]]);
            }
            if is_icmp_error(c, h.type_) {
                // Best effort: a quote too short to read leaves `err` empty, the frame still valid.
                parse_quoted(f, off + Icmpv4Hdr::LEN, &mut l.err);
            }
            Ok(c)
        }
        c => Ok(c),
    }
}

/// The IP header (and ports) quoted in an ICMP error starting at `off`.
#[inline(always)]
fn parse_quoted<F: Frame + ?Sized>(f: &F, off: usize, q: &mut Quoted) {
    let Some(v) = f.u8_at(off) else { return };
    let l4 = match v >> 4 {
        4 => {
            let Some(h) = f.header::<Ipv4Hdr>(off) else { return };
            q.family = FAMILY_IPV4;
            q.proto = h.proto;
            q.src.set_v4(h.src_addr);
            q.dst.set_v4(h.dst_addr);
            off + h.ihl() as usize
        }
        6 => {
            let Some(h) = f.header::<Ipv6Hdr>(off) else { return };
            q.family = FAMILY_IPV6;
            q.proto = h.next_hdr;
            q.src.0 = h.src_addr;
            q.dst.0 = h.dst_addr;
            off + Ipv6Hdr::LEN
        }
        _ => return,
    };
    if q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP {
        // Only the ports: an error quotes at least 8 bytes past the IP header, often no more.
        if let Some(p) = f.bytes::<4>(l4) {
            q.sport = u16::from_be_bytes([p[0], p[1]]);
            q.dport = u16::from_be_bytes([p[2], p[3]]);
        }
    } else if q.proto == IPPROTO_ICMP || q.proto == IPPROTO_ICMPV6 {
        // A quoted echo keeps its identifier where a flow keeps it (`sport`), so the error
        // names the ping it is about.
        if let Some(h) = f.bytes::<6>(l4) {
            let echo = if q.proto == IPPROTO_ICMP {
                h[0] == 0 || h[0] == 8
            } else {
                h[0] == 128 || h[0] == 129
            };
            if echo {
                q.sport = u16::from_be_bytes([h[4], h[5]]);
            }
        }
    }
}
