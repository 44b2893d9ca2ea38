//! The IPFIX exporter (`netpath run --ipfix HOST:PORT[,HOST:PORT]`, RFC 7011 over UDP): the flow
//! table as IPFIX flow records, for the collector a site already runs (nfdump, pmacct, ntopng,
//! ElastiFlow, ...).
//!
//! # Records
//!
//! One record per flow table entry: a flow at one observation point (interface and direction), as
//! `netpath flows` lists them. A flow seen on a pod's veth, on the bridge and on the underlay is
//! three records, told apart by `ingressInterface`/`egressInterface` (the ifindex), `flowDirection`
//! and `interfaceName`. Counts are deltas (`octetDeltaCount`, `packetDeltaCount`: bytes are whole
//! frames, as netpath counts them) taken from the flow table: a flow still going is reported every
//! `--ipfix-interval` (active timeout, default 60 s); a flow ends when it has had no packet for
//! `--ipfix-idle-timeout` (default 30 s, as `netpath flows` says a flow ended) or saw FIN or RST,
//! and then its last delta is exported (`flowEndReason` idle timeout or end of flow). When the
//! daemon stops, every flow's remaining delta is exported (`forced end`), and so is the rest of a
//! flow whose interface went away (the daemon hands over its final counts). So the records of one
//! flow add up exactly to its count in the flow table. Flows already in the (pinned) table when the
//! exporter starts are counted from there (a daemon before it exported what came earlier). ARP and
//! other non-IP flows are not exported.
//!
//! Elements ([`encode::ie`] has them all): the IANA ones (octetDeltaCount, packetDeltaCount,
//! flowStart/EndMilliseconds, source/destinationIPv4/IPv6Address, source/destinationTransportPort,
//! protocolIdentifier, tcpControlBits, icmpTypeCodeIPv4/IPv6, ingress/egressInterface,
//! flowDirection, vlanId, flowEndReason, interfaceName), and for a VXLAN flow the VNI as IANA
//! `layer2SegmentId` (351; RFC 7133: segment type 0x01 VxLAN in the top octet, the VNI below) with
//! the inner flow in the standard address and port elements, as `netpath flows` keys it. The
//! underlay (outer) addresses and the pod's name and namespace have no IANA element: they are
//! netpath's enterprise-specific elements under [`encode::NETPATH_PEN`], a **placeholder**
//! enterprise number (see there and the README's IPFIX section).
//!
//! # Transport
//!
//! UDP, one connected socket per collector, created before the daemon enters `--netns`: the
//! export leaves from the host's namespace, as the metrics listener. Templates are sent at start
//! and again every template interval (RFC 7011 8.4). Sequence numbers count the data records of
//! each transport session (RFC 7011 3.1). Sends never wait: the socket is non-blocking and a send
//! that fails (refused, unreachable, buffer full) is counted by kind and the records are gone, as
//! a datagram lost on the wire is (the collector sees the gap in the sequence numbers). The
//! exporter runs on its own thread, reading the flow table as the control API does: the datapath
//! never waits for it, and the event loop, the API and the metrics wait only as long as one read
//! of the flow table (the maps lock they share), never for a send.
pub mod encode;

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use netpath_common::{
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6},
    FlowKey, FlowValue, DIR_INGRESS, ENCAP_VXLAN, FAMILY_IPV4, FAMILY_IPV6,
};

use self::encode::{end_reason, FlowRecord, MessageBuilder, MAX_MESSAGE};
use crate::model::{
    flows::Clock,
    ipfix::{IpfixCollector, IpfixStatus},
    owner::Owner,
};

/// The default active timeout (`--ipfix-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The default idle timeout (`--ipfix-idle-timeout`): when `netpath flows` says a flow ended.
pub const DEFAULT_IDLE_TIMEOUT: Duration = crate::model::flows::FLOW_IDLE;
/// The default template re-send period (`--ipfix-template-interval`).
pub const DEFAULT_TEMPLATE_INTERVAL: Duration = Duration::from_secs(60);

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

