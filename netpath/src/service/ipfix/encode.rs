//! IPFIX message encoding (RFC 7011): the message header, template sets and data sets, and the
//! Information Elements netpath exports with their RFC 7012 (IANA registry) ids, types and lengths.
//!
//! Written here rather than taken from a crate: the maintained Rust IPFIX crates are decoders
//! first (`netflow_parser` serialises its own parsed object model, one allocated field-value enum
//! per field; `netgauze-flow-pkt` generates the whole IANA registry at build time, a large build
//! on a 2-core machine). An exporter of fixed templates needs only the layouts below, which are
//! tested byte for byte against RFC 7011's figures (sections 3.1, 3.3.2, 3.4.1, 3.4.2, 7) and,
//! end to end, decoded by a real collector (nfdump's `nfcapd`, `tests/tests/it/ipfix.rs`).
use std::net::IpAddr;

/// The IPFIX version number (RFC 7011 3.1).
pub const VERSION: u16 = 10;
/// Set ID of a Template Set (RFC 7011 3.3.2).
pub const TEMPLATE_SET_ID: u16 = 2;
/// The message header: version, length, export time, sequence number, observation domain.
pub const HEADER_LEN: usize = 16;
/// A set header: set id and length.
pub const SET_HEADER_LEN: usize = 4;
/// The field length that announces a variable-length field (RFC 7011 7).
pub const VARIABLE_LENGTH: u16 = 65535;
/// Messages stay below this size so that one fits an Ethernet MTU over IPv4 or IPv6 without
/// fragmentation (UDP, RFC 7011 10.3.3: the Exporting Process must not exceed the path MTU).
pub const MAX_MESSAGE: usize = 1400;

/// The Private Enterprise Number under which netpath's own Information Elements are exported.
///
/// **PLACEHOLDER**: 32473 is the number IANA reserves for documentation and examples (RFC 5612),
/// not one assigned to netpath. Collectors treat it as any unknown enterprise (nfdump skips its
/// fields). Replace it with netpath's own number once one is registered; the element ids below
/// stay.
pub const NETPATH_PEN: u32 = 32473;

/// One Information Element as a template announces it: its id (the enterprise bit is added when
/// `pen` is set), the field length, and the enterprise number for enterprise-specific ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ie {
    pub id: u16,
    pub length: u16,
    pub pen: Option<u32>,
    pub name: &'static str,
}

const fn iana(id: u16, length: u16, name: &'static str) -> Ie {
    Ie {
        id,
        length,
        pen: None,
        name,
    }
}

const fn netpath(id: u16, length: u16, name: &'static str) -> Ie {
    Ie {
        id,
        length,
        pen: Some(NETPATH_PEN),
        name,
    }
}

/// The IANA elements (RFC 7012 and the IANA IPFIX registry), at their registered lengths.
pub mod ie {
    use super::{iana, netpath, Ie, VARIABLE_LENGTH};

