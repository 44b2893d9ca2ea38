//! Links: the MTU chain (`mtu`), pod veths on the bridge (`veth_bridge`) and the VXLAN device's
//! peers (`vxlan_fdb`), from rtnetlink.
use std::net::{IpAddr, Ipv4Addr};

use super::{Node, Observed};
use crate::{
    model::doctor::{Finding, Status},
    node::{netlink::LinkInfo, tables::Route},
};

/// VXLAN over IPv4 adds 50 bytes: outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
pub const VXLAN_OVERHEAD: u32 = 50;

fn of_kind<'a>(node: &'a Node, kind: &str) -> impl Iterator<Item = &'a LinkInfo> {
    let kind = kind.to_string();
    node.links
        .iter()
        .filter(move |l| l.kind.as_deref() == Some(kind.as_str()))
}

/// A VXLAN device's underlay: its lower device, else the interface the node routes its peers'
/// underlay addresses (its FDB destinations) through, else that of the default route.
fn underlay<'a>(node: &'a Node, vx: &LinkInfo) -> Option<&'a LinkInfo> {
    if let Some(l) = vx.peer_ifindex.and_then(|i| node.link(i)) {
        return Some(l);
    }
    let covers = |r: &Route, ip: Ipv4Addr| {
        let mask = u32::MAX.checked_shl(32 - u32::from(r.prefix)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(r.dst) & mask
    };
    let mut best: Option<&Route> = None;
    for f in node.fdb.iter().filter(|f| f.ifindex == vx.ifindex) {
        let Some(IpAddr::V4(ip)) = f.ip else { continue };
        for r in node
            .routes
            .iter()
            .filter(|r| r.oif.is_some() && r.oif != Some(vx.ifindex))
        {
            if covers(r, ip) && best.is_none_or(|b| r.prefix > b.prefix) {
                best = Some(r);
            }
        }
    }
    best.or_else(|| node.routes.iter().find(|r| r.prefix == 0 && r.oif.is_some()))
        .and_then(|r| node.link(r.oif?))
}

/// A pod's host-side veth: its peer in another namespace, no address of its own here, and not a
/// VXLAN device's underlay (as a veth toward another node, like the lab's `ul0`, is).
fn pod_veths(node: &Node) -> Vec<&LinkInfo> {
    let lowers: Vec<u32> = of_kind(node, "vxlan").filter_map(|v| v.peer_ifindex).collect();
    of_kind(node, "veth")
        .filter(|l| {
            l.link_netnsid.is_some()
                && !lowers.contains(&l.ifindex)
                && !l.addresses.iter().any(|a| !a.starts_with("fe80:"))
        })
        .collect()
}

/// The pod bridge: the bridge most pod veths are enslaved to (`cni0` on a flannel node).
fn pod_bridge(node: &Node) -> Option<&LinkInfo> {
    let veths = pod_veths(node);
    of_kind(node, "bridge").max_by_key(|b| {
        (
            veths.iter().filter(|v| v.master == Some(b.ifindex)).count(),
            b.name == "cni0",
        )
    })
}

fn mtu(l: &LinkInfo) -> u32 {
    l.mtu.unwrap_or(0)
}

/// Pod eth0 (its host veth) <= cni0 <= flannel.1 = underlay - 50: a larger hop drops or fragments
/// what the smaller one cannot carry, which shows as stalls of large transfers only.
pub fn mtu_chain(node: &Node) -> Vec<Finding> {
    const CHECK: &str = "mtu";
    let mut out = Vec::new();
    let vx = of_kind(node, "vxlan").next();
    if let Some(vx) = vx {
        if let Some(u) = underlay(node, vx) {
            let want = mtu(u).saturating_sub(VXLAN_OVERHEAD);
            let fix = Some(format!("ip link set {} mtu {want}", vx.name));
            let evidence = format!(
                "{} mtu {}, underlay {} mtu {} - {VXLAN_OVERHEAD} = {want}",
                vx.name,
                mtu(vx),
                u.name,
                mtu(u)
            );
            if mtu(vx) > want {
                out.push(Finding::bad(CHECK, Status::Fail, vx.name.clone(), evidence, fix));
            } else if mtu(vx) < want {
                out.push(Finding::bad(CHECK, Status::Warn, vx.name.clone(), evidence, fix));
            }
        }
    }
    let bridge = pod_bridge(node);
    if let (Some(b), Some(vx)) = (bridge, vx) {
        if mtu(b) > mtu(vx) {
            out.push(Finding::bad(
                CHECK,
                Status::Fail,
                b.name.clone(),
                format!("{} mtu {} > {} mtu {}", b.name, mtu(b), vx.name, mtu(vx)),
                Some(format!("ip link set {} mtu {}", b.name, mtu(vx))),
            ));
        }
    }
    if let Some(b) = bridge {
        for v in pod_veths(node).into_iter().filter(|v| v.master == Some(b.ifindex)) {
            if mtu(v) > mtu(b) {
                out.push(Finding::bad(
                    CHECK,
                    Status::Fail,
                    v.name.clone(),
                    format!("pod veth {} mtu {} > {} mtu {}", v.name, mtu(v), b.name, mtu(b)),
                    Some(format!("ip link set {} mtu {}", v.name, mtu(b))),
                ));
            }
        }
    }
    if out.is_empty() {
        let chain = [
            bridge.map(|b| format!("{} {}", b.name, mtu(b))),
            vx.map(|v| format!("{} {}", v.name, mtu(v))),
            vx.and_then(|v| underlay(node, v))
                .map(|u| format!("underlay {} {}", u.name, mtu(u))),
        ];
        let chain: Vec<String> = chain.into_iter().flatten().collect();
        out.push(Finding::ok(
            CHECK,
            "node",
            if chain.is_empty() {
                "no bridge or VXLAN device here".to_string()
            } else {
                format!("pod veths <= {}", chain.join(" <= "))
            },
        ));
    }
    out
}

