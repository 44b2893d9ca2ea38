//! `netpath ifaces`: every link of the namespace with the veth peer, the namespace and pod behind
//! it, and what is attached (netpath's programs and anyone else's). It automates the manual
//! matching of `ip link` peer indexes across namespaces.
use aya::{
    programs::{SchedClassifier, TcAttachType},
    Ebpf,
};

use crate::{
    attach::{current_xdp, Mode, TcHook},
    loader::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP},
    netlink::LinkInfo,
};

/// Who lives behind an interface: the network namespace its veth peer is in, and the Kubernetes
/// pod (from the CRI runtime) when known. Flattened into stats, flow and event rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
}

impl Owner {
    /// ` (namespace/pod)`, ` (netns)` or nothing: what follows an interface name for people.
    pub fn suffix(&self) -> String {
        match (&self.pod_namespace, &self.pod, &self.netns) {
            (Some(ns), Some(p), _) => format!(" ({ns}/{p})"),
            (_, _, Some(n)) => format!(" ({n})"),
            _ => String::new(),
        }
    }

    /// `--pod` accepts a pod name, `namespace/name`, or the name of the netns behind the veth.
    pub fn matches(&self, want: &str) -> bool {
        let full = match (&self.pod_namespace, &self.pod) {
            (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
            _ => None,
        };
        self.pod.as_deref() == Some(want) || full.as_deref() == Some(want) || self.netns.as_deref() == Some(want)
    }
}

/// Ids of netpath's loaded programs, for `status` and `ifaces`.
pub fn program_ids(ebpf: &Ebpf) -> Vec<serde_json::Value> {
    [
        (PROG_XDP, "xdp"),
        (PROG_TC_INGRESS, "tc-ingress"),
        (PROG_TC_EGRESS, "tc-egress"),
    ]
    .iter()
    .filter_map(|(name, hook)| {
        let info = ebpf.program(name)?.info().ok()?;
        Some(serde_json::json!({ "program": name, "hook": hook, "id": info.id() }))
    })
    .collect()
}

/// Programs attached to a link as the kernel reports them (tcx per direction, XDP), with names.
pub fn kernel_programs(name: &str) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for (hook, t) in [
        ("tcx-ingress", TcAttachType::Ingress),
        ("tcx-egress", TcAttachType::Egress),
    ] {
        if let Ok((_, progs)) = SchedClassifier::query_tcx(name, t) {
            for p in progs {
                v.push(serde_json::json!({ "hook": hook, "id": p.id(), "program": p.name_as_str().unwrap_or("") }));
            }
        }
    }
    if let Some((id, prog)) = current_xdp(name) {
        v.push(serde_json::json!({ "hook": "xdp", "id": id, "program": prog }));
    }
    v
}

pub fn iface_row(
    l: &LinkInfo,
    master: Option<String>,
    owner: Owner,
    attached: Option<(Mode, TcHook)>,
    programs: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "iface": l.name,
        "ifindex": l.ifindex,
        "kind": l.kind,
        "master": master,
        "mac": l.mac,
        "addresses": l.addresses,
        "mtu": l.mtu,
        "up": l.up,
        "peer_ifindex": l.peer_ifindex,
        "peer_netns": owner.netns,
        "pod": owner.pod,
        "pod_namespace": owner.pod_namespace,
        "mode": attached.map(|(m, _)| m.to_string()),
        "tc_hook": attached.map(|(_, h)| h),
        "programs": programs,
    })
}

/// A table of `ifaces` rows.
pub fn table(rows: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let s_or = |v: &serde_json::Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| if v.is_null() { "-".into() } else { v.to_string() })
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:>7} {:<8} {:<10} {:<17} {:>5} {:>5} {:<22} {:<24} {:<12} {:<20} PROGRAMS",
        "IFACE", "IFINDEX", "KIND", "MASTER", "MAC", "MTU", "PEER", "PEER NETNS", "POD", "MODE", "ADDRESSES"
    );
    for r in rows.as_array().map(Vec::as_slice).unwrap_or_default() {
        let pod = match (r["pod_namespace"].as_str(), r["pod"].as_str()) {
            (Some(ns), Some(p)) => format!("{ns}/{p}"),
            _ => "-".into(),
        };
        let mode = match (r["mode"].as_str(), r["tc_hook"].as_str()) {
            (Some(m), Some(h)) => format!("{m}/{h}"),
            _ => "-".into(),
        };
        let addrs = r["addresses"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let progs = r["programs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{}:{}#{}",
                            p["hook"].as_str().unwrap_or("?"),
                            p["program"].as_str().unwrap_or("?"),
                            p["id"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<16} {:>7} {:<8} {:<10} {:<17} {:>5} {:>5} {:<22} {:<24} {:<12} {:<20} {}",
            s_or(&r["iface"]),
            s_or(&r["ifindex"]),
            s_or(&r["kind"]),
            s_or(&r["master"]),
            s_or(&r["mac"]),
            s_or(&r["mtu"]),
            s_or(&r["peer_ifindex"]),
            s_or(&r["peer_netns"]),
            pod,
            mode,
            if addrs.is_empty() { "-".into() } else { addrs },
            progs
        );
    }
    s
}

/// The `ifaces` view without a daemon: ask the kernel and the CRI runtime directly.
pub async fn collect() -> crate::Result<serde_json::Value> {
    use crate::netlink::{resolve_netnsids, Netlink};
    let io = |what: &str, e: &dyn std::fmt::Display| crate::Error::Other(format!("{what}: {e}"));
    let nl = Netlink::connect().map_err(|e| io("rtnetlink", &e))?;
    let links = nl.links().await.map_err(|e| io("listing links", &e))?;
    let ids: Vec<i32> = links.iter().filter_map(|l| l.link_netnsid).collect();
    let netns = resolve_netnsids(&nl, &ids).await.unwrap_or_default();
    let sockets: Vec<std::path::PathBuf> = crate::cri::DEFAULT_SOCKETS
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    let pods = match crate::cri::CriClient::discover(&sockets).await {
        Some((_, mut c)) => c.pods_by_netns_inode().await.unwrap_or_default(),
        None => Default::default(),
    };
    let name_of = |i: u32| links.iter().find(|l| l.ifindex == i).map(|l| l.name.clone());
    let rows = links
        .iter()
        .map(|l| {
            let ns = l.link_netnsid.and_then(|id| netns.get(&id));
            let pod = ns.and_then(|n| pods.get(&n.inode));
            let owner = Owner {
                netns: ns.and_then(|n| n.name.clone().or_else(|| n.pid.map(|p| format!("pid:{p}")))),
                pod: pod.map(|p| p.name.clone()),
                pod_namespace: pod.map(|p| p.namespace.clone()),
            };
            let programs = kernel_programs(&l.name);
            let ours = programs
                .iter()
                .any(|p| p["program"].as_str().is_some_and(|n| n.starts_with("netpath_")));
            let attached = ours.then(|| {
                let xdp = programs.iter().any(|p| p["hook"] == "xdp" && p["program"] == PROG_XDP);
                (if xdp { Mode::Xdp } else { Mode::Tc }, TcHook::Tcx)
            });
            iface_row(l, l.master.and_then(name_of), owner, attached, programs)
        })
        .collect();
    Ok(serde_json::Value::Array(rows))
}
