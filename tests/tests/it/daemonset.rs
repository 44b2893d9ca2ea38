//! The DaemonSet, run for real: netpath's image (built offline from the binary under test) in the
//! lab's containerd, through CRI, with the security settings, arguments and mounts read from
//! deploy/kubernetes/daemonset.yaml itself. It must become ready, attach to cni0 and its pods,
//! name them from the mounted CRI socket and count their traffic, with nothing but the
//! capabilities the manifest grants.
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netpath::node::cri::{proto, CriClient};
use netpath_lab::{
    containerd::{CriPod, POD_NAMESPACE},
    image,
};
use netpath_tests::*;
use serde_json::Value;

const IMAGE: &str = "netpath.local/netpath:test";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// deploy/kubernetes/daemonset.yaml as JSON.
fn daemonset() -> Value {
    let path = workspace().join("deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The CRI container config the kubelet would send for the manifest's container: its args (with
/// `$(VAR)` expanded from its env, `spec.nodeName` being `node`), security context and volume
/// mounts, with the node paths this lab has instead of a real node's (`host_paths`: manifest
/// hostPath -> lab path; an emptyDir becomes `scratch`).
fn container_config(ds: &Value, node: &str, host_paths: &[(&str, PathBuf)], scratch: &Path) -> proto::ContainerConfig {
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounts = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().expect("mount name");
            let vol = volumes.iter().find(|v| v["name"] == name).expect("mount's volume");
            let host = match vol["hostPath"]["path"].as_str() {
                Some(p) => host_paths
                    .iter()
                    .find(|(from, _)| *from == p)
                    .map(|(_, to)| to.clone())
                    .unwrap_or_else(|| PathBuf::from(p)),
                None => {
                    assert!(vol.get("emptyDir").is_some(), "volume {name}: {vol}");
                    let d = scratch.join(name);
                    std::fs::create_dir_all(&d).unwrap();
                    d
                }
            };
            let propagation = match m["mountPropagation"].as_str() {
                Some("HostToContainer") => proto::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => proto::MountPropagation::PropagationBidirectional,
                _ => proto::MountPropagation::PropagationPrivate,
            };
            proto::Mount {
                container_path: m["mountPath"].as_str().expect("mountPath").into(),
                host_path: host.display().to_string(),
                readonly: m["readOnly"].as_bool().unwrap_or(false),
                propagation: propagation as i32,
            }
        })
        .collect();
    let envs: Vec<proto::KeyValue> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| proto::KeyValue {
            key: e["name"].as_str().unwrap_or_default().into(),
            value: match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => node.into(),
                Some(other) => panic!("env {e}: fieldRef {other} is not handled here"),
                None => e["value"].as_str().unwrap_or_default().into(),
            },
        })
        .collect();
    let seccomp = match sc["seccompProfile"]["type"].as_str() {
        Some("RuntimeDefault") => proto::ProfileType::RuntimeDefault,
        Some("Unconfined") | None => proto::ProfileType::Unconfined,
        Some(other) => panic!("seccomp profile {other} is not handled here"),
    };
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: c["name"].as_str().expect("container name").into(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec { image: IMAGE.into() }),
        args: strings(&c["args"])
            .into_iter()
            .map(|a| {
                envs.iter()
                    .fold(a, |a, e| a.replace(&format!("$({})", e.key), &e.value))
            })
            .collect(),
        envs,
        mounts,
        log_path: "netpath.log".into(),
        linux: Some(proto::LinuxContainerConfig {
            security_context: Some(proto::LinuxContainerSecurityContext {
                capabilities: Some(proto::Capability {
                    add_capabilities: strings(&sc["capabilities"]["add"]),
                    drop_capabilities: strings(&sc["capabilities"]["drop"]),
                }),
                privileged: sc["privileged"].as_bool().unwrap_or(false),
                run_as_user: sc["runAsUser"].as_i64().map(|value| proto::Int64Value { value }),
                readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
                no_new_privs: !sc["allowPrivilegeEscalation"].as_bool().unwrap_or(true),
                seccomp: Some(proto::SecurityProfile {
                    profile_type: seccomp as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Capability names as /proc/PID/status counts them (CAP_NET_ADMIN is bit 12, ...).
fn cap_bits(names: &[String]) -> u64 {
    const ORDER: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    names
        .iter()
        .map(|n| {
            let n = n.trim_start_matches("CAP_");
            let bit = ORDER
                .iter()
                .position(|o| *o == n)
                .unwrap_or_else(|| panic!("unknown capability {n}"));
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}

fn status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("container process status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn get(node: &str, path: &str) -> (u16, String) {
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let path = path.to_string();
    in_netns(node, move || http_get(addr, &path, None))
        .map(|(st, _, body)| (st, body))
        .unwrap_or((0, String::new()))
}

/// A bpffs of the test's own, mounted shared: the node's /sys/fs/bpf as the DaemonSet mounts it
/// (containerd refuses a HostToContainer mount whose source is not a shared or slave mount, as a
/// systemd node's bpffs is; this machine's is private). Unmounted, pins and all, on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = std::env::temp_dir().join(unique("netpath-bpffs-"));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap().to_string();
        sh(&["mount", "-t", "bpf", "bpf", &d]);
        let b = Bpffs(dir);
        sh(&["mount", "--make-shared", &d]);
        b
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_daemonset_runs_in_containerd_with_its_own_security_settings() {
    require_root();
    let ds = daemonset();
    let pod_spec = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod_spec["hostNetwork"], true,
        "the DaemonSet must use the node's network"
    );
    let args = strings(&pod_spec["containers"][0]["args"]);
    let cri_arg = args
        .iter()
        .find_map(|a| a.strip_prefix("--cri-socket="))
        .expect("the DaemonSet names its CRI socket")
        .to_string();

    let lab = LabGuard::up("npk");
    let cri = lab.0.containerd();
    cri.start(&|m| eprintln!("[lab] {m}")).expect("containerd on node 1");
    let web: CriPod = cri.add_pod("web-0").expect("web-0");
    let db: CriPod = cri.add_pod("db-0").expect("db-0");

    // `cargo xtask image`'s image, from the binary under test.
    let tmp = TempDir::new();
    let work = tmp.0.clone();
    let archive = work.join("netpath.tar");
    let spec = image::netpath_spec(
        &netpath_bin(),
        image::NETPATH_TOOLS,
        IMAGE,
        image::ArchiveFormat::Docker,
        "test",
    )
    .expect("the image's files");
    image::build_to(&spec, image::Engine::Buildah, &work.join("build"), &archive).expect("image build");
    cri.import(&archive).expect("ctr images import");

    // A bpffs of its own stands in for the node's /sys/fs/bpf (the pins must not meet a real
    // netpath's), and the lab's CRI socket for the node's.
    let bpffs = Bpffs::new();
    let scratch = work.join("volumes");
    // The CRI socket's directory: the lab's containerd keeps its socket in its state directory.
    let cri_dir = Path::new(&cri_arg).parent().expect("socket directory");
    assert_eq!(cri.socket().file_name(), Path::new(&cri_arg).file_name());
    let node1 = lab.0.node_ns(1);
    let config = container_config(
        &ds,
        &node1,
        &[
            ("/sys/fs/bpf", bpffs.0.clone()),
            (cri_dir.to_str().unwrap(), cri.state_dir()),
        ],
        &scratch,
    );
    let mut sandbox = lab.0.containerd().sandbox_config("netpath-node1", "netpath-ds-uid");
    sandbox.metadata.as_mut().unwrap().namespace = "netpath-system".into();
    sandbox.hostname = String::new();
    sandbox
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(proto::NamespaceOption {
        network: proto::NamespaceMode::Node as i32,
        pid: proto::NamespaceMode::Container as i32,
        ..Default::default()
    });
    let log_dir = PathBuf::from(&sandbox.log_directory);
    let rt = runtime();
    let socket = cri.socket();
    let (sandbox_id, container_id, pid) = rt.block_on(async {
        let mut c = CriClient::connect(&socket).await.expect("CRI");
        let sb = c
            .run_sandbox(sandbox.clone())
            .await
            .expect("RunPodSandbox (hostNetwork)");
        let id = c
            .create_container(&sb, config, sandbox)
            .await
            .expect("CreateContainer with the DaemonSet's settings");
        c.start_container(&id).await.expect("StartContainer");
        let st = c.container_status(&id).await.expect("ContainerStatus");
        let info: Value = serde_json::from_str(st.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap();
        let pid = info["pid"].as_u64().expect("container pid") as u32;
        (sb, id, pid)
    });
    eprintln!("netpath container {container_id} in sandbox {sandbox_id}, pid {pid}");

    // Exactly the manifest's capabilities, nothing more.
    let sc = &pod_spec["containers"][0]["securityContext"];
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{sc}");
    let want = cap_bits(&strings(&sc["capabilities"]["add"]));
    let eff = u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap();
    let bnd = u64::from_str_radix(&status_field(pid, "CapBnd"), 16).unwrap();
    assert_eq!(
        eff, want,
        "effective capabilities {eff:#x}, the manifest grants {want:#x}"
    );
    assert_eq!(bnd, want, "bounding set {bnd:#x}, the manifest grants {want:#x}");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");

    // Ready (attached) within a minute, as the readiness probe sees it; /healthz too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, body) = get(&node1, "/readyz");
        if st == 200 {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log_dir.join("netpath.log")).unwrap_or_default();
            panic!("/readyz: {st} {body}; the container's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&node1, "/healthz").0, 200);

    // It counts the pods' traffic under the names CRI gives them.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            web.netns.as_deref().unwrap(),
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
        ])
        .arg(db.ip.as_deref().unwrap())
        .output()
        .expect("ping");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let deadline = Instant::now() + Duration::from_secs(20);
    let pods: BTreeSet<String> = loop {
        let (_, text) = get(&node1, "/metrics");
        let named: BTreeSet<String> = text
            .lines()
            .filter(|l| l.starts_with("netpath_packets_total{") && !l.ends_with(" 0"))
            .filter_map(|l| {
                let ns = format!("namespace=\"{POD_NAMESPACE}\"");
                (l.contains(&ns)).then(|| l.split("pod=\"").nth(1)?.split('"').next().map(str::to_string))?
            })
            .collect();
        if named.contains("web-0") && named.contains("db-0") {
            // --node-name=$(NODE_NAME), spec.nodeName: the cluster view's name for the node.
            assert!(
                text.contains(&format!("netpath_node_info{{node_name=\"{node1}\"")),
                "netpath_node_info does not name {node1}"
            );
            break named;
        }
        assert!(
            Instant::now() < deadline,
            "no counted traffic named web-0 and db-0: {named:?}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("pods counted by the containerised netpath: {pods:?}");

    rt.block_on(async {
        let mut c = CriClient::connect(&socket).await.expect("CRI");
        c.stop_container(&container_id, Duration::from_secs(10))
            .await
            .expect("StopContainer");
        c.remove_container(&container_id).await.expect("RemoveContainer");
        c.stop_sandbox(&sandbox_id).await.expect("StopPodSandbox");
        c.remove_sandbox(&sandbox_id).await.expect("RemovePodSandbox");
    });
    // --persist left the programs attached and pinned in the stand-in bpffs directory: `netpath
    // down` on it (as a node's operator would) detaches them.
    let pin_dir = bpffs.0.join("netpath");
    let out = netpath(&["down", "--pin-dir", pin_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "netpath down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
