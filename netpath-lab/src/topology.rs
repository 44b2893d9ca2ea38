//! The lab's plan (namespaces, links, addresses, routes, neighbour and FDB entries of both nodes),
//! building it, tearing it down, and comparing what exists with the plan.
use std::{fmt, net::Ipv4Addr};

use serde::Serialize;

use crate::{
    process::{kill_netns_processes, list_netns, ns_sh, run},
    LabError,
};

/// VXLAN UDP port flannel uses (the Linux default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// MTU of pod interfaces, bridges and VXLAN devices (underlay 1500 minus 50 bytes of VXLAN).
pub const POD_MTU: u32 = 1450;
/// MTU of the underlay link.
pub const UNDERLAY_MTU: u32 = 1500;

/// A lab instance: all names derive from `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    pub prefix: String,
}

/// One pod of the plan (and, from [`Lab::status`], what was found of it).
#[derive(Debug, Clone, Serialize)]
pub struct PodInfo {
    /// `n1-pod-a`: unique across both nodes.
    pub name: String,
    pub netns: String,
    /// 1 or 2.
    pub node: usize,
    pub node_netns: String,
    /// Host side of the pod's veth, in the node namespace, attached to `cni0`.
    pub host_veth: String,
    /// Address of the pod's `eth0` (a /24 of the node's pod CIDR).
    pub ip: Ipv4Addr,
    /// MAC of the pod's `eth0`: the planned one from [`Lab::pods`], the live one (None if the
    /// interface is missing) from [`Lab::status`].
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// True when every namespace, link, address, route, neighbour and FDB entry of the plan is
    /// present (see [`Lab::problems`] for what is missing otherwise).
    pub up: bool,
    /// The lab's namespaces that exist.
    pub namespaces: Vec<String>,
    pub pods: Vec<PodInfo>,
    /// `"node1 ul0 172.27.0.11/20"`, `"node2 ul0 172.27.16.10/20"` (what is configured; "missing"
    /// when the link or its address is absent).
    pub underlay: [String; 2],
}

/// Static description of one node.
struct NodePlan {
    index: usize,
    netns: String,
    /// Third octet of the node's pod CIDR 10.244.X.0/24.
    octet: u8,
    underlay: Ipv4Addr,
    vtep_mac: &'static str,
    bridge_mac: String,
}

const NODES: [(Ipv4Addr, &str); 2] = [
    (Ipv4Addr::new(172, 27, 0, 11), "0e:6e:70:66:00:01"),
    (Ipv4Addr::new(172, 27, 16, 10), "0e:6e:70:66:00:02"),
];
const UNDERLAY_PREFIX_LEN: u8 = 20;
const PODS_PER_NODE: [&[char]; 2] = [&['a', 'b', 'c'], &['a', 'b']];

impl NodePlan {
    fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.octet)
    }
    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.octet, 1)
    }
    fn vtep_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.octet, 0)
    }
    fn label(&self) -> String {
        format!("node{}", self.index)
    }
}

