//! Events: what the datapath reports through the ring buffer (new and ended flows, ARP, ICMP
//! errors, malformed frames), what user space derives from them (unanswered ARP, ARP conflicts,
//! new VXLAN peers, flows that aged out or were evicted), and `netpath watch`.
//!
//! The ring buffer has a single consumer position, so exactly one reader may drain it: the
//! daemon. `watch` subscribes to the daemon's stream; only when no daemon runs does it read the
//! pinned ring buffer itself.
use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use netpath_common::{
    drop::DropKey,
    event::{end_reason, kind, Event},
    malformed, FlowKey, ENCAP_VXLAN, FAMILY_ARP, FAMILY_IPV4, FAMILY_NONE,
};

use super::{
    flows::{self, Clock},
    inline::{self, Inline, ADDR_MAX},
    owner::{Owner, Role},
};
use crate::error::{Error, Result};

/// One event as users see it. JSON field names are stable; absent fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    pub time: String,
    pub kind: String,
    pub iface: String,
    pub ifindex: u32,
    pub direction: String,
    /// The namespace and pod behind the interface (`netns`, `pod`, `pod_namespace`).
    #[serde(flatten)]
    pub owner: Owner,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// flow_end: fin, rst, aged, evicted, interface_gone; malformed: the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// arp: request, reply, gratuitous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ip: Option<String>,
    /// arp_conflict: the MAC that claimed the IP first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_mac: Option<String>,
    /// arp_unanswered: how long netpath waited for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// icmp_error: the 5-tuple of the packet the error quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<QuotedRow>,
    /// vxlan flows and vxlan_peer: the underlay endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_dst: Option<String>,
    /// flow_end from user space: what the flow counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// flow_end from user space: the flow's last packet (`time` is when its end was seen, so
    /// `watch` stays in time order even for a flow that went idle 30 s before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// drop: the reason's subsystem (`core`, `netpath`, ...); `reason` holds its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// drop: the kernel function that freed the packet (`function+0xoffset`), or `rule N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// doctor: the check (`rp_filter`, `mtu`, ...) whose state changed; `reason` holds the new
    /// status (`ok`, `warn`, `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// doctor: what the check is about (an interface, a peer, a table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// doctor: what was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// doctor: the command that fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// drop: the site as the kernel reported it, for the daemon to name (not part of the JSON).
    #[serde(skip)]
    pub drop_site: Option<DropKey>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuotedRow {
    pub family: String,
    pub proto: String,
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
}

fn family_name(f: u8) -> &'static str {
    match f {
        FAMILY_IPV4 => "ipv4",
        netpath_common::FAMILY_IPV6 => "ipv6",
        FAMILY_ARP => "arp",
        _ => "none",
    }
}

fn arp_op_name(op: u8, gratuitous: bool) -> &'static str {
    match (op, gratuitous) {
        (_, true) => "gratuitous",
        (1, _) => "request",
        (2, _) => "reply",
        _ => "other",
    }
}

type Addr = Inline<ADDR_MAX>;
/// RFC 3339 with microseconds: `2025-01-01T00:00:00.000000Z`.
type Time = Inline<32>;
/// `tcp`, `udp`, `icmp`, `icmp6`, `arp` or a protocol number.
type Proto = Inline<5>;

fn time(clock: &Clock, mono_ns: u64) -> Time {
    let mut t = Time::new();
    // humantime writes through the formatter without allocating; the `String` was the cost.
    let _ = write!(t, "{}", humantime::format_rfc3339_micros(clock.wall(mono_ns)));
    t
}

fn proto(family: u8, proto: u8) -> Proto {
    use netpath_common::parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
    let name = match (family, proto) {
        (FAMILY_ARP, _) => "arp",
        (_, IPPROTO_TCP) => "tcp",
        (_, IPPROTO_UDP) => "udp",
        (_, IPPROTO_ICMP) => "icmp",
        (_, IPPROTO_ICMPV6) => "icmp6",
        (_, p) => return inline::decimal(p.into()),
    };
    let mut s = Proto::new();
    let _ = s.write_str(name);
    s
}

/// A kernel event as its row and its JSON show it, formatted on the stack: serializing it writes
/// the same JSON as serializing the [`EventRow`] [`decode`] returns, without allocating.
/// Interface name and owner are the caller's (empty and none unless set).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventView<'a> {
    time: Time,
    kind: &'static str,
    pub iface: &'a str,
    ifindex: u32,
    direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<Proto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vni: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arp_op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_mac: Option<Inline<17>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_ip: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_mac: Option<Inline<17>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_ip: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quoted: Option<QuotedView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outer_src: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outer_dst: Option<Addr>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct QuotedView {
    family: &'static str,
    proto: Proto,
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
}

