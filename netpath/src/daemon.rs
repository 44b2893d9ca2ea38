//! The node agent behind `netpath run`: it attaches to what the configuration selects, follows
//! links as they come and go (rtnetlink notifications, no polling), names the namespace and pod
//! behind every veth, serves the control API, and leaves the node as it found it (or, with
//! `--persist`, leaves its programs attached for the next daemon to re-adopt).
use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use netpath_common::{
    diag,
    event::{end_reason, kind, Event},
};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    api::{ApiError, ApiServer, Backend, FastpathRequest},
    attach::{self, AttachOptions, Attached, IfaceLinks},
    caps,
    cli::{Output, RunArgs},
    config::{self, Config},
    cri::{CriClient, PodRef},
    error::{Error, Result},
    events::{decode, flow_end_row, Ager, Deriver, EventRow},
    flows::{self, Clock, Filter, FlowRow},
    ifaces::Iface,
    loader::{self, LoadOptions},
    maps::Maps,
    metrics::{MetricsOptions, MetricsServer},
    netlink::{self, LinkEvent, LinkInfo, Netlink, NetnsName},
    netns,
    node::Owner,
    report,
    rules::{self, RuleRow, RuleSpec, RuleTable},
    select,
    stats::{self, StatRow},
};

/// A flow silent this long has ended (`flow_end` reason `aged`).
pub const FLOW_IDLE: Duration = Duration::from_secs(30);
/// How often the flow table is compared with the previous scan (aged and evicted flows).
const AGE_SCAN: Duration = Duration::from_secs(5);

/// Events read by this daemon (delivered ones are flushed to the pinned diag map on every tick,
/// so the count survives restarts like the kernel's emitted/lost counts).
#[derive(Default)]
struct EventCounts {
    unflushed_delivered: u64,
    by_kind: [u64; kind::COUNT],
}

/// Interfaces that went away while the daemon watched: what was counted on them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Departed {
    pub interfaces: u64,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct View {
    links: BTreeMap<u32, LinkInfo>,
    attached: BTreeMap<u32, Attached>,
    netns: HashMap<i32, NetnsName>,
    pods: HashMap<u64, PodRef>,
    departed: Departed,
    attach_latency_ms: Vec<f64>,
}

impl View {
    fn owner(&self, ifindex: u32) -> Owner {
        let Some(ns) = self
            .links
            .get(&ifindex)
            .and_then(|l| l.link_netnsid)
            .and_then(|id| self.netns.get(&id))
        else {
            return Owner::default();
        };
        let pod = self.pods.get(&ns.inode);
        Owner {
            netns: ns.name.clone().or_else(|| ns.pid.map(|p| format!("pid:{p}"))),
            pod: pod.map(|p| p.name.clone()),
            pod_namespace: pod.map(|p| p.namespace.clone()),
        }
    }

    fn name(&self, ifindex: u32) -> String {
        self.links
            .get(&ifindex)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| report::iface_name(ifindex))
    }
}

/// State the API and the printer share with the event loop.
pub struct Shared {
    maps: Mutex<Maps>,
    /// None when the object has no rule maps (kept optional so an old pin set does not stop
    /// the daemon).
    rules: Mutex<Option<RuleTable>>,
    /// The bridge the fast path serves, by name.
    fastpath_bridge: Mutex<Option<String>>,
    events: tokio::sync::broadcast::Sender<EventRow>,
    event_counts: Mutex<EventCounts>,
    view: Mutex<View>,
    programs: Vec<serde_json::Value>,
    started: Instant,
    pin_dir: Option<PathBuf>,
    persist: bool,
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
        if let Some(n) = filter.top {
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
        let rows = all
            .iter()
            .map(|(k, v)| {
                let mut r = flows::row(k, v, view.name(k.ifindex), &clock);
                let o = view.owner(k.ifindex);
                r.owner = o;
                r
            })
            .collect();
        Ok(flows::select(rows, filter))
    }

