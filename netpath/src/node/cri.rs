//! CRI pod lookup: names a pod's network namespace with the Kubernetes pod that owns it.
//!
//! netpath maps each pod veth to the network namespace its peer lives in (by nsfs inode). When a
//! CRI runtime socket is reachable (containerd, CRI-O), [`CriClient::pods_by_netns_inode`] lists the
//! ready pod sandboxes and resolves each one's network namespace to that same inode.
//!
//! There is no protoc at build time, so the few `runtime.v1` messages used here are written by hand
//! in [`proto`], with the field numbers of `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`. Only the
//! fields netpath reads (or a test server has to send) are declared: prost skips the others.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
};
use tonic_prost::ProstCodec;

/// Where containerd and CRI-O listen by default, in the order [`CriClient::discover`] tries them.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
];

/// How long [`CriClient::connect`] waits for the socket to accept and speak HTTP/2.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one CRI call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// PodSandboxStatus calls in flight at once.
const STATUS_CONCURRENCY: usize = 8;
/// `statfs` magic of nsfs, the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// The gRPC method paths of `runtime.v1.RuntimeService` used here.
pub mod paths {
    pub const SERVICE: &str = "runtime.v1.RuntimeService";
    pub const VERSION: &str = "/runtime.v1.RuntimeService/Version";
    pub const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
    pub const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";
}

/// Hand-written subset of the CRI v1 protobuf messages (package `runtime.v1`). Field tags match
/// `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`.
pub mod proto {
    use std::collections::HashMap;

    /// `enum PodSandboxState`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum PodSandboxState {
        SandboxReady = 0,
        SandboxNotready = 1,
    }

    /// `enum NamespaceMode`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum NamespaceMode {
        Pod = 0,
        Container = 1,
        Node = 2,
        Target = 3,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        #[prost(string, tag = "1")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(uint32, tag = "4")]
        pub attempt: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStateValue {
        #[prost(enumeration = "PodSandboxState", tag = "1")]
        pub state: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxFilter {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub state: Option<PodSandboxStateValue>,
        #[prost(map = "string, string", tag = "3")]
        pub label_selector: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxRequest {
        #[prost(message, optional, tag = "1")]
        pub filter: Option<PodSandboxFilter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandbox {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(enumeration = "PodSandboxState", tag = "3")]
        pub state: i32,
        #[prost(int64, tag = "4")]
        pub created_at: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxResponse {
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<PodSandbox>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatusRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamespaceOption {
        #[prost(enumeration = "NamespaceMode", tag = "1")]
        pub network: i32,
        #[prost(enumeration = "NamespaceMode", tag = "2")]
        pub pid: i32,
        #[prost(enumeration = "NamespaceMode", tag = "3")]
        pub ipc: i32,
        #[prost(string, tag = "4")]
        pub target_id: String,
    }

    /// `message Namespace` (tag 1 is reserved upstream).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Namespace {
        #[prost(message, optional, tag = "2")]
        pub options: Option<NamespaceOption>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxPodSandboxStatus {
        #[prost(message, optional, tag = "1")]
        pub namespaces: Option<Namespace>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatus {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(enumeration = "PodSandboxState", tag = "3")]
        pub state: i32,
        #[prost(int64, tag = "4")]
        pub created_at: i64,
        #[prost(message, optional, tag = "6")]
        pub linux: Option<LinuxPodSandboxStatus>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<PodSandboxStatus>,
        /// Verbose only: runtime-specific JSON strings; containerd and CRI-O both use key "info".
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }
}

/// The Kubernetes pod that owns a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
}

/// What the runtime answered to Version.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeVersion {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("CRI socket {}: cannot connect: {detail}", socket.display())]
    Connect { socket: PathBuf, detail: String },

    #[error("CRI socket {}: no answer to connect and Version within {timeout:?}", socket.display())]
    ConnectTimeout { socket: PathBuf, timeout: Duration },

    #[error("CRI {method} on {}: {code:?}: {message}", socket.display())]
    Call {
        socket: PathBuf,
        method: &'static str,
        code: tonic::Code,
        message: String,
    },

    #[error("CRI {method} on {}: no answer within {timeout:?}", socket.display())]
    CallTimeout {
        socket: PathBuf,
        method: &'static str,
        timeout: Duration,
    },
}

/// A connection to one CRI runtime socket (`runtime.v1.RuntimeService`).
#[derive(Clone)]
pub struct CriClient {
    socket: PathBuf,
    grpc: tonic::client::Grpc<Channel>,
    runtime: RuntimeVersion,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("socket", &self.socket)
            .field("runtime", &self.runtime)
            .finish()
    }
}

