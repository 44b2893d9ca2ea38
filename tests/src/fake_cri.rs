//! A fake CRI runtime (containerd/CRI-O stand-in) for tests: a tonic gRPC server on a unix socket
//! in a temp dir serving `runtime.v1.RuntimeService` Version, ListPodSandbox and PodSandboxStatus.
//! No protoc here: the messages are netpath's hand-written CRI protos.
use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    path::PathBuf,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use netpath::node::cri::{paths, proto, PodRef};
use tonic::codegen::http;
use tonic_prost::ProstCodec;

pub use crate::TempDir;

// ---------------------------------------------------------------------------------------------
// The fake runtime.

pub struct FakeSandbox {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub state: proto::PodSandboxState,
    pub network: proto::NamespaceMode,
    /// The verbose `info["info"]` JSON string; None: no info map at all.
    pub info: Option<String>,
    /// PodSandboxStatus answers this error (NotFound: removed after the listing).
    pub fail: Option<tonic::Code>,
    pub labels: BTreeMap<String, String>,
}

impl FakeSandbox {
    pub fn new(id: &str, namespace: &str, name: &str, info: Option<String>) -> FakeSandbox {
        FakeSandbox {
            id: id.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{id}"),
            state: proto::PodSandboxState::SandboxReady,
            network: proto::NamespaceMode::Pod,
            info,
            fail: None,
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        }
    }

    pub fn metadata(&self) -> proto::PodSandboxMetadata {
        proto::PodSandboxMetadata {
            name: self.name.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            attempt: 0,
        }
    }

    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            sandbox_id: self.id.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// What the fake saw: (method path, detail) per call.
pub type CallLog = Arc<Mutex<Vec<(String, String)>>>;

/// `runtime.v1.RuntimeService`, routed by path the way tonic-build's generated servers do. It
/// ignores the ListPodSandbox filter (returns every sandbox), like a lax runtime.
#[derive(Clone)]
pub struct FakeCri {
    sandboxes: Arc<Vec<FakeSandbox>>,
    calls: CallLog,
}

impl tonic::server::NamedService for FakeCri {
    const NAME: &'static str = paths::SERVICE;
}

impl tower::Service<http::Request<tonic::body::Body>> for FakeCri {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let me = self.clone();
        match req.uri().path() {
            paths::VERSION => Box::pin(async move {
                let svc = tower::service_fn(move |r: tonic::Request<proto::VersionRequest>| {
                    let calls = me.calls.clone();
                    async move {
                        calls
                            .lock()
                            .unwrap()
                            .push((paths::VERSION.into(), r.into_inner().version));
                        Ok::<_, tonic::Status>(tonic::Response::new(proto::VersionResponse {
                            version: "0.1.0".into(),
                            runtime_name: "fakecri".into(),
                            runtime_version: "1.0.0".into(),
                            runtime_api_version: "v1".into(),
                        }))
                    }
                });
                let codec: ProstCodec<proto::VersionResponse, proto::VersionRequest> = ProstCodec::default();
                Ok(tonic::server::Grpc::new(codec).unary(svc, req).await)
            }),
            paths::LIST_POD_SANDBOX => Box::pin(async move {
                let svc = tower::service_fn(move |r: tonic::Request<proto::ListPodSandboxRequest>| {
                    let me = me.clone();
                    async move {
                        let state = r.into_inner().filter.and_then(|f| f.state).map(|s| s.state);
                        me.calls
                            .lock()
                            .unwrap()
                            .push((paths::LIST_POD_SANDBOX.into(), format!("state={state:?}")));
                        let items = me
                            .sandboxes
                            .iter()
                            .enumerate()
                            .map(|(i, s)| proto::PodSandbox {
                                id: s.id.clone(),
                                metadata: Some(s.metadata()),
                                state: s.state as i32,
                                created_at: 1_700_000_000_000_000_000 + i as i64,
                                labels: s.labels.clone().into_iter().collect(),
                            })
                            .collect();
                        Ok::<_, tonic::Status>(tonic::Response::new(proto::ListPodSandboxResponse { items }))
                    }
                });
                let codec: ProstCodec<proto::ListPodSandboxResponse, proto::ListPodSandboxRequest> =
                    ProstCodec::default();
                Ok(tonic::server::Grpc::new(codec).unary(svc, req).await)
            }),
            paths::POD_SANDBOX_STATUS => Box::pin(async move {
                let svc = tower::service_fn(move |r: tonic::Request<proto::PodSandboxStatusRequest>| {
                    let me = me.clone();
                    async move {
                        let r = r.into_inner();
                        me.calls.lock().unwrap().push((
                            paths::POD_SANDBOX_STATUS.into(),
                            format!("{} verbose={}", r.pod_sandbox_id, r.verbose),
                        ));
                        let Some(s) = me.sandboxes.iter().find(|s| s.id == r.pod_sandbox_id) else {
                            return Err(tonic::Status::not_found(format!(
                                "sandbox {} not found",
                                r.pod_sandbox_id
                            )));
                        };
                        if let Some(code) = s.fail {
                            return Err(tonic::Status::new(code, format!("fake failure for {}", s.id)));
                        }
                        let status = proto::PodSandboxStatus {
                            id: s.id.clone(),
                            metadata: Some(s.metadata()),
                            state: s.state as i32,
                            created_at: 1,
                            linux: Some(proto::LinuxPodSandboxStatus {
                                namespaces: Some(proto::Namespace {
                                    options: Some(proto::NamespaceOption {
                                        network: s.network as i32,
                                        ..Default::default()
                                    }),
                                }),
                            }),
                            labels: s.labels.clone().into_iter().collect(),
                            network: None,
                        };
                        let info = match (&s.info, r.verbose) {
                            (Some(i), true) => HashMap::from([("info".to_string(), i.clone())]),
                            _ => HashMap::new(),
                        };
                        Ok(tonic::Response::new(proto::PodSandboxStatusResponse {
                            status: Some(status),
                            info,
                        }))
                    }
                });
                let codec: ProstCodec<proto::PodSandboxStatusResponse, proto::PodSandboxStatusRequest> =
                    ProstCodec::default();
                Ok(tonic::server::Grpc::new(codec).unary(svc, req).await)
            }),
            other => {
                let status = tonic::Status::unimplemented(format!("fake CRI: {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A private temp directory, removed on drop.
/// The fake CRI server on `<tempdir>/cri.sock`; shut down and its directory removed on drop.
pub struct FakeServer {
    pub socket: PathBuf,
    pub calls: CallLog,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    rt: tokio::runtime::Handle,
    _dir: TempDir,
}

impl FakeServer {
    /// Start it on `rt` (call outside the runtime's own threads).
    pub fn start(rt: &tokio::runtime::Runtime, dir: TempDir, sandboxes: Vec<FakeSandbox>) -> FakeServer {
        let socket = dir.0.join("cri.sock");
        let calls = CallLog::default();
        let svc = FakeCri {
            sandboxes: Arc::new(sandboxes),
            calls: calls.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(&socket).unwrap_or_else(|e| panic!("binding {}: {e}", socket.display()))
        };
        let task = rt.spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let r = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(svc, incoming, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                eprintln!("fake CRI server: {e}");
            }
        });
        FakeServer {
            socket,
            calls,
            shutdown: Some(tx),
            task: Some(task),
            rt: rt.handle().clone(),
            _dir: dir,
        }
    }

    pub fn calls(&self, path: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Give open connections a moment to close, then stop regardless.
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), task).await });
        }
    }
}
