//! rtnetlink: links, addresses, link notifications and namespace ids.
//!
//! Why it is built this way (kernel behaviour it depends on):
//!
//! * A netlink socket belongs to the network namespace of the *thread* that created it (setns is
//!   per thread), and every answer it gets (links, ifindexes, nsids) is relative to that namespace.
//!   [`Netlink::connect`] and [`subscribe`] therefore open their sockets synchronously, on the
//!   calling thread; only the I/O is driven by tokio tasks.
//! * A pod's host veth knows its peer only as `IFLA_LINK` (an ifindex in the *peer's* namespace)
//!   plus `IFLA_LINK_NETNSID`, a number local to this namespace that the kernel assigns lazily
//!   (when a veth is created or moved across namespaces). There is no reverse lookup from an
//!   nsid to a namespace, so [`resolve_netnsids`] opens candidate namespace files and asks the
//!   kernel `RTM_GETNSID` for each, from this namespace's socket; asking never assigns an id.
//! * `RTNLGRP_LINK` delivers link changes as they happen, so pods are followed without polling.
//!   The kernel does not wait for slow readers: when the socket's receive buffer is full it drops
//!   notifications and reports `ENOBUFS` once. The subscriber asks for a large buffer and, on an
//!   overrun, re-dumps the links and reports the difference, so its stream stays consistent.
//! * The bridge also multicasts `AF_BRIDGE` RTM_NEWLINK/RTM_DELLINK on this group for port
//!   changes; an `AF_BRIDGE` RTM_DELLINK means "left the bridge", not "deleted", so only
//!   `AF_UNSPEC` link messages become events. A link moved to another namespace is an
//!   `AF_UNSPEC` RTM_DELLINK here, exactly like a deletion.
//! * Request sockets enable `NETLINK_GET_STRICT_CHK` so the kernel filters dumps (by bridge
//!   master, by ifindex) and skips link statistics (`RTEXT_FILTER_SKIP_STATS`), instead of
//!   sending everything to be thrown away here.
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as IflaInfo, LinkMessage},
    nsid::{NsidAttribute, NsidMessage},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::AsyncSocket;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;

/// Receive buffer asked for the notification socket: a burst of pod churn (hundreds of links
/// changing at once) fits, so overruns and their re-dumps stay rare.
const NOTIFY_RCVBUF: usize = 8 << 20;

