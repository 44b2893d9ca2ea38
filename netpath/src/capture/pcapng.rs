//! Records from the perf buffers, merged in time order, and the pcapng file they go to.
use std::{
    borrow::Cow,
    fs::File,
    io::{BufWriter, IsTerminal as _, Write},
    mem::size_of,
    os::fd::AsFd as _,
    time::Duration,
};

use aya::maps::{
    perf::{PerfEvent, PerfEventArrayBuffer},
    MapData,
};
use bytes::{BufMut as _, Bytes, BytesMut};
use netpath_common::{event::CaptureMeta, DIR_EGRESS};
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

use super::Target;
use crate::error::{Error, Result};

const VLAN_TAG_LEN: usize = 4;
const MAC_ADDRS_LEN: usize = 12;

/// epb_flags direction bits (pcapng: 01 inbound, 10 outbound).
const EPB_INBOUND: u32 = 0b01;
const EPB_OUTBOUND: u32 = 0b10;

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
pub fn frame_bytes(meta: &CaptureMeta, pkt: &[u8], snaplen: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(pkt.len() + VLAN_TAG_LEN);
    if meta.vlan_offloaded != 0 && pkt.len() >= MAC_ADDRS_LEN {
        out.put_slice(&pkt[..MAC_ADDRS_LEN]);
        out.put_u16(tpid(meta.vlan_proto));
        out.put_u16(meta.vlan_tci);
        out.put_slice(&pkt[MAC_ADDRS_LEN..]);
    } else {
        out.put_slice(pkt);
    }
    out.truncate(snaplen as usize);
    out.freeze()
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
pub(super) fn monotonic_ns() -> u64 {
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

pub(super) struct Record {
    ts: u64,
    seq: u64,
    interface_id: u32,
    flags: u32,
    original_len: u32,
    data: Bytes,
}

/// Decoded records not yet written, and what was lost.
pub(super) struct Collector<'a> {
    pub(super) targets: &'a [Target],
    pub(super) snaplen: u32,
    pub(super) pending: Vec<Record>,
    pub(super) seq: u64,
    pub(super) lost: u64,
    /// Records of interfaces we did not ask for (a stale filter entry) or too short to parse.
    pub(super) ignored: u64,
}

impl Collector<'_> {
    fn take(&mut self, head: &[u8], tail: &[u8]) {
        // A sample that wraps around the end of the buffer arrives in two pieces.
        let joined;
        let sample = if tail.is_empty() {
            head
        } else {
            let mut b = BytesMut::with_capacity(head.len() + tail.len());
            b.put_slice(head);
            b.put_slice(tail);
            joined = b.freeze();
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

    pub(super) fn drain(&mut self, bufs: &mut [PerfEventArrayBuffer<MapData>]) {
        for b in bufs.iter_mut() {
            b.for_each(|ev| match ev {
                PerfEvent::Sample { head, tail } => self.take(head, tail),
                PerfEvent::Lost { count } => self.lost += count,
            });
        }
    }

    /// Pending records in time order, those taken at or before `upto` (all with None).
    pub(super) fn ready(&mut self, upto: Option<u64>) -> Vec<Record> {
        self.pending.sort_by_key(|r| (r.ts, r.seq));
        let n = match upto {
            Some(t) => self.pending.partition_point(|r| r.ts <= t),
            None => self.pending.len(),
        };
        self.pending.drain(..n).collect()
    }
}

pub(super) struct Sink {
    w: PcapNgWriter<BufWriter<File>>,
    /// stdout: flush every packet so a reader sees it at once.
    flush_each: bool,
    wall_offset: i128,
}

/// Why the capture stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
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
    pub(super) fn create(write: &str, targets: &[Target], snaplen: u32) -> Result<Sink> {
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

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.w.get_mut().flush()
    }
}

/// Write `records` until `count` is reached; Some(stop) when the capture must end.
pub(super) fn emit(
    sink: &mut Sink,
    records: Vec<Record>,
    written: &mut u64,
    count: Option<u64>,
) -> Result<Option<Stop>> {
    for r in records {
        if count.is_some_and(|c| *written >= c) {
            return Ok(Some(Stop::Count));
        }
        match sink.write(&r) {
            Ok(()) => *written += 1,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Some(Stop::OutputClosed)),
            Err(e) => return Err(Error::io("writing the capture")(e)),
        }
    }
    Ok(count.is_some_and(|c| *written >= c).then_some(Stop::Count))
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
}
