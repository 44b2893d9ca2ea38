//! The control API end to end on a real unix socket: a fake Backend with fixed rows behind
//! `ApiServer`, `ApiClient` and raw HTTP (and curl / python3 as an unprivileged user) in front.
//! Needs root (to switch to uid 65534 for the access-control checks); no BPF, no namespaces.
use std::{
    io::{Read as _, Write as _},
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use netpath::{
    model::{
        flows::{Filter, FlowRow, SortBy},
        ifaces::IfaceRow,
        stats::StatRow,
        status::{FlowTableStatus, StatusReport},
    },
    service::api::{block_on, ApiClient, ApiError, ApiServer, Backend, ServerHandle},
};
use netpath_common::class;
use netpath_tests::{require_root, unique};

/// A directory under /tmp (mode 0755, so uid 65534 may traverse it), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("npapi"));
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Backend with fixed answers that records the flow filters it was given.
#[derive(Default)]
struct Fake {
    filters: Mutex<Vec<Filter>>,
    calls: AtomicUsize,
}

fn stat_row() -> StatRow {
    StatRow {
        iface: "veth-a".into(),
        ifindex: 3,
        direction: "egress".into(),
        class: "icmp".into(),
        packets: 5,
        bytes: 490,
        owner: netpath::model::owner::Owner {
            netns: Some("cni-0a1b".into()),
            pod: Some("web-1".into()),
            pod_namespace: Some("default".into()),
            ..Default::default()
        },
    }
}

fn flow_row(proto: &str, bytes: u64) -> FlowRow {
    FlowRow {
        iface: "veth-a".into(),
        ifindex: 3,
        direction: "egress".into(),
        family: "ipv4".into(),
        src: "10.77.0.1".into(),
        dst: "10.77.0.2".into(),
        proto: proto.into(),
        sport: 40000,
        dport: 80,
        packets: 3,
        bytes,
        tcp_flags: "SA".into(),
        first_seen: "2024-01-01T00:00:00.000000Z".into(),
        last_seen: "2024-01-01T00:00:01.000000Z".into(),
        active: true,
        class: if proto == "tcp" { class::TCP } else { class::UDP },
        ..Default::default()
    }
}

impl Backend for Fake {
    fn status(&self) -> Result<StatusReport, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(StatusReport {
            flow_table: FlowTableStatus::new(65536, 2, 2, 2, 0, 0),
            pull_failed: 0,
            ..Default::default()
        })
    }

    fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![stat_row()])
    }

    fn flows(&self, filter: &Filter) -> Result<Vec<FlowRow>, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.filters.lock().unwrap().push(filter.clone());
        Ok(netpath::model::flows::select(
            vec![flow_row("tcp", 100), flow_row("udp", 300), flow_row("tcp", 200)],
            filter,
        ))
    }

    fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![IfaceRow {
            iface: "veth-a".into(),
            ifindex: 3,
            mode: Some("tc".into()),
            ..Default::default()
        }])
    }
}

fn serve(sock: &Path) -> (Arc<Fake>, ServerHandle) {
    let fake = Arc::new(Fake::default());
    let server = ApiServer::bind(sock, fake.clone()).unwrap_or_else(|e| panic!("bind {}: {e}", sock.display()));
    (fake, server.spawn().expect("spawn the server"))
}

fn client(sock: &Path) -> ApiClient {
    block_on(ApiClient::connect(sock))
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("a daemon answers")
}

