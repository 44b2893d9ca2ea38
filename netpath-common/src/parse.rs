//! The frame parser shared by XDP, TC and host tests.
//!
//! It walks Ethernet II, up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags, ARP, IPv4 (with options and
//! fragments), IPv6 with up to [`MAX_IPV6_EXT`] extension headers, ICMP/ICMPv6, TCP and UDP, and one
//! level of VXLAN (the inner Ethernet frame is parsed by the same code). Every read goes through
//! [`Frame::bytes`], the single bounds-checked cursor; every loop has a constant bound, so the
//! verifier sees a finite program. Parsing never fails the frame: anything truncated or invalid is
//! classed [`class::MALFORMED`] with a reason, and the datapath passes it on.

use crate::{
    class, malformed, zero_words, Addr, Config, FlowKey, Words, ENCAP_NONE, ENCAP_VXLAN, FAMILY_ARP, FAMILY_IPV4,
    FAMILY_IPV6, FAMILY_NONE,
};

/// Headers must start within this many bytes of the frame. It bounds every variable offset for the
/// verifier (packet pointer arithmetic needs a bounded scalar); a frame whose headers reach further
/// (e.g. 6 IPv6 extension headers of 200 bytes each) is malformed with `beyond_parse_limit`.
pub const MAX_PARSE_OFFSET: usize = 1024;
/// The kernel cursor refuses reads past this offset: a header starts at most at
/// [`MAX_PARSE_OFFSET`] and the parser never reads more than 64 bytes past a header's start
/// (IPv4 options end at +60).
pub const CURSOR_WINDOW: usize = MAX_PARSE_OFFSET + 64;
/// 802.1Q/802.1ad tags parsed (QinQ). A third tag makes the frame malformed (`too_many_vlan_tags`).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed (hop-by-hop, routing, fragment, destination options, AH). More
/// makes the frame malformed (`too_many_ipv6_ext_headers`).
pub const MAX_IPV6_EXT: usize = 6;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Read access to a frame. The one rule: `bytes::<N>(off)` returns the N bytes at `off` only when
/// all of them lie inside the frame (and, in the kernel, inside the verifier's bounded window).
pub trait Frame {
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
    /// Length of the whole frame as seen by the hook (without a VLAN tag held in skb metadata).
    fn len(&self) -> usize;

    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        match self.bytes::<1>(off) {
            Some(b) => Some(b[0]),
            None => None,
        }
    }
    #[inline(always)]
    fn u16_at(&self, off: usize) -> Option<u16> {
        match self.bytes::<2>(off) {
            Some(b) => Some(u16::from_be_bytes(b)),
            None => None,
        }
    }
    #[inline(always)]
    fn u32_at(&self, off: usize) -> Option<u32> {
        match self.bytes::<4>(off) {
            Some(b) => Some(u32::from_be_bytes(b)),
            None => None,
        }
    }
}

/// A frame seen only up to `end`: the end of an IP packet inside an Ethernet frame that may carry
/// padding (short frames are padded to 60 bytes on the wire), so headers are checked against the
/// packet, not the frame.
pub struct Bounded<'a, F: Frame + ?Sized> {
    pub f: &'a F,
    pub end: usize,
}

impl<F: Frame + ?Sized> Frame for Bounded<'_, F> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off + N > self.end {
            return None;
        }
        self.f.bytes(off)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.end
    }
}

impl Frame for [u8] {
    #[inline]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let s = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// What one level (outer frame, or the frame inside VXLAN) parsed to.
///
/// The datapath resets it for every frame with [`zero_words`] (u64 stores), not
/// `Level::default()`: the BPF backend lowers that to a call into a byte-at-a-time `memset` loop
/// (see [`Words`]), which cost more than the rest of the parse.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Level {
    /// Id of the first VLAN tag (0 when untagged).
    pub vlan: u16,
    pub family: u8,
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub arp_op: u8,
    pub tcp_flags: u8,
    /// Any IP fragment, first or not.
    pub fragment: bool,
    /// Offset of the UDP payload, when the level ends in a UDP header.
    pub udp_payload: usize,
    /// End of the IP packet (its total length), when the level is IP.
    pub l3_end: usize,
    /// ARP sender and target hardware addresses (Ethernet/IPv4 ARP).
    pub arp_sha: [u8; 6],
    pub arp_tha: [u8; 6],
    /// For an ICMP/ICMPv6 error: the packet it reports, as quoted inside it.
    pub err: Quoted,
}