/// One link of the current network namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    /// IFLA_INFO_KIND: "veth", "bridge", "vxlan", ...; None for physical devices and loopback.
    pub kind: Option<String>,
    /// IFLA_MASTER: the bridge (or bond, VRF) this link is enslaved to.
    pub master: Option<u32>,
    /// Hardware address "aa:bb:cc:dd:ee:ff" (6-byte link-layer addresses only).
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// IFF_UP (administratively up).
    pub up: bool,
    /// IFLA_LINK unless it is the link's own ifindex in this namespace: for a veth, the peer's
    /// ifindex in the peer's namespace (see `link_netnsid`; that number may equal our own); for a
    /// vlan/vxlan, its lower device.
    pub peer_ifindex: Option<u32>,
    /// IFLA_LINK_NETNSID: the peer's namespace id as seen from here; present only when the peer
    /// lives in another namespace.
    pub link_netnsid: Option<i32>,
    /// "10.244.0.1/24", "fe80::1/64". Filled by [`Netlink`] queries; empty in [`LinkEvent`]s.
    pub addresses: Vec<String>,
    /// A VXLAN device's own underlay address (`IFLA_VXLAN_LOCAL`/`LOCAL6`, flannel sets it): the
    /// node's VTEP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan_local: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// RTM_NEWLINK: a new link, or a change (e.g. master set/cleared, up/down). Also sent for every
    /// link present after a notification overrun forced a re-dump.
    Changed(LinkInfo),
    /// RTM_DELLINK: deleted, or moved to another namespace. Also sent, after an overrun, for links
    /// known before it that the re-dump no longer shows.
    Removed { ifindex: u32, name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("no tokio runtime on this thread: netlink connections run as tasks on the current runtime")]
    NoRuntime,

    #[error("opening a NETLINK_ROUTE socket: {0}")]
    Socket(#[source] std::io::Error),

    #[error("{op}: the netlink connection task has stopped")]
    ConnectionClosed { op: &'static str },

    #[error("{op}: the kernel answered {source}")]
    Kernel { op: &'static str, source: std::io::Error },

    #[error("{op}: unexpected netlink reply: {detail}")]
    Protocol { op: &'static str, detail: String },

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(super) fn rtnl_err(op: &'static str, e: rtnetlink::Error) -> NetlinkError {
    match e {
        rtnetlink::Error::RequestFailed => NetlinkError::ConnectionClosed { op },
        rtnetlink::Error::NetlinkError(m) => NetlinkError::Kernel { op, source: m.to_io() },
        other => NetlinkError::Protocol {
            op,
            detail: other.to_string(),
        },
    }
}

fn is_enodev(e: &NetlinkError) -> bool {
    matches!(e, NetlinkError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ENODEV))
}

fn current_runtime() -> Result<tokio::runtime::Handle, NetlinkError> {
    tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)
}

/// Inode of the network namespace the calling thread is in.
fn thread_netns_inode() -> Result<u64, NetlinkError> {
    let path = "/proc/thread-self/ns/net";
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| NetlinkError::Io {
            what: "stat",
            path: path.into(),
            source,
        })
}

/// A request socket in the network namespace that was current when it was opened.
#[derive(Debug, Clone)]
pub struct Netlink {
    pub(super) handle: Handle,
    /// Inode of the socket's namespace (skipped when resolving nsids: it has none from here).
    netns_inode: u64,
}

impl Netlink {
    /// Open a request socket in the current network namespace (spawns its connection task on the
    /// current tokio runtime).
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let rt = current_runtime()?;
        let netns_inode = thread_netns_inode()?;
        let (conn, handle, _unsolicited) =
            rtnetlink::new_connection_with_strict_check().map_err(NetlinkError::Socket)?;
        rt.spawn(conn);
        Ok(Netlink { handle, netns_inode })
    }

    /// Inode of the network namespace this socket lives in.
    pub fn netns_inode(&self) -> u64 {
        self.netns_inode
    }

    /// All links with their addresses, sorted by ifindex.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let mut links = self.dump_links(None).await?;
        // Two dumps cannot run at once on one socket (EBUSY), hence one after the other.
        let mut addrs = self.addresses(None).await?;
        for l in &mut links {
            l.addresses = addrs.remove(&l.ifindex).unwrap_or_default();
        }
        Ok(links)
    }

    /// Links without addresses (one dump), optionally only the ports of `master`.
    async fn dump_links(&self, master: Option<u32>) -> Result<Vec<LinkInfo>, NetlinkError> {
        let mut req = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats]);
        if let Some(m) = master {
            // A kernel-side filter with strict checking (older kernels ignore it: filtered below too).
            req.message_mut().attributes.push(LinkAttribute::Controller(m));
        }
        let mut links: Vec<LinkInfo> = req
            .execute()
            .map_ok(|m| link_info(&m))
            .try_collect()
            .await
            .map_err(|e| rtnl_err("RTM_GETLINK dump", e))?;
        if let Some(m) = master {
            links.retain(|l| l.master == Some(m));
        }
        links.sort_by_key(|l| l.ifindex);
        Ok(links)
    }

    /// Addresses by ifindex, of one link or all.
    async fn addresses(&self, ifindex: Option<u32>) -> Result<HashMap<u32, Vec<String>>, NetlinkError> {
        let mut req = self.handle.address().get();
        if let Some(i) = ifindex {
            // Filtered by the kernel (strict checking); the userspace filter covers older kernels.
            req.message_mut().header.index = i;
            req = req.set_link_index_filter(i);
        }
        let mut out: HashMap<u32, Vec<String>> = HashMap::new();
        let mut stream = std::pin::pin!(req.execute());
        while let Some(m) = stream.try_next().await.map_err(|e| rtnl_err("RTM_GETADDR dump", e))? {
            if let Some(a) = address_string(&m) {
                out.entry(m.header.index).or_default().push(a);
            }
        }
        Ok(out)
    }

    /// Fetch one link (RTM_GETLINK by index or name) and its addresses; None if there is no such link.
    async fn get_one(&self, req: rtnetlink::LinkGetRequest) -> Result<Option<LinkInfo>, NetlinkError> {
        let req = req.set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats]);
        let mut stream = std::pin::pin!(req.execute());
        let msg = match stream.try_next().await.map_err(|e| rtnl_err("RTM_GETLINK", e)) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) if is_enodev(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut info = link_info(&msg);
        info.addresses = self
            .addresses(Some(info.ifindex))
            .await?
            .remove(&info.ifindex)
            .unwrap_or_default();
        Ok(Some(info))
    }

    pub async fn link(&self, ifindex: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        if ifindex == 0 {
            return Ok(None); // index 0 asks the kernel to look up by name instead
        }
        self.get_one(self.handle.link().get().match_index(ifindex)).await
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None); // the kernel rejects these with EINVAL rather than ENODEV
        }
        self.get_one(self.handle.link().get().match_name(name)).await
    }

    /// Bridge ports: links whose master is `bridge_ifindex`, with their addresses.
    pub async fn ports_of(&self, bridge_ifindex: u32) -> Result<Vec<LinkInfo>, NetlinkError> {
        let mut ports = self.dump_links(Some(bridge_ifindex)).await?;
        if ports.is_empty() {
            return Ok(ports);
        }
        let mut addrs = self.addresses(None).await?;
        for p in &mut ports {
            p.addresses = addrs.remove(&p.ifindex).unwrap_or_default();
        }
        Ok(ports)
    }

    /// The namespace id (as seen from this socket's namespace) of the network namespace behind
    /// `fd` (an open /run/netns/NAME or /proc/PID/ns/net), via RTM_GETNSID with NETNSA_FD; None if
    /// the kernel has not assigned one (asking does not assign one).
    pub async fn nsid_of_fd(&self, fd: BorrowedFd<'_>) -> Result<Option<i32>, NetlinkError> {
        const OP: &str = "RTM_GETNSID";
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        // No NLM_F_ACK: the RTM_NEWNSID reply ends the request.
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(req).map_err(|e| rtnl_err(OP, e))?;
        // `fd` stays borrowed (open) across this await; the kernel resolves it while handling the request.
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                    let id = m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) => Some(*id),
                        _ => None,
                    });
                    // NETNSA_NSID_NOT_ASSIGNED is -1.
                    return Ok(id.filter(|id| *id >= 0));
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(NetlinkError::Kernel {
                        op: OP,
                        source: e.to_io(),
                    })
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) | NetlinkPayload::Noop => {}
                other => {
                    return Err(NetlinkError::Protocol {
                        op: OP,
                        detail: format!("{other:?}"),
                    })
                }
            }
        }
        Ok(None)
    }
}

