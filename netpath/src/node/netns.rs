//! Entering a named network namespace. Only the network namespace is switched (setns with
//! CLONE_NEWNET), never the mount namespace: `ip netns exec` remounts /sys, which would hide the
//! bpffs pins under /sys/fs/bpf that netpath reads and writes.
use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

use crate::{
    defaults::NETNS_RUN_DIR,
    error::{Error, Result},
};

/// Names under /run/netns, sorted.
pub fn named() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(NETNS_RUN_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Move the calling thread into the named network namespace. Call it before spawning threads:
/// setns affects only the calling thread.
pub fn enter(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::BadArgument(format!("'{name}' is not a network namespace name")));
    }
    let path = PathBuf::from(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::UnknownNetns {
            name: name.to_string(),
            path: path.clone(),
            available: list_or_none(named()),
        },
        _ => Error::EnterNetns {
            name: name.to_string(),
            source: e,
        },
    })?;
    // SAFETY: setns on a valid fd we own; CLONE_NEWNET restricts it to a network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::EnterNetns {
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

pub(crate) fn list_or_none(v: Vec<String>) -> String {
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

/// The named namespace (under /run/netns) whose inode is `inode`: (name, path).
pub fn find_by_inode(inode: u64) -> Option<(String, String)> {
    named().into_iter().find_map(|n| {
        let path = PathBuf::from(NETNS_RUN_DIR).join(&n);
        (super::cri::nsfs_inode(&path) == Some(inode)).then(|| (n, path.to_string_lossy().into_owned()))
    })
}

/// Inode of the calling thread's network namespace.
pub fn own_inode() -> Option<u64> {
    super::cri::nsfs_inode(std::path::Path::new("/proc/thread-self/ns/net"))
}
