//! The node agent behind `netpath run`: it attaches to what the configuration selects, follows
//! links as they come and go (rtnetlink notifications, no polling), names the namespace and pod
//! behind every veth, serves the control API, and leaves the node as it found it (or, with
//! `--persist`, leaves its programs attached for the next daemon to re-adopt).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use aya_log::EbpfLogger;
use netpath_common::event::{end_reason, kind, Event};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};

use self::{
    config::{Config, Invocation},
    print::print_tick,
    state::{EventCounts, Shared},
    view::View,
};
use crate::{
    caps,
    datapath::{
        attach::{self, AttachOptions, IfaceLinks},
        drops::{start_tracer, DropMaps},
        loader::{self, LoadOptions},
        maps::Maps,
        names::Recorder,
        pins::PinLock,
        rules::RuleTable,
    },
    error::{Error, Result},
    model::{
        doctor::Finding,
        events::{decode, flow_end_row, Ager, Deriver},
        flows::{self, Clock, FLOW_IDLE},
        owner::Owner,
    },
    node::{
        cri::{self, CriClient},
        ifaces::{self, Iface},
        netlink::{self, LinkEvent, LinkInfo, Netlink},
        netns,
    },
    service::{
        api::{ApiServer, Backend},
        ipfix::{FlowSample, FlowSource, IpfixExporter},
        metrics::{MetricsOptions, MetricsServer},
    },
};

pub mod config;
mod doctor;
mod drops;
mod fastpath;
mod print;
pub mod select;
mod state;
mod view;

/// How long after a link event an owner not nameable yet is looked for again, and how often: a
/// CNI plugin creates the veth while RunPodSandbox runs, and CRI lists the sandbox only once that
/// call returns (no runtime event says so; containerd 1.6 has no container events), so the first
/// second is polled closely, then every 200 ms, for about 5 s in all.
const fn owner_retry(tries: u32) -> Duration {
    if tries < 20 {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(200)
    }
}
const OWNER_RETRIES: u32 = 40;
/// How often the flow table is compared with the previous scan (aged and evicted flows).
const AGE_SCAN: Duration = Duration::from_secs(5);

/// The ring buffer's one reader: decode, name, derive, publish. Runs until the daemon stops.
async fn read_events(shared: Arc<Shared>, rb: RingBuf<MapData>) {
    // SAFETY: the AsyncFd owns the RingBuf, so its fd stays open and unchanged while registered.
    let mut afd = match unsafe { AsyncFd::register(rb) } {
        Ok(a) => a,
        Err(e) => {
            log::warn!("event ring buffer: {e}; no events");
            return;
        }
    };
    let mut deriver = Deriver::default();
    // The datapath wakes us only once a batch is pending (BPF_RB_NO_WAKEUP below a threshold), so
    // the ring is also drained on this timer: an event waits at most this long.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let drain = |rb: &mut RingBuf<MapData>, deriver: &mut Deriver| {
        let clock = Clock::now();
        let now = Instant::now();
        // Rows are for watchers: with none, an event is only counted and fed to the Deriver raw
        // (formatting every event cost the reader 30 times what draining it did).
        let watched = shared.events.receiver_count() > 0;
        let (mut delivered, mut by_kind) = (0u64, [0u64; kind::COUNT]);
        // (row, counted already): kernel events are counted here, derived ones by `publish`.
        let mut rows = Vec::new();
        while let Some(item) = rb.next() {
            if item.len() < size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel wrote an Event (same crate, same layout); unaligned read.
            let e: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            delivered += 1;
            if let Some(n) = by_kind.get_mut(e.kind as usize) {
                *n += 1;
            }
            if watched {
                rows.push((decode(&e, &clock), true));
            }
            rows.extend(deriver.feed_event(&e, &clock, now).into_iter().map(|d| (d, false)));
        }
        shared.count_read(delivered, &by_kind);
        for (r, counted) in rows {
            if counted {
                shared.send(r);
            } else {
                shared.publish(r);
            }
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

/// Run the doctor's checks on a thread of their own (they read netlink tables and /proc/sys, and
/// run `iptables -S FORWARD`, which must not stall the event loop), with what the daemon observed;
/// the answer comes back to the loop. The thread is spawned from the loop's thread, so it is in
/// the daemon's network namespace (`--netns`) like everything the daemon reads.
fn start_doctor(shared: Arc<Shared>) -> tokio::sync::oneshot::Receiver<std::result::Result<Vec<Finding>, String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("netpath-doctor".into())
        .spawn(move || {
            let observed = shared.doctor_observed();
            let checks = crate::model::doctor::CHECKS.map(|(c, _)| c);
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(crate::doctor::run(&checks, &observed))
                        .map_err(|e| e.to_string())
                });
            let _ = tx.send(outcome);
        });
    if let Err(e) = spawned {
        // The sender went with the closure: the loop hears of it as a run without an answer.
        log::warn!("doctor: cannot start its thread: {e}");
    }
    rx
}

