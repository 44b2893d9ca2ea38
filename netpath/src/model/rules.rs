//! Fast-path rules: what `netpath rule add|list|del` and `POST/GET/DELETE /v1/rules` manage.
//!
//! The rule table is a pinned BPF array with two banks: changes are written to the inactive bank
//! and published by flipping `Config::rules_bank`, so the datapath never sees a half-written
//! table, and the rules survive daemon restarts with the pins. Invalid rules are refused before
//! anything is written.
use std::net::IpAddr;

use netpath_common::{
    class,
    rule::{action, disabled, Rule, CLASS_ANY, DIR_ANY, MAX_RULES},
    DIR_EGRESS, DIR_INGRESS, FAMILY_IPV4, FAMILY_IPV6,
};

use crate::error::{Error, Result};

/// A rule as a person writes it (CLI flags, API JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Interface the frame is seen on (any when absent).
    #[serde(default)]
    pub iface: Option<String>,
    /// ingress, egress or any (default any).
    #[serde(default)]
    pub direction: Option<String>,
    /// arp, icmp, icmp6, vxlan, tcp, udp, ... or any (default any).
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub dst: Option<String>,
    #[serde(default)]
    pub dst_mac: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// pass, drop, redirect or mirror.
    pub action: String,
    /// Target of redirect / mirror.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub priority: Option<u32>,
    /// Accept a drop or redirect that matches every frame (no class, address, MAC or port).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// A rule as it is listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleRow {
    pub id: u32,
    pub priority: u32,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub iface: Option<String>,
    pub direction: String,
    pub class: String,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub dst_mac: Option<String>,
    pub port: Option<u16>,
    pub action: String,
    pub target: Option<String>,
    /// Redirects delivered straight into the target veth's peer namespace.
    pub peer: bool,
    pub hits_packets: u64,
    pub hits_bytes: u64,
}

/// Parse `a.b.c.d/len`, `a.b.c.d` (a /32), or IPv6 likewise.
pub fn parse_cidr(s: &str) -> Result<(u8, [u8; 16], u8)> {
    let bad = |why: &str| Error::BadArgument(format!("bad CIDR '{s}': {why}"));
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (
            a,
            Some(l.parse::<u8>().map_err(|_| bad("prefix length is not a number"))?),
        ),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let (family, bytes, max) = match ip {
        IpAddr::V4(v4) => (FAMILY_IPV4, netpath_common::parse::v4_mapped(v4.octets()), 32),
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets(), 128),
    };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(bad(&format!("prefix length {len} exceeds {max}")));
    }
    // 10.244.0.2/24 is either a typo for the network or for the address: refuse to guess.
    // An IPv4 address sits in the first four bytes (netpath_common's layout), like IPv6's prefix.
    let masked = mask(&bytes, u32::from(len));
    if masked != bytes {
        let network = crate::model::flows::addr(family, &masked);
        return Err(bad(&format!(
            "host bits set; the network is {network}/{len}, the address alone {addr}/{max}"
        )));
    }
    Ok((family, bytes, len))
}

/// `a` with every bit past the first `bits` cleared.
fn mask(a: &[u8; 16], bits: u32) -> [u8; 16] {
    let mut out = *a;
    for (i, b) in out.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i as u32 * 8).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    out
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || Error::BadArgument(format!("bad MAC address '{s}' (want aa:bb:cc:dd:ee:ff)"));
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(m)
}

/// How names become interfaces, and what the daemon knows about them.
pub trait Resolver {
    /// ifindex of an interface (or of the veth in front of a pod), with a clear error.
    fn ifindex(&self, name: &str) -> Result<u32>;
    /// Is this ifindex the host side of a veth (so a redirect can go to its peer)?
    fn is_veth(&self, ifindex: u32) -> bool;
    /// Is the interface observed with XDP (where only pass and drop can be applied)?
    fn is_xdp(&self, ifindex: u32) -> bool;
}