#[derive(Debug, thiserror::Error)]
pub enum IpfixError {
    #[error("--ipfix: '{0}' is not HOST:PORT (e.g. 192.0.2.10:4739 or [2001:db8::1]:4739 or collector.example:4739)")]
    BadAddress(String),
    #[error("--ipfix: '{0}' does not resolve: {1}")]
    Unresolved(String, String),
    #[error("--ipfix: port 0 of '{0}' is not a port")]
    PortZero(String),
    #[error("--ipfix: no collector given")]
    Empty,
    #[error("--ipfix: {what} must be at least 1s (IPFIX timeouts are whole seconds)")]
    ShortDuration { what: &'static str },
    #[error("IPFIX exporter: opening a UDP socket for {addr}: {source}")]
    Socket { addr: SocketAddr, source: io::Error },
}

impl From<IpfixError> for crate::Error {
    fn from(e: IpfixError) -> crate::Error {
        let exit_code = match e {
            IpfixError::Socket { .. } => 1,
            _ => 2,
        };
        crate::Error::Service(crate::error::ServiceError {
            exit_code,
            error: Box::new(e),
        })
    }
}

/// `--ipfix`: `HOST:PORT[,HOST:PORT]` (also repeated), each resolved now. Bad input is an error
/// naming the value.
pub fn parse_collectors(values: &[String]) -> Result<Vec<SocketAddr>, IpfixError> {
    use std::net::ToSocketAddrs as _;
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if v.is_empty() {
            continue;
        }
        let addr = match v.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let (host, port) = v.rsplit_once(':').ok_or_else(|| IpfixError::BadAddress(v.into()))?;
                if host.is_empty() || host.contains(':') || port.parse::<u16>().is_err() {
                    return Err(IpfixError::BadAddress(v.into()));
                }
                (host, port.parse::<u16>().unwrap_or(0))
                    .to_socket_addrs()
                    .map_err(|e| IpfixError::Unresolved(v.into(), e.to_string()))?
                    .next()
                    .ok_or_else(|| IpfixError::Unresolved(v.into(), "no address".into()))?
            }
        };
        if addr.port() == 0 {
            return Err(IpfixError::PortZero(v.into()));
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() && !values.is_empty() {
        return Err(IpfixError::Empty);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfixOptions {
    pub collectors: Vec<SocketAddr>,
    /// Active timeout.
    pub interval: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    pub template_interval: Duration,
    /// The Observation Domain ID of every message.
    pub domain: u32,
}

impl Default for IpfixOptions {
    fn default() -> Self {
        IpfixOptions {
            collectors: Vec::new(),
            interval: DEFAULT_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            template_interval: DEFAULT_TEMPLATE_INTERVAL,
            domain: 0,
        }
    }
}

impl IpfixOptions {
    pub fn validate(&self) -> Result<(), IpfixError> {
        for (what, d) in [
            ("--ipfix-interval", self.interval),
            ("--ipfix-idle-timeout", self.idle_timeout),
            ("--ipfix-template-interval", self.template_interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err(IpfixError::ShortDuration { what });
            }
        }
        Ok(())
    }
}

/// One flow table entry with the names the daemon knows for its interface.
#[derive(Debug, Clone)]
pub struct FlowSample {
    pub key: FlowKey,
    pub value: FlowValue,
    pub iface: String,
    pub owner: Owner,
}

/// Where the exporter reads the flow table (the daemon: the pinned map and its view of links).
pub trait FlowSource: Send + Sync + 'static {
    fn sample(&self) -> Result<Vec<FlowSample>, String>;
    /// Flows removed from the table since the last call (their interface went away), with their
    /// final counts: their last records go out with them instead of being counted as vanished.
    fn take_departed(&self) -> Vec<FlowSample> {
        Vec::new()
    }
}

/// What the exporter remembers of a flow: the counts exported so far.
#[derive(Debug, Clone, Copy)]
struct Seen {
    packets: u64,
    bytes: u64,
    first_seen: u64,
    /// When its last record went out (CLOCK_MONOTONIC ns), or when the exporter first saw it.
    exported_at: u64,
    /// Its end was exported (or it had ended when the exporter started).
    ended: bool,
}

/// Flow table snapshots in, delta records out.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<FlowKey, Seen>,
    interval_ns: u64,
    idle_ns: u64,
    /// Flows whose end was exported, and those that vanished first.
    pub flows_exported: u64,
    pub flows_vanished: u64,
}

