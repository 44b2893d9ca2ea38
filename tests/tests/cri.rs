//! CRI pod lookup against a fake CRI runtime: a tonic gRPC server on a unix socket in a temp dir
//! serving `runtime.v1.RuntimeService` Version, ListPodSandbox and PodSandboxStatus, with sandboxes
//! whose network namespaces are real (`ip netns add`, a process in one). Guards remove the socket
//! directory, the namespaces and the process even when a test panics.
use futures::future::BoxFuture;
use netpath::cri::{paths, proto, CriClient, CriError, PodRef};
use tonic_prost::ProstCodec;
use netpath_tests::*;
use std::{
    collections::HashMap,
    convert::Infallible,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tonic::codegen::http;

// ---------------------------------------------------------------------------------------------
// The fake runtime.

struct FakeSandbox {
    id: String,
    namespace: String,
    name: String,
    uid: String,
    state: proto::PodSandboxState,
    network: proto::NamespaceMode,
    /// The verbose `info["info"]` JSON string; None: no info map at all.
    info: Option<String>,
    /// PodSandboxStatus answers this error (NotFound: removed after the listing).
    fail: Option<tonic::Code>,
}

impl FakeSandbox {
    fn new(id: &str, namespace: &str, name: &str, info: Option<String>) -> FakeSandbox {
        FakeSandbox {
            id: id.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{id}"),
            state: proto::PodSandboxState::SandboxReady,
            network: proto::NamespaceMode::Pod,
            info,
            fail: None,
        }
    }

    fn metadata(&self) -> proto::PodSandboxMetadata {
        proto::PodSandboxMetadata { name: self.name.clone(), uid: self.uid.clone(), namespace: self.namespace.clone(), attempt: 0 }
    }

    fn pod_ref(&self) -> PodRef {
        PodRef { namespace: self.namespace.clone(), name: self.name.clone(), uid: self.uid.clone(), sandbox_id: self.id.clone() }
    }
}

/// What the fake saw: (method path, detail) per call.
type CallLog = Arc<Mutex<Vec<(String, String)>>>;

/// `runtime.v1.RuntimeService`, routed by path the way tonic-build's generated servers do. It
/// ignores the ListPodSandbox filter (returns every sandbox), like a lax runtime.
#[derive(Clone)]
struct FakeCri {
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
                        calls.lock().unwrap().push((paths::VERSION.into(), r.into_inner().version));
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
                        me.calls.lock().unwrap().push((paths::LIST_POD_SANDBOX.into(), format!("state={state:?}")));
                        let items = me
                            .sandboxes
                            .iter()
                            .enumerate()
                            .map(|(i, s)| proto::PodSandbox {
                                id: s.id.clone(),
                                metadata: Some(s.metadata()),
                                state: s.state as i32,
                                created_at: 1_700_000_000_000_000_000 + i as i64,
                            })
                            .collect();
                        Ok::<_, tonic::Status>(tonic::Response::new(proto::ListPodSandboxResponse { items }))
                    }
                });
                let codec: ProstCodec<proto::ListPodSandboxResponse, proto::ListPodSandboxRequest> = ProstCodec::default();
                Ok(tonic::server::Grpc::new(codec).unary(svc, req).await)
            }),
            paths::POD_SANDBOX_STATUS => Box::pin(async move {
                let svc = tower::service_fn(move |r: tonic::Request<proto::PodSandboxStatusRequest>| {
                    let me = me.clone();
                    async move {
                        let r = r.into_inner();
                        me.calls.lock().unwrap().push((paths::POD_SANDBOX_STATUS.into(), format!("{} verbose={}", r.pod_sandbox_id, r.verbose)));
                        let Some(s) = me.sandboxes.iter().find(|s| s.id == r.pod_sandbox_id) else {
                            return Err(tonic::Status::not_found(format!("sandbox {} not found", r.pod_sandbox_id)));
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
                                    options: Some(proto::NamespaceOption { network: s.network as i32, ..Default::default() }),
                                }),
                            }),
                        };
                        let info = match (&s.info, r.verbose) {
                            (Some(i), true) => HashMap::from([("info".to_string(), i.clone())]),
                            _ => HashMap::new(),
                        };
                        Ok(tonic::Response::new(proto::PodSandboxStatusResponse { status: Some(status), info }))
                    }
                });
                let codec: ProstCodec<proto::PodSandboxStatusResponse, proto::PodSandboxStatusRequest> = ProstCodec::default();
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
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("netpath-cri-"));
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake CRI server on `<tempdir>/cri.sock`; shut down and its directory removed on drop.
struct FakeServer {
    socket: PathBuf,
    calls: CallLog,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    rt: tokio::runtime::Handle,
    _dir: TempDir,
}

