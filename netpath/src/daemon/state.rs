//! The state the event loop, the control API and the metrics exporter share: the maps, the rule
//! table, the daemon's view of links and pods, and the event feed.
use std::{path::PathBuf, sync::Mutex, time::Instant};

use netpath_common::{diag, event::kind};

use super::{doctor::DoctorState, view::View};
use crate::{
    datapath::{
        attach::Mode,
        maps::Maps,
        names::{Recorded, Recorder},
        rules::RuleTable,
    },
    doctor::Observed,
    error::{Error, Result},
    model::{
        doctor::Finding,
        drops::{DropFilter, DropRow},
        events::{doctor_row, EventRow},
        flows::{self, Clock, Filter, FlowRow},
        ifaces::{IfaceRow, ProgramRef},
        owner::Owner,
        peers::{self, VxlanPeers},
        rules::{self, FastpathStatus, RuleRow, RuleSpec},
        stats::{self, StatRow},
        status::{DaemonStatus, Latency, StatusReport},
    },
    node::view,
    service::api::{ApiError, Backend, FastpathRequest},
};

/// Events read by this daemon (delivered ones are flushed to the pinned diag map on every tick,
/// so the count survives restarts like the kernel's emitted/lost counts).
#[derive(Default)]
pub(super) struct EventCounts {
    pub(super) unflushed_delivered: u64,
    pub(super) by_kind: [u64; kind::COUNT],
}

/// State the API and the printer share with the event loop.
pub struct Shared {
    pub(super) maps: Mutex<Maps>,
    /// None when the object has no rule maps (kept optional so an old pin set does not stop
    /// the daemon).
    pub(super) rules: Mutex<Option<RuleTable>>,
    /// The bridge the fast path serves, by name.
    pub(super) fastpath_bridge: Mutex<Option<String>>,
    pub(super) events: tokio::sync::broadcast::Sender<EventRow>,
    pub(super) event_counts: Mutex<EventCounts>,
    pub(super) view: Mutex<View>,
    /// Flows still going at the last age scan (`model::flows::is_active`); None before the first.
    pub(super) flows_active: Mutex<Option<u64>>,
    /// The loaded programs (XDP joins on its first attach).
    pub(super) programs: Mutex<Vec<ProgramRef>>,
    pub(super) started: Instant,
    pub(super) pin_dir: Option<PathBuf>,
    pub(super) persist: bool,
    /// The names kept with the pins (None with `--no-pin`).
    pub(super) names: Mutex<Option<Recorder>>,
    /// The drop tracer's state and what names drop sites.
    pub(super) drops: Mutex<super::drops::Drops>,
    /// The periodic doctor: its last findings and the unanswered ARP it is fed.
    pub(super) doctor: Mutex<DoctorState>,
    /// The IPFIX exporter's counters (None without `--ipfix`).
    pub(super) ipfix: Option<std::sync::Arc<Mutex<crate::model::ipfix::IpfixStatus>>>,
    /// Flows of interfaces that went away, with their final counts, for the IPFIX exporter's next
    /// round (it takes them all; empty without `--ipfix`).
    pub(super) ipfix_departed: Mutex<Vec<crate::service::ipfix::FlowSample>>,
    /// This node's name in the cluster view (`--node-name`).
    pub(super) node_name: String,
}

impl Shared {
    pub fn stat_rows(&self) -> Result<Vec<StatRow>> {
        let counters = self.maps.lock().unwrap().iface_counters()?;
        let view = self.view.lock().unwrap();
        let mut rows = stats::rows(&counters, |i| view.name(i));
        for r in &mut rows {
            let o = view.owner(r.ifindex);
            r.owner = o;
        }
        Ok(rows)
    }

