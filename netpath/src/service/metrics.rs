//! Prometheus exporter: serves the daemon's counters on `--metrics ADDR` (default
//! [`crate::defaults::METRICS_ADDR`]; `none` disables it).
//!
//! # Endpoints
//!
//! | Path | Answer |
//! |---|---|
//! | `GET /metrics` | the exposition: Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when the `Accept` header asks for `application/openmetrics-text` (as Prometheus itself does) |
//! | `GET /healthz` | `ok` (the process serves: a liveness probe) |
//! | `GET /readyz` | `200 ready: ...` once the daemon has loaded its programs and attached (or waits for a glob to match), else `503 not ready: WHY` (a readiness probe; see [`readiness`]) |
//! | `GET /` | a short HTML page pointing at `/metrics` |
//!
//! The exporter writes the exposition text itself (see [`Writer`] for why, and how the two formats
//! differ): in OpenMetrics a counter family's `# HELP`/`# TYPE` name has no `_total` and the text
//! ends with `# EOF`; in the Prometheus text format the name carries the `_total` of its samples.
//!
//! # Metric families (a contract: dashboards and alerts use these names and labels)
//!
//! | Family | Type | Labels |
//! |---|---|---|
//! | `netpath_packets_total`, `netpath_bytes_total` | counter | `iface`, `direction`, `class`, `pod`, `namespace` |
//! | `netpath_flow_packets_total`, `netpath_flow_bytes_total` | counter | `iface`, `direction`, `family`, `src`, `dst`, `proto`, `dport`, `vni`, `pod`, `namespace` |
//! | `netpath_drops_total`, `netpath_drop_bytes_total` | counter | `reason`, `subsystem`, `iface`, `pod`, `namespace` |
//! | `netpath_flows_active` | gauge | |
//! | `netpath_flow_evictions_total` | counter | |
//! | `netpath_map_fill_ratio` | gauge | `map` (`flows`) |
//! | `netpath_events_total` | counter | `kind` (every kind of [`EVENT_KINDS`], e.g. `arp`, `arp_unanswered`) |
//! | `netpath_events_lost_total`, `netpath_capture_lost_total` | counter | |
//! | `netpath_attached_interfaces` | gauge | `mode` (always at least `tc`, `xdp`, `xdp-generic`) |
//! | `netpath_program_info` | gauge (1) | `program`, `id`, `hook` |
//! | `netpath_doctor_status` | gauge (0 ok, 1 warn, 2 fail) | `check`, `subject` |
//! | `netpath_vxlan_peer_packets_total`, `netpath_vxlan_peer_bytes_total` | counter | `iface`, `direction`, `local`, `peer` |
//! | `netpath_vxlan_peer_dropped_packets_total`, `netpath_vxlan_peer_dropped_bytes_total` | counter | `iface`, `direction`, `local`, `peer` |
//! | `netpath_node_info` | gauge (1) | `node_name`, `vtep` |
//! | `netpath_build_info` | gauge (1) | `version` |
//! | `netpath_ipfix_messages_total`, `netpath_ipfix_records_total`, `netpath_ipfix_bytes_total`, `netpath_ipfix_templates_total` | counter | `collector` (only with `--ipfix`) |
//! | `netpath_ipfix_send_errors_total` | counter | `collector`, `kind` (`refused`, `unreachable`, `would_block`, `other`) |
//! | `netpath_ipfix_flows_exported_total`, `netpath_ipfix_flows_vanished_total` | counter | (only with `--ipfix`) |
//!
//! `pod`/`namespace` name the Kubernetes pod behind an interface as the CRI runtime reports it;
//! without a CRI answer `pod` is the network namespace of the veth peer (e.g. `np-n1-pod-a`) and
//! `namespace` is empty; both are empty for interfaces without a peer (bridges, the underlay).
//! Event and loss counters are exported as zero-valued series before anything happened, so
//! queries over them always have data.
//!
//! Drop series count the packets the kernel dropped (the `kfree_skb` tracer) and those netpath's
//! own rules dropped, from [`Backend::drops`] with the default filter, summed over the drop
//! location and the direction. `reason` is the running kernel's own name for it (its `enum
//! skb_drop_reason`, without the `SKB_DROP_REASON_` prefix: `NETFILTER_DROP`, `NO_SOCKET`, ...; the
//! names differ between kernel versions), `NETPATH_RULE` for a netpath rule; `subsystem` is `core`,
//! the subsystem that defines the reason (`openvswitch`), or `netpath`. A backend without a drop
//! table ([`ApiError::NotFound`]) exports no drop series.
//!
//! Doctor series are the daemon's last doctor run ([`Backend::doctor`] with every check): one per
//! check and subject (an interface, a peer, a table, `node`), valued by its
//! [`Status::value`](crate::model::doctor::Status::value). A backend whose doctor is off or has
//! not run yet ([`ApiError::NotFound`]) exports none. A subject no longer reported has no series.
//!
//! Cluster series ([`ClusterState`]) are the node's VXLAN frames per underlay interface,
//! direction, local and remote VTEP address ([`Backend::vxlan_peers`]): what node A sent to B
//! (`direction="egress", local=A, peer=B` on A) and what B received from A (`direction="ingress",
//! local=B, peer=A` on B), packets counted as segments; `dropped` is what the kernel dropped on this
//! node after netpath's hook saw it, so B received `packets - dropped_packets` from A.
//! `netpath_node_info` names the node and each of its VTEP addresses, so that rules
//! (`deploy/prometheus/rules.yml`) join the two views and name the pair. Its label is `node_name`,
//! not `node`: scrape configs commonly attach a `node` target label. A backend that has no peer rows
//! to give ([`ApiError::NotFound`]) exports neither; pins older than the peer table give the node's
//! name and VTEPs with no peer series.
//!
//! # Cardinality and series life
//!
//! - Interface series grow with interfaces (pods) times directions and classes, never with pod
//!   pairs: addresses only appear on per-flow series.
//! - Per-flow series are the `top_flows` heaviest flows by bytes (`--metrics-flows`), aggregated
//!   over the labels above (flows differing only in source port share a series), and never more
//!   than `top_flows` series per family.
//! - Drop series are the `top_drops` heaviest label sets by packets (see [`MetricsOptions`]); when
//!   there are more, the heaviest `top_drops - 1` are shown and the others summed into one series
//!   `reason="other"` (its other labels empty), so `sum(rate(netpath_drops_total[5m]))` stays the
//!   node's whole drop rate. `other` only grows: it adds what the series folded into it counted
//!   since the last scrape; a series that becomes heavy enough to be shown starts as a new series
//!   with its whole count (its earlier packets stay in `other`).
//! - Doctor series are at most `doctor_series` (see [`MetricsOptions`]): failing ones first, then
//!   warnings, then ok ones, each by check and subject.
//! - A series whose source vanished (an interface removed, whose counters the daemon deletes; a
//!   pod gone; a flow evicted or no longer among the heaviest) keeps its last value for `grace`
//!   (see [`MetricsOptions`]) and then goes away. Vanished flows are only shown while there is
//!   room under the `top_flows` cap; their state is kept for `grace` regardless.
//! - Counters never go backwards within a series' life: the exporter keeps, per underlying
//!   counter (an interface/direction/class row, a flow), the last raw value it saw and adds only
//!   increases to the series; a raw value that went down (an ifindex reused, a flow re-created
//!   after eviction) counts as a fresh start from zero. Scalar counters read from the daemon
//!   (evictions, events, losses) never go below the highest value exported.
//!
//! [`Exporter`] is the pure part (a [`Backend`] in, text out), usable by tests and benchmarks
//! without a server; [`MetricsServer`] serves it over HTTP, calling the backend on tokio's
//! blocking pool.
use std::{
    collections::BTreeMap,
    future::IntoFuture as _,
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use super::api::{graceful_shutdown, ApiError, Backend};
use crate::{
    error::ServiceError,
    model::{
        doctor::Finding,
        drops::{DropFilter, DropRow},
        flows::{Filter, FlowRow, SortBy},
        ifaces::IfaceRow,
        ipfix::{IpfixCollector, IpfixStatus, SEND_ERROR_KINDS},
        owner::Owner,
        peers::{VxlanPeerRow, VxlanPeers},
        stats::StatRow,
        status::StatusReport,
    },
};

/// `Content-Type` of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Event kinds exported (as 0) even before the daemon reports any: every kind the datapath and
/// the daemon know (`arp`, `arp_unanswered`, ...).
pub const EVENT_KINDS: &[&str] = &netpath_common::event::kind::NAMES;
/// Attach modes exported (as 0) even when no interface uses them.
pub const ATTACH_MODES: &[&str] = &["tc", "xdp", "xdp-generic"];

/// How long [`MetricsServer::serve`] waits for open requests after `shutdown` resolved.

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics listener {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("metrics: reading {what}: {source}")]
    Read { what: &'static str, source: ApiError },
    #[error("metrics: encoding the exposition failed")]
    Encode(#[from] std::fmt::Error),
    #[error("metrics: serving on {addr}: {source}")]
    Serve { addr: String, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// How many flows (heaviest by bytes) get per-flow series.
    pub top_flows: usize,
    /// How many drop series (heaviest by packets) each drop family shows at most, the
    /// `reason="other"` series included; 0 shows none.
    pub top_drops: usize,
    /// How long series of a vanished interface, pod or flow keep their last value.
    pub grace: Duration,
    /// How many `netpath_doctor_status` series at most (the worst first).
    pub doctor_series: usize,
}

impl From<MetricsError> for crate::Error {
    fn from(e: MetricsError) -> crate::Error {
        crate::Error::Service(ServiceError {
            exit_code: 1,
            error: Box::new(e),
        })
    }
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            top_flows: 100,
            top_drops: 100,
            grace: Duration::from_secs(300),
            doctor_series: 256,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Series state

// FxHash (rustc-hash) over the label sets' precomputed hashes and the sources' small integer
// ids: SipHash over five label strings per row was most of an update.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// `{k="v",...}` with the exposition's escaping of `\`, `"` and newlines in values.
fn write_labels(out: &mut String, pairs: &[(&str, &str)]) {
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
        } else {
            out.push_str(v);
        }
        out.push('"');
    }
    out.push('}');
}

/// A label set as the exposition writes it, and a hash of that text. Label sets live as long as
/// their series, so this is rendered once per series, not once per scrape.
#[derive(Debug, Clone)]
struct Rendered {
    text: String,
    hash: u64,
}

impl Rendered {
    fn of(pairs: &[(&str, &str)]) -> Rendered {
        let mut text = String::new();
        write_labels(&mut text, pairs);
        let mut h = std::hash::DefaultHasher::new();
        text.hash(&mut h);
        Rendered { hash: h.finish(), text }
    }
}

/// A series' label set: equal exactly when the rendered text is (the escaping is injective),
/// hashed by the text's hash, ordered by the label values.
macro_rules! label_set {
    ($t:ty, $($f:ident),+) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.rendered.hash == other.rendered.hash && self.rendered.text == other.rendered.text
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                h.write_u64(self.rendered.hash);
            }
        }
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        /// By the label values in order (the order the exposition lists series in).
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                ($(&self.$f,)+).cmp(&($(&other.$f,)+))
            }
        }
    };
}

/// Labels of `netpath_packets_total` / `netpath_bytes_total`.
#[derive(Debug, Clone)]
struct IfaceLabels {
    iface: String,
    direction: String,
    class: String,
    pod: String,
    namespace: String,
    rendered: Rendered,
}

label_set!(IfaceLabels, iface, direction, class, pod, namespace);

impl IfaceLabels {
    fn of(r: &StatRow) -> IfaceLabels {
        let (pod, namespace) = owner(&r.owner);
        let rendered = Rendered::of(&[
            ("iface", &r.iface),
            ("direction", &r.direction),
            ("class", &r.class),
            ("pod", &pod),
            ("namespace", &namespace),
        ]);
        IfaceLabels {
            iface: r.iface.clone(),
            direction: r.direction.clone(),
            class: r.class.clone(),
            pod,
            namespace,
            rendered,
        }
    }

    /// Whether `r` has these labels (without building them).
    fn matches(&self, r: &StatRow) -> bool {
        let (pod, namespace) = owner_ref(&r.owner);
        self.iface == r.iface
            && self.direction == r.direction
            && self.class == r.class
            && self.pod == pod
            && self.namespace == namespace
    }
}

/// Labels of `netpath_flow_packets_total` / `netpath_flow_bytes_total`.
#[derive(Debug, Clone)]
struct FlowLabels {
    iface: String,
    direction: String,
    family: String,
    src: String,
    dst: String,
    proto: String,
    dport: String,
    vni: String,
    pod: String,
    namespace: String,
    rendered: Rendered,
}

