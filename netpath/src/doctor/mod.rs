//! `netpath doctor`: the checks engineers make by hand on a node (rp_filter, forwarding,
//! br_netfilter, MTUs, the VXLAN FDB, veths on the bridge, the FORWARD policy, conntrack, the
//! neighbour table), each joined with what the datapath saw (drops by reason, unanswered ARP,
//! VXLAN traffic per peer) when there is some. They read the network namespace of the calling
//! thread: the CLI and the daemon run them where they observe.
//!
//! One file per kind of state: `sysctl` (kernel settings and table sizes), `links` (MTUs, the
//! bridge, the VXLAN device's peers), `netfilter` (the FORWARD policy), `traffic` (what only the
//! datapath knows).
use std::collections::HashMap;

use netpath_common::{
    peer::{PeerCounters, PeerKey},
    FlowKey, FlowValue, DIR_EGRESS,
};

use crate::{
    error::Result,
    model::{doctor::Finding, drops::DropRow},
    node::{
        netlink::{LinkInfo, Netlink},
        tables::{Neighbour, Route},
    },
};

pub mod links;
pub mod netfilter;
pub mod sysctl;
pub mod traffic;

/// What the datapath observed, for the checks that join state and traffic. Empty without a
/// daemon (or a datapath): those checks then say what they could not see.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Whether this came from a datapath at all.
    pub available: bool,
    pub drops: Vec<DropRow>,
    /// Over what time `drops` and `arp_unanswered` were counted, as evidence says it: the daemon
    /// counts between runs, the pins hold everything since their table was created.
    pub since: String,
    /// Whether the events were followed (only a running daemon does): without them, unanswered
    /// ARP is unknown rather than absent.
    pub events: bool,
    /// ARP requests that got no reply, by (interface, target IP).
    pub arp_unanswered: HashMap<(String, String), u64>,
    /// VXLAN packets sent to each underlay address (remote VTEP): from the per-peer counters
    /// ([`vxlan_to_peers`]), or the flow table of pins without them ([`vxlan_to`]).
    pub vxlan_to: HashMap<String, u64>,
}

impl Observed {
    /// Drop packets with `reason` on `iface` (any interface when None).
    pub fn drops_of(&self, reason: &str, iface: Option<&str>) -> u64 {
        self.drops
            .iter()
            .filter(|d| d.reason == reason && iface.is_none_or(|i| d.iface == i))
            .map(|d| d.packets)
            .sum()
    }
}

/// VXLAN packets sent to each underlay address (remote VTEP) from the per-peer counters: the
/// egress entries summed by peer. Unlike the flow table, they are never evicted.
pub fn vxlan_to_peers(peers: &[(PeerKey, PeerCounters)]) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (k, c) in peers.iter().filter(|(k, _)| k.direction == DIR_EGRESS) {
        *out.entry(crate::model::flows::addr(k.family, &k.peer)).or_default() += c.packets;
    }
    out
}

/// VXLAN packets sent to each underlay address (remote VTEP): the egress flows with outer
/// addresses, summed by outer destination (pins from a netpath without per-peer counters).
pub fn vxlan_to(flows: &[(FlowKey, FlowValue)]) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (k, v) in flows {
        if k.direction == DIR_EGRESS && v.outer_family != 0 {
            *out.entry(crate::model::flows::addr(v.outer_family, &v.outer_dst))
                .or_default() += v.packets;
        }
    }
    out
}

/// The namespace's state, read once for every check.
pub struct Node {
    pub links: Vec<LinkInfo>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<Neighbour>,
    pub routes: Vec<Route>,
}

impl Node {
    pub async fn read(nl: &Netlink) -> Result<Node> {
        Ok(Node {
            links: nl.links().await?,
            neighbours: nl.neighbours_v4().await?,
            fdb: nl.fdb().await?,
            routes: nl.routes_v4().await?,
        })
    }

    pub fn link(&self, ifindex: u32) -> Option<&LinkInfo> {
        self.links.iter().find(|l| l.ifindex == ifindex)
    }

