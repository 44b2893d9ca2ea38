//! `netpath ifaces` without a daemon: every link of the namespace with the veth peer, the namespace
//! and pod behind it, and what is attached (netpath's programs and anyone else's), asked of the
//! kernel and the CRI runtime directly. It automates the manual matching of `ip link` peer indexes
//! across namespaces.
use aya::programs::{SchedClassifier, TcAttachType};
use netpath_common::maps::programs;

use super::{
    cri::{CriClient, PodRef},
    netlink::{resolve_netnsids, LinkInfo, Netlink, NetnsName, PeerLink},
};
use crate::{
    error::Result,
    model::{
        ifaces::{IfaceRow, ProgramRef},
        owner::{Owner, Role},
    },
};

/// The XDP program currently attached to an interface (id, name), as iproute2 reports it.
pub fn current_xdp(iface: &str) -> Option<(u32, String)> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let xdp = &v.get(0)?["xdp"];
    let id = xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"].get(0).and_then(|a| a["prog"]["id"].as_u64()))?;
    let name = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id as u32)
        .and_then(|p| p.name_as_str().map(String::from))
        .unwrap_or_default();
    Some((id as u32, name))
}

/// Programs attached to a link as the kernel reports them (tcx per direction, XDP), with names.
pub fn kernel_programs(name: &str) -> Vec<ProgramRef> {
    let mut v = Vec::new();
    for (hook, t) in [
        ("tcx-ingress", TcAttachType::Ingress),
        ("tcx-egress", TcAttachType::Egress),
    ] {
        if let Ok((_, progs)) = SchedClassifier::query_tcx(name, t) {
            for p in progs {
                v.push(ProgramRef {
                    hook: hook.into(),
                    id: p.id(),
                    program: p.name_as_str().unwrap_or("").into(),
                });
            }
        }
    }
    if let Some((id, program)) = current_xdp(name) {
        v.push(ProgramRef {
            hook: "xdp".into(),
            id,
            program,
        });
    }
    v
}

/// Who is behind `l`: the namespace its peer is in (`ns`), the CRI pod there, and what it is.
pub fn owner(l: &LinkInfo, ns: Option<&NetnsName>, pod: Option<&PodRef>) -> Owner {
    Owner {
        netns: ns.and_then(|n| n.name.clone().or_else(|| n.pid.map(|p| format!("pid:{p}")))),
        pod: pod.map(|p| p.name.clone()),
        pod_namespace: pod.map(|p| p.namespace.clone()),
        role: Some(Role::of(
            l.link_netnsid.is_some(),
            pod.is_some(),
            l.master.is_some(),
            ns.and_then(|n| n.links.as_ref().map(Vec::len)),
        )),
    }
}

/// The veth peer of `l` inside the namespace `ns` it leads to.
pub fn peer_link<'a>(l: &LinkInfo, ns: Option<&'a NetnsName>) -> Option<&'a PeerLink> {
    let want = l.peer_ifindex?;
    ns?.links.as_ref()?.iter().find(|p| p.ifindex == want)
}

/// A link as a row; `attached` is netpath's (mode, tc hook) when it observes the link.
pub fn iface_row(
    l: &LinkInfo,
    master: Option<String>,
    owner: Owner,
    pod: Option<&PodRef>,
    peer: Option<&PeerLink>,
    attached: Option<(String, String)>,
    programs: Vec<ProgramRef>,
) -> IfaceRow {
    let (mode, tc_hook) = attached.unzip();
    IfaceRow {
        iface: l.name.clone(),
        ifindex: l.ifindex,
        kind: l.kind.clone(),
        master,
        mac: l.mac.clone(),
        addresses: l.addresses.clone(),
        mtu: l.mtu,
        up: l.up,
        peer_ifindex: l.peer_ifindex,
        peer_netns: owner.netns,
        peer_mac: peer.and_then(|p| p.mac.clone()),
        peer_addresses: peer.map(|p| p.addresses.clone()).unwrap_or_default(),
        pod: owner.pod,
        pod_namespace: owner.pod_namespace,
        pod_labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
        role: owner.role,
        mode,
        tc_hook,
        programs,
    }
}

/// The `ifaces` view without a daemon: ask the kernel and the CRI runtime directly.
pub async fn collect() -> Result<Vec<IfaceRow>> {
    let nl = Netlink::connect()?;
    let links = nl.links().await?;
    let ids: Vec<i32> = links.iter().filter_map(|l| l.link_netnsid).collect();
    let netns = resolve_netnsids(&nl, &ids).await.unwrap_or_default();
    let pods = match CriClient::discover(&super::cri::candidates(None)).await {
        Some((_, mut c)) => crate::node::cri::pods_by_netns_inode(&mut c).await.unwrap_or_default(),
        None => Default::default(),
    };
    let name_of = |i: u32| links.iter().find(|l| l.ifindex == i).map(|l| l.name.clone());
    Ok(links
        .iter()
        .map(|l| {
            let ns = l.link_netnsid.and_then(|id| netns.get(&id));
            let pod = ns.and_then(|n| pods.get(&n.inode));
            let owner = owner(l, ns, pod);
            let programs = kernel_programs(&l.name);
            let ours = programs.iter().any(|p| p.program.starts_with("netpath_"));
            let attached = ours.then(|| {
                let xdp = programs.iter().any(|p| p.hook == "xdp" && p.program == programs::XDP);
                ((if xdp { "xdp" } else { "tc" }).to_string(), "tcx".to_string())
            });
            iface_row(
                l,
                l.master.and_then(name_of),
                owner,
                pod,
                peer_link(l, ns),
                attached,
                programs,
            )
        })
        .collect())
}
