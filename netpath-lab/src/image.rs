//! Container images built offline: nothing is pulled (the base is `scratch`), and the host's
//! container storage is never touched. Used for the lab runtime's pause image (a static binary)
//! and for netpath's own image (`cargo xtask image`).
//!
//! Why it is built the way it is:
//! - buildah's storage lives in a directory the caller gives (`--root`/`--runroot`, and a private
//!   `storage.conf` through `CONTAINERS_STORAGE_CONF` so the host's own file, with its drivers,
//!   mount programs and additional image stores, is not read), with the `vfs` driver: it needs no
//!   overlay or fuse support, so it works in any container or VM the build runs in. Temporary
//!   files (`TMPDIR`, /var/tmp by default) go there too.
//! - The working container is committed straight into the archive transport, so no image is
//!   left in that storage either; the working container is removed even when a step fails.
//! - The default archive is `docker-archive`: its `manifest.json` carries the reference in
//!   `RepoTags`, which every loader reads the same way (`ctr images import`, `docker load`,
//!   `podman load`, `kind load image-archive`). containerd 1.6 also names an `oci-archive` (whose
//!   `index.json` buildah annotates with the full reference as `org.opencontainers.image.ref.name`)
//!   without `--base-name`, because its import keeps a ref name containing `/` or `:` as it is;
//!   [`ArchiveFormat::Oci`] builds that one.
//! - References must be fully qualified (`netpath.local/pause:dev`): a name without a registry
//!   domain is rewritten by every runtime (`pause:dev` becomes `docker.io/library/pause:dev`), so
//!   the name a pod spec uses would not be the one imported.
//! - Every command is bounded by `timeout`; an error names the command and carries its stderr.
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{
    process::{run_with, shell_join},
    LabError,
};

/// Upper bound for one engine command (a commit writes the whole image; vfs copies, no overlay).
pub const ENGINE_TIMEOUT_SECS: u64 = 180;

/// What builds the image: both are Debian packages, and both read the same storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    #[default]
    Buildah,
    Podman,
}

impl Engine {
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "buildah" => Some(Engine::Buildah),
            "podman" => Some(Engine::Podman),
            _ => None,
        }
    }

    /// The binary, which is also its Debian package's name.
    pub fn binary(self) -> &'static str {
        match self {
            Engine::Buildah => "buildah",
            Engine::Podman => "podman",
        }
    }
}

/// The archive written: see the module documentation for why docker-archive is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    #[default]
    Docker,
    Oci,
}

impl ArchiveFormat {
    /// containers/image's transport name.
    pub fn transport(self) -> &'static str {
        match self {
            ArchiveFormat::Docker => "docker-archive",
            ArchiveFormat::Oci => "oci-archive",
        }
    }

    /// The manifest and config format committed (`--format`).
    fn manifest(self) -> &'static str {
        match self {
            ArchiveFormat::Docker => "docker",
            ArchiveFormat::Oci => "oci",
        }
    }
}

/// One file of the image: a host file copied to an absolute path, owned by root, with `mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub host: PathBuf,
    pub path: String,
    pub mode: u32,
}

impl ImageFile {
    pub fn new(host: impl Into<PathBuf>, path: impl Into<String>, mode: u32) -> ImageFile {
        ImageFile {
            host: host.into(),
            path: path.into(),
            mode,
        }
    }
}

/// An image from `scratch`: its files and its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Fully qualified, with a tag: `netpath.local/netpath:dev`.
    pub reference: String,
    pub files: Vec<ImageFile>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    /// `USER` (e.g. `0:0` or `65534`); the runtime's default (root) when None.
    pub user: Option<String>,
    pub format: ArchiveFormat,
    /// Commands run inside the image before it is written (e.g. `["/usr/bin/netpath",
    /// "--version"]`), in an empty network namespace; a failure fails the build. Needs runc.
    pub checks: Vec<Vec<String>>,
}

