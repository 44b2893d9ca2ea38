//! The control API: HTTP/JSON over a unix socket, served by the daemon (`netpath run`) and used by
//! the CLI (`status`, `stats`, `flows`, `ifaces`) when a daemon runs. Without a daemon the CLI
//! reads the bpffs pins directly ([`ApiClient::connect`] answers `Ok(None)`).
//!
//! # Socket and access control
//!
//! The socket lives at [`DEFAULT_SOCKET`] (`/run/netpath/netpath.sock`). [`ApiServer::bind`]
//! creates the parent directory (0755) when it is missing and the socket with mode 0600, owned by
//! the daemon's user (root): it binds under a temporary name, sets the mode and renames the
//! socket into place, so there is no moment at which the final path is reachable with a looser
//! mode. A socket file left by a dead daemon is replaced; if a process answers on it, `bind`
//! refuses with [`ApiError::AlreadyRunning`]; anything else at that path (a regular file, a
//! directory) is never removed ([`ApiError::NotASocket`]).
//!
//! On top of the file mode the server checks every connection's peer credentials (`SO_PEERCRED`)
//! and answers `403` to any uid other than 0 and the uid the daemon had when it bound the socket:
//! defence in depth for a socket whose mode someone changed.
//!
//! # Endpoints
//!
//! All answers are JSON. Errors are `{"error": "..."}` with `400` for bad input (an unknown
//! query parameter, an unknown class or sort, a `top` that is not a positive integer, a parameter
//! given twice), `403` for a peer that is not allowed, `404` for an unknown path, `405` for a
//! method an endpoint does not take and `500` when the daemon fails to read its maps.
//!
//! | Method and path | Answer |
//! |---|---|
//! | `GET /v1/status` | datapath health: flow table fill, failed inserts, malformed frames by reason |
//! | `GET /v1/stats` | an array of [`StatRow`]s (`iface`, `ifindex`, `direction`, `class`, `packets`, `bytes`) |
//! | `GET /v1/flows?iface=IF&class=C&top=N&sort=bytes\|packets` | an array of [`FlowRow`]s, heaviest first; every parameter is optional |
//! | `GET /v1/ifaces` | the interfaces the daemon observes |
//!
//! `class` is one of the class names of [`netpath_common::class::NAMES`] (`arp`, `icmp`,
//! `icmp6`, `tcp`, `udp`, `vxlan`, `other_ip`, `other_l2`, `malformed`); `top` is a positive
//! integer; `sort` is `bytes` (the default) or `packets`.
//!
//! ```text
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/status
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/stats
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/flows?class=tcp&top=5'
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/flows?iface=cni0&sort=packets'
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/ifaces
//! curl -i --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/flows?class=nope'
//!   # HTTP/1.1 400 Bad Request
//!   # {"error":"unknown class 'nope' (one of arp, icmp, icmp6, tcp, udp, vxlan, other_ip, other_l2, malformed)"}
//! ```
//!
//! # Adding endpoints
//!
//! Handlers stay thin and validate before they act: they turn the whole request (query through
//! [`Params`], a body through a `deny_unknown_fields` type) into a typed value first, answer
//! `400` on anything unknown or malformed, and only then call the [`Backend`], once, on the
//! blocking pool (map reads are syscalls). A malformed request therefore changes nothing, which
//! matters for the write endpoints (rules, capture) that will follow the read ones here. Routes
//! end in `.fallback(not_allowed("..."))` so a wrong method is a JSON `405` naming the right ones.
use std::{
    future::{Future, IntoFuture as _},
    io,
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
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
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::{
    flows::{Filter, FlowRow, SortBy},
    stats::StatRow,
};

/// Where the daemon serves the API unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netpath/netpath.sock";

/// How long [`ApiServer::serve`] waits for open requests to finish after `shutdown` resolved.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long [`ApiClient`] waits for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoints, for error messages.
const ENDPOINTS: &str = "/v1/status, /v1/stats, /v1/flows, /v1/ifaces, /v1/events, /v1/rules, /v1/fastpath";

/// What the daemon provides to the API; implemented by the daemon, and by a test double in tests.
/// The methods run on tokio's blocking pool, so they may block (map reads are syscalls).
pub trait Backend: Send + Sync + 'static {
    /// Datapath health (the document `netpath status -o json` prints).
    fn status(&self) -> Result<serde_json::Value, ApiError>;
    /// Counter rows of every interface (what `netpath stats -o json` prints).
    fn stats(&self) -> Result<Vec<StatRow>, ApiError>;
    /// Flow rows after `filter` (interface, class, sort, top): apply it with
    /// [`crate::flows::select`]. The server has validated it.
    fn flows(&self, filter: &Filter) -> Result<Vec<FlowRow>, ApiError>;
    /// The interfaces the daemon observes.
    fn ifaces(&self) -> Result<serde_json::Value, ApiError>;
    /// A live feed of events (kernel and derived), if this backend has one.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<crate::events::EventRow>> {
        None
    }
    /// The fast-path rules, in evaluation order.
    fn rules(&self) -> Result<Vec<crate::rules::RuleRow>, ApiError> {
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    /// Validate and add a rule; an invalid one changes nothing.
    fn add_rule(&self, spec: crate::rules::RuleSpec) -> Result<crate::rules::RuleRow, ApiError> {
        let _ = spec;
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    fn del_rule(&self, id: u32) -> Result<crate::rules::RuleRow, ApiError> {
        let _ = id;
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    /// Fast path state; with `Some(request)`, change it first.
    fn fastpath(&self, request: Option<FastpathRequest>) -> Result<serde_json::Value, ApiError> {
        let _ = request;
        Err(ApiError::NotFound("this daemon has no fast path".into()))
    }
}

/// `POST /v1/fastpath`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastpathRequest {
    pub enable: bool,
    #[serde(default)]
    pub bridge: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400). Said by the server; the message names what is wrong.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// No such thing (404).
    #[error("not found: {0}")]
    NotFound(String),

    /// The peer may not use the API (403).
    #[error("forbidden: {0}")]
    Forbidden(String),

    /// The daemon failed to answer (500), e.g. a map read failed.
    #[error("internal error: {0}")]
    Internal(String),

    /// A socket operation on a path failed (bind, chmod, connect, ...).
    #[error("{what} {}: {source}", path.display())]
    Socket {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("{0}")]
    Io(#[from] io::Error),

    /// The HTTP exchange with the daemon failed (connection reset, bad answer, timeout).
    #[error("talking to the netpath daemon: {0}")]
    Http(String),

    /// The daemon answered with a non-2xx status (as seen by the client).
    #[error("the netpath daemon answered {status}: {message}")]
    Daemon { status: u16, message: String },

    /// No daemon listens on the socket.
    #[error("no netpath daemon listens on {}", socket.display())]
    NotRunning { socket: PathBuf },

    /// Binding: a process already answers on the socket.
    #[error(
        "another netpath daemon already answers on {}: stop it first, or give this one another socket path",
        socket.display()
    )]
    AlreadyRunning { socket: PathBuf },

    /// Binding: the path exists and is not a socket; it is left alone.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
}

