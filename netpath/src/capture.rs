//! `netpath capture`: copy packets from the running datapath into a pcapng file (or stdout), like
//! tcpdump, but seen at netpath's own hooks (XDP, TC ingress, TC egress) and filtered by netpath's
//! traffic classes and by pod.
//!
//! # How the packets get out of the kernel
//!
//! The XDP and TC programs read `NP_CAPTURE_CFG[0]` for every frame (one array lookup when capture
//! is off). When it is on and the frame matches (interface in `NP_CAPTURE_IFACES`, class in the
//! mask), they call `bpf_perf_event_output` on the `NP_CAPTURE` perf event array with a 32-byte
//! [`CaptureMeta`] and, in the upper flag bits (`BPF_F_CTXLEN_MASK`), the number of packet bytes
//! the kernel should append itself. That is the one way to copy packet bytes that works the same
//! from XDP and from TC, linear or paged skb alike, without a bounded copy loop the verifier has
//! to walk: xdpdump (xdp-tools) does it the same way. A ring buffer would need the bytes copied
//! by the program. The price: one perf buffer per CPU, which this reader polls and merges.
//!
//! Records from different CPUs arrive in different buffers, so they are merged by their
//! `bpf_ktime_get_ns` timestamp: a record is written once it is older than [`REORDER_WINDOW`]
//! (a program that took its timestamp has long finished its output by then), which keeps the
//! file in time order, as tcpdump's would be, with a few milliseconds of latency.
//!
//! A full perf buffer makes the kernel drop the record and later report a `PERF_RECORD_LOST`;
//! their sum is the "lost" count of the summary.
//!
//! # VLAN tags
//!
//! Before TC ingress the kernel moves the outer VLAN tag out of the frame into skb metadata
//! (`skb_vlan_untag`), so the bytes the kernel copies lack it; the record says so
//! (`vlan_offloaded`, with TCI and TPID). Without the tag the capture would show a different frame
//! than the one on the wire (and than tcpdump shows), and VLAN-aware filters in Wireshark would
//! miss it. So, as libpcap does with `tp_vlan_tci`, the 4-byte tag is put back after the two MAC
//! addresses and the captured length trimmed to the snapshot length again; the original length
//! from the kernel already counts the tag.
//!
//! # One capture at a time
//!
//! The filter is global state of the datapath (one config slot, one interface set) and the perf
//! event array holds one reader's buffer per CPU: a second reader would silently steal the
//! first's packets and rewrite its filter. So a capture holds an exclusive `flock` on the pin
//! directory for its lifetime (bpffs refuses regular files, so the lock is on the directory
//! itself; where flock is unsupported, on a lock file under /run/netpath) and a second one is
//! refused with the first's pid. On exit, error or panic a guard turns capture off first and then
//! removes the interfaces it added; a capture killed with SIGKILL cannot, and the next capture
//! (which then holds the lock, so nobody else owns that state) resets it before arming.
use std::{
    borrow::Cow,
    fs::File,
    io::{BufWriter, IsTerminal as _, Write},
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{
    perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer},
    Array, HashMap, Map, MapData,
};
use netpath_common::{
    class,
    event::{CaptureConfig, CaptureMeta},
    maps, DIR_EGRESS,
};
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
        PcapNgWriter,
    },
    DataLink, Endianness, PcapError,
};

use crate::{
    api::{self, ApiClient},
    caps,
    cli::CaptureArgs,
    error::{Error, Result},
    ifaces, netns,
};

/// How long a record waits for older records from other CPUs before it is written.
pub const REORDER_WINDOW: Duration = Duration::from_millis(10);

/// Size of each per-CPU perf buffer: 512 KiB (128 pages of 4 KiB). With the header page that is
/// exactly the default `perf_event_mlock_kb` (516 KiB per online CPU), so it needs no
/// CAP_IPC_LOCK, and it holds thousands of small records or 8 of the largest: a bulk transfer at
/// full snaplen can outrun the reader (the losses are counted); `-s 128` or `--kind` keeps up.
pub const PERF_BUFFER_BYTES: usize = 512 << 10;

/// Data pages per perf buffer: [`PERF_BUFFER_BYTES`] whatever the page size (a power of two).
fn perf_pages() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as usize } else { 4096 };
    (PERF_BUFFER_BYTES / page).max(1).next_power_of_two()
}

/// The most packet bytes one record can carry: a perf record's size is a u16 covering its 8-byte
/// header, the 4-byte raw size, the metadata and the bytes, padded to 8. Larger snaplens are
/// clamped to this in the kernel (the file still says the snaplen asked for).
pub const MAX_KERNEL_CAPLEN: u32 = 65_480;

