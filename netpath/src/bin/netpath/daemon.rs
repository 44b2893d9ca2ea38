//! Reaching the daemon from the read commands: its API when one answers, else the pins.
use std::{cell::RefCell, collections::HashMap, os::unix::fs::MetadataExt as _};

use anyhow::Context as _;
use netpath::{
    caps,
    datapath::{
        maps::Maps,
        names::{Names, Recorded},
    },
    defaults,
    model::{
        drops::{self, DropFilter, DropReasons, DropRow, Site},
        flows::{self, Clock, Filter, FlowRow},
        owner::{check_pod, Owner, Role},
    },
    node::{btf::KernelBtf, ifaces, kallsyms::Kallsyms, netns},
    service::api::{ApiClient, ApiError},
};
use netpath_common::drop::{DropKey, REASON_NETPATH_RULE};

use crate::args::ReadArgs;

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The daemon's API when one answers on the socket; None means read the pins.
pub fn connect(socket: &std::path::Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Option<ApiClient>> {
    Ok(rt.block_on(ApiClient::connect(socket))?)
}

/// The pinned maps, named from `--netns` when given.
pub fn open_pins(read: &ReadArgs) -> anyhow::Result<Maps> {
    caps::require_read()?;
    if let Some(ns) = &read.netns {
        netns::enter(ns)?;
    }
    Ok(Maps::open_pinned(&read.pin.pin_dir)?)
}

/// Names for ifindexes read from the pins: what the daemon recorded with them.
pub struct PinNames {
    names: Names,
    reader_netns: Option<String>,
    unknown: RefCell<Vec<u32>>,
}

impl PinNames {
    pub fn read(read: &ReadArgs) -> PinNames {
        PinNames {
            names: Names::read(&read.pin.pin_dir),
            reader_netns: read.netns.clone(),
            unknown: RefCell::default(),
        }
    }

    pub fn get(&self, ifindex: u32) -> Recorded {
        self.names
            .name(ifindex, self.reader_netns.as_deref(), &mut self.unknown.borrow_mut())
    }

    /// Who is behind each recorded interface: what `--pod` is checked against without a daemon.
    pub fn owners(&self) -> Vec<Owner> {
        self.names.by_ifindex.values().map(|r| r.owner.clone()).collect()
    }

    /// Say which interfaces could not be named (on stderr: the rows stay what scripts parse).
    pub fn warn_unknown(&self) {
        if let Some(note) = self.names.unknown_note(&self.unknown.borrow()) {
            log::warn!("{note}");
        }
    }
}

/// Flow rows after `filter`, from the daemon when one answers (it checks the names), else from the
/// pins named as the daemon recorded them (an unknown `--iface` or `--pod` is bad input here too).
pub fn flow_rows(read: &ReadArgs, filter: &Filter, rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<FlowRow>> {
    if let Some(c) = connect(&read.socket, rt)? {
        let mut rows = rt.block_on(c.flows(filter))?;
        for r in &mut rows {
            r.class = flows::class_of_row(r);
        }
        return Ok(rows);
    }
    let clock = Clock::now();
    let pinned = open_pins(read)?.flows()?;
    let names = PinNames::read(read);
    let rows: Vec<_> = pinned
        .iter()
        .map(|(k, v)| {
            let n = names.get(k.ifindex);
            let mut r = flows::row(k, v, n.iface, &clock);
            r.owner = n.owner;
            r
        })
        .collect();
    names.warn_unknown();
    // A name with flows is known (even if its link is gone); one without must exist.
    if let Some(name) = &filter.iface {
        if !rows.iter().any(|r| &r.iface == name) {
            ifaces::resolve(name, read.netns.as_deref())?;
        }
    }
    if let Some(pod) = &filter.pod {
        let mut owners = names.owners();
        owners.extend(rows.iter().map(|r| r.owner.clone()));
        check_pod(pod, &owners)?;
    }
    Ok(flows::select(rows, filter))
}

/// The running kernel's drop reason names; without its BTF, none (reasons show as numbers).
pub fn drop_reasons() -> DropReasons {
    match KernelBtf::load() {
        Ok(btf) => btf.drop_reasons(),
        Err(e) => {
            log::warn!("{e}: drop reasons are shown as numbers");
            DropReasons::default()
        }
    }
}

/// Drop rows after `filter`, heaviest first: from the daemon when one answers (it resolves the
/// reason against its kernel and checks the names), else from the pinned drop table, named as the
/// daemon recorded its interfaces. An unknown reason, `--iface` or `--pod` is bad input here too.
pub fn drop_rows(read: &ReadArgs, filter: &DropFilter, rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<DropRow>> {
    if let Some(c) = connect(&read.socket, rt)? {
        return Ok(rt.block_on(c.drops(filter))?);
    }
    let reasons = drop_reasons();
    // The reason first: a typo is an error before any map is read. Rows name it as `name` does.
    let mut filter = filter.clone();
    if let Some(r) = &filter.reason {
        filter.reason = Some(reasons.name(reasons.parse(r)?));
    }
    let maps = open_pins(read)?;
    if maps.drops.is_none() {
        anyhow::bail!(
            "the pins under {} hold no drop table: the netpath that pinned them has no drop tracer \
             (`netpath down`, then start this netpath's `netpath run`)",
            read.pin.pin_dir.display()
        );
    }
    let sites = maps.drops()?;
    let daemon_netns = match maps.config.get(&0, 0).context("reading the pinned config")?.netns {
        // Pins of a daemon that did not say: the namespace the reader is in (`--netns`).
        0 => own_netns(),
        ns => ns,
    };
    let names = PinNames::read(read);
    let namer = DropNamer {
        daemon_netns,
        daemon_netns_name: read.netns.clone(),
        names: &names,
        netns_names: if sites.iter().any(|(k, ..)| k.netns != daemon_netns) {
            named_netns_inodes()
        } else {
            HashMap::new()
        },
        pods: pods_by_netns(&names.owners()),
        kallsyms: if sites.iter().any(|(k, ..)| k.reason != REASON_NETPATH_RULE) {
            Kallsyms::load()
        } else {
            Kallsyms::default()
        },
    };
    let rows = drops::rows(&sites, &reasons, &DropFilter::default(), |k| namer.site(k));
    names.warn_unknown();
    select_drops(rows, &filter, &names.owners(), |name| {
        ifaces::resolve(name, read.netns.as_deref()).map(|_| ())
    })
}

/// `filter` applied to every drop row, after the same checks `flows` makes: an interface with
/// drops is known (even if its link is gone), one without must exist (`resolve`); a pod must be
/// one the recorded interfaces or the rows lead to. The errors also list what has drops.
pub fn select_drops(
    rows: Vec<DropRow>,
    filter: &DropFilter,
    owners: &[Owner],
    resolve: impl FnOnce(&str) -> netpath::Result<()>,
) -> anyhow::Result<Vec<DropRow>> {
    if let Some(name) = &filter.iface {
        if !rows.iter().any(|r| &r.iface == name) {
            if let Err(e) = resolve(name) {
                let mut with: Vec<&str> = rows.iter().map(|r| r.iface.as_str()).collect();
                with.sort_unstable();
                with.dedup();
                let with = if with.is_empty() {
                    "(none)".to_string()
                } else {
                    with.join(", ")
                };
                return Err(netpath::Error::BadArgument(format!("{e}; interfaces with drops: {with}")).into());
            }
        }
    }
    if let Some(pod) = &filter.pod {
        let of_rows: Vec<Owner> = rows.iter().map(drops::row_owner).collect();
        check_pod(pod, owners.iter().chain(&of_rows))?;
    }
    Ok(rows.into_iter().filter(|r| filter.matches(r)).collect())
}

/// Names drop sites read from the pins.
pub struct DropNamer<'a> {
    /// Inode of the daemon's network namespace: its links are named from the records.
    pub daemon_netns: u32,
    /// Its name (`--netns`), as the daemon names its own rows; None for the node's own.
    pub daemon_netns_name: Option<String>,
    pub names: &'a PinNames,
    /// Named network namespaces (/run/netns) by inode.
    pub netns_names: HashMap<u32, String>,
    /// The pods behind the recorded veths, by the name of their network namespace: a drop inside
    /// that namespace is the pod's.
    pub pods: HashMap<String, Owner>,
    pub kallsyms: Kallsyms,
}

impl DropNamer<'_> {
    pub fn site(&self, k: &DropKey) -> Site {
        let location = if k.reason == REASON_NETPATH_RULE {
            format!("rule {}", k.location)
        } else {
            self.kallsyms.name(k.location)
        };
        if k.netns != 0 && k.netns == self.daemon_netns {
            // As `flows` names the link, and as the daemon names its own rows: NETNS is where the
            // packet died, the daemon's namespace.
            let n = self.names.get(k.ifindex);
            return Site {
                iface: n.iface,
                netns: self.daemon_netns_name.clone(),
                owner: n.owner,
                location,
            };
        }
        let netns = (k.netns != 0).then(|| {
            self.netns_names
                .get(&k.netns)
                .cloned()
                .unwrap_or_else(|| format!("netns:[{}]", k.netns))
        });
        let owner = netns
            .as_ref()
            .and_then(|n| self.pods.get(n))
            .cloned()
            .unwrap_or_default();
        // A named namespace's link by its name there (read from a thread that enters it).
        let named = self.netns_names.get(&k.netns).and_then(|n| {
            let path = std::path::Path::new(defaults::NETNS_RUN_DIR).join(n);
            ifaces::name_in(path.to_str()?, k.ifindex)
        });
        Site {
            // Without a device (netns 0) the index names nothing, as the daemon says.
            iface: match (k.netns, k.ifindex, named) {
                (0, ..) | (_, 0, _) => "-".into(),
                (_, _, Some(n)) => n,
                (_, i, None) => format!("if{i}"),
            },
            netns,
            owner,
            location,
        }
    }
}

/// Pods by the name of the network namespace behind their veth.
fn pods_by_netns(owners: &[Owner]) -> HashMap<String, Owner> {
    owners
        .iter()
        .filter(|o| o.role.is_none_or(|r| r == Role::Pod))
        .filter_map(|o| Some((o.netns.clone()?, o.clone())))
        .collect()
}

/// The named network namespaces (/run/netns) by inode.
fn named_netns_inodes() -> HashMap<u32, String> {
    netns::named()
        .into_iter()
        .filter_map(|n| {
            let ino = std::fs::metadata(std::path::Path::new(defaults::NETNS_RUN_DIR).join(&n))
                .ok()?
                .ino();
            Some((u32::try_from(ino).ok()?, n))
        })
        .collect()
}

/// The inode of the calling thread's network namespace (0 if unreadable).
fn own_netns() -> u32 {
    netns::own_inode().and_then(|i| u32::try_from(i).ok()).unwrap_or(0)
}

/// The daemon, or a clear error: rules and the fast path need its view of the node.
pub fn require(rt: &tokio::runtime::Runtime, socket: &std::path::Path) -> anyhow::Result<ApiClient> {
    caps::require_read()?;
    connect(socket, rt)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no netpath daemon answers on {}: rules and the fast path are managed by `netpath run`",
            socket.display()
        )
    })
}

