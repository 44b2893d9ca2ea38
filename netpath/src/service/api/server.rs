//! The API's server: binds the socket safely (see the module above), checks every peer, validates
//! every request before it calls the [`Backend`], once, on the blocking pool.
use std::{
    future::{Future, IntoFuture as _},
    io,
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{
        connect_info::{ConnectInfo, Connected},
        rejection::QueryRejection,
        Query, Request, State,
    },
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    serve::IncomingStream,
    Json, Router,
};
use hyper::body::Bytes;

use super::{
    error_response, parse_doctor_checks, parse_drop_filter, parse_filter, ApiError, Backend, FastpathRequest, Params,
    DOCTOR_PARAMS, DROP_PARAMS, ENDPOINTS, FLOW_PARAMS, SHUTDOWN_GRACE,
};
use crate::model::{
    doctor::Finding,
    drops::{DropFilter, DropRow},
    events::{EventFilter, EventRow},
    flows::FlowRow,
    ifaces::IfaceRow,
    peers::VxlanPeers,
    rules::{FastpathStatus, RuleRow, RuleSpec},
    stats::StatRow,
    status::StatusReport,
};

/// Who is on the other end of a connection (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::UnixListener>) -> Peer {
        match stream.io().peer_cred() {
            Ok(c) => Peer {
                uid: Some(c.uid()),
                pid: c.pid(),
            },
            Err(_) => Peer { uid: None, pid: None },
        }
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    allowed_uids: Arc<[u32]>,
}

/// The socket file this server made; removed when dropped unless something else replaced it.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound API socket: bind it (as root, before dropping privileges or entering namespaces),
/// then run [`ApiServer::serve`] on a tokio runtime, or [`ApiServer::spawn`] it on a thread.
pub struct ApiServer {
    listener: std::os::unix::net::UnixListener,
    file: SocketFile,
    state: AppState,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("path", &self.file.path)
            .field("allowed_uids", &self.state.allowed_uids)
            .finish()
    }
}