    /// Name a row's interface and owner, count it, and hand it to every watcher.
    fn publish(&self, mut r: EventRow) {
        {
            let view = self.view.lock().unwrap();
            if r.iface.is_empty() {
                r.iface = view.name(r.ifindex);
            }
            let o = view.owner(r.ifindex);
            r.owner = o;
        }
        if let Some(k) = kind::from_name(&r.kind) {
            self.event_counts.lock().unwrap().by_kind[k as usize] += 1;
        }
        // No watcher is fine: send fails only when nobody listens.
        let _ = self.events.send(r);
    }

    /// Persist the delivered count (pinned, beside the kernel's emitted and lost).
    fn flush_delivered(&self) {
        let n = std::mem::take(&mut self.event_counts.lock().unwrap().unflushed_delivered);
        if n > 0 {
            if let Err(e) = self.maps.lock().unwrap().add_diag(diag::EVENTS_DELIVERED, n) {
                eprintln!("netpath: recording delivered events: {e}");
                self.event_counts.lock().unwrap().unflushed_delivered += n;
            }
        }
    }

    pub fn status_json(&self) -> Result<serde_json::Value> {
        let mut v = report::status_json(&self.maps.lock().unwrap())?;
        {
            let c = self.event_counts.lock().unwrap();
            let by_kind: serde_json::Map<String, serde_json::Value> = kind::NAMES
                .iter()
                .zip(c.by_kind.iter())
                .map(|(n, c)| (n.to_string(), (*c).into()))
                .collect();
            let ev = &mut v["events"];
            let delivered = ev["delivered"].as_u64().unwrap_or(0) + c.unflushed_delivered;
            ev["delivered"] = delivered.into();
            let (emitted, lost) = (ev["emitted"].as_u64().unwrap_or(0), ev["lost"].as_u64().unwrap_or(0));
            ev["pending"] = emitted.saturating_sub(delivered + lost).into();
            ev["by_kind"] = by_kind.into();
        }
        let view = self.view.lock().unwrap();
        let mut lat = view.attach_latency_ms.clone();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * p).round() as usize]);
        v["daemon"] = serde_json::json!({
            "pid": std::process::id(),
            "uptime_s": self.started.elapsed().as_secs(),
            "pin_dir": self.pin_dir,
            "persist": self.persist,
            "attached_interfaces": view.attached.len(),
            "programs": self.programs,
            "departed": view.departed,
            "attach_latency_ms": { "count": lat.len(), "p50": pct(0.5), "p99": pct(0.99) },
        });
        Ok(v)
    }

    pub fn ifaces_json(&self) -> serde_json::Value {
        let view = self.view.lock().unwrap();
        let rows: Vec<_> = view
            .links
            .values()
            .map(|l| {
                let a = view.attached.get(&l.ifindex);
                crate::node::iface_row(
                    l,
                    l.master.map(|m| view.name(m)),
                    view.owner(l.ifindex),
                    a.map(|a| (a.mode, a.tc_hook)),
                    crate::node::kernel_programs(&l.name),
                )
            })
            .collect();
        serde_json::Value::Array(rows)
    }
}

