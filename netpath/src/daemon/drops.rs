//! The drop tracer in the daemon: what it reads about the kernel (off the startup path: parsing
//! the kernel's BTF takes about 0.2 s, and the TC programs must not wait for it), its state for
//! `status`, and naming a drop site (namespace, interface, pod, reason, location) the same way for
//! rows, events and metrics.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use netpath_common::drop::{DropKey, DropLayout, REASON_NETPATH_RULE};

use super::view::View;
use crate::{
    error::{Error, Result},
    model::{
        drops::{self, DropFilter, DropReasons, DropRow, Site},
        owner::{self, Owner},
    },
    node::{btf::KernelBtf, ifaces, kallsyms::Kallsyms, netns},
    service::api::ApiError,
};

/// What the tracer needs from the kernel, read on a thread of its own at startup.
pub struct KernelFacts {
    /// The tracer's layout, or why this kernel cannot run it.
    pub layout: Result<DropLayout>,
    pub reasons: DropReasons,
    pub kallsyms: Kallsyms,
    /// aya's view of the kernel's BTF, which loading a `tp_btf` program needs.
    pub btf: Option<aya::Btf>,
}

/// Read what the tracer needs (blocking: BTF and /proc/kallsyms). With `tracer` false only the
/// reason names (netpath's own rule drops are counted whatever the tracer does).
pub fn read_kernel(tracer: bool) -> KernelFacts {
    let kernel = KernelBtf::load();
    let (layout, reasons) = match &kernel {
        Ok(k) => (k.drop_layout(), k.drop_reasons()),
        Err(e) => (Err(Error::Unsupported(e.to_string())), DropReasons::default()),
    };
    let btf = if tracer && layout.is_ok() {
        aya::Btf::from_sys_fs()
            .map_err(|e| log::warn!("reading the kernel's BTF for the drop tracer: {e}"))
            .ok()
    } else {
        None
    };
    KernelFacts {
        layout,
        reasons,
        kallsyms: Kallsyms::load(),
        btf,
    }
}

/// How long a name found for an interface in another namespace is trusted.
const FOREIGN_TTL: Duration = Duration::from_secs(30);

/// The daemon's drop state (in [`Shared`]).
pub struct Drops {
    /// For `status`: `starting`, `on`, `off`, or `unavailable: WHY`.
    pub tracer: String,
    reasons: Arc<DropReasons>,
    kallsyms: Arc<Kallsyms>,
    /// The daemon's network namespace (inode) and name (`--netns`; None for the node's own).
    own: u32,
    own_name: Option<String>,
    /// (namespace, ifindex) -> (interface name, when read), for namespaces the view does not hold
    /// links of.
    foreign: HashMap<(u32, u32), (String, Instant)>,
    /// Namespace inode -> its /run/netns (name, path), or None when it has no name there; read
    /// once a while, not for every drop event.
    named: HashMap<u32, (Option<(String, String)>, Instant)>,
}

impl Drops {
    pub fn new(tracer: &str, own: u32, own_name: Option<String>) -> Drops {
        Drops {
            tracer: tracer.to_string(),
            reasons: Arc::new(DropReasons::default()),
            kallsyms: Arc::new(Kallsyms::default()),
            own,
            own_name,
            foreign: HashMap::new(),
            named: HashMap::new(),
        }
    }

    pub fn learned(&mut self, reasons: DropReasons, kallsyms: Kallsyms) {
        self.reasons = Arc::new(reasons);
        self.kallsyms = Arc::new(kallsyms);
    }
}

/// A drop site named: where, who, why.
pub struct Named {
    pub site: Site,
    pub reason: String,
    pub subsystem: String,
}

impl Drops {
    pub fn reasons(&self) -> Arc<DropReasons> {
        Arc::clone(&self.reasons)
    }

    /// The interface, namespace, pod and location of a drop site.
    pub fn site(&mut self, view: &View, k: &DropKey) -> Site {
        let location = if k.reason == REASON_NETPATH_RULE {
            format!("rule {}", k.location)
        } else {
            self.kallsyms.name(k.location)
        };
        if k.netns != 0 && k.netns == self.own {
            return Site {
                iface: view.name(k.ifindex),
                netns: self.own_name.clone(),
                owner: view.owner(k.ifindex),
                location,
            };
        }
        if k.netns == 0 {
            // The skb had no device (a socket's queue, say): its input interface's index is kept,
            // but without a namespace it names nothing.
            return Site {
                iface: "-".to_string(),
                netns: None,
                owner: Owner::default(),
                location,
            };
        }
        // A pod's namespace: the pod is the one behind the host veth that leads there, and the
        // view read its links.
        let pod = view.links.values().find_map(|l| {
            let ns = view.netns.get(&l.link_netnsid?)?;
            (ns.inode as u32 == k.netns).then_some((view.owner(l.ifindex), ns))
        });
        let (owner, name, path, known) = match pod {
            Some((o, ns)) => {
                let known = ns.links.iter().flatten().find(|p| p.ifindex == k.ifindex);
                (o, ns.name.clone(), ns.path.clone(), known.map(|p| p.name.clone()))
            }
            None => match self.named_netns(k.netns) {
                Some((name, path)) => (Owner::default(), Some(name), Some(path), None),
                None => (Owner::default(), None, None, None),
            },
        };
        let iface = match known {
            Some(n) => n,
            None => self.foreign_name(k.netns, k.ifindex, path.as_deref()),
        };
        Site {
            iface,
            netns: Some(name.unwrap_or_else(|| format!("netns:[{}]", k.netns))),
            owner,
            location,
        }
    }