fn is_ip(k: &FlowKey) -> bool {
    matches!(k.family, FAMILY_IPV4 | FAMILY_IPV6)
}

fn ip(family: u8, a: &[u8; 16]) -> IpAddr {
    match family {
        FAMILY_IPV6 => Ipv6Addr::from(*a).into(),
        _ => Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(),
    }
}

fn wall_ms(clock: &Clock, mono_ns: u64) -> u64 {
    clock
        .wall(mono_ns)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The record of `s` carrying `packets`/`octets`.
pub fn record(s: &FlowSample, packets: u64, octets: u64, reason: u8, clock: &Clock) -> FlowRecord {
    let (k, v) = (&s.key, &s.value);
    let icmp = matches!(
        (k.family, k.proto),
        (FAMILY_IPV4, IPPROTO_ICMP) | (FAMILY_IPV6, IPPROTO_ICMPV6)
    );
    let ingress = k.direction == DIR_INGRESS;
    let tunnelled = k.encap == ENCAP_VXLAN && v.outer_family != 0;
    FlowRecord {
        octets,
        packets,
        start_ms: wall_ms(clock, v.first_seen),
        end_ms: wall_ms(clock, v.last_seen),
        src: ip(k.family, &k.src),
        dst: ip(k.family, &k.dst),
        // ICMP's `sport` is the echo identifier, not a port.
        sport: if icmp { 0 } else { k.sport },
        dport: if icmp { 0 } else { k.dport },
        proto: k.proto,
        tcp_flags: v.tcp_flags,
        icmp_type_code: if icmp {
            u16::from(k.icmp_type) << 8 | u16::from(k.icmp_code)
        } else {
            0
        },
        ingress_interface: if ingress { k.ifindex } else { 0 },
        egress_interface: if ingress { 0 } else { k.ifindex },
        direction: k.direction,
        vlan: k.vlan,
        end_reason: reason,
        vni: if tunnelled { k.vni } else { 0 },
        underlay: tunnelled.then(|| (ip(v.outer_family, &v.outer_src), ip(v.outer_family, &v.outer_dst))),
        iface: s.iface.clone(),
        pod: s.owner.pod_label().unwrap_or_default().to_string(),
        pod_namespace: s.owner.pod_namespace.clone().unwrap_or_default(),
    }
}

impl Tracker {
    pub fn new(interval: Duration, idle_timeout: Duration) -> Tracker {
        Tracker {
            interval_ns: interval.as_nanos() as u64,
            idle_ns: idle_timeout.as_nanos() as u64,
            ..Tracker::default()
        }
    }

    fn ended(&self, v: &FlowValue, now_ns: u64) -> Option<u8> {
        if v.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            Some(end_reason::END_OF_FLOW)
        } else if now_ns.saturating_sub(v.last_seen) >= self.idle_ns {
            Some(end_reason::IDLE_TIMEOUT)
        } else {
            None
        }
    }

    /// Take the flows already in the table as exported: their counts so far are not this
    /// exporter's to report (a daemon before it did).
    pub fn baseline(&mut self, samples: &[FlowSample], now_ns: u64) {
        for s in samples.iter().filter(|s| is_ip(&s.key)) {
            let ended = self.ended(&s.value, now_ns).is_some();
            self.seen.insert(
                s.key,
                Seen {
                    packets: s.value.packets,
                    bytes: s.value.bytes,
                    first_seen: s.value.first_seen,
                    exported_at: now_ns,
                    ended,
                },
            );
        }
    }

    /// The last records of flows removed from the table with their final counts (`gone`: their
    /// interface went away): what they counted since their last record, as `forced end`.
    pub fn departed(&mut self, gone: &[FlowSample], clock: &Clock) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        for s in gone.iter().filter(|s| is_ip(&s.key)) {
            let v = &s.value;
            let (p, b, ended) = match self.seen.remove(&s.key) {
                Some(seen) if seen.first_seen == v.first_seen && v.packets >= seen.packets => {
                    (seen.packets, seen.bytes, seen.ended)
                }
                _ => (0, 0, false),
            };
            if v.packets > p {
                out.push(record(
                    s,
                    v.packets - p,
                    v.bytes.saturating_sub(b),
                    end_reason::FORCED_END,
                    clock,
                ));
            }
            if !ended && v.packets > 0 {
                self.flows_exported += 1;
            }
        }
        out
    }

    /// The records due now: flows that ended (their last delta), flows whose last record is
    /// `interval` old (active timeout), and with `flush` every flow with packets not yet exported.
    pub fn poll(&mut self, samples: &[FlowSample], now_ns: u64, clock: &Clock, flush: bool) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        let mut present: HashSet<FlowKey> = HashSet::with_capacity(samples.len());
        for s in samples.iter().filter(|s| is_ip(&s.key)) {
            present.insert(s.key);
            let v = &s.value;
            let end = self.ended(v, now_ns);
            let seen = self.seen.entry(s.key).or_insert(Seen {
                packets: 0,
                bytes: 0,
                first_seen: v.first_seen,
                // A flow the exporter meets for the first time is reported after an interval
                // from its first packet (or when it ends).
                exported_at: v.first_seen,
                ended: false,
            });
            // An entry re-created after eviction, or an ifindex reused: counts restarted.
            if v.packets < seen.packets || v.first_seen != seen.first_seen {
                *seen = Seen {
                    packets: 0,
                    bytes: 0,
                    first_seen: v.first_seen,
                    exported_at: v.first_seen,
                    ended: false,
                };
            }
            let (dp, db) = (v.packets - seen.packets, v.bytes.saturating_sub(seen.bytes));
            if dp == 0 {
                if end.is_some() && !seen.ended {
                    // Its last record already carried every packet.
                    seen.ended = true;
                    self.flows_exported += 1;
                }
                continue;
            }
            let reason = match end {
                Some(r) => r,
                None if flush => end_reason::FORCED_END,
                None if now_ns.saturating_sub(seen.exported_at) >= self.interval_ns => end_reason::ACTIVE_TIMEOUT,
                None => continue,
            };
            out.push(record(s, dp, db, reason, clock));
            // Packets after a FIN (the last ACK) go out too, but the flow ended once.
            if (end.is_some() || flush) && !seen.ended {
                self.flows_exported += 1;
            }
            *seen = Seen {
                packets: v.packets,
                bytes: v.bytes,
                first_seen: v.first_seen,
                exported_at: now_ns,
                ended: end.is_some(),
            };
        }
        let before = self.seen.len();
        let mut vanished = 0;
        self.seen.retain(|k, s| {
            let keep = present.contains(k);
            if !keep && !s.ended {
                vanished += 1;
            }
            keep
        });
        debug_assert!(self.seen.len() <= before);
        self.flows_vanished += vanished;
        out
    }
}