fn link_info(m: &LinkMessage) -> LinkInfo {
    let ifindex = m.header.index;
    let mut l = LinkInfo {
        ifindex,
        name: String::new(),
        kind: None,
        master: None,
        mac: None,
        mtu: None,
        up: m.header.flags.contains(LinkFlags::Up),
        peer_ifindex: None,
        link_netnsid: None,
        addresses: Vec::new(),
        vxlan_local: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::LinkInfo(infos) => {
                l.kind = infos.iter().find_map(|i| match i {
                    IflaInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
                l.vxlan_local = infos.iter().find_map(|i| match i {
                    IflaInfo::Data(InfoData::Vxlan(attrs)) => attrs.iter().find_map(|a| match a {
                        InfoVxlan::Local(ip) if !ip.is_unspecified() => Some(std::net::IpAddr::V4(*ip)),
                        InfoVxlan::Local6(ip) if !ip.is_unspecified() => Some(std::net::IpAddr::V6(*ip)),
                        _ => None,
                    }),
                    _ => None,
                });
            }
            LinkAttribute::Controller(m) if *m != 0 => l.master = Some(*m),
            LinkAttribute::Address(b) if b.len() == 6 => l.mac = Some(mac_string(b)),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::Link(p) if *p != 0 => l.peer_ifindex = Some(*p),
            LinkAttribute::LinkNetNsId(id) => l.link_netnsid = Some(*id),
            _ => {}
        }
    }
    // IFLA_LINK equal to the own ifindex means "no lower/peer device", but only within one
    // namespace: a peer elsewhere may well carry the same number (the kernel then still sends it,
    // with IFLA_LINK_NETNSID).
    if l.link_netnsid.is_none() && l.peer_ifindex == Some(ifindex) {
        l.peer_ifindex = None;
    }
    l
}

fn mac_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// "ADDR/PREFIX": IFA_LOCAL when present (the interface's own address; IFA_ADDRESS is the far end
/// on point-to-point links), else IFA_ADDRESS (IPv6 has only that).
fn address_string(m: &AddressMessage) -> Option<String> {
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(format!("{ip}/{}", m.header.prefix_len)),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address.map(|ip| format!("{ip}/{}", m.header.prefix_len))
}

type Unsolicited =
    futures::channel::mpsc::UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>;

/// Subscribe to RTNLGRP_LINK notifications on a new socket in the current network namespace
/// (its tasks run on the current tokio runtime). Events arrive in kernel order. Subscribe BEFORE
/// dumping links so nothing is missed between the dump and the subscription.
///
/// If the kernel drops notifications (receive buffer overrun), the stream re-dumps and emits
/// `Removed` for vanished links and `Changed` for every present one. The channel closes only if
/// the socket fails or that re-dump fails; a consumer should then subscribe and dump again.
/// Dropping the receiver closes the socket.
pub fn subscribe() -> Result<mpsc::UnboundedReceiver<LinkEvent>, NetlinkError> {
    subscribe_with_buffer(NOTIFY_RCVBUF)
}

/// [`subscribe`] with another socket receive buffer size, in bytes (the kernel enforces a
/// minimum of a few KiB). A smaller buffer overruns sooner, and each overrun costs a re-dump.
pub fn subscribe_with_buffer(rcvbuf: usize) -> Result<mpsc::UnboundedReceiver<LinkEvent>, NetlinkError> {
    let rt = current_runtime()?;
    let (mut conn, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(NetlinkError::Socket)?;
    set_rcvbuf(
        conn.socket_mut().socket_mut().as_fd(),
        rcvbuf.min(libc::c_int::MAX as usize) as libc::c_int,
    );
    // Opened now, on this thread, so the re-dumps see the same namespace as the notifications.
    let dumper = Netlink::connect()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let conn_task = rt.spawn(conn);
    rt.spawn(async move {
        tokio::select! {
            _ = follow(messages, &tx, &dumper) => {}
            _ = tx.closed() => {}
        }
        conn_task.abort();
    });
    Ok(rx)
}

/// SO_RCVBUFFORCE (root may exceed net.core.rmem_max), else SO_RCVBUF (capped by it).
fn set_rcvbuf(fd: BorrowedFd<'_>, size: libc::c_int) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a valid socket with a c_int option value of the right length.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Turn notifications into events until the socket or the receiver goes away.
async fn follow(mut messages: Unsolicited, tx: &mpsc::UnboundedSender<LinkEvent>, dumper: &Netlink) {
    // What a consumer can know of (links present at subscription, or reported since), so that an
    // overrun can be answered with Removed for the links that vanished while events were lost.
    // Taken after the subscription: a link deleted in between still gets its RTM_DELLINK.
    let mut known: HashMap<u32, String> = match dumper.dump_links(None).await {
        Ok(links) => links.into_iter().map(|l| (l.ifindex, l.name)).collect(),
        Err(_) => return,
    };
    while let Some((msg, _)) = messages.next().await {
        let overrun = matches!(msg.payload, NetlinkPayload::Overrun(_));
        if !overrun {
            if !forward(msg, tx, &mut known) {
                return;
            }
            continue;
        }
        // The messages already read predate the loss: deliver them before the re-dump so they
        // cannot overwrite its newer state.
        while let Ok((m, _)) = messages.try_recv() {
            if !matches!(m.payload, NetlinkPayload::Overrun(_)) && !forward(m, tx, &mut known) {
                return;
            }
        }
        let Ok(links) = dumper.dump_links(None).await else {
            return;
        };
        let present: HashSet<u32> = links.iter().map(|l| l.ifindex).collect();
        let mut gone: Vec<(u32, String)> = known
            .iter()
            .filter(|(i, _)| !present.contains(i))
            .map(|(i, n)| (*i, n.clone()))
            .collect();
        gone.sort();
        for (ifindex, name) in gone {
            known.remove(&ifindex);
            if tx.send(LinkEvent::Removed { ifindex, name }).is_err() {
                return;
            }
        }
        for l in links {
            known.insert(l.ifindex, l.name.clone());
            if tx.send(LinkEvent::Changed(l)).is_err() {
                return;
            }
        }
    }
}

/// Send the event for one notification; false once the receiver is gone.
fn forward(
    msg: NetlinkMessage<RouteNetlinkMessage>,
    tx: &mpsc::UnboundedSender<LinkEvent>,
    known: &mut HashMap<u32, String>,
) -> bool {
    let event = match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m))
            if m.header.interface_family == AddressFamily::Unspec =>
        {
            let l = link_info(&m);
            known.insert(l.ifindex, l.name.clone());
            LinkEvent::Changed(l)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m))
            if m.header.interface_family == AddressFamily::Unspec =>
        {
            let l = link_info(&m);
            known.remove(&l.ifindex);
            LinkEvent::Removed {
                ifindex: l.ifindex,
                name: l.name,
            }
        }
        _ => return true,
    };
    tx.send(event).is_ok()
}