/// CNI bridge plugin style MAC: 0a:58 followed by the IPv4 address.
fn mac_for_ip(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

pub(crate) fn fnv1a32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn ns_exists(existing: &[String], name: &str) -> bool {
    existing.iter().any(|n| n == name)
}

impl Lab {
    pub fn new(prefix: &str) -> Lab {
        Lab {
            prefix: prefix.to_string(),
        }
    }

    /// The shared lab, prefix `np`.
    pub fn default_lab() -> Lab {
        Lab::new("np")
    }

    /// Name of node 1's or node 2's namespace.
    pub fn node_ns(&self, node: usize) -> String {
        format!("{}-node{}", self.prefix, node)
    }

    fn nodes(&self) -> [NodePlan; 2] {
        [1usize, 2].map(|index| {
            let octet = (index - 1) as u8;
            NodePlan {
                index,
                netns: self.node_ns(index),
                octet,
                underlay: NODES[index - 1].0,
                vtep_mac: NODES[index - 1].1,
                bridge_mac: mac_for_ip(Ipv4Addr::new(10, 244, octet, 1)),
            }
        })
    }

    /// The static plan: every pod of both nodes, node 1's first.
    pub fn pods(&self) -> Vec<PodInfo> {
        let mut out: Vec<PodInfo> = Vec::new();
        for node in self.nodes() {
            for (i, letter) in PODS_PER_NODE[node.index - 1].iter().enumerate() {
                let name = format!("n{}-pod-{}", node.index, letter);
                // Deterministic CNI-style name; re-hash on the (unlikely) clash within a node.
                let mut salt = 0u32;
                let host_veth = loop {
                    let key = if salt == 0 {
                        format!("{}/{}", self.prefix, name)
                    } else {
                        format!("{}/{}/{}", self.prefix, name, salt)
                    };
                    let cand = format!("veth{:08x}", fnv1a32(&key));
                    if !out.iter().any(|p| p.node == node.index && p.host_veth == cand) {
                        break cand;
                    }
                    salt += 1;
                };
                let ip = Ipv4Addr::new(10, 244, node.octet, 2 + i as u8);
                out.push(PodInfo {
                    netns: format!("{}-{}", self.prefix, name),
                    name,
                    node: node.index,
                    node_netns: node.netns.clone(),
                    host_veth,
                    ip,
                    mac: Some(mac_for_ip(ip)),
                });
            }
        }
        out
    }

    /// Every namespace of the plan: nodes first, then pods.
    fn all_namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nodes().iter().map(|n| n.netns.clone()).collect();
        v.extend(self.pods().into_iter().map(|p| p.netns));
        v
    }

    pub(crate) fn validate(&self) -> Result<(), LabError> {
        let p = &self.prefix;
        let bad = |reason: &str| {
            Err(LabError::InvalidPrefix {
                prefix: p.clone(),
                reason: reason.into(),
            })
        };
        if p.is_empty() {
            return bad("empty");
        }
        if p.len() > 32 {
            return bad("longer than 32 characters");
        }
        if !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad("only ASCII letters, digits, '-' and '_' are allowed");
        }
        Ok(())
    }

    /// Build the lab. Idempotent: a lab that is already complete is returned as is; a partial one
    /// (e.g. left by an interrupted run) is torn down and rebuilt. If building fails, whatever was
    /// created is removed again before the error is returned.
    pub fn up(&self) -> Result<LabStatus, LabError> {
        self.validate()?;
        let (status, _) = self.inspect()?;
        if status.up {
            return Ok(status);
        }
        if !status.namespaces.is_empty() {
            self.down()?;
        }
        if let Err(e) = self.build() {
            let _ = self.down();
            return Err(e);
        }
        let (status, problems) = self.inspect()?;
        if !status.up {
            let _ = self.down();
            return Err(LabError::NotUp {
                prefix: self.prefix.clone(),
                problems,
            });
        }
        Ok(status)
    }

    fn build(&self) -> Result<(), LabError> {
        let nodes = self.nodes();
        let pods = self.pods();
        for ns in self.all_namespaces() {
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }

        for n in &nodes {
            ns_sh(&n.netns, "echo 1 > /proc/sys/net/ipv4/ip_forward")?;
            // Only present when br_netfilter is loaded; per namespace since Linux 5.3.
            ns_sh(
                &n.netns,
                "for f in /proc/sys/net/bridge/bridge-nf-call-iptables \
                 /proc/sys/net/bridge/bridge-nf-call-ip6tables \
                 /proc/sys/net/bridge/bridge-nf-call-arptables; do \
                 if [ -e \"$f\" ]; then echo 0 > \"$f\" || exit 1; fi; done",
            )?;
        }

        // Underlay: one veth pair whose two ends are born in the two node namespaces.
        let [n1, n2] = &nodes;
        run(&[
            "ip",
            "-n",
            &n1.netns,
            "link",
            "add",
            "ul0",
            "mtu",
            &UNDERLAY_MTU.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "netns",
            &n2.netns,
            "mtu",
            &UNDERLAY_MTU.to_string(),
        ])?;
        for (n, peer) in [(n1, n2), (n2, n1)] {
            let ns = n.netns.as_str();
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/{}", n.underlay, UNDERLAY_PREFIX_LEN),
                "dev",
                "ul0",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "ul0", "up"])?;
            // The peer is in another /20: reach it with a host route over the link.
            run(&[
                "ip",
                "-n",
                ns,
                "route",
                "add",
                &format!("{}/32", peer.underlay),
                "dev",
                "ul0",
            ])?;
        }

        for n in &nodes {
            let ns = n.netns.as_str();
            let mtu = POD_MTU.to_string();
            run(&[
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "cni0",
                "address",
                &n.bridge_mac,
                "mtu",
                &mtu,
                "type",
                "bridge",
            ])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", n.gateway()),
                "dev",
                "cni0",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "cni0", "up"])?;

            run(&[
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "flannel.1",
                "address",
                n.vtep_mac,
                "mtu",
                &mtu,
                "type",
                "vxlan",
                "id",
                "1",
                "local",
                &n.underlay.to_string(),
                "dstport",
                &VXLAN_PORT.to_string(),
                "dev",
                "ul0",
                "nolearning",
            ])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/32", n.vtep_ip()),
                "dev",
                "flannel.1",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "flannel.1", "up"])?;
        }

        // What flanneld programs for each remote node lease.
        for (n, peer) in [(n1, n2), (n2, n1)] {
            let ns = n.netns.as_str();
            let peer_vtep = peer.vtep_ip().to_string();
            run(&[
                "ip",
                "-n",
                ns,
                "route",
                "add",
                &peer.pod_cidr(),
                "via",
                &peer_vtep,
                "dev",
                "flannel.1",
                "onlink",
            ])?;
            run(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                &peer_vtep,
                "lladdr",
                peer.vtep_mac,
                "dev",
                "flannel.1",
                "nud",
                "permanent",
            ])?;
            run(&[
                "bridge",
                "-n",
                ns,
                "fdb",
                "append",
                peer.vtep_mac,
                "dev",
                "flannel.1",
                "dst",
                &peer.underlay.to_string(),
            ])?;
        }

        for p in &pods {
            let node = &nodes[p.node - 1];
            let mtu = POD_MTU.to_string();
            let mac = p.mac.clone().unwrap_or_else(|| mac_for_ip(p.ip));
            run(&[
                "ip",
                "-n",
                &p.node_netns,
                "link",
                "add",
                &p.host_veth,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &p.netns,
                "mtu",
                &mtu,
                "address",
                &mac,
            ])?;
            run(&[
                "ip",
                "-n",
                &p.node_netns,
                "link",
                "set",
                &p.host_veth,
                "master",
                "cni0",
                "up",
            ])?;
            run(&[
                "ip",
                "-n",
                &p.netns,
                "addr",
                "add",
                &format!("{}/24", p.ip),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &p.netns, "link", "set", "eth0", "up"])?;
            run(&[
                "ip",
                "-n",
                &p.netns,
                "route",
                "add",
                "default",
                "via",
                &node.gateway().to_string(),
                "dev",
                "eth0",
            ])?;
        }
        Ok(())
    }

    /// Remove every namespace of the plan that exists (their links go with them). Processes still
    /// running inside them are terminated first: they would otherwise keep a namespace, and the
    /// links in it, alive after its name is gone. Idempotent.
    pub fn down(&self) -> Result<(), LabError> {
        self.validate()?;
        // containerd first (when `up --runtime containerd` started one): its pods' namespaces are
        // not in the plan, and StopPodSandbox is what removes them and their veths cleanly.
        // Its failure does not stop the rest of the teardown; it is reported at the end.
        let runtime = self.containerd().stop(&|m| eprintln!("lab: {m}"));
        let existing = list_netns()?;
        let mine: Vec<String> = self
            .all_namespaces()
            .into_iter()
            .rev()
            .filter(|n| ns_exists(&existing, n))
            .collect();
        for ns in &mine {
            kill_netns_processes(ns);
        }
        let mut first_err = None;
        for ns in &mine {
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                // Someone else may have deleted it in the meantime.
                if list_netns().map(|l| ns_exists(&l, ns)).unwrap_or(true) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (runtime, first_err) {
            (Err(e), _) | (Ok(()), Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
        }
    }

    pub fn status(&self) -> Result<LabStatus, LabError> {
        self.validate()?;
        Ok(self.inspect()?.0)
    }

    /// What is missing or wrong compared with the plan; empty when the lab is up.
    pub fn problems(&self) -> Result<Vec<String>, LabError> {
        self.validate()?;
        Ok(self.inspect()?.1)
    }

    pub(crate) fn inspect(&self) -> Result<(LabStatus, Vec<String>), LabError> {
        let existing = list_netns()?;
        let nodes = self.nodes();
        let mut pods = self.pods();
        let mut problems = Vec::new();
        let namespaces: Vec<String> = self
            .all_namespaces()
            .into_iter()
            .filter(|n| ns_exists(&existing, n))
            .collect();
        let mut underlay = [String::new(), String::new()];

        for n in &nodes {
            underlay[n.index - 1] = format!("{} ul0 missing", n.label());
            if !ns_exists(&existing, &n.netns) {
                problems.push(format!("namespace {} missing", n.netns));
                continue;
            }
            let peer = &nodes[2 - n.index];
            let mut p = Probe {
                ns: &n.netns,
                problems: &mut problems,
            };
            let links = match p.json(&["ip", "-d", "-j", "-n", &n.netns, "addr", "show"]) {
                Some(l) => l,
                None => continue,
            };
            let ul = format!("{}/{}", n.underlay, UNDERLAY_PREFIX_LEN);
            if let Some(l) = find_link(&links, "ul0") {
                if has_inet(l, &ul) {
                    underlay[n.index - 1] = format!("{} ul0 {}", n.label(), ul);
                }
            }
            p.link(&links, "lo", None, None, &[], None);
            p.link(&links, "ul0", Some("veth"), Some(UNDERLAY_MTU), &[ul.as_str()], None);
            p.link(
                &links,
                "cni0",
                Some("bridge"),
                Some(POD_MTU),
                &[&format!("{}/24", n.gateway())],
                None,
            );
            if let Some(l) = p.link(
                &links,
                "flannel.1",
                Some("vxlan"),
                Some(POD_MTU),
                &[&format!("{}/32", n.vtep_ip())],
                None,
            ) {
                let d = &l["linkinfo"]["info_data"];
                if l["address"].as_str() != Some(n.vtep_mac)
                    || d["id"].as_u64() != Some(1)
                    || d["port"].as_u64() != Some(u64::from(VXLAN_PORT))
                    || d["local"].as_str() != Some(n.underlay.to_string().as_str())
                {
                    p.problem(format!(
                        "flannel.1 is not vxlan id 1 local {} dstport {} address {}",
                        n.underlay, VXLAN_PORT, n.vtep_mac
                    ));
                }
            }
            for pod in pods.iter().filter(|q| q.node == n.index) {
                p.link(&links, &pod.host_veth, Some("veth"), Some(POD_MTU), &[], Some("cni0"));
            }

            match p.text(&["ip", "netns", "exec", &n.netns, "cat", "/proc/sys/net/ipv4/ip_forward"]) {
                Some(s) if s.trim() == "1" => {}
                Some(_) => p.problem("net.ipv4.ip_forward is not 1".into()),
                None => {}
            }
            if let Some(routes) = p.json(&["ip", "-j", "-n", &n.netns, "route", "show"]) {
                let arr = routes.as_array().cloned().unwrap_or_default();
                let peer_vtep = peer.vtep_ip().to_string();
                if !arr.iter().any(|r| {
                    r["dst"].as_str() == Some(peer.pod_cidr().as_str())
                        && r["gateway"].as_str() == Some(peer_vtep.as_str())
                        && r["dev"].as_str() == Some("flannel.1")
                }) {
                    p.problem(format!(
                        "route {} via {} dev flannel.1 missing",
                        peer.pod_cidr(),
                        peer_vtep
                    ));
                }
                let peer_ul = peer.underlay.to_string();
                if !arr
                    .iter()
                    .any(|r| r["dst"].as_str() == Some(peer_ul.as_str()) && r["dev"].as_str() == Some("ul0"))
                {
                    p.problem(format!("route {} dev ul0 missing", peer_ul));
                }
            }
            if let Some(neigh) = p.json(&["ip", "-j", "-n", &n.netns, "neigh", "show", "dev", "flannel.1"]) {
                let ok = neigh.as_array().into_iter().flatten().any(|e| {
                    e["dst"].as_str() == Some(peer.vtep_ip().to_string().as_str())
                        && e["lladdr"].as_str() == Some(peer.vtep_mac)
                        && e["state"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|s| s.as_str() == Some("PERMANENT"))
                });
                if !ok {
                    p.problem(format!(
                        "permanent neighbour {} lladdr {} on flannel.1 missing",
                        peer.vtep_ip(),
                        peer.vtep_mac
                    ));
                }
            }
            if let Some(fdb) = p.json(&["bridge", "-j", "-n", &n.netns, "fdb", "show", "dev", "flannel.1"]) {
                let ok = fdb.as_array().into_iter().flatten().any(|e| {
                    e["mac"].as_str() == Some(peer.vtep_mac)
                        && e["dst"].as_str() == Some(peer.underlay.to_string().as_str())
                });
                if !ok {
                    p.problem(format!(
                        "fdb {} dst {} on flannel.1 missing",
                        peer.vtep_mac, peer.underlay
                    ));
                }
            }
        }

        for pod in pods.iter_mut() {
            let planned_mac = pod.mac.take();
            if !ns_exists(&existing, &pod.netns) {
                problems.push(format!("namespace {} missing", pod.netns));
                continue;
            }
            let gw = nodes[pod.node - 1].gateway().to_string();
            let mut p = Probe {
                ns: &pod.netns,
                problems: &mut problems,
            };
            if let Some(links) = p.json(&["ip", "-d", "-j", "-n", &pod.netns, "addr", "show"]) {
                p.link(&links, "lo", None, None, &[], None);
                if let Some(l) = p.link(
                    &links,
                    "eth0",
                    Some("veth"),
                    Some(POD_MTU),
                    &[&format!("{}/24", pod.ip)],
                    None,
                ) {
                    pod.mac = l["address"].as_str().map(str::to_string);
                    if pod.mac != planned_mac {
                        p.problem(format!("eth0 has MAC {:?}, planned {:?}", pod.mac, planned_mac));
                    }
                }
            }
            if let Some(routes) = p.json(&["ip", "-j", "-n", &pod.netns, "route", "show", "default"]) {
                let ok = routes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["gateway"].as_str() == Some(gw.as_str()) && r["dev"].as_str() == Some("eth0"));
                if !ok {
                    p.problem(format!("default route via {gw} dev eth0 missing"));
                }
            }
        }

        let up = problems.is_empty();
        Ok((
            LabStatus {
                up,
                namespaces,
                pods,
                underlay,
            },
            problems,
        ))
    }
}

