//! Drops: where the kernel (or a netpath rule) dropped packets and why, as rows (`netpath drops`,
//! `/v1/drops`, the `netpath_drops_total` family). Reason names come from the running kernel
//! (`enum skb_drop_reason` in its BTF, read by `node::btf`): the enum changes between kernel
//! versions, so nothing here knows a value.
use std::collections::HashMap;

use netpath_common::drop::{DropKey, NETPATH_RULE, REASON_NETPATH_RULE, SUBSYS_SHIFT};

use super::owner::Owner;
use crate::error::{Error, Result};

/// The JSON field names of a [`DropRow`], in order: a stable contract for scripts.
pub const DROP_ROW_FIELDS: [&str; 11] = [
    "iface",
    "ifindex",
    "direction",
    "netns",
    "pod",
    "pod_namespace",
    "reason",
    "subsystem",
    "location",
    "packets",
    "bytes",
];

/// Drops at one site: an interface (in a network namespace), a direction, a reason and where in
/// the kernel (or which rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DropRow {
    pub iface: String,
    pub ifindex: u32,
    pub direction: String,
    /// The name of the network namespace the device is in (`/run/netns/NAME`, or the daemon's
    /// `--netns`), `netns:[INODE]` when it has none; absent for the node's own namespace.
    pub netns: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    /// The kernel's name without its `SKB_DROP_REASON_` prefix (`NETFILTER_DROP`), or
    /// `NETPATH_RULE`.
    pub reason: String,
    /// `core`, another subsystem the kernel names (`openvswitch`), or `netpath`.
    pub subsystem: String,
    /// The kernel function that freed the packet (`ip_forward+0x1a4`), or `rule N`.
    pub location: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The reasons of the running kernel: value -> name, and the subsystems' names.
#[derive(Debug, Clone, Default)]
pub struct DropReasons {
    names: HashMap<u32, String>,
    subsystems: HashMap<u32, String>,
}

impl DropReasons {
    /// From `enum skb_drop_reason`'s enumerators (with or without the `SKB_DROP_REASON_` prefix;
    /// `SKB_NOT_DROPPED_YET`, `SKB_CONSUMED` and the `SUBSYS_MASK`/`MAX` markers are kept out),
    /// the enumerators of `enum skb_drop_reason_subsys`, and any subsystem's own reasons (an
    /// `enum ..._drop_reason` of a module, values with the subsystem in their high bits).
    pub fn new(
        core: impl IntoIterator<Item = (String, u32)>,
        subsystems: impl IntoIterator<Item = (String, u32)>,
        others: impl IntoIterator<Item = (String, u32)>,
    ) -> DropReasons {
        let mut names = HashMap::new();
        for (n, v) in core.into_iter().chain(others) {
            let n = n.strip_prefix("SKB_DROP_REASON_").unwrap_or(&n).to_string();
            if n == "MAX" || n.starts_with("SUBSYS_") || n.starts_with("SKB_") {
                continue;
            }
            names.entry(v).or_insert(n);
        }
        let subsystems = subsystems
            .into_iter()
            .filter_map(|(n, v)| {
                let n = n.strip_prefix("SKB_DROP_REASON_SUBSYS_").unwrap_or(&n);
                (n != "NUM").then(|| (v, n.to_ascii_lowercase()))
            })
            .collect();
        DropReasons { names, subsystems }
    }

    /// The reason's name: the kernel's, `NETPATH_RULE`, or `SUBSYS:0xVALUE` / the number when
    /// this kernel does not name it.
    pub fn name(&self, reason: u32) -> String {
        if reason == REASON_NETPATH_RULE {
            return NETPATH_RULE.to_string();
        }
        match self.names.get(&reason) {
            Some(n) => n.clone(),
            None if reason >> SUBSYS_SHIFT != 0 => format!("{}:{:#x}", self.subsystem(reason), reason & 0xffff),
            None => reason.to_string(),
        }
    }

    pub fn subsystem(&self, reason: u32) -> String {
        if reason == REASON_NETPATH_RULE {
            return "netpath".to_string();
        }
        let id = reason >> SUBSYS_SHIFT;
        self.subsystems
            .get(&id)
            .cloned()
            .unwrap_or_else(|| if id == 0 { "core".into() } else { format!("subsys{id}") })
    }

