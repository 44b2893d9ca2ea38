//! Ethernet II, 802.1Q/802.1ad tags and ARP: the start of every level.

use core::mem::offset_of;

use network_types::{arp::ArpHdr, eth::EthHdr, vlan::VlanHdr};

use super::{ip, Frame, Level, MAX_VLAN_TAGS};
use crate::{class, malformed, FAMILY_ARP};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IPV6: u16 = 0x86dd;

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
    // network-types keeps the EtherType as it lies in the frame (big endian).
    let mut ethertype = match f.header::<EthHdr>(off) {
        Some(h) => u16::from_be(h.ether_type),
        None => return Err(malformed::TRUNCATED_ETH),
    };
    let mut off = off + EthHdr::LEN;
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
        let tag = match f.header::<VlanHdr>(off) {
            Some(t) => t,
            None => return Err(malformed::TRUNCATED_VLAN),
        };
        if tags == 0 {
            l.vlan = tag.vid();
        }
        ethertype = u16::from_be(tag.ether_type);
        off += VlanHdr::LEN;
        tags += 1;
    }
    match ethertype {
        ETH_P_ARP => parse_arp(f, off, l),
        ETH_P_IP => ip::parse_ipv4(f, off, max_off, l),
        ETH_P_IPV6 => ip::parse_ipv6(f, off, max_off, l),
        _ => Ok(class::OTHER_L2),
    }
}

#[inline(always)]
fn parse_arp<F: Frame + ?Sized>(f: &F, off: usize, l: &mut Level) -> Result<u8, u8> {
    // The fixed part, htype(2) ptype(2) hlen(1) plen(1) op(2), by hand: any hardware and protocol
    // type counts as ARP when these 8 bytes are there, while network-types' ArpHdr is the 28-byte
    // Ethernet/IPv4 form, read below only for that form.
    let h = match f.bytes::<8>(off) {
        Some(h) => h,
        None => return Err(malformed::TRUNCATED_ARP),
    };
    l.family = FAMILY_ARP;
    let op = u16::from_be_bytes([h[6], h[7]]);
    l.arp_op = if op > 255 { 255 } else { op as u8 };
    let ethernet_ipv4 = h[0] == 0 && h[1] == 1 && h[2] == 0x08 && h[3] == 0x00 && h[4] == 6 && h[5] == 4;
    if ethernet_ipv4 {
        // sha(6) spa(4) tha(6) tpa(4) follow the 8-byte header: one bounds check covers them.
        let a = match f.header::<ArpHdr>(off) {
            Some(a) => a,
            None => return Err(malformed::TRUNCATED_ARP),
        };
        l.src.set_v4(a.spa);
        l.dst.set_v4(a.tpa);
        // The MACs straight from the frame at ArpHdr's offsets, not from the header copy, and
        // stored byte by byte: LLVM turns a 6-byte array assignment into a `memmove` call (the
        // BPF backend's byte loop), or into shifts of a stack address that the verifier refuses.
        let Some(sha) = f.bytes::<6>(off + offset_of!(ArpHdr, sha)) else {
            return Err(malformed::TRUNCATED_ARP);
        };
        let Some(tha) = f.bytes::<6>(off + offset_of!(ArpHdr, tha)) else {
            return Err(malformed::TRUNCATED_ARP);
        };
        let mut i = 0;
        while i < 6 {
            l.arp_sha[i] = sha[i];
            l.arp_tha[i] = tha[i];
            i += 1;
        }
    }
    Ok(class::ARP)
}