impl ImageSpec {
    /// The reason the spec cannot be built, before any command runs.
    pub fn validate(&self) -> Result<(), LabError> {
        let bad = |r: String| Err(LabError::InvalidImage(r));
        validate_reference(&self.reference).map_err(LabError::InvalidImage)?;
        if self.entrypoint.is_empty() && self.cmd.is_empty() {
            return bad(format!("{}: neither an entrypoint nor a cmd", self.reference));
        }
        if self.files.is_empty() {
            return bad(format!(
                "{}: no files (an image from scratch needs at least its program)",
                self.reference
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            if !f.path.starts_with('/') || f.path.len() < 2 || f.path.ends_with('/') {
                return bad(format!(
                    "{}: image path {:?} is not an absolute file path",
                    self.reference, f.path
                ));
            }
            if f.path.split('/').any(|c| c == ".." || c == ".") {
                return bad(format!(
                    "{}: image path {:?} has a . or .. component",
                    self.reference, f.path
                ));
            }
            if f.mode > 0o7777 {
                return bad(format!(
                    "{}: mode {:o} of {} is not a permission mode",
                    self.reference, f.mode, f.path
                ));
            }
            if !seen.insert(f.path.as_str()) {
                return bad(format!("{}: {} is listed twice", self.reference, f.path));
            }
            if !f.host.is_file() {
                return bad(format!(
                    "{}: {} (for {}) is not a file",
                    self.reference,
                    f.host.display(),
                    f.path
                ));
            }
        }
        if self.checks.iter().any(Vec::is_empty) {
            return bad(format!("{}: an empty check command", self.reference));
        }
        for (k, v) in self.labels.iter().chain(&self.env) {
            if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
                return bad(format!(
                    "{}: label or env {k:?}={v:?} cannot be written",
                    self.reference
                ));
            }
        }
        Ok(())
    }
}

/// `registry.domain[:port]/path:tag`: a registry domain (with a `.` or a port, or `localhost`),
/// lower-case path components, and a tag.
fn validate_reference(r: &str) -> Result<(), String> {
    let Some((name, tag)) = r.rsplit_once(':').filter(|(n, t)| !t.contains('/') && !n.is_empty()) else {
        return Err(format!("reference {r:?} has no tag (e.g. netpath.local/netpath:dev)"));
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !tag_ok {
        return Err(format!("reference {r:?}: tag {tag:?} is not [A-Za-z0-9_.-]{{1,128}}"));
    }
    let mut parts = name.split('/');
    let domain = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() || !(domain.contains('.') || domain.contains(':') || domain == "localhost") {
        return Err(format!(
            "reference {r:?} has no registry domain: runtimes would rename it docker.io/library/...; \
             use e.g. netpath.local/{name}:{tag}"
        ));
    }
    for p in rest {
        let ok = !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Err(format!(
                "reference {r:?}: path component {p:?} is not lower-case [a-z0-9._-]"
            ));
        }
    }
    Ok(())
}

/// Where an engine keeps its state for one build, all under the caller's directory.
struct Storage {
    root: PathBuf,
    runroot: PathBuf,
    tmp: PathBuf,
    conf: PathBuf,
}

impl Storage {
    fn at(workdir: &Path) -> Result<Storage, LabError> {
        let s = Storage {
            root: workdir.join("storage"),
            runroot: workdir.join("runroot"),
            tmp: workdir.join("tmp"),
            conf: workdir.join("storage.conf"),
        };
        for d in [&s.root, &s.runroot, &s.tmp] {
            std::fs::create_dir_all(d).map_err(|source| LabError::Io {
                what: "creating",
                path: d.clone(),
                source,
            })?;
        }
        std::fs::write(&s.conf, storage_conf(&s.root, &s.runroot)).map_err(|source| LabError::Io {
            what: "writing",
            path: s.conf.clone(),
            source,
        })?;
        Ok(s)
    }

    /// The flags every engine command starts with (they win over any storage.conf).
    fn global_args(&self) -> Vec<String> {
        global_args(&self.root, &self.runroot)
    }