/// Collects problems found while inspecting one namespace.
struct Probe<'a> {
    ns: &'a str,
    problems: &'a mut Vec<String>,
}

impl Probe<'_> {
    fn problem(&mut self, what: String) {
        self.problems.push(format!("{}: {}", self.ns, what));
    }

    fn text(&mut self, args: &[&str]) -> Option<String> {
        match run(args) {
            Ok(s) => Some(s),
            Err(e) => {
                self.problem(e.to_string());
                None
            }
        }
    }

    fn json(&mut self, args: &[&str]) -> Option<serde_json::Value> {
        let s = self.text(args)?;
        if s.trim().is_empty() {
            return Some(serde_json::Value::Array(Vec::new()));
        }
        match serde_json::from_str(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(format!("cannot parse the output of `{}`: {e}", args.join(" ")));
                None
            }
        }
    }

    /// Check a link is present, administratively up with carrier, and has the given kind, MTU,
    /// IPv4 addresses and bridge master.
    fn link<'v>(
        &mut self,
        links: &'v serde_json::Value,
        name: &str,
        kind: Option<&str>,
        mtu: Option<u32>,
        inet: &[&str],
        master: Option<&str>,
    ) -> Option<&'v serde_json::Value> {
        let Some(l) = find_link(links, name) else {
            self.problem(format!("link {name} missing"));
            return None;
        };
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .collect();
        if !flags.contains(&"UP") || (name != "lo" && !flags.contains(&"LOWER_UP")) {
            self.problem(format!("link {name} is not up (flags {flags:?})"));
        }
        if let Some(k) = kind {
            if l["linkinfo"]["info_kind"].as_str() != Some(k) {
                self.problem(format!("link {name} is not a {k}"));
            }
        }
        if let Some(m) = mtu {
            if l["mtu"].as_u64() != Some(u64::from(m)) {
                self.problem(format!("link {name} has MTU {}, want {m}", l["mtu"]));
            }
        }
        for a in inet {
            if !has_inet(l, a) {
                self.problem(format!("link {name} lacks address {a}"));
            }
        }
        if let Some(m) = master {
            if l["master"].as_str() != Some(m) {
                self.problem(format!("link {name} is not attached to {m}"));
            }
        }
        Some(l)
    }
}

