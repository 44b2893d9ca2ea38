//! The API's client: what the CLI's read commands, `watch`, `rule` and `fastpath` use when a daemon
//! answers, with typed rows both ways.
use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
};

use axum::http::header;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::{doctor_query, drop_query, event_query, filter_query, ApiError, FastpathRequest, REQUEST_TIMEOUT};
use crate::model::{
    doctor::Finding,
    drops::{DropFilter, DropRow},
    events::{EventFilter, EventRow},
    flows::{Filter, FlowRow},
    ifaces::IfaceRow,
    peers::VxlanPeers,
    rules::{FastpathStatus, RuleRow, RuleSpec},
    stats::StatRow,
    status::StatusReport,
};

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
    pub async fn status(&self) -> Result<StatusReport, ApiError> {
        self.typed(hyper::Method::GET, "/v1/status", None).await
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
        self.typed(hyper::Method::GET, "/v1/stats", None).await
    }

    /// `GET /v1/flows` with `filter` as query.
    pub async fn flows(&self, filter: &Filter) -> Result<Vec<FlowRow>, ApiError> {
        self.typed(hyper::Method::GET, &format!("/v1/flows{}", filter_query(filter)), None)
            .await
    }

    /// `GET /v1/drops` with `filter` as query: drop rows, heaviest first.
    pub async fn drops(&self, filter: &DropFilter) -> Result<Vec<DropRow>, ApiError> {
        self.typed(hyper::Method::GET, &format!("/v1/drops{}", drop_query(filter)), None)
            .await
    }

    /// `GET /v1/doctor?check=...`: the daemon's last doctor findings of `checks` (ids, each may
    /// be comma-separated; every check when empty).
    pub async fn doctor(&self, checks: &[String]) -> Result<Vec<Finding>, ApiError> {
        self.typed(hyper::Method::GET, &format!("/v1/doctor{}", doctor_query(checks)), None)
            .await
    }

    /// `GET /v1/vxlan-peers`: the node's cluster view.
    pub async fn vxlan_peers(&self) -> Result<VxlanPeers, ApiError> {
        self.typed(hyper::Method::GET, "/v1/vxlan-peers", None).await
    }

    /// `GET /v1/ifaces`.
    pub async fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
        self.typed(hyper::Method::GET, "/v1/ifaces", None).await
    }

    /// `GET /v1/rules`.
    pub async fn rules(&self) -> Result<Vec<RuleRow>, ApiError> {
        self.typed(hyper::Method::GET, "/v1/rules", None).await
    }

    /// `POST /v1/rules`: the rule as added (with its id), or the daemon's reason to refuse it.
    pub async fn add_rule(&self, spec: &RuleSpec) -> Result<RuleRow, ApiError> {
        let body = serde_json::to_value(spec).map_err(|e| ApiError::Http(format!("encoding the rule: {e}")))?;
        self.typed(hyper::Method::POST, "/v1/rules", Some(body)).await
    }

    /// `DELETE /v1/rules/ID`: the rule as it was.
    pub async fn del_rule(&self, id: u32) -> Result<RuleRow, ApiError> {
        self.typed(hyper::Method::DELETE, &format!("/v1/rules/{id}"), None)
            .await
    }

    /// `GET /v1/fastpath`, or with a request `POST /v1/fastpath` (change, then the new state).
    pub async fn fastpath(&self, request: Option<&FastpathRequest>) -> Result<FastpathStatus, ApiError> {
        match request {
            None => self.typed(hyper::Method::GET, "/v1/fastpath", None).await,
            Some(r) => {
                let body = serde_json::to_value(r).map_err(|e| ApiError::Http(format!("encoding the request: {e}")))?;
                self.typed(hyper::Method::POST, "/v1/fastpath", Some(body)).await
            }
        }
    }

    /// `GET /v1/events` with `filter`: events as the daemon publishes them, until it stops.
    pub async fn events(&self, filter: &EventFilter) -> Result<EventStream, ApiError> {
        Ok(EventStream(
            self.stream(&format!("/v1/events{}", event_query(filter))).await?,
        ))
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ApiError> {
        let v = self.request(method, path_and_query, body).await?;
        serde_json::from_value(v).map_err(|e| ApiError::Http(format!("unexpected answer to {path_and_query}: {e}")))
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

    /// `GET path_and_query` (e.g. `/v1/flows?top=3`) as raw JSON, for what the typed methods do not
    /// cover (tests of the wire format, the benchmarks' status probes), or [`ApiError::Daemon`]
    /// with the status and the daemon's `error` message.
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

/// Events from `GET /v1/events`, typed.
pub struct EventStream(JsonLines);

impl EventStream {
    /// The next event; `None` when the daemon closed the stream.
    pub async fn next(&mut self) -> Result<Option<EventRow>, ApiError> {
        match self.0.next_json().await? {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| ApiError::Http(format!("bad event from the daemon: {e}"))),
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
