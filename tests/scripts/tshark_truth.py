#!/usr/bin/python3
"""Expected netpath counters for a capture, from tshark's dissection only.

Usage: tshark_truth.py CAPTURE.pcap > truth.json

Runs `tshark -T json -x` (every field with its frame offset and length) and applies netpath's
documented counting rules (README "Counting rules", netpath-common/src/parse.rs) to tshark's
fields: which ethertype, how many VLAN tags, ip.hdr_len / ip.len / ipv6.plen against the frame,
the extension header chain as tshark walked it, where each header starts, the ports, ICMP type and
identifier, the VXLAN VNI. It never looks at the frame bytes itself and shares no code with netpath.

Where tshark's own verdict differs from netpath's documented rules (tshark dissects 0x9100 as a
VLAN tag, decodes a first IPv4 fragment to port 4789 as VXLAN, does not flag IHL < 5 or an IPv6
payload length past the frame as malformed, flags a bad LLDP TLV that netpath never parses...),
the rule wins; such frames are listed under "tshark_disagreements" with the reason.

Bounds: a header must end inside the packet that carries it: inside the frame for Ethernet, VLAN
tags, ARP and the IP header itself; inside the IPv4 total length / IPv6 payload length for the
extension headers, the L4 header and a VXLAN header and its inner frame (bytes after the IP packet
are Ethernet padding, not part of it). Header offsets are wire offsets (VLAN tags included), and
a header must start by byte 2048 (MAX_PARSE_OFFSET), an IPv6 extension header end by it.

Prints one JSON document: frames, bytes, per-class packets/bytes, the flow table (keys in the form
`netpath flows -o json` prints them) and a per-frame verdict.
"""
import ipaddress
import json
import subprocess
import sys

CLASSES = ["arp", "icmp", "icmp6", "tcp", "udp", "vxlan", "other_ip", "other_l2", "malformed"]
VXLAN_PORTS = (8472, 4789)
VLAN_TPIDS = (0x8100, 0x88A8)
MAX_VLAN_TAGS = 2
MAX_IPV6_EXT = 6
MAX_PARSE_OFFSET = 2048
# IPv6 extension headers netpath follows, and the tshark subtree for each.
IPV6_EXT = {0: "ipv6.hopopts", 43: "ipv6.routing", 44: "ipv6.fraghdr", 51: "ah", 60: "ipv6.dstopts"}


class Node:
    __slots__ = ("name", "value", "pos", "size", "children")

    def __init__(self, name, value, pos, size, children):
        self.name, self.value, self.pos, self.size, self.children = name, value, pos, size, children

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def get(self, name, default=KeyError):
        """The first field `name` in this subtree, as tshark printed it."""
        for n in self.walk():
            if n.name == name and n.value is not None:
                return n.value
        if default is KeyError:
            raise Missing(f"{self.name}@{self.pos}: no field {name}")
        return default

    def int(self, name):
        return int(self.get(name), 0)

    def has(self, name):
        return any(n.name == name and n.value is not None for n in self.walk())


class Missing(Exception):
    pass


def is_raw(key, value):
    # `-x` adds KEY_raw = [hex, offset, length, bitmask, type] next to every field; a few fields are
    # themselves called *_raw (tcp.seq_raw) and have plain string values.
    return key.endswith("_raw") and isinstance(value, list) and len(value) == 5 and isinstance(value[1], int)


def build(pairs):
    """tshark's JSON object (as ordered (key, value) pairs) -> list of Nodes, in order."""
    nodes, raws = [], {}
    for key, value in pairs:
        if is_raw(key, value):
            raws[key[:-4]] = value
            continue
        if key.endswith("_tree") and isinstance(value, list):
            base = key[:-5]
            for n in reversed(nodes):
                if n.name == base:
                    n.children.extend(build(value))
                    break
            continue
        raw = raws.pop(key, None)
        pos, size = (raw[1], raw[2]) if raw else (None, None)
        if isinstance(value, list) and all(isinstance(p, tuple) for p in value):
            nodes.append(Node(key, None, pos, size, build(value)))
        else:
            nodes.append(Node(key, value, pos, size, []))
    return nodes


def run_tshark(pcap):
    cmd = [
        "tshark", "-r", pcap, "-T", "json", "-x",
        "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
        "-o", "tcp.analyze_sequence_numbers:FALSE",
        "-d", "udp.port==8472,vxlan", "-d", "udp.port==4789,vxlan",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout, object_pairs_hook=lambda p: p)