    /// The /run/netns name and path of namespace `inode`, cached for a while (also when it has
    /// none: a drop storm in an unnamed namespace must not rescan /run/netns for every drop).
    fn named_netns(&mut self, inode: u32) -> Option<(String, String)> {
        let now = Instant::now();
        if let Some((found, at)) = self.named.get(&inode) {
            if now.duration_since(*at) < FOREIGN_TTL {
                return found.clone();
            }
        }
        let found = netns::find_by_inode(u64::from(inode));
        if self.named.len() > 4096 {
            self.named.clear();
        }
        self.named.insert(inode, (found.clone(), now));
        found
    }

    /// The name of `ifindex` in another namespace (at `path`), cached for a while.
    fn foreign_name(&mut self, netns: u32, ifindex: u32, path: Option<&str>) -> String {
        let now = Instant::now();
        if let Some((n, at)) = self.foreign.get(&(netns, ifindex)) {
            if now.duration_since(*at) < FOREIGN_TTL {
                return n.clone();
            }
        }
        let name = path
            .and_then(|p| ifaces::name_in(p, ifindex))
            .unwrap_or_else(|| format!("if{ifindex}"));
        if self.foreign.len() > 4096 {
            self.foreign.clear();
        }
        self.foreign.insert((netns, ifindex), (name.clone(), now));
        name
    }

    /// A site named, its reason too.
    pub fn name(&mut self, view: &View, k: &DropKey) -> Named {
        Named {
            site: self.site(view, k),
            reason: self.reasons.name(k.reason),
            subsystem: self.reasons.subsystem(k.reason),
        }
    }

    /// Rows of `sites` after `filter`, heaviest first. An unknown reason, interface or pod is bad
    /// input naming what exists.
    pub fn rows(
        &mut self,
        view: &View,
        sites: &[(DropKey, u64, u64)],
        filter: &DropFilter,
    ) -> std::result::Result<Vec<DropRow>, ApiError> {
        let reasons = self.reasons();
        let mut filter = filter.clone();
        if let Some(r) = &filter.reason {
            if reasons.is_empty() && !r.eq_ignore_ascii_case(netpath_common::drop::NETPATH_RULE) {
                return Err(ApiError::from(Error::BadArgument(format!(
                    "the drop reasons of this kernel are not read yet (drop tracer: {}); try again in a moment",
                    self.tracer
                ))));
            }
            // Normalised to the name rows carry (any case, prefix or not).
            filter.reason = Some(reasons.name(reasons.parse(r)?));
        }
        let all = drops::rows(sites, &reasons, &DropFilter::default(), |k| self.site(view, k));
        if let Some(name) = &filter.iface {
            // Any link of the node's namespaces the daemon knows: one without drops yet is fine.
            let mut pod_links = view.netns.values().flat_map(|ns| ns.links.iter().flatten());
            if !all.iter().any(|r| &r.iface == name)
                && !view.links.values().any(|l| &l.name == name)
                && !pod_links.any(|p| p.name == *name)
            {
                let mut known: Vec<&str> = view
                    .links
                    .values()
                    .map(|l| l.name.as_str())
                    .chain(
                        view.netns
                            .values()
                            .flat_map(|ns| ns.links.iter().flatten().map(|p| p.name.as_str())),
                    )
                    .chain(all.iter().map(|r| r.iface.as_str()))
                    .collect();
                known.sort();
                known.dedup();
                return Err(ApiError::from(Error::UnknownInterface {
                    name: name.clone(),
                    ns: String::new(),
                    available: known.join(", "),
                }));
            }
        }
        if let Some(pod) = &filter.pod {
            let mut owners: Vec<Owner> = view.links.keys().map(|i| view.owner(*i)).collect();
            owners.extend(all.iter().map(drops::row_owner));
            owner::check_pod(pod, owners.iter())?;
        }
        Ok(all.into_iter().filter(|r| filter.matches(r)).collect())
    }
}