    fn env(&self) -> [(&'static str, &OsStr); 2] {
        [
            ("CONTAINERS_STORAGE_CONF", self.conf.as_os_str()),
            ("TMPDIR", self.tmp.as_os_str()),
        ]
    }
}

fn global_args(root: &Path, runroot: &Path) -> Vec<String> {
    vec![
        "--root".into(),
        root.display().to_string(),
        "--runroot".into(),
        runroot.display().to_string(),
        "--storage-driver".into(),
        "vfs".into(),
    ]
}

const PODMAN_CHECK_ULIMITS: [&str; 4] = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

/// podman keeps its own state beside the storage's (/run/libpod by default) and logs events to
/// the journal: both kept in the build's directory, and cgroups managed without systemd.
fn podman_args(tmp: &Path) -> Vec<String> {
    vec![
        "--tmpdir".into(),
        tmp.join("libpod").display().to_string(),
        "--events-backend".into(),
        "none".into(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
    ]
}

fn storage_conf(root: &Path, runroot: &Path) -> String {
    // TOML basic strings: paths are escaped as JSON strings are (the same escapes).
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string serialises");
    format!(
        "# Written by netpath-lab for one image build: the host's storage is never used.\n\
         [storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
        q(root),
        q(runroot)
    )
}

/// `buildah config` flags for the spec.
fn config_args(spec: &ImageSpec) -> Vec<String> {
    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    let mut a = Vec::new();
    if !spec.entrypoint.is_empty() {
        a.extend(["--entrypoint".into(), json(&spec.entrypoint)]);
    }
    if !spec.cmd.is_empty() {
        a.extend(["--cmd".into(), json(&spec.cmd)]);
    }
    for (k, v) in &spec.labels {
        a.extend(["--label".into(), format!("{k}={v}")]);
    }
    for (k, v) in &spec.env {
        a.extend(["--env".into(), format!("{k}={v}")]);
    }
    if let Some(u) = &spec.user {
        a.extend(["--user".into(), u.clone()]);
    }
    a
}

fn copy_args(container: &str, f: &ImageFile) -> Vec<String> {
    vec![
        "copy".into(),
        "--chown".into(),
        "0:0".into(),
        "--chmod".into(),
        format!("{:04o}", f.mode),
        container.into(),
        f.host.display().to_string(),
        f.path.clone(),
    ]
}

/// `TRANSPORT:PATH:REFERENCE`, the destination of a commit or push.
fn destination(spec: &ImageSpec, out: &Path) -> String {
    format!("{}:{}:{}", spec.format.transport(), out.display(), spec.reference)
}

fn commit_args(container: &str, spec: &ImageSpec, out: &Path) -> Vec<String> {
    vec![
        "commit".into(),
        "--quiet".into(),
        "--format".into(),
        spec.format.manifest().into(),
        container.into(),
        destination(spec, out),
    ]
}

/// The Containerfile podman builds (files are `f0`, `f1`, ... in the build context).
fn containerfile(spec: &ImageSpec) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let json = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    let mut s = String::from("FROM scratch\n");
    for (i, f) in spec.files.iter().enumerate() {
        s += &format!("COPY --chown=0:0 --chmod={:04o} f{i} {}\n", f.mode, q(&f.path));
    }
    for (k, v) in &spec.labels {
        s += &format!("LABEL {}={}\n", q(k), q(v));
    }
    for (k, v) in &spec.env {
        s += &format!("ENV {k}={}\n", q(v));
    }
    if let Some(u) = &spec.user {
        s += &format!("USER {u}\n");
    }
    if !spec.entrypoint.is_empty() {
        s += &format!("ENTRYPOINT {}\n", json(&spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        s += &format!("CMD {}\n", json(&spec.cmd));
    }
    s
}

/// One engine: its binary, storage flags and environment.
struct Runner<'a> {
    engine: Engine,
    storage: &'a Storage,
}

impl Runner<'_> {
    fn run(&self, args: &[String]) -> Result<String, LabError> {
        let mut all: Vec<&str> = vec![self.engine.binary()];
        let mut global = self.storage.global_args();
        if self.engine == Engine::Podman {
            global.extend(podman_args(&self.storage.tmp));
        }
        all.extend(global.iter().map(String::as_str));
        all.extend(args.iter().map(String::as_str));
        let out = run_with(&all, ENGINE_TIMEOUT_SECS, &self.storage.env(), None)?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// The working container; removed when dropped, whatever happened.
struct WorkingContainer<'a> {
    runner: &'a Runner<'a>,
    name: String,
}

impl Drop for WorkingContainer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.runner.run(&["rm".into(), self.name.clone()]) {
            eprintln!("image: could not remove working container {}: {e}", self.name);
        }
    }
}

static BUILDS: AtomicU32 = AtomicU32::new(0);

fn unique_name(what: &str) -> String {
    format!(
        "np-{what}-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Build `spec` with buildah, storage under `workdir`, into `workdir/<name>-<tag>.<format>.tar`.
pub fn build(spec: &ImageSpec, workdir: &Path) -> Result<PathBuf, LabError> {
    let out = workdir.join(archive_name(spec));
    build_to(spec, Engine::Buildah, workdir, &out)?;
    Ok(out)
}

/// `netpath.local/pause:dev` -> `pause-dev.docker.tar`.
fn archive_name(spec: &ImageSpec) -> String {
    let (name, tag) = spec.reference.rsplit_once(':').unwrap_or((&spec.reference, "latest"));
    let base = name.rsplit('/').next().unwrap_or(name);
    format!("{base}-{tag}.{}.tar", spec.format.manifest())
}

/// Build `spec` with `engine` (storage and temporary files under `workdir`) and write the archive
/// to `out` (replaced if it exists). Prints its progress on stderr.
pub fn build_to(spec: &ImageSpec, engine: Engine, workdir: &Path, out: &Path) -> Result<(), LabError> {
    spec.validate()?;
    let storage = Storage::at(workdir)?;
    let runner = Runner {
        engine,
        storage: &storage,
    };
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|source| LabError::Io {
            what: "creating",
            path: d.into(),
            source,
        })?;
    }
    // Both archive transports refuse to add to an existing file.
    match std::fs::remove_file(out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LabError::Io {
                what: "removing the old archive",
                path: out.into(),
                source: e,
            })
        }
        _ => {}
    }
    eprintln!(
        "image: building {} with {} (storage {}, vfs)",
        spec.reference,
        engine.binary(),
        workdir.display()
    );
    // Directories the engines make on the host whatever their storage says (containers/common's
    // network run directory, runc's default root): removed again when this build made them and
    // they are empty.
    let host_dirs = ["/run/containers/networks", "/run/containers", "/run/runc"];
    let existed: Vec<bool> = host_dirs.iter().map(|d| Path::new(d).exists()).collect();
    let built = match engine {
        Engine::Buildah => build_buildah(spec, &runner, out),
        Engine::Podman => build_podman(spec, &runner, workdir, out),
    };
    for (d, _) in host_dirs.iter().zip(existed).filter(|(_, e)| !e) {
        let _ = std::fs::remove_dir(d);
    }
    built?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "image: wrote {} ({}, {:.1} MB) as {}",
        out.display(),
        spec.format.transport(),
        size as f64 / 1e6,
        spec.reference
    );
    Ok(())
}