/// A failed send's kind, as `netpath_ipfix_send_errors_total` counts it.
pub fn error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => "unreachable",
        io::ErrorKind::WouldBlock => "would_block",
        _ => match e.raw_os_error() {
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL) => "unreachable",
            Some(libc::ENOBUFS) => "would_block",
            _ => "other",
        },
    }
}

struct Collector {
    addr: SocketAddr,
    socket: UdpSocket,
    connected: bool,
    /// Data records sent in this transport session (the next message's sequence number).
    sequence: u32,
}

impl Collector {
    fn open(addr: SocketAddr) -> Result<Collector, IpfixError> {
        let any: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any).map_err(|source| IpfixError::Socket { addr, source })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| IpfixError::Socket { addr, source })?;
        // Connected, so that the kernel reports an ICMP port or host unreachable from the
        // collector's side as an error on the next send (counted), which it does not for send_to.
        let connected = match socket.connect(addr) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("IPFIX collector {addr}: {e}; trying again at every export");
                false
            }
        };
        Ok(Collector {
            addr,
            socket,
            connected,
            sequence: 0,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.connected {
            self.socket.connect(self.addr)?;
            self.connected = true;
        }
        let n = self.socket.send(bytes)?;
        if n != bytes.len() {
            return Err(io::Error::other(format!("sent {n} of {} octets", bytes.len())));
        }
        Ok(())
    }
}