/// For the commands that change the daemon (`rule`, `fastpath`): its 4xx answer is bad input (exit 2)
/// and says what is wrong in its own words. The read commands pass the daemon's answer on as it is.
pub fn answer<T>(r: Result<T, ApiError>) -> anyhow::Result<T> {
    r.map_err(|e| match e {
        ApiError::Daemon { status, message } if (400..500).contains(&status) => {
            netpath::Error::BadArgument(message).into()
        }
        e => netpath::Error::from(e).into(),
    })
}

#[cfg(test)]
mod tests {
    use netpath::datapath::names::Recorded;

    use super::*;

    const DAEMON_NS: u32 = 4026532000;
    const POD_NS: u32 = 4026532100;
    const ROUTER_NS: u32 = 4026532200;

    fn pod_owner(netns: &str) -> Owner {
        Owner {
            netns: Some(netns.into()),
            role: Some(Role::Pod),
            ..Owner::default()
        }
    }

    fn pin_names() -> PinNames {
        let rec = |iface: &str, owner: Owner| Recorded {
            iface: iface.into(),
            owner,
        };
        PinNames {
            names: Names {
                daemon_netns: Some(Some("np-node1".into())),
                by_ifindex: [
                    (
                        3,
                        rec(
                            "cni0",
                            Owner {
                                role: Some(Role::Host),
                                ..Owner::default()
                            },
                        ),
                    ),
                    (5, rec("veth85423149", pod_owner("np-n1-pod-a"))),
                    (
                        2,
                        rec(
                            "ul0",
                            Owner {
                                netns: Some("np-node2".into()),
                                role: Some(Role::Underlay),
                                ..Owner::default()
                            },
                        ),
                    ),
                ]
                .into(),
            },
            reader_netns: Some("np-node1".into()),
            unknown: RefCell::default(),
        }
    }