    pub fn flow_rows(&self, filter: &Filter) -> Result<Vec<FlowRow>> {
        let mut all = self.maps.lock().unwrap().flows()?;
        let view = self.view.lock().unwrap();
        // With `top`, choose on the raw entries first: building (and sorting) a row for each of
        // 100k flows to keep 100 cost a scrape hundreds of milliseconds.
        if let Some(n) = filter.top.filter(|_| !filter.by_row()) {
            all.retain(|(k, _)| {
                filter.class.is_none_or(|c| flows::class_of(k) == c)
                    && filter.iface.as_deref().is_none_or(|i| view.name(k.ifindex) == i)
            });
            let by = filter.sort.unwrap_or(flows::SortBy::Bytes);
            let weight = |v: &netpath_common::FlowValue| match by {
                flows::SortBy::Bytes => (v.bytes, v.packets),
                flows::SortBy::Packets => (v.packets, v.bytes),
            };
            if all.len() > n {
                all.select_nth_unstable_by(n - 1, |a, b| weight(&b.1).cmp(&weight(&a.1)));
                all.truncate(n);
            }
        }
        let clock = Clock::now();
        let mut rows: Vec<FlowRow> = all
            .iter()
            .map(|(k, v)| {
                let mut r = flows::row(k, v, view.name(k.ifindex), &clock);
                let o = view.owner(k.ifindex);
                r.owner = o;
                r
            })
            .collect();
        drop(view);
        flows::name_drop_reasons(&mut rows, &self.drops.lock().unwrap().reasons());
        Ok(flows::select(rows, filter))
    }

    /// Count a row by kind, name its interface and owner, and hand it to every watcher. An
    /// unanswered ARP request is also counted for the doctor, by interface and target.
    pub(super) fn publish(&self, r: EventRow) {
        let k = kind::from_name(&r.kind);
        if let Some(k) = k {
            self.event_counts.lock().unwrap().by_kind[k as usize] += 1;
        }
        // A doctor event is about the node, not an interface: nothing to name.
        let r = if k == Some(kind::DOCTOR) { r } else { self.named(r) };
        if k == Some(kind::ARP_UNANSWERED) {
            if let Some(target) = &r.target_ip {
                self.doctor.lock().unwrap().note_arp_unanswered(&r.iface, target);
            }
        }
        // No watcher is fine: send fails only when nobody listens.
        let _ = self.events.send(r);
    }

    /// Name a row (counted already) and hand it to every watcher.
    pub(super) fn send(&self, r: EventRow) {
        let r = self.named(r);
        let _ = self.events.send(r);
    }

    /// A row with its interface, owner (and for a drop, its site) named.
    fn named(&self, mut r: EventRow) -> EventRow {
        if let Some(site) = r.drop_site {
            // A drop names its own namespace and interface (it may be anywhere on the node).
            let n = {
                let view = self.view.lock().unwrap();
                self.drops.lock().unwrap().name(&view, &site)
            };
            r.iface = n.site.iface;
            // `netns` is where the packet died; `pod` the pod it belongs to (which may live in
            // another namespace: the one behind the veth it died on).
            r.owner.pod = n.site.owner.pod_label().map(str::to_string);
            r.owner.pod_namespace = n.site.owner.pod_namespace;
            r.owner.role = n.site.owner.role;
            r.owner.netns = n.site.netns;
            r.reason = Some(n.reason);
            r.subsystem = Some(n.subsystem);
            r.location = Some(n.site.location);
            return r;
        }
        let view = self.view.lock().unwrap();
        if r.iface.is_empty() {
            r.iface = view.name(r.ifindex);
        }
        // A departed pod's flow ends carry the owner it had (the link is gone from the view).
        if r.owner == Owner::default() {
            r.owner = view.owner(r.ifindex);
        }
        drop(view);
        r
    }

    /// What the doctor's checks join with the node's state: the drop rows, VXLAN packets per
    /// remote VTEP (the per-peer counters), unanswered ARP since start. Reads the maps: run it
    /// off the event loop.
    pub(super) fn doctor_observed(&self) -> Observed {
        let rows = Backend::drops(self, &DropFilter::default()).unwrap_or_else(|e| {
            log::warn!("doctor: no drop rows: {e}");
            Vec::new()
        });
        // What happened since the last run: evidence of what goes on now, which an old drop or
        // a long-answered ARP request does not keep alive.
        let (drops, arp_unanswered) = {
            let mut d = self.doctor.lock().unwrap();
            (d.drops_since_last_run(rows), d.take_arp_unanswered())
        };
        let vxlan_to = {
            let maps = self.maps.lock().unwrap();
            match maps.peers.is_some() {
                true => maps.vxlan_peers().map(|p| crate::doctor::vxlan_to_peers(&p)),
                false => maps.flows().map(|f| crate::doctor::vxlan_to(&f)),
            }
        };
        let vxlan_to = vxlan_to.unwrap_or_else(|e| {
            log::warn!("doctor: reading the VXLAN traffic per peer: {e}");
            Default::default()
        });
        Observed {
            available: true,
            drops,
            since: "since the last check".into(),
            events: true,
            arp_unanswered,
            vxlan_to,
        }
    }