impl FakeServer {
    /// Start it on `rt` (call outside the runtime's own threads).
    fn start(rt: &tokio::runtime::Runtime, dir: TempDir, sandboxes: Vec<FakeSandbox>) -> FakeServer {
        let socket = dir.0.join("cri.sock");
        let calls = CallLog::default();
        let svc = FakeCri { sandboxes: Arc::new(sandboxes), calls: calls.clone() };
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
        FakeServer { socket, calls, shutdown: Some(tx), task: Some(task), rt: rt.handle().clone(), _dir: dir }
    }

    fn calls(&self, path: &str) -> Vec<String> {
        self.calls.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, d)| d.clone()).collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Give open connections a moment to close, then stop regardless.
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), task).await });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// A `sleep 30` inside a named namespace, killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start_in(ns: &Netns) -> Sleeper {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawning ip netns exec sleep");
        let s = Sleeper(child);
        // `ip netns exec` switches namespace and then execs sleep in the same process: wait for it.
        let want = ino(&format!("/run/netns/{}", ns.name));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(s.ns_path()).map(|m| m.ino()).ok() != Some(want) {
            assert!(Instant::now() < deadline, "pid {} never entered namespace {}", s.pid(), ns.name);
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ino(path: &str) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).ino()
}

/// containerd-style verbose info: the sandbox's OCI runtime spec with its namespaces.
fn info_with_spec(pid: u32, namespaces: serde_json::Value) -> String {
    serde_json::json!({
        "pid": pid,
        "processStatus": "running",
        "runtimeSpec": { "ociVersion": "1.1.0", "linux": { "namespaces": namespaces } },
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn cri_maps_ready_sandboxes_to_netns_inodes() {
    require_root();
    let ns1 = Netns::new("cria");
    let ns2 = Netns::new("crib");
    let sleeper = Sleeper::start_in(&ns2);
    let netns1_path = format!("/run/netns/{}", ns1.name);
    let ino1 = ino(&netns1_path);
    let ino2 = ino(&sleeper.ns_path());
    assert_eq!(ino2, ino(&format!("/run/netns/{}", ns2.name)));
    let host_ino = ino("/proc/self/ns/net");
    assert!(ino1 != host_ino && ino2 != host_ino);

    // 1: containerd-style, the runtime spec names the namespace file.
    let tea = FakeSandbox::new(
        "sb-tea",
        "default",
        "tea-6fb46d",
        Some(info_with_spec(
            1, // pid 1 is in the host namespace: the spec path must win over the pid
            serde_json::json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                               { "type": "network", "path": netns1_path }]),
        )),
    );
    // 2: only the sandbox process's pid.
    let coredns = FakeSandbox::new("sb-coredns", "kube-system", "coredns-abc", Some(serde_json::json!({ "pid": sleeper.pid() }).to_string()));
    // 3: host network (NamespaceOption NODE, and no network namespace in the spec).
    let mut host = FakeSandbox::new(
        "sb-host",
        "kube-system",
        "kube-proxy-xyz",
        Some(info_with_spec(std::process::id(), serde_json::json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "mount" }]))),
    );
    host.network = proto::NamespaceMode::Node;
    let (tea_ref, coredns_ref) = (tea.pod_ref(), coredns.pod_ref());

    let rt = runtime();
    let dir = TempDir::new();
    let missing = dir.0.join("missing.sock");
    let server = FakeServer::start(&rt, dir, vec![tea, coredns, host]);

    rt.block_on(async {
        let (found, mut client) = CriClient::discover(&[missing.clone(), server.socket.clone()])
            .await
            .expect("discover should find the fake CRI socket");
        assert_eq!(found, server.socket);
        assert_eq!(client.socket(), server.socket.as_path());
        assert_eq!(client.runtime().runtime_name, "fakecri");
        let v = client.version().await.expect("Version");
        assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("fakecri", "v1"));

        let pods = client.pods_by_netns_inode().await.expect("pods_by_netns_inode");
        assert_eq!(pods.get(&ino1), Some(&tea_ref), "{pods:#?}");
        assert_eq!(pods.get(&ino2), Some(&coredns_ref), "{pods:#?}");
        assert!(!pods.contains_key(&host_ino), "{pods:#?}");
        assert!(pods.values().all(|p| p.name != "kube-proxy-xyz"), "{pods:#?}");
        assert_eq!(pods.len(), 2, "{pods:#?}");
    });

    // The client asked for ready sandboxes and verbose status.
    let lists = server.calls(paths::LIST_POD_SANDBOX);
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(lists, [format!("state=Some({})", proto::PodSandboxState::SandboxReady as i32)]);
    let mut statuses = server.calls(paths::POD_SANDBOX_STATUS);
    statuses.sort();
    assert_eq!(statuses, ["sb-coredns verbose=true", "sb-host verbose=true", "sb-tea verbose=true"]);
    assert_eq!(server.calls(paths::VERSION).len(), 2);
    drop(server);
    drop(sleeper);
}