    pub const OCTET_DELTA_COUNT: Ie = iana(1, 8, "octetDeltaCount");
    pub const PACKET_DELTA_COUNT: Ie = iana(2, 8, "packetDeltaCount");
    pub const PROTOCOL_IDENTIFIER: Ie = iana(4, 1, "protocolIdentifier");
    /// Two octets since RFC 7125 (the low byte holds the classic TCP flags).
    pub const TCP_CONTROL_BITS: Ie = iana(6, 2, "tcpControlBits");
    pub const SOURCE_TRANSPORT_PORT: Ie = iana(7, 2, "sourceTransportPort");
    pub const SOURCE_IPV4_ADDRESS: Ie = iana(8, 4, "sourceIPv4Address");
    pub const INGRESS_INTERFACE: Ie = iana(10, 4, "ingressInterface");
    pub const DESTINATION_TRANSPORT_PORT: Ie = iana(11, 2, "destinationTransportPort");
    pub const DESTINATION_IPV4_ADDRESS: Ie = iana(12, 4, "destinationIPv4Address");
    pub const EGRESS_INTERFACE: Ie = iana(14, 4, "egressInterface");
    pub const SOURCE_IPV6_ADDRESS: Ie = iana(27, 16, "sourceIPv6Address");
    pub const DESTINATION_IPV6_ADDRESS: Ie = iana(28, 16, "destinationIPv6Address");
    /// type * 256 + code.
    pub const ICMP_TYPE_CODE_IPV4: Ie = iana(32, 2, "icmpTypeCodeIPv4");
    pub const VLAN_ID: Ie = iana(58, 2, "vlanId");
    /// 0 ingress, 1 egress.
    pub const FLOW_DIRECTION: Ie = iana(61, 1, "flowDirection");
    /// The name of the interface the flow was observed on.
    pub const INTERFACE_NAME: Ie = iana(82, VARIABLE_LENGTH, "interfaceName");
    pub const FLOW_END_REASON: Ie = iana(136, 1, "flowEndReason");
    pub const ICMP_TYPE_CODE_IPV6: Ie = iana(139, 2, "icmpTypeCodeIPv6");
    pub const FLOW_START_MILLISECONDS: Ie = iana(152, 8, "flowStartMilliseconds");
    pub const FLOW_END_MILLISECONDS: Ie = iana(153, 8, "flowEndMilliseconds");
    /// RFC 7133: the top octet is the segment type (0x01 VxLAN), the low 56 bits the segment id
    /// (the 24-bit VNI).
    pub const LAYER2_SEGMENT_ID: Ie = iana(351, 8, "layer2SegmentId");

    // netpath's own (enterprise-specific, [`super::NETPATH_PEN`]). The IANA registry has no
    // element for a pod, and none for the outer addresses of a tunnelled flow.

    /// The Kubernetes pod behind the interface (the CRI's name; without a CRI, the network
    /// namespace of the veth's peer). Empty for the node's own links and the underlay.
    pub const POD_NAME: Ie = netpath(1, VARIABLE_LENGTH, "netpathPodName");
    /// The pod's Kubernetes namespace (empty without a CRI).
    pub const POD_NAMESPACE: Ie = netpath(2, VARIABLE_LENGTH, "netpathPodNamespace");
    /// The outer (underlay) source address of a VXLAN flow: the sending VTEP.
    pub const UNDERLAY_SOURCE_IPV4_ADDRESS: Ie = netpath(3, 4, "netpathUnderlaySourceIPv4Address");
    pub const UNDERLAY_DESTINATION_IPV4_ADDRESS: Ie = netpath(4, 4, "netpathUnderlayDestinationIPv4Address");
    pub const UNDERLAY_SOURCE_IPV6_ADDRESS: Ie = netpath(5, 16, "netpathUnderlaySourceIPv6Address");
    pub const UNDERLAY_DESTINATION_IPV6_ADDRESS: Ie = netpath(6, 16, "netpathUnderlayDestinationIPv6Address");
}

/// The VxLAN segment type of [`ie::LAYER2_SEGMENT_ID`] (RFC 7133 4.2).
pub const SEGMENT_TYPE_VXLAN: u64 = 0x01;

/// flowEndReason values (IANA registry).
pub mod end_reason {
    pub const IDLE_TIMEOUT: u8 = 0x01;
    pub const ACTIVE_TIMEOUT: u8 = 0x02;
    /// FIN or RST seen.
    pub const END_OF_FLOW: u8 = 0x03;
    /// The daemon stopped.
    pub const FORCED_END: u8 = 0x04;
}