/// The 5-tuple of the packet an ICMP error quotes (`family == 0` when the level is no error).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub src: Addr,
    pub dst: Addr,
}

// SAFETY: 8-byte aligned (its `Addr`s), so its size is a multiple of 8; integers, bools and byte
// arrays only, all valid as zero bytes. Only ever zeroed as words, never copied (it has padding).
unsafe impl Words for Level {}

/// ICMP errors that quote the offending packet: destination unreachable (incl. fragmentation
/// needed), time exceeded, parameter problem; ICMPv6 unreachable, packet too big, time exceeded,
/// parameter problem.
#[inline(always)]
pub fn is_icmp_error(class: u8, icmp_type: u8) -> bool {
    if class == class::ICMP {
        icmp_type == 3 || icmp_type == 11 || icmp_type == 12
    } else {
        icmp_type >= 1 && icmp_type <= 4
    }
}

/// The parse of one frame: its class, and the level its flow is keyed on (the inner frame of a
/// VXLAN packet, else the frame itself).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub class: u8,
    /// A [`malformed`] reason when `class == MALFORMED`.
    pub reason: u8,
    pub vxlan: bool,
    pub vni: u32,
    pub outer: Level,
    /// The frame inside VXLAN (zero when `!vxlan`).
    pub inner: Level,
}

impl Parsed {
    /// The level the flow is keyed on.
    #[inline(always)]
    pub fn flow(&self) -> &Level {
        if self.vxlan {
            &self.inner
        } else {
            &self.outer
        }
    }

    /// Whether the frame gets a flow entry: ARP and IP frames that parsed cleanly.
    #[inline(always)]
    pub fn has_flow(&self) -> bool {
        self.class != class::MALFORMED && self.flow().family != FAMILY_NONE
    }

    /// Write the flow key fields (all but ifindex and direction) into `key`.
    #[inline(always)]
    pub fn fill_key(&self, key: &mut FlowKey) {
        let l = self.flow();
        key.vni = self.vni;
        // Word copies: a plain `key.src = l.src` may become a byte-loop memmove call in BPF.
        key.src.set(&l.src);
        key.dst.set(&l.dst);
        key.sport = l.sport;
        key.dport = l.dport;
        key.vlan = self.outer.vlan;
        key.family = l.family;
        key.proto = l.proto;
        key.icmp_type = l.icmp_type;
        key.icmp_code = l.icmp_code;
        key.arp_op = l.arp_op;
        key.encap = if self.vxlan { ENCAP_VXLAN } else { ENCAP_NONE };
    }

    /// Underlay family and addresses of a VXLAN frame (zeros otherwise).
    #[inline(always)]
    pub fn underlay(&self) -> (u8, &Addr, &Addr) {
        if self.vxlan {
            (self.outer.family, &self.outer.src, &self.outer.dst)
        } else {
            (FAMILY_NONE, &Addr::ZERO, &Addr::ZERO)
        }
    }

    /// Write [`Parsed::underlay`] into `family`, `src` and `dst` with word stores (the datapath's
    /// way to fill a `FlowValue` or an event).
    #[inline(always)]
    pub fn write_underlay(&self, family: &mut u8, src: &mut Addr, dst: &mut Addr) {
        if self.vxlan {
            *family = self.outer.family;
            src.set(&self.outer.src);
            dst.set(&self.outer.dst);
        } else {
            *family = FAMILY_NONE;
            src.clear();
            dst.clear();
        }
    }
}

/// Parse a frame into a fresh [`Parsed`] (host code; the datapath uses [`parse_into`]).
pub fn parse<F: Frame + ?Sized>(f: &F, cfg: &Config, hw_vlan: Option<u16>) -> Parsed {
    let mut p = Parsed::default();
    parse_into(f, cfg, hw_vlan, &mut p);
    p
}

