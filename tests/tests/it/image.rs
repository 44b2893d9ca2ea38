//! `netpath_lab::image`: images built offline with buildah from a tiny static program, read back
//! from the archive itself (tar + JSON): the reference a runtime imports it under, its entrypoint,
//! its files. Importing into containerd is the lab's job (the lead's runtime tests), not this one's.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use netpath_lab::image::{self, ArchiveFormat, Engine, ImageFile, ImageSpec};
use netpath_tests::{require_root, unique};

/// A private directory, removed on drop (the engine's storage lives in it).
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let p = std::env::temp_dir().join(unique("netpath-image-"));
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A static program that prints its arguments and exits with the number of them minus one.
fn static_program(dir: &Path) -> PathBuf {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n\
         int main(int argc, char **argv) {\n\
             for (int i = 1; i < argc; i++) printf(\"%s%s\", argv[i], i + 1 < argc ? \" \" : \"\\n\");\n\
             return argc > 2 ? 1 : 0;\n\
         }\n",
    )
    .unwrap();
    let bin = dir.join("hello");
    let out = Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run cc (gcc and libc6-dev)");
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

fn spec(bin: &Path, format: ArchiveFormat) -> ImageSpec {
    ImageSpec {
        reference: "netpath.local/hello:t1".into(),
        files: vec![ImageFile::new(bin, "/usr/bin/hello", 0o755)],
        entrypoint: vec!["/usr/bin/hello".into()],
        cmd: vec!["from".into()],
        labels: [("org.opencontainers.image.title".to_string(), "hello".to_string())].into(),
        user: Some("65534:65534".into()),
        format,
        checks: vec![vec!["/usr/bin/hello".into(), "check".into()]],
        ..ImageSpec::default()
    }
}

/// The working containers left in a build's private storage.
fn containers(dir: &Path) -> String {
    let out = Command::new("buildah")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs", "containers", "--quiet"])
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .output()
        .expect("run buildah containers");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn host_storage() -> Option<std::time::SystemTime> {
    std::fs::metadata("/var/lib/containers/storage")
        .and_then(|m| m.modified())
        .ok()
}

#[test]
fn buildah_builds_a_scratch_image_into_both_archive_formats() {
    require_root();
    assert!(
        image::engine_available(Engine::Buildah),
        "buildah is missing: `cargo xtask test` installs it"
    );
    let dir = Dir::new();
    let bin = static_program(&dir.0);
    let host_before = host_storage();
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let work = dir.0.join(format!("{format:?}"));
        let t = std::time::Instant::now();
        let archive = image::build(&spec(&bin, format), &work).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        eprintln!("{format:?}: built in {:.2} s", t.elapsed().as_secs_f64());
        let info = image::read_archive(&archive).unwrap();
        assert_eq!(info.format, format);
        assert_eq!(info.references, ["netpath.local/hello:t1"], "{info:?}");
        assert_eq!(info.entrypoint, ["/usr/bin/hello"]);
        assert_eq!(info.cmd, ["from"]);
        assert_eq!(info.user, "65534:65534");
        assert_eq!(info.labels["org.opencontainers.image.title"], "hello");
        assert_eq!((info.os.as_str(), info.architecture.as_str()), ("linux", "amd64"));
        let f = info
            .files
            .iter()
            .find(|f| f.path == "usr/bin/hello")
            .unwrap_or_else(|| panic!("no usr/bin/hello in {:?}", info.files));
        assert_eq!((f.kind, f.mode, f.owner.as_str()), ('-', 0o755, "0/0"));
        assert_eq!(f.size, std::fs::metadata(&bin).unwrap().len());
        // From scratch: the program and the directories leading to it, nothing else.
        let files: Vec<&str> = info
            .files
            .iter()
            .filter(|f| f.kind != 'd')
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(files, ["usr/bin/hello"], "{:?}", info.files);
        assert!(
            containers(&work).is_empty(),
            "working container left: {}",
            containers(&work)
        );
        // No image stays in the private storage either: the commit went to the archive.
        assert!(work.join("storage.conf").is_file());
    }
    assert_eq!(host_storage(), host_before, "the host's container storage changed");
}

/// The same image with podman (`cargo xtask image --engine podman`), where it is installed: the
/// test task does not install it (buildah is the default engine), so without it this says so.
#[test]
fn podman_builds_the_same_image_where_installed() {
    require_root();
    if !image::engine_available(Engine::Podman) {
        eprintln!("SKIPPED: podman is not installed (`cargo xtask image --engine podman` installs it)");
        return;
    }
    let dir = Dir::new();
    let bin = static_program(&dir.0);
    let work = dir.0.join("podman");
    let out = work.join("hello.tar");
    image::build_to(&spec(&bin, ArchiveFormat::Docker), Engine::Podman, &work, &out).unwrap();
    let info = image::read_archive(&out).unwrap();
    assert_eq!(info.references, ["netpath.local/hello:t1"], "{info:?}");
    assert_eq!(
        (info.entrypoint.as_slice(), info.cmd.as_slice()),
        (&["/usr/bin/hello".to_string()][..], &["from".to_string()][..])
    );
    assert_eq!(info.user, "65534:65534");
    assert_eq!(info.labels["org.opencontainers.image.title"], "hello");
    let files: Vec<&str> = info
        .files
        .iter()
        .filter(|f| f.kind != 'd')
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(files, ["usr/bin/hello"], "{:?}", info.files);
    assert!(
        !Path::new("/run/libpod").exists() || host_libpod_predates(&work),
        "podman wrote /run/libpod"
    );
}

/// /run/libpod existed before this build (another podman user's), so its presence says nothing.
fn host_libpod_predates(work: &Path) -> bool {
    let created = |p: &Path| std::fs::metadata(p).and_then(|m| m.created()).ok();
    matches!((created(Path::new("/run/libpod")), created(work)), (Some(a), Some(b)) if a < b)
}

#[test]
fn a_failed_build_names_the_command_and_leaves_no_container() {
    require_root();
    let dir = Dir::new();
    let bin = static_program(&dir.0);
    // The program exits 1 with two arguments: the check fails, after the working container exists.
    let mut s = spec(&bin, ArchiveFormat::Docker);
    s.checks = vec![vec!["/usr/bin/hello".into(), "two".into(), "args".into()]];
    let work = dir.0.join("w");
    let e = image::build(&s, &work).unwrap_err().to_string();
    assert!(
        e.contains("buildah") && e.contains("run") && e.contains("two args"),
        "{e}"
    );
    assert!(
        containers(&work).is_empty(),
        "working container left: {}",
        containers(&work)
    );
    assert!(!work.join("hello-t1.docker.tar").exists());
    // Bad input fails before buildah runs.
    s.reference = "hello:t1".into();
    let e = image::build(&s, &dir.0.join("w2")).unwrap_err().to_string();
    assert!(e.contains("no registry domain"), "{e}");
    assert!(!dir.0.join("w2").exists());
}

/// The capabilities the DaemonSet adds (`capabilities: add:` in deploy/kubernetes/daemonset.yaml),
/// as `CAP_` names.
fn daemonset_capabilities() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut caps = Vec::new();
    let mut indent = None;
    for line in text.lines() {
        let t = line.trim_start();
        let depth = line.len() - t.len();
        if t.starts_with('#') {
            continue;
        }
        match indent {
            None if t == "add:" => indent = Some(depth),
            Some(d) if depth > d && t.starts_with("- ") => caps.push(format!("CAP_{}", t[2..].trim())),
            Some(d) if depth <= d => break,
            _ => {}
        }
    }
    assert!(!caps.is_empty(), "no capabilities.add in {}", path.display());
    caps
}

/// The capabilities a runtime grants by default (containers-common's list, which containerd's
/// matches): all dropped, as the DaemonSet's `drop: [ALL]` does. (buildah 1.28 ignores `--cap-add`
/// after `--cap-drop all`, so they are dropped one by one.)
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
    "CAP_NET_RAW",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
];