/// Which template a record uses: the inner family and the underlay's (none for a flow that is not
/// tunnelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateKind {
    V4,
    V6,
    V4OverV4,
    V4OverV6,
    V6OverV4,
    V6OverV6,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 6] = [
        TemplateKind::V4,
        TemplateKind::V6,
        TemplateKind::V4OverV4,
        TemplateKind::V4OverV6,
        TemplateKind::V6OverV4,
        TemplateKind::V6OverV6,
    ];

    /// Template ids start at 256 (RFC 7011 3.4.1: 0-255 are set ids).
    pub fn id(self) -> u16 {
        256 + self as u16
    }

    pub fn of(r: &FlowRecord) -> TemplateKind {
        match (r.src.is_ipv4(), r.underlay.map(|(s, _)| s.is_ipv4())) {
            (true, None) => TemplateKind::V4,
            (false, None) => TemplateKind::V6,
            (true, Some(true)) => TemplateKind::V4OverV4,
            (true, Some(false)) => TemplateKind::V4OverV6,
            (false, Some(true)) => TemplateKind::V6OverV4,
            (false, Some(false)) => TemplateKind::V6OverV6,
        }
    }

    /// The fields, in record order.
    pub fn fields(self) -> Vec<Ie> {
        use ie::*;
        let v4 = matches!(self, TemplateKind::V4 | TemplateKind::V4OverV4 | TemplateKind::V4OverV6);
        let mut f = vec![
            OCTET_DELTA_COUNT,
            PACKET_DELTA_COUNT,
            FLOW_START_MILLISECONDS,
            FLOW_END_MILLISECONDS,
        ];
        if v4 {
            f.extend([SOURCE_IPV4_ADDRESS, DESTINATION_IPV4_ADDRESS]);
        } else {
            f.extend([SOURCE_IPV6_ADDRESS, DESTINATION_IPV6_ADDRESS]);
        }
        f.extend([
            SOURCE_TRANSPORT_PORT,
            DESTINATION_TRANSPORT_PORT,
            PROTOCOL_IDENTIFIER,
            TCP_CONTROL_BITS,
            if v4 { ICMP_TYPE_CODE_IPV4 } else { ICMP_TYPE_CODE_IPV6 },
            INGRESS_INTERFACE,
            EGRESS_INTERFACE,
            FLOW_DIRECTION,
            VLAN_ID,
            FLOW_END_REASON,
        ]);
        match self {
            TemplateKind::V4 | TemplateKind::V6 => {}
            TemplateKind::V4OverV4 | TemplateKind::V6OverV4 => f.extend([
                LAYER2_SEGMENT_ID,
                UNDERLAY_SOURCE_IPV4_ADDRESS,
                UNDERLAY_DESTINATION_IPV4_ADDRESS,
            ]),
            TemplateKind::V4OverV6 | TemplateKind::V6OverV6 => f.extend([
                LAYER2_SEGMENT_ID,
                UNDERLAY_SOURCE_IPV6_ADDRESS,
                UNDERLAY_DESTINATION_IPV6_ADDRESS,
            ]),
        }
        f.extend([INTERFACE_NAME, POD_NAME, POD_NAMESPACE]);
        f
    }
}

/// One data record: a flow's counts since its previous record at one observation point (an
/// interface and direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub octets: u64,
    pub packets: u64,
    /// Milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub end_ms: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    /// type * 256 + code for ICMP and ICMPv6, else 0.
    pub icmp_type_code: u16,
    pub ingress_interface: u32,
    pub egress_interface: u32,
    /// 0 ingress, 1 egress.
    pub direction: u8,
    pub vlan: u16,
    /// One of [`end_reason`].
    pub end_reason: u8,
    /// The VNI and the outer (underlay) source and destination of a VXLAN flow.
    pub vni: u32,
    pub underlay: Option<(IpAddr, IpAddr)>,
    pub iface: String,
    pub pod: String,
    pub pod_namespace: String,
}

/// Append a template record (RFC 7011 3.4.1): template id, field count, then each field specifier
/// (3.2: the id with the enterprise bit, the length, and the enterprise number when set).
pub fn put_template(buf: &mut Vec<u8>, id: u16, fields: &[Ie]) {
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for f in fields {
        match f.pen {
            Some(pen) => {
                buf.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                buf.extend_from_slice(&f.length.to_be_bytes());
                buf.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                buf.extend_from_slice(&f.id.to_be_bytes());
                buf.extend_from_slice(&f.length.to_be_bytes());
            }
        }
    }
}