impl ApiError {
    /// The HTTP status the server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Daemon { status, .. } => *status,
            _ => 500,
        }
    }

    /// Exit codes, as [`crate::Error::exit_code`]: 2 for bad input, 77 for a refused peer, 1 else.
    pub fn exit_code(&self) -> i32 {
        match self.http_status() {
            403 => 77,
            400..=499 => 2,
            _ => 1,
        }
    }

    /// The message the server puts into `{"error": ...}`.
    fn wire_message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Forbidden(m) | ApiError::Internal(m) => {
                m.clone()
            }
            ApiError::Daemon { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        match e.exit_code() {
            2 => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_response(status, self.wire_message())
    }
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

// ---------------------------------------------------------------------------------------------
// Request validation

/// The query parameters of one request, checked against the names an endpoint takes: an unknown
/// name or a name given twice is a `400` before the handler does anything.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Check `query` (as extracted by axum) against the parameter names `allowed`.
    pub fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(pairs) =
            query.map_err(|e| ApiError::BadRequest(format!("malformed query string: {}", e.body_text())))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let takes = if allowed.is_empty() {
                    "takes none".to_string()
                } else {
                    format!("takes: {}", allowed.join(", "))
                };
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{name}' (this endpoint {takes})"
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter '{name}' given more than once"
                )));
            }
        }
        Ok(Params { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The filter of `GET /v1/flows`, validated.
pub fn parse_filter(p: &Params) -> Result<Filter, ApiError> {
    let iface = match p.get("iface") {
        None => None,
        Some("") => return Err(ApiError::BadRequest("iface must not be empty".into())),
        Some(i) if i.len() >= libc::IFNAMSIZ => {
            return Err(ApiError::BadRequest(format!(
                "iface '{i}' is longer than an interface name can be ({} bytes)",
                libc::IFNAMSIZ - 1
            )))
        }
        Some(i) => Some(i.to_string()),
    };
    let class = p
        .get("class")
        .map(|c| {
            netpath_common::class::from_name(c).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown class '{c}' (one of {})",
                    netpath_common::class::NAMES.join(", ")
                ))
            })
        })
        .transpose()?;
    let top = p
        .get("top")
        .map(|t| match t.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "top must be a positive integer, got '{t}'"
            ))),
        })
        .transpose()?;
    let sort = p
        .get("sort")
        .map(|s| match s {
            "bytes" => Ok(SortBy::Bytes),
            "packets" => Ok(SortBy::Packets),
            _ => Err(ApiError::BadRequest(format!(
                "unknown sort '{s}' (one of bytes, packets)"
            ))),
        })
        .transpose()?;
    Ok(Filter {
        iface,
        class,
        top,
        sort,
    })
}

