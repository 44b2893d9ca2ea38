//! `cargo xtask image`: netpath's container image, built offline (nothing pulled: `FROM scratch`)
//! from the release binary, as an archive a runtime imports (`ctr images import`) or a registry
//! receives (`skopeo copy docker-archive:... docker://...`).
//!
//! The binary is linked dynamically against glibc, so the image carries the loader and the
//! libraries `ldd` names, copied from this machine (the same Debian release that linked the
//! binary, so the versions are the ones it was built against). A static glibc build
//! (`-C target-feature=+crt-static`) would need an explicit `--target`, i.e. a second full build of
//! every dependency into another target directory, and static glibc still loads NSS modules at
//! run time; musl would need a musl toolchain that Debian's stable Rust setup here lacks. The
//! iproute2 tools netpath runs (`ip` for a foreign XDP program's id, `bridge` for the fast path's
//! FDB) come along with their libraries; `iptables` does not (the doctor's FORWARD check then says
//! it is not installed, rather than reading the host's rules through a copied, mismatched binary).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};
use netpath_lab::image::{self, ArchiveFormat, Engine, ImageFile, ImageSpec};

/// Where the image's program lives, and its entrypoint.
pub const ENTRYPOINT: &str = "/usr/bin/netpath";
/// The tools netpath runs, at their Debian paths.
const TOOLS: &[&str] = &["/usr/sbin/ip", "/usr/sbin/bridge"];

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The archive to write.
    #[arg(long, value_name = "PATH", default_value = "target/image/netpath.tar")]
    out: PathBuf,
    /// The image reference (fully qualified, with a tag).
    #[arg(long, value_name = "REF", default_value = "netpath.local/netpath:dev")]
    tag: String,
    /// What builds it.
    #[arg(long, value_parser = ["buildah", "podman"], default_value = "buildah")]
    engine: String,
    /// docker-archive (`RepoTags`; read by ctr, docker, podman, kind) or oci-archive.
    #[arg(long, value_parser = ["docker", "oci"], default_value = "docker")]
    format: String,
}

impl ImageArgs {
    pub fn engine(&self) -> Engine {
        Engine::parse(&self.engine).expect("clap checked the value")
    }
}

/// The image's files: netpath, the tools, and every library any of them loads.
fn files(netpath: &Path, tools: &[&str]) -> Result<Vec<ImageFile>> {
    let mut programs = vec![(netpath, ENTRYPOINT)];
    for t in tools {
        if !Path::new(t).is_file() {
            bail!("{t} is missing (iproute2): netpath runs it");
        }
        programs.push((Path::new(*t), *t));
    }
    Ok(image::programs_with_libraries(&programs)?)
}

/// iproute2's tools say their version with `-V`.
fn version_flag(program: &str) -> &'static str {
    if program == ENTRYPOINT {
        "--version"
    } else {
        "-V"
    }
}

fn git_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::tools::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn spec(netpath: &Path, tools: &[&str], reference: &str, format: ArchiveFormat) -> Result<ImageSpec> {
    let labels: BTreeMap<String, String> = [
        ("org.opencontainers.image.title", "netpath".to_string()),
        (
            "org.opencontainers.image.description",
            "eBPF flow observatory for Kubernetes nodes (run as the DaemonSet in deploy/kubernetes)".into(),
        ),
        ("org.opencontainers.image.version", env!("CARGO_PKG_VERSION").into()),
        ("org.opencontainers.image.revision", git_revision()),
        ("org.opencontainers.image.licenses", "MIT OR Apache-2.0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(ImageSpec {
        reference: reference.into(),
        files: files(netpath, tools)?,
        entrypoint: vec![ENTRYPOINT.into()],
        // Without arguments the image describes itself; the DaemonSet gives `run ...`.
        cmd: vec!["--help".into()],
        labels,
        // netpath finds `ip` and `bridge` on PATH.
        env: [("PATH".to_string(), "/usr/sbin:/usr/bin".to_string())].into(),
        // Root in the container, with only the capabilities the pod spec grants (see the DaemonSet).
        user: Some("0:0".into()),
        format,
        // Proves the loader and libraries are complete: the programs start inside the image.
        checks: std::iter::once(ENTRYPOINT)
            .chain(tools.iter().copied())
            .map(|p| vec![p.to_string(), version_flag(p).into()])
            .collect(),
    })
}

/// Build the image from the release binary `netpath` and print what it holds.
pub fn run(netpath: &Path, args: &ImageArgs) -> Result<()> {
    let root = crate::tools::workspace_root();
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    let format = match args.format.as_str() {
        "oci" => ArchiveFormat::Oci,
        _ => ArchiveFormat::Docker,
    };
    let spec = spec(netpath, TOOLS, &args.tag, format)?;
    let work = crate::tools::target_dir().join("image").join("build");
    image::build_to(&spec, args.engine(), &work, &out)?;
    let info = image::read_archive(&out)?;
    let has_netpath = info
        .files
        .iter()
        .any(|f| f.path == ENTRYPOINT.trim_start_matches('/') && f.mode == 0o755);
    if !has_netpath || info.references != [args.tag.clone()] || info.entrypoint != [ENTRYPOINT] {
        bail!(
            "{} does not hold what was built: references {:?}, entrypoint {:?}, netpath present: {has_netpath}",
            out.display(),
            info.references,
            info.entrypoint
        );
    }
    let size: u64 = info.files.iter().map(|f| f.size).sum();
    eprintln!(
        "xtask image: {} -> {} ({} files, {:.1} MB unpacked; entrypoint {})",
        args.tag,
        out.display(),
        info.files.iter().filter(|f| f.kind == '-').count(),
        size as f64 / 1e6,
        ENTRYPOINT
    );
    eprintln!(
        "xtask image: load it with `ctr -n k8s.io images import {}`, or push it with \
         `skopeo copy {}:{} docker://REGISTRY/netpath:TAG`",
        out.display(),
        format.transport(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_holds_netpath_its_loader_and_libraries() {
        // Any dynamically linked binaries show the shape: these are on every Debian machine.
        let s = spec(
            Path::new("/bin/sh"),
            &["/usr/bin/env", "/bin/ls"],
            "netpath.local/netpath:dev",
            ArchiveFormat::Docker,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.entrypoint, [ENTRYPOINT]);
        assert_eq!(s.files[0].path, ENTRYPOINT);
        let paths: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert!(
            paths.contains(&"/usr/bin/env") && paths.contains(&"/bin/ls"),
            "{paths:?}"
        );
        assert!(paths.iter().any(|p| p.contains("ld-linux")), "no loader in {paths:?}");
        assert!(paths.iter().any(|p| p.ends_with("/libc.so.6")), "no libc in {paths:?}");
        // Each program must start inside the image before the archive is written.
        assert_eq!(s.checks.len(), 3, "{:?}", s.checks);
        assert_eq!(s.checks[0], [ENTRYPOINT, "--version"]);
        assert_eq!(s.checks[2], ["/bin/ls", "-V"]);
        // Host paths are the files themselves, not the symlinks that name them.
        for f in &s.files[1..] {
            assert!(!f.host.is_symlink(), "{}", f.host.display());
        }
    }
}