/// The exporter before its thread starts: sockets open (in the namespace it is created in).
pub struct IpfixExporter {
    opts: IpfixOptions,
    collectors: Vec<Collector>,
    tracker: Tracker,
    status: Arc<Mutex<IpfixStatus>>,
    builder: MessageBuilder,
}

impl std::fmt::Debug for IpfixExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpfixExporter").field("opts", &self.opts).finish()
    }
}

/// The running exporter's thread: [`IpfixHandle::stop`] exports what is left and joins it.
pub struct IpfixHandle {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl IpfixHandle {
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            log::warn!("IPFIX exporter: its thread panicked");
        }
    }
}

impl IpfixExporter {
    /// Open a socket per collector. Call it in the namespace the export should leave from.
    pub fn open(opts: IpfixOptions) -> Result<IpfixExporter, IpfixError> {
        opts.validate()?;
        let collectors = opts
            .collectors
            .iter()
            .map(|a| Collector::open(*a))
            .collect::<Result<Vec<_>, _>>()?;
        let status = IpfixStatus {
            interval_s: opts.interval.as_secs(),
            idle_timeout_s: opts.idle_timeout.as_secs(),
            template_interval_s: opts.template_interval.as_secs(),
            collectors: opts
                .collectors
                .iter()
                .map(|a| IpfixCollector::new(a.to_string()))
                .collect(),
            ..IpfixStatus::default()
        };
        Ok(IpfixExporter {
            tracker: Tracker::new(opts.interval, opts.idle_timeout),
            builder: MessageBuilder {
                domain: opts.domain,
                max: MAX_MESSAGE,
            },
            opts,
            collectors,
            status: Arc::new(Mutex::new(status)),
        })
    }

    /// The counters `status` and the metrics read.
    pub fn status(&self) -> Arc<Mutex<IpfixStatus>> {
        Arc::clone(&self.status)
    }

    /// See [`Tracker::baseline`].
    pub fn baseline(&mut self, samples: &[FlowSample]) {
        self.tracker.baseline(samples, Clock::now().mono_now_ns());
    }

    fn send_all(&mut self, msgs: &[encode::Message]) {
        let mut status = self.status.lock().unwrap();
        for (c, st) in self.collectors.iter_mut().zip(status.collectors.iter_mut()) {
            for m in msgs {
                let mut bytes = m.bytes.clone();
                // Each collector is its own transport session with its own sequence numbers.
                bytes[8..12].copy_from_slice(&c.sequence.to_be_bytes());
                // The sequence advances whether or not the send works: a failed message shows at
                // the collector as the gap a lost datagram leaves.
                c.sequence = c.sequence.wrapping_add(m.data_records);
                match c.send(&bytes) {
                    Ok(()) => {
                        st.messages += 1;
                        st.records += u64::from(m.data_records);
                        st.templates += u64::from(m.template_records);
                        st.bytes += bytes.len() as u64;
                    }
                    Err(e) => {
                        *st.errors.entry(error_kind(&e).to_string()).or_insert(0) += 1;
                        if st.last_error.is_none() {
                            log::warn!(
                                "IPFIX collector {}: {e} (counted; netpath_ipfix_send_errors_total)",
                                c.addr
                            );
                        }
                        st.last_error = Some(e.to_string());
                    }
                }
            }
        }
    }

