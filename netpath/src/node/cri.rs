//! CRI pod lookup: names a pod's network namespace with the Kubernetes pod that owns it.
//!
//! netpath maps each pod veth to the network namespace its peer lives in (by nsfs inode). When a
//! CRI runtime socket is reachable (containerd, CRI-O), [`pods_by_netns_inode`] lists the ready pod
//! sandboxes and resolves each one's network namespace to that same inode. The CRI client itself is
//! the `netpath-cri` crate, shared with the lab that creates pods through it.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use futures::StreamExt;
pub use netpath_cri::{candidates, paths, proto, CriClient, CriError, DEFAULT_SOCKETS};

/// PodSandboxStatus calls in flight at once.
const STATUS_CONCURRENCY: usize = 8;
/// `statfs` magic of nsfs, the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The Kubernetes pod that owns a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    /// The pod's labels as the runtime reports them (the kubelet copies the pod's labels there).
    pub labels: BTreeMap<String, String>,
}

/// Ready pod sandboxes -> their network namespace inode (st_ino of the nsfs file), once; see
/// [`PodResolver`].
pub async fn pods_by_netns_inode(cri: &mut CriClient) -> Result<HashMap<u64, PodRef>, CriError> {
    PodResolver::default().resolve(cri).await
}

/// Ready pod sandboxes -> their network namespace inode (st_ino of the nsfs file), remembering
/// what each sandbox resolved to: a sandbox's namespace, metadata and labels do not change, so a
/// poll (the daemon polls while a pod veth is unnamed) asks PodSandboxStatus only of sandboxes it
/// has not seen, and costs one ListPodSandbox otherwise.
///
/// Per new sandbox: PodSandboxStatus(verbose); from `info["info"]` (JSON) the OCI runtime spec's
/// `runtimeSpec.linux.namespaces[type=="network"].path`, stat'ed; failing that the sandbox
/// process's `/proc/PID/ns/net` (`"pid"`). Skipped, not fatal: host-network sandboxes (NamespaceOption
/// network NODE, or a runtime spec without a network namespace), sandboxes whose info is missing or
/// unparseable or whose namespace file is gone, sandboxes removed since the listing (NotFound) or
/// whose status call fails (asked again on the next poll), and anything that resolves to netpath's
/// own network namespace. Errors: ListPodSandbox failing, or every PodSandboxStatus call of a poll
/// failing (other than NotFound). Two sandboxes on one namespace: the newer wins.
#[derive(Debug, Default)]
pub struct PodResolver {
    /// Sandbox id -> (its namespace's inode, its creation time, the pod); None: nothing to map
    /// (host network, netpath's own namespace).
    known: HashMap<String, Option<(u64, i64, PodRef)>>,
}

impl PodResolver {
    pub async fn resolve(&mut self, cri: &mut CriClient) -> Result<HashMap<u64, PodRef>, CriError> {
        let sandboxes = cri.ready_sandboxes().await?;
        self.known.retain(|id, _| sandboxes.iter().any(|sb| &sb.id == id));
        let fresh: Vec<proto::PodSandbox> = sandboxes
            .into_iter()
            .filter(|sb| !self.known.contains_key(&sb.id))
            .collect();
        let own_netns = nsfs_inode(Path::new("/proc/self/ns/net"));
        let statuses: Vec<_> = futures::stream::iter(fresh)
            .map(|sb| {
                let mut client = cri.clone();
                async move {
                    let r = client.sandbox_status(&sb.id).await;
                    (sb, r)
                }
            })
            .buffer_unordered(STATUS_CONCURRENCY)
            .collect()
            .await;
        let (mut answered, mut first_err) = (statuses.is_empty(), None);
        for (sb, status) in statuses {
            let status = match status {
                Ok(s) => s,
                // Removed since the listing (NotFound), or trouble with this one sandbox. When no
                // status call at all succeeds, the runtime is the problem: that error is returned.
                Err(e) => {
                    if !matches!(
                        e,
                        CriError::Call {
                            code: tonic::Code::NotFound,
                            ..
                        }
                    ) {
                        first_err.get_or_insert(e);
                    } else {
                        answered = true;
                    }
                    continue;
                }
            };
            answered = true;
            let ino = match netns_location(&status) {
                Some(NetnsLocation::Host) => {
                    self.known.insert(sb.id, None);
                    continue;
                }
                // Not resolvable now (no info, the namespace file not there): asked again.
                None => continue,
                Some(NetnsLocation::At { path, pid }) => match netns_inode(path, pid) {
                    Some(ino) => ino,
                    None => continue,
                },
            };
            if Some(ino) == own_netns {
                self.known.insert(sb.id, None);
                continue;
            }
            let meta = status
                .status
                .as_ref()
                .and_then(|s| s.metadata.clone())
                .or(sb.metadata)
                .unwrap_or_default();
            let labels = match status.status.as_ref().map(|s| &s.labels) {
                Some(l) if !l.is_empty() => l,
                _ => &sb.labels,
            };
            let pod = PodRef {
                labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                namespace: meta.namespace,
                name: meta.name,
                uid: meta.uid,
                sandbox_id: sb.id.clone(),
            };
            self.known.insert(sb.id, Some((ino, sb.created_at, pod)));
        }
        if let (Some(e), false) = (first_err, answered) {
            return Err(e);
        }
        let mut out: HashMap<u64, (i64, &PodRef)> = HashMap::new();
        for (ino, created, pod) in self.known.values().flatten() {
            match out.get(ino) {
                Some((newer, _)) if newer > created => {}
                _ => {
                    out.insert(*ino, (*created, pod));
                }
            }
        }
        Ok(out.into_iter().map(|(k, (_, p))| (k, p.clone())).collect())
    }
}

