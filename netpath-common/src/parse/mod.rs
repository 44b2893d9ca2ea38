//! The frame parser shared by XDP, TC and host tests.
//!
//! It walks Ethernet II, up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags, ARP, IPv4 (with options and
//! fragments), IPv6 with up to [`MAX_IPV6_EXT`] extension headers, ICMP/ICMPv6, TCP and UDP, and one
//! level of VXLAN (the inner Ethernet frame is parsed by the same code). Every read goes through
//! [`Frame::bytes`] or [`Frame::header`], the single bounds-checked cursor; every loop has a
//! constant bound, so the verifier sees a finite program. Parsing never fails the frame: anything
//! truncated or invalid is classed [`class::MALFORMED`] with a reason, and the datapath passes it on.
//!
//! One file per layer: [`eth`] (Ethernet, VLAN tags, ARP), [`ip`] (IPv4, IPv6 and its extension
//! headers), [`l4`] (TCP, UDP, ICMP and the packet an ICMP error quotes), [`vxlan`] (the
//! encapsulated frame). Header layouts are network-types' `#[repr(C)]` structs where reading them
//! whole costs no more than the bytes the parser needs (see [`Header`]).

pub mod eth;
pub mod ip;
pub mod l4;
pub mod vxlan;

pub use eth::{parse_level, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};
pub use ip::{v4_mapped, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
pub use l4::class_of_proto;
use network_types::{
    arp::ArpHdr,
    eth::EthHdr,
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
    vxlan::VxlanHdr,
};

use crate::{class, malformed, zero_words, Addr, Config, FlowKey, Words, ENCAP_NONE, ENCAP_VXLAN, FAMILY_NONE};

/// Headers must start within this many bytes of the frame. It bounds every variable offset for the
/// verifier (packet pointer arithmetic needs a bounded scalar); a frame whose headers reach further
/// (e.g. 6 IPv6 extension headers of 200 bytes each) is malformed with `beyond_parse_limit`.
pub const MAX_PARSE_OFFSET: usize = 2048;
/// The kernel cursor refuses reads past this offset: a header starts at most at
/// [`MAX_PARSE_OFFSET`] and the parser never reads more than 64 bytes past a header's start
/// (IPv4 options end at +60).
pub const CURSOR_WINDOW: usize = MAX_PARSE_OFFSET + 64;
/// 802.1Q/802.1ad tags parsed (QinQ). A third tag makes the frame malformed (`too_many_vlan_tags`).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed (hop-by-hop, routing, fragment, destination options, AH). More
/// makes the frame malformed (`too_many_ipv6_ext_headers`).
pub const MAX_IPV6_EXT: usize = 6;

/// A header layout the parser reads whole from the frame with [`Frame::header`].
///
/// Reading one costs what reading its bytes cost: the cursor copies the struct with an unaligned
/// read (alignment 1, like the `[u8; N]` reads), LLVM keeps only the loads of the fields the parser
/// uses, and network-types' big-endian getters (`read_unaligned` + `swap_bytes`) fold into the
/// same byte loads and shifts as `u16::from_be_bytes`. One bounds check covers the whole header,
/// where the hand-written parser checked IPv6 and ARP addresses field by field.
///
/// # Safety
/// Every bit pattern is a valid value (integers and byte arrays only), and `size_of::<Self>()` is
/// the header's length on the wire (no trailing padding).
pub unsafe trait Header: Copy {}

// SAFETY: network-types' headers are #[repr(C)] structs of integers and byte arrays whose sizes
// are their wire lengths (asserted below).
unsafe impl Header for EthHdr {}
unsafe impl Header for VlanHdr {}
unsafe impl Header for ArpHdr {}
unsafe impl Header for Ipv4Hdr {}
unsafe impl Header for Ipv6Hdr {}
unsafe impl Header for UdpHdr {}
// The parser reads TCP by hand (see `l4`); the frame builders write this layout.
unsafe impl Header for TcpHdr {}
unsafe impl Header for Icmpv4Hdr {}
unsafe impl Header for VxlanHdr {}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<EthHdr>() == ETH_HLEN && size_of::<VlanHdr>() == 4 && size_of::<ArpHdr>() == 28);
    assert!(size_of::<Ipv4Hdr>() == 20 && size_of::<Ipv6Hdr>() == 40 && size_of::<UdpHdr>() == 8);
    assert!(size_of::<TcpHdr>() == 20);
    assert!(size_of::<Icmpv4Hdr>() == 8 && size_of::<VxlanHdr>() == 8);
};

/// Read access to a frame. The one rule: `bytes::<N>(off)` returns the N bytes at `off` (and
/// `header::<H>(off)` the header there) only when all of them lie inside the frame (and, in the
/// kernel, inside the verifier's bounded window).
#[expect(
    clippy::len_without_is_empty,
    reason = "a frame is never empty: the hooks see at least an Ethernet header's worth"
)]
pub trait Frame {
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
    fn header<H: Header>(&self, off: usize) -> Option<H>;
    /// Length of the whole frame as seen by the hook (without a VLAN tag held in skb metadata).
    fn len(&self) -> usize;

    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.bytes::<1>(off).map(|b| b[0])
    }
    #[inline(always)]
    fn u16_at(&self, off: usize) -> Option<u16> {
        self.bytes::<2>(off).map(u16::from_be_bytes)
    }
    #[inline(always)]
    fn u32_at(&self, off: usize) -> Option<u32> {
        self.bytes::<4>(off).map(u32::from_be_bytes)
    }
    /// The 8 bytes at `off` in memory order (a native-endian u64), for moving an address as
    /// words. The datapath overrides it with one 8-byte load: a `[u8; 8]` or `[u8; 16]` read is
    /// copied byte by byte (LLVM expands an alignment-1 copy into byte loads and stores).
    #[inline(always)]
    fn ne_u64_at(&self, off: usize) -> Option<u64> {
        self.bytes::<8>(off).map(u64::from_ne_bytes)
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
    fn header<H: Header>(&self, off: usize) -> Option<H> {
        if off + size_of::<H>() > self.end {
            return None;
        }
        self.f.header(off)
    }
    #[inline(always)]
    fn ne_u64_at(&self, off: usize) -> Option<u64> {
        if off + 8 > self.end {
            return None;
        }
        self.f.ne_u64_at(off)
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
    #[inline]
    fn header<H: Header>(&self, off: usize) -> Option<H> {
        let end = off.checked_add(size_of::<H>())?;
        let s = self.get(off..end)?;
        // SAFETY: `s` holds size_of::<H>() bytes, read unaligned; any bytes are a valid H (Header).
        Some(unsafe { core::ptr::read_unaligned(s.as_ptr() as *const H) })
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
        (1..=4).contains(&icmp_type)
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
        vxlan::parse_vxlan(f, max_off, p);
    }
}

#[inline(always)]
fn set_malformed(p: &mut Parsed, reason: u8) {
    p.class = class::MALFORMED;
    p.reason = reason;
}

#[cfg(test)]
mod tests;