/// Snapshot length for `-s 0` (and the default).
pub const DEFAULT_SNAPLEN: u32 = 65_535;

const VLAN_TAG_LEN: usize = 4;
const MAC_ADDRS_LEN: usize = 12;

/// epb_flags direction bits (pcapng: 01 inbound, 10 outbound).
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

/// Where the lock lives when the pin directory cannot be flocked.
const FALLBACK_LOCK_DIR: &str = "/run/netpath";

/// One interface to capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub ifindex: u32,
    /// "pod NS/NAME", "netns X": written as the interface description.
    pub description: Option<String>,
    /// Whether netpath's programs are attached, when known.
    pub attached: Option<bool>,
}

/// `--kind` names to the datapath's class bit mask (0 = every class).
pub fn class_mask(kinds: &[String]) -> Result<u32> {
    let mut mask = 0u32;
    for k in kinds {
        let k = k.trim();
        match class::from_name(k) {
            Some(c) => mask |= 1 << c,
            None => {
                return Err(Error::BadArgument(format!(
                    "unknown class '{k}' in --kind (classes: {})",
                    class::NAMES.join(", ")
                )))
            }
        }
    }
    Ok(mask)
}

/// The TPID of an offloaded tag. `__sk_buff.vlan_proto` is `skb->vlan_proto`, a __be16 the
/// program reads as a plain integer; accept host order too, in case that ever changes.
fn tpid(raw: u16) -> u16 {
    const KNOWN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
    let be = u16::from_be(raw);
    if KNOWN.contains(&be) {
        be
    } else if KNOWN.contains(&raw) {
        raw
    } else if raw == 0 {
        0x8100
    } else {
        be
    }
}

/// The frame as it was on the wire, up to `snaplen`: the packet bytes of a record with an
/// offloaded VLAN tag put back after the MAC addresses (as libpcap does), then trimmed.
pub fn frame_bytes(meta: &CaptureMeta, pkt: &[u8], snaplen: u32) -> Vec<u8> {
    let snaplen = snaplen as usize;
    let mut out = Vec::with_capacity(pkt.len() + VLAN_TAG_LEN);
    if meta.vlan_offloaded != 0 && pkt.len() >= MAC_ADDRS_LEN {
        out.extend_from_slice(&pkt[..MAC_ADDRS_LEN]);
        out.extend_from_slice(&tpid(meta.vlan_proto).to_be_bytes());
        out.extend_from_slice(&meta.vlan_tci.to_be_bytes());
        out.extend_from_slice(&pkt[MAC_ADDRS_LEN..]);
    } else {
        out.extend_from_slice(pkt);
    }
    out.truncate(snaplen);
    out
}

/// Split a perf sample into its metadata and packet bytes (at most `caplen`, at most what is there:
/// the raw sample is padded to 8 bytes).
fn parse_sample(sample: &[u8]) -> Option<(CaptureMeta, &[u8])> {
    if sample.len() < size_of::<CaptureMeta>() {
        return None;
    }
    // SAFETY: CaptureMeta is repr(C) plain integers; the slice holds at least its size.
    let meta: CaptureMeta = unsafe { std::ptr::read_unaligned(sample.as_ptr().cast()) };
    let rest = &sample[size_of::<CaptureMeta>()..];
    let n = (meta.caplen as usize).min(rest.len());
    Some((meta, &rest[..n]))
}

/// CLOCK_MONOTONIC (the clock of `bpf_ktime_get_ns`) in ns.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Wall time minus monotonic time, measured once (the middle of two monotonic reads around the
/// realtime read).
fn wall_offset_ns() -> i128 {
    let m1 = clock_ns(libc::CLOCK_MONOTONIC);
    let r = clock_ns(libc::CLOCK_REALTIME);
    let m2 = clock_ns(libc::CLOCK_MONOTONIC);
    r - (m1 + m2) / 2
}

// ---------------------------------------------------------------------------------------------
// Finding the interfaces

fn api_err(e: api::ApiError) -> Error {
    match e.exit_code() {
        2 => Error::BadArgument(e.to_string()),
        _ => Error::Other(e.to_string()),
    }
}

/// The daemon's `ifaces` rows, if a daemon answers on `socket`.
fn daemon_rows(socket: &Path) -> Result<Option<serde_json::Value>> {
    api::block_on(async {
        match ApiClient::connect(socket).await? {
            Some(c) => c.ifaces().await.map(Some),
            None => Ok(None),
        }
    })
    .map_err(api_err)?
    .map_err(api_err)
}