/// The sockets to try: the configured one alone, else [`DEFAULT_SOCKETS`].
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    match configured {
        Some(p) => vec![p.to_path_buf()],
        None => DEFAULT_SOCKETS.iter().map(PathBuf::from).collect(),
    }
}

/// `unix:///run/x.sock` (kubelet's --container-runtime-endpoint form) -> `/run/x.sock`.
fn socket_path(socket: &Path) -> PathBuf {
    match socket.to_str().and_then(|s| s.strip_prefix("unix://")) {
        Some(rest) => PathBuf::from(rest),
        None => socket.to_path_buf(),
    }
}

/// An error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl CriClient {
    /// Connect to a CRI runtime socket (unix; a `unix://` prefix is accepted) and check that it answers
    /// `runtime.v1` Version. Fails within [`CONNECT_TIMEOUT`] with an error naming the socket: nothing
    /// there, nobody listening, a listener that never answers, or a runtime without the CRI v1 API.
    pub async fn connect(socket: &Path) -> Result<CriClient, CriError> {
        let socket = socket_path(socket);
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(socket.clone())).await {
            Ok(r) => r,
            Err(_) => Err(CriError::ConnectTimeout {
                socket,
                timeout: CONNECT_TIMEOUT,
            }),
        }
    }

    async fn connect_inner(socket: PathBuf) -> Result<CriClient, CriError> {
        let path = socket.clone();
        // The URI only fills the :authority header (gRPC clients use "localhost" on unix sockets).
        let endpoint = Endpoint::from_static("http://localhost")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| CriError::Connect {
                detail: chain(&e),
                socket: socket.clone(),
            })?;
        let mut client = CriClient {
            socket,
            grpc: tonic::client::Grpc::new(channel),
            runtime: RuntimeVersion::default(),
        };
        // HTTP/2 does not wait for the server's first frame: only an answer proves a CRI runtime.
        client.runtime = match client.version_within(CONNECT_TIMEOUT).await {
            Ok(v) => v,
            Err(CriError::CallTimeout { socket, .. }) => {
                return Err(CriError::ConnectTimeout {
                    socket,
                    timeout: CONNECT_TIMEOUT,
                })
            }
            Err(e) => return Err(e),
        };
        Ok(client)
    }

    /// First socket of `candidates` that exists and answers Version.
    pub async fn discover(candidates: &[PathBuf]) -> Option<(PathBuf, CriClient)> {
        for c in candidates {
            let path = socket_path(c);
            if !path.exists() {
                continue;
            }
            if let Ok(client) = CriClient::connect(&path).await {
                return Some((path, client));
            }
        }
        None
    }

    /// What the runtime answered to Version when connecting.
    pub fn runtime(&self) -> &RuntimeVersion {
        &self.runtime
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn call<Req, Resp>(
        &mut self,
        method: &'static str,
        path: &'static str,
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, CriError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let name = method;
        let fut = async {
            self.grpc
                .ready()
                .await
                .map_err(|e| tonic::Status::unavailable(chain(&e)))?;
            let codec: ProstCodec<Req, Resp> = ProstCodec::default();
            self.grpc
                .unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec)
                .await
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(CriError::CallTimeout {
                socket: self.socket.clone(),
                method: name,
                timeout,
            }),
            Ok(Err(status)) => Err(CriError::Call {
                socket: self.socket.clone(),
                method: name,
                code: status.code(),
                message: status.message().to_string(),
            }),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }

    /// Version: the runtime's name and versions. Also the liveness check of [`CriClient::discover`].
    pub async fn version(&mut self) -> Result<RuntimeVersion, CriError> {
        self.version_within(CALL_TIMEOUT).await
    }

    async fn version_within(&mut self, timeout: Duration) -> Result<RuntimeVersion, CriError> {
        let req = proto::VersionRequest { version: "v1".into() };
        let v: proto::VersionResponse = self.call("Version", paths::VERSION, req, timeout).await?;
        Ok(RuntimeVersion {
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        })
    }

    /// ListPodSandbox, filtered to ready sandboxes (and filtered again here, should a runtime ignore
    /// the filter).
    pub async fn ready_sandboxes(&mut self) -> Result<Vec<proto::PodSandbox>, CriError> {
        let req = proto::ListPodSandboxRequest {
            filter: Some(proto::PodSandboxFilter {
                state: Some(proto::PodSandboxStateValue {
                    state: proto::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        };
        let resp: proto::ListPodSandboxResponse = self
            .call("ListPodSandbox", paths::LIST_POD_SANDBOX, req, CALL_TIMEOUT)
            .await?;
        Ok(resp
            .items
            .into_iter()
            .filter(|s| s.state == proto::PodSandboxState::SandboxReady as i32)
            .collect())
    }

    /// PodSandboxStatus with verbose info.
    pub async fn sandbox_status(&mut self, id: &str) -> Result<proto::PodSandboxStatusResponse, CriError> {
        let req = proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        self.call("PodSandboxStatus", paths::POD_SANDBOX_STATUS, req, CALL_TIMEOUT)
            .await
    }

    /// Ready pod sandboxes -> their network namespace inode (st_ino of the nsfs file).
    ///
    /// Per sandbox: PodSandboxStatus(verbose); from `info["info"]` (JSON) the OCI runtime spec's
    /// `runtimeSpec.linux.namespaces[type=="network"].path`, stat'ed; failing that the sandbox
    /// process's `/proc/PID/ns/net` (`"pid"`). Skipped, not fatal: host-network sandboxes (NamespaceOption
    /// network NODE, or a runtime spec without a network namespace), sandboxes whose info is missing or
    /// unparseable or whose namespace file is gone, sandboxes removed since the listing (NotFound) or
    /// whose status call fails, and anything that resolves to netpath's own network namespace. Errors:
    /// ListPodSandbox failing, or every PodSandboxStatus call failing (other than NotFound). Two
    /// sandboxes on one namespace: the newer wins.
    pub async fn pods_by_netns_inode(&mut self) -> Result<HashMap<u64, PodRef>, CriError> {
        let sandboxes = self.ready_sandboxes().await?;
        let own_netns = nsfs_inode(Path::new("/proc/self/ns/net"));
        let statuses: Vec<_> = futures::stream::iter(sandboxes)
            .map(|sb| {
                let mut client = self.clone();
                async move {
                    let r = client.sandbox_status(&sb.id).await;
                    (sb, r)
                }
            })
            .buffer_unordered(STATUS_CONCURRENCY)
            .collect()
            .await;
        let mut out: HashMap<u64, (i64, PodRef)> = HashMap::new();
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
            let Some(ino) = sandbox_netns_inode(&status) else {
                continue;
            };
            if Some(ino) == own_netns {
                continue;
            }
            let meta = status
                .status
                .as_ref()
                .and_then(|s| s.metadata.clone())
                .or(sb.metadata)
                .unwrap_or_default();
            let pod = PodRef {
                namespace: meta.namespace,
                name: meta.name,
                uid: meta.uid,
                sandbox_id: sb.id,
            };
            match out.get(&ino) {
                Some((created, _)) if *created > sb.created_at => {}
                _ => {
                    out.insert(ino, (sb.created_at, pod));
                }
            }
        }
        match first_err {
            Some(e) if !answered => Err(e),
            _ => Ok(out.into_iter().map(|(k, (_, p))| (k, p)).collect()),
        }
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

fn sandbox_netns_inode(status: &proto::PodSandboxStatusResponse) -> Option<u64> {
    match netns_location(status)? {
        NetnsLocation::Host => None,
        NetnsLocation::At { path, pid } => path
            .and_then(|p| nsfs_inode(&p))
            .or_else(|| pid.and_then(|pid| nsfs_inode(&PathBuf::from(format!("/proc/{pid}/ns/net"))))),
    }
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
    fn proto_roundtrip_uses_cri_tags() {
        use prost::Message;
        // PodSandboxStatusRequest{pod_sandbox_id: "ab", verbose: true}: field 1 (len), field 2 (varint).
        let b = proto::PodSandboxStatusRequest {
            pod_sandbox_id: "ab".into(),
            verbose: true,
        }
        .encode_to_vec();
        assert_eq!(b, [0x0a, 2, b'a', b'b', 0x10, 1]);
        // ListPodSandboxRequest{filter{state{state: READY}}}: READY is 0, so state is an empty message.
        let b = proto::ListPodSandboxRequest {
            filter: Some(proto::PodSandboxFilter {
                state: Some(proto::PodSandboxStateValue { state: 0 }),
                ..Default::default()
            }),
        }
        .encode_to_vec();
        assert_eq!(b, [0x0a, 2, 0x12, 0]);
    }

    #[test]
    fn unix_prefix() {
        assert_eq!(
            socket_path(Path::new("unix:///run/x.sock")),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(socket_path(Path::new("/run/x.sock")), PathBuf::from("/run/x.sock"));
    }

    #[test]
    fn own_netns_is_nsfs() {
        assert!(nsfs_inode(Path::new("/proc/self/ns/net")).is_some());
        assert!(nsfs_inode(Path::new("/proc/self/status")).is_none());
    }
}