    /// The value of a reason name (as [`DropReasons::name`] prints it, any case, with or without
    /// the `SKB_DROP_REASON_` prefix); bad input naming close matches when there is none.
    pub fn parse(&self, want: &str) -> Result<u32> {
        let w = want.trim().to_ascii_uppercase();
        let w = w.strip_prefix("SKB_DROP_REASON_").unwrap_or(&w);
        if w == NETPATH_RULE {
            return Ok(REASON_NETPATH_RULE);
        }
        if let Some((v, _)) = self.names.iter().find(|(_, n)| n.as_str() == w) {
            return Ok(*v);
        }
        let mut close: Vec<&str> = self
            .names
            .values()
            .map(String::as_str)
            .filter(|n| n.contains(w) || w.contains(*n))
            .collect();
        close.sort();
        close.truncate(12);
        Err(Error::BadArgument(if close.is_empty() {
            format!(
                "this kernel has no drop reason '{want}' ({} reasons; `netpath drops --reasons` lists them)",
                self.names.len()
            )
        } else {
            format!(
                "this kernel has no drop reason '{want}'; did you mean: {}",
                close.join(", ")
            )
        }))
    }

    /// Every name with its value, by value.
    pub fn all(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self.names.iter().map(|(k, n)| (*k, n.clone())).collect();
        v.push((REASON_NETPATH_RULE, NETPATH_RULE.to_string()));
        v.sort();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Which drops `netpath drops` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropFilter {
    /// Drops on the veths of this pod, or inside it ([`Owner::matches`]).
    pub pod: Option<String>,
    pub iface: Option<String>,
    /// A reason name as [`DropReasons::name`] prints it.
    pub reason: Option<String>,
}

impl DropFilter {
    pub fn matches(&self, r: &DropRow) -> bool {
        self.iface.as_deref().is_none_or(|i| r.iface == i)
            && self.reason.as_deref().is_none_or(|w| r.reason.eq_ignore_ascii_case(w))
            && self.pod.as_deref().is_none_or(|p| row_owner(r).matches(p))
    }
}

/// The pod a row names, as `--pod` matches it. A pod without a CRI name is named by its network
/// namespace (the row's `pod`), which is also what `--pod` takes (with or without its prefix);
/// the row's own `netns` is where the packet died, which may be the node's.
pub fn row_owner(r: &DropRow) -> Owner {
    Owner {
        netns: if r.pod_namespace.is_none() { r.pod.clone() } else { None },
        pod: r.pod.clone(),
        pod_namespace: r.pod_namespace.clone(),
        role: Some(if r.pod.is_some() {
            super::owner::Role::Pod
        } else {
            super::owner::Role::Host
        }),
    }
}

/// What the reader knows about a drop site beyond its key.
pub struct Site {
    pub iface: String,
    pub netns: Option<String>,
    pub owner: Owner,
    pub location: String,
}

/// Rows from the summed `NP_DROPS` entries, named by `describe`, filtered, heaviest first.
pub fn rows(
    sites: &[(DropKey, u64, u64)],
    reasons: &DropReasons,
    filter: &DropFilter,
    mut describe: impl FnMut(&DropKey) -> Site,
) -> Vec<DropRow> {
    let mut v: Vec<DropRow> = sites
        .iter()
        .map(|(k, packets, bytes)| {
            let s = describe(k);
            DropRow {
                iface: s.iface,
                ifindex: k.ifindex,
                direction: netpath_common::DIRECTIONS
                    .get(k.direction as usize)
                    .copied()
                    .unwrap_or("?")
                    .to_string(),
                netns: s.netns,
                pod: s.owner.pod_label().map(str::to_string),
                pod_namespace: s.owner.pod_namespace.clone(),
                reason: reasons.name(k.reason),
                subsystem: reasons.subsystem(k.reason),
                location: s.location,
                packets: *packets,
                bytes: *bytes,
            }
        })
        .filter(|r| filter.matches(r))
        .collect();
    v.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.iface.cmp(&b.iface))
    });
    v
}