/// How a network namespace is known on this node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetnsName {
    /// st_ino of the nsfs file: a stable identity across naming schemes.
    pub inode: u64,
    /// "np-n1-pod-a" for /run/netns/np-n1-pod-a, "cni-1234..." likewise.
    pub name: Option<String>,
    /// Where it was found: "/run/netns/NAME" or "/proc/PID/ns/net".
    pub path: Option<String>,
    /// A process living in it (for container sandboxes without a name).
    pub pid: Option<u32>,
    /// Its links other than loopback (None: not read): a pod's namespace holds its `eth0`, a
    /// node's (another node's, as behind an underlay veth) several.
    pub links: Option<Vec<PeerLink>>,
}

/// A namespace found by the scan, held open so it cannot be freed (and its nsid reused) while the
/// kernel is asked about it.
struct Candidate {
    file: File,
    ns: NetnsName,
}

/// Resolve netnsids seen on this namespace's links (IFLA_LINK_NETNSID) to namespaces: scans
/// /run/netns/* (and /var/run/netns/* when it is another directory), then /proc/*/ns/net (our own
/// namespace and namespaces already seen are skipped by inode; vanishing processes are tolerated),
/// asking the kernel for each one's nsid. Returns nsid -> NetnsName for every wanted nsid it could
/// resolve; the scan stops as soon as all are resolved.
pub async fn resolve_netnsids(nl: &Netlink, wanted: &[i32]) -> Result<HashMap<i32, NetnsName>, NetlinkError> {
    let mut missing: HashSet<i32> = wanted.iter().copied().filter(|id| *id >= 0).collect();
    let mut found = HashMap::new();
    if missing.is_empty() {
        return Ok(found);
    }
    // The scan is blocking filesystem work (thousands of /proc entries on a busy node): it runs on
    // a blocking thread and hands over each new namespace; dropping the receiver stops it.
    let (tx, mut rx) = mpsc::channel::<Candidate>(32);
    let own = nl.netns_inode;
    let scan = tokio::task::spawn_blocking(move || scan_namespaces(own, &tx));
    while let Some(c) = rx.recv().await {
        let id = match nl.nsid_of_fd(c.file.as_fd()).await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            // About this one namespace only (e.g. it is being torn down): go on with the others.
            Err(NetlinkError::Kernel { .. }) => continue,
            Err(e) => return Err(e),
        };
        if missing.remove(&id) {
            let mut ns = c.ns;
            ns.links = peer_links(&c.file).await;
            found.insert(id, ns);
            if missing.is_empty() {
                break;
            }
        }
    }
    drop(rx);
    let _ = scan.await;
    Ok(found)
}