/// The query string [`parse_filter`] reads back as `f` (empty for the default filter).
pub fn filter_query(f: &Filter) -> String {
    let mut q = Vec::new();
    if let Some(i) = &f.iface {
        q.push(format!("iface={}", percent_encode(i)));
    }
    if let Some(c) = f.class {
        q.push(format!("class={}", netpath_common::class::name(c)));
    }
    if let Some(t) = f.top {
        q.push(format!("top={t}"));
    }
    if let Some(s) = f.sort {
        q.push(format!(
            "sort={}",
            if s == SortBy::Packets { "packets" } else { "bytes" }
        ));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// `s` percent-encoded for a query string (unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Server

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

async fn status(State(st): State<AppState>, q: Q) -> Result<Json<serde_json::Value>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.status()).await?))
}

async fn stats(State(st): State<AppState>, q: Q) -> Result<Json<Vec<StatRow>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.stats()).await?))
}

async fn flows(State(st): State<AppState>, q: Q) -> Result<Json<Vec<FlowRow>>, ApiError> {
    let filter = parse_filter(&Params::new(q, &["iface", "class", "top", "sort"])?)?;
    Ok(Json(call(&st, move |b| b.flows(&filter)).await?))
}

async fn ifaces(State(st): State<AppState>, q: Q) -> Result<Json<serde_json::Value>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.ifaces()).await?))
}

/// `GET /v1/events?iface=&pod=&kind=a,b`: newline-delimited JSON events as they happen, until the
/// client hangs up. A reader too slow for the event rate gets a `{"kind":"watch_lagged"}` line
/// saying how many it missed (`packets`), then continues.
async fn events(State(st): State<AppState>, q: Q) -> Result<Response, ApiError> {
    let p = Params::new(q, &["iface", "pod", "kind"])?;
    let kinds: Vec<String> = p
        .get("kind")
        .map(|k| k.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let kinds = crate::events::EventFilter::parse_kinds(&kinds).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let filter = crate::events::EventFilter {
        iface: p.get("iface").map(String::from),
        pod: p.get("pod").map(String::from),
        kinds,
    };
    let rx = st
        .backend
        .events()
        .ok_or_else(|| ApiError::NotFound("this daemon has no event stream".into()))?;
    use tokio_stream::StreamExt as _;
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let row = match item {
            Ok(r) if filter.matches(&r) => r,
            Ok(_) => return None,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => crate::events::EventRow {
                kind: "watch_lagged".into(),
                packets: Some(n),
                ..Default::default()
            },
        };
        let mut line = serde_json::to_vec(&row).ok()?;
        line.push(b'\n');
        Some(Ok::<_, std::convert::Infallible>(Bytes::from(line)))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))?)
}

/// A JSON body of type `T`, or a 400 that says what is wrong with it (before anything changes).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("bad request body: {e}")))
}

async fn list_rules(State(st): State<AppState>, q: Q) -> Result<Json<Vec<crate::rules::RuleRow>>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.rules()).await?))
}