pub fn table(rows: &[DropRow]) -> String {
    let mut t = super::Columns::new(&[
        "IFACE", "DIR", "NETNS", "POD", "REASON", "LOCATION", ">PACKETS", ">BYTES",
    ]);
    for r in rows {
        let pod = match (&r.pod_namespace, &r.pod) {
            (Some(ns), Some(p)) => format!("{ns}/{p}"),
            (None, Some(p)) => p.clone(),
            _ => "-".into(),
        };
        t.row(vec![
            r.iface.clone(),
            r.direction.clone(),
            r.netns.clone().unwrap_or_else(|| "-".into()),
            pod,
            if r.subsystem == "core" || r.subsystem == "netpath" {
                r.reason.clone()
            } else {
                format!("{} ({})", r.reason, r.subsystem)
            },
            r.location.clone(),
            r.packets.to_string(),
            r.bytes.to_string(),
        ]);
    }
    let mut s = t.render();
    if rows.is_empty() {
        s.push_str("(no drops)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons() -> DropReasons {
        DropReasons::new(
            [
                ("SKB_NOT_DROPPED_YET".to_string(), 0),
                ("SKB_CONSUMED".into(), 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED".into(), 2),
                ("SKB_DROP_REASON_NO_SOCKET".into(), 3),
                ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12),
                ("SKB_DROP_REASON_MAX".into(), 128),
                ("SKB_DROP_REASON_SUBSYS_MASK".into(), 0xffff_0000),
            ],
            [
                ("SKB_DROP_REASON_SUBSYS_CORE".to_string(), 0),
                ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH".into(), 2),
                ("SKB_DROP_REASON_SUBSYS_NUM".into(), 3),
            ],
            [("OVS_DROP_LAST_ACTION".to_string(), 0x2_0001)],
        )
    }

    #[test]
    fn names_come_from_the_kernel_enum() {
        let r = reasons();
        assert_eq!(r.name(12), "NETFILTER_DROP");
        assert_eq!(r.name(2), "NOT_SPECIFIED");
        assert_eq!(r.name(99), "99");
        assert_eq!(r.name(REASON_NETPATH_RULE), "NETPATH_RULE");
        assert_eq!(r.subsystem(12), "core");
        assert_eq!(r.name(0x2_0001), "OVS_DROP_LAST_ACTION");
        assert_eq!(r.subsystem(0x2_0001), "openvswitch");
        assert_eq!(r.name(0x2_0002), "openvswitch:0x2");
        assert_eq!(r.subsystem(0x7_0000), "subsys7");
        assert!(r.all().iter().all(|(_, n)| !n.starts_with("SKB_") && n != "MAX"));
    }

    #[test]
    fn reason_names_parse_and_unknown_ones_are_bad_input() {
        let r = reasons();
        assert_eq!(r.parse("netfilter_drop").unwrap(), 12);
        assert_eq!(r.parse("SKB_DROP_REASON_NO_SOCKET").unwrap(), 3);
        assert_eq!(r.parse("NETPATH_RULE").unwrap(), REASON_NETPATH_RULE);
        let e = r.parse("NETFILTER").unwrap_err().to_string();
        assert!(e.contains("NETFILTER_DROP"), "{e}");
        assert!(matches!(r.parse("NOPE"), Err(Error::BadArgument(_))));
    }

    #[test]
    fn rows_are_named_filtered_and_heaviest_first() {
        let r = reasons();
        let key = |ifindex, reason| DropKey {
            netns: 7,
            ifindex,
            reason,
            direction: 0,
            _pad: [0; 3],
            location: 0,
        };
        let sites = [(key(2, 12), 1, 100), (key(3, 3), 5, 200), (key(2, 3), 2, 50)];
        let describe = |k: &DropKey| Site {
            iface: format!("if{}", k.ifindex),
            netns: Some("np-router".into()),
            owner: Owner::default(),
            location: "ip_forward+0x10".into(),
        };
        let all = rows(&sites, &r, &DropFilter::default(), describe);
        assert_eq!(
            all.iter().map(|x| x.packets).collect::<Vec<_>>(),
            vec![5, 2, 1],
            "heaviest first"
        );
        assert_eq!(all[2].reason, "NETFILTER_DROP");
        assert_eq!(all[2].netns.as_deref(), Some("np-router"));
        let f = DropFilter {
            reason: Some("no_socket".into()),
            iface: Some("if2".into()),
            ..DropFilter::default()
        };
        let some = rows(&sites, &r, &f, describe);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].packets, 2);
        let json = serde_json::to_value(&all[0]).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = DROP_ROW_FIELDS.to_vec();
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
        assert!(table(&all).contains("NETFILTER_DROP"));
        assert!(table(&[]).contains("(no drops)"));
    }
}
