//! TEMPORARY: replaced by the image builder of the deploy branch.
use std::path::{Path, PathBuf};

use crate::{process::run, LabError};

#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub reference: String,
    pub files: Vec<(PathBuf, PathBuf, u32)>,
    pub entrypoint: Vec<String>,
}

pub fn build(spec: &ImageSpec, workdir: &Path) -> Result<PathBuf, LabError> {
    let root = workdir.join("buildah-root");
    let runroot = workdir.join("buildah-run");
    let (r, rr) = (root.display().to_string(), runroot.display().to_string());
    let b = |args: &[&str]| {
        let mut v = vec!["buildah", "--root", &r, "--runroot", &rr, "--storage-driver", "vfs"];
        v.extend_from_slice(args);
        run(&v)
    };
    let c = b(&["from", "scratch"])?.trim().to_string();
    for (src, dst, _) in &spec.files {
        b(&["copy", &c, &src.display().to_string(), &dst.display().to_string()])?;
    }
    let ep = serde_json::to_string(&spec.entrypoint).unwrap();
    b(&["config", "--entrypoint", &ep, &c])?;
    b(&["commit", "-q", &c, &spec.reference])?;
    let out = workdir.join("image.tar");
    let _ = std::fs::remove_file(&out);
    b(&[
        "push",
        "-q",
        &spec.reference,
        &format!("docker-archive:{}:{}", out.display(), spec.reference),
    ])?;
    b(&["rm", &c])?;
    Ok(out)
}