    /// A doctor run finished: keep its findings, and publish a `doctor` event for every (check,
    /// subject) whose state changed.
    pub(super) fn doctor_finished(&self, outcome: std::result::Result<Vec<Finding>, String>) {
        if let Err(e) = &outcome {
            log::warn!("doctor: the checks failed: {e}");
        }
        let changed = self.doctor.lock().unwrap().finish(outcome, Instant::now());
        for f in &changed {
            if f.status != crate::model::doctor::Status::Ok {
                log::warn!(
                    "doctor: {} {} is {}: {}",
                    f.check,
                    f.subject,
                    f.status.name(),
                    f.evidence
                );
            }
            self.publish(doctor_row(f));
        }
    }

    /// Events read from the ring: `delivered` in all, `by_kind` by kernel kind.
    pub(super) fn count_read(&self, delivered: u64, by_kind: &[u64; kind::COUNT]) {
        let mut c = self.event_counts.lock().unwrap();
        c.unflushed_delivered += delivered;
        for (total, n) in c.by_kind.iter_mut().zip(by_kind) {
            *total += n;
        }
    }

    /// Keep with the pins what the view says about each link, for the readers of the pins after
    /// this daemon exits.
    pub(super) fn record_names(&self) {
        let mut guard = self.names.lock().unwrap();
        let Some(rec) = guard.as_mut() else { return };
        let view = self.view.lock().unwrap();
        for l in view.links.values() {
            let r = Recorded {
                iface: l.name.clone(),
                owner: view.owner(l.ifindex),
            };
            if let Err(e) = rec.record(l.ifindex, &r) {
                log::warn!("{e}; `netpath stats` without a daemon may not name {}", l.name);
                return;
            }
        }
    }

    /// Persist the delivered count (pinned, beside the kernel's emitted and lost).
    pub(super) fn flush_delivered(&self) {
        let n = std::mem::take(&mut self.event_counts.lock().unwrap().unflushed_delivered);
        if n > 0 {
            if let Err(e) = self.maps.lock().unwrap().add_diag(diag::EVENTS_DELIVERED, n) {
                log::warn!("recording delivered events: {e}");
                self.event_counts.lock().unwrap().unflushed_delivered += n;
            }
        }
    }

    pub fn status(&self) -> Result<StatusReport> {
        let active = *self.flows_active.lock().unwrap();
        let mut v = self.maps.lock().unwrap().status(active)?;
        {
            let c = self.event_counts.lock().unwrap();
            let ev = &mut v.events;
            ev.delivered += c.unflushed_delivered;
            ev.pending = Some(ev.emitted.saturating_sub(ev.delivered + ev.lost));
            ev.by_kind = Some(
                kind::NAMES
                    .iter()
                    .zip(c.by_kind)
                    .map(|(n, c)| (n.to_string(), c))
                    .collect(),
            );
        }
        let view = self.view.lock().unwrap();
        v.daemon = Some(DaemonStatus {
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            pin_dir: self.pin_dir.clone(),
            persist: self.persist,
            attached_interfaces: view.attached.len(),
            programs: self.programs.lock().unwrap().clone(),
            departed: view.departed.clone(),
            attach_latency_ms: Latency::of(&view.attach_latency_ms),
            unmatched_ifaces: view.unmatched.clone(),
            drop_tracer: self.drops.lock().unwrap().tracer.clone(),
            doctor: Some(self.doctor.lock().unwrap().summary(Instant::now())),
            ipfix: self.ipfix.as_ref().map(|s| s.lock().unwrap().clone()),
        });
        Ok(v)
    }