/// Turn a spec into a rule, or say what is wrong with it. Nothing is written here.
pub fn build(spec: &RuleSpec, id: u32, resolver: &dyn Resolver) -> Result<Rule> {
    let act = match spec.action.as_str() {
        "pass" => action::PASS,
        "drop" => action::DROP,
        "redirect" => action::REDIRECT,
        "mirror" => action::MIRROR,
        a => {
            return Err(Error::BadArgument(format!(
                "unknown action '{a}' (pass, drop, redirect, mirror)"
            )))
        }
    };
    let direction = match spec.direction.as_deref().unwrap_or("any") {
        "ingress" => DIR_INGRESS,
        "egress" => DIR_EGRESS,
        "any" => DIR_ANY,
        d => {
            return Err(Error::BadArgument(format!(
                "unknown direction '{d}' (ingress, egress, any)"
            )))
        }
    };
    let class = match spec.class.as_deref().unwrap_or("any") {
        "any" => CLASS_ANY,
        c => class::from_name(c)
            .ok_or_else(|| Error::BadArgument(format!("unknown class '{c}' (any, {})", class::NAMES.join(", "))))?,
    };
    let mut r = Rule {
        id,
        priority: spec.priority.unwrap_or(1000),
        enabled: 1,
        action: act,
        direction,
        class,
        ..Rule::default()
    };
    if let Some(i) = &spec.iface {
        r.ifindex = resolver.ifindex(i)?;
    }
    for (which, cidr) in [("src", &spec.src), ("dst", &spec.dst)] {
        if let Some(c) = cidr {
            let (family, addr, len) = parse_cidr(c)?;
            if r.family != 0 && r.family != family {
                return Err(Error::BadArgument(
                    "src and dst CIDRs are of different address families".into(),
                ));
            }
            r.family = family;
            if which == "src" {
                (r.src, r.src_prefix) = (addr, len);
            } else {
                (r.dst, r.dst_prefix) = (addr, len);
            }
        }
    }
    if let Some(m) = &spec.dst_mac {
        r.dst_mac = parse_mac(m)?;
        r.match_mac = 1;
    }
    if let Some(p) = spec.port {
        if p == 0 {
            return Err(Error::BadArgument(
                "port 0 matches nothing; leave --port out to match any".into(),
            ));
        }
        if !matches!(class, CLASS_ANY) && class != class::TCP && class != class::UDP {
            return Err(Error::BadArgument(format!(
                "--port needs class tcp, udp or any, not {}",
                class::name(class)
            )));
        }
        r.port = p;
    }
    match (act, &spec.target) {
        (action::REDIRECT | action::MIRROR, None) => {
            return Err(Error::BadArgument(format!("{} needs a target interface", spec.action)));
        }
        (action::REDIRECT | action::MIRROR, Some(t)) => {
            r.target_ifindex = resolver.ifindex(t)?;
            if r.ifindex != 0 && r.target_ifindex == r.ifindex {
                return Err(Error::BadArgument(format!(
                    "{} to {t}, the interface the rule matches on, would loop",
                    spec.action
                )));
            }
            if r.ifindex != 0 && resolver.is_xdp(r.ifindex) {
                return Err(Error::BadArgument(format!(
                    "{} is observed with XDP, where netpath applies only pass and drop: an XDP redirect to a veth \
                     drops frames unless the target's peer runs XDP, and loses TCP checksum offload. Attach it with \
                     --mode tc to redirect or mirror",
                    spec.iface.as_deref().unwrap_or("?")
                )));
            }
            // Into the pod: skip the target veth's transmit path and the bridge entirely.
            r.peer = u8::from(act == action::REDIRECT && resolver.is_veth(r.target_ifindex));
        }
        (_, Some(_)) => return Err(Error::BadArgument(format!("{} takes no target", spec.action))),
        _ => {}
    }
    let narrowed = spec.class.as_deref().is_some_and(|c| c != "any")
        || spec.src.is_some()
        || spec.dst.is_some()
        || spec.dst_mac.is_some()
        || spec.port.is_some();
    if matches!(act, action::DROP | action::REDIRECT) && !narrowed && !spec.force {
        let what = match &spec.target {
            Some(t) => format!("redirect all of it to {t}"),
            None => "drop all of it".into(),
        };
        let on = match &spec.iface {
            Some(i) => format!("on {i}"),
            None => "on every observed interface".into(),
        };
        return Err(Error::BadArgument(format!(
            "this rule matches every frame {on} (no --class, --src, --dst, --dst-mac or --port) and would {what}, \
             cutting that traffic off; narrow it, or add --force if that is what you want"
        )));
    }
    Ok(r)
}