impl ApiServer {
    /// Bind the socket (mode 0600; the parent directory is created 0755 if missing). A socket
    /// file nobody answers on is replaced; a live one is [`ApiError::AlreadyRunning`].
    /// Needs no tokio runtime.
    pub fn bind(path: &Path, backend: Arc<dyn Backend>) -> Result<ApiServer, ApiError> {
        fn sock_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ApiError {
            let path = path.to_path_buf();
            move |source| ApiError::Socket { what, path, source }
        }
        if path.file_name().is_none() {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a path to a file");
            return Err(ApiError::Socket {
                what: "socket path",
                path: path.to_path_buf(),
                source,
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&dir)
                .map_err(sock_err("creating directory", &dir))?;
            // The mode given to mkdir is subject to the umask.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(sock_err("chmod", &dir))?;
        }
        // Serialise check-and-replace against another daemon starting at the same moment.
        let lock = std::fs::File::open(&dir).map_err(sock_err("opening directory", &dir))?;
        // SAFETY: a valid, open file descriptor; the lock is released when `lock` is closed.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(sock_err("locking directory", &dir)(io::Error::last_os_error()));
        }

        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(sock_err("inspecting", path)(e)),
            Ok(m) if !m.file_type().is_socket() => {
                return Err(ApiError::NotASocket {
                    path: path.to_path_buf(),
                })
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ApiError::AlreadyRunning {
                        socket: path.to_path_buf(),
                    })
                }
                // Nobody listens: a stale socket from a dead daemon, replaced by the rename below.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(sock_err("probing existing socket", path)(e)),
            },
        }

        // Bind under a temporary name, restrict it, then move it into place: the final path never
        // exists with the umask's mode.
        let tmp = dir.join(format!(".np{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(sock_err("binding", &tmp))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(sock_err("chmod", &tmp))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(sock_err("moving socket into place at", path)))
            .and_then(|()| std::fs::symlink_metadata(path).map_err(sock_err("inspecting", path)))
            .and_then(|m| {
                listener
                    .set_nonblocking(true)
                    .map(|()| m)
                    .map_err(sock_err("configuring", path))
            });
        let meta = match placed {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        drop(lock);

        // SAFETY: no preconditions.
        let euid = unsafe { libc::geteuid() };
        let allowed_uids: Arc<[u32]> = if euid == 0 { Arc::new([0]) } else { Arc::new([0, euid]) };
        Ok(ApiServer {
            listener,
            file: SocketFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
            state: AppState { backend, allowed_uids },
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Serve until `shutdown` resolves (then give open requests [`SHUTDOWN_GRACE`] to finish);
    /// removes the socket file on exit. Must run on a tokio runtime with I/O and time enabled.
    /// A backend call still running on the blocking pool after the grace period keeps running
    /// until it returns (or the runtime is shut down with `shutdown_background`/`_timeout`).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ApiError> {
        let ApiServer { listener, file, state } = self;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|source| ApiError::Socket {
            what: "registering",
            path: file.path.clone(),
            source,
        })?;
        let app = router(state).into_make_service_with_connect_info::<Peer>();
        let (signal, deadline) = graceful_shutdown(shutdown);
        let graceful = axum::serve(listener, app).with_graceful_shutdown(signal);
        let result = tokio::select! {
            r = graceful.into_future() => r.map_err(ApiError::Io),
            () = deadline => Ok(()),
        };
        drop(file);
        result
    }

    /// Serve on a thread of its own with a single-threaded runtime, for callers without one.
    pub fn spawn(self) -> Result<ServerHandle, ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("netpath-api".into()).spawn(move || {
            let r = rt.block_on(self.serve(async move {
                let _ = rx.await;
            }));
            // Backend calls still running after the grace period are abandoned, not awaited.
            rt.shutdown_background();
            r
        })?;
        Ok(ServerHandle {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A server running on its own thread ([`ApiServer::spawn`]); stopped by
/// [`ServerHandle::shutdown`] or when dropped.
pub struct ServerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ApiError>>>,
}

impl ServerHandle {
    /// Stop serving, wait for the thread, remove the socket file.
    pub fn shutdown(mut self) -> Result<(), ApiError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ApiError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ApiError::Internal("the API server thread panicked".into())),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status).fallback(not_allowed("GET, HEAD")))
        .route("/v1/stats", get(stats).fallback(not_allowed("GET, HEAD")))
        .route("/v1/flows", get(flows).fallback(not_allowed("GET, HEAD")))
        .route("/v1/ifaces", get(ifaces).fallback(not_allowed("GET, HEAD")))
        .route("/v1/events", get(events).fallback(not_allowed("GET, HEAD")))
        .route("/v1/drops", get(drops).fallback(not_allowed("GET, HEAD")))
        .route("/v1/doctor", get(doctor).fallback(not_allowed("GET, HEAD")))
        .route("/v1/vxlan-peers", get(vxlan_peers).fallback(not_allowed("GET, HEAD")))
        .route(
            "/v1/rules",
            get(list_rules).post(add_rule).fallback(not_allowed("GET, HEAD, POST")),
        )
        .route(
            "/v1/rules/{id}",
            axum::routing::delete(del_rule).fallback(not_allowed("DELETE")),
        )
        .route(
            "/v1/fastpath",
            get(get_fastpath)
                .post(set_fastpath)
                .fallback(not_allowed("GET, HEAD, POST")),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every request passes here: refuse peers that are not allowed; give a bodiless `405` (a route
/// without a [`not_allowed`] fallback) a JSON body.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    match peer.and_then(|p| p.uid) {
        Some(uid) if st.allowed_uids.contains(&uid) => {}
        Some(uid) => {
            return ApiError::Forbidden(format!("uid {uid} may not use the netpath API (only root may)"))
                .into_response()
        }
        None => {
            return ApiError::Forbidden("cannot tell who is connected (no peer credentials)".into()).into_response()
        }
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let res = next.run(req).await;
    if res.status() == StatusCode::METHOD_NOT_ALLOWED && !res.headers().contains_key(header::CONTENT_TYPE) {
        let (mut parts, _) = res.into_parts();
        let body = serde_json::json!({ "error": format!("method {method} not allowed on {path}") });
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(body.to_string()));
    }
    res
}

/// The `405` of an endpoint taking `allowed` (axum adds the `Allow` header).
fn not_allowed(
    allowed: &'static str,
) -> impl Fn(Request) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |req: Request| {
        let message = format!(
            "method {} not allowed on {} (allowed: {allowed})",
            req.method(),
            req.uri().path()
        );
        std::future::ready(error_response(StatusCode::METHOD_NOT_ALLOWED, message))
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint {} {} (endpoints: {ENDPOINTS})",
        req.method(),
        req.uri().path()
    ))
}

type Q = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Run a backend call on the blocking pool.
async fn call<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let backend = Arc::clone(&st.backend);
    tokio::task::spawn_blocking(move || f(&*backend))
        .await
        .map_err(|e| ApiError::Internal(format!("the backend call failed: {e}")))?
}

async fn status(State(st): State<AppState>, q: Q) -> Result<Json<StatusReport>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.status()).await?))
}

async fn stats(State(st): State<AppState>, q: Q) -> Result<Json<Vec<StatRow>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.stats()).await?))
}