/// Where a sandbox's network namespace is, from its verbose status.
#[derive(Debug, PartialEq, Eq)]
enum NetnsLocation {
    /// Host network: nothing to map.
    Host,
    /// Namespace file path from the runtime spec (may be empty) and/or the sandbox process.
    At { path: Option<PathBuf>, pid: Option<u32> },
}

fn netns_location(status: &proto::PodSandboxStatusResponse) -> Option<NetnsLocation> {
    let mode = status
        .status
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network);
    if mode == Some(proto::NamespaceMode::Node as i32) {
        return Some(NetnsLocation::Host);
    }
    let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
    let info = info.as_object()?;
    let pid = info
        .get("pid")
        .and_then(|p| p.as_u64())
        .filter(|&p| p > 0 && p <= u32::MAX as u64)
        .map(|p| p as u32);
    let namespaces = info
        .get("runtimeSpec")
        .and_then(|s| s.get("linux"))
        .and_then(|l| l.get("namespaces"))
        .and_then(|n| n.as_array());
    let path = match namespaces {
        Some(list) => {
            // A runtime spec without a network namespace entry runs in the host's.
            let net = list
                .iter()
                .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"));
            let Some(net) = net else {
                return Some(NetnsLocation::Host);
            };
            net.get("path")
                .and_then(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        }
        None => None,
    };
    if path.is_none() && pid.is_none() {
        return None;
    }
    Some(NetnsLocation::At { path, pid })
}

/// The inode of a sandbox's namespace: its file, else its process's.
fn netns_inode(path: Option<PathBuf>, pid: Option<u32>) -> Option<u64> {
    path.and_then(|p| nsfs_inode(&p))
        .or_else(|| pid.and_then(|pid| nsfs_inode(&PathBuf::from(format!("/proc/{pid}/ns/net")))))
}

/// st_ino of a namespace file, if `path` is one (a leftover regular file under /run/netns is not).
pub fn nsfs_inode(path: &Path) -> Option<u64> {
    use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs fills a zeroed, correctly sized struct from a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    (st.f_type as i64 == NSFS_MAGIC).then_some(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(network: Option<proto::NamespaceMode>, info: Option<&str>) -> proto::PodSandboxStatusResponse {
        proto::PodSandboxStatusResponse {
            status: Some(proto::PodSandboxStatus {
                linux: network.map(|m| proto::LinuxPodSandboxStatus {
                    namespaces: Some(proto::Namespace {
                        options: Some(proto::NamespaceOption {
                            network: m as i32,
                            ..Default::default()
                        }),
                    }),
                }),
                ..Default::default()
            }),
            info: info
                .map(|i| HashMap::from([("info".to_string(), i.to_string())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn location_from_info() {
        let spec = r#"{"pid":7,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}"#;
        assert_eq!(
            netns_location(&status(Some(proto::NamespaceMode::Pod), Some(spec))),
            Some(NetnsLocation::At {
                path: Some("/var/run/netns/cni-1".into()),
                pid: Some(7)
            })
        );
        assert_eq!(
            netns_location(&status(Some(proto::NamespaceMode::Node), Some(spec))),
            Some(NetnsLocation::Host)
        );
        let host = r#"{"pid":7,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"}]}}}"#;
        assert_eq!(netns_location(&status(None, Some(host))), Some(NetnsLocation::Host));
        assert_eq!(
            netns_location(&status(None, Some(r#"{"pid":9}"#))),
            Some(NetnsLocation::At {
                path: None,
                pid: Some(9)
            })
        );
        let new_ns = r#"{"pid":9,"runtimeSpec":{"linux":{"namespaces":[{"type":"network"}]}}}"#;
        assert_eq!(
            netns_location(&status(None, Some(new_ns))),
            Some(NetnsLocation::At {
                path: None,
                pid: Some(9)
            })
        );
        assert_eq!(netns_location(&status(None, Some("{not json"))), None);
        assert_eq!(netns_location(&status(None, Some("[]"))), None);
        assert_eq!(netns_location(&status(None, Some(r#"{"pid":0}"#))), None);
        assert_eq!(netns_location(&status(None, None)), None);
    }

    #[test]
    fn own_netns_is_nsfs() {
        assert!(nsfs_inode(Path::new("/proc/self/ns/net")).is_some());
        assert!(nsfs_inode(Path::new("/proc/self/status")).is_none());
    }
}