fn describe(row: &serde_json::Value) -> Option<String> {
    match (
        row["pod_namespace"].as_str(),
        row["pod"].as_str(),
        row["peer_netns"].as_str(),
    ) {
        (Some(ns), Some(p), Some(n)) => Some(format!("pod {ns}/{p} (netns {n})")),
        (Some(ns), Some(p), None) => Some(format!("pod {ns}/{p}")),
        (_, _, Some(n)) => Some(format!("netns {n}")),
        _ => None,
    }
}

/// `--pod` matches a pod name, `namespace/name`, or the network namespace behind the veth.
fn pod_matches(want: &str, row: &serde_json::Value) -> bool {
    let (ns, pod, netns) = (
        row["pod_namespace"].as_str(),
        row["pod"].as_str(),
        row["peer_netns"].as_str(),
    );
    pod == Some(want) || netns == Some(want) || matches!((ns, pod), (Some(ns), Some(p)) if format!("{ns}/{p}") == want)
}

/// Whether a row shows netpath's programs attached: the daemon's `mode`, or the kernel's list.
fn row_attached(row: &serde_json::Value) -> bool {
    !row["mode"].is_null()
        || row["programs"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["program"].as_str().is_some_and(|n| n.starts_with("netpath_")))
        })
}

/// The interfaces of `rows` (daemon or kernel view) behind `--pod want`.
pub fn pod_targets(want: &str, rows: &serde_json::Value) -> Result<Vec<Target>> {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let hits: Vec<&serde_json::Value> = rows.iter().filter(|r| pod_matches(want, r)).collect();
    if hits.is_empty() {
        let mut known: Vec<String> = rows
            .iter()
            .filter_map(
                |r| match (r["pod_namespace"].as_str(), r["pod"].as_str(), r["peer_netns"].as_str()) {
                    (Some(ns), Some(p), _) => Some(format!("{ns}/{p}")),
                    (_, _, Some(n)) => Some(format!("netns {n}")),
                    _ => None,
                },
            )
            .collect();
        known.sort();
        known.dedup();
        return Err(Error::BadArgument(format!(
            "no interface here leads to pod or network namespace '{want}'; known: {}",
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    // A bare name may be a pod in several Kubernetes namespaces: refuse to guess.
    let mut owners: Vec<String> = hits
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["pod_namespace"].as_str().unwrap_or("-"),
                r["pod"].as_str().unwrap_or("-")
            )
        })
        .collect();
    owners.sort();
    owners.dedup();
    if owners.len() > 1 && hits.iter().all(|r| r["pod"].as_str() == Some(want)) {
        return Err(Error::BadArgument(format!(
            "pod '{want}' is ambiguous: {}; give NAMESPACE/NAME",
            owners.join(", ")
        )));
    }
    let mut out: Vec<Target> = Vec::new();
    for r in hits {
        let (Some(name), Some(ifindex)) = (r["iface"].as_str(), r["ifindex"].as_u64()) else {
            continue;
        };
        if out.iter().any(|t| t.ifindex == ifindex as u32) {
            continue;
        }
        out.push(Target {
            name: name.to_string(),
            ifindex: ifindex as u32,
            description: describe(r),
            attached: Some(row_attached(r)),
        });
    }
    Ok(out)
}

/// Resolve `--iface` and `--pod` in the current (already entered) network namespace.
fn resolve_targets(args: &CaptureArgs) -> Result<Vec<Target>> {
    // The daemon knows pods and what it attached; ask it first, quietly: --iface works without it.
    let daemon = match daemon_rows(&args.socket) {
        Ok(rows) => rows,
        Err(e) if args.pod.is_some() => return Err(e),
        Err(_) => None,
    };
    let mut out: Vec<Target> = Vec::new();
    for name in &args.iface {
        let i = ifaces::resolve(name, args.netns.as_deref())?;
        if out.iter().any(|t| t.ifindex == i.ifindex) {
            continue;
        }
        let row = daemon.as_ref().and_then(|d| d.as_array()).and_then(|rows| {
            rows.iter()
                .find(|r| r["ifindex"].as_u64() == Some(i.ifindex as u64) && r["iface"] == i.name.as_str())
        });
        let (description, attached) = match row {
            Some(r) => (describe(r), Some(row_attached(r))),
            None => {
                let ours = crate::node::kernel_programs(&i.name)
                    .iter()
                    .any(|p| p["program"].as_str().is_some_and(|n| n.starts_with("netpath_")));
                // tcx and XDP only: a legacy clsact attachment is invisible here, so only "yes" is sure.
                (None, ours.then_some(true))
            }
        };
        out.push(Target {
            name: i.name,
            ifindex: i.ifindex,
            description,
            attached,
        });
    }
    if let Some(pod) = &args.pod {
        let rows = match daemon {
            Some(rows) => rows,
            None => api::block_on(crate::node::collect()).map_err(api_err)??,
        };
        for t in pod_targets(pod, &rows)? {
            if !out.iter().any(|o| o.ifindex == t.ifindex) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The lock

/// An exclusive flock held for the capture's lifetime (released when the fd closes).
struct CaptureLock {
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

/// The pid holding a flock on `path`, from /proc/locks (best effort).
fn lock_holder(path: &Path) -> Option<u32> {
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
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

impl CaptureLock {
    /// `retry`: wait out a momentary holder (the daemon's check) instead of failing at once.
    fn acquire(pin_dir: &Path, retry: bool) -> Result<CaptureLock> {
        let dir = File::open(pin_dir).map_err(|e| Error::Other(format!("opening {}: {e}", pin_dir.display())))?;
        let fd = OwnedFd::from(dir);
        let (fd, path) = match flock_nb(&fd, retry) {
            Ok(()) => return Ok(CaptureLock { _fd: fd }),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => (fd, pin_dir.to_path_buf()),
            Err(_) => {
                // No flock on this file system: a lock file named after the pin directory.
                let name = pin_dir.to_string_lossy().trim_matches('/').replace('/', "_");
                let path = PathBuf::from(FALLBACK_LOCK_DIR).join(format!("capture-{name}.lock"));
                std::fs::create_dir_all(FALLBACK_LOCK_DIR)
                    .map_err(|e| Error::Other(format!("creating {FALLBACK_LOCK_DIR}: {e}")))?;
                let f = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::Other(format!("opening {}: {e}", path.display())))?;
                let fd = OwnedFd::from(f);
                match flock_nb(&fd, retry) {
                    Ok(()) => return Ok(CaptureLock { _fd: fd }),
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => (fd, path),
                    Err(e) => return Err(Error::Other(format!("locking {}: {e}", path.display()))),
                }
            }
        };
        drop(fd);
        let who = lock_holder(&path).map(|p| format!(" (pid {p})")).unwrap_or_default();
        Err(Error::Other(format!(
            "another `netpath capture`{who} is already capturing from the datapath pinned at {}: only one capture at a time \
             is possible (the filter and the perf buffers are shared); stop it first",
            pin_dir.display()
        )))
    }
}

/// Switch off a capture left armed by a `netpath capture` that died without cleaning up (SIGKILL):
/// if no capture holds the lock, the filter must be off. The daemon calls this now and then, so an
/// abandoned capture does not make every frame pay for a copy nobody reads. Returns whether it
/// reset anything.
pub fn reset_abandoned(pin_dir: &Path) -> Result<bool> {
    let Ok(_lock) = CaptureLock::acquire(pin_dir, false) else {
        return Ok(false);
    };
    let mut ctl = Control {
        cfg: open_pinned(pin_dir, maps::CAPTURE_CFG)?
            .try_into()
            .map_err(map_err("NP_CAPTURE_CFG".into()))?,
        ifaces: open_pinned(pin_dir, maps::CAPTURE_IFACES)?
            .try_into()
            .map_err(map_err("NP_CAPTURE_IFACES".into()))?,
    };
    ctl.reset_stale()
}

// ---------------------------------------------------------------------------------------------
// The datapath's capture state

fn map_err(what: String) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { what, source }
}

fn open_pinned(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(map_err(format!("opening {}", path.display())))?;
    Map::from_map_data(data).map_err(map_err(format!("opening {}", path.display())))
}

struct Control {
    cfg: Array<MapData, CaptureConfig>,
    ifaces: HashMap<MapData, u32, u8>,
}

/// Capture switched on; switched off (config first, then the interface entries it added) when
/// dropped, whatever the way out.
struct Armed {
    ctl: Control,
    added: Vec<u32>,
    active: bool,
}

impl Control {
    /// State left behind by a capture that could not clean up (SIGKILL). Only call with the lock.
    fn reset_stale(&mut self) -> Result<bool> {
        let cur = self.cfg.get(&0, 0).map_err(map_err("reading NP_CAPTURE_CFG".into()))?;
        let keys: Vec<u32> = self.ifaces.keys().filter_map(|k| k.ok()).collect();
        let stale = cur.enabled != 0 || !keys.is_empty();
        if cur != CaptureConfig::default() {
            self.cfg
                .set(0, CaptureConfig::default(), 0)
                .map_err(map_err("writing NP_CAPTURE_CFG".into()))?;
        }
        for k in keys {
            let _ = self.ifaces.remove(&k);
        }
        Ok(stale)
    }

    /// Program the filter: interface entries first, the config with `enabled` last.
    fn arm(self, targets: &[Target], cfg: CaptureConfig) -> Result<Armed> {
        let mut armed = Armed {
            ctl: self,
            added: Vec::new(),
            active: true,
        };
        for t in targets {
            armed
                .ctl
                .ifaces
                .insert(t.ifindex, 1u8, 0)
                .map_err(map_err(format!("adding {} to NP_CAPTURE_IFACES", t.name)))?;
            armed.added.push(t.ifindex);
        }
        armed
            .ctl
            .cfg
            .set(0, cfg, 0)
            .map_err(map_err("writing NP_CAPTURE_CFG".into()))?;
        Ok(armed)
    }
}

impl Armed {
    fn disarm(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let off = self
            .ctl
            .cfg
            .set(0, CaptureConfig::default(), 0)
            .map_err(map_err("switching capture off in NP_CAPTURE_CFG".into()));
        for k in self.added.drain(..) {
            let _ = self.ctl.ifaces.remove(&k);
        }
        off
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Err(e) = self.disarm() {
            eprintln!("netpath capture: error: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records and the pcapng file

struct Record {
    ts: u64,
    seq: u64,
    interface_id: u32,
    flags: u32,
    original_len: u32,
    data: Vec<u8>,
}

/// Decoded records not yet written, and what was lost.
struct Collector<'a> {
    targets: &'a [Target],
    snaplen: u32,
    pending: Vec<Record>,
    seq: u64,
    lost: u64,
    /// Records of interfaces we did not ask for (a stale filter entry) or too short to parse.
    ignored: u64,
}

impl Collector<'_> {
    fn take(&mut self, head: &[u8], tail: &[u8]) {
        let joined;
        let sample = if tail.is_empty() {
            head
        } else {
            joined = [head, tail].concat();
            &joined[..]
        };
        let Some((meta, pkt)) = parse_sample(sample) else {
            self.ignored += 1;
            return;
        };
        let Some(interface_id) = self.targets.iter().position(|t| t.ifindex == meta.ifindex) else {
            self.ignored += 1;
            return;
        };
        let data = frame_bytes(&meta, pkt, self.snaplen);
        self.seq += 1;
        self.pending.push(Record {
            ts: meta.ts,
            seq: self.seq,
            interface_id: interface_id as u32,
            flags: if meta.direction == DIR_EGRESS {
                EPB_OUTBOUND
            } else {
                EPB_INBOUND
            },
            original_len: meta.len.max(data.len() as u32),
            data,
        });
    }

    fn drain(&mut self, bufs: &mut [PerfEventArrayBuffer<MapData>]) {
        for b in bufs.iter_mut() {
            b.for_each(|ev| match ev {
                PerfEvent::Sample { head, tail } => self.take(head, tail),
                PerfEvent::Lost { count } => self.lost += count,
            });
        }
    }

    /// Pending records in time order, those taken at or before `upto` (all with None).
    fn ready(&mut self, upto: Option<u64>) -> Vec<Record> {
        self.pending.sort_by_key(|r| (r.ts, r.seq));
        let n = match upto {
            Some(t) => self.pending.partition_point(|r| r.ts <= t),
            None => self.pending.len(),
        };
        self.pending.drain(..n).collect()
    }
}

struct Sink {
    w: PcapNgWriter<BufWriter<File>>,
    /// stdout: flush every packet so a reader sees it at once.
    flush_each: bool,
    wall_offset: i128,
}

/// Why the capture stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Count,
    Duration,
    Signal,
    OutputClosed,
}

fn pcap_err(e: PcapError) -> std::io::Error {
    match e {
        PcapError::IoError(e) => e,
        e => std::io::Error::other(e.to_string()),
    }
}

impl Sink {
    fn create(write: &str, targets: &[Target], snaplen: u32) -> Result<Sink> {
        let (file, flush_each) = if write == "-" {
            let out = std::io::stdout();
            if out.is_terminal() {
                return Err(Error::BadArgument(
                    "refusing to write pcapng to a terminal: pipe it (`-w - | tshark -r -`) or give -w FILE".into(),
                ));
            }
            (File::from(out.as_fd().try_clone_to_owned()?), true)
        } else {
            let f = File::create(write).map_err(|e| Error::BadArgument(format!("cannot create {write}: {e}")))?;
            (f, false)
        };
        let section = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "netpath {} capture",
                env!("CARGO_PKG_VERSION")
            )))],
            ..Default::default()
        };
        let mut w =
            PcapNgWriter::with_section_header(BufWriter::with_capacity(1 << 16, file), section).map_err(pcap_err)?;
        for t in targets {
            let mut options = vec![InterfaceDescriptionOption::IfName(Cow::Owned(t.name.clone()))];
            if let Some(d) = &t.description {
                options.push(InterfaceDescriptionOption::IfDescription(Cow::Owned(d.clone())));
            }
            // EPB timestamps are written in nanoseconds; the pcapng default is microseconds.
            options.push(InterfaceDescriptionOption::IfTsResol(9));
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen,
                options,
            })
            .map_err(pcap_err)?;
        }
        w.get_mut().flush()?;
        Ok(Sink {
            w,
            flush_each,
            wall_offset: wall_offset_ns(),
        })
    }

    fn write(&mut self, r: &Record) -> std::io::Result<()> {
        let wall = (r.ts as i128 + self.wall_offset).max(0) as u64;
        let epb = EnhancedPacketBlock {
            interface_id: r.interface_id,
            timestamp: Duration::from_nanos(wall),
            original_len: r.original_len,
            data: Cow::Borrowed(&r.data),
            options: vec![EnhancedPacketOption::Flags(r.flags)],
        };
        self.w.write_pcapng_block(epb).map_err(pcap_err)?;
        if self.flush_each {
            self.w.get_mut().flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.get_mut().flush()
    }
}