async fn flows(State(st): State<AppState>, q: Q) -> Result<Json<Vec<FlowRow>>, ApiError> {
    let filter = parse_filter(&Params::new(q, FLOW_PARAMS)?)?;
    Ok(Json(
        call(&st, move |b| {
            b.check_names(filter.iface.as_deref(), filter.pod.as_deref())?;
            b.flows(&filter)
        })
        .await?,
    ))
}

async fn ifaces(State(st): State<AppState>, q: Q) -> Result<Json<Vec<IfaceRow>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.ifaces()).await?))
}

/// `GET /v1/drops?pod=&iface=&reason=`: drop rows, heaviest first. The backend says whether the
/// reason, interface and pod exist (drops happen on links the daemon does not observe, so this is
/// not [`Backend::check_names`]).
async fn drops(State(st): State<AppState>, q: Q) -> Result<Json<Vec<DropRow>>, ApiError> {
    let filter = parse_drop_filter(&Params::new(q, DROP_PARAMS)?)?;
    Ok(Json(call(&st, move |b| b.drops(&filter)).await?))
}

/// `GET /v1/vxlan-peers`: the node's name, VTEPs and per-peer VXLAN counters.
async fn vxlan_peers(State(st): State<AppState>, q: Q) -> Result<Json<VxlanPeers>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.vxlan_peers()).await?))
}

/// `GET /v1/doctor?check=a,b`: the daemon's last doctor findings of those checks (every check
/// without `check`).
async fn doctor(State(st): State<AppState>, q: Q) -> Result<Json<Vec<Finding>>, ApiError> {
    let checks = parse_doctor_checks(&Params::new(q, DOCTOR_PARAMS)?)?;
    Ok(Json(call(&st, move |b| b.doctor(&checks)).await?))
}

/// `GET /v1/events?iface=&pod=&kind=a,b&ip=&port=`: newline-delimited JSON events as they happen, until the
/// client hangs up. A reader too slow for the event rate gets a `{"kind":"watch_lagged"}` line
/// saying how many it missed (`packets`), then continues.
async fn events(State(st): State<AppState>, q: Q) -> Result<Response, ApiError> {
    let p = Params::new(q, &["iface", "pod", "kind", "ip", "port"])?;
    let (ip, port) = super::parse_ip_port(&p)?;
    let kinds: Vec<String> = p
        .get("kind")
        .map(|k| k.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let kinds = EventFilter::parse_kinds(&kinds).map_err(ApiError::from)?;
    let filter = EventFilter {
        iface: p.get("iface").map(String::from),
        pod: p.get("pod").map(String::from),
        kinds,
        ip,
        port,
    };
    let (iface, pod) = (filter.iface.clone(), filter.pod.clone());
    // Drops happen anywhere on the node, on links the daemon does not observe: a watch of drops
    // alone takes the names the drop table knows.
    let drops_only = !filter.kinds.is_empty() && filter.kinds.iter().all(|k| k == "drop");
    call(&st, move |b| {
        if drops_only {
            b.drops(&DropFilter {
                iface,
                pod,
                reason: None,
            })
            .map(|_| ())
        } else {
            b.check_names(iface.as_deref(), pod.as_deref())
        }
    })
    .await?;
    let rx = st
        .backend
        .events()
        .ok_or_else(|| ApiError::NotFound("this daemon has no event stream".into()))?;
    use tokio_stream::StreamExt as _;
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let row = match item {
            Ok(r) if filter.matches(&r) => r,
            Ok(_) => return None,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => EventRow {
                kind: "watch_lagged".into(),
                packets: Some(n),
                ..Default::default()
            },
        };
        let mut line = serde_json::to_vec(&row).ok()?;
        line.push(b'\n');
        Some(Ok::<_, std::convert::Infallible>(Bytes::from(line)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A JSON body of type `T`, or a 400 that says what is wrong with it (before anything changes).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("bad request body: {e}")))
}

async fn list_rules(State(st): State<AppState>, q: Q) -> Result<Json<Vec<RuleRow>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.rules()).await?))
}

async fn add_rule(State(st): State<AppState>, q: Q, body: Bytes) -> Result<(StatusCode, Json<RuleRow>), ApiError> {
    Params::new(q, &[])?;
    let spec: RuleSpec = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(call(&st, move |b| b.add_rule(spec)).await?)))
}

async fn del_rule(
    State(st): State<AppState>,
    q: Q,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<RuleRow>, ApiError> {
    Params::new(q, &[])?;
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("rule id must be a number, got '{id}'")))?;
    Ok(Json(call(&st, move |b| b.del_rule(id)).await?))
}