/// Slot order: by priority, then id (stable).
pub fn sorted(mut rules: Vec<Rule>) -> Vec<Rule> {
    rules.sort_by_key(|r| (r.priority, r.id));
    rules
}

/// Add a rule to a table (or refuse: full).
pub fn with_added(existing: &[Rule], rule: Rule) -> Result<Vec<Rule>> {
    if existing.len() >= MAX_RULES {
        return Err(Error::BadArgument(format!(
            "the rule table is full ({MAX_RULES} rules); delete one first"
        )));
    }
    let mut v = existing.to_vec();
    v.push(rule);
    Ok(sorted(v))
}

/// The next id: never one handed out before (`issued` is the highest so far, kept with the pins),
/// and never one sharing a hit-counter slot (`id % MAX_RULE_IDS`) with a rule in the table.
pub fn next_id(existing: &[Rule], issued: u32) -> u32 {
    let mut id = existing.iter().map(|r| r.id).max().unwrap_or(0).max(issued);
    loop {
        id = id.wrapping_add(1).max(1);
        let slot = id % netpath_common::rule::MAX_RULE_IDS;
        if !existing
            .iter()
            .any(|r| r.id % netpath_common::rule::MAX_RULE_IDS == slot)
        {
            return id;
        }
    }
}

/// Rules to disable because an interface they use went away.
pub fn disable_for_ifindex(rules: &mut [Rule], ifindex: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for r in rules.iter_mut() {
        if r.enabled != 0 && (r.ifindex == ifindex || (r.target_ifindex == ifindex && r.target_ifindex != 0)) {
            r.enabled = 0;
            r.disabled_reason = disabled::INTERFACE_GONE;
            ids.push(r.id);
        }
    }
    ids
}

pub fn row(r: &Rule, name_of: &dyn Fn(u32) -> String, hits: (u64, u64)) -> RuleRow {
    let cidr = |a: &[u8; 16], len: u8| {
        (r.family != 0 && len > 0).then(|| format!("{}/{len}", crate::model::flows::addr(r.family, a)))
    };
    RuleRow {
        id: r.id,
        priority: r.priority,
        enabled: r.enabled != 0,
        disabled_reason: (r.enabled == 0).then(|| {
            disabled::NAMES
                .get(r.disabled_reason as usize)
                .copied()
                .unwrap_or("")
                .to_string()
        }),
        iface: (r.ifindex != 0).then(|| name_of(r.ifindex)),
        direction: match r.direction {
            DIR_INGRESS => "ingress",
            DIR_EGRESS => "egress",
            _ => "any",
        }
        .into(),
        class: if r.class == CLASS_ANY {
            "any".into()
        } else {
            class::name(r.class).into()
        },
        src: cidr(&r.src, r.src_prefix),
        dst: cidr(&r.dst, r.dst_prefix),
        dst_mac: (r.match_mac != 0).then(|| {
            r.dst_mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }),
        port: (r.port != 0).then_some(r.port),
        action: action::NAMES.get(r.action as usize).copied().unwrap_or("?").into(),
        target: (r.target_ifindex != 0).then(|| name_of(r.target_ifindex)),
        peer: r.peer != 0,
        hits_packets: hits.0,
        hits_bytes: hits.1,
    }
}