fn build_buildah(spec: &ImageSpec, runner: &Runner<'_>, out: &Path) -> Result<(), LabError> {
    if !spec.checks.is_empty() {
        // In a throwaway container of the same files: `buildah run` leaves its mount points and
        // an /etc/hostname behind, which the image must not carry.
        let check = working_container(spec, runner, false)?;
        for cmd in &spec.checks {
            eprintln!(
                "image: checking: {}",
                shell_join(&cmd.iter().map(String::as_str).collect::<Vec<_>>())
            );
            // runc in a new, empty network namespace: nothing on the host's network changes; its
            // state in the build's run root, not runc's default /run/runc.
            let runc_root = format!("root={}", runner.storage.runroot.join("runc").display());
            let mut run: Vec<String> = [
                "run",
                "--isolation",
                "oci",
                "--runtime-flag",
                &runc_root,
                "--network",
                "none",
                &check.name,
                "--",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            run.extend(cmd.iter().cloned());
            let said = runner.run(&run)?;
            eprintln!("image:   it printed: {}", said.lines().next().unwrap_or(""));
        }
    }
    let container = working_container(spec, runner, true)?;
    let mut config = vec!["config".to_string()];
    config.extend(config_args(spec));
    config.push(container.name.clone());
    runner.run(&config)?;
    runner.run(&commit_args(&container.name, spec, out))?;
    Ok(())
}

/// A container from scratch holding the spec's files (removed when dropped).
fn working_container<'a>(
    spec: &ImageSpec,
    runner: &'a Runner<'a>,
    say: bool,
) -> Result<WorkingContainer<'a>, LabError> {
    let name = unique_name("image");
    runner.run(&["from".into(), "--name".into(), name.clone(), "scratch".into()])?;
    let container = WorkingContainer { runner, name };
    for f in &spec.files {
        if say {
            eprintln!("image: + {} ({:04o}) from {}", f.path, f.mode, f.host.display());
        }
        runner.run(&copy_args(&container.name, f))?;
    }
    Ok(container)
}

fn build_podman(spec: &ImageSpec, runner: &Runner<'_>, workdir: &Path, out: &Path) -> Result<(), LabError> {
    let ctx = workdir.join(unique_name("context"));
    let result = (|| {
        std::fs::create_dir_all(&ctx).map_err(|source| LabError::Io {
            what: "creating",
            path: ctx.clone(),
            source,
        })?;
        for (i, f) in spec.files.iter().enumerate() {
            eprintln!("image: + {} ({:04o}) from {}", f.path, f.mode, f.host.display());
            let to = ctx.join(format!("f{i}"));
            std::fs::copy(&f.host, &to).map_err(|source| LabError::Io {
                what: "copying into the build context",
                path: f.host.clone(),
                source,
            })?;
        }
        let file = ctx.join("Containerfile");
        std::fs::write(&file, containerfile(spec)).map_err(|source| LabError::Io {
            what: "writing",
            path: file.clone(),
            source,
        })?;
        let s = |v: &str| v.to_string();
        runner.run(&[
            s("build"),
            s("--quiet"),
            s("--pull=never"),
            s("--isolation"),
            s("chroot"),
            s("--format"),
            s(spec.format.manifest()),
            s("--tag"),
            spec.reference.clone(),
            s("--file"),
            file.display().to_string(),
            ctx.display().to_string(),
        ])?;
        for cmd in spec.checks.iter().filter(|c| !c.is_empty()) {
            eprintln!("image: checking: {}", cmd.join(" "));
            let mut run = vec![s("run"), s("--rm"), s("--network"), s("none")];
            // Low limits: podman raises open files and processes to its own defaults, which a
            // build machine without CAP_SYS_RESOURCE (a container itself) refuses; neither
            // `--ulimit host` nor the caller's own values avoid that in podman 4.3, while lowering
            // is always allowed, and a check needs few of either.
            run.extend(PODMAN_CHECK_ULIMITS.iter().map(|u| u.to_string()));
            run.extend([s("--entrypoint"), cmd[0].clone(), spec.reference.clone()]);
            run.extend(cmd[1..].iter().cloned());
            runner.run(&run)?;
        }
        runner.run(&[
            s("save"),
            s("--quiet"),
            s("--format"),
            s(spec.format.transport()),
            s("--output"),
            out.display().to_string(),
            spec.reference.clone(),
        ])?;
        Ok(())
    })();
    // The image only lived in the private storage to be saved.
    let _ = runner.run(&["rmi".into(), "--force".into(), spec.reference.clone()]);
    let _ = std::fs::remove_dir_all(&ctx);
    result
}

// ---------------------------------------------------------------------------------------------
// Dynamically linked programs

