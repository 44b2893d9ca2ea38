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
    /// The last owner each link had while it led to a pod: a pod being deleted stops being one
    /// (its sandbox leaves CRI's list, its namespace goes) before its veth is removed, and what the
    /// veth carried is still that pod's when it is accounted.
    pub(super) last_pod: HashMap<u32, Owner>,
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
        view::owner(link, ns, self.pod(ifindex))
    }

    /// Note the pod `ifindex` leads to now, if any (see `last_pod`).
    pub(super) fn remember_pod(&mut self, ifindex: u32) {
        let o = self.owner(ifindex);
        if o.pod.is_some() {
            self.last_pod.insert(ifindex, o);
        }
    }

    /// The pods CRI lists now, and those it no longer lists whose namespace a link still leads to:
    /// StopPodSandbox takes a sandbox off the ready list before CNI DEL removes its veth, and that
    /// veth's flows are still the pod's when they are accounted.
    pub(super) fn set_pods(&mut self, listed: HashMap<u64, PodRef>) {
        let linked: std::collections::HashSet<u64> = self
            .links
            .values()
            .filter_map(|l| l.link_netnsid)
            .filter_map(|id| self.netns.get(&id))
            .map(|n| n.inode)
            .collect();
        self.pods.retain(|ino, _| linked.contains(ino));
        self.pods.extend(listed);
    }

    /// The CRI pod behind a link, when the runtime named one.
    pub(super) fn pod(&self, ifindex: u32) -> Option<&PodRef> {
        let link = self.links.get(&ifindex)?;
        let ns = link.link_netnsid.and_then(|id| self.netns.get(&id))?;
        self.pods.get(&ns.inode)
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
