//! `cargo xtask image`: netpath's container image, built offline (nothing pulled: `FROM scratch`)
//! from the release binary, as an archive a runtime imports (`ctr images import`) or a registry
//! receives (`skopeo copy docker-archive:... docker://...`).
//! What the image holds is `netpath_lab::image::netpath_spec` (the tests build the same image from
//! the binary under test).
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
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};
use netpath_lab::image::{self, ArchiveFormat, Engine};

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
    let spec = image::netpath_spec(netpath, image::NETPATH_TOOLS, &args.tag, format, &git_revision())?;
    let work = crate::tools::target_dir().join("image").join("build");
    image::build_to(&spec, args.engine(), &work, &out)?;
    let info = image::read_archive(&out)?;
    let has_netpath = info
        .files
        .iter()
        .any(|f| f.path == image::NETPATH_ENTRYPOINT.trim_start_matches('/') && f.mode == 0o755);
    if !has_netpath || info.references != [args.tag.clone()] || info.entrypoint != [image::NETPATH_ENTRYPOINT] {
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
        image::NETPATH_ENTRYPOINT
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