/// Append a variable-length value (RFC 7011 7): one length octet below 255, else 255 and a
/// two-octet length. Longer values are cut at 65535 octets (at a character boundary).
pub fn put_varlen(buf: &mut Vec<u8>, v: &str) {
    let mut end = v.len().min(usize::from(u16::MAX));
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    let v = &v.as_bytes()[..end];
    if v.len() < 255 {
        buf.push(v.len() as u8);
    } else {
        buf.push(255);
        buf.extend_from_slice(&(v.len() as u16).to_be_bytes());
    }
    buf.extend_from_slice(v);
}

fn put_addr(buf: &mut Vec<u8>, a: IpAddr, length: u16) {
    match (a, length) {
        (IpAddr::V4(a), 4) => buf.extend_from_slice(&a.octets()),
        (IpAddr::V6(a), 16) => buf.extend_from_slice(&a.octets()),
        // A family the template does not announce cannot happen (the kind is chosen from the
        // record); zeros keep the record's length right regardless.
        (_, n) => buf.extend(std::iter::repeat_n(0, usize::from(n))),
    }
}

/// Append `r` as the record of template `kind` (its fields, in order, at their lengths).
pub fn put_record(buf: &mut Vec<u8>, kind: TemplateKind, r: &FlowRecord) {
    use ie::*;
    for f in kind.fields() {
        match f {
            OCTET_DELTA_COUNT => buf.extend_from_slice(&r.octets.to_be_bytes()),
            PACKET_DELTA_COUNT => buf.extend_from_slice(&r.packets.to_be_bytes()),
            FLOW_START_MILLISECONDS => buf.extend_from_slice(&r.start_ms.to_be_bytes()),
            FLOW_END_MILLISECONDS => buf.extend_from_slice(&r.end_ms.to_be_bytes()),
            SOURCE_IPV4_ADDRESS | SOURCE_IPV6_ADDRESS => put_addr(buf, r.src, f.length),
            DESTINATION_IPV4_ADDRESS | DESTINATION_IPV6_ADDRESS => put_addr(buf, r.dst, f.length),
            SOURCE_TRANSPORT_PORT => buf.extend_from_slice(&r.sport.to_be_bytes()),
            DESTINATION_TRANSPORT_PORT => buf.extend_from_slice(&r.dport.to_be_bytes()),
            PROTOCOL_IDENTIFIER => buf.push(r.proto),
            TCP_CONTROL_BITS => buf.extend_from_slice(&u16::from(r.tcp_flags).to_be_bytes()),
            ICMP_TYPE_CODE_IPV4 | ICMP_TYPE_CODE_IPV6 => buf.extend_from_slice(&r.icmp_type_code.to_be_bytes()),
            INGRESS_INTERFACE => buf.extend_from_slice(&r.ingress_interface.to_be_bytes()),
            EGRESS_INTERFACE => buf.extend_from_slice(&r.egress_interface.to_be_bytes()),
            FLOW_DIRECTION => buf.push(r.direction),
            VLAN_ID => buf.extend_from_slice(&r.vlan.to_be_bytes()),
            FLOW_END_REASON => buf.push(r.end_reason),
            LAYER2_SEGMENT_ID => {
                buf.extend_from_slice(&((SEGMENT_TYPE_VXLAN << 56) | u64::from(r.vni & 0x00ff_ffff)).to_be_bytes())
            }
            UNDERLAY_SOURCE_IPV4_ADDRESS | UNDERLAY_SOURCE_IPV6_ADDRESS => {
                put_addr(buf, r.underlay.map_or(r.src, |u| u.0), f.length)
            }
            UNDERLAY_DESTINATION_IPV4_ADDRESS | UNDERLAY_DESTINATION_IPV6_ADDRESS => {
                put_addr(buf, r.underlay.map_or(r.dst, |u| u.1), f.length)
            }
            INTERFACE_NAME => put_varlen(buf, &r.iface),
            POD_NAME => put_varlen(buf, &r.pod),
            POD_NAMESPACE => put_varlen(buf, &r.pod_namespace),
            other => unreachable!("template field {} without a value", other.name),
        }
    }
}

