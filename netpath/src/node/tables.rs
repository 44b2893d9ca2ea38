//! The kernel's forwarding tables in the current network namespace, as `netpath doctor` reads
//! them: IPv4 neighbours (ARP), the bridge FDB (a VXLAN device's remote VTEPs) and IPv4 routes.
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::{
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope, RouteType},
    AddressFamily,
};

use super::netlink::{Netlink, NetlinkError};

/// One neighbour (ARP) or FDB entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    /// The IP (ARP) or the remote VTEP (FDB `dst`).
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
    /// `permanent`, `reachable`, `stale`, `failed`, ...
    pub state: String,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

fn state_name(s: NeighbourState) -> String {
    match s {
        NeighbourState::Incomplete => "incomplete".into(),
        NeighbourState::Reachable => "reachable".into(),
        NeighbourState::Stale => "stale".into(),
        NeighbourState::Delay => "delay".into(),
        NeighbourState::Probe => "probe".into(),
        NeighbourState::Failed => "failed".into(),
        NeighbourState::Noarp => "noarp".into(),
        NeighbourState::Permanent => "permanent".into(),
        NeighbourState::None => "none".into(),
        NeighbourState::Other(v) => format!("state {v:#x}"),
        _ => "other".into(),
    }
}

fn neighbour(m: &NeighbourMessage) -> Neighbour {
    let mut n = Neighbour {
        ifindex: m.header.ifindex,
        ip: None,
        mac: None,
        state: state_name(m.header.state),
    };
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => n.ip = Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => n.ip = Some(IpAddr::V6(*ip)),
            // An AF_BRIDGE entry's NDA_DST (a VXLAN FDB's remote VTEP) comes as raw bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                n.ip = match b.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(&b[..]).expect("4 bytes"))),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(&b[..]).expect("16 bytes"))),
                    _ => None,
                };
            }
            NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                n.mac = Some(b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":"));
            }
            _ => {}
        }
    }
    n
}

impl Netlink {
    /// The IPv4 neighbour table.
    pub async fn neighbours_v4(&self) -> Result<Vec<Neighbour>, NetlinkError> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .map_ok(|m| neighbour(&m))
            .try_collect()
            .await
            .map_err(|e| super::netlink::rtnl_err("RTM_GETNEIGH dump", e))
    }

    /// The bridge FDB (AF_BRIDGE neighbours): on a VXLAN device, each MAC's remote VTEP.
    pub async fn fdb(&self) -> Result<Vec<Neighbour>, NetlinkError> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .map_ok(|m| neighbour(&m))
            .try_collect()
            .await
            .map_err(|e| super::netlink::rtnl_err("RTM_GETNEIGH (bridge FDB) dump", e))
    }

    /// The main table's IPv4 routes.
    pub async fn routes_v4(&self) -> Result<Vec<Route>, NetlinkError> {
        let mut req = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build();
        // The builder fills in what adding a route needs (protocol static, unicast): with strict
        // checking the kernel takes those as dump filters, so they are cleared.
        req.header.protocol = RouteProtocol::Unspec;
        req.header.kind = RouteType::Unspec;
        req.header.scope = RouteScope::Universe;
        let msgs: Vec<_> = self
            .handle
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| super::netlink::rtnl_err("RTM_GETROUTE dump", e))?;
        Ok(msgs
            .iter()
            .map(|m| {
                let mut r = Route {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix: m.header.destination_prefix_length,
                    gateway: None,
                    oif: None,
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => r.dst = *ip,
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some(*ip),
                        RouteAttribute::Oif(i) => r.oif = Some(*i),
                        _ => {}
                    }
                }
                r
            })
            .collect())
    }
}
