use std::{vec, vec::Vec};

use super::{
    ip::{IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ROUTING},
    *,
};
use crate::{craft::*, FAMILY_ARP, FAMILY_IPV4, FAMILY_IPV6};

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

/// Headers may start up to byte 2048 (jumbo frames carry them): a 1.4 KB destination-options
/// header, seen in public captures, is parsed through to its UDP header; one that runs past the
/// window is malformed (`beyond_parse_limit`).
#[test]
fn parse_window_reaches_byte_2048() {
    let ext = ext_opts(IPPROTO_DSTOPTS, IPPROTO_UDP, 174);
    assert_eq!(ext.bytes.len(), 1400);
    let frame = eth(ETH_P_IPV6, &ipv6_ext(IP6_A, IP6_B, &[ext], &udp(1, 2, &[0; 8])));
    let parsed = p(&frame);
    assert_eq!(parsed.class, class::UDP, "{parsed:?}");
    assert_eq!((parsed.outer.sport, parsed.outer.dport), (1, 2));
    let hbh = ext_opts(IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 255);
    let ext = ext_opts(IPPROTO_DSTOPTS, IPPROTO_UDP, 10);
    let frame = eth(ETH_P_IPV6, &ipv6_ext(IP6_A, IP6_B, &[hbh, ext], &udp(1, 2, &[0; 8])));
    assert_eq!(p(&frame).reason, malformed::BEYOND_PARSE_LIMIT);
}

/// Found by the tshark comparison: with the outer tag in skb metadata (TC), the parse limit
/// still counts the tag's 4 bytes, as XDP sees them in the frame.
#[test]
fn parse_limit_counts_a_stripped_vlan_tag() {
    // Extension headers ending at wire byte 2050 with the tag: 18 + 40 + 1024 + 968.
    let hbh = ext_opts(IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 127);
    let ext = ext_opts(IPPROTO_DSTOPTS, IPPROTO_UDP, 120);
    let ip6 = ipv6_ext(IP6_A, IP6_B, &[hbh, ext], &udp(1, 2, &[0; 8]));
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
    // Time exceeded quoting an echo request: the error keeps the echo id (as a flow's `sport`).
    let quoted = ipv4(IP_A, IP_B, IPPROTO_ICMP, &icmp_echo(8, 0x1234, 7));
    let mut err = vec![11, 0, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&quoted[..28]);
    let q = p(&eth(ETH_P_IP, &ipv4(IP_B, IP_A, IPPROTO_ICMP, &err))).flow().err;
    assert_eq!((q.proto, q.sport, q.dport), (IPPROTO_ICMP, 0x1234, 0));
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
