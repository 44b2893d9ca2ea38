//! `cargo xtask validate-manifests`: deploy/kubernetes checked offline against the Kubernetes API
//! schemas with kubernetes-validate (PyPI; it bundles the schemas, so validating needs no cluster
//! and no network). `--strict` rejects fields the API does not have, which is what a typo in a
//! manifest looks like (`kubectl apply` would drop or refuse them only on a cluster).
//!
//! The validator lives in a venv under target/, installed from the pinned requirements beside this
//! file (the only network use, on the first run). Before the manifests, a deliberately broken one
//! (`xtask/fixtures/broken-daemonset.yaml`: a misspelled field) must fail validation, so a
//! validator that accepts anything cannot let the check pass in silence.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::tools;

/// The Kubernetes versions validated against: the newest whose schemas the pinned validator
/// bundles, and one about two years older, which clusters still run.
pub const KUBERNETES_VERSIONS: &[&str] = &["1.37.0", "1.31.0"];
/// Must match the pin in `validate-requirements.txt`.
const VALIDATOR_VERSION: &str = "1.37.0";

fn manifests_dir() -> PathBuf {
    tools::workspace_root().join("deploy/kubernetes")
}

fn venv_dir() -> PathBuf {
    tools::target_dir().join("validate-venv")
}

/// The resources `kustomization.yaml` lists (its `resources:` block of `- FILE` lines).
fn kustomization_resources(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_end();
        if t.trim_start().starts_with('#') || t.trim().is_empty() {
            continue;
        }
        if !t.starts_with([' ', '-']) {
            inside = t == "resources:";
            continue;
        }
        if inside {
            if let Some(item) = t.trim_start().strip_prefix("- ") {
                out.push(item.trim().trim_matches(['"', '\'']).to_string());
            }
        }
    }
    out
}

/// Every manifest in `dir` but the kustomization, which must list exactly those.
fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    let k = dir.join("kustomization.yaml");
    let listed: BTreeSet<String> =
        kustomization_resources(&std::fs::read_to_string(&k).with_context(|| format!("reading {}", k.display()))?)
            .into_iter()
            .collect();
    let present: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if listed != present {
        bail!(
            "{} lists {:?} but the directory holds {:?}: `kubectl apply -k` would apply another set",
            k.display(),
            listed,
            present
        );
    }
    if files.is_empty() {
        bail!("no manifests in {}", dir.display());
    }
    Ok(files)
}

/// The venv's validator, created and installed when missing or of another version.
fn validator() -> Result<PathBuf> {
    let venv = venv_dir();
    let bin = venv.join("bin/kubernetes-validate");
    let version_ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VALIDATOR_VERSION));
    if version_ok {
        return Ok(bin);
    }
    // Debian's python3 (python3-venv is its venv module), not whatever else is first on PATH.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).exists())
        .expect("python3 is the last resort");
    eprintln!(
        "xtask validate-manifests: creating {} and installing kubernetes-validate {VALIDATOR_VERSION} from PyPI",
        venv.display()
    );
    let mut c = Command::new(python);
    c.args(["-m", "venv", "--clear"]).arg(&venv);
    crate::run_checked(c)?;
    let mut c = Command::new(venv.join("bin/pip"));
    c.args(["install", "--quiet", "--disable-pip-version-check", "--no-input", "-r"])
        .arg(tools::workspace_root().join("xtask/validate-requirements.txt"));
    crate::run_checked(c)?;
    Ok(bin)
}

/// `kubernetes-validate --strict -k VERSION FILES`: (success, output).
fn run_validator(bin: &Path, version: &str, files: &[PathBuf]) -> Result<(bool, String)> {
    let out = Command::new(bin)
        .args(["--strict", "--no-warn", "-k", version])
        .args(files)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

pub fn validate() -> Result<()> {
    let files = manifests(&manifests_dir())?;
    let bin = validator()?;
    let broken = tools::workspace_root().join("xtask/fixtures/broken-daemonset.yaml");
    for v in KUBERNETES_VERSIONS {
        let (ok, text) = run_validator(&bin, v, std::slice::from_ref(&broken))?;
        if ok || !text.contains("hostNetwrk") {
            bail!(
                "kubernetes-validate {v} did not reject {} (its misspelled hostNetwrk): the check \
                 cannot be trusted to fail:\n{text}",
                broken.display()
            );
        }
        let (ok, text) = run_validator(&bin, v, &files)?;
        eprint!("{text}");
        if !ok {
            bail!("deploy/kubernetes does not validate against Kubernetes {v} (--strict)");
        }
        eprintln!(
            "xtask validate-manifests: {} manifests valid for Kubernetes {v} (--strict); the broken fixture is rejected",
            files.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kustomization_resources_are_read() {
        let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 # comment\nresources:\n  - namespace.yaml\n  - \"daemonset.yaml\"\n\
                 # between\n  - service.yaml\nlabels:\n  - pairs:\n      app: x\n";
        assert_eq!(
            kustomization_resources(k),
            ["namespace.yaml", "daemonset.yaml", "service.yaml"]
        );
        assert!(kustomization_resources("kind: Kustomization\n").is_empty());
    }

    #[test]
    fn the_kustomization_lists_every_manifest() {
        let files = manifests(&manifests_dir()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "namespace.yaml",
            "daemonset.yaml",
            "serviceaccount.yaml",
            "service.yaml",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn a_kustomization_missing_a_manifest_is_an_error() {
        let dir = std::env::temp_dir().join(format!("xtask-kust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: Namespace\n").unwrap();
        std::fs::write(dir.join("b.yaml"), "kind: Namespace\n").unwrap();
        std::fs::write(dir.join("kustomization.yaml"), "resources:\n  - a.yaml\n").unwrap();
        let e = manifests(&dir).unwrap_err().to_string();
        std::fs::write(dir.join("kustomization.yaml"), "resources:\n  - a.yaml\n  - b.yaml\n").unwrap();
        let ok = manifests(&dir).map(|v| v.len());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("b.yaml"), "{e}");
        assert_eq!(ok.unwrap(), 2);
    }

    #[test]
    fn the_pinned_validator_is_the_one_checked_for() {
        let req = std::fs::read_to_string(tools::workspace_root().join("xtask/validate-requirements.txt")).unwrap();
        assert!(
            req.lines()
                .any(|l| l.trim() == format!("kubernetes-validate=={VALIDATOR_VERSION}")),
            "{req}"
        );
        // The newest version validated is the validator's own default: its schemas exist.
        assert_eq!(KUBERNETES_VERSIONS[0], VALIDATOR_VERSION);
    }
}