/// One link of another namespace, as seen from inside it: a veth peer (a pod's `eth0`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerLink {
    pub ifindex: u32,
    /// Its name in its namespace (a pod's `eth0`).
    pub name: String,
    pub mac: Option<String>,
    /// "10.244.1.2/24", "fe80::1/64".
    pub addresses: Vec<String>,
}

/// The links (other than loopback) of the namespace `file` is, with their MACs and addresses,
/// read from a thread of its own that enters it and ends (setns moves only the calling thread; a
/// pooled one would stay there).
pub async fn peer_links(file: &File) -> Option<Vec<PeerLink>> {
    let fd = file.try_clone().ok()?;
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            // SAFETY: setns on a valid nsfs fd, in this short-lived thread only.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            own_links()
        })
        .join()
        .ok()
        .flatten()
    })
    .await
    .ok()
    .flatten()
}

/// [`peer_links`] of the namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`) again: a pod's
/// address may be set after its veth appeared.
pub async fn peer_links_at(path: &str) -> Option<Vec<PeerLink>> {
    peer_links(&File::open(path).ok()?).await
}

/// The calling thread's namespace's links but loopback, by getifaddrs (AF_PACKET entries carry
/// the ifindex and MAC, AF_INET/AF_INET6 ones the addresses).
fn own_links() -> Option<Vec<PeerLink>> {
    use std::collections::BTreeMap;
    let mut by_name: BTreeMap<String, PeerLink> = BTreeMap::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return None;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = &*p;
            p = a.ifa_next;
            if a.ifa_name.is_null() || a.ifa_addr.is_null() || a.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(a.ifa_name).to_string_lossy().into_owned();
            let entry = by_name.entry(name.clone()).or_insert_with(|| PeerLink {
                ifindex: 0,
                name,
                mac: None,
                addresses: Vec::new(),
            });
            match i32::from((*a.ifa_addr).sa_family) {
                libc::AF_PACKET => {
                    let ll = &*(a.ifa_addr as *const libc::sockaddr_ll);
                    entry.ifindex = ll.sll_ifindex as u32;
                    if ll.sll_halen == 6 {
                        entry.mac = Some(mac_string(&ll.sll_addr[..6]));
                    }
                }
                libc::AF_INET => {
                    let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    let len = prefix_len(a.ifa_netmask, libc::AF_INET);
                    entry.addresses.push(format!("{ip}/{len}"));
                }
                libc::AF_INET6 => {
                    let sin6 = &*(a.ifa_addr as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    let len = prefix_len(a.ifa_netmask, libc::AF_INET6);
                    entry.addresses.push(format!("{ip}/{len}"));
                }
                _ => {}
            }
        }
        libc::freeifaddrs(ifap);
    }
    Some(by_name.into_values().filter(|l| l.ifindex != 0).collect())
}

