//! The cluster view of one node: its name, its VTEP addresses, and the VXLAN frames it exchanged
//! with each remote VTEP (`netpath peers`, `GET /v1/vxlan-peers`, `netpath_vxlan_peer_*` and
//! `netpath_node_info`). A VTEP address is what joins two nodes' views: node A's egress row to
//! B and node B's ingress row from A carry the same two addresses, swapped.

use netpath_common::peer::{PeerCounters, PeerKey};

/// One (interface, direction, local VTEP, remote VTEP) row. Field names are a stable JSON
/// contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VxlanPeerRow {
    pub iface: String,
    pub ifindex: u32,
    pub direction: String,
    /// This node's underlay address in the frames (outer source on egress, destination on
    /// ingress).
    pub local: String,
    /// The remote VTEP (outer destination on egress, source on ingress).
    pub peer: String,
    /// VXLAN packets seen at netpath's hook (a GSO/GRO packet counts as its segments).
    pub packets: u64,
    pub bytes: u64,
    /// Of those, the ones the kernel then dropped on this node (on ingress: never delivered).
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// One node's cluster view.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct VxlanPeers {
    /// `netpath run --node-name` (the host name, or the `--netns` name, by default).
    pub node: String,
    /// This node's VTEP addresses: the VXLAN devices' `local` addresses and the local
    /// addresses of the rows.
    pub vteps: Vec<String>,
    pub peers: Vec<VxlanPeerRow>,
}

/// Rows from the kernel's entries (in their order), interfaces named by `name_of`.
pub fn rows(entries: &[(PeerKey, PeerCounters)], name_of: impl Fn(u32) -> String) -> Vec<VxlanPeerRow> {
    entries
        .iter()
        .map(|(k, c)| VxlanPeerRow {
            iface: name_of(k.ifindex),
            ifindex: k.ifindex,
            direction: super::direction_name(k.direction).into(),
            local: super::flows::addr(k.family, &k.local),
            peer: super::flows::addr(k.family, &k.peer),
            packets: c.packets,
            bytes: c.bytes,
            dropped_packets: c.dropped_packets,
            dropped_bytes: c.dropped_bytes,
        })
        .collect()
}

/// The node's VTEPs: `configured` (the VXLAN devices' local addresses) and every row's local
/// address, sorted, once each. A multicast or broadcast destination (a VXLAN group, flooding) is
/// not a VTEP of this node.
pub fn vteps(configured: impl IntoIterator<Item = String>, rows: &[VxlanPeerRow]) -> Vec<String> {
    let unicast = |a: &String| match a.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => !(v4.is_multicast() || v4.is_broadcast()),
        Ok(std::net::IpAddr::V6(v6)) => !v6.is_multicast(),
        Err(_) => false,
    };
    let mut v: Vec<String> = configured
        .into_iter()
        .chain(rows.iter().map(|r| r.local.clone()).filter(unicast))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The `netpath peers` table: a line saying which node this is, then one row per entry.
pub fn table(p: &VxlanPeers) -> String {
    let mut t = super::Columns::new(&[
        "IFACE",
        "DIR",
        "LOCAL",
        "PEER",
        ">PACKETS",
        ">BYTES",
        ">DROPPED",
        ">DROPPED_BYTES",
    ]);
    for r in &p.peers {
        t.row(vec![
            r.iface.clone(),
            r.direction.clone(),
            r.local.clone(),
            r.peer.clone(),
            r.packets.to_string(),
            r.bytes.to_string(),
            r.dropped_packets.to_string(),
            r.dropped_bytes.to_string(),
        ]);
    }
    let vteps = if p.vteps.is_empty() {
        "none known".to_string()
    } else {
        p.vteps.join(", ")
    };
    format!("node {} (VTEP {vteps})\n{}", p.node, t.render())
}

#[cfg(test)]
mod tests {
    use netpath_common::{Addr, DIR_EGRESS, DIR_INGRESS, FAMILY_IPV4};

    use super::*;

    fn key(dir: u8, local: [u8; 4], peer: [u8; 4]) -> PeerKey {
        let mut k = PeerKey::default();
        k.set(2, dir, FAMILY_IPV4, &Addr::v4(local), &Addr::v4(peer));
        k
    }

    #[test]
    fn rows_name_both_ends_and_vteps_join_configured_and_seen() {
        let c = PeerCounters {
            packets: 10,
            bytes: 1000,
            dropped_packets: 3,
            dropped_bytes: 300,
        };
        let r = rows(
            &[
                (key(DIR_EGRESS, [172, 27, 0, 11], [172, 27, 16, 10]), c),
                (key(DIR_INGRESS, [172, 27, 0, 11], [172, 27, 16, 10]), c),
            ],
            |i| format!("if{i}"),
        );
        assert_eq!(
            (r[0].direction.as_str(), r[0].local.as_str(), r[0].peer.as_str()),
            ("egress", "172.27.0.11", "172.27.16.10")
        );
        assert_eq!((r[1].direction.as_str(), r[1].dropped_packets), ("ingress", 3));
        assert_eq!(
            vteps(["10.0.0.1".to_string(), "172.27.0.11".to_string()], &r),
            ["10.0.0.1", "172.27.0.11"]
        );
        // Frames to a VXLAN multicast group arrive with the group as their destination.
        let group = rows(&[(key(DIR_INGRESS, [239, 1, 1, 1], [172, 27, 16, 10]), c)], |i| {
            format!("if{i}")
        });
        assert_eq!(vteps(["172.27.0.11".to_string()], &group), ["172.27.0.11"]);
        let t = table(&VxlanPeers {
            node: "np-node1".into(),
            vteps: vec!["172.27.0.11".into()],
            peers: r,
        });
        assert!(t.starts_with("node np-node1 (VTEP 172.27.0.11)\nIFACE"), "{t}");
        assert!(
            t.contains("if2   egress  172.27.0.11 172.27.16.10      10  1000       3           300"),
            "{t}"
        );
    }
}
