#!/usr/bin/python3
"""Write a deterministic mixed capture for the tshark cross-check (tests/tests/it/tshark.rs).

Usage: mkcapture.py OUT.pcap [--list]

Every class netpath counts is represented: plain IPv4/IPv6 TCP/UDP/ICMP/ICMPv6, ARP, 802.1Q and
QinQ tagged frames, VXLAN on 8472 and 4789 (IPv4 and IPv6 underlay, inner TCP/UDP/ICMP/ARP/VLAN),
IPv6 extension headers, IPv4 options, IPv4/IPv6 fragments, other_ip, other_l2 and malformed frames.
Frames are built with scapy, then (for the truncated ones) cut as bytes, and written with a fixed
timestamp sequence so the file is byte-for-byte reproducible. Frames are 14..1514 bytes (a veth
drops shorter ones, and a packet socket refuses longer untagged ones).

This script knows what each frame is meant to be (`--list` prints the labels), but the expected
counters come from tests/scripts/tshark_truth.py, which sees only tshark's dissection.
"""
import struct
import sys

from scapy.all import (  # noqa: E402
    ARP, ICMP, IP, LLC, STP, TCP, UDP, Dot1AD, Dot1Q, Dot3, Ether, ICMPv6EchoReply,
    ICMPv6EchoRequest, ICMPv6ND_NS, IPOption, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, PadN, Raw, VXLAN,
)

SRC_MAC = "02:5e:10:00:00:01"  # never a veth's own address (those are random, but not this one)
DST_MACS = [
    "02:5e:20:00:00:02",  # some other unicast host
    "ff:ff:ff:ff:ff:ff",  # broadcast
    "01:00:5e:00:00:fb",  # IPv4 multicast
    "33:33:00:00:00:01",  # IPv6 multicast
    "0a:11:22:33:44:55",  # another unicast
]

V4A, V4B, V4C = "192.0.2.10", "198.51.100.20", "203.0.113.30"
V6A, V6B, V6C = "2001:db8:a::10", "2001:db8:b::20", "2001:db8:c::30"
UL4A, UL4B = "172.27.0.11", "172.27.16.10"  # VXLAN underlay (flannel style)
UL6A, UL6B = "2001:db8:ff::11", "2001:db8:ff::12"
POD_A, POD_B = "10.244.0.2", "10.244.1.3"

# A minimal valid LLDPDU: chassis id (MAC), port id (MAC), TTL 120, end.
LLDPDU = bytes.fromhex("0207" "04" "025e10000001" "0407" "03" "025e10000001" "0602" "0078" "0000")

FRAMES = []  # (label, bytes, repeat)
_dst = [0]


def eth(**kw):
    """An Ethernet header with the fixed source MAC and a rotating destination MAC."""
    d = DST_MACS[_dst[0] % len(DST_MACS)]
    _dst[0] += 1
    kw.setdefault("dst", d)
    return Ether(src=SRC_MAC, **kw)


def add(label, pkt, repeat=1, cut=None, pad_to=None):
    b = bytes(pkt)
    if cut is not None:
        b = b[:cut]
    if pad_to is not None and len(b) < pad_to:
        b = b + b"\x00" * (pad_to - len(b))
    # Up to a 2.2 KB jumbo frame: the replay veths run with a 3000-byte MTU.
    assert 14 <= len(b) <= 2200, (label, len(b))
    FRAMES.append((label, b, repeat))


def tcp_seg(i, **kw):
    # Sequence numbers far apart: no receive offload could ever merge two of these.
    return TCP(seq=1000 + 100000 * i, window=8192, **kw)


def vxlan4(port, vni, inner, sport=41000, **ethkw):
    return eth(**ethkw) / IP(src=UL4A, dst=UL4B, flags="DF") / UDP(sport=sport, dport=port) / VXLAN(flags=0x08, vni=vni) / inner


