//! Frame builders for tests and benchmarks (feature `craft`): the same bytes feed the host parser
//! tests, the BPF_PROG_TEST_RUN tests and `cargo xtask bench`.

//!
//! Headers are network-types' layouts filled through their setters, so the builders and the parser
//! share one definition of every field's place and byte order.

use std::{string::String, vec, vec::Vec};

use network_types::{
    arp::ArpHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vxlan::VxlanHdr,
};

use crate::parse::{
    Header, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

/// Append a header's bytes as laid out on the wire.
fn put<H: Header>(out: &mut Vec<u8>, h: &H) {
    // SAFETY: a Header is plain bytes of its wire length (no padding, every byte initialised).
    let b = unsafe { core::slice::from_raw_parts(h as *const H as *const u8, size_of::<H>()) };
    out.extend_from_slice(b);
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const IP_A: [u8; 4] = [10, 244, 0, 2];
pub const IP_B: [u8; 4] = [10, 244, 1, 3];
pub const IP_NODE1: [u8; 4] = [172, 27, 0, 11];
pub const IP_NODE2: [u8; 4] = [172, 27, 16, 10];
pub const IP6_A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
pub const IP6_B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    vlan_eth(&[], ethertype, payload)
}

/// An Ethernet frame with VLAN tags `(tpid, vid)`, outermost first.
pub fn vlan_eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_full(src: [u8; 4], dst: [u8; 4], proto: u8, opts: &[u8], frag: u16, payload: &[u8]) -> Vec<u8> {
    assert!(opts.len().is_multiple_of(4) && opts.len() <= 40);
    let hlen = Ipv4Hdr::LEN + opts.len();
    let mut ip = Ipv4Hdr {
        vihl: 0,
        tos: 0,
        tot_len: [0; 2],
        id: [0; 2],
        frags: [0; 2],
        ttl: 64,
        proto,
        check: [0; 2],
        src_addr: src,
        dst_addr: dst,
    };
    ip.set_vihl(4, hlen as u8);
    ip.set_tot_len((hlen + payload.len()) as u16);
    ip.set_id(0x1234);
    ip.set_frags((frag >> 13) as u8, frag & 0x1fff);
    let mut h = Vec::with_capacity(hlen + payload.len());
    put(&mut h, &ip);
    h.extend_from_slice(opts);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(src, dst, proto, &[], 0, payload)
}

pub fn ipv4_opts(src: [u8; 4], dst: [u8; 4], proto: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    ipv4_full(src, dst, proto, opts, 0, payload)
}

/// A fragment; `offset` in 8-byte units.
pub fn ipv4_frag(src: [u8; 4], dst: [u8; 4], proto: u8, more: bool, offset: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_full(
        src,
        dst,
        proto,
        &[],
        (if more { 0x2000 } else { 0 }) | (offset & 0x1fff),
        payload,
    )
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = Ipv6Hdr {
        vcf: [0; 4],
        payload_len: [0; 2],
        next_hdr: next,
        hop_limit: 64,
        src_addr: src,
        dst_addr: dst,
    };
    ip.set_vcf(6, 0, 0, 0);
    ip.set_payload_len(payload.len() as u16);
    let mut h = Vec::with_capacity(Ipv6Hdr::LEN + payload.len());
    put(&mut h, &ip);
    h.extend_from_slice(payload);
    h
}

/// An IPv6 extension header: its own protocol number, and its bytes (which name the next one).
pub struct Ext {
    pub kind: u8,
    pub bytes: Vec<u8>,
}

/// Hop-by-hop, routing or destination options of `(units + 1) * 8` bytes (PadN-filled).
pub fn ext_opts(kind: u8, next: u8, units: u8) -> Ext {
    let len = (units as usize + 1) * 8;
    let mut bytes = vec![next, units];
    if kind == 43 {
        // Routing: type 4 (segment routing), segments left 0; the rest is data.
        bytes.extend_from_slice(&[4, 0]);
        bytes.resize(len, 0);
    } else {
        bytes.extend_from_slice(&[1, (len - 4) as u8]);
        bytes.resize(len, 0);
    }
    Ext { kind, bytes }
}

/// A fragment header; `offset` in 8-byte units.
pub fn ext_frag(next: u8, offset: u16, more: bool) -> Ext {
    let v = (offset << 3) | u16::from(more);
    let mut bytes = vec![next, 0];
    bytes.extend_from_slice(&v.to_be_bytes());
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    Ext { kind: 44, bytes }
}

pub fn ipv6_ext(src: [u8; 16], dst: [u8; 16], exts: &[Ext], l4: &[u8]) -> Vec<u8> {
    let first = exts.first().map(|e| e.kind).unwrap_or(IPPROTO_UDP);
    let mut payload = Vec::new();
    for e in exts {
        payload.extend_from_slice(&e.bytes);
    }
    payload.extend_from_slice(l4);
    ipv6(src, dst, first, &payload)
}

pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    // SAFETY: TcpHdr is integers and byte arrays; all-zero is a valid value.
    let mut t: TcpHdr = unsafe { core::mem::zeroed() };
    t.source = sport.to_be_bytes();
    t.dest = dport.to_be_bytes();
    t.seq = 1u32.to_be_bytes();
    t.set_doff((TcpHdr::LEN / 4) as u16);
    for (bit, set) in [
        (TCP_FIN, TcpHdr::set_fin as fn(&mut TcpHdr, u16)),
        (TCP_SYN, TcpHdr::set_syn),
        (TCP_RST, TcpHdr::set_rst),
        (TCP_PSH, TcpHdr::set_psh),
        (TCP_ACK, TcpHdr::set_ack),
        (0x20, TcpHdr::set_urg),
        (0x40, TcpHdr::set_ece),
        (0x80, TcpHdr::set_cwr),
    ] {
        set(&mut t, u16::from(flags & bit != 0));
    }
    t.window = [0xff, 0xff];
    let mut h = Vec::with_capacity(TcpHdr::LEN + payload.len());
    put(&mut h, &t);
    h.extend_from_slice(payload);
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = UdpHdr {
        src: [0; 2],
        dst: [0; 2],
        len: [0; 2],
        check: [0; 2],
    };
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len((UdpHdr::LEN + payload.len()) as u16);
    let mut h = Vec::with_capacity(UdpHdr::LEN + payload.len());
    put(&mut h, &u);
    h.extend_from_slice(payload);
    h
}