/// Every pod veth up and enslaved to the pod bridge: a veth left out is a pod cut off.
pub fn veth_bridge(node: &Node) -> Vec<Finding> {
    const CHECK: &str = "veth_bridge";
    let Some(b) = pod_bridge(node) else {
        return vec![Finding::ok(CHECK, "node", "no bridge here")];
    };
    let veths = pod_veths(node);
    let mut out = Vec::new();
    for v in &veths {
        if v.master != Some(b.ifindex) {
            let on = v.master.map(|m| format!("enslaved to {}", node.name(m)));
            out.push(Finding::bad(
                CHECK,
                Status::Fail,
                v.name.clone(),
                format!(
                    "pod veth {} is {}, not on {}",
                    v.name,
                    on.unwrap_or("on no bridge".into()),
                    b.name
                ),
                Some(format!("ip link set {} master {} up", v.name, b.name)),
            ));
        } else if !v.up {
            out.push(Finding::bad(
                CHECK,
                Status::Fail,
                v.name.clone(),
                format!("pod veth {} on {} is down", v.name, b.name),
                Some(format!("ip link set {} up", v.name)),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            CHECK,
            b.name.clone(),
            format!("{} pod veth(s) up on {}", veths.len(), b.name),
        ));
    }
    out
}

/// For every peer subnet routed through the VXLAN device (flannel: `10.244.1.0/24 via 10.244.1.0
/// dev flannel.1 onlink`): a neighbour entry for the gateway (the peer VTEP's MAC) and an FDB
/// entry for that MAC (the peer's underlay address), and the VXLAN traffic seen toward it.
pub fn vxlan_fdb(node: &Node, observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "vxlan_fdb";
    let mut out = Vec::new();
    for vx in of_kind(node, "vxlan") {
        let peers: Vec<_> = node
            .routes
            .iter()
            .filter(|r| r.oif == Some(vx.ifindex))
            .filter_map(|r| Some((r, r.gateway?)))
            .collect();
        for (r, gw) in peers {
            let subject = format!("{} {}/{}", vx.name, r.dst, r.prefix);
            let neigh = node.neighbours.iter().find(|n| {
                n.ifindex == vx.ifindex && n.ip == Some(IpAddr::V4(gw)) && n.mac.is_some() && n.state != "failed"
            });
            let Some(mac) = neigh.and_then(|n| n.mac.clone()) else {
                out.push(Finding::bad(
                    CHECK,
                    Status::Fail,
                    subject,
                    format!(
                        "no neighbour entry for the peer VTEP {gw} on {}: nothing reaches that subnet",
                        vx.name
                    ),
                    Some(format!(
                        "ip neigh replace {gw} lladdr PEER_VTEP_MAC dev {} nud permanent",
                        vx.name
                    )),
                ));
                continue;
            };
            let fdb = node
                .fdb
                .iter()
                .find(|f| f.ifindex == vx.ifindex && f.mac.as_deref() == Some(mac.as_str()) && f.ip.is_some());
            let Some(dst) = fdb.and_then(|f| f.ip) else {
                out.push(Finding::bad(
                    CHECK,
                    Status::Fail,
                    subject,
                    format!(
                        "no FDB entry for {mac} ({gw}) on {}: the kernel does not know where to send it",
                        vx.name
                    ),
                    Some(format!("bridge fdb append {mac} dev {} dst PEER_UNDERLAY_IP", vx.name)),
                ));
                continue;
            };
            let sent = observed.vxlan_to.get(&dst.to_string()).copied().unwrap_or(0);
            let traffic = if observed.available {
                format!("; {sent} VXLAN packets seen to {dst}")
            } else {
                String::new()
            };
            out.push(Finding::ok(
                CHECK,
                subject,
                format!("{gw} lladdr {mac}, fdb dst {dst}{traffic}"),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(CHECK, "node", "no VXLAN device with peers here"));
    }
    out
}