    /// The cluster view: this node's name, its VTEPs (the VXLAN devices' local addresses and
    /// those the VXLAN frames carried) and the per-peer rows.
    pub fn vxlan_peers(&self) -> Result<VxlanPeers> {
        let entries = self.maps.lock().unwrap().vxlan_peers()?;
        let view = self.view.lock().unwrap();
        let rows = peers::rows(&entries, |i| view.name(i));
        let configured = view.links.values().filter_map(|l| l.vxlan_local).map(|a| a.to_string());
        let vteps = peers::vteps(configured, &rows);
        Ok(VxlanPeers {
            node: self.node_name.clone(),
            vteps,
            peers: rows,
        })
    }

    pub fn iface_rows(&self) -> Vec<IfaceRow> {
        let view = self.view.lock().unwrap();
        view.links
            .values()
            .map(|l| {
                let a = view.attached.get(&l.ifindex);
                let ns = l.link_netnsid.and_then(|id| view.netns.get(&id));
                view::iface_row(
                    l,
                    l.master.map(|m| view.name(m)),
                    view.owner(l.ifindex),
                    view.pod(l.ifindex),
                    view::peer_link(l, ns),
                    a.map(|a| (a.mode.to_string(), a.tc_hook.to_string())),
                    view::kernel_programs(&l.name),
                )
            })
            .collect()
    }
}

pub(super) fn internal(e: Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Backend for Shared {
    fn status(&self) -> std::result::Result<StatusReport, ApiError> {
        self.status().map_err(internal)
    }
    fn stats(&self) -> std::result::Result<Vec<StatRow>, ApiError> {
        self.stat_rows().map_err(internal)
    }
    fn flows(&self, filter: &Filter) -> std::result::Result<Vec<FlowRow>, ApiError> {
        self.flow_rows(filter).map_err(internal)
    }
    fn ifaces(&self) -> std::result::Result<Vec<IfaceRow>, ApiError> {
        Ok(self.iface_rows())
    }
    fn drops(&self, filter: &DropFilter) -> std::result::Result<Vec<DropRow>, ApiError> {
        let sites = self.maps.lock().unwrap().drops().map_err(internal)?;
        let view = self.view.lock().unwrap();
        self.drops.lock().unwrap().rows(&view, &sites, filter)
    }
    fn doctor(&self, checks: &[String]) -> std::result::Result<Vec<Finding>, ApiError> {
        self.doctor.lock().unwrap().findings(checks)
    }
    fn vxlan_peers(&self) -> std::result::Result<VxlanPeers, ApiError> {
        self.vxlan_peers().map_err(internal)
    }
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<EventRow>> {
        Some(self.events.subscribe())
    }
    fn check_names(&self, iface: Option<&str>, pod: Option<&str>) -> std::result::Result<(), ApiError> {
        if let Some(name) = iface {
            let view = self.view.lock().unwrap();
            if !view.links.values().any(|l| l.name == name) {
                return Err(Error::UnknownInterface {
                    name: name.into(),
                    ns: String::new(),
                    available: view.link_names(),
                }
                .into());
            }
        }
        if let Some(pod) = pod {
            crate::capture::targets::check_pod(pod, &self.iface_rows())?;
        }
        Ok(())
    }
    fn rules(&self) -> std::result::Result<Vec<RuleRow>, ApiError> {
        self.rule_rows().map_err(internal)
    }
    fn add_rule(&self, spec: RuleSpec) -> std::result::Result<RuleRow, ApiError> {
        let mut guard = self.rules.lock().unwrap();
        let table = guard
            .as_mut()
            .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
        let current = table.read().map_err(internal)?;
        // The rules lock (held) serialises additions, so the count cannot move under us.
        let issued = self.maps.lock().unwrap().diag().map_err(internal)?[diag::RULE_IDS_ISSUED as usize];
        let issued = u32::try_from(issued).unwrap_or(u32::MAX);
        let id = rules::next_id(&current, issued);
        let rule = rules::build(&spec, id, &ViewResolver(self)).map_err(ApiError::from)?;
        let next = rules::with_added(&current, rule).map_err(ApiError::from)?;
        // Recorded before the rule is published: a failure in between skips an id, never reuses one.
        self.maps
            .lock()
            .unwrap()
            .add_diag(diag::RULE_IDS_ISSUED, u64::from(id.saturating_sub(issued)))
            .map_err(internal)?;
        table.reset_hits(id).map_err(internal)?;
        table.publish(&next).map_err(internal)?;
        log::info!("rule {id} added: {spec:?}");
        let view = self.view.lock().unwrap();
        Ok(rules::row(&rule, &|i| view.name(i), (0, 0)))
    }
    fn del_rule(&self, id: u32) -> std::result::Result<RuleRow, ApiError> {
        let mut guard = self.rules.lock().unwrap();
        let table = guard
            .as_mut()
            .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
        let current = table.read().map_err(internal)?;
        let Some(gone) = current.iter().find(|r| r.id == id).copied() else {
            return Err(ApiError::NotFound(format!("no rule {id}")));
        };
        let next: Vec<_> = current.into_iter().filter(|r| r.id != id).collect();
        table.publish(&next).map_err(internal)?;
        log::info!("rule {id} deleted");
        let view = self.view.lock().unwrap();
        Ok(rules::row(&gone, &|i| view.name(i), table.hits(id)))
    }
    fn fastpath(&self, request: Option<FastpathRequest>) -> std::result::Result<FastpathStatus, ApiError> {
        self.fastpath_state(request)
    }
}

/// Names as the daemon sees them: links of its namespace, or the pod / netns behind a veth.
struct ViewResolver<'a>(&'a Shared);