/// Builds messages: a header, then sets, each message at most `max` octets.
#[derive(Debug)]
pub struct MessageBuilder {
    pub domain: u32,
    pub max: usize,
}

/// One encoded message and the data records it carries (what advances the sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub data_records: u32,
    pub template_records: u32,
}

impl MessageBuilder {
    fn start(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.max);
        b.resize(HEADER_LEN, 0);
        b
    }

    /// Fill in the header (RFC 7011 3.1) and the open set's length.
    fn finish(b: &mut [u8], set_start: Option<usize>, export_time: u32, sequence: u32, domain: u32) {
        if let Some(s) = set_start {
            let len = (b.len() - s) as u16;
            b[s + 2..s + 4].copy_from_slice(&len.to_be_bytes());
        }
        let len = b.len() as u16;
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b[4..8].copy_from_slice(&export_time.to_be_bytes());
        b[8..12].copy_from_slice(&sequence.to_be_bytes());
        b[12..16].copy_from_slice(&domain.to_be_bytes());
    }

    /// One message with a template set of every template (they fit easily in one).
    pub fn templates(&self, export_time: u32, sequence: u32) -> Message {
        let mut b = self.start();
        b.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for k in TemplateKind::ALL {
            put_template(&mut b, k.id(), &k.fields());
        }
        Self::finish(&mut b, Some(HEADER_LEN), export_time, sequence, self.domain);
        Message {
            bytes: b,
            data_records: 0,
            template_records: TemplateKind::ALL.len() as u32,
        }
    }

    /// Data messages carrying `records` (grouped by template, a set per run of one template), the
    /// first numbered `sequence` (the data records sent before it) and the next ones following on.
    pub fn data(&self, records: &[FlowRecord], export_time: u32, sequence: u32) -> Vec<Message> {
        let mut sorted: Vec<(TemplateKind, &FlowRecord)> = records.iter().map(|r| (TemplateKind::of(r), r)).collect();
        sorted.sort_by_key(|(k, _)| *k);
        let mut out = Vec::new();
        let mut b = self.start();
        let mut set: Option<(TemplateKind, usize)> = None;
        let mut n = 0u32;
        let mut seq = sequence;
        let mut rec = Vec::with_capacity(256);
        for (kind, r) in sorted {
            rec.clear();
            put_record(&mut rec, kind, r);
            let opens_set = set.is_none_or(|(k, _)| k != kind);
            let need = rec.len() + if opens_set { SET_HEADER_LEN } else { 0 };
            if b.len() + need > self.max && n > 0 {
                Self::finish(&mut b, set.map(|s| s.1), export_time, seq, self.domain);
                out.push(Message {
                    bytes: std::mem::replace(&mut b, self.start()),
                    data_records: n,
                    template_records: 0,
                });
                seq = seq.wrapping_add(n);
                n = 0;
                set = None;
            }
            if set.is_none_or(|(k, _)| k != kind) {
                if let Some((_, s)) = set {
                    let len = (b.len() - s) as u16;
                    b[s + 2..s + 4].copy_from_slice(&len.to_be_bytes());
                }
                set = Some((kind, b.len()));
                b.extend_from_slice(&kind.id().to_be_bytes());
                b.extend_from_slice(&[0, 0]);
            }
            b.extend_from_slice(&rec);
            n += 1;
        }
        if n > 0 {
            Self::finish(&mut b, set.map(|s| s.1), export_time, seq, self.domain);
            out.push(Message {
                bytes: b,
                data_records: n,
                template_records: 0,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn record() -> FlowRecord {
        FlowRecord {
            octets: 0x0102,
            packets: 3,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_000_500,
            src: Ipv4Addr::new(10, 244, 0, 2).into(),
            dst: Ipv4Addr::new(10, 244, 1, 3).into(),
            sport: 40000,
            dport: 5201,
            proto: 6,
            tcp_flags: 0x1b,
            icmp_type_code: 0,
            ingress_interface: 0,
            egress_interface: 2,
            direction: 1,
            vlan: 0,
            end_reason: end_reason::ACTIVE_TIMEOUT,
            vni: 1,
            underlay: Some((
                Ipv4Addr::new(172, 27, 0, 11).into(),
                Ipv4Addr::new(172, 27, 16, 10).into(),
            )),
            iface: "ul0".into(),
            pod: String::new(),
            pod_namespace: String::new(),
        }
    }

    /// RFC 7011 3.1, figure F: version 10, length, export time, sequence, domain.
    #[test]
    fn header_layout() {
        let m = MessageBuilder {
            domain: 7,
            max: MAX_MESSAGE,
        }
        .templates(0x5f5e_1000, 42);
        let b = &m.bytes;
        assert_eq!(&b[0..2], &[0x00, 0x0a]);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, b.len());
        assert_eq!(&b[4..8], &[0x5f, 0x5e, 0x10, 0x00]);
        assert_eq!(&b[8..12], &[0, 0, 0, 42]);
        assert_eq!(&b[12..16], &[0, 0, 0, 7]);
    }

    /// RFC 7011 3.4.1 (figure H) and 3.2 (figures D and E): an IANA field is id and length; an
    /// enterprise field has the top bit set and the enterprise number after the length.
    #[test]
    fn template_record_layout() {
        let mut b = Vec::new();
        put_template(&mut b, 256, &[ie::SOURCE_IPV4_ADDRESS, ie::POD_NAME]);
        assert_eq!(
            b,
            [
                0x01, 0x00, 0x00, 0x02, // template id 256, 2 fields
                0x00, 0x08, 0x00, 0x04, // sourceIPv4Address, 4 octets
                0x80, 0x01, 0xff, 0xff, // enterprise bit | 1, variable length
                0x00, 0x00, 0x7e, 0xd9, // PEN 32473
            ]
        );
    }

    /// RFC 7011 7: below 255 octets one length octet; from 255 on, 255 and two octets.
    #[test]
    fn variable_length_encoding() {
        let mut b = Vec::new();
        put_varlen(&mut b, "ab");
        assert_eq!(b, [2, b'a', b'b']);
        let mut b = Vec::new();
        put_varlen(&mut b, "");
        assert_eq!(b, [0]);
        let long = "x".repeat(300);
        let mut b = Vec::new();
        put_varlen(&mut b, &long);
        assert_eq!(&b[..3], &[255, 0x01, 0x2c]);
        assert_eq!(b.len(), 3 + 300);
    }

    /// The template set: set id 2, its length covering every template record.
    #[test]
    fn template_set_announces_every_template() {
        let m = MessageBuilder {
            domain: 0,
            max: MAX_MESSAGE,
        }
        .templates(0, 0);
        let b = &m.bytes;
        assert_eq!(&b[16..18], &[0, 2]);
        let set_len = u16::from_be_bytes([b[18], b[19]]) as usize;
        assert_eq!(16 + set_len, b.len());
        // Walk the template records: ids 256.., field counts as the kinds say.
        let mut at = 20;
        for k in TemplateKind::ALL {
            let id = u16::from_be_bytes([b[at], b[at + 1]]);
            let n = u16::from_be_bytes([b[at + 2], b[at + 3]]) as usize;
            assert_eq!((id, n), (k.id(), k.fields().len()));
            at += 4;
            for f in k.fields() {
                let raw = u16::from_be_bytes([b[at], b[at + 1]]);
                assert_eq!(raw & 0x7fff, f.id, "{}", f.name);
                assert_eq!(raw & 0x8000 != 0, f.pen.is_some(), "{}", f.name);
                at += 4 + if f.pen.is_some() { 4 } else { 0 };
            }
        }
        assert_eq!(at, b.len());
        assert_eq!(m.template_records, 6);
    }

    /// A VXLAN flow's data record, field by field at the IANA lengths.
    #[test]
    fn data_record_layout() {
        let r = record();
        let mut b = Vec::new();
        put_record(&mut b, TemplateKind::V4OverV4, &r);
        let expect: Vec<u8> = [
            &0x0102u64.to_be_bytes()[..],
            &3u64.to_be_bytes(),
            &1_700_000_000_000u64.to_be_bytes(),
            &1_700_000_000_500u64.to_be_bytes(),
            &[10, 244, 0, 2],
            &[10, 244, 1, 3],
            &40000u16.to_be_bytes(),
            &5201u16.to_be_bytes(),
            &[6],
            &[0x00, 0x1b],
            &[0, 0],
            &0u32.to_be_bytes(),
            &2u32.to_be_bytes(),
            &[1],
            &[0, 0],
            &[end_reason::ACTIVE_TIMEOUT],
            &[0x01, 0, 0, 0, 0, 0, 0, 0x01],
            &[172, 27, 0, 11],
            &[172, 27, 16, 10],
            &[3, b'u', b'l', b'0'],
            &[0],
            &[0],
        ]
        .concat();
        assert_eq!(b, expect);
        // The fixed part is what the template's lengths add up to.
        let fixed: usize = TemplateKind::V4OverV4
            .fields()
            .iter()
            .filter(|f| f.length != VARIABLE_LENGTH)
            .map(|f| usize::from(f.length))
            .sum();
        assert_eq!(b.len(), fixed + 4 + 1 + 1);
    }

    /// RFC 7011 3.3.2 and 3.1: a data set's id is its template's, its length covers its records;
    /// messages stay under the size limit and the sequence number counts the data records sent
    /// before each message.
    #[test]
    fn data_sets_split_into_messages_with_sequence_numbers() {
        let mut v6 = record();
        v6.src = Ipv6Addr::LOCALHOST.into();
        v6.dst = Ipv6Addr::LOCALHOST.into();
        v6.underlay = None;
        let mut records = vec![record(); 40];
        records.extend(vec![v6; 10]);
        let b = MessageBuilder { domain: 3, max: 600 };
        let msgs = b.data(&records, 100, 1000);
        assert!(msgs.len() > 1);
        let mut seq = 1000u32;
        let mut by_template = std::collections::BTreeMap::new();
        for m in &msgs {
            let x = &m.bytes;
            assert!(x.len() <= 600);
            assert_eq!(u16::from_be_bytes([x[2], x[3]]) as usize, x.len());
            assert_eq!(u32::from_be_bytes([x[8], x[9], x[10], x[11]]), seq);
            seq += m.data_records;
            let mut at = HEADER_LEN;
            while at < x.len() {
                let id = u16::from_be_bytes([x[at], x[at + 1]]);
                let len = u16::from_be_bytes([x[at + 2], x[at + 3]]) as usize;
                assert!(len > SET_HEADER_LEN);
                *by_template.entry(id).or_insert(0usize) += len - SET_HEADER_LEN;
                at += len;
            }
            assert_eq!(at, x.len());
        }
        assert_eq!(seq, 1050);
        let size = |r: &FlowRecord| {
            let mut v = Vec::new();
            put_record(&mut v, TemplateKind::of(r), r);
            v.len()
        };
        assert_eq!(by_template[&TemplateKind::V4OverV4.id()], 40 * size(&records[0]));
        assert_eq!(by_template[&TemplateKind::V6.id()], 10 * size(&records[45]));
        assert!(b.data(&[], 0, 0).is_empty());
    }
}