impl<'a> EventView<'a> {
    /// Decode a kernel event (names and owners are the caller's to add).
    pub fn new(e: &Event, clock: &Clock) -> EventView<'a> {
        let mut r = EventView {
            time: time(clock, e.ts),
            kind: kind::name(e.kind),
            iface: "",
            ifindex: e.ifindex,
            direction: crate::model::direction_name(e.direction),
            netns: None,
            pod: None,
            pod_namespace: None,
            role: None,
            family: None,
            src: None,
            dst: None,
            proto: None,
            sport: None,
            dport: None,
            vni: None,
            vlan: None,
            reason: None,
            arp_op: None,
            sender_mac: None,
            sender_ip: None,
            target_mac: None,
            target_ip: None,
            icmp_type: None,
            icmp_code: None,
            quoted: None,
            outer_src: None,
            outer_dst: None,
        };
        match e.kind {
            kind::MALFORMED => r.reason = malformed::NAMES.get(e.reason as usize).copied(),
            kind::ARP => {
                r.arp_op = Some(arp_op_name(e.key.arp_op, e.key.src[..4] == e.key.dst[..4]));
                r.sender_mac = Some(inline::mac(&e.arp_sha));
                r.target_mac = Some(inline::mac(&e.arp_tha));
                r.sender_ip = Some(inline::addr(FAMILY_IPV4, &e.key.src));
                r.target_ip = Some(inline::addr(FAMILY_IPV4, &e.key.dst));
                if e.key.vlan != 0 {
                    r.vlan = Some(e.key.vlan);
                }
            }
            kind::ICMP_ERROR => {
                r.with_key(&e.key);
                r.icmp_type = Some(e.key.icmp_type);
                r.icmp_code = Some(e.key.icmp_code);
                r.quoted = Some(QuotedView {
                    family: family_name(e.quoted_family),
                    proto: proto(e.quoted_family, e.quoted_proto),
                    src: inline::addr(e.quoted_family, &e.quoted_src),
                    dst: inline::addr(e.quoted_family, &e.quoted_dst),
                    sport: e.quoted_sport,
                    dport: e.quoted_dport,
                });
            }
            _ => {
                r.with_key(&e.key);
                if e.kind == kind::FLOW_END {
                    r.reason = end_reason::NAMES.get(e.reason as usize).copied();
                }
                if e.outer_family != FAMILY_NONE {
                    r.outer_src = Some(inline::addr(e.outer_family, &e.outer_src));
                    r.outer_dst = Some(inline::addr(e.outer_family, &e.outer_dst));
                }
            }
        }
        r
    }

    /// Fill the flow fields from a key.
    fn with_key(&mut self, k: &FlowKey) {
        if k.family == FAMILY_NONE {
            return;
        }
        self.family = Some(family_name(k.family));
        self.src = Some(inline::addr(k.family, &k.src));
        self.dst = Some(inline::addr(k.family, &k.dst));
        if k.family != FAMILY_ARP {
            self.proto = Some(proto(k.family, k.proto));
            self.sport = Some(k.sport);
            self.dport = Some(k.dport);
        }
        if k.encap == ENCAP_VXLAN {
            self.vni = Some(k.vni);
        }
        if k.vlan != 0 {
            self.vlan = Some(k.vlan);
        }
    }

    /// Name the interface and its owner.
    pub fn owned_by(mut self, iface: &'a str, o: &'a Owner) -> EventView<'a> {
        self.iface = iface;
        self.netns = o.netns.as_deref();
        self.pod = o.pod.as_deref();
        self.pod_namespace = o.pod_namespace.as_deref();
        self.role = o.role;
        self
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The row (what the control API and `watch` carry).
    pub fn to_row(&self) -> EventRow {
        let s = |v: &Option<Addr>| v.as_ref().map(|a| a.to_string());
        let m = |v: &Option<Inline<17>>| v.as_ref().map(|a| a.to_string());
        EventRow {
            time: self.time.to_string(),
            kind: self.kind.into(),
            iface: self.iface.into(),
            ifindex: self.ifindex,
            direction: self.direction.into(),
            owner: Owner {
                netns: self.netns.map(String::from),
                pod: self.pod.map(String::from),
                pod_namespace: self.pod_namespace.map(String::from),
                role: self.role,
            },
            family: self.family.map(String::from),
            src: s(&self.src),
            dst: s(&self.dst),
            proto: self.proto.map(|p| p.to_string()),
            sport: self.sport,
            dport: self.dport,
            vni: self.vni,
            vlan: self.vlan,
            reason: self.reason.map(String::from),
            arp_op: self.arp_op.map(String::from),
            sender_mac: m(&self.sender_mac),
            sender_ip: s(&self.sender_ip),
            target_mac: m(&self.target_mac),
            target_ip: s(&self.target_ip),
            previous_mac: None,
            waited_ms: None,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            quoted: self.quoted.as_ref().map(|q| QuotedRow {
                family: q.family.into(),
                proto: q.proto.to_string(),
                src: q.src.to_string(),
                dst: q.dst.to_string(),
                sport: q.sport,
                dport: q.dport,
            }),
            outer_src: s(&self.outer_src),
            outer_dst: s(&self.outer_dst),
            packets: None,
            bytes: None,
            last_seen: None,
            subsystem: None,
            location: None,
            check: None,
            subject: None,
            evidence: None,
            fix: None,
            drop_site: None,
        }
    }
}

/// Decode a kernel event (names and owners are the caller's to add; a drop's reason, location and
/// namespace too, from `drop_site`).
pub fn decode(e: &Event, clock: &Clock) -> EventRow {
    let mut r = EventView::new(e, clock).to_row();
    if e.kind == kind::DROP {
        r.drop_site = Some(drop_site(e));
    }
    r
}

/// Where a DROP event happened, as the drop table keys it.
pub fn drop_site(e: &Event) -> DropKey {
    DropKey {
        netns: e.netns,
        ifindex: e.ifindex,
        reason: e.drop_reason,
        direction: e.direction,
        _pad: [0; 3],
        location: e.location,
    }
}

/// Fill the flow fields of a row from a key.
fn with_key(r: &mut EventRow, k: &FlowKey) {
    if k.family == FAMILY_NONE {
        return;
    }
    r.family = Some(family_name(k.family).into());
    r.src = Some(flows::addr(k.family, &k.src));
    r.dst = Some(flows::addr(k.family, &k.dst));
    if k.family != FAMILY_ARP {
        r.proto = Some(flows::proto_name(k));
        r.sport = Some(k.sport);
        r.dport = Some(k.dport);
    }
    if k.encap == ENCAP_VXLAN {
        r.vni = Some(k.vni);
    }
    if k.vlan != 0 {
        r.vlan = Some(k.vlan);
    }
}

// FxHash (rustc-hash): the Deriver's keys are a few fixed-size integers, and SipHash on every ARP
// event cost more than decoding it. Keys come from the network, but each map is bounded by
// expiry, so flooding one bucket is no worse than flooding the map.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
type FxSet<K> = rustc_hash::FxHashSet<K>;
type Mac = [u8; 6];

/// A request waiting for its reply: kept raw when it came from the ring (decoded only if it ends
/// up unanswered, with the clock it would have been decoded with then).
enum Pending {
    Row(Box<EventRow>),
    Raw(Box<(Event, Clock)>),
}

impl Pending {
    fn into_row(self) -> EventRow {
        match self {
            Pending::Row(r) => *r,
            Pending::Raw(b) => decode(&b.0, &b.1),
        }
    }
}