/// The prefix length of a getifaddrs netmask.
///
/// # Safety
/// `mask` is null or points at a sockaddr of `family`.
unsafe fn prefix_len(mask: *const libc::sockaddr, family: i32) -> u32 {
    if mask.is_null() {
        return 0;
    }
    // SAFETY: the caller's contract.
    unsafe {
        match family {
            libc::AF_INET => u32::from_be((*(mask as *const libc::sockaddr_in)).sin_addr.s_addr).count_ones(),
            _ => (*(mask as *const libc::sockaddr_in6))
                .sin6_addr
                .s6_addr
                .iter()
                .map(|b| b.count_ones())
                .sum(),
        }
    }
}

/// Send every distinct network namespace (by inode, other than `own`) to `tx`: named ones first,
/// then those of processes. Returns when done or when the receiver is gone.
fn scan_namespaces(own: u64, tx: &mpsc::Sender<Candidate>) {
    let mut seen = HashSet::from([own]);
    let mut dirs = vec![PathBuf::from(crate::defaults::NETNS_RUN_DIR)];
    let run = std::fs::canonicalize(crate::defaults::NETNS_RUN_DIR).ok();
    let var_run = std::fs::canonicalize("/var/run/netns").ok();
    if var_run.is_some() && var_run != run {
        dirs.push(PathBuf::from("/var/run/netns"));
    }
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let ns = |inode| NetnsName {
                inode,
                name: Some(name.to_string_lossy().into_owned()),
                path: Some(path.to_string_lossy().into_owned()),
                pid: None,
                links: None,
            };
            if !offer(&path, &mut seen, ns, tx) {
                return;
            }
        }
    }
    let Ok(rd) = std::fs::read_dir("/proc") else { return };
    for e in rd.filter_map(|e| e.ok()) {
        if tx.is_closed() {
            return; // everything wanted was found
        }
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let path = Path::new("/proc").join(e.file_name()).join("ns").join("net");
        let ns = |inode| NetnsName {
            inode,
            name: None,
            path: Some(path.to_string_lossy().into_owned()),
            pid: Some(pid),
            links: None,
        };
        if !offer(&path, &mut seen, ns, tx) {
            return;
        }
    }
}

/// Open `path` if it is a network namespace not seen yet and send it; false once the receiver is
/// gone. Files that vanish, or are not namespaces (a stray file in /run/netns), are skipped.
fn offer(
    path: &Path,
    seen: &mut HashSet<u64>,
    ns: impl FnOnce(u64) -> NetnsName,
    tx: &mpsc::Sender<Candidate>,
) -> bool {
    // stat first: most processes share a few namespaces, and stat is cheaper than open.
    let Ok(meta) = std::fs::metadata(path) else { return true };
    if !seen.insert(meta.ino()) {
        return true;
    }
    let Ok(file) = File::open(path) else { return true };
    // The process may have exited and its pid been reused between stat and open: trust the fd.
    let Ok(inode) = file.metadata().map(|m| m.ino()) else {
        return true;
    };
    if inode != meta.ino() && !seen.insert(inode) {
        return true;
    }
    if !is_netns(&file) {
        return true;
    }
    tx.blocking_send(Candidate { file, ns: ns(inode) }).is_ok()
}

/// Whether `file` is a network namespace (NS_GET_NSTYPE), so RTM_GETNSID is only asked about those.
fn is_netns(file: &File) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                 // SAFETY: an argument-less ioctl on a valid fd; non-nsfs files answer with an error.
    let t = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    t == libc::CLONE_NEWNET
}