#[test]
fn cri_skips_garbage_info_and_unusable_sandboxes() {
    require_root();
    let ns1 = Netns::new("cric");
    let ns2 = Netns::new("crid");
    let netns1_path = format!("/run/netns/{}", ns1.name);
    let ino1 = ino(&netns1_path);
    let dir = TempDir::new();
    // A leftover plain file where a namespace bind mount used to be.
    let stale = dir.0.join("stale-netns");
    std::fs::write(&stale, b"").unwrap();

    let good = FakeSandbox::new(
        "sb-good",
        "default",
        "good-1",
        Some(info_with_spec(0, serde_json::json!([{ "type": "network", "path": netns1_path }]))),
    );
    let good_ref = good.pod_ref();
    let mut sandboxes = vec![
        FakeSandbox::new("sb-garbage", "default", "garbage", Some("{\"runtimeSpec\": {not json".into())),
        FakeSandbox::new("sb-array", "default", "array", Some("[1, 2, 3]".into())),
        FakeSandbox::new("sb-noinfo", "default", "noinfo", None),
        // Host network known only from the spec (NamespaceOption says POD): its pid must not be used.
        FakeSandbox::new(
            "sb-spechost",
            "default",
            "spechost",
            Some(info_with_spec(std::process::id(), serde_json::json!([{ "type": "pid" }]))),
        ),
        FakeSandbox::new(
            "sb-stale",
            "default",
            "stale",
            Some(info_with_spec(0, serde_json::json!([{ "type": "network", "path": stale }]))),
        ),
        // Listed but removed before its status was asked: NotFound.
        FakeSandbox::new(
            "sb-gone",
            "default",
            "gone",
            Some(info_with_spec(0, serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]))),
        ),
        // Its status call fails.
        FakeSandbox::new(
            "sb-broken",
            "default",
            "broken",
            Some(info_with_spec(0, serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]))),
        ),
        // Not ready (the fake ignores the filter): skipped even though its namespace is real.
        FakeSandbox::new(
            "sb-notready",
            "default",
            "notready",
            Some(info_with_spec(0, serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]))),
        ),
        good,
    ];
    sandboxes[5].fail = Some(tonic::Code::NotFound);
    sandboxes[6].fail = Some(tonic::Code::Internal);
    sandboxes[7].state = proto::PodSandboxState::SandboxNotready;

    let rt = runtime();
    let server = FakeServer::start(&rt, dir, sandboxes);
    let pods = rt.block_on(async {
        let mut client = CriClient::connect(&server.socket).await.expect("connect");
        client.pods_by_netns_inode().await.expect("bad sandboxes must be skipped, not fail the call")
    });
    assert_eq!(pods, HashMap::from([(ino1, good_ref)]));
    let statuses = server.calls(paths::POD_SANDBOX_STATUS);
    assert!(!statuses.iter().any(|s| s.starts_with("sb-notready")), "{statuses:?}");
    assert!(statuses.iter().any(|s| s.starts_with("sb-gone")), "{statuses:?}");
    assert!(statuses.iter().any(|s| s.starts_with("sb-broken")), "{statuses:?}");
}