pub fn icmp_echo(kind: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(b"netpath-ping-payload");
    h
}

pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = ArpHdr::new();
    a.set_htype(1);
    a.set_ptype(ETH_P_IP);
    a.set_hlen(6);
    a.set_plen(4);
    a.set_oper(op);
    a.set_sha(sha);
    a.set_spa(spa);
    a.set_tha(tha);
    a.set_tpa(tpa);
    let mut h = Vec::with_capacity(ArpHdr::LEN);
    put(&mut h, &a);
    h
}

/// An IPv4/UDP/VXLAN frame carrying `inner` (a whole Ethernet frame).
pub fn vxlan4(outer_src: [u8; 4], outer_dst: [u8; 4], dport: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(VxlanHdr::LEN + inner.len());
    put(&mut v, &VxlanHdr::new(vni));
    v.extend_from_slice(inner);
    eth(
        ETH_P_IP,
        &ipv4(outer_src, outer_dst, IPPROTO_UDP, &udp(33000, dport, &v)),
    )
}

/// Named frames of every shape the parser knows, with the offset where their last header ends:
/// every shorter prefix must be malformed.
pub fn sample_frames() -> Vec<(String, Vec<u8>, usize)> {
    let mut out: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut add = |name: &str, f: Vec<u8>, end: usize| out.push((String::from(name), f, end));
    add("eth_other_l2", eth(0x88cc, &[0u8; 46]), 14);
    add("arp", eth(ETH_P_ARP, &arp(1, MAC_A, IP_A, [0; 6], IP_B)), 14 + 28);
    add(
        "vlan_udp4",
        vlan_eth(
            &[(ETH_P_8021Q, 10)],
            ETH_P_IP,
            &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1, 2, b"x")),
        ),
        18 + 28,
    );
    add(
        "qinq_tcp4",
        vlan_eth(
            &[(0x88a8, 10), (ETH_P_8021Q, 20)],
            ETH_P_IP,
            &ipv4(IP_A, IP_B, IPPROTO_TCP, &tcp(1, 2, TCP_SYN, &[])),
        ),
        22 + 40,
    );
    add(
        "udp4",
        eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_UDP, &udp(1000, 53, b"q"))),
        14 + 28,
    );
    add(
        "tcp4_options",
        eth(
            ETH_P_IP,
            &ipv4_opts(IP_A, IP_B, IPPROTO_TCP, &[1, 1, 1, 0], &tcp(1, 2, TCP_SYN, &[])),
        ),
        14 + 24 + 20,
    );
    add(
        "icmp4",
        eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_ICMP, &icmp_echo(8, 1, 1))),
        14 + 20 + 8,
    );
    add(
        "udp6",
        eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_UDP, &udp(1, 2, b"x"))),
        14 + 48,
    );
    add(
        "tcp6",
        eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_TCP, &tcp(1, 2, TCP_SYN, &[]))),
        14 + 60,
    );
    add(
        "icmp6",
        eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_ICMPV6, &icmp_echo(128, 1, 1))),
        14 + 48,
    );
    for (name, kind) in [("ipv6_hopopts", 0u8), ("ipv6_routing", 43), ("ipv6_dstopts", 60)] {
        add(
            name,
            eth(
                ETH_P_IPV6,
                &ipv6_ext(IP6_A, IP6_B, &[ext_opts(kind, IPPROTO_UDP, 1)], &udp(1, 2, b"x")),
            ),
            14 + 40 + 16 + 8,
        );
    }
    add(
        "ipv6_frag_first",
        eth(
            ETH_P_IPV6,
            &ipv6_ext(IP6_A, IP6_B, &[ext_frag(IPPROTO_UDP, 0, true)], &udp(1, 2, &[0; 8])),
        ),
        14 + 40 + 8 + 8,
    );
    let inner = eth(ETH_P_IP, &ipv4(IP_A, IP_B, IPPROTO_TCP, &tcp(1, 2, TCP_ACK, &[])));
    add(
        "vxlan_tcp4",
        vxlan4(IP_NODE1, IP_NODE2, 8472, 1, &inner),
        14 + 20 + 8 + 8 + 14 + 40,
    );
    let inner = vlan_eth(&[(ETH_P_8021Q, 7)], ETH_P_ARP, &arp(2, MAC_A, IP_A, MAC_B, IP_B));
    add(
        "vxlan_vlan_arp",
        vxlan4(IP_NODE1, IP_NODE2, 4789, 2, &inner),
        14 + 20 + 8 + 8 + 18 + 28,
    );
    let inner = eth(ETH_P_IPV6, &ipv6(IP6_A, IP6_B, IPPROTO_ICMPV6, &icmp_echo(129, 3, 3)));
    add(
        "vxlan_icmp6",
        vxlan4(IP_NODE1, IP_NODE2, 8472, 3, &inner),
        14 + 20 + 8 + 8 + 14 + 48,
    );
    out
}
