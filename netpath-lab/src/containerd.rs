//! A real container runtime on lab node 1: containerd with its CRI plugin, running inside the node's
//! network namespace, calling the CNI bridge plugin on `cni0` with host-local IPAM, as a
//! flannel node's kubelet and containerd do. Pods come and go through CRI (`RunPodSandbox`,
//! `StopPodSandbox`, `RemovePodSandbox`), so their veths (`veth` + 8 hex), namespaces (`cni-<uuid>`)
//! and metadata are the runtime's own.
//!
//! Why it is run the way it is:
//! - containerd joins only the node's network namespace (`nsenter --net`), not a mount namespace:
//!   the pod namespaces it bind-mounts under /run/netns must be visible to netpath (and to `ip`),
//!   which `ip netns exec` (a private mount namespace) would hide.
//! - Its root, state, socket, runc state, cgroup (`/netpath-lab-PREFIX` under each hierarchy), CNI
//!   configuration and IPAM store are the lab's own ([`Containerd::root_dir`],
//!   [`Containerd::state_dir`]); the host's /var/lib/containerd, /run/containerd/containerd.sock
//!   and /etc/cni are never used. Two paths are fixed in containerd 1.6 and libcni: the shims'
//!   sockets under /run/containerd/s and CNI's result cache under /var/lib/cni; their entries go
//!   with the pods, and [`Containerd::stop`] removes the directories when they are left empty.
//! - host-local hands out 10.244.0.100-199, clear of the simulated pods' 10.244.0.2-4 on the same
//!   bridge, so both kinds of pod share node 1's pod CIDR and routes.
//! - Nothing can be pulled: the sandbox (pause) image is built locally from a static binary and
//!   imported with `ctr images import` into containerd's `k8s.io` namespace, where CRI looks.
use std::{
    collections::HashMap,
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netpath_cri::{proto, CriClient};
use serde::Serialize;

use crate::{image, process::run, Lab, LabError};

/// The Kubernetes namespace of the lab's pods.
pub const POD_NAMESPACE: &str = "default";
/// The sandbox image containerd's CRI plugin starts for every pod (built by the lab).
pub const PAUSE_IMAGE: &str = "netpath.local/pause:lab";
/// The pods `lab up --runtime containerd` creates.
pub const DEFAULT_PODS: &[&str] = &["web-0", "db-0"];
/// The label that marks a sandbox as the lab's.
pub const LAB_LABEL: &str = "netpath.dev/lab";
/// How long containerd may take to answer on its socket after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Where containerd's and the CNI plugins' binaries are (Debian's containerd and
/// containernetworking-plugins packages).
const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The C source of the pause binary: blocks in pause(2), reaps children, exits on SIGTERM/SIGINT.
const PAUSE_C: &str = include_str!("../pause/pause.c");

/// containerd of one lab (on its node 1).
#[derive(Debug, Clone)]
pub struct Containerd {
    lab: Lab,
}

/// A pod of the lab's containerd, as CRI and the kernel report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CriPod {
    pub name: String,
    pub namespace: String,
    pub sandbox_id: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `cni-<uuid>`, under /run/netns.
    pub netns: Option<String>,
    pub ip: Option<String>,
    /// The pod veth's host side in node 1's namespace.
    pub host_veth: Option<String>,
    pub ready: bool,
}

/// A current-thread tokio runtime for one CRI exchange (the lab is synchronous).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, LabError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Runtime {
            what: format!("cannot start an async runtime for CRI: {e}"),
        })?;
    Ok(rt.block_on(f))
}

impl Lab {
    /// The containerd runtime of this lab's node 1.
    pub fn containerd(&self) -> Containerd {
        Containerd { lab: self.clone() }
    }
}