def inner_eth(**kw):
    kw.setdefault("dst", "0a:58:0a:f4:01:03")
    return Ether(src="0a:58:0a:f4:00:02", **kw)


def build():
    # ---- plain IPv4 / IPv6 ----
    for i in range(6):
        add("ipv4 tcp S", eth() / IP(src=V4A, dst=V4B) / tcp_seg(i, sport=40000, dport=443, flags="S"))
    for i in range(8):
        add("ipv4 tcp PA payload", eth() / IP(src=V4A, dst=V4B) / tcp_seg(i, sport=40001, dport=443, flags="PA") / Raw(b"q" * (60 + 40 * i)))
    add("ipv4 tcp SA reverse", eth() / IP(src=V4B, dst=V4A) / tcp_seg(0, sport=443, dport=40000, flags="SA"), 4)
    add("ipv4 tcp FA", eth() / IP(src=V4A, dst=V4B) / tcp_seg(9, sport=40000, dport=443, flags="FA"), 1)
    add("ipv4 tcp R", eth() / IP(src=V4A, dst=V4B) / tcp_seg(9, sport=40002, dport=443, flags="R"), 2)
    add("ipv4 udp", eth() / IP(src=V4A, dst=V4B) / UDP(sport=30000, dport=31000) / Raw(b"u" * 200), 12)
    add("ipv4 udp 1514", eth() / IP(src=V4A, dst=V4C) / UDP(sport=30001, dport=31001) / Raw(b"U" * 1472), 3)
    add("ipv4 udp padded to 60", eth() / IP(src=V4C, dst=V4A) / UDP(sport=30002, dport=31002) / Raw(b"p" * 2), 3, pad_to=60)
    for seq in range(10):
        add("ipv4 icmp echo request", eth() / IP(src=V4A, dst=V4B) / ICMP(type=8, id=0x1234, seq=seq) / Raw(b"e" * 56))
    for seq in range(6):
        add("ipv4 icmp echo reply", eth() / IP(src=V4B, dst=V4A) / ICMP(type=0, id=0x1234, seq=seq) / Raw(b"e" * 56))
    add("ipv4 icmp echo request other id", eth() / IP(src=V4A, dst=V4B) / ICMP(type=8, id=0x4321, seq=1), 3)
    add("ipv4 icmp port unreachable", eth() / IP(src=V4B, dst=V4A) / ICMP(type=3, code=3) / IP(src=V4A, dst=V4B) / UDP(sport=30000, dport=31000), 2)
    add("ipv4 icmp time exceeded", eth() / IP(src=V4C, dst=V4A) / ICMP(type=11, code=0) / IP(src=V4A, dst=V4B) / UDP(sport=1, dport=2), 1)
    add("ipv4 options tcp", eth() / IP(src=V4A, dst=V4C, options=[IPOption(b"\x01\x01\x01\x00")]) / tcp_seg(0, sport=40100, dport=22, flags="S"), 3)
    add("ipv4 options(40) udp", eth() / IP(src=V4C, dst=V4A, options=[IPOption(b"\x07\x27\x04" + b"\x00" * 36), IPOption(b"\x00")]) / UDP(sport=30100, dport=31100) / Raw(b"o" * 8), 2)
    add("ipv6 tcp", eth() / IPv6(src=V6A, dst=V6B) / tcp_seg(0, sport=50000, dport=80, flags="S"), 5)
    add("ipv6 tcp payload", eth() / IPv6(src=V6A, dst=V6B) / tcp_seg(1, sport=50000, dport=80, flags="PA") / Raw(b"h" * 300), 5)
    add("ipv6 tcp reverse", eth() / IPv6(src=V6B, dst=V6A) / tcp_seg(0, sport=80, dport=50000, flags="SA"), 3)
    add("ipv6 udp", eth() / IPv6(src=V6A, dst=V6C) / UDP(sport=50001, dport=50002) / Raw(b"v" * 100), 8)
    for seq in range(6):
        add("ipv6 icmp6 echo request", eth() / IPv6(src=V6A, dst=V6B) / ICMPv6EchoRequest(id=77, seq=seq) / Raw(b"6" * 32))
    for seq in range(4):
        add("ipv6 icmp6 echo reply", eth() / IPv6(src=V6B, dst=V6A) / ICMPv6EchoReply(id=77, seq=seq) / Raw(b"6" * 32))
    add("ipv6 icmp6 neighbor solicitation", eth() / IPv6(src=V6A, dst="ff02::1:ff00:20", hlim=255) / ICMPv6ND_NS(tgt=V6B), 2)

    # ---- ARP ----
    add("arp request", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SRC_MAC, psrc=V4A, pdst="192.0.2.1"), 6)
    add("arp reply", eth() / ARP(op=2, hwsrc=SRC_MAC, psrc="192.0.2.1", hwdst="02:5e:20:00:00:02", pdst=V4A), 4)
    add("arp gratuitous request", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SRC_MAC, psrc="192.0.2.77", pdst="192.0.2.77"), 3)
    add("arp gratuitous reply", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=SRC_MAC, psrc="192.0.2.78", hwdst="ff:ff:ff:ff:ff:ff", pdst="192.0.2.78"), 2)
    add("arp request padded to 60", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SRC_MAC, psrc=V4C, pdst="203.0.113.1"), 2, pad_to=60)
    # htype 6 (IEEE 802), ptype IPv4, hlen 6, plen 4: an ARP netpath counts without addresses.
    arp802 = struct.pack("!HHBBH", 6, 0x0800, 6, 4, 1) + bytes.fromhex("025e10000001") + bytes([192, 0, 2, 10]) + b"\x00" * 6 + bytes([198, 51, 100, 20])
    add("arp htype 6 (not Ethernet/IPv4: no addresses)", eth(dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(arp802), 1)

    # ---- 802.1Q / QinQ ----
    add("vlan100 ipv4 udp", eth() / Dot1Q(vlan=100) / IP(src=V4A, dst=V4B) / UDP(sport=30200, dport=31200) / Raw(b"1" * 64), 6)
    add("vlan100 arp request", eth(dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=100) / ARP(op=1, hwsrc=SRC_MAC, psrc="192.0.2.100", pdst="192.0.2.1"), 3)
    add("vlan200 ipv6 icmp6 echo", eth() / Dot1Q(vlan=200, prio=5) / IPv6(src=V6A, dst=V6B) / ICMPv6EchoRequest(id=200, seq=1), 3)
    add("vlan300 ipv4 tcp", eth() / Dot1Q(vlan=300) / IP(src=V4A, dst=V4B) / tcp_seg(0, sport=40300, dport=8443, flags="S"), 4)
    add("vlan4094 prio7 ipv4 udp", eth() / Dot1Q(vlan=4094, prio=7, id=1) / IP(src=V4B, dst=V4A) / UDP(sport=30201, dport=31201), 2)
    add("vlan0 priority-tagged (tci 0) ipv4 icmp", eth() / Dot1Q(vlan=0, prio=0) / IP(src=V4A, dst=V4C) / ICMP(type=8, id=9, seq=1), 2)
    add("vlan100 ipv4 udp 1514", eth() / Dot1Q(vlan=100) / IP(src=V4A, dst=V4B) / UDP(sport=30202, dport=31202) / Raw(b"L" * 1468), 2)
    add("vlan100 lldp (other_l2)", eth(dst="01:80:c2:00:00:0e") / Dot1Q(vlan=100, type=0x88CC) / Raw(LLDPDU), 1)
    add("qinq 1000/100 ipv4 tcp", eth() / Dot1AD(vlan=1000) / Dot1Q(vlan=100) / IP(src=V4A, dst=V4B) / tcp_seg(0, sport=40400, dport=80, flags="S"), 5)
    add("qinq 1001/101 arp", eth(dst="ff:ff:ff:ff:ff:ff") / Dot1AD(vlan=1001) / Dot1Q(vlan=101) / ARP(op=1, hwsrc=SRC_MAC, psrc="192.0.2.101", pdst="192.0.2.1"), 2)
    add("qinq 1002/102 ipv6 udp", eth() / Dot1AD(vlan=1002) / Dot1Q(vlan=102) / IPv6(src=V6A, dst=V6C) / UDP(sport=50100, dport=50101) / Raw(b"q" * 40), 3)
    add("double 8100 5/6 ipv4 icmp", eth() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src=V4B, dst=V4C) / ICMP(type=8, id=56, seq=1), 3)
    add("qinq 88a8 only (one S-tag) ipv4 udp", eth() / Dot1AD(vlan=2000) / IP(src=V4C, dst=V4B) / UDP(sport=30203, dport=31203), 2)

    # ---- VXLAN ----
    for i in range(6):
        add("vxlan8472 vni1 inner tcp", vxlan4(8472, 1, inner_eth() / IP(src=POD_A, dst=POD_B) / tcp_seg(i, sport=40500, dport=8080, flags="PA") / Raw(b"x" * (100 + i))))
    add("vxlan8472 vni1 inner tcp reverse", vxlan4(8472, 1, inner_eth() / IP(src=POD_B, dst=POD_A) / tcp_seg(0, sport=8080, dport=40500, flags="A"), sport=42000), 3)
    add("vxlan8472 vni1 inner icmp echo", vxlan4(8472, 1, inner_eth() / IP(src=POD_A, dst=POD_B) / ICMP(type=8, id=0x77, seq=1) / Raw(b"i" * 56)), 4)
    add("vxlan4789 vni4242 inner udp", vxlan4(4789, 4242, inner_eth() / IP(src=POD_A, dst=POD_B) / UDP(sport=53000, dport=53001) / Raw(b"w" * 80)), 5)
    add("vxlan4789 vni5000 inner arp", vxlan4(4789, 5000, inner_eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc="0a:58:0a:f4:00:02", psrc=POD_A, pdst=POD_B)), 3)
    add("vxlan8472 vni7 inner vlan55 tcp", vxlan4(8472, 7, inner_eth() / Dot1Q(vlan=55) / IP(src=POD_A, dst=POD_B) / tcp_seg(0, sport=40501, dport=9090, flags="S")), 2)
    add("vxlan8472 vni9 inner udp", vxlan4(8472, 9, inner_eth() / IP(src=POD_B, dst=POD_A) / UDP(sport=53002, dport=53003), sport=43000) , 1)
    add("vlan10 outer vxlan8472 vni9 inner udp (tagged)", eth() / Dot1Q(vlan=10) / IP(src=UL4A, dst=UL4B) / UDP(sport=43001, dport=8472) / VXLAN(flags=0x08, vni=9) / inner_eth() / IP(src=POD_B, dst=POD_A) / UDP(sport=53004, dport=53005), 3)
    add("qinq outer vxlan4789 vni11 inner icmp", eth() / Dot1AD(vlan=3000) / Dot1Q(vlan=30) / IP(src=UL4A, dst=UL4B) / UDP(sport=43002, dport=4789) / VXLAN(flags=0x08, vni=11) / inner_eth() / IP(src=POD_A, dst=POD_B) / ICMP(type=0, id=5, seq=5), 2)
    add("vxlan4789 ipv6 underlay vni6 inner ipv6 tcp", eth() / IPv6(src=UL6A, dst=UL6B) / UDP(sport=44000, dport=4789) / VXLAN(flags=0x08, vni=6) / inner_eth() / IPv6(src="fd00:244::2", dst="fd00:244:1::3") / tcp_seg(0, sport=40600, dport=443, flags="S"), 3)
    add("vxlan8472 vni12 inner lldp (vxlan, no flow)", vxlan4(8472, 12, Ether(src="0a:58:0a:f4:00:02", dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(LLDPDU)), 2)
    add("vxlan4789 vni13 inner icmp6 echo", vxlan4(4789, 13, inner_eth() / IPv6(src="fd00:244::2", dst="fd00:244:1::3") / ICMPv6EchoRequest(id=13, seq=1)), 2)
    add("vxlan4789 vni0 inner udp", vxlan4(4789, 0, inner_eth() / IP(src=POD_A, dst=POD_B) / UDP(sport=53010, dport=53011)), 2)
    add("udp sport 4789 dport 9999 (not vxlan)", eth() / IP(src=UL4A, dst=UL4B) / UDP(sport=4789, dport=9999) / VXLAN(flags=0x08, vni=99) / inner_eth() / IP(src=POD_A, dst=POD_B) / UDP(sport=1, dport=2), 2)

    # ---- IPv6 extension headers ----
    add("ipv6 hbh udp", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / UDP(sport=50200, dport=50201) / Raw(b"h" * 20), 3)
    add("ipv6 routing+dstopts tcp", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrRouting(addresses=[V6C]) / IPv6ExtHdrDestOpt() / tcp_seg(0, sport=50202, dport=22, flags="S"), 2)
    add("ipv6 dstopts icmp6 echo", eth() / IPv6(src=V6B, dst=V6C) / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(id=60, seq=1), 2)
    ah = bytes([17, 2, 0, 0]) + struct.pack("!II", 0x1000, 1) + b"\xaa" * 4  # AH: nh, len=(16/4)-2, spi, seq, icv
    add("ipv6 ah udp", eth() / IPv6(src=V6A, dst=V6C, nh=51) / Raw(ah + bytes(UDP(sport=50203, dport=50204) / Raw(b"a" * 8))), 2)
    add("ipv6 hbh+fragment(first) tcp", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=0x66) / Raw(bytes(tcp_seg(0, sport=50205, dport=80, flags="PA")) + b"f" * 40), 2)
    add("ipv6 6 ext headers udp (limit)", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(sport=50206, dport=50207), 2)
    big_opts = [PadN(optdata=b"\x00" * 253)] * 3 + [PadN(optdata=b"\x00" * 191)]  # 3*255 + 193 = 958 -> 960-byte header
    add("ipv6 960-byte dstopts udp (L4 at 1014 < 2048)", eth() / IPv6(src=V6A, dst=V6C) / IPv6ExtHdrDestOpt(options=big_opts) / UDP(sport=50208, dport=50209) / Raw(b"b" * 8), 1)
    # Seen in public captures: a 1.4 KB destination-options header, L4 past byte 1024 (jumbo-frame
    # headers reach that far; the parse window is 2048).
    opts1400 = [PadN(optdata=b"\x00" * 253)] * 5 + [PadN(optdata=b"\x00" * 117)]  # 5*255 + 119 = 1394 -> 1400-byte header
    add("ipv6 1400-byte dstopts udp (L4 at 1454 < 2048)", eth() / IPv6(src=V6A, dst=V6C) / IPv6ExtHdrDestOpt(options=opts1400) / UDP(sport=50209, dport=50210) / Raw(b"b" * 8), 1)
    add("ipv6 fragment first udp", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=0x77) / Raw(bytes(UDP(sport=50300, dport=50301, len=1208, chksum=0x1234)) + b"F" * 200), 3)
    add("ipv6 fragment nonfirst udp", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrFragment(nh=17, offset=26, m=1, id=0x77) / Raw(b"F" * 208), 3)
    add("ipv6 fragment last tcp", eth() / IPv6(src=V6B, dst=V6A) / IPv6ExtHdrFragment(nh=6, offset=100, m=0, id=0x78) / Raw(b"T" * 64), 2)
    add("ipv6 fragment nonfirst icmp6", eth() / IPv6(src=V6B, dst=V6A) / IPv6ExtHdrFragment(nh=58, offset=50, m=0, id=0x79) / Raw(b"I" * 16), 1)

    # ---- IPv4 fragments ----
    add("ipv4 fragment first udp", eth() / IP(src=V4A, dst=V4B, flags="MF", frag=0, id=0x100, proto=17) / Raw(bytes(UDP(sport=30300, dport=31300, len=2008, chksum=0x4321)) + b"F" * 392), 3)
    add("ipv4 fragment nonfirst udp", eth() / IP(src=V4A, dst=V4B, flags="MF", frag=50, id=0x100, proto=17) / Raw(b"F" * 400), 3)
    add("ipv4 fragment last udp", eth() / IP(src=V4A, dst=V4B, flags=0, frag=100, id=0x100, proto=17) / Raw(b"F" * 100), 2)
    add("ipv4 fragment first udp dport 4789 (not vxlan)", eth() / IP(src=UL4A, dst=UL4B, flags="MF", frag=0, id=0x101, proto=17) / Raw(bytes(UDP(sport=45000, dport=4789, len=1608, chksum=0x1111)) + bytes(VXLAN(flags=0x08, vni=1)) + b"V" * 200), 2)
    add("ipv4 fragment nonfirst icmp", eth() / IP(src=V4B, dst=V4A, flags=0, frag=185, id=0x102, proto=1) / Raw(b"I" * 40), 2)
    add("ipv4 fragment nonfirst tcp", eth() / IP(src=V4B, dst=V4A, flags="MF", frag=3, id=0x103, proto=6) / Raw(b"T" * 24), 1)

    # ---- other_ip ----
    add("ipv4 gre", eth() / IP(src=V4A, dst=V4C, proto=47) / Raw(b"\x00\x00\x08\x00" + bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())), 3)
    add("ipv4 sctp(132)", eth() / IP(src=V4B, dst=V4C, proto=132) / Raw(b"\x00" * 12), 1)
    add("ipv4 proto 58 (icmp6 number in ipv4)", eth() / IP(src=V4C, dst=V4B, proto=58) / Raw(b"\x80\x00\x00\x00\x00\x01\x00\x01"), 1)
    add("ipv6 no next header", eth() / IPv6(src=V6A, dst=V6C, nh=59), 3)
    add("ipv6 esp(50)", eth() / IPv6(src=V6C, dst=V6A, nh=50) / Raw(struct.pack("!II", 0x2000, 1) + b"\x00" * 16), 1)
    add("ipv6 proto 1 (icmp number in ipv6)", eth() / IPv6(src=V6C, dst=V6B, nh=1) / Raw(bytes(ICMP(type=8, id=1))), 1)
    add("ipv6 hbh then no next header", eth() / IPv6(src=V6B, dst=V6C) / IPv6ExtHdrHopByHop(nh=59), 1)

    # ---- other_l2 ----
    add("lldp", eth(dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(LLDPDU), 3)
    add("802.3 llc stp", Dot3(src=SRC_MAC, dst="01:80:c2:00:00:00") / LLC() / STP(), 3)
    add("ethertype 0x9100 (old QinQ, not a tag for netpath)", eth(type=0x9100) / Dot1Q(vlan=7) / IP(src=V4A, dst=V4B) / UDP(sport=1, dport=2), 1)
    add("rarp 0x8035", eth(dst="ff:ff:ff:ff:ff:ff", type=0x8035) / ARP(op=3, hwsrc=SRC_MAC, hwdst=SRC_MAC), 1)
    add("14-byte frame, local ethertype 0x88b5", eth(type=0x88B5), 1)
    stp = bytes(LLC() / STP())
    add("vlan100 802.3 length payload", eth() / Dot1Q(vlan=100, type=len(stp)) / Raw(stp), 1)

    # ---- malformed ----
    add("14-byte ipv4 frame (no header)", eth(type=0x0800), 1)
    add("ipv4 truncated tcp header (10 of 20)", eth() / IP(src=V4A, dst=V4B, proto=6) / Raw(bytes(tcp_seg(0, sport=40700, dport=80, flags="S"))[:10]), 2)
    add("ipv4 truncated udp header (4 of 8)", eth() / IP(src=V4A, dst=V4B, proto=17) / Raw(b"\x75\x30\x79\x18"), 1)
    add("ipv4 truncated icmp (4 of 8)", eth() / IP(src=V4A, dst=V4B, proto=1) / Raw(b"\x08\x00\x00\x00"), 1)
    add("ipv4 ihl 4", eth() / IP(src=V4A, dst=V4B, ihl=4) / UDP(sport=30400, dport=31400), 2)
    add("ipv4 total length beyond frame", eth() / IP(src=V4A, dst=V4B, len=1000) / UDP(sport=30401, dport=31401) / Raw(b"t" * 50), 2)
    add("ipv4 total length < header length", eth() / IP(src=V4A, dst=V4B, len=10) / UDP(sport=30402, dport=31402), 1)
    add("ipv4 version 6 in 0x0800", eth(type=0x0800) / IP(src=V4A, dst=V4B, version=6) / UDP(sport=30403, dport=31403), 1)
    add("ipv4 options cut (ihl 15, 30 bytes)", eth() / IP(src=V4A, dst=V4B, options=[IPOption(b"\x01" * 40)]) / UDP(sport=30404, dport=31404), 1, cut=14 + 30)
    add("ipv4 tcp data offset 4", eth() / IP(src=V4A, dst=V4B) / TCP(sport=40701, dport=80, dataofs=4), 1)
    add("ipv4 tcp data offset 15, 20 bytes", eth() / IP(src=V4A, dst=V4B) / TCP(sport=40702, dport=80, dataofs=15), 1)
    add("ipv6 payload length beyond frame", eth() / IPv6(src=V6A, dst=V6B, plen=600) / UDP(sport=50400, dport=50401) / Raw(b"t" * 40), 2)
    add("ipv6 truncated fixed header (20 of 40)", eth() / IPv6(src=V6A, dst=V6B) / UDP(), 1, cut=14 + 20)
    add("ipv6 tcp data offset 15, 20 bytes", eth() / IPv6(src=V6A, dst=V6B) / TCP(sport=50402, dport=80, dataofs=15), 1)
    add("ipv6 truncated icmp6 (4 of 8)", eth() / IPv6(src=V6A, dst=V6B, nh=58) / Raw(b"\x80\x00\x00\x00"), 1)
    add("ipv6 7 ext headers", eth() / IPv6(src=V6A, dst=V6B) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(sport=50403, dport=50404), 2)
    big_opts2 = [PadN(optdata=b"\x00" * 253)] * 3 + [PadN(optdata=b"\x00" * 231)]  # 1000-byte header
    hbh1024 = [PadN(optdata=b"\x00" * 253)] * 4 + [PadN(optdata=b"")]  # 4*255 + 2 = 1022 -> 1024-byte header
    add("ipv6 1024-byte hbh + 1000-byte dstopts udp (L4 at 2078 > 2048)", eth() / IPv6(src=V6A, dst=V6C) / IPv6ExtHdrHopByHop(options=hbh1024) / IPv6ExtHdrDestOpt(options=big_opts2) / UDP(sport=50405, dport=50406) / Raw(b"b" * 8), 1)
    # The parse limit is on wire offsets: with an 802.1Q tag these extension headers end at byte
    # 2050 of the frame (past 2048), 4 bytes later than the same packet untagged would.
    opts968 = [PadN(optdata=b"\x00" * 253)] * 3 + [PadN(optdata=b"\x00" * 199)]
    add("vlan100 ipv6 1024-byte hbh + 968-byte dstopts udp (ext headers end at wire byte 2050)", eth() / Dot1Q(vlan=100) / IPv6(src=V6A, dst=V6C) / IPv6ExtHdrHopByHop(options=hbh1024) / IPv6ExtHdrDestOpt(options=opts968) / UDP(sport=50407, dport=50408) / Raw(b"b" * 8), 1)
    add("ipv6 ext header cut", eth() / IPv6(src=V6A, dst=V6B, nh=60, plen=4) / Raw(b"\x11\x01\x00\x00"), 1)
    add("arp truncated (20 of 28)", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SRC_MAC, psrc=V4A, pdst=V4B), 1, cut=14 + 20)
    add("arp truncated (6 of 8)", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1), 1, cut=14 + 6)
    add("three vlan tags 88a8/8100/8100", eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=V4A, dst=V4B) / UDP(sport=1, dport=2), 2)
    add("three 8100 tags", eth() / Dot1Q(vlan=11) / Dot1Q(vlan=12) / Dot1Q(vlan=13) / IP(src=V4A, dst=V4B) / UDP(sport=1, dport=2), 1)
    add("vlan100 ipv4 truncated header", eth() / Dot1Q(vlan=100) / IP(src=V4A, dst=V4B) / UDP(), 1, cut=14 + 4 + 12)
    add("vxlan header truncated (4 of 8)", eth() / IP(src=UL4A, dst=UL4B) / UDP(sport=41000, dport=8472) / Raw(b"\x08\x00\x00\x00"), 1)
    add("vxlan inner ethernet truncated", vxlan4(4789, 20, Raw(b"\x0a\x58\x0a\xf4\x01\x03\x0a\x58\x0a\xf4")), 1)
    add("vxlan inner ipv4 ihl 4", vxlan4(8472, 21, inner_eth() / IP(src=POD_A, dst=POD_B, ihl=4) / UDP(sport=1, dport=2)), 1)
    add("vxlan inner tcp truncated", vxlan4(8472, 22, inner_eth() / IP(src=POD_A, dst=POD_B, proto=6) / Raw(b"\x9c\x40\x00\x50\x00\x00")), 1)
    add("vxlan inner three vlan tags", vxlan4(4789, 23, inner_eth() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src=POD_A, dst=POD_B) / UDP(sport=1, dport=2)), 1)
    # A real wire pads short frames to 60 bytes. These IPv4 packets end (total length) inside their
    # L4 header; the padding after them is not part of the packet, so the header is still cut.
    # 14 of 20 TCP header bytes (through the flags: data offset 5): the padding would complete it.
    add("ipv4 truncated tcp header (14 of 20), padded to 60", eth() / IP(src=V4C, dst=V4B, proto=6) / Raw(bytes(tcp_seg(0, sport=40800, dport=80, flags="S"))[:14]), 1, pad_to=60)
    add("ipv4 truncated udp header, padded to 60", eth() / IP(src=V4C, dst=V4B, proto=17) / Raw(b"\x75\x31\x79\x19"), 1, pad_to=60)


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, b in enumerate(frames):
            sec, usec = 1_700_000_000 + i // 1000, (i % 1000) * 1000
            f.write(struct.pack("<IIII", sec, usec, len(b), len(b)))
            f.write(b)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build()
    # Interleave: round r emits every entry whose repeat count exceeds r.
    out, labels = [], []
    rounds = max(r for _, _, r in FRAMES)
    for r in range(rounds):
        for label, b, repeat in FRAMES:
            if r < repeat:
                out.append(b)
                labels.append(label)
    write_pcap(sys.argv[1], out)
    if "--list" in sys.argv[2:]:
        for i, (label, b) in enumerate(zip(labels, out), 1):
            print(f"{i:4} {len(b):5} {label}")
    print(f"wrote {len(out)} frames ({sum(map(len, out))} bytes) to {sys.argv[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