/// Where the image's program lives, and its entrypoint.
pub const NETPATH_ENTRYPOINT: &str = "/usr/bin/netpath";
/// The tools netpath runs, at their Debian paths.
pub const NETPATH_TOOLS: &[&str] = &["/usr/sbin/ip", "/usr/sbin/bridge"];

/// The image's files: netpath, the tools, and every library any of them loads.
fn netpath_files(netpath: &Path, tools: &[&str]) -> Result<Vec<ImageFile>, LabError> {
    let mut programs = vec![(netpath, NETPATH_ENTRYPOINT)];
    for t in tools {
        if !Path::new(t).is_file() {
            return Err(LabError::InvalidImage(format!(
                "{t} is missing (iproute2): netpath runs it"
            )));
        }
        programs.push((Path::new(*t), *t));
    }
    programs_with_libraries(&programs)
}

/// iproute2's tools say their version with `-V`.
fn version_flag(program: &str) -> &'static str {
    if program == NETPATH_ENTRYPOINT {
        "--version"
    } else {
        "-V"
    }
}

/// netpath's image (`cargo xtask image`, and the DaemonSet test): the binary `netpath`, linked
/// dynamically against glibc, with the loader and the libraries `ldd` names copied from this
/// machine (the Debian release that linked it), and the iproute2 `tools` it runs (`ip` for a
/// foreign XDP program's id, `bridge` for the fast path's FDB) with theirs. `revision` is the
/// source revision label. Each program is checked to start inside the image before it is written.
pub fn netpath_spec(
    netpath: &Path,
    tools: &[&str],
    reference: &str,
    format: ArchiveFormat,
    revision: &str,
) -> Result<ImageSpec, LabError> {
    let labels: BTreeMap<String, String> = [
        ("org.opencontainers.image.title", "netpath".to_string()),
        (
            "org.opencontainers.image.description",
            "eBPF flow observatory for Kubernetes nodes (run as the DaemonSet in deploy/kubernetes)".into(),
        ),
        ("org.opencontainers.image.version", env!("CARGO_PKG_VERSION").into()),
        ("org.opencontainers.image.revision", revision.to_string()),
        ("org.opencontainers.image.licenses", "MIT OR Apache-2.0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(ImageSpec {
        reference: reference.into(),
        files: netpath_files(netpath, tools)?,
        entrypoint: vec![NETPATH_ENTRYPOINT.into()],
        // Without arguments the image describes itself; the DaemonSet gives `run ...`.
        cmd: vec!["--help".into()],
        labels,
        // netpath finds `ip` and `bridge` on PATH.
        env: [("PATH".to_string(), "/usr/sbin:/usr/bin".to_string())].into(),
        // Root in the container, with only the capabilities the pod spec grants (see the DaemonSet).
        user: Some("0:0".into()),
        format,
        // Proves the loader and libraries are complete: the programs start inside the image.
        checks: std::iter::once(NETPATH_ENTRYPOINT)
            .chain(tools.iter().copied())
            .map(|p| vec![p.to_string(), version_flag(p).into()])
            .collect(),
    })
}

/// The files an image needs to run dynamically linked programs: each program (host path, path in
/// the image, mode 0755), then every library `ldd` names for any of them, loader included, once,
/// at the path the loader looks for it (a host symlink resolved, so the file itself is copied)
/// with its host mode. A statically linked program adds no library.
pub fn programs_with_libraries(programs: &[(&Path, &str)]) -> Result<Vec<ImageFile>, LabError> {
    let mut files = Vec::new();
    let mut libs = std::collections::BTreeSet::new();
    for (host, path) in programs {
        files.push(ImageFile::new(*host, *path, 0o755));
        libs.extend(libraries(host)?);
    }
    for l in libs {
        let io = |what| {
            let path = PathBuf::from(&l);
            move |source| LabError::Io { what, path, source }
        };
        let host = std::fs::canonicalize(&l).map_err(io("resolving the library"))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(&host)
                .map_err(io("reading the library"))?
                .permissions()
                .mode()
                & 0o7777
        };
        files.push(ImageFile::new(host, l, mode));
    }
    Ok(files)
}