#[test]
fn cri_reports_runtime_errors() {
    let rt = runtime();
    // Every sandbox's status call fails: the runtime is broken, and the call says so.
    let mut a = FakeSandbox::new("sb-a", "default", "a", None);
    a.fail = Some(tonic::Code::Unavailable);
    let mut b = FakeSandbox::new("sb-b", "default", "b", None);
    b.fail = Some(tonic::Code::Internal);
    let server = FakeServer::start(&rt, TempDir::new(), vec![a, b]);
    let err = rt.block_on(async {
        let mut client = CriClient::connect(&server.socket).await.expect("connect");
        client.pods_by_netns_inode().await.expect_err("all status calls failed")
    });
    assert!(matches!(&err, CriError::Call { method: "PodSandboxStatus", socket, .. } if socket == &server.socket), "{err:?}");
    assert!(err.to_string().contains(server.socket.to_str().unwrap()), "{err}");

    // No sandboxes at all is an empty map, not an error.
    let empty = FakeServer::start(&rt, TempDir::new(), vec![]);
    let pods = rt.block_on(async { CriClient::connect(&empty.socket).await.expect("connect").pods_by_netns_inode().await });
    assert_eq!(pods.expect("empty runtime"), HashMap::new());
}

#[test]
fn cri_connect_to_dead_socket_fails_fast_naming_it() {
    let rt = runtime();
    let dir = TempDir::new();
    // A socket file nobody listens on any more, a path with nothing at all, and a listener that
    // accepts but never speaks HTTP/2.
    let dead = dir.0.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let missing = dir.0.join("missing.sock");
    let mute = dir.0.join("mute.sock");
    let _mute_listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();

    rt.block_on(async {
        let dead_uri = PathBuf::from(format!("unix://{}", dead.display()));
        for (path, named) in [(&dead, &dead), (&missing, &missing), (&dead_uri, &dead)] {
            let t0 = Instant::now();
            let err = CriClient::connect(path).await.expect_err("nobody listens there");
            let took = t0.elapsed();
            assert!(took < Duration::from_millis(2500), "{} took {took:?}", path.display());
            let msg = err.to_string();
            assert!(msg.contains(named.to_str().unwrap()), "{msg}");
            assert!(matches!(&err, CriError::Connect { socket, .. } if socket == named), "{err:?}");
            eprintln!("{}: {msg} ({took:?})", path.display());
        }

        // The mute listener accepts, but HTTP/2 does not wait for the server: connect() proves the
        // runtime with Version, and gives up within the connect timeout.
        let t0 = Instant::now();
        let err = CriClient::connect(&mute).await.expect_err("a mute socket is no CRI runtime");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        assert!(matches!(&err, CriError::ConnectTimeout { socket, .. } if socket == &mute), "{err:?}");
        assert!(err.to_string().contains(mute.to_str().unwrap()), "{err}");
        eprintln!("{}: {err} ({took:?})", mute.display());

        let t0 = Instant::now();
        assert!(CriClient::discover(&[missing.clone(), dead.clone(), mute.clone()]).await.is_none());
        assert!(t0.elapsed() < Duration::from_millis(2500), "took {:?}", t0.elapsed());
    });
}