/// One HTTP/1.1 exchange by hand: (status, headers, body).
fn raw(sock: &Path, method: &str, path: &str) -> (u16, String, String) {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Typed rows as JSON, to check field names (the contract) rather than Rust fields.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn daemon_error(r: Result<serde_json::Value, ApiError>) -> (u16, String) {
    match r {
        Err(ApiError::Daemon { status, message }) => (status, message),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[test]
fn api_round_trips_rows_and_filters() {
    require_root();
    let dir = TempDir::new();
    let sock = dir.0.join("netpath.sock");
    let (fake, server) = serve(&sock);
    let c = client(&sock);

    let (status, stats, flows, ifaces, top1) = block_on(async {
        (
            c.status().await.unwrap(),
            c.stats().await.unwrap(),
            c.flows(&Filter::default()).await.unwrap(),
            c.ifaces().await.unwrap(),
            c.flows(&Filter {
                class: Some(class::TCP),
                top: Some(1),
                ..Default::default()
            })
            .await
            .unwrap(),
        )
    })
    .unwrap();
    // The rows as the wire carries them: the JSON contract is what these assertions check.
    let (status, stats, flows, ifaces, top1) = (json(&status), json(&stats), json(&flows), json(&ifaces), json(&top1));
    assert_eq!(status["flow_table"]["capacity"], 65536, "{status}");
    assert_eq!(stats, serde_json::to_value(vec![stat_row()]).unwrap());
    for f in [
        "iface",
        "ifindex",
        "direction",
        "class",
        "packets",
        "bytes",
        "netns",
        "pod",
        "pod_namespace",
    ] {
        assert!(stats[0].get(f).is_some(), "stats row lacks {f}: {stats}");
    }
    assert_eq!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["bytes"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [300, 200, 100]
    );
    for f in netpath::model::flows::FLOW_ROW_FIELDS {
        assert!(flows[0].get(f).is_some(), "flow row lacks {f}: {flows}");
    }
    assert!(
        flows[0].get("class").is_none(),
        "class is not part of the flow contract: {flows}"
    );
    assert_eq!(ifaces[0]["iface"], "veth-a", "{ifaces}");
    assert_eq!(top1.as_array().unwrap().len(), 1, "{top1}");
    assert_eq!(
        (top1[0]["proto"].as_str(), top1[0]["bytes"].as_u64()),
        (Some("tcp"), Some(200)),
        "{top1}"
    );
    {
        let filters = fake.filters.lock().unwrap();
        assert_eq!(filters.len(), 2);
        let d = &filters[0];
        assert_eq!((d.iface.as_deref(), d.class, d.top, d.sort), (None, None, None, None));
        let f = &filters[1];
        assert_eq!(
            (f.iface.as_deref(), f.class, f.top, f.sort),
            (None, Some(class::TCP), Some(1), None)
        );
    }

    // The generic GET, with every parameter (and a name that needs escaping).
    let all = Filter {
        iface: Some("veth a".into()),
        class: Some(class::UDP),
        top: Some(2),
        sort: Some(SortBy::Packets),
        ..Filter::default()
    };
    let r = block_on(async {
        (
            c.flows(&all).await.unwrap(),
            c.get("/v1/flows?iface=veth-a&sort=bytes").await.unwrap(),
        )
    })
    .unwrap();
    assert_eq!(json(&r.0), serde_json::json!([]), "no flows on 'veth a'");
    assert_eq!(r.1.as_array().unwrap().len(), 3);
    {
        let filters = fake.filters.lock().unwrap();
        let f = &filters[2];
        assert_eq!(
            (f.iface.as_deref(), f.class, f.top, f.sort),
            (Some("veth a"), Some(class::UDP), Some(2), Some(SortBy::Packets))
        );
        let f = &filters[3];
        assert_eq!((f.iface.as_deref(), f.sort), (Some("veth-a"), Some(SortBy::Bytes)));
    }

    // curl sees the same thing (and the daemon's uid, root, may use it).
    let (ok, code, body) = curl_like(&sock, "/v1/stats", false);
    assert!(ok && code == 200, "{code} {body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), stats);

    drop(c);
    server.shutdown().unwrap();
    assert!(!sock.exists(), "shutdown left {}", sock.display());
    assert!(
        block_on(ApiClient::connect(&sock)).unwrap().unwrap().is_none(),
        "a client connected to a stopped server"
    );
}

#[test]
fn api_bad_requests_are_4xx_json_and_reach_no_backend() {
    require_root();
    let dir = TempDir::new();
    let sock = dir.0.join("netpath.sock");
    let (fake, server) = serve(&sock);
    let c = client(&sock);
    let before = fake.calls.load(Ordering::SeqCst);
    for (q, reason) in [
        (
            "/v1/flows?class=nope",
            "unknown class 'nope' (one of arp, icmp, icmp6, tcp, udp, vxlan",
        ),
        ("/v1/flows?top=0", "top must be a positive integer, got '0'"),
        ("/v1/flows?top=x", "top must be a positive integer, got 'x'"),
        ("/v1/flows?sort=size", "unknown sort 'size' (one of bytes, packets)"),
        (
            "/v1/flows?bogus=1",
            "unknown query parameter 'bogus' (this endpoint takes: iface, class, top, sort, pod, ip, port, active)",
        ),
        ("/v1/flows?ip=10.244.0.2/24", "host bits set"),
        ("/v1/flows?port=65536", "port must be a number from 0 to 65535"),
        ("/v1/flows?top=1&top=2", "'top' given more than once"),
        ("/v1/flows?iface=", "iface must not be empty"),
        (
            "/v1/status?bogus=1",
            "unknown query parameter 'bogus' (this endpoint takes none)",
        ),
        ("/v1/stats?top=3", "unknown query parameter 'top'"),
    ] {
        let (status, message) = daemon_error(block_on(c.get(q)).unwrap());
        assert_eq!(status, 400, "{q}: {message}");
        assert!(message.contains(reason), "{q}: {message}");
        // The raw answer is JSON {"error": ...}.
        let (code, head, body) = raw(&sock, "GET", q);
        assert_eq!(code, 400, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-type: application/json"),
            "{head}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"],
            message.as_str()
        );
    }
    let (status, message) = daemon_error(block_on(c.get("/v2/flows")).unwrap());
    assert_eq!(status, 404);
    assert!(
        message.contains("no endpoint GET /v2/flows") && message.contains("/v1/flows"),
        "{message}"
    );
    let (code, head, body) = raw(&sock, "POST", "/v1/flows");
    assert_eq!(code, 405, "{head}");
    assert!(head.to_ascii_lowercase().contains("allow: get,head"), "{head}");
    let err = serde_json::from_str::<serde_json::Value>(&body).unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("method POST not allowed on /v1/flows (allowed: GET, HEAD)"),
        "{body}"
    );
    assert_eq!(raw(&sock, "DELETE", "/nope").0, 404);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        before,
        "a bad request reached the backend"
    );
    assert!(fake.filters.lock().unwrap().is_empty());
    let e = daemon_error(block_on(c.get("/v1/flows?top=x")).unwrap());
    assert_eq!(
        ApiError::Daemon {
            status: e.0,
            message: e.1
        }
        .exit_code(),
        2
    );
    drop(c);
    server.shutdown().unwrap();
    assert!(!sock.exists());
}

/// The HTTP clients available to run as another user: curl and/or python3.
fn tools() -> Vec<&'static str> {
    let t: Vec<_> = ["/usr/bin/curl", "/usr/bin/python3"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!t.is_empty(), "neither /usr/bin/curl nor /usr/bin/python3 exists");
    t
}

