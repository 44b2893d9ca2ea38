//! `netpath capture`: copy packets from the running datapath into a pcapng file (or stdout), like
//! tcpdump, but seen at netpath's own hooks (XDP, TC ingress, TC egress) and filtered by netpath's
//! traffic classes and by pod.
//!
//! # How the packets get out of the kernel
//!
//! The XDP and TC programs read `NP_CAPTURE_CFG[0]` for every frame (one array lookup when capture
//! is off). When it is on and the frame matches (interface in `NP_CAPTURE_IFACES`, class in the
//! mask), they call `bpf_perf_event_output` on the `NP_CAPTURE` perf event array with a 32-byte
//! [`CaptureMeta`](netpath_common::event::CaptureMeta) and, in the upper flag bits (`BPF_F_CTXLEN_MASK`), the number of packet bytes
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
use std::{os::fd::AsRawFd as _, path::PathBuf, time::Duration};

use aya::maps::{Array, HashMap, MapData, PerfEventArray};
use netpath_common::{class, event::CaptureConfig, maps};

pub use self::{control::reset_abandoned, pcapng::frame_bytes, targets::Target};
use self::{
    control::{map_err, open_pinned, Control},
    lock::CaptureLock,
    pcapng::{emit, monotonic_ns, Collector, Sink, Stop},
};
use crate::{
    caps,
    datapath::maps::Maps,
    error::{Error, Result},
    node::netns,
};

mod control;
mod lock;
mod pcapng;
pub mod targets;

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

/// What `netpath capture` was asked: where, what, how much, and into which file.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Interfaces by name (resolved in `netns`, or here).
    pub ifaces: Vec<String>,
    /// A pod (name, namespace/name, or the netns behind its veth).
    pub pod: Option<String>,
    /// Traffic class names; empty for every class.
    pub kinds: Vec<String>,
    /// Bytes kept per packet; 0 for [`DEFAULT_SNAPLEN`].
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// A pcapng file, or `-` for stdout.
    pub write: String,
    pub pin_dir: PathBuf,
    /// The daemon's control API (it names pods and knows what it attached).
    pub socket: PathBuf,
    pub netns: Option<String>,
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

/// `netpath capture`: validate, resolve the interfaces, take the lock, arm the filter, write
/// packets until the count, the duration, a signal or a closed output ends it, and switch capture
/// off again whatever the way out.
pub fn run(args: &CaptureOptions) -> Result<()> {
    // Everything that needs no privileges first.
    let class_mask = class_mask(&args.kinds)?;
    if args.ifaces.is_empty() && args.pod.is_none() {
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
    let targets = targets::resolve(&args.ifaces, args.pod.as_deref(), &args.socket, args.netns.as_deref())?;
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
        log::info!("reset the capture filter a previous capture left behind (was it killed?)");
    }
    let cpus = aya::util::online_cpus().map_err(|(what, e)| Error::io(format!("reading {what}"))(e))?;
    let mut bufs = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        bufs.push(
            perf.open(cpu, Some(perf_pages()))
                .map_err(|source| Error::PerfBuffer { cpu, source })?,
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
        format!("classes {}", args.kinds.join(","))
    };
    for t in targets.iter().filter(|t| t.attached == Some(false)) {
        log::warn!(
            "netpath's programs are not attached to {}: nothing will be captured there",
            t.name
        );
    }
    log::info!("capturing on {}, snaplen {snaplen}, {kinds}", on.join(", "));

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
                return Err(Error::io("poll")(e));
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
            return Err(Error::io("writing the capture")(e));
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
                return Err(Error::io("writing the capture")(e));
            }
        }
    }
    drop(armed);
    restore?;
    // The kernel cannot see a full perf buffer (aya's output() drops the helper's result); the
    // reader can: add what it lost to the pinned counter `netpath status` and the metrics report.
    if col.lost > 0 {
        if let Err(e) =
            Maps::open_pinned(&args.pin_dir).and_then(|mut m| m.add_diag(netpath_common::diag::CAPTURE_LOST, col.lost))
        {
            log::warn!("recording {} lost packets: {e}", col.lost);
        }
    }
    let why = match stop {
        Stop::Count => "count reached",
        Stop::Duration => "duration elapsed",
        Stop::Signal => "interrupted",
        Stop::OutputClosed => "output closed",
    };
    log::info!(
        "{written} packet{} captured, {} lost (perf buffer full), on {} ({why})",
        if written == 1 { "" } else { "s" },
        col.lost,
        names.join(", ")
    );
    if col.ignored > 0 {
        log::info!(
            "{} records ignored (another interface, or too short to decode)",
            col.ignored
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
