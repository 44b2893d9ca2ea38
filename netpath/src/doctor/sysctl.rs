//! Kernel settings and table sizes: `rp_filter`, `ip_forward`, `br_netfilter`, `conntrack`,
//! `neigh_table`. Read from /proc/sys, which shows the calling thread's network namespace.
use std::path::Path;

use super::{Node, Observed};
use crate::model::doctor::{Finding, Status};

/// A sysctl under /proc/sys as a number (None when absent or not a number).
fn read(path: &str) -> Option<u64> {
    std::fs::read_to_string(Path::new("/proc/sys").join(path))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `sysctl` name of an interface's setting: a dot in the name becomes `/` (`flannel/1`).
fn conf_key(iface: &str, key: &str) -> String {
    format!("net.ipv4.conf.{}.{key}", iface.replace('.', "/"))
}

/// Strict reverse-path filtering (1) drops packets whose source the node routes out of another
/// interface: asymmetric paths, and pods whose replies come back another way. The effective value
/// is max(all, interface); loose (2) keeps the spoofing check without the asymmetry problem.
pub fn rp_filter(node: &Node, observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "rp_filter";
    let all = read("net/ipv4/conf/all/rp_filter").unwrap_or(0);
    let mut out = Vec::new();
    for l in node.links.iter().filter(|l| l.name != "lo") {
        let own = read(&format!("net/ipv4/conf/{}/rp_filter", l.name)).unwrap_or(0);
        if all.max(own) != 1 {
            continue;
        }
        let drops = observed.drops_of("IP_RPFILTER", Some(&l.name));
        let mut evidence = format!("strict: all={all}, {}={own} (effective {})", l.name, all.max(own));
        let status = if drops > 0 {
            evidence.push_str(&format!(
                "; {drops} packets dropped with reason IP_RPFILTER on {} {}",
                l.name, observed.since
            ));
            Status::Fail
        } else {
            if observed.available {
                evidence.push_str("; no IP_RPFILTER drops seen yet");
            }
            Status::Warn
        };
        out.push(Finding::bad(
            CHECK,
            status,
            l.name.clone(),
            evidence,
            Some(format!("sysctl -w {}=2", conf_key(&l.name, "rp_filter"))),
        ));
    }
    if out.is_empty() {
        out.push(Finding::ok(
            CHECK,
            "all interfaces",
            format!("no interface strict (all={all})"),
        ));
    }
    out
}

pub fn ip_forward(observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "ip_forward";
    match read("net/ipv4/ip_forward") {
        Some(1) => vec![Finding::ok(CHECK, "node", "net.ipv4.ip_forward=1")],
        v => {
            let mut evidence = format!(
                "net.ipv4.ip_forward={}: pod traffic is not routed",
                v.map_or("?".to_string(), |v| v.to_string())
            );
            let dropped = observed.drops_of("IP_INNOROUTES", None) + observed.drops_of("IP_INADDRERRORS", None);
            if dropped > 0 {
                evidence.push_str(&format!(
                    "; {dropped} packets dropped with reasons IP_INNOROUTES/IP_INADDRERRORS {}",
                    observed.since
                ));
            }
            vec![Finding::bad(
                CHECK,
                Status::Fail,
                "node",
                evidence,
                Some("sysctl -w net.ipv4.ip_forward=1".into()),
            )]
        }
    }
}

/// kube-proxy's rules see bridged pod traffic only through br_netfilter with
/// bridge-nf-call-iptables=1; without it Service traffic between pods on one bridge bypasses them.
pub fn br_netfilter(node: &Node) -> Vec<Finding> {
    const CHECK: &str = "br_netfilter";
    let bridges: Vec<&str> = node
        .links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("bridge"))
        .map(|l| l.name.as_str())
        .collect();
    if bridges.is_empty() {
        return vec![Finding::ok(CHECK, "node", "no bridge here")];
    }
    let subject = bridges.join(",");
    if !Path::new("/sys/module/br_netfilter").exists() {
        // A warning: kube-proxy's iptables mode needs it, its IPVS and eBPF replacements do not.
        return vec![Finding::bad(
            CHECK,
            Status::Warn,
            subject,
            "the br_netfilter module is not loaded: bridged pod traffic skips iptables (kube-proxy's iptables mode needs it)",
            Some("modprobe br_netfilter".into()),
        )];
    }
    match read("net/bridge/bridge-nf-call-iptables") {
        Some(1) => vec![Finding::ok(
            CHECK,
            subject,
            "br_netfilter loaded, bridge-nf-call-iptables=1",
        )],
        v => vec![Finding::bad(
            CHECK,
            Status::Fail,
            subject,
            format!(
                "bridge-nf-call-iptables={}: bridged pod traffic skips iptables",
                v.map_or("?".to_string(), |v| v.to_string())
            ),
            Some("sysctl -w net.bridge.bridge-nf-call-iptables=1".into()),
        )],
    }
}