fn internal(e: Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Backend for Shared {
    fn status(&self) -> std::result::Result<serde_json::Value, ApiError> {
        self.status_json().map_err(internal)
    }
    fn stats(&self) -> std::result::Result<Vec<StatRow>, ApiError> {
        self.stat_rows().map_err(internal)
    }
    fn flows(&self, filter: &Filter) -> std::result::Result<Vec<FlowRow>, ApiError> {
        self.flow_rows(filter).map_err(internal)
    }
    fn ifaces(&self) -> std::result::Result<serde_json::Value, ApiError> {
        Ok(self.ifaces_json())
    }
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<EventRow>> {
        Some(self.events.subscribe())
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
        let id = rules::next_id(&current);
        let rule = rules::build(&spec, id, &ViewResolver(self)).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let next = rules::with_added(&current, rule).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        table.reset_hits(id).map_err(internal)?;
        table.publish(&next).map_err(internal)?;
        eprintln!("netpath: rule {id} added: {spec:?}");
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
        eprintln!("netpath: rule {id} deleted");
        let view = self.view.lock().unwrap();
        Ok(rules::row(&gone, &|i| view.name(i), table.hits(id)))
    }
    fn fastpath(&self, request: Option<FastpathRequest>) -> std::result::Result<serde_json::Value, ApiError> {
        if let Some(req) = request {
            let bridge = match (&req.bridge, req.enable) {
                (Some(b), true) => {
                    let view = self.view.lock().unwrap();
                    let link = view.links.values().find(|l| &l.name == b).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "no interface '{b}' here (interfaces: {})",
                            view.links
                                .values()
                                .map(|l| l.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    if link.kind.as_deref() != Some("bridge") {
                        return Err(ApiError::BadRequest(format!("{b} is not a bridge")));
                    }
                    if !view.attached.contains_key(&link.ifindex) {
                        return Err(ApiError::BadRequest(format!(
                            "netpath does not observe {b}: run it with --iface {b} so its ports carry the fast path"
                        )));
                    }
                    Some((b.clone(), link.ifindex))
                }
                _ => None,
            };
            {
                let mut guard = self.rules.lock().unwrap();
                let table = guard
                    .as_mut()
                    .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
                table.set_fastpath(bridge.as_ref().map(|b| b.1)).map_err(internal)?;
            }
            *self.fastpath_bridge.lock().unwrap() = bridge.map(|b| b.0);
            self.learn_fastpath();
        }
        let guard = self.rules.lock().unwrap();
        let table = guard
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
        let view = self.view.lock().unwrap();
        let entries: Vec<serde_json::Value> = table
            .fastpath_entries()
            .iter()
            .map(|(mac, i)| {
                let o = view.owner(*i);
                serde_json::json!({
                    "mac": mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                    "iface": view.name(*i), "ifindex": i, "netns": o.netns, "pod": o.pod, "pod_namespace": o.pod_namespace,
                })
            })
            .collect();
        drop(view);
        let d = self.maps.lock().unwrap().diag().map_err(internal)?;
        let bridge = self.fastpath_bridge.lock().unwrap().clone();
        Ok(serde_json::json!({
            "enabled": bridge.is_some(),
            "bridge": bridge,
            "redirected": d.get(diag::FASTPATH_REDIRECTED as usize).copied().unwrap_or(0),
            "entries": entries,
        }))
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
            available: view
                .links
                .values()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
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
            .is_some_and(|a| matches!(a.mode, crate::attach::Mode::Xdp | crate::attach::Mode::XdpGeneric))
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
    fn disable_rules_for(&self, ifindex: u32, name: &str) {
        let mut guard = self.rules.lock().unwrap();
        let Some(table) = guard.as_mut() else { return };
        let Ok(mut current) = table.read() else { return };
        let ids = rules::disable_for_ifindex(&mut current, ifindex);
        if !ids.is_empty() {
            match table.publish(&current) {
                Ok(()) => eprintln!("netpath: {name} is gone: rule(s) {ids:?} disabled"),
                Err(e) => eprintln!("netpath: disabling rules of {name}: {e}"),
            }
        }
    }

    /// Learn which pod MAC sits behind which bridge port from the bridge's forwarding database
    /// (dynamic entries: the MACs pods sent from), restricted to ports netpath observes with TC.
    fn learn_fastpath(&self) {
        let Some(bridge) = self.fastpath_bridge.lock().unwrap().clone() else {
            return;
        };
        let Ok(out) = std::process::Command::new("bridge")
            .args(["-j", "fdb", "show", "br", &bridge])
            .output()
        else {
            return;
        };
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut want = std::collections::HashMap::new();
        {
            let view = self.view.lock().unwrap();
            for e in &entries {
                let is_self = e["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "self"));
                if e["state"] == "permanent" || is_self {
                    continue;
                }
                let (Some(mac), Some(dev)) = (e["mac"].as_str(), e["ifname"].as_str()) else {
                    continue;
                };
                let Some(port) = view
                    .links
                    .values()
                    .find(|l| l.name == dev && l.kind.as_deref() == Some("veth"))
                else {
                    continue;
                };
                let tc = view
                    .attached
                    .get(&port.ifindex)
                    .is_some_and(|a| a.mode == crate::attach::Mode::Tc);
                if let (true, Ok(mac)) = (tc, rules::parse_mac(mac)) {
                    want.insert(mac, port.ifindex);
                }
            }
        }
        if let Some(table) = self.rules.lock().unwrap().as_mut() {
            if let Err(e) = table.sync_fastpath(&want) {
                eprintln!("netpath: fast path table: {e}");
            }
        }
    }
}

/// The ring buffer's one reader: decode, name, derive, publish. Runs until the daemon stops.
async fn read_events(shared: Arc<Shared>, rb: RingBuf<MapData>) {
    // SAFETY: the AsyncFd owns the RingBuf, so its fd stays open and unchanged while registered.
    let mut afd = match unsafe { tokio::io::unix::AsyncFd::register(rb) } {
        Ok(a) => a,
        Err(e) => {
            eprintln!("netpath: event ring buffer: {e}; no events");
            return;
        }
    };
    let mut deriver = Deriver::default();
    // The datapath wakes us only once a batch is pending (BPF_RB_NO_WAKEUP below a threshold), so
    // the ring is also drained on this timer: an event waits at most this long.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let drain = |rb: &mut RingBuf<MapData>, deriver: &mut Deriver| {
        let clock = Clock::now();
        let mut rows = Vec::new();
        while let Some(item) = rb.next() {
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel wrote an Event (same crate, same layout); unaligned read.
            let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            rows.push(decode(&e, &clock));
        }
        shared.event_counts.lock().unwrap().unflushed_delivered += rows.len() as u64;
        let now = Instant::now();
        for r in rows {
            let derived = deriver.feed(&r, now);
            shared.publish(r);
            derived.into_iter().for_each(|d| shared.publish(d));
        }
        for r in deriver.tick(now) {
            shared.publish(r);
        }
    };
    loop {
        tokio::select! {
            guard = afd.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                drain(guard.get_inner_mut(), &mut deriver);
                guard.clear_ready();
            }
            _ = tick.tick() => drain(afd.get_mut(), &mut deriver),
        }
    }
}

struct Daemon {
    cfg: Config,
    args: RunArgs,
    given: Vec<String>,
    ebpf: aya::Ebpf,
    shared: Arc<Shared>,
    links: HashMap<u32, IfaceLinks>,
    nl: Netlink,
    cri: Option<CriClient>,
    ager: Ager,
}

fn attach_options(cfg: &Config) -> AttachOptions {
    AttachOptions {
        tc_hook: cfg.tc_hook,
        tcx_order: cfg.tcx_order,
        force: cfg.force,
        links_dir: cfg.persist.then(|| links_dir(&cfg.pin_dir)),
    }
}

pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

impl Daemon {
    /// Bring the attachments in line with the configuration and the current links.
    fn reconcile(&mut self, event_at: Option<Instant>) -> Result<()> {
        let links: Vec<LinkInfo> = self.shared.view.lock().unwrap().links.values().cloned().collect();
        let want = select::desired(&links, &self.cfg.ifaces, &self.cfg.exclude, self.cfg.mode);
        let stale: Vec<u32> = self.links.keys().filter(|i| !want.contains_key(i)).copied().collect();
        for ifindex in stale {
            if let Some(l) = self.links.remove(&ifindex) {
                l.detach();
            }
            if let Some(a) = self.shared.view.lock().unwrap().attached.remove(&ifindex) {
                eprintln!("netpath: detached from {} (no longer selected)", a.iface);
            }
        }
        let opts = attach_options(&self.cfg);
        let mut first_error = None;
        for (ifindex, (name, mode)) in want {
            if self.links.contains_key(&ifindex) {
                continue;
            }
            let iface = Iface {
                name: name.clone(),
                ifindex,
            };
            match attach::attach(&mut self.ebpf, &iface, mode, &opts) {
                Ok((a, l)) => {
                    let ms = event_at.map(|t| t.elapsed().as_secs_f64() * 1e3);
                    eprintln!(
                        "netpath: attached to {} (ifindex {}, {} via {:?}{}{}{})",
                        a.iface,
                        a.ifindex,
                        a.mode,
                        a.tc_hook,
                        a.driver.as_deref().map(|d| format!(", driver {d}")).unwrap_or_default(),
                        if a.readopted.is_empty() {
                            String::new()
                        } else {
                            format!(", re-adopted {}", a.readopted.join("+"))
                        },
                        ms.map(|m| format!(", {m:.1} ms after the event")).unwrap_or_default(),
                    );
                    let mut view = self.shared.view.lock().unwrap();
                    view.attached.insert(ifindex, a);
                    if let Some(ms) = ms {
                        view.attach_latency_ms.push(ms);
                    }
                    drop(view);
                    self.links.insert(ifindex, l);
                }
                Err(e) => {
                    eprintln!("netpath: {name}: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A link went away: its attachments died with it; account and forget its counters so a
    /// reused ifindex starts from zero.
    fn departed(&mut self, ifindex: u32, name: &str) {
        if let Some(l) = self.links.remove(&ifindex) {
            l.detach();
        }
        self.shared.disable_rules_for(ifindex, name);
        let was_attached = self.shared.view.lock().unwrap().attached.remove(&ifindex).is_some();
        if !was_attached {
            return;
        }
        let acc = self.shared.maps.lock().unwrap().forget_ifindex(ifindex);
        self.ager.forget_ifindex(ifindex);
        match acc {
            Ok(a) => {
                let clock = Clock::now();
                for (k, v) in &a.ended {
                    let mut r = flow_end_row(k, v, end_reason::INTERFACE_GONE, &clock);
                    r.iface = name.to_string();
                    self.shared.publish(r);
                }
                eprintln!(
                    "netpath: {name} (ifindex {ifindex}) removed: {} flows, {} packets, {} bytes accounted",
                    a.flows, a.packets, a.bytes
                );
                let mut view = self.shared.view.lock().unwrap();
                view.departed.interfaces += 1;
                view.departed.flows += a.flows;
                view.departed.packets += a.packets;
                view.departed.bytes += a.bytes;
            }
            Err(e) => eprintln!("netpath: accounting {name}: {e}"),
        }
    }

    /// Name the namespaces behind veth peers we have not seen yet, and refresh pods from CRI.
    async fn refresh_owners(&mut self) {
        let wanted: Vec<i32> = {
            let view = self.shared.view.lock().unwrap();
            view.links
                .values()
                .filter_map(|l| l.link_netnsid)
                .filter(|id| !view.netns.contains_key(id))
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        if let Ok(found) = netlink::resolve_netnsids(&self.nl, &wanted).await {
            self.shared.view.lock().unwrap().netns.extend(found);
        }
        if let Some(cri) = self.cri.as_mut() {
            if let Ok(pods) = cri.pods_by_netns_inode().await {
                self.shared.view.lock().unwrap().pods = pods;
            }
        }
    }

    fn on_event(&mut self, ev: LinkEvent) -> Result<bool> {
        match ev {
            LinkEvent::Changed(l) => {
                let mut view = self.shared.view.lock().unwrap();
                let changed = view.links.get(&l.ifindex) != Some(&l);
                view.links.insert(l.ifindex, l);
                Ok(changed)
            }
            LinkEvent::Removed { ifindex, name } => {
                self.shared.view.lock().unwrap().links.remove(&ifindex);
                self.departed(ifindex, &name);
                Ok(true)
            }
        }
    }

    fn reload(&mut self) {
        let Some(path) = self.args.config.clone() else {
            eprintln!("netpath: SIGHUP: no --config file to reload");
            return;
        };
        let given = self.given.clone();
        let new = config::read_file(&path)
            .and_then(|f| Config::resolve(&self.args, Some((&path, f)), &|flag| given.iter().any(|g| g == flag)));
        match new {
            Err(e) => eprintln!("netpath: SIGHUP: keeping the running configuration: {e}"),
            Ok(new) => {
                let restart = self.cfg.needs_restart(&new);
                if !restart.is_empty() {
                    eprintln!(
                        "netpath: SIGHUP: {} change only on restart; keeping the running values",
                        restart.join(", ")
                    );
                }
                let keep = (
                    self.cfg.netns.clone(),
                    self.cfg.pin_dir.clone(),
                    self.cfg.no_pin,
                    self.cfg.flow_table_size,
                    self.cfg.socket.clone(),
                    self.cfg.persist,
                );
                self.cfg = new;
                (
                    self.cfg.netns,
                    self.cfg.pin_dir,
                    self.cfg.no_pin,
                    self.cfg.flow_table_size,
                    self.cfg.socket,
                    self.cfg.persist,
                ) = keep;
                if let Ok(c) = self.cfg.datapath_config() {
                    if let Err(e) = self.shared.maps.lock().unwrap().write_config(c) {
                        eprintln!("netpath: SIGHUP: datapath configuration: {e}");
                    }
                }
                eprintln!("netpath: SIGHUP: configuration reloaded from {}", path.display());
                let _ = self.reconcile(None);
            }
        }
    }

    /// Flows idle past FLOW_IDLE end as `aged`; flows the LRU dropped end as `evicted`.
    fn age_flows(&mut self) {
        let flows = match self.shared.maps.lock().unwrap().flows() {
            Ok(f) => f,
            Err(e) => return eprintln!("netpath: scanning flows: {e}"),
        };
        let clock = Clock::now();
        let now_ns = clock.mono_now_ns();
        for (k, v, reason) in self.ager.scan(&flows, now_ns) {
            self.shared.publish(flow_end_row(&k, &v, reason, &clock));
        }
    }

    fn shutdown(self) {
        let n = self.links.len();
        let persist = self.cfg.persist;
        for (_, l) in self.links {
            if persist {
                l.release()
            } else {
                l.detach()
            }
        }
        drop(self.ebpf);
        if persist {
            eprintln!(
                "netpath: left {n} interface(s) attached (pinned links in {}); `netpath down` removes them",
                links_dir(&self.cfg.pin_dir).display()
            );
        } else {
            eprintln!("netpath: detached from {n} interface(s)");
        }
        if !self.cfg.no_pin && !persist {
            eprintln!(
                "netpath: counters stay pinned in {} (`netpath down` removes them)",
                self.cfg.pin_dir.display()
            );
        }
    }
}

/// `netpath run`.
pub fn main(args: RunArgs, given: Vec<String>) -> Result<()> {
    let file = match &args.config {
        Some(p) => Some((p.as_path(), config::read_file(p)?)),
        None => None,
    };
    let cfg = Config::resolve(&args, file, &|flag| given.iter().any(|g| g == flag))?;
    caps::require_datapath()?;
    // The socket lives in the filesystem; binding it before entering the namespace keeps the
    // daemon reachable from the host whatever namespace it observes.
    let api_path = (cfg.socket.as_os_str() != "none").then(|| cfg.socket.clone());
    // Likewise the metrics listener: bound here it serves on the host's address.
    let metrics = match cfg.metrics.as_str() {
        "none" => None,
        addr => Some(MetricsServer::bind(addr).map_err(|e| Error::Other(e.to_string()))?),
    };
    if let Some(ns) = &cfg.netns {
        netns::enter(ns)?;
    }
    // Built after setns: threads the runtime spawns inherit the namespace.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async_main(args, given, cfg, api_path, metrics))
}

async fn async_main(
    args: RunArgs,
    given: Vec<String>,
    cfg: Config,
    api_path: Option<PathBuf>,
    metrics: Option<MetricsServer>,
) -> Result<()> {
    // First of all: a signal that arrives while we attach is then handled (queued), not fatal.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // Subscribe before the dump so no link slips between them.
    let mut events = netlink::subscribe().map_err(|e| Error::Other(format!("rtnetlink subscribe: {e}")))?;
    let nl = Netlink::connect().map_err(|e| Error::Other(format!("rtnetlink: {e}")))?;
    let links = nl
        .links()
        .await
        .map_err(|e| Error::Other(format!("listing links: {e}")))?;
    let missing = select::missing_names(&links, &cfg.ifaces);
    if let Some(name) = missing.first() {
        // Same message as a single lookup would give: names the interface, lists the others.
        crate::ifaces::resolve(name, cfg.netns.as_deref())?;
    }

    let opts = LoadOptions {
        pin_dir: (!cfg.no_pin).then(|| cfg.pin_dir.clone()),
        flow_table_size: cfg.flow_table_size,
        config: cfg.datapath_config()?,
        ..LoadOptions::default()
    };
    let mut ebpf = loader::load(&opts)?;
    attach::load_programs(&mut ebpf)?;
    if cfg.persist {
        let dir = links_dir(&cfg.pin_dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Bpffs {
            what: "creating link pin directory",
            path: dir,
            source: e,
        })?;
    }
    let programs = crate::node::program_ids(&ebpf);
    let maps = Maps::take(&mut ebpf)?;
    let ring: RingBuf<MapData> = ebpf
        .take_map(netpath_common::maps::EVENTS)
        .ok_or_else(|| Error::Other("event ring buffer missing from the object".into()))?
        .try_into()
        .map_err(|source| Error::Map {
            what: "event ring buffer".into(),
            source,
        })?;
    let rule_table = match RuleTable::take(&mut ebpf) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("netpath: no rule table ({e}); rules and the fast path are unavailable");
            None
        }
    };
    let shared = Arc::new(Shared {
        maps: Mutex::new(maps),
        rules: Mutex::new(rule_table),
        fastpath_bridge: Mutex::new(None),
        events: tokio::sync::broadcast::channel(4096).0,
        event_counts: Mutex::new(EventCounts::default()),
        view: Mutex::new(View {
            links: links.into_iter().map(|l| (l.ifindex, l)).collect(),
            ..View::default()
        }),
        programs,
        started: Instant::now(),
        pin_dir: (!cfg.no_pin).then(|| cfg.pin_dir.clone()),
        persist: cfg.persist,
    });
    let cri = match &cfg.cri_socket {
        Some(p) => CriClient::connect(p)
            .await
            .map_err(|e| eprintln!("netpath: CRI {}: {e}; pods will not be named", p.display()))
            .ok(),
        None => CriClient::discover(
            &crate::cri::DEFAULT_SOCKETS
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>(),
        )
        .await
        .map(|(_, c)| c),
    };
    // Before attaching anything: a socket another daemon answers on stops us here, unchanged.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = match api_path {
        Some(p) => {
            let server = ApiServer::bind(&p, Arc::clone(&shared) as Arc<dyn Backend>)
                .map_err(|e| Error::Other(format!("control API socket {}: {e}", p.display())))?;
            eprintln!("netpath: control API on {}", p.display());
            Some(tokio::spawn(server.serve(async move {
                let _ = stop_rx.await;
            })))
        }
        None => None,
    };

    let (mstop_tx, mstop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = metrics.map(|m| {
        eprintln!("netpath: Prometheus metrics on http://{}/metrics", m.local_addr());
        let opts = MetricsOptions {
            top_flows: cfg.metrics_flows,
            ..MetricsOptions::default()
        };
        tokio::spawn(m.serve(Arc::clone(&shared) as Arc<dyn Backend>, opts, async move {
            let _ = mstop_rx.await;
        }))
    });
    let event_reader = tokio::spawn(read_events(Arc::clone(&shared), ring));
    let mut d = Daemon {
        cfg,
        args,
        given,
        ebpf,
        shared: Arc::clone(&shared),
        links: HashMap::new(),
        nl,
        cri,
        ager: Ager::new(FLOW_IDLE),
    };
    if let Err(e) = d.reconcile(None) {
        d.shutdown();
        return Err(e);
    }
    if d.cfg.persist {
        // Pins of interfaces no longer selected (or gone) from an earlier daemon: detach them.
        let view = shared.view.lock().unwrap();
        let keep =
            |name: &str, ifindex: u32, _h: attach::Hook| view.attached.get(&ifindex).is_some_and(|a| a.iface == name);
        for p in attach::sweep_links(&links_dir(&d.cfg.pin_dir), &keep) {
            eprintln!("netpath: removed stale pinned link {p}");
        }
    }
    d.refresh_owners().await;

    let started = Instant::now();
    let deadline = d.cfg.duration.map(|x| tokio::time::Instant::now() + x);
    let mut next_print = tokio::time::Instant::now() + d.cfg.interval;
    let mut owners_due = false;
    let mut next_age = tokio::time::Instant::now() + AGE_SCAN;
    loop {
        let until_deadline = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Err(Error::Other("rtnetlink notifications stopped".into())) };
                let at = Instant::now();
                let mut dirty = d.on_event(ev)?;
                // Drain what is already queued (a veth pair arrives as several messages).
                while let Ok(ev) = events.try_recv() {
                    dirty |= d.on_event(ev)?;
                }
                if dirty {
                    let _ = d.reconcile(Some(at));
                    owners_due = true;
                }
            }
            _ = tokio::time::sleep_until(next_print) => {
                if owners_due {
                    d.refresh_owners().await;
                    owners_due = false;
                }
                shared.flush_delivered();
                shared.learn_fastpath();
                if !d.cfg.quiet {
                    print_tick(&shared, d.cfg.output, started.elapsed());
                }
                next_print += d.cfg.interval;
            }
            _ = tokio::time::sleep_until(next_age) => {
                d.age_flows();
                if !d.cfg.no_pin {
                    match crate::capture::reset_abandoned(&d.cfg.pin_dir) {
                        Ok(true) => eprintln!("netpath: switched off a capture whose `netpath capture` had died"),
                        Ok(false) => {}
                        Err(e) => eprintln!("netpath: checking for an abandoned capture: {e}"),
                    }
                }
                next_age += AGE_SCAN;
            }
            _ = sighup.recv() => d.reload(),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = until_deadline => {
                if !d.cfg.quiet {
                    print_tick(&shared, d.cfg.output, started.elapsed());
                }
                break;
            }
        }
    }
    event_reader.abort();
    shared.flush_delivered();
    let _ = stop_tx.send(());
    let _ = mstop_tx.send(());
    if let Some(api) = api {
        let _ = api.await;
    }
    if let Some(m) = metrics_task {
        if let Ok(Err(e)) = m.await {
            eprintln!("netpath: {e}");
        }
    }
    d.shutdown();
    Ok(())
}

fn print_tick(shared: &Shared, output: Output, elapsed: Duration) {
    let rows = shared.stat_rows();
    let ft = shared.maps.lock().unwrap().flow_table();
    let (rows, ft) = match (rows, ft) {
        (Ok(r), Ok(f)) => (r, f),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("netpath: reading counters: {e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    match output {
        Output::Table => {
            if std::io::IsTerminal::is_terminal(&out) {
                let _ = write!(out, "\x1b[H\x1b[2J");
            }
            let _ = write!(out, "{}", report::tick_table(&rows, &ft, elapsed));
        }
        Output::Json => {
            let _ = writeln!(out, "{}", report::tick_json(&rows, &ft));
        }
    }
    let _ = out.flush();
}
