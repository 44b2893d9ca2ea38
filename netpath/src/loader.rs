//! Loading the embedded eBPF object: map sizes, pins under bpffs (so counters survive a restart),
//! and the runtime configuration the datapath reads.
use aya::{
    maps::{Array, MapInfo, MapType},
    Ebpf, EbpfLoader,
};
use netpath_common::{
    diag, event::CaptureConfig, maps, Config, FlowKey, FlowValue, IfaceCounters, IfaceKey, IFACE_TABLE_SIZE,
};

use crate::error::{Error, Result};

/// Size of the event ring buffer (as in the eBPF object).
pub const EVENTS_RING_BYTES: u32 = 1 << 20;
use std::{
    mem::size_of,
    path::{Path, PathBuf},
};

/// The eBPF object built by netpath/build.rs (aya-build) for this exact version of the shared types.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpath"));

pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netpath";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Program names fit the kernel's 15 characters, so bpftool and `ip link` show them whole.
pub const PROG_XDP: &str = "netpath_xdp";
pub const PROG_TC_INGRESS: &str = "netpath_tc_in";
pub const PROG_TC_EGRESS: &str = "netpath_tc_out";

/// aya-log-ebpf's level global in the object's `.rodata` (0xff, everything, as built).
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pin (or re-adopt) the maps here; None keeps them private to this process.
    pub pin_dir: Option<PathBuf>,
    pub flow_table_size: u32,
    pub config: Config,
    /// The most verbose aya-log level the datapath reports (its rare paths: refused inserts,
    /// failed pulls, rule actions), as `log::Level as u8`: 1 error, 2 warn, 3 info, 4 debug,
    /// 5 trace; 0 (the default) turns it off. Fixed at load time: the verifier prunes the
    /// disabled statements, so logging off costs the programs nothing. The records go to the
    /// object's `AYA_LOGS` ring buffer, for `aya_log::EbpfLogger` to drain.
    pub ebpf_log: u8,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: None,
            flow_table_size: netpath_common::DEFAULT_FLOW_TABLE_SIZE,
            config: Config::default(),
            ebpf_log: 0,
        }
    }
}

struct Expected {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn expected(flow_table_size: u32) -> [Expected; 7] {
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
fn check_pins(dir: &Path, flow_table_size: u32) -> Result<()> {
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

/// Load the object; with a pin directory, re-adopt the maps pinned there or create and pin them.
pub fn load(opts: &LoadOptions) -> Result<Ebpf> {
    if opts.flow_table_size == 0 {
        return Err(Error::BadArgument("--flow-table-size must be at least 1".into()));
    }
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(maps::FLOWS, opts.flow_table_size);
    loader.override_global(AYA_LOG_LEVEL, &opts.ebpf_log, true);
    let pins: Vec<(&'static str, PathBuf)>;
    if let Some(dir) = &opts.pin_dir {
        ensure_bpffs(dir)?;
        check_pins(dir, opts.flow_table_size)?;
        pins = pinned_maps().map(|n| (n, dir.join(n))).collect();
        for (name, path) in &pins {
            loader.map_pin_path(*name, path.as_path());
        }
    }
    let mut ebpf = loader.load(OBJECT)?;
    let mut config: Array<_, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG)
            .ok_or_else(|| Error::BadArgument(format!("map {} missing from object", maps::CONFIG)))?,
    )
    .map_err(|source| Error::Map {
        what: "opening config map".into(),
        source,
    })?;
    config.set(0, opts.config, 0).map_err(|source| Error::Map {
        what: "writing config".into(),
        source,
    })?;
    Ok(ebpf)
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
            if crate::attach::parse_link_pin(&name).is_some() && crate::attach::detach_pinned(&e.path()).is_ok() {
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
    match std::fs::remove_dir(dir) {
        Ok(()) => removed.push(dir.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Something else lives there: not ours to remove.
        Err(_) => {}
    }
    Ok(removed)
}
