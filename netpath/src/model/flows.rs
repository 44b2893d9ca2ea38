//! Flows as rows: filtering, sorting and the JSON contract of `netpath flows`.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use netpath_common::{
    class,
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    FlowKey, FlowValue, ENCAP_VXLAN, FAMILY_ARP, FAMILY_IPV4, FAMILY_IPV6,
};

use super::owner::Owner;

/// A flow with no packet for this long has ended (`aged`).
pub const FLOW_IDLE: Duration = Duration::from_secs(30);

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// Whether a flow entry is still going: a packet within [`FLOW_IDLE`] of `now_ns` (CLOCK_MONOTONIC)
/// and no FIN or RST seen in its direction. Ended flows stay in the table (the LRU evicts them
/// when it needs room) but are not active.
pub fn is_active(v: &FlowValue, now_ns: u64) -> bool {
    now_ns.saturating_sub(v.last_seen) < FLOW_IDLE.as_nanos() as u64 && v.tcp_flags & (TCP_FIN | TCP_RST) == 0
}

/// The JSON fields every `flows` row has: a stable contract for scripts (README).
pub const FLOW_ROW_FIELDS: [&str; 22] = [
    "iface",
    "ifindex",
    "direction",
    "family",
    "src",
    "dst",
    "proto",
    "sport",
    "dport",
    "icmp_type",
    "icmp_code",
    "vni",
    "vlan",
    "outer_src",
    "outer_dst",
    "packets",
    "bytes",
    "tcp_flags",
    "first_seen",
    "last_seen",
    "drop_packets",
    "drop_bytes",
];

/// One flow. The field names are a stable JSON contract ([`FLOW_ROW_FIELDS`]); `arp_op` is an
/// addition for ARP flows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowRow {
    pub iface: String,
    pub ifindex: u32,
    pub direction: String,
    pub family: String,
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub vni: u32,
    pub vlan: u16,
    pub outer_src: Option<String>,
    pub outer_dst: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_flags: String,
    pub first_seen: String,
    pub last_seen: String,
    /// Seconds since its last packet.
    #[serde(default)]
    pub idle_s: u64,
    /// Still going (see [`is_active`]); false once it aged out or saw FIN or RST.
    #[serde(default)]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<String>,
    /// Packets and bytes of this flow that were dropped (by the kernel, seen by the drop tracer on
    /// this interface or inside the pod behind it, or by a netpath rule), and the last drop's
    /// reason ([`super::drops::DropReasons::name`]).
    #[serde(default)]
    pub drop_packets: u64,
    #[serde(default)]
    pub drop_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// The last drop's reason as the kernel numbers it (named into `drop_reason` by the reader).
    #[serde(skip)]
    pub drop_reason_code: u32,
    /// The namespace and pod behind the interface (`netns`, `pod`, `pod_namespace`), when known.
    #[serde(flatten)]
    pub owner: Owner,

    /// Not part of the JSON: recomputed by the reader when it needs it.
    #[serde(skip)]
    pub class: u8,
}

/// What "heaviest" means for `flows --sort` and `top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Bytes,
    Packets,
}

impl std::fmt::Display for SortBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SortBy::Bytes => "bytes",
            SortBy::Packets => "packets",
        })
    }
}

impl std::str::FromStr for SortBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" => Ok(SortBy::Bytes),
            "packets" => Ok(SortBy::Packets),
            _ => Err(format!("unknown sort '{s}' (bytes, packets)")),
        }
    }
}

/// The traffic class a flow belongs to (the class its frames were counted in).
pub fn class_of(k: &FlowKey) -> u8 {
    if k.encap == ENCAP_VXLAN {
        return class::VXLAN;
    }
    match (k.family, k.proto) {
        (FAMILY_ARP, _) => class::ARP,
        (_, IPPROTO_TCP) => class::TCP,
        (_, IPPROTO_UDP) => class::UDP,
        (FAMILY_IPV4, IPPROTO_ICMP) => class::ICMP,
        (FAMILY_IPV6, IPPROTO_ICMPV6) => class::ICMP6,
        _ => class::OTHER_IP,
    }
}