label_set!(FlowLabels, iface, direction, family, src, dst, proto, dport, vni, pod, namespace);

impl FlowLabels {
    fn of(r: &FlowRow) -> FlowLabels {
        let (pod, namespace) = owner(&r.owner);
        let (dport, vni) = (r.dport.to_string(), r.vni.to_string());
        let rendered = Rendered::of(&[
            ("iface", &r.iface),
            ("direction", &r.direction),
            ("family", &r.family),
            ("src", &r.src),
            ("dst", &r.dst),
            ("proto", &r.proto),
            ("dport", &dport),
            ("vni", &vni),
            ("pod", &pod),
            ("namespace", &namespace),
        ]);
        FlowLabels {
            iface: r.iface.clone(),
            direction: r.direction.clone(),
            family: r.family.clone(),
            src: r.src.clone(),
            dst: r.dst.clone(),
            proto: r.proto.clone(),
            dport,
            vni,
            pod,
            namespace,
            rendered,
        }
    }

    fn matches(&self, r: &FlowRow) -> bool {
        let (pod, namespace) = owner_ref(&r.owner);
        self.iface == r.iface
            && self.direction == r.direction
            && self.family == r.family
            && self.src == r.src
            && self.dst == r.dst
            && self.proto == r.proto
            && self.dport == *itoa::Buffer::new().format(r.dport)
            && self.vni == *itoa::Buffer::new().format(r.vni)
            && self.pod == pod
            && self.namespace == namespace
    }
}

/// Labels of `netpath_drops_total` / `netpath_drop_bytes_total`.
#[derive(Debug, Clone)]
struct DropLabels {
    reason: String,
    subsystem: String,
    iface: String,
    pod: String,
    namespace: String,
    rendered: Rendered,
}

label_set!(DropLabels, reason, subsystem, iface, pod, namespace);

impl DropLabels {
    fn of(r: &DropRow) -> DropLabels {
        let (pod, namespace) = drop_owner(r);
        let rendered = Rendered::of(&[
            ("reason", &r.reason),
            ("subsystem", &r.subsystem),
            ("iface", &r.iface),
            ("pod", pod),
            ("namespace", namespace),
        ]);
        DropLabels {
            reason: r.reason.clone(),
            subsystem: r.subsystem.clone(),
            iface: r.iface.clone(),
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            rendered,
        }
    }

    fn matches(&self, r: &DropRow) -> bool {
        let (pod, namespace) = drop_owner(r);
        self.reason == r.reason
            && self.subsystem == r.subsystem
            && self.iface == r.iface
            && self.pod == pod
            && self.namespace == namespace
    }
}

/// The series the drops beyond the cap are summed into.
const DROP_OTHER: &str = "other";

/// The label text of the `reason="other"` series.
fn drop_other_labels() -> String {
    Rendered::of(&[
        ("reason", DROP_OTHER),
        ("subsystem", ""),
        ("iface", ""),
        ("pod", ""),
        ("namespace", ""),
    ])
    .text
}

/// `pod`, `namespace` label values of a drop row (the row names its pod as the other rows' owner
/// does: the CRI's name, else the pod's network namespace).
fn drop_owner(r: &DropRow) -> (&str, &str) {
    (
        r.pod.as_deref().unwrap_or_default(),
        r.pod_namespace.as_deref().unwrap_or_default(),
    )
}

/// The identity of one underlying drop counter (a drop table entry: where, in which direction,
/// why), hashed: rows carry no allocation-free key, and a 64-bit hash of a few thousand sites at
/// most (the table's size) does not collide in practice.
fn drop_id(r: &DropRow) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    r.ifindex.hash(&mut h);
    r.direction.hash(&mut h);
    r.netns.hash(&mut h);
    r.reason.hash(&mut h);
    r.location.hash(&mut h);
    h.finish()
}

/// The identity of one underlying flow counter (everything of the flow key a row shows).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowId {
    ifindex: u32,
    direction: String,
    family: String,
    src: String,
    dst: String,
    proto: String,
    sport: u16,
    dport: u16,
    icmp: Option<(u8, u8)>,
    vni: u32,
    vlan: u16,
    arp_op: Option<String>,
}

impl FlowId {
    fn of(r: &FlowRow) -> FlowId {
        FlowId {
            ifindex: r.ifindex,
            direction: r.direction.clone(),
            family: r.family.clone(),
            src: r.src.clone(),
            dst: r.dst.clone(),
            proto: r.proto.clone(),
            sport: r.sport,
            dport: r.dport,
            icmp: r.icmp_type.map(|t| (t, r.icmp_code.unwrap_or(0))),
            vni: r.vni,
            vlan: r.vlan,
            arp_op: r.arp_op.clone(),
        }
    }
}

/// `pod`, `namespace` label values: the CRI pod when known, else a pod's netns name; empty for
/// what is not a pod (an underlay peer's namespace is another node's).
fn owner(o: &Owner) -> (String, String) {
    let (p, n) = owner_ref(o);
    (p.to_string(), n.to_string())
}

/// [`owner`] without allocating: the pod label (a pod's name, or the namespace behind a pod's
/// veth; empty for underlay and host links) and the pod's Kubernetes namespace.
fn owner_ref(o: &Owner) -> (&str, &str) {
    let pod = o.pod_label().unwrap_or_default();
    let namespace = if o.pod.is_some() {
        o.pod_namespace.as_deref().unwrap_or_default()
    } else {
        ""
    };
    (pod, namespace)
}

/// One exported packets/bytes series pair.
#[derive(Debug, Clone, Copy)]
struct Series {
    packets: u64,
    bytes: u64,
    last_seen: Instant,
    /// The render that last saw a source of this series.
    generation: u64,
}

/// One underlying counter feeding a series: the raw values it had last time.
#[derive(Debug)]
struct Source<L> {
    labels: Arc<L>,
    packets: u64,
    bytes: u64,
    last_seen: Instant,
}

/// Turns raw counters that may vanish, reset or change labels into series that never go back.
#[derive(Debug)]
struct Tracker<I, L> {
    sources: FxMap<I, Source<L>>,
    series: FxMap<Arc<L>, Series>,
    /// Series added or removed since [`Tracker::sorted`] was last rebuilt.
    changed: bool,
    /// The series' label sets in order, rebuilt only when the set changed.
    sorted: Vec<Arc<L>>,
}

impl<I, L> Default for Tracker<I, L> {
    fn default() -> Self {
        Tracker {
            sources: FxMap::default(),
            series: FxMap::default(),
            changed: false,
            sorted: Vec::new(),
        }
    }
}

impl<I: Hash + Eq, L: Hash + Eq + Ord> Tracker<I, L> {
    /// `labels` builds the source's label set, `same` says whether a label set is the source's
    /// (so a source whose labels did not change costs no allocation).
    #[expect(
        clippy::too_many_arguments,
        reason = "one observation: identity, labels, values, clock"
    )]
    fn observe(
        &mut self,
        id: I,
        labels: impl FnOnce() -> L,
        same: impl Fn(&L) -> bool,
        packets: u64,
        bytes: u64,
        now: Instant,
        generation: u64,
    ) {
        let known = self
            .sources
            .get(&id)
            .filter(|s| same(&s.labels) && self.series.contains_key(&s.labels))
            .map(|s| Arc::clone(&s.labels));
        let key = match known {
            Some(k) => k,
            None => {
                let labels = labels();
                match self.series.get_key_value(&labels) {
                    Some((k, _)) => Arc::clone(k),
                    None => {
                        let k = Arc::new(labels);
                        self.series.insert(
                            Arc::clone(&k),
                            Series {
                                packets: 0,
                                bytes: 0,
                                last_seen: now,
                                generation,
                            },
                        );
                        self.changed = true;
                        k
                    }
                }
            }
        };
        let (dp, db) = match self.sources.get_mut(&id) {
            Some(s) => {
                let delta =
                    if (Arc::ptr_eq(&s.labels, &key) || s.labels == key) && packets >= s.packets && bytes >= s.bytes {
                        (packets - s.packets, bytes - s.bytes)
                    } else {
                        // Moved to other labels, or restarted from zero: everything it has is new here.
                        (packets, bytes)
                    };
                (s.labels, s.packets, s.bytes, s.last_seen) = (Arc::clone(&key), packets, bytes, now);
                delta
            }
            None => {
                self.sources.insert(
                    id,
                    Source {
                        labels: Arc::clone(&key),
                        packets,
                        bytes,
                        last_seen: now,
                    },
                );
                (packets, bytes)
            }
        };
        if let Some(s) = self.series.get_mut(&key) {
            s.packets = s.packets.saturating_add(dp);
            s.bytes = s.bytes.saturating_add(db);
            s.last_seen = now;
            s.generation = generation;
        }
    }

    /// Drop series unseen for longer than `grace` and sources whose series is gone; then, if
    /// more than `max` sources (or series) remain, the least recently seen ones.
    fn expire(&mut self, now: Instant, grace: Duration, max: usize) {
        let before = self.series.len();
        let fresh = |t: Instant| now.saturating_duration_since(t) <= grace;
        self.series.retain(|_, s| fresh(s.last_seen));
        if self.series.len() > max {
            let mut by_age: Vec<(Instant, Arc<L>)> =
                self.series.iter().map(|(l, s)| (s.last_seen, Arc::clone(l))).collect();
            by_age.sort_by_key(|(t, _)| *t);
            for (_, l) in by_age.into_iter().take(self.series.len() - max) {
                self.series.remove(&l);
            }
        }
        self.changed |= self.series.len() != before;
        // A source seen within the grace period fed a series seen at least as recently.
        let series = &self.series;
        self.sources
            .retain(|_, s| fresh(s.last_seen) || series.contains_key(&s.labels));
        if self.sources.len() > max {
            let mut ages: Vec<Instant> = self.sources.values().map(|s| s.last_seen).collect();
            ages.sort();
            let cutoff = ages[self.sources.len() - max];
            self.sources.retain(|_, s| s.last_seen >= cutoff);
        }
    }

    /// The series in label order (sorted again only when the set changed).
    fn in_order(&mut self) -> impl Iterator<Item = (&L, Series)> {
        if self.changed {
            self.sorted = self.series.keys().cloned().collect();
            self.sorted.sort();
            self.changed = false;
        }
        let series = &self.series;
        self.sorted.iter().filter_map(move |l| Some((&**l, *series.get(l)?)))
    }
}

/// Everything one exposition shows (kept between renders for grace and monotonicity).
#[derive(Debug, Default)]
struct ExportState {
    /// Sources by (ifindex, direction, class), the two names as indexes into `names`.
    ifaces: Tracker<(u32, u32, u32), IfaceLabels>,
    /// Directions and classes seen, for the ids above (a handful of distinct values).
    names: Vec<String>,
    flows: Tracker<FlowId, FlowLabels>,
    /// The flow series shown, heaviest first (at most `top_flows`).
    shown_flows: Vec<(Arc<FlowLabels>, Series)>,
    /// Drop sources by [`drop_id`], feeding series by reason, subsystem, interface and pod.
    drops: Tracker<u64, DropLabels>,
    /// One reading's rows by [`drop_id`] (first row, packets, bytes): a site listed twice counts
    /// once, summed. Kept to reuse its allocation.
    drop_sites: FxMap<u64, (usize, u64, u64)>,
    /// Each drop series' values at the last update, for what a folded series added since.
    drop_before: FxMap<Arc<DropLabels>, (u64, u64)>,
    /// The drop series shown, heaviest first.
    shown_drops: Vec<(Arc<DropLabels>, Series)>,
    /// The `reason="other"` series (packets, bytes), once anything was folded into it, and its
    /// label text.
    drop_other: Option<(u64, u64)>,
    drop_other_labels: String,
    flows_active: u64,
    fill_ratio: f64,
    evictions: u64,
    events: BTreeMap<String, u64>,
    events_lost: u64,
    capture_lost: u64,
    attached: BTreeMap<String, u64>,
    programs: Vec<[String; 3]>,
    /// `netpath_doctor_status`: (check, subject, status value), by check and subject.
    doctor: Vec<(String, String, u8)>,
    /// `netpath_ipfix_*`: the IPFIX exporter's counters (None without `--ipfix`).
    ipfix: Option<IpfixStatus>,
    /// The cluster view's series (see [`ClusterState`]).
    cluster: ClusterState,
    /// The size of the last exposition, to allocate the next one at once.
    last_len: usize,
}

/// Raise a scalar counter to `v`, never lower it.
fn raise(c: &mut u64, v: Option<u64>) {
    if let Some(v) = v {
        *c = (*c).max(v);
    }
}

