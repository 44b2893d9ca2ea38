//! What only the datapath knows: the kernel's drop reasons (`drops`) and ARP requests nobody
//! answered (`arp_unanswered`).
use std::collections::BTreeMap;

use super::Observed;
use crate::model::doctor::{Finding, Status};

const NO_DATAPATH: &str = "no netpath datapath to ask (start `netpath run`)";

/// The reasons the kernel gave for dropping packets, heaviest first (NOT_SPECIFIED, a free without
/// a reason, is left to `netpath drops`).
pub fn drops(observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "drops";
    if !observed.available {
        return vec![Finding::ok(CHECK, "node", NO_DATAPATH)];
    }
    let mut by_reason: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for d in observed.drops.iter().filter(|d| d.reason != "NOT_SPECIFIED") {
        let e = by_reason.entry(d.reason.as_str()).or_default();
        e.0 += d.packets;
        if !e.1.contains(&d.iface.as_str()) {
            e.1.push(d.iface.as_str());
        }
    }
    let mut top: Vec<_> = by_reason.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1 .0));
    if top.is_empty() {
        return vec![Finding::ok(CHECK, "node", "no drops with a reason")];
    }
    top.into_iter()
        .take(3)
        .map(|(reason, (packets, ifaces))| {
            Finding::bad(
                CHECK,
                Status::Warn,
                reason,
                format!(
                    "{packets} packets dropped with reason {reason} on {} {}",
                    ifaces.join(", "),
                    observed.since
                ),
                Some(format!("netpath drops --reason {reason}")),
            )
        })
        .collect()
}

/// ARP requests without a reply: a peer that is gone, or a neighbour entry that points nowhere.
pub fn arp_unanswered(observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "arp_unanswered";
    if !observed.events {
        return vec![Finding::ok(
            CHECK,
            "node",
            "only a running daemon follows ARP (ask it: no --netns, its --socket)",
        )];
    }
    let mut v: Vec<_> = observed.arp_unanswered.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return vec![Finding::ok(CHECK, "node", "every ARP request seen got a reply")];
    }
    v.into_iter()
        .take(5)
        .map(|((iface, target), n)| {
            Finding::bad(
                CHECK,
                Status::Warn,
                format!("{iface} {target}"),
                format!("{n} ARP request(s) for {target} on {iface} got no reply"),
                Some(format!("netpath watch --kind arp_unanswered --ip {target}")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::drops::DropRow;

    #[test]
    fn top_reasons_leave_not_specified_out() {
        let row = |iface: &str, reason: &str, packets| DropRow {
            iface: iface.into(),
            reason: reason.into(),
            packets,
            ..DropRow::default()
        };
        let o = Observed {
            available: true,
            drops: vec![
                row("cni0", "NETFILTER_DROP", 4),
                row("ul0", "NOT_SPECIFIED", 100),
                row("ul0", "NETFILTER_DROP", 3),
                row("eth0", "NO_SOCKET", 2),
            ],
            ..Observed::default()
        };
        let f = drops(&o);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].subject, "NETFILTER_DROP");
        assert!(
            f[0].evidence.contains("7 packets") && f[0].evidence.contains("cni0, ul0"),
            "{f:?}"
        );
        assert_eq!(drops(&Observed::default())[0].status, Status::Ok);
        let mut o = Observed {
            available: true,
            events: true,
            ..Observed::default()
        };
        o.arp_unanswered.insert(("cni0".into(), "10.244.0.9".into()), 3);
        let a = arp_unanswered(&o);
        assert_eq!((a[0].status, a[0].subject.as_str()), (Status::Warn, "cni0 10.244.0.9"));
    }
}