async fn get_fastpath(State(st): State<AppState>, q: Q) -> Result<Json<FastpathStatus>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.fastpath(None)).await?))
}

async fn set_fastpath(State(st): State<AppState>, q: Q, body: Bytes) -> Result<Json<FastpathStatus>, ApiError> {
    Params::new(q, &[])?;
    let req: FastpathRequest = json_body(&body)?;
    if req.enable && req.bridge.is_none() {
        return Err(ApiError::BadRequest(
            "enabling the fast path needs the bridge (e.g. cni0)".into(),
        ));
    }
    Ok(Json(call(&st, move |b| b.fastpath(Some(req))).await?))
}

/// The two halves of a graceful stop, shared by the API and the metrics servers: `signal`
/// (for axum's `with_graceful_shutdown`) resolves when `shutdown` does; `deadline` resolves
/// [`SHUTDOWN_GRACE`] later, so a request that hangs cannot keep the daemon from exiting.
pub(crate) fn graceful_shutdown(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let deadline = async move {
        if stop_rx.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    (signal, deadline)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{
        model::{
            drops::DropFilter,
            flows::{Filter, FlowRow},
        },
        service::api::{block_on, ApiClient},
    };

    /// A backend with two drop rows; it records the filters it was asked with and refuses an
    /// unknown reason as the daemon does.
    #[derive(Default)]
    struct Drops {
        asked: Mutex<Vec<DropFilter>>,
    }

    fn row(iface: &str, reason: &str, packets: u64) -> DropRow {
        DropRow {
            iface: iface.into(),
            ifindex: 5,
            direction: "ingress".into(),
            netns: Some("np-n1-pod-a".into()),
            pod: Some("np-n1-pod-a".into()),
            pod_namespace: None,
            reason: reason.into(),
            subsystem: "core".into(),
            location: "ip_forward+0x1a4".into(),
            packets,
            bytes: packets * 84,
        }
    }

    impl Backend for Drops {
        fn status(&self) -> Result<StatusReport, ApiError> {
            Ok(StatusReport::default())
        }
        fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
            Ok(Vec::new())
        }
        fn flows(&self, _: &Filter) -> Result<Vec<FlowRow>, ApiError> {
            Ok(Vec::new())
        }
        fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
            Ok(Vec::new())
        }
        fn drops(&self, filter: &DropFilter) -> Result<Vec<DropRow>, ApiError> {
            self.asked.lock().unwrap().push(filter.clone());
            if filter.reason.as_deref() == Some("NETFILTER") {
                return Err(ApiError::BadRequest(
                    "this kernel has no drop reason 'NETFILTER'; did you mean: NETFILTER_DROP".into(),
                ));
            }
            let rows = [row("vethaaaa", "NETFILTER_DROP", 7), row("vethaaaa", "NO_SOCKET", 2)];
            Ok(rows.into_iter().filter(|r| filter.matches(r)).collect())
        }
    }

    /// A backend with doctor findings; it records the checks it was asked for.
    #[derive(Default)]
    struct Doctor {
        asked: Mutex<Vec<Vec<String>>>,
    }

    fn findings() -> Vec<Finding> {
        use crate::model::doctor::Status;
        vec![
            Finding::ok("ip_forward", "node", "net.ipv4.ip_forward=1"),
            Finding::bad(
                "rp_filter",
                Status::Fail,
                "ul0",
                "rp_filter=1 on ul0",
                Some("sysctl -w net.ipv4.conf.ul0.rp_filter=2".into()),
            ),
        ]
    }

    impl Backend for Doctor {
        fn status(&self) -> Result<StatusReport, ApiError> {
            Ok(StatusReport::default())
        }
        fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
            Ok(Vec::new())
        }
        fn flows(&self, _: &Filter) -> Result<Vec<FlowRow>, ApiError> {
            Ok(Vec::new())
        }
        fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
            Ok(Vec::new())
        }
        fn doctor(&self, checks: &[String]) -> Result<Vec<Finding>, ApiError> {
            self.asked.lock().unwrap().push(checks.to_vec());
            Ok(findings()
                .into_iter()
                .filter(|f| checks.is_empty() || checks.contains(&f.check))
                .collect())
        }
    }

    #[test]
    fn doctor_findings_travel_by_check_and_unknown_checks_are_a_400() {
        let dir = std::env::temp_dir().join(format!("np-api-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sock = dir.join("api.sock");
        let backend = Arc::new(Doctor::default());
        let server = ApiServer::bind(&sock, Arc::clone(&backend) as Arc<dyn Backend>)
            .unwrap()
            .spawn()
            .unwrap();
        block_on(async {
            let c = ApiClient::connect(&sock).await.unwrap().expect("the server answers");
            assert_eq!(c.doctor(&[]).await.unwrap(), findings());
            let got = c.doctor(&["rp_filter".into()]).await.unwrap();
            assert_eq!(got, findings()[1..]);
            assert_eq!(got[0].fix.as_deref(), Some("sysctl -w net.ipv4.conf.ul0.rp_filter=2"));
            // The wire format: status as its name.
            let raw = c.get("/v1/doctor?check=rp_filter,ip_forward").await.unwrap();
            assert_eq!(raw[1]["status"], "fail", "{raw}");
            assert_eq!(
                *backend.asked.lock().unwrap(),
                [
                    vec![],
                    vec!["rp_filter".to_string()],
                    vec!["rp_filter".into(), "ip_forward".into()]
                ]
            );
            // Unknown checks never reach the backend; the 400 lists the ids (exit 2).
            let e = c.doctor(&["mtu,nope".into()]).await.unwrap_err();
            assert_eq!((e.http_status(), e.exit_code()), (400, 2), "{e}");
            assert!(
                e.to_string().contains("'nope'") && e.to_string().contains("vxlan_fdb"),
                "{e}"
            );
            for (q, needle) in [
                ("/v1/doctor?check=", "must not be empty"),
                ("/v1/doctor?iface=ul0", "unknown query parameter 'iface'"),
            ] {
                match c.get(q).await {
                    Err(ApiError::Daemon { status: 400, message }) => {
                        assert!(message.contains(needle), "{q}: {message}")
                    }
                    other => panic!("{q}: {other:?}"),
                }
            }
            assert_eq!(backend.asked.lock().unwrap().len(), 3);
            match c.get("/v1/nope").await {
                Err(ApiError::Daemon { status: 404, message }) => {
                    assert!(message.contains("/v1/doctor"), "{message}")
                }
                other => panic!("{other:?}"),
            }
        })
        .unwrap();
        server.shutdown().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn drops_travel_with_their_filter_and_bad_input_is_a_400() {
        let dir = std::env::temp_dir().join(format!("np-api-drops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sock = dir.join("api.sock");
        let backend = Arc::new(Drops::default());
        let server = ApiServer::bind(&sock, Arc::clone(&backend) as Arc<dyn Backend>)
            .unwrap()
            .spawn()
            .unwrap();
        block_on(async {
            let c = ApiClient::connect(&sock).await.unwrap().expect("the server answers");
            let all = c.drops(&DropFilter::default()).await.unwrap();
            assert_eq!(
                all,
                vec![row("vethaaaa", "NETFILTER_DROP", 7), row("vethaaaa", "NO_SOCKET", 2)]
            );
            let f = DropFilter {
                pod: Some("n1-pod-a".into()),
                iface: Some("vethaaaa".into()),
                reason: Some("no_socket".into()),
            };
            assert_eq!(c.drops(&f).await.unwrap(), vec![row("vethaaaa", "NO_SOCKET", 2)]);
            // The backend's bad input is the client's 400, exit 2.
            let e = c
                .drops(&DropFilter {
                    reason: Some("NETFILTER".into()),
                    ..DropFilter::default()
                })
                .await
                .unwrap_err();
            assert_eq!((e.http_status(), e.exit_code()), (400, 2), "{e}");
            assert!(e.to_string().contains("did you mean: NETFILTER_DROP"), "{e}");
            // Malformed queries never reach the backend.
            let asked = backend.asked.lock().unwrap().len();
            for (q, needle) in [
                ("/v1/drops?class=tcp", "unknown query parameter 'class'"),
                ("/v1/drops?reason=", "reason must not be empty"),
                ("/v1/drops?reason=a%20b", "not a drop reason name"),
                ("/v1/drops?iface=a&iface=b", "more than once"),
            ] {
                match c.get(q).await {
                    Err(ApiError::Daemon { status: 400, message }) => {
                        assert!(message.contains(needle), "{q}: {message}")
                    }
                    other => panic!("{q}: {other:?}"),
                }
            }
            assert_eq!(backend.asked.lock().unwrap().len(), asked);
            // A backend without a doctor: 404.
            let e = c.doctor(&[]).await.unwrap_err();
            assert_eq!(e.http_status(), 404, "{e}");
            // Listed among the endpoints of a 404.
            match c.get("/v1/nope").await {
                Err(ApiError::Daemon { status: 404, message }) => assert!(message.contains("/v1/drops"), "{message}"),
                other => panic!("{other:?}"),
            }
        })
        .unwrap();
        server.shutdown().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