/// Events derived in user space from the kernel's: ARP requests nobody answered, one IP claimed
/// by two MACs, VXLAN peers seen for the first time.
pub struct Deriver {
    /// How long a request may wait for its reply.
    pub arp_timeout: Duration,
    /// How long an IP's MAC is remembered for conflict detection.
    pub arp_memory: Duration,
    /// (sender ip, target ip) -> (first seen, the request).
    pending: FxMap<(Ipv4Addr, Ipv4Addr), (Instant, Pending)>,
    /// ip -> (mac, last seen).
    owners: FxMap<Ipv4Addr, (Mac, Instant)>,
    reported_conflicts: FxSet<(Ipv4Addr, Mac, Mac)>,
    peers: FxSet<(u32, IpAddr, IpAddr)>,
}

impl Default for Deriver {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// What the Deriver needs of an ARP event.
#[derive(Clone, Copy)]
struct Arp {
    op: &'static str,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
    sha: Mac,
}

fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

impl Deriver {
    pub fn new(arp_timeout: Duration, arp_memory: Duration) -> Self {
        Self {
            arp_timeout,
            arp_memory,
            pending: FxMap::default(),
            owners: FxMap::default(),
            reported_conflicts: FxSet::default(),
            peers: FxSet::default(),
        }
    }

