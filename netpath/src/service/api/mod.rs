//! The control API: HTTP/JSON over a unix socket, served by the daemon (`netpath run`) and used by
//! the CLI (`status`, `stats`, `flows`, `ifaces`, `drops`) when a daemon runs. Without a daemon the CLI
//! reads the bpffs pins directly ([`ApiClient::connect`] answers `Ok(None)`).
//!
//! # Socket and access control
//!
//! The socket lives at [`crate::defaults::SOCKET`] (`/run/netpath/netpath.sock`). [`ApiServer::bind`]
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
//! | `GET /v1/flows?iface=IF&class=C&top=N&sort=bytes\|packets&pod=P&ip=CIDR&port=N` | an array of [`FlowRow`]s, heaviest first; every parameter is optional |
//! | `GET /v1/ifaces` | the interfaces the daemon observes |
//! | `GET /v1/drops?pod=P&iface=IF&reason=R` | an array of [`DropRow`]s (where the kernel, or a netpath rule, dropped packets, and why), heaviest first; every parameter is optional |
//! | `GET /v1/vxlan-peers` | a [`VxlanPeers`] document: the node's name and VTEP addresses, and a row per interface, direction and remote VTEP with the VXLAN packets and bytes seen and dropped |
//! | `GET /v1/doctor?check=ID,...` | an array of [`Finding`]s (`check`, `status` ok/warn/fail, `subject`, `evidence`, `fix`) from the daemon's last doctor run, of the checks named (every check without `check`); `404` when the doctor is off or has not run yet |
//!
//! `class` is one of the class names of [`netpath_common::class::NAMES`] (`arp`, `icmp`,
//! `icmp6`, `tcp`, `udp`, `vxlan`, `other_ip`, `other_l2`, `malformed`); `top` is a positive
//! integer; `sort` is `bytes` (the default) or `packets`; `pod` a pod `--pod` accepts; `ip` an
//! address or network either endpoint (inner or outer) is in; `port` a TCP or UDP port either end
//! uses. `/v1/events` takes `iface`, `pod`, `kind`, `ip` and `port`. `/v1/drops` takes `pod`,
//! `iface` and `reason`: a drop reason name of the daemon's kernel (`NETFILTER_DROP`, any case,
//! with or without `SKB_DROP_REASON_`, or `NETPATH_RULE`); the daemon answers `400` naming close
//! matches for a name its kernel does not have, and the interfaces or pods it knows for an
//! unknown `iface` or `pod`. `/v1/doctor` takes `check`: check ids of
//! [`crate::model::doctor::CHECKS`], comma-separated; an unknown one is a `400` listing the ids.
//!
//! ```text
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/status
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/stats
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/flows?class=tcp&top=5'
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/flows?iface=cni0&sort=packets'
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/ifaces
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/drops?reason=NETFILTER_DROP'
//! curl --unix-socket /run/netpath/netpath.sock 'http://localhost/v1/doctor?check=rp_filter,mtu'
//! curl --unix-socket /run/netpath/netpath.sock http://localhost/v1/vxlan-peers
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
use std::{io, path::PathBuf, time::Duration};