/// Parse a frame into `p`, overwriting all of it. `hw_vlan` is a VLAN tag the kernel already moved
/// into skb metadata (TC ingress): the frame is still treated as tagged, with that tag outermost.
/// Writing into the caller's storage keeps the eBPF stack small (the datapath passes a per-CPU
/// scratch map value).
#[inline(always)]
pub fn parse_into<F: Frame + ?Sized>(f: &F, cfg: &Config, hw_vlan: Option<u16>, p: &mut Parsed) {
    p.reason = malformed::NONE;
    p.vxlan = false;
    p.vni = 0;
    // Not `p.outer = Level::default()`: see [`Level`].
    // SAFETY: `p.outer` is a valid, exclusively borrowed Level.
    unsafe { zero_words(&mut p.outer) };
    // The parse limit counts bytes as on the wire: a tag the kernel moved into skb metadata still
    // occupies 4 bytes before the headers, so TC and XDP agree on which frames exceed it.
    let max_off = if hw_vlan.is_some() {
        MAX_PARSE_OFFSET - 4
    } else {
        MAX_PARSE_OFFSET
    };
    let cls = match parse_level(f, 0, max_off, hw_vlan, &mut p.outer) {
        Ok(c) => c,
        Err(reason) => return set_malformed(p, reason),
    };
    p.class = cls;
    if cls == class::UDP && !p.outer.fragment && cfg.is_vxlan_port(p.outer.dport) {
        let v = p.outer.udp_payload;
        // The VXLAN header and the inner frame lie inside the outer IP packet.
        let outer = Bounded { f, end: p.outer.l3_end };
        // VXLAN header: flags(1) reserved(3) VNI(3) reserved(1).
        match outer.u32_at(v + 4) {
            Some(w) => p.vni = w >> 8,
            None => return set_malformed(p, malformed::TRUNCATED_VXLAN),
        }
        // Zeroed only here: most frames are not VXLAN, and the inner level is read only when it is.
        // SAFETY: as for `p.outer`.
        unsafe { zero_words(&mut p.inner) };
        if let Err(reason) = parse_level(&outer, v + 8, max_off, None, &mut p.inner) {
            return set_malformed(p, reason);
        }
        p.vxlan = true;
        p.class = class::VXLAN;
    }
}

#[inline(always)]
fn set_malformed(p: &mut Parsed, reason: u8) {
    p.class = class::MALFORMED;
    p.reason = reason;
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Parse Ethernet, VLAN, ARP/IP and L4 from `off`. Returns the class, or a malformed reason.
#[inline(always)]
pub fn parse_level<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    max_off: usize,
    hw_vlan: Option<u16>,
    l: &mut Level,
) -> Result<u8, u8> {
    if off > max_off {
        return Err(malformed::BEYOND_PARSE_LIMIT);
    }
    let mut ethertype = match f.u16_at(off + 12) {
        Some(t) => t,
        None => return Err(malformed::TRUNCATED_ETH),
    };
    let mut off = off + ETH_HLEN;
    let mut tags = 0usize;
    if let Some(tci) = hw_vlan {
        l.vlan = tci & 0x0fff;
        tags = 1;
    }
    // One more iteration than tags allowed, so a third tag is seen and refused.
    for _ in 0..MAX_VLAN_TAGS + 1 {
        if !is_vlan(ethertype) {
            break;
        }
        if tags >= MAX_VLAN_TAGS {
            return Err(malformed::TOO_MANY_VLANS);
        }
        let tag = match f.bytes::<4>(off) {
            Some(t) => t,
            None => return Err(malformed::TRUNCATED_VLAN),
        };
        if tags == 0 {
            l.vlan = u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff;
        }
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    match ethertype {
        ETH_P_ARP => parse_arp(f, off, l),
        ETH_P_IP => parse_ipv4(f, off, max_off, l),
        ETH_P_IPV6 => parse_ipv6(f, off, max_off, l),
        _ => Ok(class::OTHER_L2),
    }
}

#[inline(always)]
fn parse_arp<F: Frame + ?Sized>(f: &F, off: usize, l: &mut Level) -> Result<u8, u8> {
    // htype(2) ptype(2) hlen(1) plen(1) op(2)
    let h = match f.bytes::<8>(off) {
        Some(h) => h,
        None => return Err(malformed::TRUNCATED_ARP),
    };
    l.family = FAMILY_ARP;
    let op = u16::from_be_bytes([h[6], h[7]]);
    l.arp_op = if op > 255 { 255 } else { op as u8 };
    let ethernet_ipv4 = h[0] == 0 && h[1] == 1 && h[2] == 0x08 && h[3] == 0x00 && h[4] == 6 && h[5] == 4;
    if ethernet_ipv4 {
        // sha(6) spa(4) tha(6) tpa(4) follow the 8-byte header.
        match (f.bytes::<6>(off + 8), f.bytes::<6>(off + 18)) {
            (Some(sha), Some(tha)) => (l.arp_sha, l.arp_tha) = (sha, tha),
            _ => return Err(malformed::TRUNCATED_ARP),
        }
        let spa = match f.bytes::<4>(off + 14) {
            Some(a) => a,
            None => return Err(malformed::TRUNCATED_ARP),
        };
        let tpa = match f.bytes::<4>(off + 24) {
            Some(a) => a,
            None => return Err(malformed::TRUNCATED_ARP),
        };
        l.src.set_v4(spa);
        l.dst.set_v4(tpa);
    }
    Ok(class::ARP)
}

/// IPv4 addresses are stored in the first 4 bytes of a 16-byte field (the rest zero). The parser
/// itself writes them in place with [`Addr::set_v4`] (two word stores): building the array and
/// copying it costs `memset` calls in BPF.
#[inline(always)]
pub fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    Addr::v4(a).0
}