    /// Learn from one event row; returns the events it implies now.
    pub fn feed(&mut self, r: &EventRow, now: Instant) -> Vec<EventRow> {
        let mut out = Vec::new();
        if r.kind == "arp" {
            let (Some(spa), Some(tpa), Some(sha)) = (&r.sender_ip, &r.target_ip, &r.sender_mac) else {
                return out;
            };
            let (Ok(spa), Ok(tpa), Some(sha)) = (spa.parse(), tpa.parse(), parse_mac(sha)) else {
                return out;
            };
            let op = match r.arp_op.as_deref() {
                Some("request") => "request",
                Some("reply") => "reply",
                _ => "other",
            };
            self.arp(
                Arp { op, spa, tpa, sha },
                now,
                &mut out,
                || Pending::Row(Box::new(r.clone())),
                || r.clone(),
            );
        }
        if r.kind == "flow_new" {
            if let (Some(vni), Some(a), Some(b)) = (r.vni, &r.outer_src, &r.outer_dst) {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    if self.peers.insert((vni, a, b)) {
                        let mut p = r.clone();
                        p.kind = "vxlan_peer".into();
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    /// [`Deriver::feed`] on the raw event, as the ring delivers it: no row is built unless an
    /// event is derived (or a request is left unanswered).
    pub fn feed_event(&mut self, e: &Event, clock: &Clock, now: Instant) -> Vec<EventRow> {
        let mut out = Vec::new();
        let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        match e.kind {
            kind::ARP => {
                let (spa, tpa) = (v4(&e.key.src), v4(&e.key.dst));
                let a = Arp {
                    op: arp_op_name(e.key.arp_op, spa == tpa),
                    spa,
                    tpa,
                    sha: e.arp_sha,
                };
                self.arp(
                    a,
                    now,
                    &mut out,
                    || Pending::Raw(Box::new((*e, *clock))),
                    || decode(e, clock),
                );
            }
            kind::FLOW_NEW
                if e.key.family != FAMILY_NONE && e.key.encap == ENCAP_VXLAN && e.outer_family != FAMILY_NONE =>
            {
                let ip = |a: &[u8; 16]| match e.outer_family {
                    netpath_common::FAMILY_IPV6 => IpAddr::from(*a),
                    _ => IpAddr::V4(v4(a)),
                };
                if self.peers.insert((e.key.vni, ip(&e.outer_src), ip(&e.outer_dst))) {
                    let mut p = decode(e, clock);
                    p.kind = "vxlan_peer".into();
                    out.push(p);
                }
            }
            _ => {}
        }
        out
    }

    fn arp(
        &mut self,
        a: Arp,
        now: Instant,
        out: &mut Vec<EventRow>,
        pending: impl FnOnce() -> Pending,
        row: impl FnOnce() -> EventRow,
    ) {
        match a.op {
            "request" => {
                self.pending.entry((a.spa, a.tpa)).or_insert_with(|| (now, pending()));
            }
            "reply" => {
                self.pending.remove(&(a.tpa, a.spa));
            }
            _ => {}
        }
        // 0.0.0.0 is a probe (RFC 5227), not a claim.
        if a.spa.is_unspecified() {
            return;
        }
        match self.owners.entry(a.spa) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (first, seen) = *o.get();
                let stale = now.duration_since(seen) > self.arp_memory;
                if first != a.sha && !stale {
                    if self.reported_conflicts.insert((a.spa, first, a.sha)) {
                        let mut c = row();
                        c.kind = "arp_conflict".into();
                        c.previous_mac = Some(inline::mac(&first).to_string());
                        out.push(c);
                    }
                } else {
                    *o.get_mut() = (a.sha, now);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((a.sha, now));
            }
        }
    }

    /// Requests whose time ran out.
    pub fn tick(&mut self, now: Instant) -> Vec<EventRow> {
        let timeout = self.arp_timeout;
        let expired: Vec<(Ipv4Addr, Ipv4Addr)> = self
            .pending
            .iter()
            .filter(|(_, (t, _))| now.duration_since(*t) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in expired {
            if let Some((t, p)) = self.pending.remove(&k) {
                let mut r = p.into_row();
                r.kind = "arp_unanswered".into();
                r.waited_ms = Some(now.duration_since(t).as_millis() as u64);
                out.push(r);
            }
        }
        let memory = self.arp_memory;
        self.owners.retain(|_, (_, seen)| now.duration_since(*seen) <= memory);
        out
    }
}

/// Flows that stopped (idle past `idle`) or vanished from the table (the LRU evicted them):
/// found by comparing successive scans of the flow table.
pub struct Ager {
    pub idle: Duration,
    /// key -> (last_seen ns, ended)
    known: HashMap<FlowKey, (u64, bool)>,
}

impl Ager {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            known: HashMap::new(),
        }
    }

    /// One scan: `flows` is the table now, `now_ns` CLOCK_MONOTONIC; `deleted` holds keys netpath
    /// removed itself (their interface went away). Returns (key, value, reason) of ended flows.
    pub fn scan(
        &mut self,
        flows: &[(FlowKey, netpath_common::FlowValue)],
        now_ns: u64,
    ) -> Vec<(FlowKey, netpath_common::FlowValue, u8)> {
        let mut out = Vec::new();
        let mut present = HashSet::with_capacity(flows.len());
        for (k, v) in flows {
            present.insert(*k);
            let idle = now_ns.saturating_sub(v.last_seen) >= self.idle.as_nanos() as u64;
            let e = self.known.entry(*k).or_insert((v.last_seen, false));
            if v.last_seen != e.0 {
                // Active again after ending: a new life of the same flow.
                *e = (v.last_seen, false);
            }
            if idle && !e.1 {
                e.1 = true;
                out.push((*k, *v, end_reason::AGED));
            }
        }
        let gone: Vec<FlowKey> = self.known.keys().filter(|k| !present.contains(k)).copied().collect();
        for k in gone {
            if let Some((last, ended)) = self.known.remove(&k) {
                if !ended {
                    let v = netpath_common::FlowValue {
                        last_seen: last,
                        ..Default::default()
                    };
                    out.push((k, v, end_reason::EVICTED));
                }
            }
        }
        out
    }

    /// Forget flows netpath deleted itself (an interface went away): they ended for that reason.
    pub fn forget_ifindex(&mut self, ifindex: u32) {
        self.known.retain(|k, _| k.ifindex != ifindex);
    }
}

/// A user-space flow_end row.
pub fn flow_end_row(k: &FlowKey, v: &netpath_common::FlowValue, reason: u8, clock: &Clock) -> EventRow {
    let mut r = EventRow {
        time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        kind: "flow_end".into(),
        ifindex: k.ifindex,
        direction: super::direction_name(k.direction).into(),
        reason: end_reason::NAMES.get(reason as usize).map(|s| s.to_string()),
        ..EventRow::default()
    };
    with_key(&mut r, k);
    if v.packets > 0 {
        r.packets = Some(v.packets);
        r.bytes = Some(v.bytes);
        r.last_seen = Some(clock.rfc3339(v.last_seen));
    }
    r
}

/// A `doctor` event: `f`'s check changed state for its subject (`reason` is the new status).
pub fn doctor_row(f: &super::doctor::Finding) -> EventRow {
    EventRow {
        time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        kind: kind::name(kind::DOCTOR).into(),
        reason: Some(f.status.name().into()),
        check: Some(f.check.clone()),
        subject: Some(f.subject.clone()),
        evidence: Some(f.evidence.clone()),
        fix: f.fix.clone(),
        ..EventRow::default()
    }
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub iface: Option<String>,
    pub pod: Option<String>,
    pub kinds: Vec<String>,
    /// Events about an address in this network: the flow's endpoints (inner or outer), ARP's
    /// sender and target, an ICMP error's quoted packet.
    pub ip: Option<super::Cidr>,
    /// Events about TCP or UDP traffic from or to this port (an ICMP error's quoted packet too).
    pub port: Option<u16>,
}

impl EventFilter {
    pub fn parse_kinds(kinds: &[String]) -> Result<Vec<String>> {
        for k in kinds {
            if kind::from_name(k).is_none() {
                return Err(Error::BadArgument(format!(
                    "unknown event kind '{k}' (one of {})",
                    kind::NAMES.join(", ")
                )));
            }
        }
        Ok(kinds.to_vec())
    }

    pub fn matches(&self, r: &EventRow) -> bool {
        self.iface.as_deref().is_none_or(|i| r.iface == i)
            && (self.kinds.is_empty() || self.kinds.contains(&r.kind))
            && self.pod.as_deref().is_none_or(|p| r.owner.matches(p))
            && self.ip.is_none_or(|net| {
                let q = r.quoted.as_ref();
                [
                    r.src.as_ref(),
                    r.dst.as_ref(),
                    r.outer_src.as_ref(),
                    r.outer_dst.as_ref(),
                    r.sender_ip.as_ref(),
                    r.target_ip.as_ref(),
                    q.map(|q| &q.src),
                    q.map(|q| &q.dst),
                ]
                .into_iter()
                .flatten()
                .any(|a| net.contains_str(a))
            })
            && self.port.is_none_or(|p| {
                super::port_matches(r.proto.as_deref(), r.sport, r.dport, p)
                    || r.quoted
                        .as_ref()
                        .is_some_and(|q| super::port_matches(Some(&q.proto), Some(q.sport), Some(q.dport), p))
            })
    }
}

/// tcpdump-like text: `12:00:01.123456 veth3a1f0c2e (default/tea) ARP who-has 10.244.0.3 tell 10.244.0.2`.
pub fn text(r: &EventRow) -> String {
    let t = r
        .time
        .split('T')
        .nth(1)
        .map(|t| t.trim_end_matches('Z'))
        .unwrap_or(&r.time);
    if r.kind == "doctor" {
        // About the node, not a packet: no interface or direction of its own.
        return format!(
            "{t} DOCTOR {} {} is {}: {}{}",
            opt(&r.check),
            opt(&r.subject),
            opt(&r.reason),
            opt(&r.evidence),
            r.fix.as_deref().map(|f| format!(" (fix: {f})")).unwrap_or_default()
        );
    }
    let who = r.owner.suffix();
    let dir = if r.direction == "ingress" { "in" } else { "out" };
    let mut s = format!("{t} {}{who} {dir} ", r.iface);
    let ep = |a: &Option<String>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) if p != 0 => format!("{a}.{p}"),
        (Some(a), _) => a.clone(),
        _ => "?".into(),
    };
    let flow = format!(
        "{} {} > {}",
        r.proto.as_deref().or(r.family.as_deref()).unwrap_or("?"),
        ep(&r.src, r.sport),
        ep(&r.dst, r.dport)
    );
    // A VXLAN flow: the inner flow, then the underlay endpoints it rides between.
    let vni = match (r.vni, &r.outer_src, &r.outer_dst) {
        (Some(v), Some(os), Some(od)) => format!(" vni {v} outer {os} > {od}"),
        (Some(v), _, _) => format!(" vni {v}"),
        (None, Some(os), Some(od)) => format!(" outer {os} > {od}"),
        _ => String::new(),
    };
    let _ = match r.kind.as_str() {
        "arp" => match r.arp_op.as_deref() {
            Some("request") => write!(s, "ARP who-has {} tell {}", opt(&r.target_ip), opt(&r.sender_ip)),
            Some("reply") => write!(s, "ARP reply {} is-at {}", opt(&r.sender_ip), opt(&r.sender_mac)),
            Some("gratuitous") => write!(s, "ARP gratuitous {} is-at {}", opt(&r.sender_ip), opt(&r.sender_mac)),
            _ => write!(s, "ARP {} {}", opt(&r.arp_op), opt(&r.sender_ip)),
        },
        "arp_unanswered" => write!(
            s,
            "ARP UNANSWERED who-has {} tell {} ({} ms without a reply)",
            opt(&r.target_ip),
            opt(&r.sender_ip),
            r.waited_ms.unwrap_or(0)
        ),
        "arp_conflict" => write!(
            s,
            "ARP CONFLICT {} claimed by {} (was {})",
            opt(&r.sender_ip),
            opt(&r.sender_mac),
            opt(&r.previous_mac)
        ),
        "icmp_error" => {
            let q = r.quoted.clone().unwrap_or_default();
            if matches!(q.proto.as_str(), "icmp" | "icmp6") {
                // A quoted echo: its identifier (0 for other ICMP), as `flows` shows a ping.
                write!(
                    s,
                    "ICMP error type {} code {} from {} about {} {} > {} id {}",
                    r.icmp_type.unwrap_or(0),
                    r.icmp_code.unwrap_or(0),
                    opt(&r.src),
                    q.proto,
                    q.src,
                    q.dst,
                    q.sport
                )
            } else {
                write!(
                    s,
                    "ICMP error type {} code {} from {} about {} {}.{} > {}.{}",
                    r.icmp_type.unwrap_or(0),
                    r.icmp_code.unwrap_or(0),
                    opt(&r.src),
                    q.proto,
                    q.src,
                    q.sport,
                    q.dst,
                    q.dport
                )
            }
        }
        "flow_new" => write!(s, "flow new {flow}{vni}"),
        "flow_end" => write!(
            s,
            "flow end ({}) {flow}{vni}{}",
            opt(&r.reason),
            r.packets
                .map(|p| format!(", {p} packets {} bytes", r.bytes.unwrap_or(0)))
                .unwrap_or_default()
        ),
        "vxlan_peer" => write!(
            s,
            "VXLAN peer vni {} {} > {}",
            r.vni.unwrap_or(0),
            opt(&r.outer_src),
            opt(&r.outer_dst)
        ),
        "malformed" => write!(s, "malformed frame: {}", opt(&r.reason)),
        k => write!(s, "{k}"),
    };
    s
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder as it was before [`EventView`]: the reference the fast path must match.
    mod old {
        // What did not change (family and ARP op names, the key's fields) is the module's own.
        use super::super::*;