fn libraries(program: &Path) -> Result<Vec<String>, LabError> {
    let p = program.display().to_string();
    match run_with(&["ldd", &p], 20, &[], None) {
        Ok(out) => parse_ldd(&String::from_utf8_lossy(&out)).map_err(|reason| LabError::Parse {
            cmd: format!("ldd {p}"),
            reason,
        }),
        // ldd fails on a static program ("not a dynamic executable"): nothing to add.
        Err(LabError::Command { stderr, .. }) if stderr.contains("not a dynamic executable") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `ldd` output: the path of the loader and of every library.
fn parse_ldd(text: &str) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("linux-vdso") || line.starts_with("linux-gate") {
            continue; // in the kernel, not a file
        }
        if line.contains("not found") {
            return Err(format!("a library is missing on this machine: {line}"));
        }
        if line.contains("statically linked") {
            continue;
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => v.push(p.to_string()),
            _ => return Err(format!("cannot read the line {line:?}")),
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Reading an archive back

/// What an image archive says, read from its own files (for tests and for checking a build).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub format: ArchiveFormat,
    /// `RepoTags` of a docker-archive; the `org.opencontainers.image.ref.name` of an oci-archive.
    pub references: Vec<String>,
    pub architecture: String,
    pub os: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub user: String,
    /// Every entry of every layer, in order.
    pub files: Vec<LayerEntry>,
}

/// One entry of a layer, as `tar -tv` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Without a leading `./` or `/`.
    pub path: String,
    /// `-` file, `d` directory, `l` symlink, ...
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    pub owner: String,
    pub size: u64,
}

fn tar_read(archive: &Path, member: &str) -> Result<Vec<u8>, LabError> {
    let a = archive.display().to_string();
    run_with(&["tar", "-xOf", &a, member], 60, &[], None)
}

fn json_of(archive: &Path, member: &str) -> Result<serde_json::Value, LabError> {
    let bytes = tar_read(archive, member)?;
    serde_json::from_slice(&bytes).map_err(|e| LabError::Parse {
        cmd: format!("tar -xOf {} {member}", archive.display()),
        reason: e.to_string(),
    })
}

/// Read an image archive (docker-archive or oci-archive) back: references, config, files.
/// The strings of a JSON array (none for anything else).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

pub fn read_archive(archive: &Path) -> Result<ArchiveInfo, LabError> {
    let a = archive.display().to_string();
    let list = String::from_utf8_lossy(&run_with(&["tar", "-tf", &a], 60, &[], None)?).to_string();
    let members: Vec<&str> = list.lines().map(|l| l.trim_start_matches("./")).collect();
    let parse = |reason: String| LabError::Parse {
        cmd: format!("reading {}", archive.display()),
        reason,
    };
    let (format, references, config_member, layers) = if members.contains(&"oci-layout") {
        let index = json_of(archive, "index.json")?;
        let m = index["manifests"]
            .get(0)
            .ok_or_else(|| parse("index.json lists no manifest".into()))?;
        let references = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(|s| vec![s.to_string()])
            .unwrap_or_default();
        let blob = |d: &serde_json::Value| -> Result<String, LabError> {
            let d = d["digest"]
                .as_str()
                .ok_or_else(|| parse("a descriptor without a digest".into()))?;
            let (alg, hex) = d.split_once(':').ok_or_else(|| parse(format!("digest {d:?}")))?;
            Ok(format!("blobs/{alg}/{hex}"))
        };
        let manifest = json_of(archive, &blob(m)?)?;
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(blob)
            .collect::<Result<Vec<_>, _>>()?;
        (ArchiveFormat::Oci, references, blob(&manifest["config"])?, layers)
    } else if members.contains(&"manifest.json") {
        let m = json_of(archive, "manifest.json")?;
        let m = m.get(0).ok_or_else(|| parse("manifest.json lists no image".into()))?;
        let config = m["Config"]
            .as_str()
            .ok_or_else(|| parse("manifest.json has no Config".into()))?;
        (
            ArchiveFormat::Docker,
            strings(&m["RepoTags"]),
            config.to_string(),
            strings(&m["Layers"]),
        )
    } else {
        return Err(parse(
            "neither oci-layout nor manifest.json: not an image archive".into(),
        ));
    };
    let config = json_of(archive, &config_member)?;
    let c = &config["config"];
    let mut info = ArchiveInfo {
        format,
        references,
        architecture: config["architecture"].as_str().unwrap_or_default().into(),
        os: config["os"].as_str().unwrap_or_default().into(),
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        labels: c["Labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        env: strings(&c["Env"]),
        user: c["User"].as_str().unwrap_or_default().into(),
        files: Vec::new(),
    };
    for layer in layers {
        let bytes = tar_read(archive, &layer)?;
        // Compressed layers start with gzip's magic; buildah writes uncompressed ones.
        let z = bytes.starts_with(&[0x1f, 0x8b]);
        let args: &[&str] = if z {
            &["tar", "--numeric-owner", "-tvzf", "-"]
        } else {
            &["tar", "--numeric-owner", "-tvf", "-"]
        };
        let listing = run_with(args, 60, &[], Some(&bytes))?;
        for line in String::from_utf8_lossy(&listing).lines() {
            info.files
                .push(parse_tar_line(line).ok_or_else(|| parse(format!("tar -tv line {line:?}")))?);
        }
    }
    Ok(info)
}

/// `-rwxr-xr-x 0/0   17719784 2026-12-02 06:19 usr/bin/netpath` (GNU tar `-tv --numeric-owner`).
fn parse_tar_line(line: &str) -> Option<LayerEntry> {
    let mut f = line.split_whitespace();
    let perms = f.next()?;
    let owner = f.next()?.to_string();
    let size = f.next()?.parse().ok()?;
    let (_date, _time) = (f.next()?, f.next()?);
    let rest: Vec<&str> = f.collect();
    let mut path = rest.join(" ");
    if let Some((p, _target)) = path.split_once(" -> ") {
        path = p.to_string();
    }
    let path = path.trim_start_matches("./").trim_start_matches('/').to_string();
    let mut chars = perms.chars();
    let kind = chars.next()?;
    let bits: Vec<char> = chars.collect();
    if bits.len() != 9 || path.is_empty() {
        return None;
    }
    let mut mode = 0u32;
    for (i, c) in bits.iter().enumerate() {
        let on = !matches!(c, '-' | 'S' | 'T');
        if on {
            mode |= 1 << (8 - i);
        }
    }
    // setuid, setgid and sticky show in the execute positions.
    if matches!(bits[2], 's' | 'S') {
        mode |= 0o4000;
    }
    if matches!(bits[5], 's' | 'S') {
        mode |= 0o2000;
    }
    if matches!(bits[8], 't' | 'T') {
        mode |= 0o1000;
    }
    Some(LayerEntry {
        path,
        kind,
        mode,
        owner,
        size,
    })
}

/// Whether `engine`'s binary runs here (for skipping with a reason rather than failing late).
pub fn engine_available(engine: Engine) -> bool {
    Command::new(engine.binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_holds_netpath_its_loader_and_libraries() {
        // Any dynamically linked binaries show the shape: these are on every Debian machine.
        let s = netpath_spec(
            Path::new("/bin/sh"),
            &["/usr/bin/env", "/bin/ls"],
            "netpath.local/netpath:dev",
            ArchiveFormat::Docker,
            "abc",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.entrypoint, [NETPATH_ENTRYPOINT]);
        assert_eq!(s.files[0].path, NETPATH_ENTRYPOINT);
        let paths: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert!(
            paths.contains(&"/usr/bin/env") && paths.contains(&"/bin/ls"),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p.contains("ld-linux")), "no loader in {paths:?}");
        assert!(paths.iter().any(|p| p.ends_with("/libc.so.6")), "no libc in {paths:?}");
        // Each program must start inside the image before the archive is written.
        assert_eq!(s.checks.len(), 3, "{:?}", s.checks);
        assert_eq!(s.checks[0], [NETPATH_ENTRYPOINT, "--version"]);
        assert_eq!(s.checks[2], ["/bin/ls", "-V"]);
        // Host paths are the files themselves, not the symlinks that name them.
        for f in &s.files[1..] {
            assert!(!f.host.is_symlink(), "{}", f.host.display());
        }
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            reference: "netpath.local/pause:dev".into(),
            // A file that exists wherever the tests run.
            files: vec![ImageFile::new(
                env!("CARGO_MANIFEST_DIR").to_string() + "/Cargo.toml",
                "/pause",
                0o755,
            )],
            entrypoint: vec!["/pause".into()],
            cmd: vec!["-v".into(), "a b".into()],
            labels: [("org.opencontainers.image.title".to_string(), "pause".to_string())].into(),
            env: [("PATH".to_string(), "/usr/bin".to_string())].into(),
            user: Some("65534".into()),
            ..ImageSpec::default()
        }
    }

    #[test]
    fn references_must_be_qualified_and_tagged() {
        for ok in [
            "netpath.local/netpath:dev",
            "localhost/pause:3.9",
            "registry.example.com:5000/team/netpath:v1.2.3-rc_1",
        ] {
            assert!(validate_reference(ok).is_ok(), "{ok}: {:?}", validate_reference(ok));
        }
        for (bad, why) in [
            ("netpath:dev", "no registry domain"),
            ("netpath.local/netpath", "no tag"),
            ("netpath.local/Netpath:dev", "lower-case"),
            ("netpath.local/netpath:", "is not"),
            ("netpath.local/netpath:-x", "is not"),
            ("netpath.local//x:dev", "lower-case"),
            ("registry:5000/x", "no tag"),
        ] {
            let e = validate_reference(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn specs_are_checked_before_anything_runs() {
        assert!(spec().validate().is_ok(), "{:?}", spec().validate());
        let with = |f: &dyn Fn(&mut ImageSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(with(&|s| s.files[0].path = "pause".into()).contains("absolute"));
        assert!(with(&|s| s.files[0].path = "/usr/../pause".into()).contains(".."));
        assert!(with(&|s| s.files[0].host = "/nonexistent/x".into()).contains("not a file"));
        assert!(with(&|s| s.files.push(s.files[0].clone())).contains("twice"));
        assert!(with(&|s| s.files[0].mode = 0o10000).contains("permission"));
        assert!(with(&|s| {
            s.entrypoint.clear();
            s.cmd.clear();
        })
        .contains("neither"));
        assert!(with(&|s| s.files.clear()).contains("no files"));
        assert!(with(&|s| s.checks = vec![vec![]]).contains("empty check"));
        assert!(with(&|s| {
            s.labels.insert("a=b".into(), "c".into());
        })
        .contains("cannot be written"));
    }

    #[test]
    fn buildah_arguments() {
        let s = spec();
        assert_eq!(
            global_args(Path::new("/w/storage"), Path::new("/w/runroot")),
            [
                "--root",
                "/w/storage",
                "--runroot",
                "/w/runroot",
                "--storage-driver",
                "vfs"
            ]
        );
        assert_eq!(
            copy_args("np-image-1-0", &s.files[0])[..6],
            ["copy", "--chown", "0:0", "--chmod", "0755", "np-image-1-0"]
        );
        assert_eq!(copy_args("c", &s.files[0])[7], "/pause");
        assert_eq!(
            config_args(&s),
            [
                "--entrypoint",
                r#"["/pause"]"#,
                "--cmd",
                r#"["-v","a b"]"#,
                "--label",
                "org.opencontainers.image.title=pause",
                "--env",
                "PATH=/usr/bin",
                "--user",
                "65534"
            ]
        );
        assert_eq!(
            commit_args("c", &s, Path::new("/o/p.tar")),
            [
                "commit",
                "--quiet",
                "--format",
                "docker",
                "c",
                "docker-archive:/o/p.tar:netpath.local/pause:dev"
            ]
        );
        let oci = ImageSpec {
            format: ArchiveFormat::Oci,
            ..s.clone()
        };
        assert_eq!(
            commit_args("c", &oci, Path::new("/o/p.tar"))[3..],
            ["oci", "c", "oci-archive:/o/p.tar:netpath.local/pause:dev"]
        );
        assert_eq!(archive_name(&s), "pause-dev.docker.tar");
        assert_eq!(archive_name(&oci), "pause-dev.oci.tar");
    }

    #[test]
    fn private_storage_conf() {
        let c = storage_conf(Path::new("/w/st \"x\""), Path::new("/w/run"));
        assert!(c.contains("driver = \"vfs\""), "{c}");
        assert!(c.contains(r#"graphroot = "/w/st \"x\"""#), "{c}");
        assert!(c.contains(r#"runroot = "/w/run""#), "{c}");
    }

    #[test]
    fn podman_keeps_its_state_in_the_build_directory() {
        assert_eq!(
            podman_args(Path::new("/w/tmp")),
            [
                "--tmpdir",
                "/w/tmp/libpod",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs"
            ]
        );
    }

    #[test]
    fn podman_containerfile() {
        assert_eq!(
            containerfile(&spec()),
            "FROM scratch\n\
             COPY --chown=0:0 --chmod=0755 f0 \"/pause\"\n\
             LABEL \"org.opencontainers.image.title\"=\"pause\"\n\
             ENV PATH=\"/usr/bin\"\n\
             USER 65534\n\
             ENTRYPOINT [\"/pause\"]\n\
             CMD [\"-v\",\"a b\"]\n"
        );
    }

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd1b3f5000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0fe51bb000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0fe413e000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f0fe51ee000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        let e = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(e.contains("missing"), "{e}");
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        assert!(parse_ldd("\tgarbage\n").is_err());
    }

    #[test]
    fn dynamic_programs_bring_their_loader_and_libraries() {
        // Dynamically linked programs on every Debian machine.
        let f =
            programs_with_libraries(&[(Path::new("/bin/sh"), "/bin/sh"), (Path::new("/bin/ls"), "/bin/ls")]).unwrap();
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths[..2], ["/bin/sh", "/bin/ls"]);
        assert!(paths.iter().any(|p| p.contains("ld-linux")), "no loader in {paths:?}");
        // libc once, although both programs link it.
        assert_eq!(
            paths.iter().filter(|p| p.ends_with("/libc.so.6")).count(),
            1,
            "{paths:?}"
        );
        for f in &f[2..] {
            assert!(!f.host.is_symlink(), "{}", f.host.display());
            assert!(f.mode & 0o444 == 0o444, "{} mode {:o}", f.path, f.mode);
        }
        let s = ImageSpec {
            reference: "netpath.local/t:1".into(),
            files: f,
            entrypoint: vec!["/bin/sh".into()],
            ..ImageSpec::default()
        };
        s.validate().unwrap();
    }

    #[test]
    fn tar_listing_lines() {
        let e = parse_tar_line("-rwxr-xr-x 0/0        17719784 2026-12-02 06:19 usr/bin/netpath").unwrap();
        assert_eq!(
            e,
            LayerEntry {
                path: "usr/bin/netpath".into(),
                kind: '-',
                mode: 0o755,
                owner: "0/0".into(),
                size: 17719784
            }
        );
        let e = parse_tar_line("drwxr-xr-x 0/0 0 2026-12-02 06:19 ./usr/").unwrap();
        assert_eq!((e.kind, e.mode, e.path.as_str()), ('d', 0o755, "usr/"));
        let e = parse_tar_line("lrwxrwxrwx 0/0 0 2026-12-02 06:19 lib64 -> usr/lib64").unwrap();
        assert_eq!((e.kind, e.path.as_str()), ('l', "lib64"));
        let e = parse_tar_line("-rwsr-xr-T 0/0 1 2026-12-02 06:19 a b").unwrap();
        assert_eq!((e.mode, e.path.as_str()), (0o5754, "a b"));
        assert!(parse_tar_line("garbage").is_none());
    }
}