fn find_link<'v>(links: &'v serde_json::Value, name: &str) -> Option<&'v serde_json::Value> {
    links.as_array()?.iter().find(|l| l["ifname"].as_str() == Some(name))
}

fn has_inet(link: &serde_json::Value, cidr: &str) -> bool {
    link["addr_info"].as_array().into_iter().flatten().any(|a| {
        a["family"].as_str() == Some("inet")
            && format!(
                "{}/{}",
                a["local"].as_str().unwrap_or(""),
                a["prefixlen"].as_u64().unwrap_or(99)
            ) == cidr
    })
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lab: {}", if self.up { "UP" } else { "NOT UP" })?;
        writeln!(f, "namespaces ({} present):", self.namespaces.len())?;
        for ns in &self.namespaces {
            writeln!(f, "  {ns}")?;
        }
        writeln!(f, "pods:")?;
        writeln!(
            f,
            "  {:<10} {:<5} {:<24} {:<13} {:<12} MAC",
            "POD", "NODE", "NETNS", "HOST VETH", "IP"
        )?;
        for p in &self.pods {
            writeln!(
                f,
                "  {:<10} {:<5} {:<24} {:<13} {:<12} {}",
                p.name,
                p.node,
                p.netns,
                p.host_veth,
                p.ip.to_string(),
                p.mac.as_deref().unwrap_or("-")
            )?;
        }
        writeln!(f, "underlay:")?;
        for u in &self.underlay {
            writeln!(f, "  {u}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_are_deterministic_and_cni_like() {
        let a = Lab::new("np").pods();
        let b = Lab::new("np").pods();
        assert_eq!(a.len(), 5);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.host_veth, y.host_veth);
            assert_eq!(x.host_veth.len(), 12);
            assert!(x.host_veth.starts_with("veth"));
            assert!(x.host_veth[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_eq!(a[0].netns, "np-n1-pod-a");
        assert_eq!(a[0].node_netns, "np-node1");
        assert_eq!(a[0].ip, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(a[2].ip, Ipv4Addr::new(10, 244, 0, 4));
        assert_eq!(a[3].netns, "np-n2-pod-a");
        assert_eq!(a[4].ip, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(a[0].mac.as_deref(), Some("0a:58:0a:f4:00:02"));
        assert_ne!(Lab::new("np").pods()[0].host_veth, Lab::new("np2").pods()[0].host_veth);
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        assert!(Lab::new("").validate().is_err());
        assert!(Lab::new("a b").validate().is_err());
        assert!(Lab::new("x/y").validate().is_err());
        assert!(Lab::default_lab().validate().is_ok());
    }
}