pub fn addr(family: u8, a: &[u8; 16]) -> String {
    match family {
        FAMILY_IPV6 => IpAddr::V6(Ipv6Addr::from(*a)).to_string(),
        _ => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])).to_string(),
    }
}

pub fn proto_name(k: &FlowKey) -> String {
    if k.family == FAMILY_ARP {
        return "arp".into();
    }
    match k.proto {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_ICMPV6 => "icmp6".into(),
        p => p.to_string(),
    }
}

pub fn tcp_flags(f: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES.iter().filter(|(b, _)| f & b != 0).map(|(_, c)| *c).collect()
}

/// Converts `bpf_ktime_get_ns` (CLOCK_MONOTONIC) stamps to wall-clock time.
#[derive(Clone, Copy)]
pub struct Clock {
    mono_now: Duration,
    wall_now: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Clock {
            mono_now: Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
            wall_now: SystemTime::now(),
        }
    }

    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        let t = Duration::from_nanos(mono_ns);
        self.wall_now - self.mono_now.saturating_sub(t)
    }

    pub fn mono_now_ns(&self) -> u64 {
        self.mono_now.as_nanos() as u64
    }

    pub fn rfc3339(&self, mono_ns: u64) -> String {
        humantime::format_rfc3339_micros(self.wall(mono_ns)).to_string()
    }
}