/// A container of an image archive in a private buildah storage; removed (with the storage) on
/// drop.
struct Container {
    dir: Dir,
    name: String,
}

impl Container {
    fn buildah(&self) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "2", "60", "buildah", "--root"])
            .arg(self.dir.0.join("storage"))
            .arg("--runroot")
            .arg(self.dir.0.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .env("CONTAINERS_STORAGE_CONF", self.dir.0.join("storage.conf"))
            .env("TMPDIR", self.dir.0.join("tmp"));
        c
    }

    fn from_archive(archive: &Path) -> Container {
        let dir = Dir::new();
        std::fs::create_dir_all(dir.0.join("tmp")).unwrap();
        std::fs::write(
            dir.0.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/runroot\"\n",
                dir.0.display()
            ),
        )
        .unwrap();
        let c = Container {
            dir,
            name: unique("npcap-"),
        };
        let out = c
            .buildah()
            .args(["from", "--name", &c.name])
            .arg(format!("docker-archive:{}", archive.display()))
            .output()
            .expect("buildah from");
        assert!(
            out.status.success(),
            "buildah from: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.buildah().args(["rm", &self.name]).output();
    }
}

/// netpath's image runs `netpath run` with only the DaemonSet's capabilities (the runtime's
/// default ones dropped, its default seccomp profile on), the node's bpffs and /run/netns mounted
/// as the DaemonSet mounts them, and the host network: it enters a pod-like namespace by its
/// /run/netns path (setns), attaches, and counts pings. runc through `buildah run` stands in for
/// containerd here (the lab's containerd runs the same image as a pod); what is checked is that
/// the image is complete and that these capabilities suffice.
#[test]
fn netpath_image_runs_with_the_daemonsets_capabilities() {
    require_root();
    let caps = daemonset_capabilities();
    assert!(
        caps.contains(&"CAP_BPF".to_string()) && caps.contains(&"CAP_NET_ADMIN".to_string()),
        "{caps:?}"
    );
    let dir = Dir::new();
    let bin = netpath_tests::netpath_bin();
    let spec = ImageSpec {
        reference: "netpath.local/netpath:captest".into(),
        files: image::programs_with_libraries(&[(&bin, "/usr/bin/netpath")]).unwrap(),
        entrypoint: vec!["/usr/bin/netpath".into()],
        ..ImageSpec::default()
    };
    let archive = image::build(&spec, &dir.0.join("build")).unwrap();
    let c = Container::from_archive(&archive);
    let pair = netpath_tests::Pair::new();
    let pins = netpath_tests::PinDir::new();

    let mut cmd = c.buildah();
    cmd.args(["run", "--isolation", "oci", "--network", "host"]);
    for d in DEFAULT_CAPS.iter().filter(|d| !caps.iter().any(|c| c == *d)) {
        cmd.args(["--cap-drop", d]);
    }
    for a in &caps {
        cmd.args(["--cap-add", a]);
    }
    cmd.args([
        "-v",
        "/sys/fs/bpf:/sys/fs/bpf:rw,rslave",
        "-v",
        "/run/netns:/run/netns:ro,rslave",
    ])
    .arg(&c.name)
    .args([
        "--",
        "/usr/bin/netpath",
        "run",
        "--netns",
        &pair.a.name,
        "--iface",
        "veth-a",
    ])
    .args([
        "--duration",
        "5s",
        "--interval",
        "1s",
        "-o",
        "json",
        "--metrics",
        "none",
    ])
    .args(["--socket", "none", "--pin-dir", pins.arg()])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("buildah run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[container] {l}");
            let _ = tx.send(l);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("attached to veth-a")) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("netpath in the container did not attach within 30 s: {seen:#?}");
            }
        }
    }
    pair.ping_from_a(5);
    let out = child.wait_with_output().expect("wait for the container");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "netpath in the container: {}\n{stdout}",
        out.status
    );
    // The last periodic line: veth-a's ICMP, both ways (5 requests out, 5 replies in).
    let last: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line from netpath: {stdout}"));
    let icmp = |dir: &str| -> u64 {
        last["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["iface"] == "veth-a" && r["class"] == "icmp" && r["direction"] == dir)
            .filter_map(|r| r["packets"].as_u64())
            .sum()
    };
    assert!(icmp("egress") >= 5 && icmp("ingress") >= 5, "{last}");
    eprintln!(
        "image: netpath ran with {caps:?}: icmp egress {}, ingress {}",
        icmp("egress"),
        icmp("ingress")
    );
}