/// How full a table is: warn at 90 %, fail at 95 % (`conntrack`); `neigh_table` uses the same.
fn fullness(check: &str, subject: &str, count: u64, max: u64, what: &str, fix: String) -> Finding {
    if max == 0 {
        return Finding::ok(check, subject, format!("{count} {what} (no limit)"));
    }
    let pct = count as f64 * 100.0 / max as f64;
    let evidence = format!("{count} of {max} {what} ({pct:.0}%)");
    let status = if pct >= 95.0 {
        Status::Fail
    } else if pct >= 90.0 {
        Status::Warn
    } else {
        return Finding::ok(check, subject, evidence);
    };
    Finding::bad(check, status, subject, evidence, Some(fix))
}

/// A full conntrack table drops new connections (`nf_conntrack: table full, dropping packet`).
pub fn conntrack() -> Vec<Finding> {
    match (
        read("net/netfilter/nf_conntrack_count"),
        read("net/netfilter/nf_conntrack_max"),
    ) {
        (Some(count), Some(max)) => vec![conntrack_finding(count, max)],
        _ => vec![Finding::ok("conntrack", "conntrack", "conntrack is not loaded")],
    }
}

pub fn conntrack_finding(count: u64, max: u64) -> Finding {
    fullness(
        "conntrack",
        "conntrack",
        count,
        max,
        "connections tracked",
        format!("sysctl -w net.netfilter.nf_conntrack_max={}", (max * 2).max(count * 2)),
    )
}

/// Beyond gc_thresh3 the kernel refuses new neighbours ("neighbour table overflow"): pods stop
/// resolving their peers. The ARP table and its thresholds are the node's, shared by every network
/// namespace: the entries and the overflows come from `stat/arp_cache`, the threshold from the
/// node's own namespace (a pod or lab namespace has no `neigh/default`).
pub fn neigh_table(node: &Node) -> Vec<Finding> {
    let (entries, table_fulls) = arp_cache_stats().unwrap_or((node.neighbours.len() as u64, 0));
    let thresh3 = read("net/ipv4/neigh/default/gc_thresh3")
        .or_else(|| in_node_namespace(|| read("net/ipv4/neigh/default/gc_thresh3")));
    let mut f = match thresh3 {
        Some(t) => neigh_finding(entries, t),
        None => Finding::ok(
            "neigh_table",
            "ipv4 neighbours",
            format!(
                "{entries} IPv4 neighbours on the node (gc_thresh3 is the node namespace's, not readable from here)"
            ),
        ),
    };
    let thresh3 = thresh3.unwrap_or(0);
    if table_fulls > 0 {
        f.evidence
            .push_str(&format!("; the table was full {table_fulls} time(s) since boot"));
        if f.status == Status::Ok {
            f.status = Status::Warn;
            f.fix = Some(neigh_fix(entries, thresh3));
        }
    }
    vec![f]
}

fn neigh_fix(count: u64, thresh3: u64) -> String {
    format!(
        "sysctl -w net.ipv4.neigh.default.gc_thresh3={}",
        (thresh3 * 2).max(count * 2)
    )
}

pub fn neigh_finding(count: u64, thresh3: u64) -> Finding {
    fullness(
        "neigh_table",
        "ipv4 neighbours",
        count,
        thresh3,
        "IPv4 neighbours on the node against gc_thresh3",
        neigh_fix(count, thresh3),
    )
}

/// `entries` and `table_fulls` of the kernel's ARP table (`/proc/net/stat/arp_cache`, hex).
fn arp_cache_stats() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/net/stat/arp_cache").ok()?;
    let mut lines = text.lines();
    let heads: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .map(|v| u64::from_str_radix(v, 16).unwrap_or(0))
        .collect();
    let at = |name: &str| {
        heads
            .iter()
            .position(|h| *h == name)
            .and_then(|i| values.get(i).copied())
    };
    Some((at("entries")?, at("table_fulls").unwrap_or(0)))
}

/// `f` on a thread in the node's own network namespace (that of PID 1).
fn in_node_namespace<T: Send>(f: impl FnOnce() -> Option<T> + Send) -> Option<T> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open("/proc/1/ns/net").ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid fd we own, on this short-lived thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            f()
        })
        .join()
        .ok()
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_warn_at_90_and_fail_at_95_percent() {
        assert_eq!(conntrack_finding(10, 100).status, Status::Ok);
        let w = conntrack_finding(91, 100);
        assert_eq!(w.status, Status::Warn);
        assert_eq!(w.fix.as_deref(), Some("sysctl -w net.netfilter.nf_conntrack_max=200"));
        assert_eq!(conntrack_finding(95, 100).status, Status::Fail);
        assert!(conntrack_finding(95, 100).evidence.contains("95 of 100"));
        let n = neigh_finding(1030, 1024);
        assert_eq!(n.status, Status::Fail);
        assert_eq!(
            n.fix.as_deref(),
            Some("sysctl -w net.ipv4.neigh.default.gc_thresh3=2060")
        );
        assert_eq!(neigh_finding(3, 0).status, Status::Ok);
    }

    #[test]
    fn sysctl_names_of_dotted_interfaces_use_slashes() {
        assert_eq!(conf_key("flannel.1", "rp_filter"), "net.ipv4.conf.flannel/1.rp_filter");
        assert_eq!(conf_key("ul0", "rp_filter"), "net.ipv4.conf.ul0.rp_filter");
    }
}
