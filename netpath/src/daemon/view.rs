//! The daemon's picture of the node: links, what it attached, who is behind each veth. The event
//! loop keeps it; the API, the exporter and the drop namer read it.
use std::collections::{BTreeMap, HashMap};

use crate::{
    datapath::attach::Attached,
    model::{
        owner::{Owner, Role},
        status::Departed,
    },
    node::{
        cri::PodRef,
        ifaces,
        netlink::{LinkInfo, NetnsName},
        view,
    },
};

/// The daemon's picture of the node: links, what it attached, who is behind each veth.
#[derive(Default)]
pub(super) struct View {
    pub(super) links: BTreeMap<u32, LinkInfo>,
    pub(super) attached: BTreeMap<u32, Attached>,
    pub(super) netns: HashMap<i32, NetnsName>,
    pub(super) pods: HashMap<u64, PodRef>,
    pub(super) departed: Departed,
    pub(super) attach_latency_ms: Vec<f64>,
    /// `--iface` globs that match no link now.
    pub(super) unmatched: Vec<String>,
}

impl View {
    /// The links' names, for an error that lists what exists.
    pub(super) fn link_names(&self) -> String {
        self.links
            .values()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn owner(&self, ifindex: u32) -> Owner {
        let Some(link) = self.links.get(&ifindex) else {
            return Owner::default();
        };
        let ns = link.link_netnsid.and_then(|id| self.netns.get(&id));
        view::owner(link, ns, ns.and_then(|n| self.pods.get(&n.inode)))
    }

    /// The namespaces (netnsid, path) of pods whose veth peer has no address yet but link-local:
    /// a CNI addresses the pod's `eth0` after the veth appears.
    pub(super) fn unaddressed_pods(&self) -> Vec<(i32, String)> {
        let mut v: Vec<(i32, String)> = self
            .links
            .values()
            .filter(|l| self.owner(l.ifindex).role == Some(Role::Pod))
            .filter_map(|l| {
                let id = l.link_netnsid?;
                let ns = self.netns.get(&id)?;
                let bare =
                    view::peer_link(l, Some(ns)).is_none_or(|p| p.addresses.iter().all(|a| a.starts_with("fe80:")));
                bare.then(|| Some((id, ns.path.clone()?))).flatten()
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub(super) fn name(&self, ifindex: u32) -> String {
        self.links
            .get(&ifindex)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| ifaces::display_name(ifindex))
    }
}
