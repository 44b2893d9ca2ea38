//! `netpath ifaces` and `GET /v1/ifaces`: every link with its veth peer, the namespace and pod
//! behind it, and what is attached to it (netpath's programs and anyone else's).

use std::collections::BTreeMap;

use super::owner::{Owner, Role};

/// A program as the kernel reports it on a hook (`tcx-ingress`, `tcx-egress`, `xdp`) or as netpath
/// loaded it (`xdp`, `tc-ingress`, `tc-egress`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramRef {
    pub program: String,
    pub hook: String,
    pub id: u32,
}

/// One link. Field names are a stable JSON contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IfaceRow {
    pub iface: String,
    pub ifindex: u32,
    pub kind: Option<String>,
    pub master: Option<String>,
    pub mac: Option<String>,
    pub addresses: Vec<String>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub peer_ifindex: Option<u32>,
    pub peer_netns: Option<String>,
    /// The veth peer's MAC and addresses, as its namespace has them (a pod's `eth0`: the pod's IP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_mac: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_addresses: Vec<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    /// The pod's labels, from the CRI runtime.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// `pod`, `underlay` or `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The hook mode netpath attached with (`tc`, `xdp`, `xdp-generic`), if it observes the link.
    pub mode: Option<String>,
    /// `tcx` or `clsact`, if netpath observes the link.
    pub tc_hook: Option<String>,
    pub programs: Vec<ProgramRef>,
}

impl IfaceRow {
    pub fn owner(&self) -> Owner {
        Owner {
            netns: self.peer_netns.clone(),
            pod: self.pod.clone(),
            pod_namespace: self.pod_namespace.clone(),
            role: self.role,
        }
    }

    /// netpath's own programs are attached here.
    pub fn observed(&self) -> bool {
        self.mode.is_some() || self.programs.iter().any(|p| p.program.starts_with("netpath_"))
    }
}

fn or_dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

/// The labels people look for: the kubelet's own `io.kubernetes.*` ones repeat the pod's name and
/// namespace (JSON keeps them all).
fn labels_cell(labels: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !k.starts_with("io.kubernetes."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if shown.is_empty() {
        "-".into()
    } else {
        shown.join(",")
    }
}

/// A table of `ifaces` rows.
pub fn table(rows: &[IfaceRow]) -> String {
    let mut t = super::Columns::new(&[
        "IFACE",
        ">IFINDEX",
        "KIND",
        "MASTER",
        "MAC",
        ">MTU",
        ">PEER",
        "PEER NETNS",
        "POD",
        "LABELS",
        "PEER ADDRESSES",
        "PEER MAC",
        "MODE",
        "ADDRESSES",
        "PROGRAMS",
    ]);
    for r in rows {
        // The name `--pod` accepts; what is behind a link that leads to no pod.
        let pod = match (r.owner().pod_names().into_iter().next(), r.role) {
            (Some(p), _) => p,
            (None, Some(Role::Underlay)) => "(underlay)".into(),
            _ => "-".into(),
        };
        // Link-local addresses say nothing about which pod this is.
        let peer_addrs: Vec<&str> = r
            .peer_addresses
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("fe80:"))
            .collect();
        let mode = match (&r.mode, &r.tc_hook) {
            (Some(m), Some(h)) => format!("{m}/{h}"),
            _ => "-".into(),
        };
        let addrs = if r.addresses.is_empty() {
            "-".into()
        } else {
            r.addresses.join(",")
        };
        let progs = r
            .programs
            .iter()
            .map(|p| format!("{}:{}#{}", p.hook, p.program, p.id))
            .collect::<Vec<_>>()
            .join(" ");
        t.row(vec![
            r.iface.clone(),
            r.ifindex.to_string(),
            or_dash(&r.kind),
            or_dash(&r.master),
            or_dash(&r.mac),
            or_dash(&r.mtu),
            or_dash(&r.peer_ifindex),
            or_dash(&r.peer_netns),
            pod,
            labels_cell(&r.pod_labels),
            if peer_addrs.is_empty() {
                "-".into()
            } else {
                peer_addrs.join(",")
            },
            or_dash(&r.peer_mac),
            mode,
            addrs,
            progs,
        ]);
    }
    t.render()
}
