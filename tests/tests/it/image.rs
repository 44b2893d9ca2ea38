//! `netpath_lab::image`: images built offline with buildah from a tiny static program, read back
//! from the archive itself (tar + JSON): the reference a runtime imports it under, its entrypoint,
//! its files. Importing into containerd is the lab's job (the lead's runtime tests), not this one's.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use netpath_lab::image::{self, ArchiveFormat, Engine, ImageFile, ImageSpec};
use netpath_tests::{require_root, TempDir};

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
    in_storage(dir, "containers")
}

/// `buildah LIST --quiet` (`containers`, `images`) of a build's private storage.
fn in_storage(dir: &Path, list: &str) -> String {
    let out = Command::new("buildah")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs", list, "--quiet"])
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .output()
        .unwrap_or_else(|e| panic!("run buildah {list}: {e}"));
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
    let dir = TempDir::new();
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
        // OCI's names for Rust's architectures.
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!((info.os.as_str(), info.architecture.as_str()), ("linux", arch));
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
        let images = in_storage(&work, "images");
        assert!(images.is_empty(), "images left in the build's storage: {images}");
    }
    assert_eq!(host_storage(), host_before, "the host's container storage changed");
}

/// The same image with podman (`cargo xtask image --engine podman`; the test task installs it).
#[test]
fn podman_builds_the_same_image() {
    require_root();
    assert!(
        image::engine_available(Engine::Podman),
        "podman is missing: `cargo xtask test` installs it"
    );
    let dir = TempDir::new();
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
    let dir = TempDir::new();
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