/// Write `records` until `count` is reached; Some(stop) when the capture must end.
fn emit(sink: &mut Sink, records: Vec<Record>, written: &mut u64, count: Option<u64>) -> Result<Option<Stop>> {
    for r in records {
        if count.is_some_and(|c| *written >= c) {
            return Ok(Some(Stop::Count));
        }
        match sink.write(&r) {
            Ok(()) => *written += 1,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Some(Stop::OutputClosed)),
            Err(e) => return Err(Error::Other(format!("writing the capture: {e}"))),
        }
    }
    Ok(count.is_some_and(|c| *written >= c).then_some(Stop::Count))
}

// ---------------------------------------------------------------------------------------------
// The command

/// A self-pipe the signal handlers write to, so poll wakes at once.
struct Signals {
    rx: std::os::unix::net::UnixStream,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    fn register() -> Result<Signals> {
        let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            ids.push(signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?);
        }
        Ok(Signals { rx, ids })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

pub fn run(args: &CaptureArgs) -> Result<()> {
    // Everything that needs no privileges first.
    let class_mask = class_mask(&args.kind)?;
    if args.iface.is_empty() && args.pod.is_none() {
        return Err(Error::BadArgument(
            "say where to capture: --iface IF (repeatable) or --pod POD (name, namespace/name, or the pod's netns)"
                .into(),
        ));
    }
    if args.count == Some(0) {
        return Err(Error::BadArgument("-c COUNT must be at least 1".into()));
    }
    if args.write.is_empty() {
        return Err(Error::BadArgument("-w needs a file name, or - for stdout".into()));
    }
    if args.duration == Some(Duration::ZERO) {
        return Err(Error::BadArgument("--duration must be longer than 0".into()));
    }
    let snaplen = if args.snaplen == 0 {
        DEFAULT_SNAPLEN
    } else {
        args.snaplen
    };
    caps::require_capture()?;
    if !args.pin_dir.join(maps::CAPTURE).exists() {
        return Err(Error::NotRunning {
            dir: args.pin_dir.clone(),
        });
    }
    if let Some(ns) = &args.netns {
        netns::enter(ns)?;
    }
    let targets = resolve_targets(args)?;
    if targets.is_empty() {
        return Err(Error::BadArgument("no interface to capture on".into()));
    }
    if targets.len() > 256 {
        return Err(Error::BadArgument(format!(
            "{} interfaces: the datapath's capture filter holds 256",
            targets.len()
        )));
    }

    // From here on we change things: lock, reset, open buffers, create the file, arm.
    let _lock = CaptureLock::acquire(&args.pin_dir, true)?;
    let mut ctl = Control {
        cfg: Array::try_from(open_pinned(&args.pin_dir, maps::CAPTURE_CFG)?)
            .map_err(map_err(maps::CAPTURE_CFG.into()))?,
        ifaces: HashMap::try_from(open_pinned(&args.pin_dir, maps::CAPTURE_IFACES)?)
            .map_err(map_err(maps::CAPTURE_IFACES.into()))?,
    };
    let mut perf: PerfEventArray<MapData> =
        PerfEventArray::try_from(open_pinned(&args.pin_dir, maps::CAPTURE)?).map_err(map_err(maps::CAPTURE.into()))?;
    if ctl.reset_stale()? {
        eprintln!("netpath capture: reset the capture filter a previous capture left behind (was it killed?)");
    }
    let cpus = aya::util::online_cpus().map_err(|(what, e)| Error::Other(format!("reading {what}: {e}")))?;
    let mut bufs = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        bufs.push(
            perf.open(cpu, Some(perf_pages()))
                .map_err(|e| Error::Other(format!("opening the perf buffer of CPU {cpu}: {e}")))?,
        );
    }
    let mut sink = Sink::create(&args.write, &targets, snaplen)?;
    let signals = Signals::register()?;
    let mut armed = ctl.arm(
        &targets,
        CaptureConfig {
            enabled: 1,
            snaplen: snaplen.min(MAX_KERNEL_CAPLEN),
            class_mask,
            iface_filter: 1,
        },
    )?;

    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let on: Vec<String> = targets
        .iter()
        .map(|t| match &t.description {
            Some(d) => format!("{} (ifindex {}, {d})", t.name, t.ifindex),
            None => format!("{} (ifindex {})", t.name, t.ifindex),
        })
        .collect();
    let kinds = if class_mask == 0 {
        "every class".to_string()
    } else {
        format!("classes {}", args.kind.join(","))
    };
    for t in targets.iter().filter(|t| t.attached == Some(false)) {
        eprintln!(
            "netpath capture: warning: netpath's programs are not attached to {}: nothing will be captured there",
            t.name
        );
    }
    eprintln!(
        "netpath capture: capturing on {}, snaplen {snaplen}, {kinds}",
        on.join(", ")
    );