impl Containerd {
    /// containerd's state directory: its socket, configuration, log and the CNI configuration.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/netpath-lab/{}/containerd", self.lab.prefix))
    }

    /// containerd's root directory: images and snapshots.
    pub fn root_dir(&self) -> PathBuf {
        PathBuf::from(format!("/var/lib/netpath-lab/{}/containerd", self.lab.prefix))
    }

    /// The CRI (and containerd API) socket.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("containerd.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.state_dir().join("containerd.pid")
    }

    fn config_file(&self) -> PathBuf {
        self.state_dir().join("config.toml")
    }

    /// containerd's log (its stdout and stderr).
    pub fn log_file(&self) -> PathBuf {
        self.state_dir().join("containerd.log")
    }

    /// The pid of this lab's containerd, if it runs: the pid file's process, checked to be a
    /// containerd started with this lab's configuration (a stale pid file may name a reused pid).
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let config = self.config_file();
        let ours = args.first().is_some_and(|a| a.ends_with(b"containerd"))
            && args.iter().any(|a| *a == config.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    }

    /// The configuration file's text.
    pub fn config_toml(&self) -> String {
        let state = self.state_dir();
        let root = self.root_dir();
        format!(
            r#"# netpath lab {prefix}: containerd on node 1 ({node}). Generated; rewritten by `lab up`.
version = 2
root = "{root}"
state = "{state}/state"
# Snapshotters and plugins a lab has no use for (and that probe the host's devices).
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Sandboxes ask for oom_score_adj -998; where lowering it is not allowed (no CAP_SYS_RESOURCE, as
  # in some VMs and containers) runc fails with "failed to update /proc/self/oom_score_adj". This
  # clamps it to containerd's own value.
  restrict_oom_score_adj = true
  # No streaming server on the host's addresses.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # runc's state beside containerd's (its default is /run/containerd/runc).
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{state}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{state}/cni/net.d"
"#,
            prefix = self.lab.prefix,
            node = self.lab.node_ns(1),
            root = root.display(),
            state = state.display(),
            sock = self.socket().display(),
            pause = PAUSE_IMAGE,
            cni_bin = CNI_BIN_DIR,
        )
    }

    /// The CNI configuration: the bridge plugin on `cni0` (flannel's delegate), host-local IPAM in
    /// node 1's pod CIDR, and the loopback plugin as every kubelet's runtime adds.
    pub fn cni_conflist(&self) -> String {
        let ipam_dir = self.state_dir().join("ipam");
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "cbr0",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": crate::POD_MTU,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{
                        "subnet": "10.244.0.0/24",
                        "rangeStart": "10.244.0.100",
                        "rangeEnd": "10.244.0.199",
                        "gateway": "10.244.0.1"
                    }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir.display().to_string()
                }
            }]
        })
        .to_string()
    }

    /// Start containerd (unless it runs), import the pause image, and wait until CRI answers.
    /// Needs node 1's namespace (the lab must be up).
    pub fn start(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let started_here = self.pid().is_none();
        let r = self.start_inner(progress);
        if r.is_err() && started_here {
            // Nothing half-started stays behind: the containerd this call spawned goes again.
            if let Some(pid) = self.pid() {
                terminate(pid, Duration::from_secs(5));
            }
            let _ = fs::remove_file(self.pid_file());
        }
        r
    }

    fn start_inner(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let state = self.state_dir();
        for d in [state.join("cni/net.d"), state.join("ipam"), self.root_dir()] {
            fs::create_dir_all(&d).map_err(|e| io_err("cannot create", &d, e))?;
        }
        write(&self.config_file(), &self.config_toml())?;
        write(&state.join("cni/net.d/10-cbr0.conflist"), &self.cni_conflist())?;
        let mut child = None;
        if self.pid().is_none() {
            progress(&format!(
                "starting containerd in {} (socket {})",
                self.lab.node_ns(1),
                self.socket().display()
            ));
            let log = fs::File::create(self.log_file()).map_err(|e| io_err("cannot create", &self.log_file(), e))?;
            let log2 = log
                .try_clone()
                .map_err(|e| io_err("cannot open", &self.log_file(), e))?;
            let netns = format!("/run/netns/{}", self.lab.node_ns(1));
            let mut cmd = Command::new("nsenter");
            // SAFETY: close_range(2) is a plain system call; it runs in the child before exec.
            unsafe {
                // containerd lives until `lab down`: no descriptor it would inherit (a caller's
                // `flock` lock, a test's pipes) may stay open that long. CLOSE_RANGE_CLOEXEC
                // rather than closing, so the exec-error pipe of `spawn` keeps working.
                cmd.pre_exec(|| {
                    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
                    Ok(())
                });
            }
            let c = cmd
                .arg(format!("--net={netns}"))
                .arg("--")
                .arg("containerd")
                .arg("--config")
                .arg(self.config_file())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                // Its own session: it outlives `cargo xtask lab up` until `lab down`.
                .process_group(0)
                .spawn()
                .map_err(|source| LabError::Spawn {
                    cmd: "nsenter --net=... containerd".into(),
                    source,
                })?;
            // nsenter execs containerd in place (a network namespace needs no fork).
            write(&self.pid_file(), &c.id().to_string())?;
            child = Some(c);
        }
        let until = Instant::now() + START_TIMEOUT;
        loop {
            // Until nsenter has exec'd, the pid's command line is nsenter's: ask the child.
            let exited = match child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => self.pid().is_none(),
            };
            if exited {
                if let Some(mut c) = child.take() {
                    let _ = c.wait();
                }
                return Err(LabError::Runtime {
                    what: format!("containerd exited at start; its log: {}", self.log_tail()),
                });
            }
            if self.version().is_ok() {
                break;
            }
            if Instant::now() > until {
                return Err(LabError::Runtime {
                    what: format!(
                        "containerd did not answer on {} within {START_TIMEOUT:?}; its log: {}",
                        self.socket().display(),
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Imported on every start: containerd's CRI plugin does not always list an image imported
        // before a restart (it looked for the pause image in a registry after one).
        let archive = self.pause_archive();
        if !archive.exists() {
            progress(&format!(
                "building the pause image {PAUSE_IMAGE} (static C binary, buildah)"
            ));
            self.build_pause_image()?;
        }
        self.import(&archive)?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The runtime's name and version over CRI.
    pub fn version(&self) -> Result<netpath_cri::RuntimeVersion, LabError> {
        let sock = self.socket();
        Ok(block_on(async move {
            CriClient::connect(&sock).await.map(|c| c.runtime().clone())
        })??)
    }

    fn ctr(&self, args: &[&str]) -> Result<String, LabError> {
        let sock = self.socket().display().to_string();
        let mut v = vec!["ctr", "--address", &sock, "--namespace", "k8s.io"];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Import an image archive (docker-archive or OCI archive with a reference) into the `k8s.io`
    /// namespace, where CRI finds images.
    pub fn import(&self, archive: &Path) -> Result<(), LabError> {
        self.ctr(&["images", "import", &archive.display().to_string()])?;
        Ok(())
    }

    fn pause_archive(&self) -> PathBuf {
        self.state_dir().join("pause").join("pause.tar")
    }

    /// Compile the pause binary statically and wrap it in an image, under the state directory.
    fn build_pause_image(&self) -> Result<(), LabError> {
        let dir = self.state_dir().join("pause");
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        let src = dir.join("pause.c");
        let bin = dir.join("pause");
        write(&src, PAUSE_C)?;
        run(&[
            "cc",
            "-static",
            "-Os",
            "-s",
            "-o",
            &bin.display().to_string(),
            &src.display().to_string(),
        ])?;
        let spec = image::ImageSpec {
            reference: PAUSE_IMAGE.into(),
            files: vec![image::ImageFile::new(bin, "/pause", 0o755)],
            entrypoint: vec!["/pause".into()],
            ..Default::default()
        };
        image::build_to(&spec, image::Engine::Buildah, &dir, &self.pause_archive())
    }

    /// Connect and run `f` on one async runtime: a tonic channel's worker lives on the runtime
    /// that created it, so a client cannot outlive its `block_on`.
    fn with_cri<T, Fut>(&self, f: impl FnOnce(CriClient) -> Fut) -> Result<T, LabError>
    where
        Fut: std::future::Future<Output = Result<T, netpath_cri::CriError>>,
    {
        let sock = self.socket();
        Ok(block_on(async move {
            let c = CriClient::connect(&sock).await?;
            f(c).await
        })??)
    }

    /// The sandbox configuration of a lab pod: `app` is the name without its ordinal (`web-0`:
    /// `web`), as a StatefulSet's pods are labelled.
    pub fn sandbox_config(&self, name: &str, uid: &str) -> proto::PodSandboxConfig {
        let app = name.rsplit_once('-').map_or(name, |(a, _)| a);
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: POD_NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .state_dir()
                .join("pods")
                .join(format!("{POD_NAMESPACE}_{name}_{uid}"))
                .display()
                .to_string(),
            labels: HashMap::from([
                ("app".to_string(), app.to_string()),
                (LAB_LABEL.to_string(), self.lab.prefix.clone()),
                ("io.kubernetes.pod.name".to_string(), name.to_string()),
                ("io.kubernetes.pod.namespace".to_string(), POD_NAMESPACE.to_string()),
            ]),
            linux: Some(proto::LinuxPodSandboxConfig {
                // The lab's own cgroup (under every hierarchy), removed by `stop`; containerd's
                // default would be /k8s.io, shared with any other containerd of the host.
                cgroup_parent: format!("/{}", self.cgroup_name()),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(proto::NamespaceOption::default()),
                    privileged: false,
                }),
            }),
            ..Default::default()
        }
    }

    fn cgroup_name(&self) -> String {
        format!("netpath-lab-{}", self.lab.prefix)
    }

    /// Where `add_pod` notes each pod's namespace, for `stop` to remove what a dead containerd
    /// left.
    fn netns_record(&self) -> PathBuf {
        self.state_dir().join("pod-netns")
    }

    /// Create a pod through CRI `RunPodSandbox`. A name that exists (ready) is an error.
    pub fn add_pod(&self, name: &str) -> Result<CriPod, LabError> {
        validate_pod_name(name)?;
        if self.pods()?.iter().any(|p| p.name == name) {
            return Err(LabError::BadPod {
                what: format!("pod {POD_NAMESPACE}/{name} exists already"),
            });
        }
        let uid = pod_uid(&self.lab.prefix, name);
        let config = self.sandbox_config(name, &uid);
        let id = self.with_cri(|mut c| async move { c.run_sandbox(config).await })?;
        let pod = self
            .pods()?
            .into_iter()
            .find(|p| p.sandbox_id == id)
            .ok_or_else(|| LabError::Runtime {
                what: format!("RunPodSandbox returned {id}, which ListPodSandbox does not show"),
            })?;
        if let Some(ns) = &pod.netns {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.netns_record())
                .map_err(|e| io_err("cannot open", &self.netns_record(), e))?;
            std::io::Write::write_all(&mut f, format!("{ns}\n").as_bytes())
                .map_err(|e| io_err("cannot write", &self.netns_record(), e))?;
        }
        Ok(pod)
    }

    /// Delete a pod: `StopPodSandbox` (CNI DEL removes its veth and address), `RemovePodSandbox`.
    /// An unknown name is an error that lists the pods there are.
    pub fn del_pod(&self, name: &str) -> Result<(), LabError> {
        let pods = self.pods()?;
        let Some(pod) = pods.iter().find(|p| p.name == name) else {
            let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            return Err(LabError::BadPod {
                what: format!(
                    "no pod {name:?} in lab '{}'; its pods: {}",
                    self.lab.prefix,
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
            });
        };
        let id = pod.sandbox_id.clone();
        self.with_cri(|mut c| async move {
            c.stop_sandbox(&id).await?;
            c.remove_sandbox(&id).await
        })
    }

    /// The lab's pods (sandboxes labelled with this lab's prefix), with their namespace, address and
    /// host veth.
    pub fn pods(&self) -> Result<Vec<CriPod>, LabError> {
        let prefix = self.lab.prefix.clone();
        let found = self.with_cri(|mut c| async move {
            let mut out = Vec::new();
            for sb in c.all_sandboxes().await? {
                if sb.labels.get(LAB_LABEL) != Some(&prefix) {
                    continue;
                }
                // Removed since the listing: not a pod any more.
                let status = match c.sandbox_status(&sb.id).await {
                    Err(netpath_cri::CriError::Call {
                        code: netpath_cri::Code::NotFound,
                        ..
                    }) => continue,
                    r => r?,
                };
                out.push((sb, status));
            }
            Ok(out)
        })?;
        let mut pods: Vec<CriPod> = found
            .into_iter()
            .map(|(sb, status)| {
                let meta = sb.metadata.clone().unwrap_or_default();
                let netns = sandbox_netns(&status);
                let host_veth = netns.as_deref().and_then(|ns| self.host_veth(ns));
                CriPod {
                    name: meta.name,
                    namespace: meta.namespace,
                    sandbox_id: sb.id.clone(),
                    labels: sb.labels.into_iter().collect(),
                    ip: status
                        .status
                        .as_ref()
                        .and_then(|s| s.network.as_ref())
                        .map(|n| n.ip.clone())
                        .filter(|ip| !ip.is_empty()),
                    netns,
                    host_veth,
                    ready: sb.state == proto::PodSandboxState::SandboxReady as i32,
                }
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    /// The host side (in node 1) of the veth whose other end is `eth0` in `netns`.
    fn host_veth(&self, netns: &str) -> Option<String> {
        let eth0 = run(&["ip", "-n", netns, "-j", "link", "show", "eth0"]).ok()?;
        let eth0: serde_json::Value = serde_json::from_str(&eth0).ok()?;
        let peer = eth0.get(0)?.get("link_index")?.as_u64()?;
        let links = run(&["ip", "-n", &self.lab.node_ns(1), "-j", "link", "show"]).ok()?;
        let links: serde_json::Value = serde_json::from_str(&links).ok()?;
        links
            .as_array()?
            .iter()
            .find(|l| l.get("ifindex").and_then(|i| i.as_u64()) == Some(peer))
            .and_then(|l| l.get("ifname")?.as_str().map(str::to_string))
    }

    /// Stop containerd and remove everything it made: every sandbox of this lab through CRI (their
    /// namespaces and veths), the containerd process (by pid), its shims, mounts and directories.
    pub fn stop(&self, progress: &dyn Fn(&str)) -> Result<(), LabError> {
        let mut first_err: Option<LabError> = None;
        if self.pid().is_some() {
            // Every sandbox of this containerd (it is the lab's own); one that will not go is
            // said and left to the namespace and shim cleanup below.
            let removed = self.with_cri(|mut c| async move {
                let ids: Vec<String> = c.all_sandboxes().await?.into_iter().map(|s| s.id).collect();
                for id in &ids {
                    let r = async {
                        c.stop_sandbox(id).await?;
                        c.remove_sandbox(id).await
                    }
                    .await;
                    if let Err(e) = r {
                        log_err(&format!("removing sandbox {id}: {e}"));
                    }
                }
                Ok(ids.len())
            });
            match removed {
                Ok(0) => {}
                Ok(n) => progress(&format!("removed {n} pod sandbox(es) through CRI")),
                Err(e) => log_err(&format!("listing the pod sandboxes: {e}")),
            }
        }
        if let Some(pid) = self.pid() {
            progress(&format!("stopping containerd (pid {pid})"));
            terminate(pid, Duration::from_secs(5));
        }
        // Shims whose containerd is gone still hold their tasks: theirs are the shims started with
        // this lab's socket address.
        for pid in shims_of(self.socket().as_os_str().as_encoded_bytes()) {
            terminate(pid, Duration::from_secs(2));
        }
        // What a dead containerd could not remove: its pods' namespaces (and their processes).
        let recorded = fs::read_to_string(self.netns_record()).unwrap_or_default();
        let existing = crate::process::list_netns().unwrap_or_default();
        for ns in recorded.lines().filter(|n| existing.iter().any(|e| e == n)) {
            crate::process::kill_netns_processes(ns);
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                first_err.get_or_insert(e);
            }
        }
        remove_cgroups(&self.cgroup_name());
        // containerd 1.6 puts its shims' sockets under /run/containerd/s whatever its state
        // directory, and libcni its result cache under /var/lib/cni: the entries go with the
        // shims and CNI DEL, the directories stay (removed when empty only, as another runtime of
        // the host may use them).
        for d in [
            "/run/containerd/s",
            "/run/containerd",
            "/var/lib/cni/results",
            "/var/lib/cni",
        ] {
            let _ = fs::remove_dir(d);
        }
        for dir in [self.state_dir(), self.root_dir()] {
            unmount_under(&dir);
            if dir.exists() {
                if let Err(e) = fs::remove_dir_all(&dir) {
                    first_err.get_or_insert(io_err("cannot remove", &dir, e));
                }
            }
        }
        for base in [
            PathBuf::from(format!("/run/netpath-lab/{}", self.lab.prefix)),
            PathBuf::from(format!("/var/lib/netpath-lab/{}", self.lab.prefix)),
        ] {
            // Only when empty: other labs' directories stay.
            let _ = fs::remove_dir(&base);
            if let Some(parent) = base.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn log_err(msg: &str) {
    eprintln!("lab: {msg}");
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    fs::write(path, text).map_err(|e| io_err("cannot write", path, e))
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> LabError {
    LabError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Kubernetes pod names are DNS labels (RFC 1123): lowercase letters, digits and '-', at most 63.
pub fn validate_pod_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidPodName { name: name.into() })
    }
}

/// A pod UID in the UUID layout, unique per creation (the name and the time).
fn pod_uid(prefix: &str, name: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let a = crate::topology::fnv1a32(&format!("{prefix}/{name}/{t}"));
    let b = crate::topology::fnv1a32(&format!("{t}/{name}/{prefix}"));
    let c = (t & 0xffff_ffff_ffff) as u64;
    format!(
        "{a:08x}-{:04x}-4{:03x}-8{:03x}-{c:012x}",
        b >> 16,
        b & 0xfff,
        (a ^ b) & 0xfff
    )
}

/// The `cni-<uuid>` name of a sandbox's network namespace, from its verbose status (the runtime
/// spec's network namespace path).
fn sandbox_netns(status: &proto::PodSandboxStatusResponse) -> Option<String> {
    let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
    let path = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()?
        .to_string();
    Path::new(&path).file_name()?.to_str().map(str::to_string)
}

/// SIGTERM, then SIGKILL after `grace`.
fn terminate(pid: i32, grace: Duration) {
    // SAFETY: kill(2) on a pid this lab recorded (or found with the lab's own socket in its
    // command line), checked just before.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Gone (or a zombie for its parent to reap) before the caller removes what it used.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(false)
}

/// containerd's runc shims started with `address` (`-address ADDR`) as an argument.
fn shims_of(address: &[u8]) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = c.split(|&b| b == 0);
            args.next().is_some_and(|a0| a0.ends_with(b"containerd-shim-runc-v2")) && args.any(|a| a == address)
        })
        .collect()
}

/// Remove the cgroup `name` under the root of every hierarchy (cgroup v1 controllers, the v2
/// tree), with the container cgroups left in it: deepest first, as rmdir(2) wants them empty of
/// children (a cgroup's control files do not count).
fn remove_cgroups(name: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut tops = vec![root.join(name)];
    if let Ok(d) = fs::read_dir(root) {
        tops.extend(d.filter_map(|e| e.ok()).map(|e| e.path().join(name)));
    }
    for top in tops.into_iter().filter(|t| t.is_dir()) {
        let mut dirs = vec![top.clone()];
        let mut i = 0;
        // Bounded: a lab's cgroup holds one level of containers (each sandbox and container).
        while i < dirs.len() && dirs.len() < 10_000 {
            if let Ok(d) = fs::read_dir(&dirs[i]) {
                dirs.extend(d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Unmount everything mounted at or below `dir` (containerd's rootfs overlays and /dev/shm of
/// sandboxes), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = run(&["umount", "-l", &t]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_dns_labels() {
        for ok in ["web-0", "db-0", "a", "x1-y2"] {
            validate_pod_name(ok).unwrap();
        }
        for bad in ["", "Web-0", "web_0", "-web", "web-", &"a".repeat(64), "web 0"] {
            assert!(validate_pod_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_pod_name_is_bad_input_before_any_runtime_call() {
        // No containerd runs for this prefix: the name is refused first.
        let e = Lab::new("npnone").containerd().add_pod("Web_0").unwrap_err();
        assert!(matches!(e, LabError::InvalidPodName { .. }) && e.is_bad_input(), "{e}");
        let gone = LabError::BadPod { what: "no pod".into() };
        assert!(gone.is_bad_input());
        assert!(!LabError::Runtime { what: "x".into() }.is_bad_input());
    }

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let a = pod_uid("np", "web-0");
        std::thread::sleep(Duration::from_millis(1));
        let b = pod_uid("np", "web-0");
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
    }

    #[test]
    fn config_keeps_to_the_labs_directories() {
        let c = Lab::new("npx").containerd();
        let t = c.config_toml();
        assert!(t.contains(r#"root = "/var/lib/netpath-lab/npx/containerd""#), "{t}");
        assert!(
            t.contains(r#"address = "/run/netpath-lab/npx/containerd/containerd.sock""#),
            "{t}"
        );
        assert!(
            t.contains(r#"conf_dir = "/run/netpath-lab/npx/containerd/cni/net.d""#),
            "{t}"
        );
        assert!(!t.contains("/var/lib/containerd") && !t.contains("/etc/cni"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&c.cni_conflist()).unwrap();
        let ipam = &v["plugins"][0]["ipam"];
        assert_eq!(v["plugins"][0]["bridge"], "cni0");
        assert_eq!(ipam["ranges"][0][0]["rangeStart"], "10.244.0.100");
        assert!(ipam["dataDir"].as_str().unwrap().starts_with("/run/netpath-lab/npx/"));
    }

    #[test]
    fn labels_name_the_app_and_the_lab() {
        let c = Lab::new("npx").containerd();
        let cfg = c.sandbox_config("web-0", "u");
        assert_eq!(cfg.labels["app"], "web");
        assert_eq!(cfg.labels[LAB_LABEL], "npx");
        assert_eq!(cfg.metadata.unwrap().namespace, POD_NAMESPACE);
    }

    #[test]
    fn netns_from_the_runtime_spec() {
        let info = r#"{"pid":7,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1234"}]}}}"#;
        let st = proto::PodSandboxStatusResponse {
            info: HashMap::from([("info".to_string(), info.to_string())]),
            ..Default::default()
        };
        assert_eq!(sandbox_netns(&st).as_deref(), Some("cni-1234"));
        assert_eq!(sandbox_netns(&proto::PodSandboxStatusResponse::default()), None);
    }
}
