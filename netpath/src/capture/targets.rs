//! Which interfaces a capture listens on: `--iface` names, and the veths behind `--pod`, named
//! with the pod (or namespace) they lead to, from the daemon's view when one answers, else from
//! the kernel's and the CRI runtime's.
use std::path::Path;

use crate::{
    error::{Error, Result, ServiceError},
    model::ifaces::IfaceRow,
    node::{ifaces, view},
    service::api::{block_on, ApiClient, ApiError},
};

/// One interface to capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub ifindex: u32,
    /// "pod NS/NAME", "netns X": written as the interface description.
    pub description: Option<String>,
    /// Whether netpath's programs are attached, when known.
    pub attached: Option<bool>,
}

/// The daemon's answer, as capture has always reported it: a 4xx is bad input (exit 2), anything
/// else a failure (exit 1).
fn from_daemon(e: ApiError) -> Error {
    match e.exit_code() {
        2 => Error::BadArgument(e.to_string()),
        _ => Error::Service(ServiceError {
            exit_code: 1,
            error: Box::new(e),
        }),
    }
}

/// The daemon's `ifaces` rows, if a daemon answers on `socket`.
fn daemon_rows(socket: &Path) -> Result<Option<Vec<IfaceRow>>> {
    block_on(async {
        match ApiClient::connect(socket).await? {
            Some(c) => c.ifaces().await.map(Some),
            None => Ok(None),
        }
    })
    .map_err(from_daemon)?
    .map_err(from_daemon)
}

fn describe(row: &IfaceRow) -> Option<String> {
    match (&row.pod_namespace, &row.pod, &row.peer_netns) {
        (Some(ns), Some(p), Some(n)) => Some(format!("pod {ns}/{p} (netns {n})")),
        (Some(ns), Some(p), None) => Some(format!("pod {ns}/{p}")),
        (_, _, Some(n)) => Some(format!("netns {n}")),
        _ => None,
    }
}

/// `--pod want` names a pod (or network namespace) behind one of `rows`, or bad input that lists the
/// known ones.
pub fn check_pod(want: &str, rows: &[IfaceRow]) -> Result<()> {
    let owners: Vec<_> = rows.iter().map(IfaceRow::owner).collect();
    crate::model::owner::check_pod(want, &owners)
}

/// The interfaces of `rows` (daemon or kernel view) behind `--pod want`: a pod name,
/// `namespace/name`, or the network namespace behind the veth.
pub fn pod_targets(want: &str, rows: &[IfaceRow]) -> Result<Vec<Target>> {
    check_pod(want, rows)?;
    let hits: Vec<&IfaceRow> = rows.iter().filter(|r| r.owner().matches(want)).collect();
    // A bare name may be a pod in several Kubernetes namespaces: refuse to guess.
    let mut owners: Vec<String> = hits
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r.pod_namespace.as_deref().unwrap_or("-"),
                r.pod.as_deref().unwrap_or("-")
            )
        })
        .collect();
    owners.sort();
    owners.dedup();
    if owners.len() > 1 && hits.iter().all(|r| r.pod.as_deref() == Some(want)) {
        return Err(Error::BadArgument(format!(
            "pod '{want}' is ambiguous: {}; give NAMESPACE/NAME",
            owners.join(", ")
        )));
    }
    let mut out: Vec<Target> = Vec::new();
    for r in hits {
        if out.iter().any(|t| t.ifindex == r.ifindex) {
            continue;
        }
        out.push(Target {
            name: r.iface.clone(),
            ifindex: r.ifindex,
            description: describe(r),
            attached: Some(r.observed()),
        });
    }
    Ok(out)
}

/// Resolve `--iface` names and `--pod` in the current (already entered) network namespace.
pub fn resolve(names: &[String], pod: Option<&str>, socket: &Path, netns: Option<&str>) -> Result<Vec<Target>> {
    // The daemon knows pods and what it attached; ask it first, quietly: --iface works without it.
    let daemon = match daemon_rows(socket) {
        Ok(rows) => rows,
        Err(e) if pod.is_some() => return Err(e),
        Err(_) => None,
    };
    let mut out: Vec<Target> = Vec::new();
    for name in names {
        // The daemon may observe another network namespace than ours (`run --netns`): its names are
        // the ones that count.
        let i = match &daemon {
            Some(rows) => match rows.iter().find(|r| &r.iface == name) {
                Some(r) => ifaces::Iface {
                    name: r.iface.clone(),
                    ifindex: r.ifindex,
                },
                None => {
                    return Err(Error::UnknownInterface {
                        name: name.clone(),
                        ns: " among the daemon's interfaces".into(),
                        available: crate::node::netns::list_or_none(rows.iter().map(|r| r.iface.clone()).collect()),
                    })
                }
            },
            None => ifaces::resolve(name, netns)?,
        };
        if out.iter().any(|t| t.ifindex == i.ifindex) {
            continue;
        }
        let row = daemon
            .iter()
            .flatten()
            .find(|r| r.ifindex == i.ifindex && r.iface == i.name);
        let (description, attached) = match row {
            Some(r) => (describe(r), Some(r.observed())),
            None => {
                let ours = view::kernel_programs(&i.name)
                    .iter()
                    .any(|p| p.program.starts_with("netpath_"));
                // tcx and XDP only: a legacy clsact attachment is invisible here, so only "yes" is sure.
                (None, ours.then_some(true))
            }
        };
        out.push(Target {
            name: i.name,
            ifindex: i.ifindex,
            description,
            attached,
        });
    }
    if let Some(pod) = pod {
        let rows = match daemon {
            Some(rows) => rows,
            None => block_on(view::collect()).map_err(from_daemon)??,
        };
        for t in pod_targets(pod, &rows)? {
            if !out.iter().any(|o| o.ifindex == t.ifindex) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_by_name_namespace_and_netns() {
        let rows: Vec<IfaceRow> = serde_json::from_value(serde_json::json!([
            { "iface": "veth1", "ifindex": 5, "pod": "tea", "pod_namespace": "default", "peer_netns": "cni-1", "mode": "tc" },
            { "iface": "veth2", "ifindex": 6, "pod": "tea", "pod_namespace": "prod", "peer_netns": "cni-2", "mode": null },
            { "iface": "veth3", "ifindex": 7, "pod": null, "pod_namespace": null, "peer_netns": "lab-b", "mode": "xdp" },
        ]))
        .unwrap();
        let t = pod_targets("default/tea", &rows).unwrap();
        assert_eq!((t.len(), t[0].ifindex, t[0].attached), (1, 5, Some(true)));
        assert_eq!(t[0].description.as_deref(), Some("pod default/tea (netns cni-1)"));
        assert_eq!(pod_targets("cni-2", &rows).unwrap()[0].attached, Some(false));
        assert_eq!(pod_targets("lab-b", &rows).unwrap()[0].name, "veth3");
        let e = pod_targets("tea", &rows).unwrap_err();
        assert!(
            e.to_string().contains("ambiguous") && e.to_string().contains("prod/tea"),
            "{e}"
        );
        let e = pod_targets("nope", &rows).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("'nope'") && e.to_string().contains("default/tea"),
            "{e}"
        );
    }
}