class Malformed(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Level:
    """What one Ethernet level (the frame, or the frame inside VXLAN) holds for netpath."""

    def __init__(self):
        self.vlan = 0
        self.family = None  # "ipv4" | "ipv6" | "arp" | None
        self.src = self.dst = None
        self.proto = 0
        self.sport = self.dport = 0
        self.icmp_type = self.icmp_code = 0
        self.arp_op = 0
        self.tcp_flags = 0
        self.fragment = False
        self.udp_payload = None  # offset of the UDP payload
        self.end = None  # end of the IP packet


class Frame:
    def __init__(self, pkt):
        layers = dict(pkt)["_source"]
        self.nodes = build(dict(layers)["layers"])
        self.root = Node("frame-root", None, 0, None, self.nodes)
        frame = next(n for n in self.nodes if n.name == "frame")
        self.number = frame.int("frame.number")
        self.len = frame.int("frame.len")
        if frame.int("frame.cap_len") != self.len:
            sys.exit(f"frame {self.number}: cut capture (cap_len != len); write whole frames")
        self.protocols = frame.get("frame.protocols")
        self.tshark_malformed = any(n.name == "_ws.malformed" for n in self.root.walk())

    def at(self, pos, *names):
        """The protocol or header node tshark dissected at offset `pos` (one of `names`)."""
        for n in self.root.walk():
            if n.pos == pos and n.name in names:
                return n
        raise Missing(f"frame {self.number}: tshark shows no {'/'.join(names)} at offset {pos} ({self.protocols})")


def parse_level(fr, off, end, lvl):
    """Walk Ethernet/VLAN/ARP/IP/L4 from `off` in a frame that ends at `end`; return the class."""
    if off > MAX_PARSE_OFFSET:
        raise Malformed("beyond_parse_limit")
    if end - off < 14:
        raise Malformed("truncated_ethernet")
    e = fr.at(off, "eth")
    if not e.has("eth.type"):
        e.get("eth.len")  # an 802.3 length field: not ARP, IP or a tag
        return "other_l2"
    ethertype = e.int("eth.type")
    off += 14
    tags = 0
    while ethertype in VLAN_TPIDS:
        if tags >= MAX_VLAN_TAGS:
            raise Malformed("too_many_vlan_tags")
        if end - off < 4:
            raise Malformed("truncated_vlan")
        t = fr.at(off, "vlan", "ieee8021ad")
        vid = t.int("vlan.id") if t.name == "vlan" else t.int("ieee8021ad.id")
        if tags == 0:
            lvl.vlan = vid
        tags += 1
        off += 4
        etype = t.get("vlan.etype", None) or t.get("ieee8021ah.etype", None)
        if etype is None:
            t.get("vlan.len")  # 802.3 length after the tag
            return "other_l2"
        ethertype = int(etype, 0)
    if ethertype == 0x0806:
        return parse_arp(fr, off, end, lvl)
    if ethertype == 0x0800:
        return parse_ipv4(fr, off, end, lvl)
    if ethertype == 0x86DD:
        return parse_ipv6(fr, off, end, lvl)
    return "other_l2"


def parse_arp(fr, off, end, lvl):
    if end - off < 8:
        raise Malformed("truncated_arp")
    a = fr.at(off, "arp")
    lvl.family = "arp"
    lvl.arp_op = min(a.int("arp.opcode"), 255)
    eth_ipv4 = (a.int("arp.hw.type"), a.int("arp.proto.type"), a.int("arp.hw.size"), a.int("arp.proto.size")) == (1, 0x0800, 6, 4)
    if eth_ipv4:
        if end - off < 28:
            raise Malformed("truncated_arp")
        lvl.src, lvl.dst = a.get("arp.src.proto_ipv4"), a.get("arp.dst.proto_ipv4")
    else:
        lvl.src = lvl.dst = "0.0.0.0"
    return "arp"


def class_of_proto(proto, family):
    return {6: "tcp", 17: "udp"}.get(proto) or (
        "icmp" if (proto, family) == (1, "ipv4") else "icmp6" if (proto, family) == (58, "ipv6") else "other_ip"
    )


def parse_ipv4(fr, off, end, lvl):
    if end - off < 20:
        raise Malformed("truncated_ipv4")
    ip = fr.at(off, "ip")  # tshark hands a version-6 header on 0x0800 to ipv6, but keeps ip.version here
    if ip.int("ip.version") != 4:
        raise Malformed("bad_ipv4_header")
    hlen = ip.int("ip.hdr_len")
    if hlen < 20:
        raise Malformed("bad_ipv4_header")
    total = ip.int("ip.len")
    if total < hlen:
        raise Malformed("bad_ipv4_header")
    if off + hlen > end or off + total > end:
        raise Malformed("truncated_ipv4")
    lvl.family = "ipv4"
    lvl.src, lvl.dst = ip.get("ip.src"), ip.get("ip.dst")
    lvl.proto = ip.int("ip.proto")
    mf, frag_off = ip.int("ip.flags.mf"), ip.int("ip.frag_offset")
    lvl.fragment = mf != 0 or frag_off != 0
    lvl.end = off + total
    if frag_off != 0:
        return class_of_proto(lvl.proto, "ipv4")
    return parse_l4(fr, off + hlen, lvl.end, lvl.proto, "ipv4", lvl)


def parse_ipv6(fr, off, end, lvl):
    if end - off < 8:
        raise Malformed("truncated_ipv6")
    ip6 = fr.at(off, "ipv6")
    if ip6.int("ipv6.version") != 6:
        raise Malformed("bad_ipv6_header")
    if end - off < 40:
        raise Malformed("truncated_ipv6")
    plen = ip6.int("ipv6.plen")
    if off + 40 + plen > end:
        raise Malformed("truncated_ipv6")
    lvl.family = "ipv6"
    lvl.src, lvl.dst = ip6.get("ipv6.src"), ip6.get("ipv6.dst")
    lvl.end = off + 40 + plen
    nh = ip6.int("ipv6.nxt")
    cur = off + 40
    nonfirst = False
    for _ in range(MAX_IPV6_EXT):
        if nh not in IPV6_EXT:
            break
        if lvl.end - cur < 4:
            raise Malformed("truncated_ipv6")
        x = fr.at(cur, IPV6_EXT[nh])
        if nh == 44:
            lvl.fragment = True
            nonfirst = x.int("ipv6.fraghdr.offset") != 0
            length, nxt = 8, x.int("ipv6.fraghdr.nxt")
        elif nh == 51:
            length, nxt = (x.int("ah.length") + 2) * 4, x.int("ah.next_header")
        else:
            length, nxt = x.int(IPV6_EXT[nh] + ".len_oct"), x.int(IPV6_EXT[nh] + ".nxt")
        if cur + length > MAX_PARSE_OFFSET:
            raise Malformed("beyond_parse_limit")
        if cur + length > lvl.end:
            raise Malformed("truncated_ipv6")
        cur += length
        nh = nxt
        if nonfirst:
            break
    lvl.proto = nh
    if nonfirst:
        return class_of_proto(nh, "ipv6")
    if nh in IPV6_EXT:
        raise Malformed("too_many_ipv6_ext_headers")
    return parse_l4(fr, cur, lvl.end, nh, "ipv6", lvl)


def parse_l4(fr, off, end, proto, family, lvl):
    if off > MAX_PARSE_OFFSET:
        raise Malformed("beyond_parse_limit")
    cls = class_of_proto(proto, family)
    avail = end - off
    if cls == "tcp":
        # netpath needs a data offset of at least 20 bytes and that many bytes present, so anything
        # shorter than 20 is malformed whatever its data offset says (tshark stops before it too).
        if avail < 20:
            raise Malformed("truncated_l4")
        t = fr.at(off, "tcp")
        doff = t.int("tcp.hdr_len")
        if doff < 20:
            raise Malformed("bad_tcp_header")
        if doff > avail:
            raise Malformed("truncated_l4")
        lvl.sport, lvl.dport = t.int("tcp.srcport"), t.int("tcp.dstport")
        lvl.tcp_flags = t.int("tcp.flags") & 0xFF
    elif cls == "udp":
        if avail < 8:
            raise Malformed("truncated_l4")
        u = fr.at(off, "udp")
        lvl.sport, lvl.dport = u.int("udp.srcport"), u.int("udp.dstport")
        lvl.udp_payload = off + 8
    elif cls in ("icmp", "icmp6"):
        if avail < 8:
            raise Malformed("truncated_l4")
        if cls == "icmp":
            i = fr.at(off, "icmp")
            lvl.icmp_type, lvl.icmp_code = i.int("icmp.type"), i.int("icmp.code")
            if lvl.icmp_type in (0, 8):
                lvl.sport = i.int("icmp.ident")
        else:
            i = fr.at(off, "icmpv6")
            lvl.icmp_type, lvl.icmp_code = i.int("icmpv6.type"), i.int("icmpv6.code")
            if lvl.icmp_type in (128, 129):
                lvl.sport = i.int("icmpv6.echo.identifier")
    return cls


def classify(fr, levels):
    """-> (class, flow key dict or None, tcp flags); `levels` collects the levels parsed."""
    outer = Level()
    levels.append(outer)
    cls = parse_level(fr, 0, fr.len, outer)
    flow, vni, underlay = outer, None, None
    if cls == "udp" and not outer.fragment and outer.dport in VXLAN_PORTS:
        v = outer.udp_payload
        if outer.end - v < 8:
            raise Malformed("truncated_vxlan")
        vni = fr.at(v, "vxlan").int("vxlan.vni")
        inner = Level()
        levels.append(inner)
        parse_level(fr, v + 8, outer.end, inner)
        cls, flow, underlay = "vxlan", inner, (outer.src, outer.dst)
    if flow.family is None:
        return cls, None, 0
    is_icmp = flow.family != "arp" and flow.proto in (1, 58)
    key = {
        "family": flow.family,
        "src": str(ipaddress.ip_address(flow.src)),
        "dst": str(ipaddress.ip_address(flow.dst)),
        "proto": "arp" if flow.family == "arp" else {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(flow.proto, str(flow.proto)),
        "sport": flow.sport,
        "dport": flow.dport,
        "icmp_type": flow.icmp_type if is_icmp else None,
        "icmp_code": flow.icmp_code if is_icmp else None,
        "vni": vni or 0,
        "vlan": outer.vlan,  # the outermost tag of the frame, also for VXLAN
        "outer_src": str(ipaddress.ip_address(underlay[0])) if underlay else None,
        "outer_dst": str(ipaddress.ip_address(underlay[1])) if underlay else None,
        "arp_op": {1: "request", 2: "reply", 3: "rarp-request", 4: "rarp-reply"}.get(flow.arp_op, "other") if flow.family == "arp" else None,
    }
    return cls, key, flow.tcp_flags


def tcp_flag_letters(f):
    return "".join(c for b, c in [(1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "A"), (32, "U"), (64, "E"), (128, "C")] if f & b)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    classes = {c: {"packets": 0, "bytes": 0} for c in CLASSES}
    flows, frames, disagreements = {}, [], []
    total_bytes = 0
    for pkt in run_tshark(sys.argv[1]):
        fr = Frame(pkt)
        total_bytes += fr.len
        levels = []
        try:
            cls, key, flags = classify(fr, levels)
            reason = None
        except Malformed as m:
            cls, key, flags, reason = "malformed", None, 0, m.reason
        except Missing as m:
            sys.exit(f"cannot decide frame {fr.number} from tshark's fields: {m}")
        classes[cls]["packets"] += 1
        classes[cls]["bytes"] += fr.len
        # The addresses of the innermost level parsed, also for a malformed frame (for diagnostics).
        addrs = next(((l.src, l.dst) for l in reversed(levels) if l.src is not None), (None, None))
        frames.append({
            "frame": fr.number, "len": fr.len, "class": cls, "reason": reason, "protocols": fr.protocols,
            "src": addrs[0] and str(ipaddress.ip_address(addrs[0])), "dst": addrs[1] and str(ipaddress.ip_address(addrs[1])),
        })
        if (cls == "malformed") != fr.tshark_malformed:
            disagreements.append({
                "frame": fr.number,
                "protocols": fr.protocols,
                "tshark_malformed": fr.tshark_malformed,
                "netpath_rule": cls if reason is None else f"malformed ({reason})",
            })
        if key is not None:
            k = json.dumps(key, sort_keys=True)
            f = flows.setdefault(k, {**key, "packets": 0, "bytes": 0, "tcp_flags": 0, "frames": []})
            f["packets"] += 1
            f["bytes"] += fr.len
            f["tcp_flags"] |= flags
            f["frames"].append(fr.number)
    flow_list = sorted(flows.values(), key=lambda f: f["frames"][0])
    for f in flow_list:
        f["tcp_flags"] = tcp_flag_letters(f["tcp_flags"])
    json.dump({
        "tshark": subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "frames": len(frames),
        "bytes": total_bytes,
        "classes": classes,
        "flows": flow_list,
        "frame_classes": frames,
        "tshark_disagreements": disagreements,
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