        fn mac(m: &[u8; 6]) -> String {
            m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
        }

        fn proto_of(family: u8, proto: u8) -> String {
            flows::proto_name(&FlowKey {
                family,
                proto,
                ..FlowKey::default()
            })
        }

        /// Decode a kernel event (names and owners are the caller's to add).
        pub fn decode(e: &Event, clock: &Clock) -> EventRow {
            let mut r = EventRow {
                time: clock.rfc3339(e.ts),
                kind: kind::name(e.kind).into(),
                iface: String::new(),
                ifindex: e.ifindex,
                direction: crate::model::direction_name(e.direction).into(),
                ..EventRow::default()
            };
            match e.kind {
                kind::MALFORMED => r.reason = malformed::NAMES.get(e.reason as usize).map(|s| s.to_string()),
                kind::ARP => {
                    let (spa, tpa) = (
                        flows::addr(FAMILY_IPV4, &e.key.src),
                        flows::addr(FAMILY_IPV4, &e.key.dst),
                    );
                    r.arp_op = Some(arp_op_name(e.key.arp_op, spa == tpa).into());
                    r.sender_mac = Some(mac(&e.arp_sha));
                    r.target_mac = Some(mac(&e.arp_tha));
                    r.sender_ip = Some(spa);
                    r.target_ip = Some(tpa);
                    if e.key.vlan != 0 {
                        r.vlan = Some(e.key.vlan);
                    }
                }
                kind::ICMP_ERROR => {
                    with_key(&mut r, &e.key);
                    r.icmp_type = Some(e.key.icmp_type);
                    r.icmp_code = Some(e.key.icmp_code);
                    r.quoted = Some(QuotedRow {
                        family: family_name(e.quoted_family).into(),
                        proto: proto_of(e.quoted_family, e.quoted_proto),
                        src: flows::addr(e.quoted_family, &e.quoted_src),
                        dst: flows::addr(e.quoted_family, &e.quoted_dst),
                        sport: e.quoted_sport,
                        dport: e.quoted_dport,
                    });
                }
                _ => {
                    with_key(&mut r, &e.key);
                    if e.kind == kind::FLOW_END {
                        r.reason = end_reason::NAMES.get(e.reason as usize).map(|s| s.to_string());
                    }
                    if e.outer_family != FAMILY_NONE {
                        r.outer_src = Some(flows::addr(e.outer_family, &e.outer_src));
                        r.outer_dst = Some(flows::addr(e.outer_family, &e.outer_dst));
                    }
                }
            }
            r
        }
    }