pub fn table(rows: &[RuleRow]) -> String {
    let mut t = super::Columns::new(&[
        ">ID", ">PRIO", "STATE", "IFACE", "DIR", "CLASS", "SRC", "DST", ">PORT", "ACTION", "TARGET", ">PACKETS",
        ">BYTES",
    ]);
    for r in rows {
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let state = if r.enabled {
            "on".to_string()
        } else {
            format!("off:{}", r.disabled_reason.as_deref().unwrap_or(""))
        };
        let target = match (&r.target, r.peer) {
            (Some(t), true) => format!("{t} (peer)"),
            (t, _) => dash(t),
        };
        t.row(vec![
            r.id.to_string(),
            r.priority.to_string(),
            state,
            dash(&r.iface),
            r.direction.clone(),
            r.class.clone(),
            dash(&r.src),
            dash(&r.dst),
            r.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.action.clone(),
            target,
            r.hits_packets.to_string(),
            r.hits_bytes.to_string(),
        ]);
    }
    let mut s = t.render();
    if rows.is_empty() {
        s.push_str("(no rules)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Resolver for Fake {
        fn ifindex(&self, name: &str) -> Result<u32> {
            match name {
                "vethA" => Ok(5),
                "vethB" => Ok(6),
                "ul0" => Ok(2),
                n => Err(Error::UnknownInterface {
                    name: n.into(),
                    ns: String::new(),
                    available: "vethA, vethB, ul0".into(),
                }),
            }
        }
        fn is_veth(&self, i: u32) -> bool {
            i == 5 || i == 6
        }
        fn is_xdp(&self, i: u32) -> bool {
            i == 2
        }
    }

    fn spec(action: &str) -> RuleSpec {
        RuleSpec {
            action: action.into(),
            ..RuleSpec::default()
        }
    }

    #[test]
    fn the_examples_from_the_docs_build() {
        let r = build(
            &RuleSpec {
                iface: Some("vethA".into()),
                class: Some("icmp".into()),
                target: Some("vethB".into()),
                ..spec("redirect")
            },
            1,
            &Fake,
        )
        .unwrap();
        assert_eq!(
            (r.ifindex, r.class, r.action, r.target_ifindex, r.peer),
            (5, class::ICMP, action::REDIRECT, 6, 1)
        );
        let r = build(
            &RuleSpec {
                class: Some("arp".into()),
                target: Some("vethB".into()),
                ..spec("mirror")
            },
            2,
            &Fake,
        )
        .unwrap();
        assert_eq!((r.ifindex, r.action, r.peer), (0, action::MIRROR, 0));
        let r = build(
            &RuleSpec {
                src: Some("10.244.0.0/16".into()),
                dst: Some("10.244.1.3".into()),
                port: Some(80),
                class: Some("tcp".into()),
                ..spec("drop")
            },
            3,
            &Fake,
        )
        .unwrap();
        assert_eq!(
            (r.family, r.src_prefix, r.dst_prefix, r.port),
            (FAMILY_IPV4, 16, 32, 80)
        );
    }

    #[test]
    fn bad_rules_say_why() {
        let err = |s: RuleSpec| build(&s, 1, &Fake).unwrap_err().to_string();
        assert!(err(RuleSpec {
            iface: Some("nope0".into()),
            ..spec("drop")
        })
        .contains("nope0"));
        assert!(err(RuleSpec {
            src: Some("10.0.0.0/33".into()),
            ..spec("drop")
        })
        .contains("exceeds 32"));
        assert!(err(RuleSpec {
            src: Some("10.0.0.x/8".into()),
            ..spec("drop")
        })
        .contains("not an IP"));
        assert!(err(RuleSpec {
            src: Some("10.0.0.0/8".into()),
            dst: Some("fd00::/8".into()),
            ..spec("drop")
        })
        .contains("families"));
        assert!(err(RuleSpec {
            iface: Some("vethA".into()),
            target: Some("vethA".into()),
            ..spec("redirect")
        })
        .contains("loop"));
        assert!(err(spec("redirect")).contains("target"));
        assert!(err(spec("teleport")).contains("unknown action"));
        assert!(err(RuleSpec {
            class: Some("sctp".into()),
            ..spec("drop")
        })
        .contains("unknown class"));
        assert!(err(RuleSpec {
            iface: Some("ul0".into()),
            target: Some("vethB".into()),
            ..spec("redirect")
        })
        .contains("XDP"));
        assert!(err(RuleSpec {
            dst_mac: Some("zz".into()),
            ..spec("drop")
        })
        .contains("MAC"));
        assert!(err(RuleSpec {
            port: Some(53),
            class: Some("icmp".into()),
            ..spec("drop")
        })
        .contains("--port"));
        // Host bits: a typo for the network or for the address, never silently one of them.
        let e = err(RuleSpec {
            src: Some("10.244.0.2/24".into()),
            class: Some("tcp".into()),
            ..spec("drop")
        });
        assert!(
            e.contains("host bits") && e.contains("10.244.0.0/24") && e.contains("10.244.0.2/32"),
            "{e}"
        );
        assert!(err(RuleSpec {
            dst: Some("fd00::1/64".into()),
            class: Some("tcp".into()),
            ..spec("drop")
        })
        .contains("fd00::/64"));
        assert_eq!(parse_cidr("10.244.0.0/24").unwrap().2, 24);
        assert_eq!(parse_cidr("10.244.0.2").unwrap().2, 32);
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().2, 0);
        // Catch-all drops and redirects cut traffic: only with force.
        let catch_all = RuleSpec {
            iface: Some("vethA".into()),
            target: Some("vethB".into()),
            ..spec("redirect")
        };
        let e = err(catch_all.clone());
        assert!(e.contains("every frame on vethA") && e.contains("--force"), "{e}");
        assert!(err(RuleSpec {
            direction: Some("ingress".into()),
            class: Some("any".into()),
            ..spec("drop")
        })
        .contains("every frame on every observed interface"));
        assert!(build(
            &RuleSpec {
                force: true,
                ..catch_all
            },
            1,
            &Fake
        )
        .is_ok());
        assert!(build(&spec("pass"), 1, &Fake).is_ok());
        let full: Vec<Rule> = (1..=MAX_RULES as u32)
            .map(|id| Rule { id, ..Rule::default() })
            .collect();
        assert!(with_added(&full, Rule::default())
            .unwrap_err()
            .to_string()
            .contains("full"));
    }

    #[test]
    fn fastpath_text_says_each_word_once() {
        let st = FastpathStatus {
            enabled: true,
            bridge: Some("cni0".into()),
            ..FastpathStatus::default()
        };
        let t = st.text();
        assert!(t.starts_with("fast path: on (bridge cni0), 0 frames redirected"), "{t}");
        assert!(!t.contains("on on"), "{t}");
    }

    #[test]
    fn table_order_ids_and_interface_loss() {
        let a = Rule {
            id: 1,
            priority: 500,
            enabled: 1,
            ifindex: 5,
            target_ifindex: 6,
            ..Rule::default()
        };
        let b = Rule {
            id: 2,
            priority: 100,
            enabled: 1,
            ..Rule::default()
        };
        let t = with_added(&[a], b).unwrap();
        assert_eq!(t.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(next_id(&t, 0), 3);
        // Deleted ids are not handed out again, nor ids whose hit counters a rule still uses.
        assert_eq!(next_id(&[], 7), 8);
        assert_eq!(next_id(&t, 1), 3);
        let one = [Rule {
            id: 1,
            ..Rule::default()
        }];
        assert_eq!(
            next_id(&one, netpath_common::rule::MAX_RULE_IDS),
            netpath_common::rule::MAX_RULE_IDS + 2
        );
        let mut t = t;
        assert_eq!(disable_for_ifindex(&mut t, 6), [1]);
        assert_eq!((t[1].enabled, t[1].disabled_reason), (0, disabled::INTERFACE_GONE));
        let r = row(&t[1], &|i| format!("if{i}"), (3, 300));
        assert_eq!(
            (r.enabled, r.disabled_reason.as_deref(), r.target.as_deref()),
            (false, Some("interface_gone"), Some("if6"))
        );
    }
}

/// `netpath fastpath status` and `GET /v1/fastpath`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FastpathStatus {
    pub enabled: bool,
    pub bridge: Option<String>,
    /// Frames the fast path delivered straight into a pod.
    pub redirected: u64,
    pub entries: Vec<FastpathEntry>,
}

/// A pod MAC the fast path delivers to, and the veth behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FastpathEntry {
    pub mac: String,
    pub iface: String,
    pub ifindex: u32,
    pub netns: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
}

impl FastpathStatus {
    pub fn text(&self) -> String {
        let mut s = format!(
            "fast path: {}{}, {} frames redirected\n",
            if self.enabled { "on" } else { "off" },
            self.bridge
                .as_deref()
                .map(|b| format!(" (bridge {b})"))
                .unwrap_or_default(),
            self.redirected
        );
        for e in &self.entries {
            s.push_str(&format!(
                "  {} -> {} ({})\n",
                e.mac,
                e.iface,
                e.netns.as_deref().unwrap_or("-")
            ));
        }
        s
    }
}
