//! The pin directory under bpffs: mounted when absent, checked against this build's map layout
//! before re-adopting, and removed by `netpath down` (only the names netpath creates).
use std::{
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};
use netpath_common::{
    diag,
    drop::{DropKey, DROP_TABLE_SIZE},
    event::CaptureConfig,
    maps,
    peer::{PeerCounters, PeerKey, PEER_TABLE_SIZE},
    Config, Counter, FlowKey, FlowValue, IfaceCounters, IfaceKey, IFACE_TABLE_SIZE,
};

use super::{attach, EVENTS_RING_BYTES};
use crate::{
    defaults::BPFFS_ROOT,
    error::{Error, Result},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

struct Expected {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn expected(flow_table_size: u32) -> [Expected; 9] {
    [
        Expected {
            name: maps::IFACE_STATS,
            map_type: MapType::PerCpuHash,
            key_size: size_of::<IfaceKey>() as u32,
            value_size: size_of::<IfaceCounters>() as u32,
            max_entries: IFACE_TABLE_SIZE,
        },
        Expected {
            name: maps::FLOWS,
            map_type: MapType::LruPerCpuHash,
            key_size: size_of::<FlowKey>() as u32,
            value_size: size_of::<FlowValue>() as u32,
            max_entries: flow_table_size,
        },
        Expected {
            name: maps::DIAG,
            map_type: MapType::PerCpuArray,
            key_size: 4,
            value_size: 8,
            max_entries: diag::COUNT,
        },
        Expected {
            name: maps::CONFIG,
            map_type: MapType::Array,
            key_size: 4,
            value_size: size_of::<Config>() as u32,
            max_entries: 1,
        },
        Expected {
            name: maps::EVENTS,
            map_type: MapType::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: EVENTS_RING_BYTES,
        },
        Expected {
            name: maps::CAPTURE_CFG,
            map_type: MapType::Array,
            key_size: 4,
            value_size: size_of::<CaptureConfig>() as u32,
            max_entries: 1,
        },
        Expected {
            name: maps::CAPTURE_IFACES,
            map_type: MapType::Hash,
            key_size: 4,
            value_size: 1,
            max_entries: 256,
        },
        Expected {
            name: maps::DROPS,
            map_type: MapType::LruPerCpuHash,
            key_size: size_of::<DropKey>() as u32,
            value_size: size_of::<Counter>() as u32,
            max_entries: DROP_TABLE_SIZE,
        },
        Expected {
            name: maps::VXLAN_PEERS,
            map_type: MapType::PerCpuHash,
            key_size: size_of::<PeerKey>() as u32,
            value_size: size_of::<PeerCounters>() as u32,
            max_entries: PEER_TABLE_SIZE,
        },
    ]
}

/// Make sure bpffs is mounted at /sys/fs/bpf (mount it if not) and `dir` exists in it.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if !is_bpffs(root) {
        let src = c"bpf";
        let target = c"/sys/fs/bpf";
        // SAFETY: plain mount(2) with static NUL-terminated strings.
        let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(Error::Bpffs {
                what: "mounting bpffs",
                path: root.into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    if !dir.starts_with(root) || !is_bpffs(dir.parent().unwrap_or(root)) {
        return Err(Error::BadArgument(format!(
            "--pin-dir {} must be inside a bpffs mount such as {BPFFS_ROOT}",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Bpffs {
        what: "creating pin directory",
        path: dir.into(),
        source: e,
    })
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Refuse to re-adopt pins whose layout differs from this build: the program would otherwise run
/// against maps of another shape.
pub(super) fn check_pins(dir: &Path, flow_table_size: u32) -> Result<()> {
    for e in expected(flow_table_size) {
        let path = dir.join(e.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| Error::Map {
            what: format!("reading pinned map {}", path.display()),
            source,
        })?;
        let mut diffs = Vec::new();
        match info.map_type() {
            Ok(t) if t == e.map_type => {}
            Ok(t) => diffs.push(format!("type {t:?}, expected {:?}", e.map_type)),
            Err(err) => diffs.push(format!("unknown type ({err})")),
        }
        for (what, got, want) in [
            ("key size", info.key_size(), e.key_size),
            ("value size", info.value_size(), e.value_size),
            ("max entries", info.max_entries(), e.max_entries),
        ] {
            if got != want {
                let hint = if e.name == maps::FLOWS && what == "max entries" {
                    format!(" (start with --flow-table-size {got} to keep it)")
                } else {
                    String::new()
                };
                diffs.push(format!("{what} {got}, expected {want}{hint}"));
            }
        }
        if !diffs.is_empty() {
            return Err(Error::IncompatiblePin {
                name: e.name,
                path,
                dir: dir.into(),
                detail: diffs.join("; "),
            });
        }
    }
    Ok(())
}

/// The directory a running daemon flocks inside its pin directory. Not the pin directory itself:
/// that one carries the capture lock, which the daemon takes too, now and then.
pub const DAEMON_LOCK: &str = "daemon";

/// The pin directory, held by one daemon for its lifetime (released when the fd closes, so also
/// when the daemon is killed): a second daemon on the same maps would count every packet twice.
pub struct PinLock {
    _fd: std::os::fd::OwnedFd,
}

fn flock(fd: &std::os::fd::OwnedFd, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(fd.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_lock_dir(dir: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(std::fs::File::open(dir.join(DAEMON_LOCK))?.into())
}

impl PinLock {
    /// Take `dir` (created, with bpffs mounted, if need be) for this daemon, or say who has it.
    pub fn acquire(dir: &Path) -> Result<PinLock> {
        ensure_bpffs(dir)?;
        let path = dir.join(DAEMON_LOCK);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Bpffs {
                    what: "creating the daemon lock",
                    path,
                    source,
                })
            }
        }
        let fd = open_lock_dir(dir).map_err(|source| Error::Bpffs {
            what: "opening the daemon lock",
            path: path.clone(),
            source,
        })?;
        // A `netpath down` checking for us holds it shared for an instant: wait that out.
        for attempt in 0..5 {
            match flock(&fd, libc::LOCK_EX) {
                Ok(()) => return Ok(PinLock { _fd: fd }),
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) && attempt < 4 => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => break,
                Err(source) => {
                    return Err(Error::Bpffs {
                        what: "locking the pin directory",
                        path,
                        source,
                    })
                }
            }
        }
        Err(Error::PinDirBusy {
            dir: dir.into(),
            holder: lock_holder(&path).map(|p| format!(" (pid {p})")).unwrap_or_default(),
        })
    }
}

/// Whether a daemon holds `dir` now, and its pid when /proc/locks says.
pub fn daemon_holder(dir: &Path) -> Option<Option<u32>> {
    let fd = open_lock_dir(dir).ok()?;
    match flock(&fd, libc::LOCK_SH) {
        Ok(()) => None,
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Some(lock_holder(&dir.join(DAEMON_LOCK))),
        Err(_) => None,
    }
}

/// The pid holding a flock on `path`, from /proc/locks (best effort).
pub(crate) fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::metadata(path).ok()?;
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(md.dev()),
        libc::minor(md.dev()),
        md.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // A waiter's line is `-> FLOCK ...`, one field further: only holders match here.
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// Every map netpath pins: counters, events, capture and rules.
pub fn pinned_maps() -> impl Iterator<Item = &'static str> {
    maps::ALL.into_iter().chain(netpath_common::rule::MAPS)
}

/// Remove netpath's pins from `dir` (only the names netpath creates), then the directory if empty.
/// Returns what was removed.
pub fn unpin_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    // Pinned links (`run --persist`): removing the pin detaches the program.
    let links = dir.join("links");
    if let Ok(rd) = std::fs::read_dir(&links) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if attach::parse_link_pin(&name).is_some() && attach::detach_pinned(&e.path()).is_ok() {
                removed.push(e.path());
            }
        }
        if std::fs::remove_dir(&links).is_ok() {
            removed.push(links);
        }
    }
    for name in pinned_maps() {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Bpffs {
                    what: "removing pin",
                    path: p,
                    source: e,
                })
            }
        }
    }
    if let Some(p) = super::names::remove(dir)? {
        removed.push(p);
    }
    let lock = dir.join(DAEMON_LOCK);
    if std::fs::remove_dir(&lock).is_ok() {
        removed.push(lock);
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => removed.push(dir.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Something else lives there: not ours to remove.
        Err(_) => {}
    }
    Ok(removed)
}