/// The datapath's aya-log records (`--ebpf-log`), into `log` as they arrive. Runs until the daemon
/// stops.
async fn read_ebpf_log(logger: EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the AsyncFd owns the logger and with it the AYA_LOGS ring buffer's fd, which stays
    // open and unchanged while registered.
    let mut afd = match unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) } {
        Ok(a) => a,
        Err(e) => return log::warn!("datapath log buffer: {e}; no datapath log records"),
    };
    loop {
        let Ok(mut guard) = afd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

struct Daemon {
    cfg: Config,
    invocation: Invocation,
    ebpf: aya::Ebpf,
    shared: Arc<Shared>,
    links: HashMap<u32, IfaceLinks>,
    nl: Netlink,
    cri: Option<CriClient>,
    /// What each CRI sandbox resolved to, so polls ask only about new ones.
    pods: cri::PodResolver,
    ager: Ager,
    /// The drop tracer's daemon-written maps (None if the object lacks them).
    drop_maps: Option<DropMaps>,
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
        let unmatched = select::unmatched_globs(&links, &self.cfg.ifaces);
        {
            let mut view = self.shared.view.lock().unwrap();
            for glob in unmatched.iter().filter(|g| !view.unmatched.contains(g)) {
                log::warn!(
                    "--iface '{glob}' matches no interface (yet); interfaces here: {}",
                    netns::list_or_none(links.iter().map(|l| l.name.clone()).collect())
                );
            }
            view.unmatched = unmatched;
        }
        let stale: Vec<u32> = self.links.keys().filter(|i| !want.contains_key(i)).copied().collect();
        for ifindex in stale {
            if let Some(l) = self.links.remove(&ifindex) {
                l.detach();
            }
            if let Some(a) = self.shared.view.lock().unwrap().attached.remove(&ifindex) {
                log::info!("detached from {} (no longer selected)", a.iface);
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
                    log::info!(
                        "attached to {} (ifindex {}, {} via {:?}{}{}{})",
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
                    // The first XDP attach loads the XDP program.
                    let programs = loader::program_ids(&self.ebpf);
                    *self.shared.programs.lock().unwrap() = programs;
                }
                Err(e) => {
                    log::warn!("{name}: {e}");
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
    fn departed(&mut self, ifindex: u32, name: &str, owner: Owner) {
        if let Some(l) = self.links.remove(&ifindex) {
            l.detach();
        }
        self.shared.disable_rules_for(ifindex, name);
        let was_attached = self.shared.view.lock().unwrap().attached.remove(&ifindex).is_some();
        if !was_attached {
            return;
        }
        let acc = {
            let mut maps = self.shared.maps.lock().unwrap();
            let acc = maps.forget_ifindex(ifindex);
            // Their final counts, for the IPFIX exporter's last records of them: handed over
            // under the maps lock, which the exporter holds to take them, so it never sees the
            // flows gone from the table but not yet among the departed (it would count them as
            // vanished, then export them whole).
            if let (Ok(a), true) = (&acc, self.shared.ipfix.is_some()) {
                self.shared
                    .ipfix_departed
                    .lock()
                    .unwrap()
                    .extend(a.ended.iter().map(|(k, v)| FlowSample {
                        key: *k,
                        value: *v,
                        iface: name.to_string(),
                        owner: owner.clone(),
                    }));
            }
            acc
        };
        self.ager.forget_ifindex(ifindex);
        match acc {
            Ok(a) => {
                let clock = Clock::now();
                for (k, v) in &a.ended {
                    let mut r = flow_end_row(k, v, end_reason::INTERFACE_GONE, &clock);
                    r.iface = name.to_string();
                    r.owner = owner.clone();
                    self.shared.publish(r);
                }
                log::info!(
                    "{name} (ifindex {ifindex}){} removed: {} flows, {} packets, {} bytes accounted",
                    owner.suffix(),
                    a.flows,
                    a.packets,
                    a.bytes
                );
                let mut view = self.shared.view.lock().unwrap();
                view.departed.interfaces += 1;
                view.departed.flows += a.flows;
                view.departed.packets += a.packets;
                view.departed.bytes += a.bytes;
            }
            Err(e) => log::warn!("accounting {name}: {e}"),
        }
    }

    /// Name drop reasons, and with `--drops on` load and attach the drop tracer.
    fn start_drops(&mut self, f: drops::KernelFacts) {
        let state = match (self.cfg.drops, &f.layout, &f.btf, self.drop_maps.as_mut()) {
            (false, _, _, _) => "off (--drops off)".to_string(),
            (true, Err(e), _, _) => format!("unavailable: {e}"),
            (true, Ok(_), None, _) => "unavailable: the kernel's BTF could not be read".to_string(),
            (true, Ok(_), _, None) => "unavailable: the eBPF object has no drop tracer maps".to_string(),
            (true, Ok(layout), Some(btf), Some(maps)) => match start_tracer(&mut self.ebpf, maps, layout, btf) {
                Ok(p) => {
                    log::info!("drop tracer on ({} at {}, program id {})", p.program, p.hook, p.id);
                    self.shared.programs.lock().unwrap().push(p);
                    "on".to_string()
                }
                Err(e) => format!("unavailable: {e}"),
            },
        };
        if let Some(why) = state.strip_prefix("unavailable: ") {
            log::warn!("drop tracer unavailable: {why}; netpath runs without it (rule drops are still counted)");
        }
        let mut d = self.shared.drops.lock().unwrap();
        d.tracer = state;
        d.learned(f.reasons, f.kallsyms);
    }

    /// Tell the drop tracer which namespaces are pods' and the veth in front of each.
    fn sync_drop_namespaces(&mut self) {
        let Some(maps) = self.drop_maps.as_mut() else { return };
        let want: HashMap<u32, u32> = {
            let view = self.shared.view.lock().unwrap();
            view.links
                .values()
                .filter(|l| view.owner(l.ifindex).role == Some(crate::model::owner::Role::Pod))
                .filter_map(|l| Some((view.netns.get(&l.link_netnsid?)?.inode as u32, l.ifindex)))
                .collect()
        };
        if let Err(e) = maps.set_pod_namespaces(&want) {
            log::warn!("{e}");
        }
    }

    /// Name the namespaces behind veth peers we have not seen yet, and refresh pods from CRI.
    /// Returns whether every link is named: all peer namespaces, and with a CRI runtime, the pod
    /// behind every bridge port (the runtime may list a sandbox a moment after its veth appears).
    async fn refresh_owners(&mut self) -> bool {
        let (wanted, unnamed_pods) = {
            let view = self.shared.view.lock().unwrap();
            let wanted: Vec<i32> = view
                .links
                .values()
                .filter_map(|l| l.link_netnsid)
                .filter(|id| !view.netns.contains_key(id))
                .collect();
            let unnamed_pods = view.links.values().any(|l| {
                l.master.is_some()
                    && l.link_netnsid
                        .and_then(|id| view.netns.get(&id))
                        .is_some_and(|ns| !view.pods.contains_key(&ns.inode))
            });
            (wanted, unnamed_pods)
        };
        if !wanted.is_empty() {
            if let Ok(found) = netlink::resolve_netnsids(&self.nl, &wanted).await {
                self.shared.view.lock().unwrap().netns.extend(found);
            }
        }
        let unaddressed = self.shared.view.lock().unwrap().unaddressed_pods();
        for (id, path) in &unaddressed {
            if let Some(links) = netlink::peer_links_at(path).await {
                if let Some(ns) = self.shared.view.lock().unwrap().netns.get_mut(id) {
                    ns.links = Some(links);
                }
            }
        }
        let addressed = unaddressed.is_empty() || self.shared.view.lock().unwrap().unaddressed_pods().is_empty();
        let mut pods_named = true;
        if let Some(cri) = self.cri.as_mut() {
            if !wanted.is_empty() || unnamed_pods {
                if let Ok(pods) = self.pods.resolve(cri).await {
                    self.shared.view.lock().unwrap().set_pods(pods);
                }
            }
            let view = self.shared.view.lock().unwrap();
            pods_named = !view.links.values().any(|l| {
                l.master.is_some()
                    && l.link_netnsid
                        .and_then(|id| view.netns.get(&id))
                        .is_some_and(|ns| !view.pods.contains_key(&ns.inode))
            });
        }
        self.sync_drop_namespaces();
        let view = self.shared.view.lock().unwrap();
        pods_named
            && addressed
            && view
                .links
                .values()
                .filter_map(|l| l.link_netnsid)
                .all(|id| view.netns.contains_key(&id))
    }

    fn on_event(&mut self, ev: LinkEvent) -> Result<bool> {
        match ev {
            LinkEvent::Changed(l) => {
                let mut view = self.shared.view.lock().unwrap();
                let changed = view.links.get(&l.ifindex) != Some(&l);
                if changed {
                    view.remember_pod(l.ifindex);
                }
                view.links.insert(l.ifindex, l);
                Ok(changed)
            }
            LinkEvent::Removed { ifindex, name } => {
                let owner = {
                    let mut view = self.shared.view.lock().unwrap();
                    let now = view.owner(ifindex);
                    view.links.remove(&ifindex);
                    match (now.pod.is_some(), view.last_pod.remove(&ifindex)) {
                        (false, Some(last)) => last,
                        _ => now,
                    }
                };
                self.departed(ifindex, &name, owner);
                Ok(true)
            }
        }
    }

    fn reload(&mut self) {
        let Some(path) = self.invocation.config_file.clone() else {
            log::warn!("SIGHUP: no --config file to reload");
            return;
        };
        match self.invocation.resolve() {
            Err(e) => log::warn!("SIGHUP: keeping the running configuration: {e}"),
            Ok(new) => {
                let restart = self.cfg.needs_restart(&new);
                if !restart.is_empty() {
                    log::info!(
                        "SIGHUP: {} change only on restart; keeping the running values",
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
                    self.cfg.ebpf_log,
                );
                self.cfg = new;
                (
                    self.cfg.netns,
                    self.cfg.pin_dir,
                    self.cfg.no_pin,
                    self.cfg.flow_table_size,
                    self.cfg.socket,
                    self.cfg.persist,
                    self.cfg.ebpf_log,
                ) = keep;
                if let Ok(c) = self.cfg.datapath_config() {
                    if let Err(e) = self.shared.maps.lock().unwrap().write_config(c) {
                        log::warn!("SIGHUP: datapath configuration: {e}");
                    }
                }
                log::info!("SIGHUP: configuration reloaded from {}", path.display());
                let _ = self.reconcile(None);
            }
        }
    }

    /// Flows idle past FLOW_IDLE end as `aged`; flows the LRU dropped end as `evicted`.
    fn age_flows(&mut self) {
        let flows = match self.shared.maps.lock().unwrap().flows() {
            Ok(f) => f,
            Err(e) => return log::warn!("scanning flows: {e}"),
        };
        let clock = Clock::now();
        let now_ns = clock.mono_now_ns();
        let active = flows.iter().filter(|(_, v)| flows::is_active(v, now_ns)).count() as u64;
        *self.shared.flows_active.lock().unwrap() = Some(active);
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
            log::info!(
                "left {n} interface(s) attached (pinned links in {}); `netpath down` removes them",
                links_dir(&self.cfg.pin_dir).display()
            );
        } else {
            log::info!("detached from {n} interface(s)");
        }
        if !self.cfg.no_pin && !persist {
            log::info!(
                "counters stay pinned in {} (`netpath down` removes them)",
                self.cfg.pin_dir.display()
            );
        }
    }
}

/// `netpath run` with `cfg`, what `invocation` resolves to now (SIGHUP resolves it again): run until
/// SIGINT/SIGTERM (or `duration`). Bad input fails before anything is loaded or attached.
pub fn run(invocation: Invocation, cfg: Config) -> Result<()> {
    caps::require_datapath()?;
    // The socket lives in the filesystem; binding it before entering the namespace keeps the
    // daemon reachable from the host whatever namespace it observes.
    let api_path = (cfg.socket.as_os_str() != "none").then(|| cfg.socket.clone());
    // Likewise the metrics listener: bound here it serves on the host's address.
    let metrics = match cfg.metrics.as_str() {
        "none" => None,
        addr => Some(MetricsServer::bind(addr)?),
    };
    // And the IPFIX sockets: the export leaves from the host's namespace.
    let ipfix = cfg.ipfix_options()?.map(IpfixExporter::open).transpose()?;
    if let Some(ns) = &cfg.netns {
        netns::enter(ns)?;
    }
    // Built after setns: threads the runtime spawns inherit the namespace.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async_main(invocation, cfg, api_path, metrics, ipfix))
}

async fn async_main(
    invocation: Invocation,
    cfg: Config,
    api_path: Option<PathBuf>,
    metrics: Option<MetricsServer>,
    mut ipfix: Option<IpfixExporter>,
) -> Result<()> {
    // First of all: a signal that arrives while we attach is then handled (queued), not fatal.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // Subscribe before the dump so no link slips between them.
    let mut events = netlink::subscribe()?;
    let nl = Netlink::connect()?;
    let links = nl.links().await?;
    let missing = select::missing_names(&links, &cfg.ifaces);
    if let Some(name) = missing.first() {
        // Same message as a single lookup would give: names the interface, lists the others.
        ifaces::resolve(name, cfg.netns.as_deref())?;
    }

    let opts = LoadOptions {
        pin_dir: (!cfg.no_pin).then(|| cfg.pin_dir.clone()),
        flow_table_size: cfg.flow_table_size,
        config: cfg.datapath_config()?,
        // LevelFilter counts as aya-log's levels do: 0 off, 1 error ... 5 trace.
        ebpf_log: cfg.ebpf_log as u8,
    };
    // Held until async_main returns: one daemon per pin directory.
    let _pin_lock = opts.pin_dir.as_deref().map(PinLock::acquire).transpose()?;
    let mut ebpf = loader::load(&opts)?;
    attach::load_programs(&mut ebpf, attach::Programs::Tc)?;
    if cfg.persist {
        let dir = links_dir(&cfg.pin_dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Bpffs {
            what: "creating link pin directory",
            path: dir,
            source: e,
        })?;
    }
    let ebpf_logger = match cfg.ebpf_log {
        log::LevelFilter::Off => None,
        _ => Some(EbpfLogger::init(&mut ebpf)?),
    };
    let programs = loader::program_ids(&ebpf);
    let maps = Maps::take(&mut ebpf)?;
    let drop_maps = DropMaps::take(&mut ebpf)
        .map_err(|e| log::warn!("{e}; drops inside pods will not count on their flows"))
        .ok();
    // The kernel's BTF and symbols, read while the TC programs attach.
    let (facts_tx, mut facts_rx) = tokio::sync::oneshot::channel();
    let tracer = cfg.drops;
    std::thread::spawn(move || {
        let _ = facts_tx.send(drops::read_kernel(tracer));
    });
    let own_netns = opts.config.netns;
    let ring: RingBuf<MapData> = ebpf
        .take_map(netpath_common::maps::EVENTS)
        .ok_or_else(|| Error::MissingFromObject("event ring buffer".into()))?
        .try_into()
        .map_err(|source| Error::Map {
            what: "event ring buffer".into(),
            source,
        })?;
    let rule_table = match RuleTable::take(&mut ebpf) {
        Ok(t) => Some(t),
        Err(e) => {
            log::warn!("no rule table ({e}); rules and the fast path are unavailable");
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
        programs: Mutex::new(programs),
        flows_active: Mutex::new(None),
        started: Instant::now(),
        pin_dir: (!cfg.no_pin).then(|| cfg.pin_dir.clone()),
        persist: cfg.persist,
        names: Mutex::new(match cfg.no_pin {
            true => None,
            false => Recorder::start(&cfg.pin_dir, cfg.netns.as_deref())
                .map_err(|e| log::warn!("{e}; `netpath stats` without a daemon will not name interfaces"))
                .ok(),
        }),
        drops: Mutex::new(drops::Drops::new(
            if cfg.drops { "starting" } else { "off (--drops off)" },
            own_netns,
            cfg.netns.clone(),
        )),
        doctor: Mutex::new(doctor::DoctorState::new(cfg.doctor_interval)),
        ipfix: ipfix.as_ref().map(IpfixExporter::status),
        ipfix_departed: Mutex::new(Vec::new()),
        node_name: cfg.node_name(),
    });
    // The IPFIX exporter starts from the flows already in the table (before anything attaches, so
    // no packet of this daemon's falls into that baseline), on its own thread.
    let ipfix = match ipfix.take() {
        Some(mut ex) => {
            match shared.sample() {
                Ok(s) => ex.baseline(&s),
                Err(e) => {
                    log::warn!("IPFIX exporter: reading the flow table: {e}; exporting every flow from its start")
                }
            }
            let collectors = cfg.ipfix.join(",");
            match ex.spawn(Arc::clone(&shared) as Arc<dyn FlowSource>) {
                Ok(h) => {
                    log::info!(
                        "IPFIX export to {collectors} (every {}, idle {})",
                        humantime::format_duration(cfg.ipfix_interval),
                        humantime::format_duration(cfg.ipfix_idle_timeout)
                    );
                    Some(h)
                }
                Err(e) => return Err(Error::io("starting the IPFIX exporter's thread")(e)),
            }
        }
        None => None,
    };
    let cri = match &cfg.cri_socket {
        Some(p) => CriClient::connect(p)
            .await
            .map_err(|e| log::warn!("CRI {}: {e}; pods will not be named", p.display()))
            .ok(),
        None => CriClient::discover(&cri::candidates(None)).await.map(|(_, c)| c),
    };
    // Before attaching anything: a socket another daemon answers on stops us here, unchanged.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = match api_path {
        Some(p) => {
            let server = ApiServer::bind(&p, Arc::clone(&shared) as Arc<dyn Backend>)?;
            log::info!("control API on {}", p.display());
            Some(tokio::spawn(server.serve(async move {
                let _ = stop_rx.await;
            })))
        }
        None => None,
    };

    let (mstop_tx, mstop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = metrics.map(|m| {
        log::info!("Prometheus metrics on http://{}/metrics", m.local_addr());
        let opts = MetricsOptions {
            top_flows: cfg.metrics_flows,
            ..MetricsOptions::default()
        };
        tokio::spawn(m.serve(Arc::clone(&shared) as Arc<dyn Backend>, opts, async move {
            let _ = mstop_rx.await;
        }))
    });
    let event_reader = tokio::spawn(read_events(Arc::clone(&shared), ring));
    let ebpf_log_reader = ebpf_logger.map(|l| tokio::spawn(read_ebpf_log(l)));
    let mut d = Daemon {
        cfg,
        invocation,
        ebpf,
        shared: Arc::clone(&shared),
        links: HashMap::new(),
        nl,
        cri,
        pods: cri::PodResolver::default(),
        ager: Ager::new(FLOW_IDLE),
        drop_maps,
    };
    // Named before attaching: once `netpath run` says it attached, `--pod` finds what it named.
    let named = d.refresh_owners().await;
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
            log::info!("removed stale pinned link {p}");
        }
    }
    shared.record_names();

    let started = Instant::now();
    let deadline = d.cfg.duration.map(|x| tokio::time::Instant::now() + x);
    let mut next_print = tokio::time::Instant::now() + d.cfg.interval;
    // Owners are named as links appear; what is not nameable yet is retried on this timer, a
    // bounded number of times (a namespace no process holds and no name pins never will be).
    let mut owners_retry = (!named).then(|| (tokio::time::Instant::now() + owner_retry(0), 1));
    let mut next_age = tokio::time::Instant::now() + AGE_SCAN;
    let mut facts_pending = true;
    // The doctor: first soon after start, then every interval; one run at a time, off the loop.
    let mut next_doctor = d
        .cfg
        .doctor_interval
        .map(|i| tokio::time::Instant::now() + i.min(doctor::FIRST_RUN));
    let mut doctor_run: Option<tokio::sync::oneshot::Receiver<std::result::Result<Vec<Finding>, String>>> = None;
    loop {
        let until_deadline = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { return Err(Error::Stopped("rtnetlink notifications stopped".into())) };
                let at = Instant::now();
                let mut dirty = d.on_event(ev)?;
                // Drain what is already queued (a veth pair arrives as several messages).
                while let Ok(ev) = events.try_recv() {
                    dirty |= d.on_event(ev)?;
                }
                if dirty {
                    let _ = d.reconcile(Some(at));
                    let named = d.refresh_owners().await;
                    shared.record_names();
                    owners_retry = (!named).then(|| (tokio::time::Instant::now() + owner_retry(0), 1));
                }
            }
            _ = async { tokio::time::sleep_until(owners_retry.map_or_else(tokio::time::Instant::now, |r| r.0)).await }, if owners_retry.is_some() => {
                let named = d.refresh_owners().await;
                shared.record_names();
                let tries = owners_retry.map_or(0, |r| r.1);
                owners_retry = (!named && tries < OWNER_RETRIES)
                    .then(|| (tokio::time::Instant::now() + owner_retry(tries), tries + 1));
            }
            _ = tokio::time::sleep_until(next_print) => {
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
                        Ok(true) => log::info!("switched off a capture whose `netpath capture` had died"),
                        Ok(false) => {}
                        Err(e) => log::warn!("checking for an abandoned capture: {e}"),
                    }
                }
                next_age += AGE_SCAN;
            }
            facts = &mut facts_rx, if facts_pending => {
                facts_pending = false;
                if let Ok(f) = facts {
                    d.start_drops(f);
                }
            }
            _ = async { tokio::time::sleep_until(next_doctor.unwrap_or_else(tokio::time::Instant::now)).await }, if next_doctor.is_some() => {
                if doctor_run.is_none() {
                    doctor_run = Some(start_doctor(Arc::clone(&shared)));
                }
                next_doctor = d.cfg.doctor_interval.map(|i| tokio::time::Instant::now() + i);
            }
            outcome = async { doctor_run.as_mut().expect("guarded").await }, if doctor_run.is_some() => {
                doctor_run = None;
                shared.doctor_finished(outcome.unwrap_or_else(|_| Err("the doctor's thread ended without an answer".into())));
            }
            _ = sighup.recv() => {
                let before = d.cfg.doctor_interval;
                d.reload();
                if d.cfg.doctor_interval != before {
                    shared.doctor.lock().unwrap().set_interval(d.cfg.doctor_interval);
                    next_doctor = d.cfg.doctor_interval.map(|i| tokio::time::Instant::now() + i.min(doctor::FIRST_RUN));
                }
            }
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
    if let Some(r) = ebpf_log_reader {
        r.abort();
    }
    shared.flush_delivered();
    let _ = stop_tx.send(());
    let _ = mstop_tx.send(());
    if let Some(api) = api {
        let _ = api.await;
    }
    if let Some(m) = metrics_task {
        if let Ok(Err(e)) = m.await {
            log::warn!("{e}");
        }
    }
    if let Some(h) = ipfix {
        // Exports what the flows counted since their last record (`forced end`).
        h.stop();
    }
    d.shutdown();
    Ok(())
}