/// Run one GET with the first available tool; see [`get_with`].
fn curl_like(sock: &Path, path: &str, as_nobody: bool) -> (bool, u16, String) {
    get_with(tools()[0], sock, path, as_nobody)
}

/// Run one GET with `tool` (curl or python3), as uid/gid 65534 if `as_nobody`:
/// (connected and answered, HTTP status, body).
fn get_with(tool: &str, sock: &Path, path: &str, as_nobody: bool) -> (bool, u16, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c
    } else {
        Command::new("env")
    };
    if tool.ends_with("curl") {
        cmd.args([
            "/usr/bin/curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(sock)
        .arg(format!("http://x{path}"));
    } else {
        const PY: &str = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX)\n\
try:\n  s.connect(sys.argv[1])\nexcept OSError as e:\n  sys.stderr.write('connect: %s\\n' % e); sys.exit(7)\n\
s.sendall(('GET %s HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' % sys.argv[2]).encode())\n\
d=b''\nwhile True:\n  c=s.recv(65536)\n  if not c: break\n  d+=c\n\
h,_,b=d.decode().partition('\\r\\n\\r\\n')\nsys.stdout.write(b+'\\n'+h.split()[1])\n";
        cmd.args(["/usr/bin/python3", "-c", PY]).arg(sock).arg(path);
    }
    let out = cmd
        .output()
        .expect("running the unprivileged client (setpriv from util-linux, curl or python3)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let code = code.trim().parse().unwrap_or(0);
    let body = if out.status.success() {
        body.to_string()
    } else {
        format!("{body}{}", String::from_utf8_lossy(&out.stderr))
    };
    (out.status.success() && code != 0, code, body)
}

#[test]
fn api_socket_is_0600_and_refuses_other_users() {
    require_root();
    let dir = TempDir::new();
    let sock = dir.0.join("run").join("netpath.sock");
    let (_fake, server) = serve(&sock);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "socket mode");
    assert_eq!(
        std::fs::metadata(sock.parent().unwrap()).unwrap().permissions().mode() & 0o7777,
        0o755,
        "created parent dir mode"
    );

    // The file mode stops uid 65534 at connect().
    for tool in tools() {
        let (ok, code, out) = get_with(tool, &sock, "/v1/status", true);
        assert!(
            !ok && code == 0,
            "{tool}: uid 65534 got through a 0600 socket: {code} {out}"
        );
        assert!(
            out.contains("Permission denied") || out.contains("Couldn't connect"),
            "{tool}: {out}"
        );
    }
    assert!(
        block_on(ApiClient::connect(&sock)).unwrap().unwrap().is_some(),
        "root is refused"
    );

    // With the mode opened up, the peer-credential check answers 403.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    for tool in tools() {
        let (ok, code, body) = get_with(tool, &sock, "/v1/status", true);
        assert!(ok && code == 403, "{tool}: uid 65534 on a 0666 socket: {code} {body}");
        let err = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{tool}: {e}: {body}"));
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .contains("uid 65534 may not use the netpath API"),
            "{tool}: {body}"
        );
        let (ok, code, _) = get_with(tool, &sock, "/v1/status", false);
        assert!(ok && code == 200, "{tool}: root after chmod: {code}");
    }

    server.shutdown().unwrap();
    assert!(!sock.exists(), "shutdown left {}", sock.display());
}

