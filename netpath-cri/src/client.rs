//! A connection to a CRI runtime socket (`runtime.v1.RuntimeService` over gRPC on a unix socket):
//! what netpath reads (Version, ListPodSandbox, PodSandboxStatus) and what the lab and the tests
//! drive (pod sandboxes and containers).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint, Uri},
};
use tonic_prost::ProstCodec;

use crate::proto;

/// Where containerd and CRI-O listen by default, in the order [`CriClient::discover`] tries them.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
];

/// How long [`CriClient::connect`] waits for the socket to accept and speak HTTP/2.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one read-only CRI call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call that creates, starts, stops or removes a sandbox or container may take: it runs
/// the CNI plugins and the OCI runtime.
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The gRPC method paths of `runtime.v1.RuntimeService` used here.
pub mod paths {
    pub const SERVICE: &str = "runtime.v1.RuntimeService";
    pub const VERSION: &str = "/runtime.v1.RuntimeService/Version";
    pub const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
    pub const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";
    pub const RUN_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/RunPodSandbox";
    pub const STOP_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/StopPodSandbox";
    pub const REMOVE_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/RemovePodSandbox";
    pub const CREATE_CONTAINER: &str = "/runtime.v1.RuntimeService/CreateContainer";
    pub const START_CONTAINER: &str = "/runtime.v1.RuntimeService/StartContainer";
    pub const STOP_CONTAINER: &str = "/runtime.v1.RuntimeService/StopContainer";
    pub const REMOVE_CONTAINER: &str = "/runtime.v1.RuntimeService/RemoveContainer";
    pub const CONTAINER_STATUS: &str = "/runtime.v1.RuntimeService/ContainerStatus";
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
        // No channel-wide timeout: each call has its own (RunPodSandbox takes longer than a listing).
        let endpoint = Endpoint::from_static("http://localhost").connect_timeout(CONNECT_TIMEOUT);
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

    /// ListPodSandbox without a filter: every sandbox, ready or not.
    pub async fn all_sandboxes(&mut self) -> Result<Vec<proto::PodSandbox>, CriError> {
        let resp: proto::ListPodSandboxResponse = self
            .call(
                "ListPodSandbox",
                paths::LIST_POD_SANDBOX,
                proto::ListPodSandboxRequest::default(),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(resp.items)
    }

    /// RunPodSandbox: the runtime creates the sandbox, its network namespace (through CNI) and its
    /// pause container. Returns the sandbox id.
    pub async fn run_sandbox(&mut self, config: proto::PodSandboxConfig) -> Result<String, CriError> {
        let req = proto::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp: proto::RunPodSandboxResponse = self
            .call("RunPodSandbox", paths::RUN_POD_SANDBOX, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(resp.pod_sandbox_id)
    }

    /// StopPodSandbox: stops its containers and tears its network down (CNI DEL).
    pub async fn stop_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let req = proto::PodSandboxIdRequest {
            pod_sandbox_id: id.to_string(),
        };
        let _: proto::Empty = self
            .call("StopPodSandbox", paths::STOP_POD_SANDBOX, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(())
    }

    /// RemovePodSandbox (after [`CriClient::stop_sandbox`]).
    pub async fn remove_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let req = proto::PodSandboxIdRequest {
            pod_sandbox_id: id.to_string(),
        };
        let _: proto::Empty = self
            .call("RemovePodSandbox", paths::REMOVE_POD_SANDBOX, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(())
    }

    /// CreateContainer in a sandbox (the sandbox's config again, as the kubelet sends it).
    pub async fn create_container(
        &mut self,
        sandbox_id: &str,
        config: proto::ContainerConfig,
        sandbox_config: proto::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let req = proto::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp: proto::CreateContainerResponse = self
            .call("CreateContainer", paths::CREATE_CONTAINER, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(resp.container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), CriError> {
        let req = proto::ContainerIdRequest {
            container_id: id.to_string(),
            timeout: 0,
        };
        let _: proto::Empty = self
            .call("StartContainer", paths::START_CONTAINER, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(())
    }

    /// StopContainer: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_container(&mut self, id: &str, grace: Duration) -> Result<(), CriError> {
        let req = proto::ContainerIdRequest {
            container_id: id.to_string(),
            timeout: grace.as_secs() as i64,
        };
        let _: proto::Empty = self
            .call("StopContainer", paths::STOP_CONTAINER, req, LIFECYCLE_TIMEOUT + grace)
            .await?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<(), CriError> {
        let req = proto::ContainerIdRequest {
            container_id: id.to_string(),
            timeout: 0,
        };
        let _: proto::Empty = self
            .call("RemoveContainer", paths::REMOVE_CONTAINER, req, LIFECYCLE_TIMEOUT)
            .await?;
        Ok(())
    }

    /// ContainerStatus, verbose (the runtime's `info` too).
    pub async fn container_status(&mut self, id: &str) -> Result<proto::ContainerStatusResponse, CriError> {
        let req = proto::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        self.call("ContainerStatus", paths::CONTAINER_STATUS, req, CALL_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_prefix() {
        assert_eq!(
            socket_path(Path::new("unix:///run/x.sock")),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(socket_path(Path::new("/run/x.sock")), PathBuf::from("/run/x.sock"));
    }
}