/// The index of `name` in `names`, added if new.
fn intern(names: &mut Vec<String>, name: &str) -> u32 {
    match names.iter().position(|n| n == name) {
        Some(i) => i as u32,
        None => {
            names.push(name.to_string());
            names.len() as u32 - 1
        }
    }
}

impl ExportState {
    fn update(&mut self, d: &Data, opts: &MetricsOptions, now: Instant, generation: u64) {
        for r in &d.stats {
            let id = (
                r.ifindex,
                intern(&mut self.names, &r.direction),
                intern(&mut self.names, &r.class),
            );
            self.ifaces.observe(
                id,
                || IfaceLabels::of(r),
                |l| l.matches(r),
                r.packets,
                r.bytes,
                now,
                generation,
            );
        }
        // Interface series are bounded by the interfaces (the daemon's table), not by us.
        self.ifaces.expire(now, opts.grace, usize::MAX);

        for r in &d.flows {
            self.flows.observe(
                FlowId::of(r),
                || FlowLabels::of(r),
                |l| l.matches(r),
                r.packets,
                r.bytes,
                now,
                generation,
            );
        }
        let keep = opts.top_flows.saturating_mul(4).saturating_add(1024);
        self.flows.expire(now, opts.grace, keep);
        // Show the series the current top flows feed, then vanished ones (most recent first) as
        // room under the cap allows; heaviest first within the exposition.
        let mut shown: Vec<(&Arc<FlowLabels>, &Series)> = self.flows.series.iter().collect();
        shown.sort_by(|a, b| {
            let current = |s: &Series| s.generation == generation;
            current(b.1)
                .cmp(&current(a.1))
                .then(b.1.last_seen.cmp(&a.1.last_seen))
                .then(b.1.bytes.cmp(&a.1.bytes))
                .then(a.0.cmp(b.0))
        });
        shown.truncate(opts.top_flows);
        shown.sort_by(|a, b| {
            b.1.bytes
                .cmp(&a.1.bytes)
                .then(b.1.packets.cmp(&a.1.packets))
                .then(a.0.cmp(b.0))
        });
        self.shown_flows = shown.into_iter().map(|(l, s)| (Arc::clone(l), *s)).collect();

        self.update_drops(&d.drops, opts, now, generation);

        let st = &d.status;
        let ft = &st.flow_table;
        self.flows_active = ft.active;
        self.fill_ratio = if ft.fill_ratio.is_finite() { ft.fill_ratio } else { 0.0 };
        raise(&mut self.evictions, Some(ft.evictions));

        for k in EVENT_KINDS {
            self.events.entry(k.to_string()).or_insert(0);
        }
        for (k, n) in st.events.by_kind.iter().flatten() {
            raise(self.events.entry(k.clone()).or_insert(0), Some(*n));
        }
        raise(&mut self.events_lost, Some(st.events.lost));
        raise(&mut self.capture_lost, Some(st.capture.lost));

        self.attached = ATTACH_MODES.iter().map(|m| (m.to_string(), 0)).collect();
        for mode in d.ifaces.iter().filter_map(|r| r.mode.as_ref()) {
            *self.attached.entry(mode.clone()).or_insert(0) += 1;
        }

        self.programs = st
            .daemon
            .iter()
            .flat_map(|d| &d.programs)
            .map(|p| [p.program.clone(), p.id.to_string(), p.hook.clone()])
            .collect();
        self.programs.sort();
        self.programs.dedup();

        self.doctor = doctor_series(&d.doctor, opts.doctor_series);
        self.update_ipfix(&d.status);

        self.cluster.update(d.peers.as_ref(), opts, now, generation);
    }

    /// Drop series: every site feeds the series of its labels; the heaviest `top_drops` series
    /// are shown, or when there are more (or ever were), `top_drops - 1` and `reason="other"`.
    fn update_drops(&mut self, rows: &[DropRow], opts: &MetricsOptions, now: Instant, generation: u64) {
        self.drop_sites.clear();
        for (i, r) in rows.iter().enumerate() {
            let e = self.drop_sites.entry(drop_id(r)).or_insert((i, 0, 0));
            e.1 = e.1.saturating_add(r.packets);
            e.2 = e.2.saturating_add(r.bytes);
        }
        for (&id, &(i, packets, bytes)) in &self.drop_sites {
            let r = &rows[i];
            self.drops.observe(
                id,
                || DropLabels::of(r),
                |l| l.matches(r),
                packets,
                bytes,
                now,
                generation,
            );
        }
        let n = opts.top_drops;
        self.drops
            .expire(now, opts.grace, n.saturating_mul(4).saturating_add(1024));
        let series = &self.drops.series;
        self.drop_before.retain(|l, _| series.contains_key(l));
        let mut ranked: Vec<(&Arc<DropLabels>, &Series)> = series.iter().collect();
        ranked.sort_by(|a, b| {
            b.1.packets
                .cmp(&a.1.packets)
                .then(b.1.bytes.cmp(&a.1.bytes))
                .then(a.0.cmp(b.0))
        });
        let fold = n > 0 && (ranked.len() > n || self.drop_other.is_some());
        let shown = ranked.len().min(if fold { n - 1 } else { n });
        if fold {
            let other = self.drop_other.get_or_insert((0, 0));
            for (l, s) in &ranked[shown..] {
                let (p, b) = self.drop_before.get(*l).copied().unwrap_or_default();
                other.0 = other.0.saturating_add(s.packets.saturating_sub(p));
                other.1 = other.1.saturating_add(s.bytes.saturating_sub(b));
            }
            if self.drop_other_labels.is_empty() {
                self.drop_other_labels = drop_other_labels();
            }
        }
        for (l, s) in &ranked {
            match self.drop_before.get_mut(*l) {
                Some(v) => *v = (s.packets, s.bytes),
                None => {
                    self.drop_before.insert(Arc::clone(l), (s.packets, s.bytes));
                }
            }
        }
        self.shown_drops.clear();
        self.shown_drops
            .extend(ranked[..shown].iter().map(|(l, s)| (Arc::clone(l), **s)));
    }

    fn encode(&mut self, openmetrics: bool) -> String {
        use Kind::{Counter, Gauge};
        let mut w = Writer {
            out: String::with_capacity(self.last_len + self.last_len / 8 + 4096),
            openmetrics,
        };
        let ifaces: Vec<(&IfaceLabels, Series)> = self.ifaces.in_order().collect();
        w.family(
            "netpath_packets",
            "Packets seen per interface, direction and traffic class.",
            Counter,
            ifaces.iter().map(|(l, s)| (&l.rendered.text, s.packets)),
        );
        w.family(
            "netpath_bytes",
            "Bytes (whole frames) seen per interface, direction and traffic class.",
            Counter,
            ifaces.iter().map(|(l, s)| (&l.rendered.text, s.bytes)),
        );
        let flows = &self.shown_flows;
        w.family(
            "netpath_flow_packets",
            "Packets of the heaviest flows by bytes (at most --metrics-flows series).",
            Counter,
            flows.iter().map(|(l, s)| (&l.rendered.text, s.packets)),
        );
        w.family(
            "netpath_flow_bytes",
            "Bytes of the heaviest flows by bytes (at most --metrics-flows series).",
            Counter,
            flows.iter().map(|(l, s)| (&l.rendered.text, s.bytes)),
        );
        let other = self.drop_other.map(|o| (&self.drop_other_labels, o));
        w.family(
            "netpath_drops",
            DROPS_HELP,
            Counter,
            self.shown_drops
                .iter()
                .map(|(l, s)| (&l.rendered.text, s.packets))
                .chain(other.map(|(l, (p, _))| (l, p))),
        );
        w.family(
            "netpath_drop_bytes",
            DROP_BYTES_HELP,
            Counter,
            self.shown_drops
                .iter()
                .map(|(l, s)| (&l.rendered.text, s.bytes))
                .chain(other.map(|(l, (_, b))| (l, b))),
        );
        w.scalar(
            "netpath_flows_active",
            "Flows still going: a packet in the last 30 s and no FIN or RST seen.",
            Gauge,
            self.flows_active,
        );
        w.scalar(
            "netpath_flow_evictions",
            "Flows the flow table evicted to make room (LRU).",
            Counter,
            self.evictions,
        );
        w.header(
            "netpath_map_fill_ratio",
            "Fill ratio of a BPF map (entries over capacity, 0 to 1).",
            Gauge,
        );
        w.sample_start("netpath_map_fill_ratio", Gauge, &[("map", "flows")]);
        w.out.push_str(dtoa::Buffer::new().format(self.fill_ratio));
        w.out.push('\n');
        w.labelled(
            "netpath_events",
            "Datapath events emitted, by kind.",
            Counter,
            self.events.iter().map(|(k, v)| ([("kind", k.as_str())], *v)),
        );
        w.scalar(
            "netpath_events_lost",
            "Datapath events lost before user space read them.",
            Counter,
            self.events_lost,
        );
        w.scalar(
            "netpath_capture_lost",
            "Captured packets lost before user space read them.",
            Counter,
            self.capture_lost,
        );
        w.labelled(
            "netpath_attached_interfaces",
            "Interfaces netpath is attached to, by attach mode.",
            Gauge,
            self.attached.iter().map(|(m, n)| ([("mode", m.as_str())], *n)),
        );
        w.labelled(
            "netpath_program_info",
            "The BPF programs the daemon loaded (value 1).",
            Gauge,
            self.programs.iter().map(|[p, id, hook]| {
                (
                    [("program", p.as_str()), ("id", id.as_str()), ("hook", hook.as_str())],
                    1u64,
                )
            }),
        );
        w.labelled(
            "netpath_doctor_status",
            DOCTOR_HELP,
            Gauge,
            self.doctor
                .iter()
                .map(|(c, subject, v)| ([("check", c.as_str()), ("subject", subject.as_str())], u64::from(*v))),
        );
        self.encode_ipfix(&mut w);
        self.cluster.encode(&mut w);
        w.labelled(
            "netpath_build_info",
            "Version of the running netpath (value 1).",
            Gauge,
            [([("version", env!("CARGO_PKG_VERSION"))], 1u64)],
        );
        if openmetrics {
            w.out.push_str("# EOF\n");
        }
        self.last_len = w.out.len();
        w.out
    }
}

// ---------------------------------------------------------------------------------------------
// IPFIX exporter health (`netpath_ipfix_*`)

/// A per-collector family: name, help, and the counter it shows.
type CollectorFamily = (&'static str, &'static str, fn(&IpfixCollector) -> u64);

impl ExportState {
    /// The exporter's counters as the daemon's status has them. They only grow within a daemon's
    /// life (a restarted daemon starts them again, as Prometheus expects of a restarted target).
    fn update_ipfix(&mut self, st: &StatusReport) {
        self.ipfix = st.daemon.as_ref().and_then(|d| d.ipfix.clone());
    }

    /// Per collector (`collector`, its address): messages, data records, octets, template records,
    /// failed sends by `kind` (every kind, zero or not); and the flows exported and vanished. None
    /// without `--ipfix`.
    fn encode_ipfix(&self, w: &mut Writer) {
        use Kind::Counter;
        let Some(x) = &self.ipfix else { return };
        let per_collector: [CollectorFamily; 4] = [
            ("netpath_ipfix_messages", "IPFIX messages sent, by collector.", |c| {
                c.messages
            }),
            (
                "netpath_ipfix_records",
                "IPFIX flow (data) records sent, by collector.",
                |c| c.records,
            ),
            (
                "netpath_ipfix_bytes",
                "Octets of the IPFIX messages sent (without UDP/IP headers), by collector.",
                |c| c.bytes,
            ),
            (
                "netpath_ipfix_templates",
                "IPFIX template records sent (at start and every template interval), by collector.",
                |c| c.templates,
            ),
        ];
        for (name, help, value) in per_collector {
            w.labelled(
                name,
                help,
                Counter,
                x.collectors
                    .iter()
                    .map(|c| ([("collector", c.address.as_str())], value(c))),
            );
        }
        w.labelled(
            "netpath_ipfix_send_errors",
            "IPFIX messages that could not be sent, by collector and kind (refused, unreachable, would_block, other); their records are lost.",
            Counter,
            x.collectors.iter().flat_map(|c| {
                SEND_ERROR_KINDS.iter().map(|k| {
                    (
                        [("collector", c.address.as_str()), ("kind", *k)],
                        c.errors.get(*k).copied().unwrap_or(0),
                    )
                })
            }),
        );
        w.scalar(
            "netpath_ipfix_flows_exported",
            "Flows whose end (idle timeout, FIN or RST, daemon stop) was exported over IPFIX.",
            Counter,
            x.flows_exported,
        );
        w.scalar(
            "netpath_ipfix_flows_vanished",
            "Flows that left the flow table (evicted to make room) before their last packets were exported over IPFIX.",
            Counter,
            x.flows_vanished,
        );
    }
}