#[test]
fn api_bind_refuses_a_live_socket_and_replaces_a_stale_one() {
    require_root();
    let dir = TempDir::new();
    let sock = dir.0.join("netpath.sock");

    // Absent socket: no daemon, the caller reads pins.
    assert!(block_on(ApiClient::connect(&sock)).unwrap().unwrap().is_none());

    // A second server on a live socket is refused, and the first keeps answering.
    let (_fake, first) = serve(&sock);
    let e = ApiServer::bind(&sock, Arc::new(Fake::default())).unwrap_err();
    assert!(matches!(e, ApiError::AlreadyRunning { .. }), "{e:?}");
    assert!(
        e.to_string().contains("already answers on") && e.to_string().contains(sock.to_str().unwrap()),
        "{e}"
    );
    let c = client(&sock);
    assert_eq!(block_on(c.stats()).unwrap().unwrap()[0].iface, "veth-a");
    drop(c);
    first.shutdown().unwrap();
    assert!(!sock.exists());

    // A stale socket file (its listener is gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    assert!(
        block_on(ApiClient::connect(&sock)).unwrap().unwrap().is_none(),
        "a stale socket counts as no daemon"
    );
    let (_fake, second) = serve(&sock);
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777, 0o600);
    let c = client(&sock);
    assert_eq!(block_on(c.status()).unwrap().unwrap().pull_failed, 0);
    drop(c);
    second.shutdown().unwrap();
    assert!(!sock.exists());

    // Anything that is not a socket is left alone.
    std::fs::write(&sock, "not a socket").unwrap();
    let e = ApiServer::bind(&sock, Arc::new(Fake::default())).unwrap_err();
    assert!(matches!(e, ApiError::NotASocket { .. }), "{e:?}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not a socket");

    // Nothing but what the test made is left in the directory.
    std::fs::remove_file(&sock).unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