    /// One event of every kind and shape the ring can carry.
    fn every_kind() -> Vec<Event> {
        use netpath_common::{parse::*, FAMILY_IPV6};
        let v4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            netpath_common::Addr(x)
        };
        let v6 = |s: &str| netpath_common::Addr(s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        let none = netpath_common::Addr([0; 16]);
        let flow = |kind: u8, family: u8, proto: u8, src: netpath_common::Addr, dst: netpath_common::Addr| {
            let mut e = Event {
                kind,
                ts: 1_000_000_123_456,
                ifindex: 7,
                direction: 1,
                ..Event::default()
            };
            e.key.family = family;
            e.key.proto = proto;
            e.key.src = src;
            e.key.dst = dst;
            e.key.sport = 40000;
            e.key.dport = 443;
            e
        };
        let mut out = vec![
            flow(
                kind::FLOW_NEW,
                FAMILY_IPV4,
                IPPROTO_TCP,
                v4([10, 244, 0, 2]),
                v4([10, 96, 0, 10]),
            ),
            flow(kind::FLOW_NEW, FAMILY_IPV6, IPPROTO_UDP, v6("fd00::1"), v6("fe80::1:2")),
            flow(
                kind::FLOW_NEW,
                FAMILY_IPV4,
                47,
                v4([1, 2, 3, 4]),
                v4([255, 255, 255, 0]),
            ),
            flow(
                kind::FLOW_NEW,
                FAMILY_IPV6,
                IPPROTO_ICMPV6,
                v6("::ffff:10.0.0.1"),
                v6("::"),
            ),
            flow(kind::FLOW_NEW, FAMILY_NONE, 0, none, none),
        ];
        let mut vx = flow(
            kind::FLOW_NEW,
            FAMILY_IPV4,
            IPPROTO_TCP,
            v4([10, 244, 1, 2]),
            v4([10, 244, 0, 3]),
        );
        (vx.key.encap, vx.key.vni, vx.key.vlan) = (ENCAP_VXLAN, 1, 100);
        (vx.outer_family, vx.outer_src, vx.outer_dst) = (FAMILY_IPV4, v4([172, 27, 0, 11]), v4([172, 27, 16, 10]));
        out.push(vx);
        let mut vx6 = vx;
        (vx6.outer_family, vx6.outer_src, vx6.outer_dst) = (FAMILY_IPV6, v6("2001:db8::1"), v6("2001:db8::2"));
        out.push(vx6);
        for reason in 0..=end_reason::NAMES.len() as u8 {
            let mut e = flow(
                kind::FLOW_END,
                FAMILY_IPV4,
                IPPROTO_UDP,
                v4([10, 0, 0, 1]),
                v4([10, 0, 0, 2]),
            );
            e.reason = reason;
            out.push(e);
        }
        for (op, spa, tpa, vlan) in [
            (1, [10, 244, 0, 2], [10, 244, 0, 3], 0),
            (2, [10, 244, 0, 3], [10, 244, 0, 2], 0),
            (1, [10, 244, 0, 9], [10, 244, 0, 9], 5),
            (7, [0, 0, 0, 0], [10, 244, 0, 3], 0),
        ] {
            let mut e = flow(kind::ARP, FAMILY_ARP, 0, v4(spa), v4(tpa));
            (e.key.arp_op, e.key.vlan) = (op, vlan);
            (e.arp_sha, e.arp_tha) = ([2, 0, 0xa, 0xf4, 0, 2], [0xff; 6]);
            out.push(e);
        }
        for (family, proto, src, dst) in [
            (FAMILY_IPV4, IPPROTO_UDP, v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            (FAMILY_IPV6, IPPROTO_TCP, v6("fd00::5"), v6("fd00::6")),
            (FAMILY_IPV4, 132, v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
        ] {
            let mut e = flow(
                kind::ICMP_ERROR,
                FAMILY_IPV4,
                IPPROTO_ICMP,
                v4([10, 0, 0, 254]),
                v4([10, 0, 0, 1]),
            );
            (e.key.icmp_type, e.key.icmp_code) = (3, 4);
            (e.quoted_family, e.quoted_proto, e.quoted_src, e.quoted_dst) = (family, proto, src, dst);
            (e.quoted_sport, e.quoted_dport) = (5353, 53);
            out.push(e);
        }
        for reason in 0..=malformed::NAMES.len() as u8 {
            let mut e = flow(kind::MALFORMED, FAMILY_NONE, 0, none, none);
            e.reason = reason;
            out.push(e);
        }
        out.push(flow(99, FAMILY_IPV4, IPPROTO_TCP, v4([10, 0, 0, 1]), v4([10, 0, 0, 2])));
        out
    }

    #[test]
    fn fast_decode_matches_the_old_rows_json_and_text() {
        let clock = Clock::now();
        let owners = [
            Owner::default(),
            Owner {
                netns: Some("cni-1234".into()),
                pod: Some("we\"ird".into()),
                pod_namespace: Some("default".into()),
                role: Some(Role::Pod),
            },
        ];
        for e in every_kind() {
            let mut want = old::decode(&e, &clock);
            assert_eq!(decode(&e, &clock), want, "{e:?}");
            for o in &owners {
                (want.iface, want.owner) = ("veth3a1f\u{e9}".into(), o.clone());
                let view = EventView::new(&e, &clock).owned_by("veth3a1f\u{e9}", o);
                assert_eq!(view.to_row(), want);
                assert_eq!(
                    serde_json::to_string(&view).unwrap(),
                    serde_json::to_string(&want).unwrap()
                );
                assert_eq!(text(&view.to_row()), text(&want));
            }
        }
    }

    #[test]
    fn a_drop_event_carries_its_flow_and_its_site_for_the_daemon_to_name() {
        let clock = Clock::now();
        let mut e = Event {
            kind: kind::DROP,
            ifindex: 7,
            direction: 1,
            ..Event::default()
        };
        e.key.family = FAMILY_IPV4;
        e.key.proto = 17;
        e.key.src = netpath_common::parse::v4_mapped([10, 80, 1, 2]).into();
        e.key.dst = netpath_common::parse::v4_mapped([10, 80, 2, 2]).into();
        (e.key.sport, e.key.dport) = (40000, 9);
        (e.netns, e.drop_reason, e.location) = (4026531840, 3, 0xffff_ffff_8100_0010);
        let r = decode(&e, &clock);
        assert_eq!(r.kind, "drop");
        assert_eq!(
            (r.src.as_deref(), r.dst.as_deref()),
            (Some("10.80.1.2"), Some("10.80.2.2"))
        );
        assert_eq!(r.dport, Some(9));
        assert_eq!(r.direction, "egress");
        let site = r.drop_site.expect("a drop's site");
        assert_eq!(
            (site.netns, site.ifindex, site.reason, site.direction),
            (4026531840, e.ifindex, 3, 1)
        );
        assert_eq!(site.location, 0xffff_ffff_8100_0010);
        let json = serde_json::to_value(&r).unwrap();
        assert!(
            json.get("drop_site").is_none(),
            "the raw site is not part of the JSON: {json}"
        );
        e.kind = kind::FLOW_NEW;
        assert!(decode(&e, &clock).drop_site.is_none());
    }

    #[test]
    fn deriving_from_raw_events_matches_deriving_from_rows() {
        let clock = Clock::now();
        let t0 = Instant::now();
        let (mut raw, mut rows) = (Deriver::default(), Deriver::default());
        let mut events = every_kind();
        // A second MAC claiming 10.244.0.3 (a conflict), then the first one again.
        let mut claim = events
            .iter()
            .find(|e| e.kind == kind::ARP && e.key.arp_op == 2)
            .copied()
            .unwrap();
        claim.arp_sha = [2, 0x66, 0x66, 0x66, 0x66, 0x66];
        events.push(claim);
        // A request nobody answers.
        let mut lonely = claim;
        (lonely.key.arp_op, lonely.key.dst.0[3]) = (1, 77);
        events.push(lonely);
        events.extend(every_kind());
        let mut derived = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            let got = raw.feed_event(e, &clock, now);
            assert_eq!(got, rows.feed(&old::decode(e, &clock), now), "{e:?}");
            derived.extend(got.into_iter().map(|r| r.kind));
        }
        assert_eq!(derived, ["vxlan_peer", "vxlan_peer", "arp_conflict"]);
        let later = t0 + Duration::from_secs(5);
        let (mut a, mut b) = (raw.tick(later), rows.tick(later));
        a.sort_by(|x, y| x.time.cmp(&y.time).then(x.target_ip.cmp(&y.target_ip)));
        b.sort_by(|x, y| x.time.cmp(&y.time).then(x.target_ip.cmp(&y.target_ip)));
        assert_eq!(a, b);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].target_ip.as_deref(), Some("10.244.0.77"));
    }

