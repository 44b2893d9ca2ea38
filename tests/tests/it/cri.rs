//! CRI pod lookup against a fake CRI runtime: a tonic gRPC server on a unix socket in a temp dir
//! serving `runtime.v1.RuntimeService` Version, ListPodSandbox and PodSandboxStatus, with sandboxes
//! whose network namespaces are real (`ip netns add`, a process in one). Guards remove the socket
//! directory, the namespaces and the process even when a test panics.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netpath::node::cri::{paths, pods_by_netns_inode, proto, CriClient, CriError, PodResolver};
use netpath_tests::{fake_cri::*, *};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
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
            assert!(
                Instant::now() < deadline,
                "pid {} never entered namespace {}",
                s.pid(),
                ns.name
            );
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
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
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
    let coredns = FakeSandbox::new(
        "sb-coredns",
        "kube-system",
        "coredns-abc",
        Some(serde_json::json!({ "pid": sleeper.pid() }).to_string()),
    );
    // 3: host network (NamespaceOption NODE, and no network namespace in the spec).
    let mut host = FakeSandbox::new(
        "sb-host",
        "kube-system",
        "kube-proxy-xyz",
        Some(info_with_spec(
            std::process::id(),
            serde_json::json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "mount" }]),
        )),
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
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("fakecri", "v1")
        );

        let pods = pods_by_netns_inode(&mut client).await.expect("pods_by_netns_inode");
        assert_eq!(pods.get(&ino1), Some(&tea_ref), "{pods:#?}");
        assert_eq!(pods.get(&ino2), Some(&coredns_ref), "{pods:#?}");
        assert!(!pods.contains_key(&host_ino), "{pods:#?}");
        assert!(pods.values().all(|p| p.name != "kube-proxy-xyz"), "{pods:#?}");
        assert_eq!(pods.len(), 2, "{pods:#?}");
    });

    // The client asked for ready sandboxes and verbose status.
    let lists = server.calls(paths::LIST_POD_SANDBOX);
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(
        lists,
        [format!("state=Some({})", proto::PodSandboxState::SandboxReady as i32)]
    );
    let mut statuses = server.calls(paths::POD_SANDBOX_STATUS);
    statuses.sort();
    assert_eq!(
        statuses,
        ["sb-coredns verbose=true", "sb-host verbose=true", "sb-tea verbose=true"]
    );
    assert_eq!(server.calls(paths::VERSION).len(), 2);

    // The daemon's resolver, polled twice: the second poll lists, and asks no status again (a
    // sandbox's namespace, name and labels do not change), with the same answer.
    let (first, second) = rt.block_on(async {
        let mut client = CriClient::connect(&server.socket).await.expect("connect");
        let mut resolver = PodResolver::default();
        let first = resolver.resolve(&mut client).await.expect("first poll");
        let second = resolver.resolve(&mut client).await.expect("second poll");
        (first, second)
    });
    assert_eq!(first.len(), 2, "{first:#?}");
    assert_eq!(first, second);
    assert_eq!(server.calls(paths::LIST_POD_SANDBOX).len(), 3);
    assert_eq!(
        server.calls(paths::POD_SANDBOX_STATUS).len(),
        6,
        "the second poll asked for status again"
    );
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
        Some(info_with_spec(
            0,
            serde_json::json!([{ "type": "network", "path": netns1_path }]),
        )),
    );
    let good_ref = good.pod_ref();
    let mut sandboxes = vec![
        FakeSandbox::new(
            "sb-garbage",
            "default",
            "garbage",
            Some("{\"runtimeSpec\": {not json".into()),
        ),
        FakeSandbox::new("sb-array", "default", "array", Some("[1, 2, 3]".into())),
        FakeSandbox::new("sb-noinfo", "default", "noinfo", None),
        // Host network known only from the spec (NamespaceOption says POD): its pid must not be used.
        FakeSandbox::new(
            "sb-spechost",
            "default",
            "spechost",
            Some(info_with_spec(
                std::process::id(),
                serde_json::json!([{ "type": "pid" }]),
            )),
        ),
        FakeSandbox::new(
            "sb-stale",
            "default",
            "stale",
            Some(info_with_spec(
                0,
                serde_json::json!([{ "type": "network", "path": stale }]),
            )),
        ),
        // Listed but removed before its status was asked: NotFound.
        FakeSandbox::new(
            "sb-gone",
            "default",
            "gone",
            Some(info_with_spec(
                0,
                serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]),
            )),
        ),
        // Its status call fails.
        FakeSandbox::new(
            "sb-broken",
            "default",
            "broken",
            Some(info_with_spec(
                0,
                serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]),
            )),
        ),
        // Not ready (the fake ignores the filter): skipped even though its namespace is real.
        FakeSandbox::new(
            "sb-notready",
            "default",
            "notready",
            Some(info_with_spec(
                0,
                serde_json::json!([{ "type": "network", "path": format!("/run/netns/{}", ns2.name) }]),
            )),
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
        pods_by_netns_inode(&mut client)
            .await
            .expect("bad sandboxes must be skipped, not fail the call")
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
        pods_by_netns_inode(&mut client)
            .await
            .expect_err("all status calls failed")
    });
    assert!(
        matches!(&err, CriError::Call { method: "PodSandboxStatus", socket, .. } if socket == &server.socket),
        "{err:?}"
    );
    assert!(err.to_string().contains(server.socket.to_str().unwrap()), "{err}");

    // No sandboxes at all is an empty map, not an error.
    let empty = FakeServer::start(&rt, TempDir::new(), vec![]);
    let pods = rt.block_on(async {
        let mut client = CriClient::connect(&empty.socket).await.expect("connect");
        pods_by_netns_inode(&mut client).await
    });
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
            assert!(
                matches!(&err, CriError::Connect { socket, .. } if socket == named),
                "{err:?}"
            );
            eprintln!("{}: {msg} ({took:?})", path.display());
        }

        // The mute listener accepts, but HTTP/2 does not wait for the server: connect() proves the
        // runtime with Version, and gives up within the connect timeout.
        let t0 = Instant::now();
        let err = CriClient::connect(&mute)
            .await
            .expect_err("a mute socket is no CRI runtime");
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        assert!(
            matches!(&err, CriError::ConnectTimeout { socket, .. } if socket == &mute),
            "{err:?}"
        );
        assert!(err.to_string().contains(mute.to_str().unwrap()), "{err}");
        eprintln!("{}: {err} ({took:?})", mute.display());

        let t0 = Instant::now();
        assert!(CriClient::discover(&[missing.clone(), dead.clone(), mute.clone()])
            .await
            .is_none());
        assert!(t0.elapsed() < Duration::from_millis(2500), "took {:?}", t0.elapsed());
    });
}