    let mut col = Collector {
        targets: &targets,
        snaplen,
        pending: Vec::new(),
        seq: 0,
        lost: 0,
        ignored: 0,
    };
    let mut written = 0u64;
    let deadline = args.duration.map(|d| monotonic_ns() + d.as_nanos() as u64);
    let window = REORDER_WINDOW.as_nanos() as u64;
    let stdout_fd = (args.write == "-").then_some(libc::STDOUT_FILENO);
    let stop = loop {
        let now = monotonic_ns();
        if deadline.is_some_and(|d| now >= d) {
            break Stop::Duration;
        }
        let mut timeout_ms: i64 = if col.pending.is_empty() {
            200
        } else {
            (REORDER_WINDOW.as_millis() as i64).max(1)
        };
        if let Some(d) = deadline {
            timeout_ms = timeout_ms.min((d - now).div_ceil(1_000_000) as i64);
        }
        let mut fds: Vec<libc::pollfd> = bufs
            .iter()
            .map(|b| libc::pollfd {
                fd: b.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        fds.push(libc::pollfd {
            fd: signals.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        if let Some(fd) = stdout_fd {
            // No events asked: a pipe whose reader went away reports POLLERR anyway.
            fds.push(libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd of the given length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms as i32) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Other(format!("poll: {e}")));
            }
        }
        let sig = fds[bufs.len()].revents != 0;
        if stdout_fd.is_some() && fds[bufs.len() + 1].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            break Stop::OutputClosed;
        }
        // `now` before draining: every record not drained yet was stamped after now - window.
        let now = monotonic_ns();
        col.drain(&mut bufs);
        if let Some(s) = emit(
            &mut sink,
            col.ready(Some(now.saturating_sub(window))),
            &mut written,
            args.count,
        )? {
            break s;
        }
        if let Err(e) = sink.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break Stop::OutputClosed;
            }
            return Err(Error::Other(format!("writing the capture: {e}")));
        }
        if sig {
            break Stop::Signal;
        }
    };

    // Off first, then what was already copied: programs that saw `enabled` finish within
    // microseconds, so a short wait collects everything captured before the stop.
    let restore = armed.disarm();
    let mut stop = stop;
    if matches!(stop, Stop::Duration | Stop::Signal) {
        std::thread::sleep(Duration::from_millis(5));
        col.drain(&mut bufs);
        if emit(&mut sink, col.ready(None), &mut written, args.count)? == Some(Stop::OutputClosed) {
            stop = Stop::OutputClosed;
        }
    }
    if stop != Stop::OutputClosed {
        if let Err(e) = sink.flush() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(Error::Other(format!("writing the capture: {e}")));
            }
        }
    }
    drop(armed);
    restore?;
    // The kernel cannot see a full perf buffer (aya's output() drops the helper's result); the
    // reader can: add what it lost to the pinned counter `netpath status` and the metrics report.
    if col.lost > 0 {
        if let Err(e) = crate::maps::Maps::open_pinned(&args.pin_dir)
            .and_then(|mut m| m.add_diag(netpath_common::diag::CAPTURE_LOST, col.lost))
        {
            eprintln!("netpath capture: recording {} lost packets: {e}", col.lost);
        }
    }
    let why = match stop {
        Stop::Count => "count reached",
        Stop::Duration => "duration elapsed",
        Stop::Signal => "interrupted",
        Stop::OutputClosed => "output closed",
    };
    eprintln!(
        "netpath capture: {written} packet{} captured, {} lost (perf buffer full), on {} ({why})",
        if written == 1 { "" } else { "s" },
        col.lost,
        names.join(", ")
    );
    if col.ignored > 0 {
        eprintln!(
            "netpath capture: {} records ignored (another interface, or too short to decode)",
            col.ignored
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(caplen: u32, vlan: Option<(u16, u16)>) -> CaptureMeta {
        let (o, tci, proto) = match vlan {
            Some((tci, proto)) => (1, tci, proto),
            None => (0, 0, 0),
        };
        CaptureMeta {
            caplen,
            len: caplen + 4 * o as u32,
            vlan_offloaded: o,
            vlan_tci: tci,
            vlan_proto: proto,
            ..Default::default()
        }
    }

    #[test]
    fn offloaded_tag_goes_back_after_the_macs_and_the_snaplen_holds() {
        let pkt: Vec<u8> = (0u8..40).collect();
        // skb->vlan_proto is big endian: the program reads 0x8100 as 0x0081 on little endian.
        let raw = u16::from_ne_bytes([0x81, 0x00]);
        let f = frame_bytes(&meta(40, Some((42, raw))), &pkt, 65535);
        assert_eq!(f.len(), 44);
        assert_eq!(&f[..12], &pkt[..12]);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 42]);
        assert_eq!(&f[16..], &pkt[12..]);
        // Trimmed to the snaplen after the insertion, as libpcap does.
        assert_eq!(frame_bytes(&meta(40, Some((42, raw))), &pkt, 30).len(), 30);
        // Host-order TPIDs and 802.1ad.
        assert_eq!(
            &frame_bytes(&meta(40, Some((7, 0x88a8))), &pkt, 100)[12..16],
            &[0x88, 0xa8, 0, 7]
        );
        assert_eq!(frame_bytes(&meta(40, None), &pkt, 100), pkt);
        // Too short to hold the MACs: left alone.
        assert_eq!(frame_bytes(&meta(8, Some((1, raw))), &pkt[..8], 100), &pkt[..8]);
    }

    #[test]
    fn samples_are_bounded_by_caplen_and_the_buffer() {
        let m = CaptureMeta {
            caplen: 3,
            ifindex: 7,
            ..Default::default()
        };
        // SAFETY: CaptureMeta is plain old data.
        let bytes =
            unsafe { std::slice::from_raw_parts((&m as *const CaptureMeta).cast::<u8>(), size_of::<CaptureMeta>()) };
        let mut s = bytes.to_vec();
        s.extend_from_slice(&[1, 2, 3, 0, 0, 0, 0, 0]); // padded to 8
        let (got, pkt) = parse_sample(&s).unwrap();
        assert_eq!((got.ifindex, pkt), (7, &[1u8, 2, 3][..]));
        assert!(parse_sample(&s[..10]).is_none());
    }

    #[test]
    fn kinds_to_mask() {
        assert_eq!(class_mask(&[]).unwrap(), 0);
        assert_eq!(
            class_mask(&["icmp".into(), "udp".into()]).unwrap(),
            (1 << class::ICMP) | (1 << class::UDP)
        );
        let e = class_mask(&["icmp".into(), "bogus".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("'bogus'"), "{e}");
    }

    #[test]
    fn pods_by_name_namespace_and_netns() {
        let rows = serde_json::json!([
            { "iface": "veth1", "ifindex": 5, "pod": "tea", "pod_namespace": "default", "peer_netns": "cni-1", "mode": "tc" },
            { "iface": "veth2", "ifindex": 6, "pod": "tea", "pod_namespace": "prod", "peer_netns": "cni-2", "mode": null },
            { "iface": "veth3", "ifindex": 7, "pod": null, "pod_namespace": null, "peer_netns": "lab-b", "mode": "xdp" },
        ]);
        let t = pod_targets("default/tea", &rows).unwrap();
        assert_eq!((t.len(), t[0].ifindex, t[0].attached), (1, 5, Some(true)));
        assert_eq!(t[0].description.as_deref(), Some("pod default/tea (netns cni-1)"));
        assert_eq!(pod_targets("cni-2", &rows).unwrap()[0].attached, Some(false));
        assert_eq!(pod_targets("lab-b", &rows).unwrap()[0].name, "veth3");
        let e = pod_targets("tea", &rows).unwrap_err();
        assert!(
            e.to_string().contains("ambiguous") && e.to_string().contains("prod/tea"),
            "{e}"
        );
        let e = pod_targets("nope", &rows).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("'nope'") && e.to_string().contains("default/tea"),
            "{e}"
        );
    }
}