    fn key(netns: u32, ifindex: u32, reason: u32, location: u64) -> DropKey {
        DropKey {
            netns,
            ifindex,
            reason,
            direction: 0,
            _pad: [0; 3],
            location,
        }
    }

    fn reasons() -> DropReasons {
        DropReasons::new(
            [
                ("SKB_DROP_REASON_NOT_SPECIFIED".to_string(), 2),
                ("SKB_DROP_REASON_NO_SOCKET".into(), 3),
                ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12),
            ],
            [("SKB_DROP_REASON_SUBSYS_CORE".to_string(), 0)],
            [],
        )
    }

    /// Drops on the daemon's links (named from the records), inside a pod's namespace (its pod),
    /// in a named router namespace and an unnamed one, and a rule's.
    fn rows_of(names: &PinNames) -> Vec<DropRow> {
        let namer = DropNamer {
            daemon_netns: DAEMON_NS,
            daemon_netns_name: None,
            names,
            netns_names: [(POD_NS, "np-n1-pod-a".to_string()), (ROUTER_NS, "np-router".into())].into(),
            pods: pods_by_netns(&names.owners()),
            kallsyms: Kallsyms::parse("ffffffff81a00000 t ip_forward\nffffffff81b00000 T __udp4_lib_rcv\n".as_bytes()),
        };
        let sites = [
            (key(DAEMON_NS, 5, 12, 0xffffffff81a00010), 9, 900),
            (key(POD_NS, 2, 3, 0xffffffff81b00020), 4, 400),
            (key(ROUTER_NS, 7, 12, 0xffffffff81a00010), 3, 300),
            (key(4026539999, 9, 2, 0xffffffff81a00000), 2, 200),
            (key(DAEMON_NS, 3, REASON_NETPATH_RULE, 17), 1, 100),
            (key(DAEMON_NS, 2, 2, 0xffffffff81a00000), 1, 50),
        ];
        drops::rows(&sites, &reasons(), &DropFilter::default(), |k| namer.site(k))
    }

    #[test]
    fn drop_sites_are_named_from_the_pins_and_the_node() {
        let names = pin_names();
        let rows = rows_of(&names);
        let brief: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.iface.as_str(),
                    r.netns.as_deref(),
                    r.pod.as_deref(),
                    r.reason.as_str(),
                    r.location.as_str(),
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                (
                    "veth85423149",
                    None,
                    Some("np-n1-pod-a"),
                    "NETFILTER_DROP",
                    "ip_forward+0x10"
                ),
                (
                    "if2",
                    Some("np-n1-pod-a"),
                    Some("np-n1-pod-a"),
                    "NO_SOCKET",
                    "__udp4_lib_rcv+0x20"
                ),
                ("if7", Some("np-router"), None, "NETFILTER_DROP", "ip_forward+0x10"),
                (
                    "if9",
                    Some("netns:[4026539999]"),
                    None,
                    "NOT_SPECIFIED",
                    "ip_forward+0x0"
                ),
                ("cni0", None, None, "NETPATH_RULE", "rule 17"),
                ("ul0", None, None, "NOT_SPECIFIED", "ip_forward+0x0"),
            ]
        );
        assert_eq!(rows[4].subsystem, "netpath");
        assert!(names.unknown.borrow().is_empty(), "every daemon link is recorded");
    }

    #[test]
    fn drop_filters_are_checked_as_flows_check_theirs() {
        let names = pin_names();
        let owners = names.owners();
        let no_link = |name: &str| -> netpath::Result<()> {
            Err(netpath::Error::UnknownInterface {
                name: name.into(),
                ns: String::new(),
                available: "lo, cni0".into(),
            })
        };
        let select = |f: DropFilter| select_drops(rows_of(&names), &f, &owners, no_link);
        // A pod: its veth and inside its namespace, by any name --pod takes.
        for pod in ["np-n1-pod-a", "n1-pod-a"] {
            let got = select(DropFilter {
                pod: Some(pod.into()),
                ..DropFilter::default()
            })
            .unwrap();
            assert_eq!(
                got.iter().map(|r| r.iface.as_str()).collect::<Vec<_>>(),
                ["veth85423149", "if2"]
            );
        }
        // A name with drops needs no link; the reason as the rows name it.
        let got = select(DropFilter {
            iface: Some("if7".into()),
            reason: Some("netfilter_drop".into()),
            ..DropFilter::default()
        })
        .unwrap();
        assert_eq!(got.len(), 1);
        // A link without drops is fine when it exists.
        let none = select_drops(
            rows_of(&names),
            &DropFilter {
                iface: Some("lo".into()),
                ..DropFilter::default()
            },
            &owners,
            |_| Ok(()),
        )
        .unwrap();
        assert!(none.is_empty());
        // Unknown ones are bad input (exit 2) naming what exists.
        let e = select(DropFilter {
            iface: Some("eth9".into()),
            ..DropFilter::default()
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'eth9' not found")
                && msg.contains("interfaces with drops: cni0, if2, if7, if9, ul0, veth85423149"),
            "{msg}"
        );
        assert_eq!(
            e.downcast_ref::<netpath::Error>().map(netpath::Error::exit_code),
            Some(2)
        );
        let e = select(DropFilter {
            pod: Some("np-node2".into()),
            ..DropFilter::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("pods: n1-pod-a"), "{e}");
        assert_eq!(
            e.downcast_ref::<netpath::Error>().map(netpath::Error::exit_code),
            Some(2)
        );
    }
}