    pub fn name(&self, ifindex: u32) -> String {
        self.link(ifindex)
            .map_or_else(|| format!("if{ifindex}"), |l| l.name.clone())
    }
}

/// Run `checks` (ids from [`crate::model::doctor::CHECKS`]) against the calling thread's network
/// namespace and `observed`: every finding, ok ones included.
pub async fn run(checks: &[&str], observed: &Observed) -> Result<Vec<Finding>> {
    let nl = Netlink::connect()?;
    let node = Node::read(&nl).await?;
    let mut out = Vec::new();
    for c in checks {
        out.extend(match *c {
            "rp_filter" => sysctl::rp_filter(&node, observed),
            "ip_forward" => sysctl::ip_forward(observed),
            "br_netfilter" => sysctl::br_netfilter(&node),
            "conntrack" => sysctl::conntrack(),
            "neigh_table" => sysctl::neigh_table(&node),
            "mtu" => links::mtu_chain(&node),
            "veth_bridge" => links::veth_bridge(&node),
            "vxlan_fdb" => links::vxlan_fdb(&node, observed),
            "forward_policy" => netfilter::forward_policy(observed),
            "arp_unanswered" => traffic::arp_unanswered(observed),
            "drops" => traffic::drops(observed),
            other => {
                return Err(crate::error::Error::BadArgument(format!(
                    "unknown check '{other}'; checks: {}",
                    crate::model::doctor::CHECKS.map(|(c, _)| c).join(", ")
                )))
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use netpath_common::{FlowKey, FlowValue, DIR_EGRESS, DIR_INGRESS, FAMILY_IPV4};

    use super::*;

    #[test]
    fn vxlan_traffic_is_summed_per_remote_vtep_on_egress_only() {
        let flow = |direction: u8, dst: [u8; 4], packets: u64| {
            let k = FlowKey {
                direction,
                ..FlowKey::default()
            };
            let v = FlowValue {
                outer_family: FAMILY_IPV4,
                outer_dst: netpath_common::Addr::v4(dst),
                packets,
                ..FlowValue::default()
            };
            (k, v)
        };
        let plain = (
            FlowKey::default(),
            FlowValue {
                packets: 99,
                ..FlowValue::default()
            },
        );
        let to = vxlan_to(&[
            flow(DIR_EGRESS, [172, 27, 16, 10], 5),
            flow(DIR_EGRESS, [172, 27, 16, 10], 2),
            flow(DIR_EGRESS, [172, 27, 16, 11], 1),
            flow(DIR_INGRESS, [172, 27, 0, 11], 50),
            plain,
        ]);
        assert_eq!(to.len(), 2, "{to:?}");
        assert_eq!(to["172.27.16.10"], 7);
        assert_eq!(to["172.27.16.11"], 1);
    }

    #[test]
    fn vxlan_peer_counters_are_summed_per_remote_vtep_on_egress_only() {
        use netpath_common::{peer::PeerKey, Addr};
        let entry = |ifindex: u32, direction: u8, peer: [u8; 4], packets: u64| {
            let mut k = PeerKey::default();
            k.set(
                ifindex,
                direction,
                FAMILY_IPV4,
                &Addr::v4([172, 27, 0, 11]),
                &Addr::v4(peer),
            );
            let c = PeerCounters {
                packets,
                ..PeerCounters::default()
            };
            (k, c)
        };
        let to = vxlan_to_peers(&[
            entry(2, DIR_EGRESS, [172, 27, 16, 10], 5),
            entry(3, DIR_EGRESS, [172, 27, 16, 10], 2),
            entry(2, DIR_EGRESS, [172, 27, 16, 11], 1),
            entry(2, DIR_INGRESS, [172, 27, 16, 10], 50),
        ]);
        assert_eq!(to.len(), 2, "{to:?}");
        assert_eq!(to["172.27.16.10"], 7);
        assert_eq!(to["172.27.16.11"], 1);
    }
}