async fn add_rule(
    State(st): State<AppState>,
    q: Q,
    body: Bytes,
) -> Result<(StatusCode, Json<crate::rules::RuleRow>), ApiError> {
    Params::new(q, &[])?;
    let spec: crate::rules::RuleSpec = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(call(&st, move |b| b.add_rule(spec)).await?)))
}

async fn del_rule(
    State(st): State<AppState>,
    q: Q,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<crate::rules::RuleRow>, ApiError> {
    Params::new(q, &[])?;
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("rule id must be a number, got '{id}'")))?;
    Ok(Json(call(&st, move |b| b.del_rule(id)).await?))
}

async fn get_fastpath(State(st): State<AppState>, q: Q) -> Result<Json<serde_json::Value>, ApiError> {
    Params::new(q, &[])?;
    Ok(Json(call(&st, |b| b.fastpath(None)).await?))
}

async fn set_fastpath(State(st): State<AppState>, q: Q, body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
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

// ---------------------------------------------------------------------------------------------
// Client

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A client of a running daemon's API. Methods must run on a tokio runtime (see [`block_on`]).
pub struct ApiClient {
    socket: PathBuf,
    conn: tokio::sync::Mutex<Option<Sender>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("socket", &self.socket).finish()
    }
}

impl ApiClient {
    /// Connect if a daemon listens on `path`. `Ok(None)` if the socket is absent or nobody
    /// answers on it: the caller then reads the pins. Other failures (e.g. permission denied)
    /// are errors.
    pub async fn connect(path: &Path) -> Result<Option<ApiClient>, ApiError> {
        match handshake(path).await {
            Ok(sender) => Ok(Some(ApiClient {
                socket: path.to_path_buf(),
                conn: tokio::sync::Mutex::new(Some(sender)),
            })),
            Err(ApiError::NotRunning { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<serde_json::Value, ApiError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/stats`: the [`StatRow`]s as JSON.
    pub async fn stats(&self) -> Result<serde_json::Value, ApiError> {
        self.get("/v1/stats").await
    }

    /// `GET /v1/flows` with `filter` as query: the [`FlowRow`]s as JSON.
    pub async fn flows(&self, filter: &Filter) -> Result<serde_json::Value, ApiError> {
        self.get(&format!("/v1/flows{}", filter_query(filter))).await
    }

    /// `GET /v1/ifaces`.
    pub async fn ifaces(&self) -> Result<serde_json::Value, ApiError> {
        self.get("/v1/ifaces").await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, ApiError> {
        self.request(hyper::Method::POST, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        self.request(hyper::Method::DELETE, path, None).await
    }

    /// `GET path_and_query` of a streaming endpoint (`/v1/events`) on a connection of its own.
    pub async fn stream(&self, path_and_query: &str) -> Result<JsonLines, ApiError> {
        let mut sender = handshake(&self.socket).await?;
        let req = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(path_and_query)
            .header(header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::Http(format!("building the request: {e}")))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::Http(format!("sending {path_and_query}: {e}")))?;
        let status = res.status();
        if !status.is_success() {
            let bytes = res
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ApiError::Daemon {
                status: status.as_u16(),
                message,
            });
        }
        Ok(JsonLines {
            body: res.into_body(),
            buf: Vec::new(),
            _conn: sender,
        })
    }

    /// `GET path_and_query` (e.g. `/v1/flows?top=3`): the JSON answer, or
    /// [`ApiError::Daemon`] with the status and the daemon's `error` message.
    pub async fn get(&self, path_and_query: &str) -> Result<serde_json::Value, ApiError> {
        self.request(hyper::Method::GET, path_and_query, None).await
    }

    async fn request(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        if !path_and_query.starts_with('/') {
            return Err(ApiError::Http(format!(
                "request path '{path_and_query}' does not start with '/'"
            )));
        }
        let build = || {
            let mut b = hyper::Request::builder()
                .method(method.clone())
                .uri(path_and_query)
                .header(header::HOST, "localhost");
            let payload = match &body {
                Some(v) => {
                    b = b.header(header::CONTENT_TYPE, "application/json");
                    Bytes::from(v.to_string())
                }
                None => Bytes::new(),
            };
            b.body(Full::new(payload))
                .map_err(|e| ApiError::Http(format!("building the request: {e}")))
        };
        let exchange = async {
            let mut conn = self.conn.lock().await;
            // Reuse the open connection if it is still usable; a connection the daemon closed in
            // the meantime fails before the request is sent, so retrying it once is safe.
            let reused = match conn.take() {
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let fresh = reused.is_none();
            let mut sender = match reused {
                Some(s) => s,
                None => handshake(&self.socket).await?,
            };
            let res = match sender.send_request(build()?).await {
                Ok(r) => r,
                Err(e) if !fresh && (e.is_canceled() || e.is_closed()) => {
                    sender = handshake(&self.socket).await?;
                    sender
                        .send_request(build()?)
                        .await
                        .map_err(|e| ApiError::Http(format!("sending {path_and_query}: {e}")))?
                }
                Err(e) => return Err(ApiError::Http(format!("sending {path_and_query}: {e}"))),
            };
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::Http(format!("reading the answer to {path_and_query}: {e}")))?
                .to_bytes();
            *conn = Some(sender);
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| {
            ApiError::Http(format!(
                "no answer to {path_and_query} within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))
        })??;
        let json = serde_json::from_slice::<serde_json::Value>(&bytes);
        if !status.is_success() {
            let message = match &json {
                Ok(v) => v
                    .get("error")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
            };
            return Err(ApiError::Daemon {
                status: status.as_u16(),
                message,
            });
        }
        json.map_err(|e| ApiError::Http(format!("the answer to {path_and_query} is not JSON: {e}")))
    }
}

/// A stream of JSON values, one per line (`/v1/events`).
pub struct JsonLines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    _conn: Sender,
}

impl JsonLines {
    /// The next value; `None` when the daemon ends the stream.
    pub async fn next_json(&mut self) -> Result<Option<serde_json::Value>, ApiError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let v =
                    serde_json::from_slice(&line[..i]).map_err(|e| ApiError::Http(format!("bad event line: {e}")))?;
                return Ok(Some(v));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ApiError::Http(format!("reading the event stream: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Open an HTTP/1 connection to the daemon; `NotRunning` if there is none.
async fn handshake(path: &Path) -> Result<Sender, ApiError> {
    let stream = match tokio::net::UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Err(ApiError::NotRunning {
                socket: path.to_path_buf(),
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(ApiError::NotRunning {
                socket: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(ApiError::Socket {
                what: "connecting to",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::Http(format!("handshake on {}: {e}", path.display())))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Run `fut` to completion on a fresh single-threaded runtime: for the synchronous CLI.
/// Must not be called from within a runtime.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, ApiError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Params::new(Ok(Query(pairs)), &["iface", "class", "top", "sort"])
    }

    #[test]
    fn filter_round_trips_through_the_query() {
        let f = Filter {
            iface: Some("veth 1".into()),
            class: Some(netpath_common::class::TCP),
            top: Some(3),
            sort: Some(SortBy::Packets),
        };
        let q = filter_query(&f);
        assert_eq!(q, "?iface=veth%201&class=tcp&top=3&sort=packets");
        let back = parse_filter(&params("iface=veth1&class=tcp&top=3&sort=packets").unwrap()).unwrap();
        assert_eq!(
            (back.iface.as_deref(), back.class, back.top, back.sort),
            (Some("veth1"), Some(3), Some(3), Some(SortBy::Packets))
        );
        assert_eq!(filter_query(&Filter::default()), "");
    }

    #[test]
    fn bad_input_is_a_400_naming_the_problem() {
        for (q, needle) in [
            ("class=nope", "unknown class 'nope'"),
            ("top=0", "positive integer"),
            ("top=x", "positive integer"),
            ("top=-1", "positive integer"),
            ("sort=size", "unknown sort 'size'"),
            ("iface=", "must not be empty"),
            ("iface=abcdefghijklmnopq", "longer than"),
        ] {
            let e = parse_filter(&params(q).unwrap()).unwrap_err();
            assert_eq!(e.http_status(), 400, "{q}");
            assert!(e.wire_message().contains(needle), "{q}: {e}");
        }
        let e = params("bogus=1").unwrap_err();
        assert!(e.wire_message().contains("unknown query parameter 'bogus'"), "{e}");
        let e = params("top=1&top=2").unwrap_err();
        assert!(e.wire_message().contains("more than once"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