// Cluster

/// Labels of the `netpath_vxlan_peer_*` families.
#[derive(Debug, Clone)]
struct PeerLabels {
    iface: String,
    direction: String,
    local: String,
    peer: String,
    rendered: Rendered,
}

label_set!(PeerLabels, iface, direction, local, peer);

impl PeerLabels {
    fn of(r: &VxlanPeerRow) -> PeerLabels {
        PeerLabels {
            rendered: Rendered::of(&[
                ("iface", &r.iface),
                ("direction", &r.direction),
                ("local", &r.local),
                ("peer", &r.peer),
            ]),
            iface: r.iface.clone(),
            direction: r.direction.clone(),
            local: r.local.clone(),
            peer: r.peer.clone(),
        }
    }

    fn matches(&self, r: &VxlanPeerRow) -> bool {
        self.iface == r.iface && self.direction == r.direction && self.local == r.local && self.peer == r.peer
    }
}

/// The kernel entry behind a peer row: (ifindex, direction, local, peer).
type PeerId = (u32, String, String, String);

/// The cluster view's series: per-peer VXLAN counters (seen, and dropped after the hook, as two
/// trackers so each pair of families never goes backwards) and the node's name and VTEPs.
#[derive(Debug, Default)]
struct ClusterState {
    seen: Tracker<PeerId, PeerLabels>,
    dropped: Tracker<PeerId, PeerLabels>,
    /// `netpath_node_info`: (node name, VTEP), one per VTEP (an empty VTEP when none is known);
    /// empty without a peer table.
    info: Vec<(String, String)>,
}

impl ClusterState {
    fn update(&mut self, peers: Option<&VxlanPeers>, opts: &MetricsOptions, now: Instant, generation: u64) {
        let Some(p) = peers else {
            self.info.clear();
            return;
        };
        for r in &p.peers {
            let id = || (r.ifindex, r.direction.clone(), r.local.clone(), r.peer.clone());
            let labels = || PeerLabels::of(r);
            let same = |l: &PeerLabels| l.matches(r);
            self.seen
                .observe(id(), labels, same, r.packets, r.bytes, now, generation);
            self.dropped
                .observe(id(), labels, same, r.dropped_packets, r.dropped_bytes, now, generation);
        }
        // Bounded by the kernel's table (PEER_TABLE_SIZE entries), like the interface series.
        self.seen.expire(now, opts.grace, usize::MAX);
        self.dropped.expire(now, opts.grace, usize::MAX);
        self.info = match p.vteps.is_empty() {
            true => vec![(p.node.clone(), String::new())],
            false => p.vteps.iter().map(|v| (p.node.clone(), v.clone())).collect(),
        };
    }

    fn encode(&mut self, w: &mut Writer) {
        use Kind::{Counter, Gauge};
        let seen: Vec<(&PeerLabels, Series)> = self.seen.in_order().collect();
        w.family(
            "netpath_vxlan_peer_packets",
            "VXLAN packets per underlay interface, direction, local and remote VTEP (GSO/GRO packets as their segments).",
            Counter,
            seen.iter().map(|(l, s)| (&l.rendered.text, s.packets)),
        );
        w.family(
            "netpath_vxlan_peer_bytes",
            "VXLAN bytes (whole frames as netpath's hook saw them) per underlay interface, direction, local and remote VTEP.",
            Counter,
            seen.iter().map(|(l, s)| (&l.rendered.text, s.bytes)),
        );
        let dropped: Vec<(&PeerLabels, Series)> = self.dropped.in_order().collect();
        w.family(
            "netpath_vxlan_peer_dropped_packets",
            "VXLAN packets the kernel dropped on this node after netpath saw them (an iptables rule on the VXLAN port, say), per underlay interface, direction, local and remote VTEP.",
            Counter,
            dropped.iter().map(|(l, s)| (&l.rendered.text, s.packets)),
        );
        w.family(
            "netpath_vxlan_peer_dropped_bytes",
            "Bytes of the VXLAN packets counted in netpath_vxlan_peer_dropped_packets_total.",
            Counter,
            dropped.iter().map(|(l, s)| (&l.rendered.text, s.bytes)),
        );
        w.labelled(
            "netpath_node_info",
            "This node's name (--node-name) and each of its VTEP addresses (value 1), to join and name node pairs.",
            Gauge,
            self.info
                .iter()
                .map(|(n, v)| ([("node_name", n.as_str()), ("vtep", v.as_str())], 1u64)),
        );
    }
}

// No double quotes: OpenMetrics would need them escaped in HELP, the Prometheus text format not.
const DROPS_HELP: &str = "Packets dropped, by the kernel's own drop reason (the running kernel's enum \
    skb_drop_reason names, which differ between kernel versions; NETPATH_RULE: a netpath rule), subsystem, \
    interface and pod, summed over drop locations and directions. The heaviest series are shown, the rest \
    summed in the one whose reason is other.";
const DROP_BYTES_HELP: &str = "Bytes of the packets dropped, by the kernel's own drop reason (the running \
    kernel's enum skb_drop_reason names; NETPATH_RULE: a netpath rule), subsystem, interface and pod, as \
    netpath_drops_total.";

const DOCTOR_HELP: &str = "The daemon's last doctor run, by check and subject (an interface, a peer, a table): \
    0 ok, 1 warn, 2 fail. netpath doctor and /v1/doctor give the evidence and the fix.";