use axum::{
    extract::{rejection::QueryRejection, Query},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

pub(crate) use self::server::graceful_shutdown;
pub use self::{
    client::{block_on, ApiClient, EventStream, JsonLines},
    server::{ApiServer, Peer, ServerHandle},
};
use crate::{
    error::ServiceError,
    model::{
        doctor::Finding,
        drops::{DropFilter, DropRow},
        events::{EventFilter, EventRow},
        flows::{Filter, FlowRow, SortBy},
        ifaces::IfaceRow,
        peers::VxlanPeers,
        rules::{FastpathStatus, RuleRow, RuleSpec},
        stats::StatRow,
        status::StatusReport,
        Cidr,
    },
};

mod client;
mod server;

/// How long [`ApiServer::serve`] waits for open requests to finish after `shutdown` resolved.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long [`ApiClient`] waits for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoints, for error messages.
pub(super) const ENDPOINTS: &str =
    "/v1/status, /v1/stats, /v1/flows, /v1/ifaces, /v1/events, /v1/drops, /v1/doctor, /v1/vxlan-peers, /v1/rules, /v1/fastpath";

/// What the daemon provides to the API; implemented by the daemon, and by a test double in tests.
/// The methods run on tokio's blocking pool, so they may block (map reads are syscalls).
pub trait Backend: Send + Sync + 'static {
    /// Datapath health (the document `netpath status -o json` prints).
    fn status(&self) -> Result<StatusReport, ApiError>;
    /// Counter rows of every interface (what `netpath stats -o json` prints).
    fn stats(&self) -> Result<Vec<StatRow>, ApiError>;
    /// Flow rows after `filter` (interface, class, sort, top): apply it with
    /// [`crate::model::flows::select`]. The server has validated it.
    fn flows(&self, filter: &Filter) -> Result<Vec<FlowRow>, ApiError>;
    /// The interfaces the daemon observes.
    fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError>;
    /// A live feed of events (kernel and derived), if this backend has one.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<EventRow>> {
        None
    }
    /// The interface and pod a filter names (`flows --iface`, `watch --iface/--pod`) exist: an
    /// unknown one is bad input naming those that do, not a filter that silently matches nothing.
    fn check_names(&self, iface: Option<&str>, pod: Option<&str>) -> Result<(), ApiError> {
        let _ = (iface, pod);
        Ok(())
    }
    /// The fast-path rules, in evaluation order.
    fn rules(&self) -> Result<Vec<RuleRow>, ApiError> {
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    /// Validate and add a rule; an invalid one changes nothing.
    fn add_rule(&self, spec: RuleSpec) -> Result<RuleRow, ApiError> {
        let _ = spec;
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    fn del_rule(&self, id: u32) -> Result<RuleRow, ApiError> {
        let _ = id;
        Err(ApiError::NotFound("this daemon has no rule table".into()))
    }
    /// Drop rows after `filter` (pod, interface, reason), heaviest first. An unknown reason name
    /// (for this kernel), interface or pod is bad input naming what exists. The server has checked
    /// the parameters' form only ([`parse_drop_filter`]): `reason` is as the client typed it (any
    /// case, maybe with `SKB_DROP_REASON_`), so resolve it with
    /// [`DropReasons::parse`](crate::model::drops::DropReasons::parse) before matching; `iface`
    /// may name a link the daemon does not observe (drops happen on every interface of every
    /// namespace), so it is not checked with [`Backend::check_names`]. The exporter calls this
    /// with the default filter on every scrape; [`ApiError::NotFound`] (this default) means "no
    /// drop table" and exports no drop series.
    fn drops(&self, filter: &DropFilter) -> Result<Vec<DropRow>, ApiError> {
        let _ = filter;
        Err(ApiError::NotFound("this daemon has no drop table".into()))
    }
    /// The doctor's findings for `checks` (ids validated by the server; all when empty), as the
    /// daemon's last run found them.
    fn doctor(&self, checks: &[String]) -> Result<Vec<Finding>, ApiError> {
        let _ = checks;
        Err(ApiError::NotFound("this daemon runs no doctor".into()))
    }
    /// The node's cluster view: its name, VTEPs and per-peer VXLAN counters. The exporter calls
    /// this on every scrape; [`ApiError::NotFound`] (this default) exports no per-peer series.
    fn vxlan_peers(&self) -> Result<VxlanPeers, ApiError> {
        Err(ApiError::NotFound("this daemon has no VXLAN peer table".into()))
    }
    /// Fast path state; with `Some(request)`, change it first.
    fn fastpath(&self, request: Option<FastpathRequest>) -> Result<FastpathStatus, ApiError> {
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
        // The client says "bad argument" itself (a 4xx is bad input): the message alone, once.
        if let crate::Error::BadArgument(m) = e {
            return ApiError::BadRequest(m);
        }
        match e.exit_code() {
            2 => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ApiError> for crate::Error {
    fn from(e: ApiError) -> crate::Error {
        crate::Error::Service(ServiceError {
            exit_code: e.exit_code(),
            error: Box::new(e),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_response(status, self.wire_message())
    }
}

pub(super) fn error_response(status: StatusCode, message: String) -> Response {
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

/// The parameters `GET /v1/flows` takes.
pub(super) const FLOW_PARAMS: &[&str] = &["iface", "class", "top", "sort", "pod", "ip", "port", "active"];

/// The filter of `GET /v1/flows`, validated.
pub fn parse_filter(p: &Params) -> Result<Filter, ApiError> {
    let iface = parse_iface(p)?;
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
    let active = match p.get("active") {
        None | Some("false") => false,
        Some("true") => true,
        Some(a) => return Err(ApiError::BadRequest(format!("active must be true or false, got '{a}'"))),
    };
    let (ip, port) = parse_ip_port(p)?;
    Ok(Filter {
        iface,
        class,
        top,
        sort,
        active,
        pod: p.get("pod").map(String::from),
        ip,
        port,
    })
}

/// The parameters `GET /v1/drops` takes.
pub(super) const DROP_PARAMS: &[&str] = &["pod", "iface", "reason"];

/// The longest drop reason name accepted (the kernel's are under 40 characters).
const MAX_REASON: usize = 96;

/// The filter of `GET /v1/drops`, checked for form: whether the pod, the interface and the reason
/// exist is the backend's to say (it knows the kernel's reasons and the node's links).
pub fn parse_drop_filter(p: &Params) -> Result<DropFilter, ApiError> {
    let iface = parse_iface(p)?;
    let pod = match p.get("pod") {
        None => None,
        Some("") => return Err(ApiError::BadRequest("pod must not be empty".into())),
        Some(v) => Some(v.to_string()),
    };
    let reason = match p.get("reason") {
        None => None,
        Some("") => return Err(ApiError::BadRequest("reason must not be empty".into())),
        Some(r) if r.len() > MAX_REASON => {
            return Err(ApiError::BadRequest(format!(
                "reason '{r}' is longer than a drop reason name can be ({MAX_REASON} characters)"
            )))
        }
        Some(r) if !r.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':')) => {
            return Err(ApiError::BadRequest(format!(
                "reason '{r}' is not a drop reason name (letters, digits and '_', as NETFILTER_DROP; \
                 `netpath drops --reasons` lists this kernel's)"
            )))
        }
        Some(r) => Some(r.to_string()),
    };
    Ok(DropFilter { pod, iface, reason })
}

/// The parameters `GET /v1/doctor` takes.
pub(super) const DOCTOR_PARAMS: &[&str] = &["check"];

/// The checks `GET /v1/doctor` asks for, validated: ids of [`crate::model::doctor::CHECKS`]
/// (comma-separated), none for every check; an unknown id is a `400` listing the ids.
pub fn parse_doctor_checks(p: &Params) -> Result<Vec<String>, ApiError> {
    match p.get("check") {
        None => Ok(Vec::new()),
        Some(c) if c.trim().is_empty() => Err(ApiError::BadRequest("check must not be empty".into())),
        Some(c) => Ok(crate::model::doctor::parse_checks(&[c.to_string()])?
            .into_iter()
            .map(String::from)
            .collect()),
    }
}

/// The query string [`parse_doctor_checks`] reads back as `checks` (empty for every check).
pub fn doctor_query(checks: &[String]) -> String {
    let ids: Vec<&str> = checks
        .iter()
        .flat_map(|c| c.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if ids.is_empty() {
        String::new()
    } else {
        format!("?check={}", percent_encode(&ids.join(",")).replace("%2C", ","))
    }
}

/// The query string [`parse_drop_filter`] reads back as `f` (empty for every drop).
pub fn drop_query(f: &DropFilter) -> String {
    let mut q = Vec::new();
    if let Some(p) = &f.pod {
        q.push(format!("pod={}", percent_encode(p)));
    }
    if let Some(i) = &f.iface {
        q.push(format!("iface={}", percent_encode(i)));
    }
    if let Some(r) = &f.reason {
        q.push(format!("reason={}", percent_encode(r)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// The `iface` parameter: a name an interface can have.
fn parse_iface(p: &Params) -> Result<Option<String>, ApiError> {
    match p.get("iface") {
        None => Ok(None),
        Some("") => Err(ApiError::BadRequest("iface must not be empty".into())),
        Some(i) if i.len() >= libc::IFNAMSIZ => Err(ApiError::BadRequest(format!(
            "iface '{i}' is longer than an interface name can be ({} bytes)",
            libc::IFNAMSIZ - 1
        ))),
        Some(i) => Ok(Some(i.to_string())),
    }
}

/// The `ip` (an address or CIDR) and `port` parameters of `/v1/flows` and `/v1/events`.
pub fn parse_ip_port(p: &Params) -> Result<(Option<Cidr>, Option<u16>), ApiError> {
    let ip = p.get("ip").map(Cidr::parse).transpose().map_err(ApiError::from)?;
    let port = p
        .get("port")
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| ApiError::BadRequest(format!("port must be a number from 0 to 65535, got '{s}'")))
        })
        .transpose()?;
    Ok((ip, port))
}

/// The `pod`, `ip` and `port` parts of a query string.
fn pod_ip_port_query(q: &mut Vec<String>, pod: Option<&str>, ip: Option<Cidr>, port: Option<u16>) {
    if let Some(p) = pod {
        q.push(format!("pod={}", percent_encode(p)));
    }
    if let Some(ip) = ip {
        q.push(format!("ip={}", percent_encode(&ip.to_string())));
    }
    if let Some(p) = port {
        q.push(format!("port={p}"));
    }
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
        q.push(format!("sort={s}"));
    }
    pod_ip_port_query(&mut q, f.pod.as_deref(), f.ip, f.port);
    if f.active {
        q.push("active=true".into());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// The query string of `GET /v1/events` for `f` (empty for every event).
pub fn event_query(f: &EventFilter) -> String {
    let mut q = Vec::new();
    if let Some(i) = &f.iface {
        q.push(format!("iface={}", percent_encode(i)));
    }
    if !f.kinds.is_empty() {
        q.push(format!("kind={}", f.kinds.join(",")));
    }
    pod_ip_port_query(&mut q, f.pod.as_deref(), f.ip, f.port);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI adds "bad argument: " to a daemon's 4xx itself; the daemon's message must not.
    #[test]
    fn bad_input_travels_without_its_prefix() {
        let e = ApiError::from(crate::Error::BadArgument("bad CIDR 'x'".into()));
        assert_eq!(e.wire_message(), "bad CIDR 'x'");
        assert_eq!(e.exit_code(), 2);
    }

    fn params(q: &str) -> Result<Params, ApiError> {
        params_of(q, FLOW_PARAMS)
    }

    /// `q` as axum hands it over (percent-decoded), checked against `allowed`.
    fn params_of(q: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Params::new(Ok(Query(pairs)), allowed)
    }

    /// Undo [`percent_encode`], as axum's query extractor does.
    fn decode(q: &str) -> String {
        let b = q.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&q[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn drop_filter_round_trips_through_the_query() {
        let f = DropFilter {
            pod: Some("default/web 0".into()),
            iface: Some("veth1".into()),
            reason: Some("NETFILTER_DROP".into()),
        };
        let q = drop_query(&f);
        assert_eq!(q, "?pod=default%2Fweb%200&iface=veth1&reason=NETFILTER_DROP");
        // What the server reads (axum percent-decodes each pair).
        let pairs: Vec<String> = q[1..].split('&').map(decode).collect();
        let back = parse_drop_filter(&params_of(&pairs.join("&"), DROP_PARAMS).unwrap()).unwrap();
        assert_eq!(back, f);
        assert_eq!(drop_query(&DropFilter::default()), "");
        assert_eq!(
            parse_drop_filter(&params_of("", DROP_PARAMS).unwrap()).unwrap(),
            DropFilter::default()
        );
        // Names as the kernel's enum spells them, and the subsystem form `name` prints.
        for r in ["skb_drop_reason_no_socket", "openvswitch:0x2", "99", "NETPATH_RULE"] {
            let got = parse_drop_filter(&params_of(&format!("reason={r}"), DROP_PARAMS).unwrap()).unwrap();
            assert_eq!(got.reason.as_deref(), Some(r));
        }
    }

    #[test]
    fn bad_drop_queries_are_400s_naming_the_problem() {
        for (q, needle) in [
            ("iface=", "iface must not be empty"),
            ("iface=abcdefghijklmnopq", "longer than an interface name"),
            ("pod=", "pod must not be empty"),
            ("reason=", "reason must not be empty"),
            ("reason=NETFILTER DROP", "not a drop reason name"),
            ("reason=a;b", "not a drop reason name"),
        ] {
            let e = parse_drop_filter(&params_of(q, DROP_PARAMS).unwrap()).unwrap_err();
            assert_eq!(e.http_status(), 400, "{q}");
            assert!(e.wire_message().contains(needle), "{q}: {e}");
        }
        let long = format!("reason={}", "A".repeat(200));
        let e = parse_drop_filter(&params_of(&long, DROP_PARAMS).unwrap()).unwrap_err();
        assert!(e.wire_message().contains("longer than a drop reason name"), "{e}");
        let e = params_of("class=tcp", DROP_PARAMS).unwrap_err();
        assert!(
            e.wire_message().contains("unknown query parameter 'class'")
                && e.wire_message().contains("pod, iface, reason"),
            "{e}"
        );
        let e = params_of("reason=A&reason=B", DROP_PARAMS).unwrap_err();
        assert!(e.wire_message().contains("more than once"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn doctor_checks_round_trip_and_unknown_ones_are_400s_listing_the_ids() {
        let q = doctor_query(&["rp_filter,mtu".into(), "vxlan_fdb".into()]);
        assert_eq!(q, "?check=rp_filter,mtu,vxlan_fdb");
        let back = parse_doctor_checks(&params_of(&q[1..], DOCTOR_PARAMS).unwrap()).unwrap();
        assert_eq!(back, ["rp_filter", "mtu", "vxlan_fdb"]);
        assert_eq!(doctor_query(&[]), "");
        assert!(parse_doctor_checks(&params_of("", DOCTOR_PARAMS).unwrap())
            .unwrap()
            .is_empty());
        let e = parse_doctor_checks(&params_of("check=mtu,nope", DOCTOR_PARAMS).unwrap()).unwrap_err();
        assert_eq!(e.http_status(), 400);
        assert!(
            e.wire_message().contains("'nope'") && e.wire_message().contains("rp_filter, ip_forward"),
            "{e}"
        );
        let e = parse_doctor_checks(&params_of("check=", DOCTOR_PARAMS).unwrap()).unwrap_err();
        assert!(e.wire_message().contains("must not be empty"), "{e}");
        let e = params_of("reason=x", DOCTOR_PARAMS).unwrap_err();
        assert!(e.wire_message().contains("takes: check"), "{e}");
    }

    #[test]
    fn filter_round_trips_through_the_query() {
        let f = Filter {
            iface: Some("veth 1".into()),
            class: Some(netpath_common::class::TCP),
            top: Some(3),
            sort: Some(SortBy::Packets),
            pod: Some("default/web".into()),
            ip: Some(Cidr::parse("10.244.0.0/16").unwrap()),
            port: Some(53),
            active: true,
        };
        let q = filter_query(&f);
        assert_eq!(
            q,
            "?iface=veth%201&class=tcp&top=3&sort=packets&pod=default%2Fweb&ip=10.244.0.0%2F16&port=53&active=true"
        );
        let back = parse_filter(
            &params("iface=veth1&class=tcp&top=3&sort=packets&pod=default/web&ip=10.244.0.0/16&port=53&active=true")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (back.iface.as_deref(), back.class, back.top, back.sort, back.active),
            (Some("veth1"), Some(3), Some(3), Some(SortBy::Packets), true)
        );
        assert_eq!(
            (back.pod.as_deref(), back.ip, back.port),
            (f.pod.as_deref(), f.ip, f.port)
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
            ("active=yes", "active must be true or false"),
            ("iface=", "must not be empty"),
            ("iface=abcdefghijklmnopq", "longer than"),
            ("ip=10.0.0.1/8", "host bits set"),
            ("ip=nope", "not an IP address"),
            ("port=70000", "port must be a number"),
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