impl rules::Resolver for ViewResolver<'_> {
    fn ifindex(&self, name: &str) -> Result<u32> {
        let view = self.0.view.lock().unwrap();
        if let Some(l) = view.links.values().find(|l| l.name == name) {
            return Ok(l.ifindex);
        }
        if let Some(l) = view.links.values().find(|l| view.owner(l.ifindex).matches(name)) {
            return Ok(l.ifindex);
        }
        Err(Error::UnknownInterface {
            name: name.into(),
            ns: " (nor a pod or namespace behind a veth)".into(),
            available: view.link_names(),
        })
    }
    fn is_veth(&self, ifindex: u32) -> bool {
        self.0
            .view
            .lock()
            .unwrap()
            .links
            .get(&ifindex)
            .is_some_and(|l| l.kind.as_deref() == Some("veth"))
    }
    fn is_xdp(&self, ifindex: u32) -> bool {
        self.0
            .view
            .lock()
            .unwrap()
            .attached
            .get(&ifindex)
            .is_some_and(|a| matches!(a.mode, Mode::Xdp | Mode::XdpGeneric))
    }
}

impl Shared {
    fn rule_rows(&self) -> Result<Vec<RuleRow>> {
        let guard = self.rules.lock().unwrap();
        let Some(table) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        let view = self.view.lock().unwrap();
        Ok(table
            .read()?
            .iter()
            .map(|r| rules::row(r, &|i| view.name(i), table.hits(r.id)))
            .collect())
    }

    /// Disable the rules that use a departed interface (a reused ifindex must never receive
    /// another pod's traffic).
    pub(super) fn disable_rules_for(&self, ifindex: u32, name: &str) {
        let mut guard = self.rules.lock().unwrap();
        let Some(table) = guard.as_mut() else { return };
        let Ok(mut current) = table.read() else { return };
        let ids = rules::disable_for_ifindex(&mut current, ifindex);
        if !ids.is_empty() {
            match table.publish(&current) {
                Ok(()) => log::warn!("{name} is gone: rule(s) {ids:?} disabled"),
                Err(e) => log::warn!("disabling rules of {name}: {e}"),
            }
        }
    }
}

/// The IPFIX exporter reads the flow table as the API does, with the names the daemon knows.
impl crate::service::ipfix::FlowSource for Shared {
    fn sample(&self) -> std::result::Result<Vec<crate::service::ipfix::FlowSample>, String> {
        let flows = self.maps.lock().unwrap().flows().map_err(|e| e.to_string())?;
        let view = self.view.lock().unwrap();
        Ok(flows
            .into_iter()
            .map(|(key, value)| crate::service::ipfix::FlowSample {
                key,
                value,
                iface: view.name(key.ifindex),
                owner: view.owner(key.ifindex),
            })
            .collect())
    }

    fn take_departed(&self) -> Vec<crate::service::ipfix::FlowSample> {
        // Under the maps lock: `departed` forgets a link's flows and hands them over in one hold.
        let _maps = self.maps.lock().unwrap();
        std::mem::take(&mut *self.ipfix_departed.lock().unwrap())
    }
}
