//! One capture at a time: an exclusive flock on the pin directory (or on a lock file under
//! /run/netpath where bpffs cannot be flocked), naming the holder when refused.
use std::{
    fs::File,
    os::fd::{AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use crate::{
    datapath::pins::lock_holder,
    error::{Error, Result},
};

/// Where the lock lives when the pin directory cannot be flocked.
const FALLBACK_LOCK_DIR: &str = "/run/netpath";

/// An exclusive flock held for the capture's lifetime (released when the fd closes).
pub(super) struct CaptureLock {
    _fd: OwnedFd,
}

/// Non-blocking exclusive flock. A held lock is retried for ~100 ms: the daemon takes it for a
/// moment every few seconds to check for an abandoned capture, which must not look like a capture.
fn flock_nb(fd: &OwnedFd, retry: bool) -> std::io::Result<()> {
    let attempts = if retry { 5 } else { 1 };
    for attempt in 0..attempts {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || attempt + 1 == attempts {
            return Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    unreachable!("the loop returns")
}

impl CaptureLock {
    /// `retry`: wait out a momentary holder (the daemon's check) instead of failing at once.
    pub(super) fn acquire(pin_dir: &Path, retry: bool) -> Result<CaptureLock> {
        let dir = File::open(pin_dir).map_err(Error::io(format!("opening {}", pin_dir.display())))?;
        let fd = OwnedFd::from(dir);
        let (fd, path) = match flock_nb(&fd, retry) {
            Ok(()) => return Ok(CaptureLock { _fd: fd }),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => (fd, pin_dir.to_path_buf()),
            Err(_) => {
                // No flock on this file system: a lock file named after the pin directory.
                let name = pin_dir.to_string_lossy().trim_matches('/').replace('/', "_");
                let path = PathBuf::from(FALLBACK_LOCK_DIR).join(format!("capture-{name}.lock"));
                std::fs::create_dir_all(FALLBACK_LOCK_DIR)
                    .map_err(Error::io(format!("creating {FALLBACK_LOCK_DIR}")))?;
                let f = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(Error::io(format!("opening {}", path.display())))?;
                let fd = OwnedFd::from(f);
                match flock_nb(&fd, retry) {
                    Ok(()) => return Ok(CaptureLock { _fd: fd }),
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => (fd, path),
                    Err(e) => return Err(Error::io(format!("locking {}", path.display()))(e)),
                }
            }
        };
        drop(fd);
        let who = lock_holder(&path).map(|p| format!(" (pid {p})")).unwrap_or_default();
        Err(Error::CaptureBusy {
            holder: who,
            pin_dir: pin_dir.to_path_buf(),
        })
    }
}