#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(f: &F, off: usize, max_off: usize, l: &mut Level) -> Result<u8, u8> {
    let h = match f.bytes::<20>(off) {
        Some(h) => h,
        None => return Err(malformed::TRUNCATED_IPV4),
    };
    if h[0] >> 4 != 4 {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    let hlen = ((h[0] & 0x0f) as usize) * 4;
    if hlen < 20 {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < hlen {
        return Err(malformed::BAD_IPV4_HEADER);
    }
    // Options: the whole header must be present.
    if f.u8_at(off + hlen - 1).is_none() || off + total > f.len() {
        return Err(malformed::TRUNCATED_IPV4);
    }
    l.family = FAMILY_IPV4;
    l.l3_end = off + total;
    l.src.set_v4([h[12], h[13], h[14], h[15]]);
    l.dst.set_v4([h[16], h[17], h[18], h[19]]);
    let proto = h[9];
    l.proto = proto;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let more_fragments = frag & 0x2000 != 0;
    let frag_offset = frag & 0x1fff;
    l.fragment = more_fragments || frag_offset != 0;
    if frag_offset != 0 {
        return Ok(class_of_proto(proto, FAMILY_IPV4));
    }
    parse_l4(
        &Bounded { f, end: off + total },
        off + hlen,
        max_off,
        proto,
        FAMILY_IPV4,
        l,
    )
}

#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(f: &F, off: usize, max_off: usize, l: &mut Level) -> Result<u8, u8> {
    let h = match f.bytes::<8>(off) {
        Some(h) => h,
        None => return Err(malformed::TRUNCATED_IPV6),
    };
    if h[0] >> 4 != 6 {
        return Err(malformed::BAD_IPV6_HEADER);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let src = match f.bytes::<16>(off + 8) {
        Some(a) => a,
        None => return Err(malformed::TRUNCATED_IPV6),
    };
    let dst = match f.bytes::<16>(off + 24) {
        Some(a) => a,
        None => return Err(malformed::TRUNCATED_IPV6),
    };
    if off + 40 + payload > f.len() {
        return Err(malformed::TRUNCATED_IPV6);
    }
    l.family = FAMILY_IPV6;
    l.l3_end = off + 40 + payload;
    l.src.0 = src;
    l.dst.0 = dst;
    // Extension headers and L4 lie inside the payload, not in Ethernet padding after it.
    let f = &Bounded {
        f,
        end: off + 40 + payload,
    };
    let mut nh = h[6];
    let mut off = off + 40;
    let mut nonfirst_fragment = false;
    for _ in 0..MAX_IPV6_EXT {
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
        return Ok(class_of_proto(nh, FAMILY_IPV6));
    }
    if matches!(
        nh,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    ) {
        return Err(malformed::TOO_MANY_IPV6_EXT);
    }
    parse_l4(f, off, max_off, nh, FAMILY_IPV6, l)
}

/// The IP header (and ports) quoted in an ICMP error starting at `off`.
#[inline(always)]
fn parse_quoted<F: Frame + ?Sized>(f: &F, off: usize, q: &mut Quoted) {
    let Some(v) = f.u8_at(off) else { return };
    let l4 = match v >> 4 {
        4 => {
            let Some(h) = f.bytes::<20>(off) else { return };
            q.family = FAMILY_IPV4;
            q.proto = h[9];
            q.src.set_v4([h[12], h[13], h[14], h[15]]);
            q.dst.set_v4([h[16], h[17], h[18], h[19]]);
            off + ((h[0] & 0x0f) as usize) * 4
        }
        6 => {
            let Some(h) = f.bytes::<8>(off) else { return };
            let (Some(src), Some(dst)) = (f.bytes::<16>(off + 8), f.bytes::<16>(off + 24)) else {
                return;
            };
            q.family = FAMILY_IPV6;
            q.proto = h[6];
            q.src.0 = src;
            q.dst.0 = dst;
            off + 40
        }
        _ => return,
    };
    if q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP {
        if let Some(p) = f.bytes::<4>(l4) {
            q.sport = u16::from_be_bytes([p[0], p[1]]);
            q.dport = u16::from_be_bytes([p[2], p[3]]);
        }
    }
}

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
fn parse_l4<F: Frame + ?Sized>(
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
            let h = match f.bytes::<8>(off) {
                Some(h) => h,
                None => return Err(malformed::TRUNCATED_L4),
            };
            l.sport = u16::from_be_bytes([h[0], h[1]]);
            l.dport = u16::from_be_bytes([h[2], h[3]]);
            l.udp_payload = off + 8;
            Ok(class::UDP)
        }
        c @ (class::ICMP | class::ICMP6) => {
            let h = match f.bytes::<8>(off) {
                Some(h) => h,
                None => return Err(malformed::TRUNCATED_L4),
            };
            l.icmp_type = h[0];
            l.icmp_code = h[1];
            let echo = if c == class::ICMP {
                h[0] == 0 || h[0] == 8
            } else {
                h[0] == 128 || h[0] == 129
            };
            if echo {
                l.sport = u16::from_be_bytes([h[4], h[5]]);
            }
            if is_icmp_error(c, h[0]) {
                // Best effort: a quote too short to read leaves `err` empty, the frame still valid.
                parse_quoted(f, off + 8, &mut l.err);
            }
            Ok(c)
        }
        c => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::craft::*;

    fn key(r: &Parsed) -> FlowKey {
        let mut k = FlowKey::default();
        r.fill_key(&mut k);
        k
    }

    fn p(frame: &[u8]) -> Parsed {
        parse(frame, &Config::default(), None)
    }

    #[test]
    fn udp4_flow() {
        let f = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1000, 53, b"hello")));
        let r = p(&f);
        assert_eq!(r.class, class::UDP);
        assert!(r.has_flow());
        assert_eq!(key(&r).family, FAMILY_IPV4);
        assert_eq!(&key(&r).src[..4], &IP_A);
        assert_eq!(&key(&r).dst[..4], &IP_B);
        assert_eq!((key(&r).sport, key(&r).dport, key(&r).proto), (1000, 53, IPPROTO_UDP));
    }

    #[test]
    fn tcp6_flags_and_ports() {
        let f = eth(
            ETH_P_IPV6,
            &ipv6(IP6_A, IP6_B, IPPROTO_TCP, &tcp(40000, 443, TCP_SYN | TCP_ACK, &[])),
        );
        let r = p(&f);
        assert_eq!(r.class, class::TCP);
        assert_eq!(r.flow().tcp_flags, TCP_SYN | TCP_ACK);
        assert_eq!(key(&r).src, IP6_A);
        assert_eq!((key(&r).sport, key(&r).dport), (40000, 443));
    }

    #[test]
    fn icmp_echo_id_in_sport() {
        let f = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &icmp_echo(8, 0x1234, 1)));
        let r = p(&f);
        assert_eq!(r.class, class::ICMP);
        assert_eq!((key(&r).icmp_type, key(&r).icmp_code, key(&r).sport), (8, 0, 0x1234));
        let f = eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_ICMPV6, &icmp_echo(128, 7, 1)));
        let r = p(&f);
        assert_eq!(r.class, class::ICMP6);
        assert_eq!((key(&r).icmp_type, key(&r).sport), (128, 7));
    }

    #[test]
    fn arp_request_flow() {
        let f = eth(ETH_P_ARP, &arp(1, MAC_A, IP_A, [0; 6], IP_B));
        let r = p(&f);
        assert_eq!(r.class, class::ARP);
        assert_eq!(key(&r).family, FAMILY_ARP);
        assert_eq!(key(&r).arp_op, 1);
        assert_eq!(&key(&r).src[..4], &IP_A);
        assert_eq!(&key(&r).dst[..4], &IP_B);
    }

    #[test]
    fn vlan_and_qinq_record_outer_id_and_class_by_payload() {
        let inner = ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, &[]));
        let f = vlan_eth(&[(ETH_P_8021Q, 100)], ETH_P_IP, &inner);
        let r = p(&f);
        assert_eq!((r.class, key(&r).vlan), (class::UDP, 100));
        let f = vlan_eth(&[(ETH_P_8021AD, 200), (ETH_P_8021Q, 300)], ETH_P_IP, &inner);
        let r = p(&f);
        assert_eq!((r.class, key(&r).vlan), (class::UDP, 200));
        let f = vlan_eth(
            &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
            ETH_P_IP,
            &inner,
        );
        assert_eq!(
            (p(&f).class, p(&f).reason),
            (class::MALFORMED, malformed::TOO_MANY_VLANS)
        );
    }

    #[test]
    fn hw_vlan_counts_as_outer_tag() {
        let inner = ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, &[]));
        // The kernel stripped tag 200 into metadata; one in-band tag (300) remains.
        let f = vlan_eth(&[(ETH_P_8021Q, 300)], ETH_P_IP, &inner);
        let r = parse(&f[..], &Config::default(), Some(200));
        assert_eq!((r.class, key(&r).vlan), (class::UDP, 200));
        // Two in-band tags plus one in metadata is three.
        let f = vlan_eth(&[(ETH_P_8021Q, 1), (ETH_P_8021Q, 2)], ETH_P_IP, &inner);
        assert_eq!(
            parse(&f[..], &Config::default(), Some(9)).reason,
            malformed::TOO_MANY_VLANS
        );
    }

    #[test]
    fn ipv4_options_use_ihl() {
        let f = eth(
            ETH_P_IP,
            &ipv4_opts(
                IP_A,
                IP_B,
                IPPROTO_TCP,
                &[1, 1, 1, 0, 1, 1, 1, 0],
                &tcp(5, 6, TCP_SYN, &[]),
            ),
        );
        let r = p(&f);
        assert_eq!((r.class, key(&r).sport, key(&r).dport), (class::TCP, 5, 6));
    }

    #[test]
    fn bad_ihl_is_malformed() {
        let mut ip = ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, &[]));
        ip[0] = 0x44;
        assert_eq!(p(&eth(ETH_P_IP, &ip)).reason, malformed::BAD_IPV4_HEADER);
    }

    #[test]
    fn fragments_class_by_protocol_and_nonfirst_have_no_ports() {
        let first = ipv4_frag(IP_A, IP_B, IPPROTO_UDP, true, 0, &udp(1000, 2000, &[0; 16]));
        let r = p(&eth(ETH_P_IP, &first));
        assert_eq!((r.class, key(&r).sport, key(&r).dport), (class::UDP, 1000, 2000));
        let rest = ipv4_frag(IP_A, IP_B, IPPROTO_UDP, false, 3, &[0; 16]);
        let r = p(&eth(ETH_P_IP, &rest));
        assert_eq!((r.class, key(&r).sport, key(&r).dport), (class::UDP, 0, 0));
        let rest6 = ipv6_ext(IP6_A, IP6_B, &[ext_frag(IPPROTO_TCP, 100, false)], &[0; 16]);
        let r = p(&eth(ETH_P_IPV6, &rest6));
        assert_eq!((r.class, key(&r).proto, key(&r).sport), (class::TCP, IPPROTO_TCP, 0));
    }

    #[test]
    fn ipv6_extension_chain() {
        let l4 = udp(7, 8, b"x");
        let f = eth(
            ETH_P_IPV6,
            &ipv6_ext(
                IP6_A,
                IP6_B,
                &[
                    ext_opts(IPPROTO_HOPOPTS, IPPROTO_ROUTING, 0),
                    ext_opts(IPPROTO_ROUTING, IPPROTO_DSTOPTS, 1),
                    ext_opts(IPPROTO_DSTOPTS, IPPROTO_UDP, 0),
                ],
                &l4,
            ),
        );
        let r = p(&f);
        assert_eq!(
            (r.class, key(&r).proto, key(&r).sport, key(&r).dport),
            (class::UDP, IPPROTO_UDP, 7, 8)
        );
        let chain: Vec<Ext> = (0..MAX_IPV6_EXT + 1)
            .map(|i| {
                ext_opts(
                    IPPROTO_DSTOPTS,
                    if i == MAX_IPV6_EXT {
                        IPPROTO_UDP
                    } else {
                        IPPROTO_DSTOPTS
                    },
                    0,
                )
            })
            .collect();
        let f = eth(ETH_P_IPV6, &ipv6_ext(IP6_A, IP6_B, &chain, &l4));
        assert_eq!(p(&f).reason, malformed::TOO_MANY_IPV6_EXT);
    }

    #[test]
    fn vxlan_inner_flow_with_outer_addresses() {
        let inner = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &icmp_echo(8, 42, 1)));
        let f = vxlan4(IP_NODE1, IP_NODE2, 8472, 1, &inner);
        let r = p(&f);
        assert_eq!(r.class, class::VXLAN);
        assert_eq!(r.vni, 1);
        assert_eq!(key(&r).proto, IPPROTO_ICMP);
        assert_eq!(&key(&r).src[..4], &IP_A);
        assert_eq!(&r.underlay().1[..4], &IP_NODE1);
        assert_eq!(&r.underlay().2[..4], &IP_NODE2);
        assert_eq!(r.underlay().0, FAMILY_IPV4);
        // VNI 0 is still VXLAN: its key must differ from the same flow seen natively.
        let v0 = p(&vxlan4(IP_NODE1, IP_NODE2, 8472, 0, &inner));
        assert_eq!((v0.class, key(&v0).encap), (class::VXLAN, ENCAP_VXLAN));
        assert_ne!(key(&v0), key(&p(&inner)));
        // Not a VXLAN port: plain UDP.
        assert_eq!(p(&vxlan4(IP_NODE1, IP_NODE2, 9999, 1, &inner)).class, class::UDP);
        // A configured port.
        let cfg = Config {
            vxlan_ports: [9999, 0, 0, 0],
            ..Config::default()
        };
        assert_eq!(
            parse(&vxlan4(IP_NODE1, IP_NODE2, 9999, 5, &inner)[..], &cfg, None).vni,
            5
        );
    }

    /// Found by the tshark comparison: a 60-byte (padded) frame whose IPv4 packet holds only part
    /// of the TCP/UDP header must not read the padding as header.
    #[test]
    fn l4_headers_end_inside_the_ip_packet_not_in_padding() {
        let mut ip = ipv4(IP_A, IP_B, IPPROTO_TCP, &tcp(1, 2, TCP_SYN, &[])[..14]);
        ip.resize(46, 0);
        assert_eq!(p(&eth(ETH_P_IP, &ip)).reason, malformed::TRUNCATED_L4);
        let mut ip = ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, &[])[..4]);
        ip.resize(46, 0);
        assert_eq!(p(&eth(ETH_P_IP, &ip)).reason, malformed::TRUNCATED_L4);
        let mut ip6 = ipv6(IP6_A, IP6_B, IPPROTO_UDP, &udp(1, 2, &[])[..4]);
        ip6.resize(60, 0);
        assert_eq!(p(&eth(ETH_P_IPV6, &ip6)).reason, malformed::TRUNCATED_L4);
        // Padding after a complete packet is fine.
        let mut ip = ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, &[]));
        ip.resize(46, 0);
        assert_eq!(p(&eth(ETH_P_IP, &ip)).class, class::UDP);
    }

    /// Found by the tshark comparison: with the outer tag in skb metadata (TC), the parse limit
    /// still counts the tag's 4 bytes, as XDP sees them in the frame.
    #[test]
    fn parse_limit_counts_a_stripped_vlan_tag() {
        // A destination-options header ending at wire byte 1026 (frame 1042 with its tag).
        let ext = ext_opts(IPPROTO_DSTOPTS, IPPROTO_UDP, 120);
        let ip6 = ipv6_ext(IP6_A, IP6_B, &[ext], &udp(1, 2, &[0; 8]));
        let tagged = vlan_eth(&[(ETH_P_8021Q, 100)], ETH_P_IPV6, &ip6);
        assert_eq!(p(&tagged).reason, malformed::BEYOND_PARSE_LIMIT);
        let stripped = eth(ETH_P_IPV6, &ip6);
        assert_eq!(
            parse(&stripped[..], &Config::default(), Some(100)).reason,
            malformed::BEYOND_PARSE_LIMIT
        );
        assert_eq!(p(&stripped).class, class::UDP, "untagged, the same headers fit");
    }

    #[test]
    fn icmp_errors_carry_the_quoted_tuple_and_arp_its_macs() {
        let quoted = ipv4(IP_B, IP_A, IPPROTO_UDP, &udp(5353, 53, b"query"));
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted[..28]);
        let r = p(&eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &err)));
        let q = r.flow().err;
        assert_eq!(
            (r.class, q.family, q.proto, q.sport, q.dport),
            (class::ICMP, FAMILY_IPV4, IPPROTO_UDP, 5353, 53)
        );
        assert_eq!(&q.src[..4], &IP_B);
        // Echo is no error.
        assert_eq!(
            p(&eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &icmp_echo(8, 1, 1))))
                .flow()
                .err
                .family,
            0
        );
        // ICMPv6 packet too big quoting TCP.
        let quoted6 = ipv6(IP6_B, IP6_A, IPPROTO_TCP, &tcp(443, 40000, TCP_ACK, &[]));
        let mut err6 = vec![2, 0, 0, 0, 0, 0, 5, 0xdc];
        err6.extend_from_slice(&quoted6[..48]);
        let r = p(&eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_ICMPV6, &err6)));
        assert_eq!(
            (r.flow().err.family, r.flow().err.sport, r.flow().err.dport),
            (FAMILY_IPV6, 443, 40000)
        );
        let r = p(&eth(ETH_P_ARP, &arp(2, MAC_A, IP_A, MAC_B, IP_B)));
        assert_eq!((r.flow().arp_sha, r.flow().arp_tha), (MAC_A, MAC_B));
    }

    /// The datapath parses into a reused per-CPU `Parsed` and resets each level with word stores
    /// (not `Level::default()`): whatever the previous frame left there, the result must equal a
    /// fresh parse. (`inner` is reset only for VXLAN frames and read only then.)
    #[test]
    fn parse_into_a_reused_parsed_equals_a_fresh_parse() {
        let mut frames: Vec<Vec<u8>> = sample_frames().into_iter().map(|(_, f, _)| f).collect();
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&ipv4(IP_B, IP_A, IPPROTO_UDP, &udp(5353, 53, b"query"))[..28]);
        frames.push(eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &err)));
        let mut err6 = vec![1, 4, 0, 0, 0, 0, 0, 0];
        err6.extend_from_slice(&ipv6(IP6_B, IP6_A, IPPROTO_TCP, &tcp(443, 40000, TCP_ACK, &[]))[..48]);
        frames.push(vxlan4(
            IP_NODE1,
            IP_NODE2,
            8472,
            9,
            &eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_ICMPV6, &err6)),
        ));
        let mut dirty = Parsed::default();
        for f in frames.iter().rev() {
            parse_into(f.as_slice(), &Config::default(), None, &mut dirty);
            for g in &frames {
                for cut in [g.len(), g.len() / 2] {
                    let mut reused = dirty;
                    parse_into(&g[..cut], &Config::default(), None, &mut reused);
                    let fresh = p(&g[..cut]);
                    assert_eq!(
                        (reused.class, reused.reason, reused.vxlan, reused.vni),
                        (fresh.class, fresh.reason, fresh.vxlan, fresh.vni)
                    );
                    assert_eq!(reused.outer, fresh.outer);
                    if fresh.vxlan {
                        assert_eq!(reused.inner, fresh.inner);
                    }
                    assert_eq!(key(&reused), key(&fresh));
                    let (mut fam, mut src, mut dst) = (0xff, Addr([0xff; 16]), Addr([0xff; 16]));
                    reused.write_underlay(&mut fam, &mut src, &mut dst);
                    assert_eq!((fam, &src, &dst), fresh.underlay());
                }
            }
        }
    }

    #[test]
    fn other_l2_and_other_ip() {
        let f = eth(0x88cc, &[0u8; 46]);
        let r = p(&f);
        assert_eq!((r.class, r.has_flow()), (class::OTHER_L2, false));
        let f = eth(ETH_P_IP, &ipv4(IP_A, IP_B, 47, &[0u8; 8]));
        let r = p(&f);
        assert_eq!((r.class, key(&r).proto, r.has_flow()), (class::OTHER_IP, 47, true));
    }

    /// Every prefix of every frame shape parses without panicking, and a prefix that cuts a header
    /// is malformed while the whole frame is not.
    #[test]
    fn every_truncation_is_malformed_never_a_panic() {
        for (name, frame, header_end) in sample_frames() {
            assert_ne!(p(&frame).class, class::MALFORMED, "{name}: whole frame");
            for cut in 0..frame.len() {
                let r = p(&frame[..cut]);
                if cut < header_end {
                    assert_eq!(r.class, class::MALFORMED, "{name} cut at {cut}");
                    assert!(!r.has_flow(), "{name} cut at {cut}");
                }
            }
        }
    }
}