    /// An aged flow ends now, not at its last packet 30 s ago: a `watch` line stamped with the
    /// last packet would print before lines already printed.
    #[test]
    fn flow_end_rows_are_stamped_when_the_end_is_seen() {
        let clock = Clock::now();
        let before = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let v = netpath_common::FlowValue {
            packets: 3,
            bytes: 300,
            last_seen: clock.mono_now_ns().saturating_sub(30_000_000_000),
            ..Default::default()
        };
        let r = flow_end_row(&FlowKey::default(), &v, end_reason::AGED, &clock);
        assert!(r.time >= before, "{} < {before}", r.time);
        let last = r.last_seen.expect("last_seen");
        assert!(last < before, "{last} >= {before}");
    }

    fn arp(op: &str, spa: &str, tpa: &str, sha: &str) -> EventRow {
        EventRow {
            kind: "arp".into(),
            arp_op: Some(op.into()),
            sender_ip: Some(spa.into()),
            target_ip: Some(tpa.into()),
            sender_mac: Some(sha.into()),
            ..EventRow::default()
        }
    }

    #[test]
    fn unanswered_arp_after_timeout_and_answered_arp_never() {
        let mut d = Deriver::new(Duration::from_millis(500), Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(d
            .feed(&arp("request", "10.0.0.2", "10.0.0.9", "02:00:00:00:00:02"), t0)
            .is_empty());
        assert!(d
            .feed(&arp("request", "10.0.0.2", "10.0.0.3", "02:00:00:00:00:02"), t0)
            .is_empty());
        d.feed(
            &arp("reply", "10.0.0.3", "10.0.0.2", "02:00:00:00:00:03"),
            t0 + Duration::from_millis(10),
        );
        assert!(d.tick(t0 + Duration::from_millis(100)).is_empty());
        let u = d.tick(t0 + Duration::from_millis(600));
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].kind.as_str(), u[0].target_ip.as_deref()),
            ("arp_unanswered", Some("10.0.0.9"))
        );
        assert!(d.tick(t0 + Duration::from_secs(2)).is_empty(), "reported once");
    }

    #[test]
    fn conflict_when_a_second_mac_claims_an_ip_once() {
        let mut d = Deriver::default();
        let t = Instant::now();
        assert!(d
            .feed(&arp("reply", "10.0.0.3", "10.0.0.2", "02:00:00:00:00:03"), t)
            .is_empty());
        let c = d.feed(&arp("reply", "10.0.0.3", "10.0.0.2", "02:66:66:66:66:66"), t);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].kind.as_str(), c[0].previous_mac.as_deref()),
            ("arp_conflict", Some("02:00:00:00:00:03"))
        );
        assert!(d
            .feed(&arp("reply", "10.0.0.3", "10.0.0.2", "02:66:66:66:66:66"), t)
            .is_empty());
        // Probes (sender 0.0.0.0) claim nothing.
        assert!(d
            .feed(&arp("request", "0.0.0.0", "10.0.0.3", "02:77:77:77:77:77"), t)
            .is_empty());
    }

    #[test]
    fn vxlan_peer_once_per_vni_and_vtep_pair() {
        let mut d = Deriver::default();
        let t = Instant::now();
        let f = EventRow {
            kind: "flow_new".into(),
            vni: Some(1),
            outer_src: Some("172.27.0.11".into()),
            outer_dst: Some("172.27.16.10".into()),
            ..EventRow::default()
        };
        assert_eq!(d.feed(&f, t)[0].kind, "vxlan_peer");
        assert!(d.feed(&f, t).is_empty());
    }

    #[test]
    fn ager_reports_idle_and_evicted_flows_once() {
        let mut a = Ager::new(Duration::from_secs(10));
        let k1 = FlowKey {
            ifindex: 1,
            sport: 1,
            ..FlowKey::default()
        };
        let k2 = FlowKey {
            ifindex: 1,
            sport: 2,
            ..FlowKey::default()
        };
        let v = |last: u64| netpath_common::FlowValue {
            packets: 1,
            last_seen: last,
            ..Default::default()
        };
        let s = 1_000_000_000u64;
        assert!(a.scan(&[(k1, v(100 * s)), (k2, v(100 * s))], 101 * s).is_empty());
        let ended = a.scan(&[(k1, v(100 * s))], 111 * s);
        let reasons: Vec<u8> = ended.iter().map(|e| e.2).collect();
        assert!(
            reasons.contains(&end_reason::AGED) && reasons.contains(&end_reason::EVICTED),
            "{reasons:?}"
        );
        assert!(
            a.scan(&[(k1, v(100 * s))], 120 * s).is_empty(),
            "each end reported once"
        );
        // Active again, then idle again: a new end.
        assert!(a.scan(&[(k1, v(121 * s))], 122 * s).is_empty());
        assert_eq!(a.scan(&[(k1, v(121 * s))], 140 * s).len(), 1);
    }

    #[test]
    fn watch_filters_by_ip_and_port_and_shows_vxlan_outer_addresses() {
        let mut e = Event {
            kind: kind::FLOW_NEW,
            ifindex: 2,
            outer_family: FAMILY_IPV4,
            ..Event::default()
        };
        e.key.family = FAMILY_IPV4;
        e.key.proto = netpath_common::parse::IPPROTO_TCP;
        e.key.src[..4].copy_from_slice(&[10, 244, 0, 4]);
        e.key.dst[..4].copy_from_slice(&[10, 244, 1, 3]);
        (e.key.sport, e.key.dport) = (46584, 5201);
        e.key.encap = ENCAP_VXLAN;
        e.key.vni = 1;
        e.outer_src[..4].copy_from_slice(&[172, 27, 0, 11]);
        e.outer_dst[..4].copy_from_slice(&[172, 27, 16, 10]);
        let mut r = decode(&e, &Clock::now());
        r.iface = "ul0".into();
        let t = text(&r);
        assert!(
            t.ends_with("flow new tcp 10.244.0.4.46584 > 10.244.1.3.5201 vni 1 outer 172.27.0.11 > 172.27.16.10"),
            "{t}"
        );
        let ip = |s: &str| EventFilter {
            ip: Some(crate::model::Cidr::parse(s).unwrap()),
            ..Default::default()
        };
        assert!(ip("10.244.1.0/24").matches(&r) && ip("172.27.16.10").matches(&r));
        assert!(!ip("10.244.2.0/24").matches(&r));
        let port = |p: u16| EventFilter {
            port: Some(p),
            ..Default::default()
        };
        assert!(port(5201).matches(&r) && port(46584).matches(&r) && !port(53).matches(&r));
        // An ICMP error about a UDP packet: the quoted packet's addresses and ports count.
        let err = EventRow {
            kind: "icmp_error".into(),
            proto: Some("icmp".into()),
            src: Some("10.244.0.1".into()),
            quoted: Some(QuotedRow {
                family: "ipv4".into(),
                proto: "udp".into(),
                src: "10.244.0.2".into(),
                dst: "10.244.9.9".into(),
                sport: 5353,
                dport: 53,
            }),
            ..EventRow::default()
        };
        assert!(port(53).matches(&err) && ip("10.244.9.9").matches(&err));
    }

    /// An ICMP error about a ping names the ping by its echo id; about UDP, by its ports.
    #[test]
    fn icmp_error_text_keeps_the_quoted_echo_id() {
        let quoted = |proto: &str, sport: u16, dport: u16| EventRow {
            kind: "icmp_error".into(),
            icmp_type: Some(11),
            src: Some("10.244.0.1".into()),
            quoted: Some(QuotedRow {
                family: "ipv4".into(),
                proto: proto.into(),
                src: "10.244.0.2".into(),
                dst: "10.244.9.9".into(),
                sport,
                dport,
            }),
            ..EventRow::default()
        };
        let t = text(&quoted("icmp", 4660, 0));
        assert!(t.contains("about icmp 10.244.0.2 > 10.244.9.9 id 4660"), "{t}");
        let t = text(&quoted("udp", 5353, 53));
        assert!(t.contains("about udp 10.244.0.2.5353 > 10.244.9.9.53"), "{t}");
    }

    #[test]
    fn decode_and_text_of_an_arp_request() {
        let mut e = Event {
            kind: kind::ARP,
            ifindex: 5,
            ..Event::default()
        };
        e.key.family = FAMILY_ARP;
        e.key.arp_op = 1;
        e.key.src[..4].copy_from_slice(&[10, 244, 0, 2]);
        e.key.dst[..4].copy_from_slice(&[10, 244, 0, 3]);
        e.arp_sha = [2, 0, 0, 0, 0, 2];
        let mut r = decode(&e, &Clock::now());
        r.iface = "veth3a1f0c2e".into();
        r.owner.pod = Some("tea-6fb46d".into());
        r.owner.pod_namespace = Some("default".into());
        assert_eq!(r.arp_op.as_deref(), Some("request"));
        let t = text(&r);
        assert!(
            t.contains("veth3a1f0c2e (default/tea-6fb46d)") && t.ends_with("ARP who-has 10.244.0.3 tell 10.244.0.2"),
            "{t}"
        );
        let f = EventFilter {
            pod: Some("default/tea-6fb46d".into()),
            kinds: vec!["arp".into()],
            ..Default::default()
        };
        assert!(f.matches(&r));
        assert!(!EventFilter {
            kinds: vec!["flow_new".into()],
            ..Default::default()
        }
        .matches(&r));
        assert!(EventFilter::parse_kinds(&["nope".into()]).is_err());
    }

    #[test]
    fn a_doctor_event_carries_the_finding_and_prints_its_fix() {
        use crate::model::doctor::{Finding, Status};
        let f = Finding::bad(
            "rp_filter",
            Status::Fail,
            "ul0",
            "rp_filter=1 on ul0",
            Some("sysctl -w net.ipv4.conf.ul0.rp_filter=2".into()),
        );
        let r = doctor_row(&f);
        assert_eq!((r.kind.as_str(), r.reason.as_deref()), ("doctor", Some("fail")));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["check"], "rp_filter");
        assert_eq!(j["subject"], "ul0");
        assert_eq!(j["fix"], "sysctl -w net.ipv4.conf.ul0.rp_filter=2");
        assert_eq!(serde_json::from_value::<EventRow>(j).unwrap(), r);
        let t = text(&r);
        assert!(
            t.contains("DOCTOR rp_filter ul0 is fail: rp_filter=1 on ul0 (fix: sysctl -w"),
            "{t}"
        );
        // Other kinds' JSON does not grow the doctor's fields.
        let other = serde_json::to_value(EventRow::default()).unwrap();
        assert!(other.get("check").is_none() && other.get("fix").is_none(), "{other}");
        // `watch --kind doctor` is a kind the filter takes.
        let kinds = EventFilter::parse_kinds(&["doctor".into()]).unwrap();
        assert!(EventFilter {
            kinds,
            ..Default::default()
        }
        .matches(&r));
        let ok = doctor_row(&Finding::ok("rp_filter", "ul0", "rp_filter=2 on ul0"));
        assert!(text(&ok).ends_with("is ok: rp_filter=2 on ul0"), "{}", text(&ok));
    }
}