pub fn row(k: &FlowKey, v: &FlowValue, iface: String, clock: &Clock) -> FlowRow {
    let is_icmp = k.family != FAMILY_ARP && matches!(k.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
    FlowRow {
        iface,
        ifindex: k.ifindex,
        direction: super::direction_name(k.direction).into(),
        family: match k.family {
            FAMILY_IPV4 => "ipv4",
            FAMILY_IPV6 => "ipv6",
            FAMILY_ARP => "arp",
            _ => "none",
        }
        .into(),
        src: addr(k.family, &k.src),
        dst: addr(k.family, &k.dst),
        proto: proto_name(k),
        sport: k.sport,
        dport: k.dport,
        icmp_type: is_icmp.then_some(k.icmp_type),
        icmp_code: is_icmp.then_some(k.icmp_code),
        vni: k.vni,
        vlan: k.vlan,
        outer_src: (v.outer_family != 0).then(|| addr(v.outer_family, &v.outer_src)),
        outer_dst: (v.outer_family != 0).then(|| addr(v.outer_family, &v.outer_dst)),
        packets: v.packets,
        bytes: v.bytes,
        tcp_flags: tcp_flags(v.tcp_flags),
        drop_packets: v.drop_packets,
        drop_bytes: v.drop_bytes,
        drop_reason: None,
        drop_reason_code: v.drop_reason,
        first_seen: clock.rfc3339(v.first_seen),
        last_seen: clock.rfc3339(v.last_seen),
        idle_s: clock.mono_now_ns().saturating_sub(v.last_seen) / 1_000_000_000,
        active: is_active(v, clock.mono_now_ns()),
        arp_op: (k.family == FAMILY_ARP).then(|| {
            match k.arp_op {
                1 => "request",
                2 => "reply",
                3 => "rarp-request",
                4 => "rarp-reply",
                _ => "other",
            }
            .to_string()
        }),
        class: class_of(k),
        owner: Owner::default(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub iface: Option<String>,
    pub class: Option<u8>,
    pub top: Option<usize>,
    pub sort: Option<SortBy>,
    /// Flows on the veths of this pod ([`Owner::matches`]).
    pub pod: Option<String>,
    /// Flows with an endpoint in this network: source or destination, inner or outer (VXLAN).
    pub ip: Option<super::Cidr>,
    /// TCP and UDP flows from or to this port.
    pub port: Option<u16>,
    /// Only flows still going (see [`is_active`]).
    pub active: bool,
}

impl Filter {
    /// Whether a filter asks about more than the interface and class (what the raw flow keys
    /// answer before rows are built).
    pub fn by_row(&self) -> bool {
        self.pod.is_some() || self.ip.is_some() || self.port.is_some() || self.active
    }

    pub fn matches(&self, r: &FlowRow) -> bool {
        self.iface.as_deref().is_none_or(|i| r.iface == i)
            && self.class.is_none_or(|c| r.class == c)
            && (r.active || !self.active)
            && self.pod.as_deref().is_none_or(|p| r.owner.matches(p))
            && self.ip.is_none_or(|net| {
                [Some(&r.src), Some(&r.dst), r.outer_src.as_ref(), r.outer_dst.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|a| net.contains_str(a))
            })
            && self
                .port
                .is_none_or(|p| super::port_matches(Some(&r.proto), Some(r.sport), Some(r.dport), p))
    }
}

/// The class of a row as the JSON has it (the API does not carry `class`): what [`class_of`] says
/// of the key.
pub fn class_of_row(r: &FlowRow) -> u8 {
    if r.outer_src.is_some() || r.vni != 0 {
        return class::VXLAN;
    }
    match (r.family.as_str(), r.proto.as_str()) {
        ("arp", _) => class::ARP,
        (_, "tcp") => class::TCP,
        (_, "udp") => class::UDP,
        ("ipv4", "icmp") => class::ICMP,
        ("ipv6", "icmp6") => class::ICMP6,
        _ => class::OTHER_IP,
    }
}

pub fn select(mut rows: Vec<FlowRow>, f: &Filter) -> Vec<FlowRow> {
    rows.retain(|r| f.matches(r));
    match f.sort.unwrap_or(SortBy::Bytes) {
        SortBy::Bytes => rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.packets.cmp(&a.packets))),
        SortBy::Packets => rows.sort_by(|a, b| b.packets.cmp(&a.packets).then(b.bytes.cmp(&a.bytes))),
    }
    if let Some(n) = f.top {
        rows.truncate(n);
    }
    rows
}

fn endpoint(addr: &str, port: u16, show_port: bool) -> String {
    match (show_port, addr.contains(':')) {
        (false, _) => addr.to_string(),
        (true, true) => format!("[{addr}]:{port}"),
        (true, false) => format!("{addr}:{port}"),
    }
}

/// Name the drop reasons of `rows` (those with drops) with this kernel's names.
pub fn name_drop_reasons(rows: &mut [FlowRow], reasons: &super::drops::DropReasons) {
    for r in rows.iter_mut().filter(|r| r.drop_packets != 0) {
        r.drop_reason = Some(reasons.name(r.drop_reason_code));
    }
}

pub fn table(rows: &[FlowRow]) -> String {
    // The DROPPED column only when a flow had drops: most tables have none.
    let drops = rows.iter().any(|r| r.drop_packets != 0);
    let mut cols = vec![
        "IFACE", "DIR", "PROTO", "SRC", "DST", ">VNI", ">VLAN", ">PACKETS", ">BYTES", "FLAGS", ">IDLE", "UNDERLAY",
    ];
    if drops {
        cols.push("DROPPED");
    }
    let mut t = super::Columns::new(&cols);
    for r in rows {
        let ports = matches!(r.proto.as_str(), "tcp" | "udp");
        let (src, dst) = match (r.icmp_type, r.arp_op.as_deref()) {
            (Some(t), _) => (
                format!("{} id {}", r.src, r.sport),
                format!("{} type {t}/{}", r.dst, r.icmp_code.unwrap_or(0)),
            ),
            (_, Some(op)) => (r.src.clone(), format!("{} ({op})", r.dst)),
            _ => (endpoint(&r.src, r.sport, ports), endpoint(&r.dst, r.dport, ports)),
        };
        let underlay = match (&r.outer_src, &r.outer_dst) {
            (Some(a), Some(b)) => format!("{a} > {b}"),
            _ => String::new(),
        };
        let mut cells = vec![
            format!("{}{}", r.iface, r.owner.suffix()),
            r.direction.clone(),
            r.proto.clone(),
            src,
            dst,
            r.vni.to_string(),
            r.vlan.to_string(),
            r.packets.to_string(),
            r.bytes.to_string(),
            r.tcp_flags.clone(),
            // An ended flow's idle time is marked, so the table says which flows still run.
            if r.active {
                format!("{}s", r.idle_s)
            } else {
                format!("{}s ended", r.idle_s)
            },
            underlay,
        ];
        if drops {
            cells.push(match (r.drop_packets, &r.drop_reason) {
                (0, _) => String::new(),
                (n, Some(reason)) => format!("{n} {reason}"),
                (n, None) => n.to_string(),
            });
        }
        t.row(cells);
    }
    let mut s = t.render();
    if rows.is_empty() {
        s.push_str("(no flows)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use netpath_common::parse::v4_mapped;

    use super::*;

    fn key(proto: u8, vni: u32) -> FlowKey {
        FlowKey {
            ifindex: 3,
            family: FAMILY_IPV4,
            src: v4_mapped([10, 244, 0, 2]).into(),
            dst: v4_mapped([10, 244, 1, 3]).into(),
            proto,
            vni,
            encap: if vni != 0 { ENCAP_VXLAN } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn filter_by_pod_ip_and_port() {
        let clock = Clock::now();
        let outer = FlowValue {
            packets: 1,
            outer_family: FAMILY_IPV4,
            outer_src: v4_mapped([172, 27, 0, 11]).into(),
            outer_dst: v4_mapped([172, 27, 16, 10]).into(),
            ..Default::default()
        };
        let mut tcp = key(IPPROTO_TCP, 0);
        (tcp.sport, tcp.dport) = (40000, 5201);
        let mut echo = key(IPPROTO_ICMP, 0);
        echo.sport = 5201;
        let mut pod_row = row(&tcp, &FlowValue::default(), "veth1".into(), &clock);
        pod_row.owner = Owner {
            netns: Some("np-n1-pod-a".into()),
            role: Some(crate::model::owner::Role::Pod),
            ..Owner::default()
        };
        let rows = vec![
            pod_row,
            row(&echo, &FlowValue::default(), "veth1".into(), &clock),
            row(&key(IPPROTO_ICMP, 1), &outer, "ul0".into(), &clock),
        ];
        let pick = |f: Filter| {
            select(rows.clone(), &f)
                .iter()
                .map(|r| r.proto.clone())
                .collect::<Vec<_>>()
        };
        let by_pod = pick(Filter {
            pod: Some("n1-pod-a".into()),
            ..Filter::default()
        });
        assert_eq!(by_pod, vec!["tcp"]);
        // ICMP's sport is the echo id, not a port.
        let by_port = pick(Filter {
            port: Some(5201),
            ..Filter::default()
        });
        assert_eq!(by_port, vec!["tcp"]);
        let outer_ip = Filter {
            ip: Some(crate::model::Cidr::parse("172.27.16.0/20").unwrap()),
            ..Filter::default()
        };
        let by_outer: Vec<_> = select(rows.clone(), &outer_ip).into_iter().map(|r| r.iface).collect();
        assert_eq!(by_outer, vec!["ul0"]);
        let inner_ip = Filter {
            ip: Some(crate::model::Cidr::parse("10.244.1.3").unwrap()),
            ..Filter::default()
        };
        assert_eq!(select(rows.clone(), &inner_ip).len(), 3);
        for r in &rows {
            assert_eq!(class_of_row(r), r.class, "{r:?}");
        }
    }

    #[test]
    fn rows_carry_the_contract_fields() {
        let v = FlowValue {
            packets: 2,
            bytes: 196,
            outer_family: FAMILY_IPV4,
            outer_src: v4_mapped([172, 27, 0, 11]).into(),
            outer_dst: v4_mapped([172, 27, 16, 10]).into(),
            ..Default::default()
        };
        let mut k = key(IPPROTO_ICMP, 1);
        k.icmp_type = 8;
        k.sport = 77;
        let r = row(&k, &v, "ul0".into(), &Clock::now());
        assert_eq!(
            (r.src.as_str(), r.dst.as_str(), r.proto.as_str()),
            ("10.244.0.2", "10.244.1.3", "icmp")
        );
        assert_eq!((r.icmp_type, r.vni, r.class), (Some(8), 1, class::VXLAN));
        assert_eq!(r.outer_src.as_deref(), Some("172.27.0.11"));
        let json = serde_json::to_value(&r).unwrap();
        for f in FLOW_ROW_FIELDS {
            assert!(json.get(f).is_some(), "missing {f}");
        }
        assert!(
            r.first_seen.ends_with('Z') && r.first_seen.contains('T'),
            "{}",
            r.first_seen
        );
    }

    /// A flow ends when it has been idle FLOW_IDLE or saw FIN or RST; `--active` keeps the rest.
    #[test]
    fn flows_end_by_idle_time_fin_or_rst() {
        let now = 100 * 1_000_000_000;
        let v = |last_s: u64, flags: u8| FlowValue {
            last_seen: last_s * 1_000_000_000,
            tcp_flags: flags,
            ..Default::default()
        };
        assert!(is_active(&v(99, 0x10), now), "1 s idle, ACK only");
        assert!(is_active(&v(71, 0x02), now), "29 s idle");
        assert!(!is_active(&v(70, 0), now), "30 s idle: aged");
        assert!(!is_active(&v(99, 0x11), now), "FIN seen");
        assert!(!is_active(&v(99, 0x04), now), "RST seen");
        let clock = Clock::now();
        let now = clock.mono_now_ns();
        let mut fresh = v(0, 0x18);
        fresh.last_seen = now - 2_000_000_000;
        let mut ended = fresh;
        ended.tcp_flags |= 0x01;
        let rows = vec![
            row(&key(IPPROTO_TCP, 0), &fresh, "a".into(), &clock),
            row(&key(IPPROTO_TCP, 0), &ended, "b".into(), &clock),
        ];
        assert_eq!((rows[0].active, rows[0].idle_s), (true, 2));
        assert!(!rows[1].active);
        let kept = select(
            rows.clone(),
            &Filter {
                active: true,
                ..Default::default()
            },
        );
        assert_eq!(kept.iter().map(|r| r.iface.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(select(rows.clone(), &Filter::default()).len(), 2);
        let t = table(&rows);
        assert!(t.contains(" 2s ") && t.contains("2s ended"), "{t}");
    }

    #[test]
    fn select_filters_sorts_and_truncates() {
        let clock = Clock::now();
        let mk = |proto, bytes, iface: &str| {
            row(
                &key(proto, 0),
                &FlowValue {
                    packets: 1,
                    bytes,
                    ..Default::default()
                },
                iface.into(),
                &clock,
            )
        };
        let rows = vec![
            mk(IPPROTO_TCP, 10, "a"),
            mk(IPPROTO_UDP, 30, "a"),
            mk(IPPROTO_TCP, 20, "b"),
        ];
        let r = select(
            rows.clone(),
            &Filter {
                class: Some(class::TCP),
                ..Default::default()
            },
        );
        assert_eq!(r.iter().map(|r| r.bytes).collect::<Vec<_>>(), vec![20, 10]);
        let r = select(
            rows.clone(),
            &Filter {
                iface: Some("a".into()),
                top: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(r.iter().map(|r| r.bytes).collect::<Vec<_>>(), vec![30]);
    }

    #[test]
    fn flags_and_ipv6_addresses_render() {
        assert_eq!(tcp_flags(0x12), "SA");
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = 1;
        assert_eq!(addr(FAMILY_IPV6, &a), "fd00::1");
    }
}