    fn export_time() -> u32 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32)
    }

    /// One round: templates when due, then the records due.
    fn round(&mut self, source: &dyn FlowSource, send_templates: bool, flush: bool) {
        if send_templates {
            // Sequence numbers are filled in per collector.
            let t = self.builder.templates(Self::export_time(), 0);
            self.send_all(&[t]);
        }
        let mut samples = match source.sample() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("IPFIX exporter: reading the flow table: {e}");
                self.status.lock().unwrap().read_errors += 1;
                return;
            }
        };
        let clock = Clock::now();
        // The departed first: taken after the read, so a flow removed in between is among them,
        // and its stale entry in the read is not a new flow.
        let gone = source.take_departed();
        if !gone.is_empty() {
            let keys: HashSet<FlowKey> = gone.iter().map(|s| s.key).collect();
            samples.retain(|s| !keys.contains(&s.key));
        }
        let mut records = self.tracker.departed(&gone, &clock);
        records.extend(self.tracker.poll(&samples, clock.mono_now_ns(), &clock, flush));
        let msgs = self.builder.data(&records, Self::export_time(), 0);
        if !msgs.is_empty() {
            self.send_all(&msgs);
        }
        let mut st = self.status.lock().unwrap();
        st.flows_exported = self.tracker.flows_exported;
        st.flows_vanished = self.tracker.flows_vanished;
    }

    /// Run on a thread of its own until [`IpfixHandle::stop`]: a round every `tick`, the templates
    /// every template interval. A round reads the whole flow table (a lookup per entry, as the API
    /// does), so the tick is a quarter of the shorter timeout (a record is at most that late), and
    /// at most 5 s (the daemon's own age scan period): 5 s with the default timeouts.
    pub fn spawn(mut self, source: Arc<dyn FlowSource>) -> io::Result<IpfixHandle> {
        let (stop, stopped) = mpsc::channel::<()>();
        let tick = (self.opts.interval.min(self.opts.idle_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        let thread = std::thread::Builder::new()
            .name("netpath-ipfix".into())
            .spawn(move || {
                let mut next_templates = Instant::now();
                loop {
                    let flush = !matches!(stopped.recv_timeout(tick), Err(mpsc::RecvTimeoutError::Timeout));
                    let templates = Instant::now() >= next_templates;
                    if templates {
                        next_templates = Instant::now() + self.opts.template_interval;
                    }
                    self.round(source.as_ref(), templates, flush);
                    if flush {
                        return;
                    }
                }
            })?;
        Ok(IpfixHandle { stop, thread })
    }
}

#[cfg(test)]
mod tests {
    use netpath_common::{parse::IPPROTO_TCP, Addr, DIR_EGRESS};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn sample(packets: u64, bytes: u64, first: u64, last: u64, flags: u8) -> FlowSample {
        FlowSample {
            key: FlowKey {
                ifindex: 2,
                family: FAMILY_IPV4,
                proto: IPPROTO_TCP,
                direction: DIR_EGRESS,
                src: Addr::v4([10, 244, 0, 2]),
                dst: Addr::v4([10, 244, 1, 3]),
                sport: 40000,
                dport: 5201,
                vni: 1,
                encap: ENCAP_VXLAN,
                ..FlowKey::default()
            },
            value: FlowValue {
                packets,
                bytes,
                first_seen: first,
                last_seen: last,
                tcp_flags: flags,
                outer_family: FAMILY_IPV4,
                outer_src: Addr::v4([172, 27, 0, 11]),
                outer_dst: Addr::v4([172, 27, 16, 10]),
                ..FlowValue::default()
            },
            iface: "ul0".into(),
            owner: Owner::default(),
        }
    }

    /// A long flow reported every interval, then ending idle: its deltas add up to its total.
    #[test]
    fn deltas_add_up_to_the_flow_total() {
        let clock = Clock::now();
        let mut t = Tracker::new(Duration::from_secs(10), Duration::from_secs(5));
        let mut sum = (0, 0);
        let mut reasons = Vec::new();
        // (now, packets): active for 25 s (a packet every 10 ms), then idle.
        for (now, p) in [
            (1, 100),
            (5, 500),
            (11, 1100),
            (12, 1200),
            (22, 2200),
            (25, 2500),
            (28, 2500),
            (31, 2500),
        ] {
            let last = now.min(25);
            for r in t.poll(&[sample(p, p * 100, 0, last * S, 0x10)], now * S, &clock, false) {
                sum.0 += r.packets;
                sum.1 += r.octets;
                reasons.push(r.end_reason);
                assert_eq!((r.vni, r.egress_interface, r.ingress_interface), (1, 2, 0));
                assert_eq!(r.underlay.unwrap().1, IpAddr::from([172, 27, 16, 10]));
            }
        }
        assert_eq!(sum, (2500, 250_000));
        assert_eq!(
            reasons,
            [
                end_reason::ACTIVE_TIMEOUT,
                end_reason::ACTIVE_TIMEOUT,
                end_reason::IDLE_TIMEOUT
            ]
        );
        assert_eq!((t.flows_exported, t.flows_vanished), (1, 0));
        // Ended and exported: nothing more, and no vanished count when it leaves the table.
        assert!(t
            .poll(&[sample(2500, 250_000, 0, 25 * S, 0x10)], 60 * S, &clock, false)
            .is_empty());
        assert!(t.poll(&[], 61 * S, &clock, false).is_empty());
        assert_eq!(t.flows_vanished, 0);
    }

    #[test]
    fn fin_ends_a_flow_at_once_and_flush_exports_the_rest() {
        let clock = Clock::now();
        let mut t = Tracker::new(Duration::from_secs(60), Duration::from_secs(30));
        let r = t.poll(&[sample(4, 400, 0, S, 0x11)], 2 * S, &clock, false);
        assert_eq!(
            (r.len(), r[0].end_reason, r[0].packets),
            (1, end_reason::END_OF_FLOW, 4)
        );
        // The last ACK after the FIN: exported, the flow not counted twice.
        let r = t.poll(&[sample(5, 460, 0, 2 * S, 0x11)], 2 * S + 1, &clock, false);
        assert_eq!((r.len(), r[0].packets, r[0].octets), (1, 1, 60));
        assert_eq!(t.flows_exported, 1);
        let mut other = sample(7, 700, S, 2 * S, 0x10);
        other.key.sport = 1;
        assert!(t.poll(&[other.clone()], 3 * S, &clock, false).is_empty());
        let r = t.poll(&[other], 3 * S, &clock, true);
        assert_eq!((r.len(), r[0].end_reason, r[0].packets), (1, end_reason::FORCED_END, 7));
    }

    #[test]
    fn baseline_flows_count_from_there_and_restarts_count_from_zero() {
        let clock = Clock::now();
        let mut t = Tracker::new(Duration::from_secs(1), Duration::from_secs(30));
        t.baseline(&[sample(100, 10_000, 0, S, 0)], S);
        let r = t.poll(&[sample(130, 13_000, 0, 3 * S, 0)], 3 * S, &clock, false);
        assert_eq!((r[0].packets, r[0].octets), (30, 3000));
        // Evicted and re-created: a new first_seen, fewer packets.
        let r = t.poll(&[sample(5, 500, 4 * S, 5 * S, 0)], 6 * S, &clock, false);
        assert_eq!((r[0].packets, r[0].octets), (5, 500));
        // Vanished with packets maybe unexported: counted.
        t.poll(&[], 7 * S, &clock, false);
        assert_eq!(t.flows_vanished, 1);
    }

    /// A flow whose interface went away: its last packets go out from its final counts, and it is
    /// not counted as vanished.
    #[test]
    fn departed_flows_export_their_final_delta() {
        let clock = Clock::now();
        let mut t = Tracker::new(Duration::from_secs(1), Duration::from_secs(30));
        let r = t.poll(&[sample(10, 1000, 0, 2 * S, 0)], 2 * S, &clock, false);
        assert_eq!(r[0].packets, 10);
        let r = t.departed(&[sample(14, 1400, 0, 3 * S, 0)], &clock);
        assert_eq!(
            (r.len(), r[0].packets, r[0].octets, r[0].end_reason),
            (1, 4, 400, end_reason::FORCED_END)
        );
        assert!(t.poll(&[], 4 * S, &clock, false).is_empty());
        assert_eq!((t.flows_exported, t.flows_vanished), (1, 0));
        // One the exporter never saw: all of it.
        let r = t.departed(&[sample(3, 300, 5 * S, 5 * S, 0)], &clock);
        assert_eq!((r[0].packets, r[0].octets), (3, 300));
    }

    #[test]
    fn collectors_parse_resolve_and_bad_ones_say_so() {
        let ok = parse_collectors(&["127.0.0.1:4739,[::1]:2055".into(), "localhost:9995".into()]).unwrap();
        assert_eq!(ok[0], "127.0.0.1:4739".parse().unwrap());
        assert_eq!(ok[1], "[::1]:2055".parse().unwrap());
        assert_eq!(ok[2].port(), 9995);
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "host:port",
            ":4739",
            "1.2.3.4:99999",
            "::1:4739",
        ] {
            let e = parse_collectors(&[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
            assert_eq!(crate::Error::from(e).exit_code(), 2, "{bad}");
        }
        assert!(parse_collectors(&[]).unwrap().is_empty());
        assert!(parse_collectors(&[",".into()]).is_err());
    }

    struct Fixed(Mutex<Vec<FlowSample>>);
    impl FlowSource for Fixed {
        fn sample(&self) -> Result<Vec<FlowSample>, String> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    /// Over loopback: templates first, then the records; a collector nobody listens on counts
    /// refused sends and holds nothing up.
    #[test]
    fn exports_over_udp_and_counts_refused_sends() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let opts = IpfixOptions {
            collectors: vec![sink.local_addr().unwrap(), dead_addr],
            interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            ..IpfixOptions::default()
        };
        let ex = IpfixExporter::open(opts).unwrap();
        let status = ex.status();
        let now = Clock::now().mono_now_ns();
        let source = Arc::new(Fixed(Mutex::new(vec![sample(3, 300, now - S, now, 0x10)])));
        let h = ex.spawn(source.clone()).unwrap();
        let mut buf = [0u8; 2048];
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(&buf[16..18], &[0, 2], "templates come first");
        assert!(n > 100);
        let n = sink.recv(&mut buf).unwrap();
        assert_eq!(
            u16::from_be_bytes([buf[16], buf[17]]),
            encode::TemplateKind::V4OverV4.id()
        );
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]) as usize, n);
        assert_eq!(
            &buf[8..12],
            &[0, 0, 0, 0],
            "the first data message follows no data record"
        );
        let started = Instant::now();
        h.stop();
        assert!(started.elapsed() < Duration::from_secs(2));
        let st = status.lock().unwrap().clone();
        assert_eq!((st.collectors[0].records, st.collectors[0].templates), (1, 6));
        let dead = &st.collectors[1];
        assert_eq!(dead.records, 0);
        assert!(dead.errors["refused"] >= 1, "{dead:?}");
    }
}