/// One series per (check, subject), the worst status when a pair is reported twice; at most `max`,
/// the worst first; by check and subject in the exposition.
fn doctor_series(findings: &[Finding], max: usize) -> Vec<(String, String, u8)> {
    let mut worst: BTreeMap<(&str, &str), u8> = BTreeMap::new();
    for f in findings {
        let v = worst.entry((f.check.as_str(), f.subject.as_str())).or_insert(0);
        *v = (*v).max(f.status.value());
    }
    let mut ranked: Vec<((&str, &str), u8)> = worst.into_iter().collect();
    if ranked.len() > max {
        // Stable: within a status, by check and subject.
        ranked.sort_by_key(|(_, v)| std::cmp::Reverse(*v));
        ranked.truncate(max);
        ranked.sort_by_key(|(k, _)| *k);
    }
    ranked
        .into_iter()
        .map(|((c, subject), v)| (c.to_string(), subject.to_string(), v))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Writes the exposition text itself. It used to go through `prometheus-client`'s encoder (and,
/// for the Prometheus text format, a second pass rewriting its OpenMetrics metadata): that
/// encoded every label set of every series on every scrape, about 285 ns a series, where the
/// label sets here are rendered once per series' life. The output is the crate's, byte for byte
/// (the golden test in this module): OpenMetrics names a counter family without `_total` in
/// `# HELP`/`# TYPE` and ends with `# EOF`; the Prometheus text format names it with the suffix
/// its samples carry and has no `# EOF`.
struct Writer {
    out: String,
    openmetrics: bool,
}

impl Writer {
    fn header(&mut self, name: &str, help: &str, kind: Kind) {
        let suffix = if kind == Kind::Counter && !self.openmetrics {
            "_total"
        } else {
            ""
        };
        let ty = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        for (what, text) in [("# HELP ", help), ("# TYPE ", ty)] {
            self.out.push_str(what);
            self.out.push_str(name);
            self.out.push_str(suffix);
            self.out.push(' ');
            self.out.push_str(text);
            self.out.push('\n');
        }
    }

    /// A sample's name and labels, up to the space before its value.
    fn sample_start(&mut self, name: &str, kind: Kind, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if kind == Kind::Counter {
            self.out.push_str("_total");
        }
        if !labels.is_empty() {
            write_labels(&mut self.out, labels);
        }
        self.out.push(' ');
    }

    fn value(&mut self, kind: Kind, v: u64) {
        let mut b = itoa::Buffer::new();
        self.out.push_str(match kind {
            Kind::Counter => b.format(v),
            // Gauges are i64 in the exposition's encoders; u64 beyond i64::MAX does not occur.
            Kind::Gauge => b.format(i64::try_from(v).unwrap_or(i64::MAX)),
        });
        self.out.push('\n');
    }

    /// A family whose label sets are rendered already; nothing if it has no series.
    fn family<'a>(&mut self, name: &str, help: &str, kind: Kind, samples: impl IntoIterator<Item = (&'a String, u64)>) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        self.header(name, help, kind);
        for (labels, v) in samples {
            self.out.push_str(name);
            if kind == Kind::Counter {
                self.out.push_str("_total");
            }
            self.out.push_str(labels);
            self.out.push(' ');
            self.value(kind, v);
        }
    }

    /// A family of a few series, labels rendered now; nothing if it has no series.
    fn labelled<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        samples: impl IntoIterator<Item = ([(&'static str, impl AsRef<str>); N], u64)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        self.header(name, help, kind);
        for (labels, v) in samples {
            let pairs = labels.each_ref().map(|(k, v)| (*k, v.as_ref()));
            self.sample_start(name, kind, &pairs);
            self.value(kind, v);
        }
    }

    /// A family of one series without labels.
    fn scalar(&mut self, name: &str, help: &str, kind: Kind, v: u64) {
        self.header(name, help, kind);
        self.sample_start(name, kind, &[]);
        self.value(kind, v);
    }
}

/// What one render reads from the backend.
#[derive(Debug, Default)]
pub struct Data {
    pub stats: Vec<StatRow>,
    pub flows: Vec<FlowRow>,
    pub status: StatusReport,
    pub ifaces: Vec<IfaceRow>,
    /// Every drop row (none from a backend without a drop table).
    pub drops: Vec<DropRow>,
    /// The doctor's last findings (none from a backend without a doctor, or before its first run).
    pub doctor: Vec<Finding>,
    /// The cluster view (None from a backend without a VXLAN peer table).
    pub peers: Option<VxlanPeers>,
}

impl Data {
    /// Read everything an exposition needs (blocking: map reads are syscalls).
    pub fn read(source: &dyn Backend, top_flows: usize) -> Result<Data, MetricsError> {
        fn err(what: &'static str) -> impl FnOnce(ApiError) -> MetricsError {
            move |source| MetricsError::Read { what, source }
        }
        let flows = if top_flows == 0 {
            Vec::new()
        } else {
            source
                .flows(&Filter {
                    top: Some(top_flows),
                    sort: Some(SortBy::Bytes),
                    ..Default::default()
                })
                .map_err(err("flows"))?
        };
        let drops = match source.drops(&DropFilter::default()) {
            Ok(rows) => rows,
            Err(ApiError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(err("drops")(e)),
        };
        let doctor = match source.doctor(&[]) {
            Ok(f) => f,
            Err(ApiError::NotFound(_)) => Vec::new(),
            // A doctor whose checks failed is no reason to fail the scrape: no series then.
            Err(e) => {
                log::debug!("metrics: no doctor series: {e}");
                Vec::new()
            }
        };
        let peers = match source.vxlan_peers() {
            Ok(p) => Some(p),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(err("VXLAN peers")(e)),
        };
        Ok(Data {
            stats: source.stats().map_err(err("interface counters"))?,
            flows,
            status: source.status().map_err(err("status"))?,
            ifaces: source.ifaces().map_err(err("interfaces"))?,
            drops,
            doctor,
            peers,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Exporter

/// The exposition, without a server: feed it a [`Backend`] and get text. Keeps the state that
/// grace periods and monotonic counters need, so use one `Exporter` for the life of a scrape
/// target.
pub struct Exporter {
    opts: MetricsOptions,
    state: ExportState,
    generation: u64,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("opts", &self.opts)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Exporter {
    pub fn new(opts: MetricsOptions) -> Exporter {
        Exporter {
            opts,
            state: ExportState::default(),
            generation: 0,
        }
    }

    pub fn options(&self) -> &MetricsOptions {
        &self.opts
    }

    /// Read `source` and render: OpenMetrics text if `openmetrics`, else the Prometheus text
    /// format. `now` drives the grace periods.
    pub fn render(&mut self, source: &dyn Backend, openmetrics: bool, now: Instant) -> Result<String, MetricsError> {
        let data = Data::read(source, self.opts.top_flows)?;
        self.update(&data, now);
        self.encode(openmetrics)
    }

    /// Take in one reading of the backend (what [`Exporter::render`] does before encoding).
    pub fn update(&mut self, data: &Data, now: Instant) {
        self.generation += 1;
        self.state.update(data, &self.opts, now, self.generation);
    }

    /// Encode the current state. (Infallible now; the `Result` keeps callers and the error
    /// type as they were.)
    pub fn encode(&mut self, openmetrics: bool) -> Result<String, MetricsError> {
        Ok(self.state.encode(openmetrics))
    }

    /// How many flow series the exposition shows now.
    pub fn flow_series(&self) -> usize {
        self.state.shown_flows.len()
    }

    /// How many series each drop family shows now (`reason="other"` included).
    pub fn drop_series(&self) -> usize {
        self.state.shown_drops.len() + usize::from(self.state.drop_other.is_some())
    }
}

/// Whether an `Accept` header prefers OpenMetrics (`application/openmetrics-text` with a q at
/// least that of `text/plain`).
pub fn wants_openmetrics(accept: &str) -> bool {
    let (mut om, mut text) = (None::<f32>, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = Some(om.map_or(q, |o| o.max(q))),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    om.is_some_and(|q| q > 0.0 && q >= text)
}

// ---------------------------------------------------------------------------------------------
// Server

pub struct MetricsServer {
    listener: std::net::TcpListener,
}

#[derive(Clone)]
struct AppState {
    source: Arc<dyn Backend>,
    exporter: Arc<Mutex<Exporter>>,
}

impl MetricsServer {
    /// Bind now (before the daemon enters a network namespace, so the address is the host's).
    pub fn bind(addr: &str) -> Result<MetricsServer, MetricsError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind {
            addr: addr.into(),
            source,
        })?;
        Ok(MetricsServer { listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serve `/metrics` until `shutdown` resolves (then give open requests a moment to finish).
    /// Must run on a tokio runtime with I/O and time enabled.
    pub async fn serve(
        self,
        source: Arc<dyn Backend>,
        opts: MetricsOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), MetricsError> {
        let addr = self.local_addr().to_string();
        let io_err = |source| MetricsError::Bind {
            addr: addr.clone(),
            source,
        };
        self.listener.set_nonblocking(true).map_err(io_err)?;
        let listener = tokio::net::TcpListener::from_std(self.listener).map_err(io_err)?;
        let state = AppState {
            source,
            exporter: Arc::new(Mutex::new(Exporter::new(opts))),
        };
        let app = router(state);
        let (signal, deadline) = graceful_shutdown(shutdown);
        let graceful = axum::serve(listener, app).with_graceful_shutdown(signal);
        tokio::select! {
            r = graceful.into_future() => r.map_err(|source| MetricsError::Serve { addr: addr.to_string(), source }),
            () = deadline => Ok(()),
        }
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; the metrics are at /metrics\n") })
        .with_state(state)
}

/// Whether a daemon with this status does its job: its programs are loaded and its first
/// reconcile is done, which attached at least one interface or found that every `--iface` glob
/// matches nothing yet (a node whose CNI has not made `cni0` yet: the daemon attaches as soon as
/// it appears, so it is ready to). The metrics server answers before the daemon attaches, so a
/// probe must not take "serving" for "counting". `Err` says why not.
pub fn readiness(status: &StatusReport) -> Result<String, String> {
    let Some(d) = &status.daemon else {
        return Err("no daemon state (the backend is not a running daemon)".into());
    };
    if d.programs.is_empty() {
        return Err("the datapath programs are not loaded yet".into());
    }
    if d.attached_interfaces > 0 {
        return Ok(format!("{} interface(s) attached", d.attached_interfaces));
    }
    if !d.unmatched_ifaces.is_empty() {
        return Ok(format!(
            "waiting for an interface to match {} (none does yet)",
            d.unmatched_ifaces.join(", ")
        ));
    }
    Err("attaching: no interface attached yet".into())
}

async fn readyz(State(st): State<AppState>) -> Response {
    let status = tokio::task::spawn_blocking(move || st.source.status()).await;
    let verdict = match status {
        Ok(Ok(s)) => readiness(&s),
        Ok(Err(e)) => Err(format!("status: {e}")),
        Err(e) => Err(format!("status: {e}")),
    };
    match verdict {
        Ok(why) => (StatusCode::OK, format!("ready: {why}\n")).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn index() -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>netpath exporter</title></head><body>\n<h1>netpath {}</h1>\n<p>Prometheus metrics: <a href=\"/metrics\">/metrics</a> (health: <a href=\"/healthz\">/healthz</a>, readiness: <a href=\"/readyz\">/readyz</a>)</p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let openmetrics = wants_openmetrics(&accept.join(","));
    let rendered = tokio::task::spawn_blocking(move || {
        st.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(&*st.source, openmetrics, Instant::now())
    })
    .await;
    match rendered {
        Ok(Ok(body)) => {
            let ct = if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                PROMETHEUS_CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics: rendering failed: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose answers the test sets.
    #[derive(Default)]
    pub(crate) struct Fake {
        pub stats: Mutex<Vec<StatRow>>,
        pub flows: Mutex<Vec<FlowRow>>,
        pub status: Mutex<serde_json::Value>,
        pub ifaces: Mutex<serde_json::Value>,
        pub drops: Mutex<Vec<DropRow>>,
        /// None: no doctor (NotFound).
        pub doctor: Mutex<Option<Vec<Finding>>>,
        /// None: no VXLAN peer table (NotFound).
        pub peers: Mutex<Option<VxlanPeers>>,
    }

    impl Backend for Fake {
        /// The test sets the status as JSON (parts of it, as an older or newer daemon might
        /// answer); absent fields read as zero.
        fn status(&self) -> Result<StatusReport, ApiError> {
            serde_json::from_value(self.status.lock().unwrap().clone()).map_err(|e| ApiError::Internal(e.to_string()))
        }
        fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
            Ok(self.stats.lock().unwrap().clone())
        }
        fn flows(&self, filter: &Filter) -> Result<Vec<FlowRow>, ApiError> {
            Ok(crate::model::flows::select(self.flows.lock().unwrap().clone(), filter))
        }
        fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
            serde_json::from_value(self.ifaces.lock().unwrap().clone()).map_err(|e| ApiError::Internal(e.to_string()))
        }
        /// Rows heaviest first, as the daemon answers.
        fn drops(&self, filter: &DropFilter) -> Result<Vec<DropRow>, ApiError> {
            let mut rows: Vec<DropRow> = self
                .drops
                .lock()
                .unwrap()
                .iter()
                .filter(|r| filter.matches(r))
                .cloned()
                .collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.packets));
            Ok(rows)
        }
        fn doctor(&self, checks: &[String]) -> Result<Vec<Finding>, ApiError> {
            let all = self.doctor.lock().unwrap().clone();
            let all = all.ok_or_else(|| ApiError::NotFound("no doctor".into()))?;
            Ok(all
                .into_iter()
                .filter(|f| checks.is_empty() || checks.contains(&f.check))
                .collect())
        }
        fn vxlan_peers(&self) -> Result<VxlanPeers, ApiError> {
            self.peers
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| ApiError::NotFound("no peer table".into()))
        }
    }

    fn finding(check: &str, subject: &str, status: crate::model::doctor::Status) -> Finding {
        Finding::bad(check, status, subject, format!("{check} on {subject}"), None)
    }

    #[expect(clippy::too_many_arguments, reason = "one drop row, every field a test varies")]
    fn drop_row(
        iface: &str,
        ifindex: u32,
        direction: &str,
        pod: Option<(&str, &str)>,
        reason: &str,
        subsystem: &str,
        location: &str,
        packets: u64,
    ) -> DropRow {
        DropRow {
            iface: iface.into(),
            ifindex,
            direction: direction.into(),
            netns: pod.map(|p| p.1.to_string()),
            pod: pod.map(|p| p.1.to_string()),
            pod_namespace: pod.map(|p| p.0.to_string()).filter(|n| !n.is_empty()),
            reason: reason.into(),
            subsystem: subsystem.into(),
            location: location.into(),
            packets,
            bytes: packets * 100,
        }
    }

    fn stat(
        iface: &str,
        ifindex: u32,
        direction: &str,
        class: &str,
        packets: u64,
        netns: Option<&str>,
        pod: Option<(&str, &str)>,
    ) -> StatRow {
        StatRow {
            iface: iface.into(),
            ifindex,
            direction: direction.into(),
            class: class.into(),
            packets,
            bytes: packets * 100,
            owner: Owner {
                netns: netns.map(String::from),
                pod: pod.map(|p| p.1.to_string()),
                pod_namespace: pod.map(|p| p.0.to_string()),
                ..Owner::default()
            },
        }
    }

    fn flow(iface: &str, ifindex: u32, sport: u16, dport: u16, bytes: u64) -> FlowRow {
        FlowRow {
            iface: iface.into(),
            ifindex,
            direction: "ingress".into(),
            family: "ipv4".into(),
            src: "10.244.0.2".into(),
            dst: "10.244.1.2".into(),
            proto: "tcp".into(),
            sport,
            dport,
            icmp_type: None,
            icmp_code: None,
            vni: 0,
            vlan: 0,
            outer_src: None,
            outer_dst: None,
            packets: bytes / 100 + 1,
            bytes,
            tcp_flags: "SA".into(),
            first_seen: String::new(),
            last_seen: String::new(),
            idle_s: 0,
            active: true,
            arp_op: None,
            owner: Owner {
                netns: Some("np-n1-pod-a".into()),
                ..Default::default()
            },
            class: netpath_common::class::TCP,
            ..FlowRow::default()
        }
    }

    fn fake() -> Fake {
        let f = Fake::default();
        *f.stats.lock().unwrap() = vec![
            stat("vethaaaa", 5, "ingress", "icmp", 3, Some("np-n1-pod-a"), None),
            stat(
                "vethbbbb",
                6,
                "egress",
                "tcp",
                10,
                Some("cni-1234"),
                Some(("default", "web-0")),
            ),
            stat("ul0", 2, "egress", "vxlan", 7, None, None),
        ];
        *f.flows.lock().unwrap() = vec![
            flow("vethaaaa", 5, 40000, 5201, 5000),
            flow("vethaaaa", 5, 40001, 5201, 3000),
            flow("vethaaaa", 5, 40002, 80, 100),
        ];
        *f.status.lock().unwrap() = serde_json::json!({
            "flow_table": { "capacity": 1000, "active": 3, "created": 10, "evictions": 4, "deleted": 3, "insert_failed": 0, "fill_ratio": 0.003 },
            "daemon": { "programs": [
                { "program": "netpath_xdp", "hook": "xdp", "id": 41 },
                { "program": "netpath_tc_ingress", "hook": "tc-ingress", "id": 42 },
            ], "attached_interfaces": 3 },
        });
        *f.ifaces.lock().unwrap() = serde_json::json!([
            { "iface": "vethaaaa", "mode": "tc", "tc_hook": "tcx" },
            { "iface": "vethbbbb", "mode": "tc", "tc_hook": "tcx" },
            { "iface": "ul0", "mode": "xdp", "tc_hook": "tcx" },
            { "iface": "lo", "mode": null, "tc_hook": null },
        ]);
        // Both directions of a pod's veth (one series), a reason without a name at two kernel
        // locations (one series), a rule's drops.
        let pod_a = Some(("", "np-n1-pod-a"));
        *f.drops.lock().unwrap() = vec![
            drop_row(
                "vethaaaa",
                5,
                "ingress",
                pod_a,
                "NETFILTER_DROP",
                "core",
                "nf_hook_slow+0x9c",
                4,
            ),
            drop_row(
                "vethaaaa",
                5,
                "egress",
                pod_a,
                "NETFILTER_DROP",
                "core",
                "nf_hook_slow+0x9c",
                2,
            ),
            drop_row(
                "ul0",
                2,
                "ingress",
                None,
                "NOT_SPECIFIED",
                "core",
                "ip_rcv_core+0x1b0",
                3,
            ),
            drop_row(
                "ul0",
                2,
                "ingress",
                None,
                "NOT_SPECIFIED",
                "core",
                "__netif_receive_skb_core+0x22",
                1,
            ),
            drop_row(
                "vethbbbb",
                6,
                "egress",
                Some(("default", "web-0")),
                "NETPATH_RULE",
                "netpath",
                "rule 3",
                7,
            ),
        ];
        f
    }

    /// The value of the sample line starting with `prefix` (name and labels), if present.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    fn count(text: &str, name: &str) -> usize {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .count()
    }

    /// `promtool check metrics` on `text`: fails the test on any problem; skipped without promtool.
    fn promtool(text: &str) {
        use std::io::Write as _;
        let bin = std::path::Path::new("/usr/bin/promtool");
        if !bin.exists() {
            log::info!("promtool not found at /usr/bin/promtool: skipping the lint of the exposition");
            return;
        }
        let mut child = std::process::Command::new(bin)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}\n{}{}\n--- exposition ---\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fixed backend with every family, odd label values, IPv6 and VXLAN flows: its exposition
    /// is compared byte for byte with the one the exporter produced through `prometheus-client`
    /// (testdata/, captured before the exporter wrote the text itself).
    fn golden_fake() -> Fake {
        let f = fake();
        f.stats.lock().unwrap()[1].owner.pod = Some("we\"ird\\pod\nname".into());
        f.stats.lock().unwrap().push(stat(
            "vethcccc",
            7,
            "ingress",
            "udp",
            12_345_678_901,
            Some("cni-9"),
            None,
        ));
        let mut v6 = flow("vethcccc", 7, 5353, 53, 77);
        (v6.family, v6.src, v6.dst, v6.proto) = ("ipv6".into(), "fd00::1".into(), "fd00::2".into(), "udp".into());
        let mut vx = flow("ul0", 2, 1000, 443, 4096);
        (vx.vni, vx.outer_src, vx.outer_dst) = (42, Some("172.27.0.11".into()), Some("172.27.16.10".into()));
        vx.owner = Owner::default();
        f.flows.lock().unwrap().extend([v6, vx]);
        f.status.lock().unwrap()["events"] =
            serde_json::json!({ "emitted": 9, "delivered": 7, "lost": 2, "by_kind": { "arp": 6, "dhcp": 2 } });
        f.status.lock().unwrap()["capture"] = serde_json::json!({ "lost": 5 });
        // A reason a subsystem defines; with top_drops 3 the two lightest series fold into `other`.
        f.drops.lock().unwrap().push(drop_row(
            "vethcccc",
            7,
            "ingress",
            Some(("", "cni-9")),
            "OVS_DROP_LAST_ACTION",
            "openvswitch",
            "ovs_dp_process_packet+0x1c8",
            2,
        ));
        use crate::model::doctor::Status;
        *f.doctor.lock().unwrap() = Some(vec![
            finding("rp_filter", "ul0", Status::Fail),
            finding("ip_forward", "node", Status::Ok),
            finding("arp_unanswered", "cni0 10.244.0.9", Status::Warn),
        ]);
        f
    }

    /// Renders of `golden_fake` (a first render, then one after counters moved) in both formats.
    fn golden_renders() -> [String; 4] {
        let f = golden_fake();
        let mut e = Exporter::new(MetricsOptions {
            top_flows: 5,
            top_drops: 3,
            ..MetricsOptions::default()
        });
        let t0 = Instant::now();
        let a = e.render(&f, false, t0).unwrap();
        let b = e.encode(true).unwrap();
        f.stats.lock().unwrap()[0].packets += 5;
        f.flows.lock().unwrap()[0].bytes += 1_000_000;
        f.drops.lock().unwrap()[2].packets += 1;
        f.status.lock().unwrap()["flow_table"]["fill_ratio"] = 0.00001.into();
        let c = e.render(&f, true, t0 + Duration::from_secs(1)).unwrap();
        let d = e.encode(false).unwrap();
        [a, b, c, d].map(|t| t.replace(env!("CARGO_PKG_VERSION"), "VERSION"))
    }

    #[test]
    fn exposition_is_byte_for_byte_the_prometheus_client_one() {
        let got = golden_renders().join("\n----\n");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/service/testdata/metrics-golden.txt");
        if std::env::var_os("NETPATH_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "line {}", i + 1);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn families_and_labels_are_present() {
        let f = fake();
        *f.doctor.lock().unwrap() = Some(vec![finding("mtu", "cni0", crate::model::doctor::Status::Warn)]);
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        for (name, ty) in [
            ("netpath_packets_total", "counter"),
            ("netpath_bytes_total", "counter"),
            ("netpath_flow_packets_total", "counter"),
            ("netpath_flow_bytes_total", "counter"),
            ("netpath_drops_total", "counter"),
            ("netpath_drop_bytes_total", "counter"),
            ("netpath_flows_active", "gauge"),
            ("netpath_flow_evictions_total", "counter"),
            ("netpath_map_fill_ratio", "gauge"),
            ("netpath_events_total", "counter"),
            ("netpath_events_lost_total", "counter"),
            ("netpath_capture_lost_total", "counter"),
            ("netpath_attached_interfaces", "gauge"),
            ("netpath_program_info", "gauge"),
            ("netpath_doctor_status", "gauge"),
            ("netpath_build_info", "gauge"),
        ] {
            assert!(
                t.contains(&format!("\n# TYPE {name} {ty}\n")),
                "no TYPE for {name}:\n{t}"
            );
            assert!(t.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{t}");
            assert!(count(&t, name) > 0, "no samples of {name}:\n{t}");
        }
        // Pod from the peer's netns when the CRI does not know it; the CRI's name when it does.
        assert_eq!(
            sample(
                &t,
                r#"netpath_packets_total{iface="vethaaaa",direction="ingress",class="icmp",pod="np-n1-pod-a",namespace=""}"#
            ),
            Some(3.0),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpath_bytes_total{iface="vethbbbb",direction="egress",class="tcp",pod="web-0",namespace="default"}"#
            ),
            Some(1000.0),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpath_packets_total{iface="ul0",direction="egress",class="vxlan",pod="",namespace=""}"#
            ),
            Some(7.0),
            "{t}"
        );
        // Flows differing only in the source port share a series.
        assert_eq!(
            sample(
                &t,
                r#"netpath_flow_bytes_total{iface="vethaaaa",direction="ingress",family="ipv4",src="10.244.0.2",dst="10.244.1.2",proto="tcp",dport="5201",vni="0",pod="np-n1-pod-a",namespace=""}"#
            ),
            Some(8000.0),
            "{t}"
        );
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 2, "{t}");
        // Drops by the kernel's reason, summed over directions and locations.
        assert_eq!(
            sample(
                &t,
                r#"netpath_drops_total{reason="NETFILTER_DROP",subsystem="core",iface="vethaaaa",pod="np-n1-pod-a",namespace=""}"#
            ),
            Some(6.0),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpath_drop_bytes_total{reason="NOT_SPECIFIED",subsystem="core",iface="ul0",pod="",namespace=""}"#
            ),
            Some(400.0),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                r#"netpath_drops_total{reason="NETPATH_RULE",subsystem="netpath",iface="vethbbbb",pod="web-0",namespace="default"}"#
            ),
            Some(7.0),
            "{t}"
        );
        assert_eq!(count(&t, "netpath_drops_total"), 3, "{t}");
        assert!(
            t.contains("enum skb_drop_reason"),
            "the HELP says whose names they are:\n{t}"
        );
        assert_eq!(sample(&t, "netpath_flows_active"), Some(3.0));
        assert_eq!(sample(&t, "netpath_flow_evictions_total"), Some(4.0));
        assert_eq!(sample(&t, r#"netpath_map_fill_ratio{map="flows"}"#), Some(0.003));
        assert_eq!(sample(&t, r#"netpath_events_total{kind="arp"}"#), Some(0.0), "{t}");
        assert_eq!(
            sample(&t, r#"netpath_events_total{kind="arp_unanswered"}"#),
            Some(0.0),
            "{t}"
        );
        assert_eq!(sample(&t, "netpath_events_lost_total"), Some(0.0));
        assert_eq!(sample(&t, "netpath_capture_lost_total"), Some(0.0));
        assert_eq!(sample(&t, r#"netpath_attached_interfaces{mode="tc"}"#), Some(2.0));
        assert_eq!(sample(&t, r#"netpath_attached_interfaces{mode="xdp"}"#), Some(1.0));
        assert_eq!(
            sample(&t, r#"netpath_attached_interfaces{mode="xdp-generic"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&t, r#"netpath_program_info{program="netpath_xdp",id="41",hook="xdp"}"#),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                &format!(r#"netpath_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))
            ),
            Some(1.0)
        );
        assert!(!t.contains("# EOF") && !t.contains("# UNIT"), "{t}");
        promtool(&t);

        // Events and losses, once the daemon reports them.
        f.status.lock().unwrap()["events"] = serde_json::json!({ "emitted": 9, "delivered": 7, "lost": 2, "by_kind": { "arp": 6, "arp_unanswered": 1, "dhcp": 2 } });
        f.status.lock().unwrap()["capture"] = serde_json::json!({ "lost": 5 });
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(sample(&t, r#"netpath_events_total{kind="arp"}"#), Some(6.0), "{t}");
        assert_eq!(sample(&t, r#"netpath_events_total{kind="arp_unanswered"}"#), Some(1.0));
        assert_eq!(sample(&t, r#"netpath_events_total{kind="dhcp"}"#), Some(2.0));
        assert_eq!(sample(&t, "netpath_events_lost_total"), Some(2.0));
        assert_eq!(sample(&t, "netpath_capture_lost_total"), Some(5.0));
        promtool(&t);
    }

    #[test]
    fn openmetrics_is_the_crates_text_with_eof() {
        let f = fake();
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, true, Instant::now()).unwrap();
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(t.contains("# TYPE netpath_packets counter\n"), "{t}");
        assert!(t.contains("# TYPE netpath_build_info gauge\n"), "{t}");
        assert!(t.lines().any(|l| l.starts_with("netpath_packets_total{")), "{t}");
        // The Prometheus text is the same samples.
        let p = e.encode(false).unwrap();
        let samples = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(samples(&t), samples(&p));
    }

    #[test]
    fn doctor_series_are_the_status_values_capped_worst_first_and_absent_without_a_doctor() {
        use crate::model::doctor::Status;
        let f = fake();
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(count(&t, "netpath_doctor_status"), 0, "no doctor, no series:\n{t}");
        assert!(!t.contains("# HELP netpath_doctor_status"), "{t}");
        *f.doctor.lock().unwrap() = Some(vec![
            finding("rp_filter", "ul0", Status::Fail),
            finding("mtu", "cni0", Status::Ok),
            // Reported twice: the worst wins.
            finding("mtu", "cni0", Status::Warn),
            finding("ip_forward", "node", Status::Ok),
        ]);
        let t = e.render(&f, false, Instant::now()).unwrap();
        promtool(&t);
        let doctor =
            |t: &str, c: &str, s: &str| sample(t, &format!(r#"netpath_doctor_status{{check="{c}",subject="{s}"}}"#));
        assert_eq!(doctor(&t, "rp_filter", "ul0"), Some(2.0), "{t}");
        assert_eq!(doctor(&t, "mtu", "cni0"), Some(1.0), "{t}");
        assert_eq!(doctor(&t, "ip_forward", "node"), Some(0.0), "{t}");
        assert_eq!(count(&t, "netpath_doctor_status"), 3, "{t}");
        // A subject gone is a series gone.
        f.doctor.lock().unwrap().as_mut().unwrap().remove(0);
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(doctor(&t, "rp_filter", "ul0"), None, "{t}");
        // Capped: the worst are kept.
        *f.doctor.lock().unwrap() = Some(
            (0..50)
                .map(|i| finding("veth_bridge", &format!("veth{i:02}"), Status::Ok))
                .chain([finding("vxlan_fdb", "172.27.16.10", Status::Fail)])
                .collect(),
        );
        let mut e = Exporter::new(MetricsOptions {
            doctor_series: 10,
            ..MetricsOptions::default()
        });
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(count(&t, "netpath_doctor_status"), 10, "{t}");
        assert_eq!(doctor(&t, "vxlan_fdb", "172.27.16.10"), Some(2.0), "{t}");
        assert_eq!(doctor(&t, "veth_bridge", "veth00"), Some(0.0), "{t}");
        assert_eq!(doctor(&t, "veth_bridge", "veth09"), None, "{t}");
    }

    fn peer_row(direction: &str, local: &str, peer: &str, packets: u64, dropped: u64) -> VxlanPeerRow {
        VxlanPeerRow {
            iface: "ul0".into(),
            ifindex: 2,
            direction: direction.into(),
            local: local.into(),
            peer: peer.into(),
            packets,
            bytes: packets * 100,
            dropped_packets: dropped,
            dropped_bytes: dropped * 100,
        }
    }

    #[test]
    fn cluster_series_are_per_peer_never_go_back_and_name_the_node() {
        let f = fake();
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert!(
            !t.contains("netpath_vxlan_peer") && !t.contains("netpath_node_info"),
            "{t}"
        );
        *f.peers.lock().unwrap() = Some(VxlanPeers {
            node: "np-node2".into(),
            vteps: vec![],
            peers: vec![],
        });
        let t = e.render(&f, false, Instant::now()).unwrap();
        // No VTEP known yet: the node is still named.
        assert_eq!(
            sample(&t, r#"netpath_node_info{node_name="np-node2",vtep=""}"#),
            Some(1.0),
            "{t}"
        );
        *f.peers.lock().unwrap() = Some(VxlanPeers {
            node: "np-node2".into(),
            vteps: vec!["172.27.16.10".into()],
            peers: vec![
                peer_row("egress", "172.27.16.10", "172.27.0.11", 5, 0),
                peer_row("ingress", "172.27.16.10", "172.27.0.11", 40, 30),
            ],
        });
        let t = e.render(&f, false, Instant::now()).unwrap();
        promtool(&t);
        let ingress = r#"{iface="ul0",direction="ingress",local="172.27.16.10",peer="172.27.0.11"}"#;
        let egress = r#"{iface="ul0",direction="egress",local="172.27.16.10",peer="172.27.0.11"}"#;
        let v = |t: &str, family: &str, labels: &str| sample(t, &format!("{family}{labels}"));
        assert_eq!(v(&t, "netpath_vxlan_peer_packets_total", ingress), Some(40.0), "{t}");
        assert_eq!(v(&t, "netpath_vxlan_peer_bytes_total", ingress), Some(4000.0), "{t}");
        assert_eq!(
            v(&t, "netpath_vxlan_peer_dropped_packets_total", ingress),
            Some(30.0),
            "{t}"
        );
        assert_eq!(
            v(&t, "netpath_vxlan_peer_dropped_bytes_total", ingress),
            Some(3000.0),
            "{t}"
        );
        assert_eq!(v(&t, "netpath_vxlan_peer_packets_total", egress), Some(5.0), "{t}");
        assert_eq!(
            v(&t, "netpath_vxlan_peer_dropped_packets_total", egress),
            Some(0.0),
            "{t}"
        );
        assert_eq!(
            sample(&t, r#"netpath_node_info{node_name="np-node2",vtep="172.27.16.10"}"#),
            Some(1.0),
            "{t}"
        );
        assert_eq!(count(&t, "netpath_node_info"), 1, "{t}");
        // The entry removed and re-created (its interface went away and came back): counted on
        // from where the series was.
        f.peers.lock().unwrap().as_mut().unwrap().peers[1] = peer_row("ingress", "172.27.16.10", "172.27.0.11", 3, 1);
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(v(&t, "netpath_vxlan_peer_packets_total", ingress), Some(43.0), "{t}");
        assert_eq!(
            v(&t, "netpath_vxlan_peer_dropped_packets_total", ingress),
            Some(31.0),
            "{t}"
        );
        // OpenMetrics: the families carry no _total in their metadata.
        let om = e.render(&f, true, Instant::now()).unwrap();
        assert!(om.contains("# TYPE netpath_vxlan_peer_packets counter\n"), "{om}");
    }

    #[test]
    fn top_n_caps_flow_series() {
        let f = fake();
        *f.flows.lock().unwrap() = (0..50u16)
            .map(|i| flow("vethaaaa", 5, 40000, 1000 + i, 100 * (u64::from(i) + 1)))
            .collect();
        let opts = MetricsOptions {
            top_flows: 10,
            grace: Duration::from_secs(300),
            ..MetricsOptions::default()
        };
        let mut e = Exporter::new(opts);
        let t0 = Instant::now();
        let t = e.render(&f, false, t0).unwrap();
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 10, "{t}");
        assert_eq!(count(&t, "netpath_flow_packets_total"), 10, "{t}");
        // The heaviest: dports 1040..=1049.
        for i in 40..50 {
            assert!(
                t.contains(&format!("dport=\"{}\"", 1000 + i)),
                "dport {} missing:\n{t}",
                1000 + i
            );
        }
        assert!(!t.contains("dport=\"1039\""), "{t}");
        // Other flows become the heaviest: the cap holds although the old ones are in grace.
        *f.flows.lock().unwrap() = (0..50u16)
            .map(|i| flow("vethaaaa", 5, 40000, 2000 + i, 100_000 + u64::from(i)))
            .collect();
        let t = e.render(&f, false, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 10, "{t}");
        assert!(t.contains("dport=\"2049\"") && !t.contains("dport=\"1049\""), "{t}");
        // Room again (fewer current flows): vanished flows in grace fill it with their last value.
        *f.flows.lock().unwrap() = vec![flow("vethaaaa", 5, 40000, 3000, 1)];
        let t = e.render(&f, false, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 10, "{t}");
        assert!(t.contains("dport=\"3000\""), "{t}");
        assert_eq!(e.flow_series(), 10);
        promtool(&t);
        // top_flows 0: no flow series at all.
        let mut e = Exporter::new(MetricsOptions {
            top_flows: 0,
            ..MetricsOptions::default()
        });
        let t = e.render(&f, false, t0).unwrap();
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 0, "{t}");
        promtool(&t);
    }

    /// `n` pods with one NETFILTER_DROP site each; pod `i` dropped `packets(i)`.
    fn pod_drops(n: u32, packets: impl Fn(u32) -> u64) -> Vec<DropRow> {
        (0..n)
            .map(|i| {
                let pod = format!("pod-{i:02}");
                drop_row(
                    &format!("veth{i:02}"),
                    10 + i,
                    "egress",
                    Some(("", &pod)),
                    "NETFILTER_DROP",
                    "core",
                    "nf_hook_slow+0x9c",
                    packets(i),
                )
            })
            .collect()
    }

    fn drops_of(t: &str, pod: &str) -> Option<f64> {
        sample(
            t,
            &format!(
                r#"netpath_drops_total{{reason="NETFILTER_DROP",subsystem="core",iface="veth{}",pod="{pod}",namespace=""}}"#,
                &pod[4..]
            ),
        )
    }

    const OTHER: &str = r#"netpath_drops_total{reason="other",subsystem="",iface="",pod="",namespace=""}"#;

    #[test]
    fn drop_series_are_capped_with_the_rest_in_other_which_never_goes_back() {
        let f = fake();
        *f.drops.lock().unwrap() = pod_drops(20, |i| 100 + u64::from(i));
        let mut e = Exporter::new(MetricsOptions {
            top_drops: 5,
            ..MetricsOptions::default()
        });
        let t0 = Instant::now();
        let t = e.render(&f, false, t0).unwrap();
        // The 4 heaviest (pods 19..=16) and `other` with the 16 others: the sum is every drop.
        assert_eq!(count(&t, "netpath_drops_total"), 5, "{t}");
        assert_eq!(count(&t, "netpath_drop_bytes_total"), 5, "{t}");
        assert_eq!(e.drop_series(), 5);
        for i in 16..20 {
            assert_eq!(drops_of(&t, &format!("pod-{i}")), Some(100.0 + f64::from(i)), "{t}");
        }
        let total: u64 = (0..20).map(|i| 100 + i).sum();
        let others: u64 = (0..16).map(|i| 100 + i).sum();
        assert_eq!(sample(&t, OTHER), Some(others as f64), "{t}");
        let sum = |t: &str| -> f64 {
            t.lines()
                .filter(|l| l.starts_with("netpath_drops_total{"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum()
        };
        assert_eq!(sum(&t), total as f64);
        promtool(&t);

        // A folded pod drops more: `other` grows by that much.
        f.drops.lock().unwrap()[3].packets += 10;
        let t = e.render(&f, false, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(sample(&t, OTHER), Some((others + 10) as f64), "{t}");
        // It becomes the heaviest: shown from then on as a new series with its whole count,
        // `other` keeps what it had (never lower), the cap holds.
        f.drops.lock().unwrap()[3].packets += 1000;
        let t = e.render(&f, false, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(drops_of(&t, "pod-03"), Some(1113.0), "{t}");
        assert_eq!(drops_of(&t, "pod-16"), None, "pushed out of the top:\n{t}");
        assert_eq!(sample(&t, OTHER), Some((others + 10) as f64), "{t}");
        assert_eq!(count(&t, "netpath_drops_total"), 5, "{t}");
        // The one pushed out adds to `other` from now on (while it stays lighter than the shown).
        f.drops.lock().unwrap()[16].packets += 1;
        let t = e.render(&f, false, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(drops_of(&t, "pod-16"), None, "{t}");
        assert_eq!(sample(&t, OTHER), Some((others + 11) as f64), "{t}");
        // Sites vanish (pods gone): `other` holds its value while they are in grace, and after.
        f.drops.lock().unwrap().truncate(2);
        let t = e.render(&f, false, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(sample(&t, OTHER), Some((others + 11) as f64), "{t}");
        let t = e.render(&f, false, t0 + Duration::from_secs(400)).unwrap();
        assert_eq!(sample(&t, OTHER), Some((others + 11) as f64), "{t}");
        assert_eq!(count(&t, "netpath_drops_total"), 3, "the two pods left and other:\n{t}");
        promtool(&t);

        // Under the cap nothing is folded; top_drops 0 shows no drop series.
        let mut e = Exporter::new(MetricsOptions {
            top_drops: 20,
            ..MetricsOptions::default()
        });
        let t = e.render(&f, false, t0).unwrap();
        assert_eq!((count(&t, "netpath_drops_total"), sample(&t, OTHER)), (2, None), "{t}");
        let mut e = Exporter::new(MetricsOptions {
            top_drops: 0,
            ..MetricsOptions::default()
        });
        let t = e.render(&f, false, t0).unwrap();
        assert_eq!(count(&t, "netpath_drops_total"), 0, "{t}");
        assert!(!t.contains("netpath_drop"), "{t}");
    }

    #[test]
    fn a_drop_site_listed_twice_counts_once_summed_and_series_never_go_back() {
        let f = fake();
        let row = drop_row(
            "ul0",
            2,
            "ingress",
            None,
            "NO_SOCKET",
            "core",
            "__udp4_lib_rcv+0x5c0",
            5,
        );
        *f.drops.lock().unwrap() = vec![row.clone(), row.clone()];
        let mut e = Exporter::new(MetricsOptions::default());
        let t0 = Instant::now();
        let series = r#"netpath_drops_total{reason="NO_SOCKET",subsystem="core",iface="ul0",pod="",namespace=""}"#;
        assert_eq!(sample(&e.render(&f, false, t0).unwrap(), series), Some(10.0));
        // The same reading again: no change.
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(1)).unwrap(), series),
            Some(10.0)
        );
        // The drop table's entry is re-created (interface gone and back): its count adds.
        *f.drops.lock().unwrap() = vec![DropRow { packets: 2, ..row }];
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(2)).unwrap(), series),
            Some(12.0)
        );
    }

    #[test]
    fn a_backend_without_drops_exports_no_drop_series_and_a_failing_one_fails() {
        /// The fake, with a drop table that answers `.1`.
        struct DropsAnswer(Fake, fn() -> Result<Vec<DropRow>, ApiError>);
        impl Backend for DropsAnswer {
            fn status(&self) -> Result<StatusReport, ApiError> {
                self.0.status()
            }
            fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
                self.0.stats()
            }
            fn flows(&self, f: &Filter) -> Result<Vec<FlowRow>, ApiError> {
                self.0.flows(f)
            }
            fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
                self.0.ifaces()
            }
            fn drops(&self, _: &DropFilter) -> Result<Vec<DropRow>, ApiError> {
                (self.1)()
            }
        }
        let no_table = DropsAnswer(fake(), || Err(ApiError::NotFound("no drop table".into())));
        let t = Exporter::new(MetricsOptions::default())
            .render(&no_table, false, Instant::now())
            .unwrap();
        assert!(!t.contains("netpath_drop"), "{t}");
        assert!(t.contains("netpath_packets_total"), "{t}");
        let failing = DropsAnswer(fake(), || Err(ApiError::Internal("drop table gone".into())));
        let e = Exporter::new(MetricsOptions::default())
            .render(&failing, false, Instant::now())
            .unwrap_err();
        assert!(
            e.to_string().contains("drops") && e.to_string().contains("drop table gone"),
            "{e}"
        );
    }

    #[test]
    fn vanished_series_keep_their_value_during_grace_then_go() {
        let f = fake();
        let grace = Duration::from_secs(300);
        let mut e = Exporter::new(MetricsOptions {
            top_flows: 100,
            grace,
            ..MetricsOptions::default()
        });
        let t0 = Instant::now();
        let veth = r#"netpath_packets_total{iface="vethaaaa",direction="ingress",class="icmp",pod="np-n1-pod-a",namespace=""}"#;
        let vflow = r#"netpath_flow_bytes_total{iface="vethaaaa",direction="ingress",family="ipv4",src="10.244.0.2",dst="10.244.1.2",proto="tcp",dport="80""#;
        let t = e.render(&f, false, t0).unwrap();
        assert_eq!(sample(&t, veth), Some(3.0));
        assert!(t.contains(vflow), "{t}");
        // The pod goes: the daemon deletes the interface's counters and its flows.
        f.stats.lock().unwrap().retain(|r| r.iface != "vethaaaa");
        f.flows.lock().unwrap().clear();
        let t = e.render(&f, false, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(sample(&t, veth), Some(3.0), "kept during grace:\n{t}");
        assert!(t.contains(vflow), "flow kept during grace:\n{t}");
        let t = e.render(&f, false, t0 + grace).unwrap();
        assert_eq!(sample(&t, veth), Some(3.0), "kept until grace ends:\n{t}");
        let t = e.render(&f, false, t0 + grace + Duration::from_secs(1)).unwrap();
        assert_eq!(sample(&t, veth), None, "gone after grace:\n{t}");
        assert!(!t.contains(vflow), "flow gone after grace:\n{t}");
        assert_eq!(count(&t, "netpath_flow_bytes_total"), 0, "{t}");
        // Series of interfaces that stay are unaffected.
        assert_eq!(
            sample(
                &t,
                r#"netpath_packets_total{iface="ul0",direction="egress",class="vxlan",pod="",namespace=""}"#
            ),
            Some(7.0)
        );
        promtool(&t);
    }

    #[test]
    fn counters_never_go_backwards() {
        let f = fake();
        let mut e = Exporter::new(MetricsOptions::default());
        let t0 = Instant::now();
        let ul0 = r#"netpath_packets_total{iface="ul0",direction="egress",class="vxlan",pod="",namespace=""}"#;
        assert_eq!(sample(&e.render(&f, false, t0).unwrap(), ul0), Some(7.0));
        // ul0 goes, and a new ul0 (same name and ifindex) counts from zero within the grace period.
        f.stats.lock().unwrap().retain(|r| r.iface != "ul0");
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(1)).unwrap(), ul0),
            Some(7.0)
        );
        f.stats
            .lock()
            .unwrap()
            .push(stat("ul0", 2, "egress", "vxlan", 2, None, None));
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(2)).unwrap(), ul0),
            Some(9.0)
        );
        f.stats.lock().unwrap().last_mut().unwrap().packets = 5;
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(3)).unwrap(), ul0),
            Some(12.0)
        );
        // The same interface under another pod name: a new series from its full value.
        let pod_b =
            r#"netpath_packets_total{iface="vethaaaa",direction="ingress",class="icmp",pod="b",namespace="ns"}"#;
        f.stats.lock().unwrap()[0].owner.pod = Some("b".into());
        f.stats.lock().unwrap()[0].owner.pod_namespace = Some("ns".into());
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(4)).unwrap(), pod_b),
            Some(3.0)
        );
        // A flow evicted and re-created: its new bytes add to the series.
        let fl = r#"netpath_flow_bytes_total{iface="vethaaaa",direction="ingress",family="ipv4",src="10.244.0.2",dst="10.244.1.2",proto="tcp",dport="80",vni="0",pod="np-n1-pod-a",namespace=""}"#;
        assert_eq!(sample(&e.encode(false).unwrap(), fl), Some(100.0));
        f.flows.lock().unwrap()[2].bytes = 40;
        assert_eq!(
            sample(&e.render(&f, false, t0 + Duration::from_secs(5)).unwrap(), fl),
            Some(140.0)
        );
        // A daemon counter read lower than before (a racy computation) holds its value.
        f.status.lock().unwrap()["flow_table"]["evictions"] = 2.into();
        assert_eq!(
            sample(
                &e.render(&f, false, t0 + Duration::from_secs(6)).unwrap(),
                "netpath_flow_evictions_total"
            ),
            Some(4.0)
        );
        f.status.lock().unwrap()["flow_table"]["evictions"] = 6.into();
        assert_eq!(
            sample(
                &e.render(&f, false, t0 + Duration::from_secs(7)).unwrap(),
                "netpath_flow_evictions_total"
            ),
            Some(6.0)
        );
    }

    #[test]
    fn odd_label_values_are_escaped_and_promtool_clean() {
        let f = fake();
        f.stats.lock().unwrap()[1].owner.pod = Some("we\"ird\\pod\nname".into());
        f.status.lock().unwrap()["daemon"]["programs"] =
            serde_json::json!([{ "program": "p", "hook": "xdp", "id": 0 }]);
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert!(t.contains(r#"pod="we\"ird\\pod\nname""#), "{t}");
        promtool(&t);
    }

    #[test]
    fn status_without_daemon_sections_still_renders() {
        let f = Fake::default();
        *f.status.lock().unwrap() = serde_json::json!({});
        *f.ifaces.lock().unwrap() = serde_json::json!([]);
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert_eq!(sample(&t, "netpath_flows_active"), Some(0.0), "{t}");
        assert_eq!(count(&t, "netpath_packets_total"), 0);
        assert_eq!(count(&t, "netpath_events_total"), EVENT_KINDS.len());
        promtool(&t);
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_openmetrics("application/openmetrics-text; version=1.0.0"));
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(
            "application/openmetrics-text;q=0.2, text/plain;q=0.9"
        ));
        assert!(wants_openmetrics(
            "text/plain;q=0.5, Application/OpenMetrics-Text;version=1.0.0"
        ));
    }

    /// One HTTP/1.0 exchange: (status line, headers, body).
    async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_ascii_lowercase(), body.to_string())
    }

    #[test]
    fn server_answers_metrics_health_and_index() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = MetricsServer::bind("127.0.0.1:0").unwrap();
            let addr = server.local_addr();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.serve(Arc::new(fake()), MetricsOptions::default(), async move {
                let _ = rx.await;
            }));
            let (st, h, body) = get(addr, "/metrics", None).await;
            assert!(st.contains(" 200 "), "{st}");
            assert!(h.contains("content-type: text/plain; version=0.0.4"), "{h}");
            assert!(
                body.contains("# TYPE netpath_packets_total counter") && !body.contains("# EOF"),
                "{body}"
            );
            promtool(&body);
            let (st, h, body) = get(addr, "/metrics", Some("application/openmetrics-text; version=1.0.0")).await;
            assert!(st.contains(" 200 "), "{st}");
            assert!(h.contains("content-type: application/openmetrics-text"), "{h}");
            assert!(body.ends_with("# EOF\n"), "{body}");
            let (st, _, body) = get(addr, "/healthz", None).await;
            assert!(st.contains(" 200 ") && body == "ok\n", "{st} {body}");
            let (st, _, body) = get(addr, "/readyz", None).await;
            assert!(
                st.contains(" 200 ") && body == "ready: 3 interface(s) attached\n",
                "{st} {body}"
            );
            let (st, h, body) = get(addr, "/", None).await;
            assert!(
                st.contains(" 200 ") && h.contains("text/html") && body.contains("/metrics"),
                "{st} {body}"
            );
            let (st, _, _) = get(addr, "/nope", None).await;
            assert!(st.contains(" 404 "), "{st}");
            tx.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        });
    }

    #[test]
    fn readiness_needs_programs_and_a_finished_attach() {
        let status = |daemon: serde_json::Value| -> StatusReport {
            serde_json::from_value(serde_json::json!({ "daemon": daemon })).unwrap()
        };
        let prog = serde_json::json!([{ "program": "netpath_tc_ingress", "hook": "tc", "id": 7 }]);
        let e = readiness(&StatusReport::default()).unwrap_err();
        assert!(e.contains("no daemon state"), "{e}");
        let e = readiness(&status(serde_json::json!({ "attached_interfaces": 2 }))).unwrap_err();
        assert!(e.contains("not loaded"), "{e}");
        // Loaded, first reconcile not done: the metrics server already answers then.
        let e = readiness(&status(serde_json::json!({ "programs": prog }))).unwrap_err();
        assert!(e.contains("attaching"), "{e}");
        let ok = readiness(&status(
            serde_json::json!({ "programs": prog, "attached_interfaces": 2 }),
        ))
        .unwrap();
        assert_eq!(ok, "2 interface(s) attached");
        let ok = readiness(&status(
            serde_json::json!({ "programs": prog, "unmatched_ifaces": ["cni[0]"] }),
        ))
        .unwrap();
        assert!(ok.contains("cni[0]"), "{ok}");
    }

    #[test]
    fn readyz_answers_503_with_the_reason_until_ready() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = MetricsServer::bind("127.0.0.1:0").unwrap();
            let addr = server.local_addr();
            let f = Arc::new(fake());
            f.status.lock().unwrap()["daemon"]["attached_interfaces"] = serde_json::json!(0);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.serve(
                Arc::clone(&f) as Arc<dyn Backend>,
                MetricsOptions::default(),
                async move {
                    let _ = rx.await;
                },
            ));
            let (st, _, body) = get(addr, "/readyz", None).await;
            assert!(
                st.contains(" 503 ") && body == "not ready: attaching: no interface attached yet\n",
                "{st} {body}"
            );
            // Liveness is unaffected: the process serves.
            let (st, _, _) = get(addr, "/healthz", None).await;
            assert!(st.contains(" 200 "), "{st}");
            f.status.lock().unwrap()["daemon"]["attached_interfaces"] = serde_json::json!(1);
            let (st, _, body) = get(addr, "/readyz", None).await;
            assert!(st.contains(" 200 ") && body.starts_with("ready: 1 "), "{st} {body}");
            // A status the backend cannot give is not ready, with its error.
            *f.status.lock().unwrap() = serde_json::json!({ "daemon": "garbage" });
            let (st, _, body) = get(addr, "/readyz", None).await;
            assert!(
                st.contains(" 503 ") && body.starts_with("not ready: status: "),
                "{st} {body}"
            );
            tx.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        });
    }

    #[test]
    fn backend_failure_is_an_error() {
        struct Broken;
        impl Backend for Broken {
            fn status(&self) -> Result<StatusReport, ApiError> {
                Err(ApiError::Internal("map gone".into()))
            }
            fn stats(&self) -> Result<Vec<StatRow>, ApiError> {
                Ok(Vec::new())
            }
            fn flows(&self, _: &Filter) -> Result<Vec<FlowRow>, ApiError> {
                Ok(Vec::new())
            }
            fn ifaces(&self) -> Result<Vec<IfaceRow>, ApiError> {
                Ok(Vec::new())
            }
        }
        let e = Exporter::new(MetricsOptions::default())
            .render(&Broken, false, Instant::now())
            .unwrap_err();
        assert!(e.to_string().contains("map gone"), "{e}");
    }

    /// `netpath_ipfix_*` from the daemon's status: per collector, every error kind, promtool clean;
    /// nothing without `--ipfix`.
    #[test]
    fn ipfix_families_come_from_the_status_per_collector() {
        let f = fake();
        let mut e = Exporter::new(MetricsOptions::default());
        let t = e.render(&f, false, Instant::now()).unwrap();
        assert!(!t.contains("netpath_ipfix_"), "{t}");
        f.status.lock().unwrap()["daemon"]["ipfix"] = serde_json::json!({
            "interval_s": 60, "idle_timeout_s": 30, "template_interval_s": 60,
            "flows_exported": 7, "flows_vanished": 1,
            "collectors": [
                { "address": "127.0.0.1:4739", "messages": 5, "records": 40, "bytes": 4000, "templates": 12,
                  "errors": { "refused": 0, "unreachable": 0, "would_block": 0, "other": 0 } },
                { "address": "[::1]:4739", "messages": 0, "records": 0, "bytes": 0, "templates": 0,
                  "errors": { "refused": 3 }, "last_error": "Connection refused" },
            ],
        });
        let t = e.render(&f, false, Instant::now()).unwrap();
        for (prefix, v) in [
            (r#"netpath_ipfix_messages_total{collector="127.0.0.1:4739"}"#, 5.0),
            (r#"netpath_ipfix_records_total{collector="127.0.0.1:4739"}"#, 40.0),
            (r#"netpath_ipfix_bytes_total{collector="127.0.0.1:4739"}"#, 4000.0),
            (r#"netpath_ipfix_templates_total{collector="127.0.0.1:4739"}"#, 12.0),
            (
                r#"netpath_ipfix_send_errors_total{collector="[::1]:4739",kind="refused"}"#,
                3.0,
            ),
            (
                r#"netpath_ipfix_send_errors_total{collector="[::1]:4739",kind="other"}"#,
                0.0,
            ),
            ("netpath_ipfix_flows_exported_total", 7.0),
            ("netpath_ipfix_flows_vanished_total", 1.0),
        ] {
            assert_eq!(sample(&t, prefix), Some(v), "{prefix}\n{t}");
        }
        assert_eq!(count(&t, "netpath_ipfix_send_errors_total"), 8, "{t}");
        promtool(&t);
        let om = e.render(&f, true, Instant::now()).unwrap();
        assert!(om.contains("# TYPE netpath_ipfix_records counter\n"), "{om}");
    }
}
