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
    time::{Duration, Instant},
};

use netpath_common::{
    event::{end_reason, kind, Event},
    malformed, FlowKey, ENCAP_VXLAN, FAMILY_ARP, FAMILY_IPV4, FAMILY_NONE,
};

use super::{
    flows::{self, Clock},
    owner::Owner,
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

fn mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn family_name(f: u8) -> &'static str {
    match f {
        FAMILY_IPV4 => "ipv4",
        netpath_common::FAMILY_IPV6 => "ipv6",
        FAMILY_ARP => "arp",
        _ => "none",
    }
}

fn proto_of(family: u8, proto: u8) -> String {
    flows::proto_name(&FlowKey {
        family,
        proto,
        ..FlowKey::default()
    })
}

fn arp_op_name(op: u8, gratuitous: bool) -> &'static str {
    match (op, gratuitous) {
        (_, true) => "gratuitous",
        (1, _) => "request",
        (2, _) => "reply",
        _ => "other",
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

/// Decode a kernel event (names and owners are the caller's to add).
pub fn decode(e: &Event, clock: &Clock) -> EventRow {
    let mut r = EventRow {
        time: clock.rfc3339(e.ts),
        kind: kind::name(e.kind).into(),
        iface: String::new(),
        ifindex: e.ifindex,
        direction: super::direction_name(e.direction).into(),
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

/// Events derived in user space from the kernel's: ARP requests nobody answered, one IP claimed
/// by two MACs, VXLAN peers seen for the first time.
pub struct Deriver {
    /// How long a request may wait for its reply.
    pub arp_timeout: Duration,
    /// How long an IP's MAC is remembered for conflict detection.
    pub arp_memory: Duration,
    /// (sender ip, target ip) -> (first seen, the request's row).
    pending: HashMap<(String, String), (Instant, EventRow)>,
    /// ip -> (mac, last seen).
    owners: HashMap<String, (String, Instant)>,
    reported_conflicts: HashSet<(String, String, String)>,
    peers: HashSet<(u32, String, String)>,
}

impl Default for Deriver {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Deriver {
    pub fn new(arp_timeout: Duration, arp_memory: Duration) -> Self {
        Self {
            arp_timeout,
            arp_memory,
            pending: HashMap::new(),
            owners: HashMap::new(),
            reported_conflicts: HashSet::new(),
            peers: HashSet::new(),
        }
    }

    /// Learn from one event; returns the events it implies now.
    pub fn feed(&mut self, r: &EventRow, now: Instant) -> Vec<EventRow> {
        let mut out = Vec::new();
        if r.kind == "arp" {
            let (Some(spa), Some(tpa), Some(sha)) = (&r.sender_ip, &r.target_ip, &r.sender_mac) else {
                return out;
            };
            match r.arp_op.as_deref() {
                Some("request") => {
                    self.pending
                        .entry((spa.clone(), tpa.clone()))
                        .or_insert_with(|| (now, r.clone()));
                }
                Some("reply") => {
                    self.pending.remove(&(tpa.clone(), spa.clone()));
                }
                _ => {}
            }
            // 0.0.0.0 is a probe (RFC 5227), not a claim.
            if spa != "0.0.0.0" {
                let stale = self
                    .owners
                    .get(spa)
                    .is_some_and(|(_, seen)| now.duration_since(*seen) > self.arp_memory);
                match self.owners.get(spa) {
                    Some((first, _)) if first != sha && !stale => {
                        let key = (spa.clone(), first.clone(), sha.clone());
                        if self.reported_conflicts.insert(key) {
                            let mut c = r.clone();
                            c.kind = "arp_conflict".into();
                            c.previous_mac = Some(first.clone());
                            out.push(c);
                        }
                    }
                    _ => {
                        self.owners.insert(spa.clone(), (sha.clone(), now));
                    }
                }
                if let Some(o) = self.owners.get_mut(spa) {
                    if &o.0 == sha {
                        o.1 = now;
                    }
                }
            }
        }
        if r.kind == "flow_new" {
            if let (Some(vni), Some(a), Some(b)) = (r.vni, &r.outer_src, &r.outer_dst) {
                if self.peers.insert((vni, a.clone(), b.clone())) {
                    let mut p = r.clone();
                    p.kind = "vxlan_peer".into();
                    out.push(p);
                }
            }
        }
        out
    }

    /// Requests whose time ran out.
    pub fn tick(&mut self, now: Instant) -> Vec<EventRow> {
        let timeout = self.arp_timeout;
        let expired: Vec<(String, String)> = self
            .pending
            .iter()
            .filter(|(_, (t, _))| now.duration_since(*t) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in expired {
            if let Some((t, mut r)) = self.pending.remove(&k) {
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
}
