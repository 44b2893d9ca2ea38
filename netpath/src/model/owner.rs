//! Who lives behind an interface, as rows carry it.

/// What an interface leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A pod: the CRI runtime names its namespace, or (without one) the veth is a port of a bridge,
    /// as a CNI plugs pods in.
    Pod,
    /// A veth whose peer namespace is not a pod (another node, as the lab's `ul0`).
    Underlay,
    /// The node's own link: a bridge, a VXLAN device, a NIC, a veth with both ends here.
    Host,
}

impl Role {
    /// The role of a link from what the kernel says about it: a peer in another namespace (named
    /// or not), whether the CRI runtime knows a pod there, whether the link is a bridge port (as a
    /// CNI bridge plugs pods in), and how many links the peer's namespace holds besides loopback
    /// (a pod's has its `eth0`; a node's, as the lab's `ul0` leads to, several).
    pub fn of(peer_elsewhere: bool, cri_pod: bool, bridge_port: bool, peer_links: Option<usize>) -> Role {
        if !peer_elsewhere {
            Role::Host
        } else if cri_pod || bridge_port || peer_links.is_none_or(|n| n <= 1) {
            Role::Pod
        } else {
            Role::Underlay
        }
    }
}

/// Who lives behind an interface: the network namespace its veth peer is in, and the Kubernetes
/// pod (from the CRI runtime) when known. Flattened into stats, flow and event rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// `pod`, `underlay` or `host`; absent when the link is unknown (e.g. gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl Owner {
    /// ` (namespace/pod)`, ` (netns)` for a pod, ` (underlay to netns)`, or nothing: what follows an
    /// interface name for people.
    pub fn suffix(&self) -> String {
        match (&self.pod_namespace, &self.pod, &self.netns) {
            (Some(ns), Some(p), _) => format!(" ({ns}/{p})"),
            (_, _, Some(n)) if self.role == Some(Role::Underlay) => format!(" (underlay to {n})"),
            (_, _, Some(n)) => format!(" ({n})"),
            _ => String::new(),
        }
    }

    /// The pod's name for labels: the CRI's, else the namespace of a pod; None for what is not a pod.
    pub fn pod_label(&self) -> Option<&str> {
        match self.role {
            Some(Role::Underlay | Role::Host) => None,
            _ => self.pod.as_deref().or(self.netns.as_deref()),
        }
    }

    /// `--pod` accepts a pod name, `namespace/name`, or the name of the network namespace behind a
    /// pod's veth, also without a leading `PREFIX-` (the lab shows `n1-pod-a` for the namespace
    /// `np-n1-pod-a`). A namespace that is not a pod's (an underlay peer) is not a pod.
    pub fn matches(&self, want: &str) -> bool {
        if matches!(self.role, Some(Role::Underlay | Role::Host)) || want.is_empty() {
            return false;
        }
        let full = match (&self.pod_namespace, &self.pod) {
            (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
            _ => None,
        };
        let unprefixed = self
            .netns
            .as_deref()
            .and_then(|n| n.split_once('-'))
            .map(|(_, rest)| rest);
        self.pod.as_deref() == Some(want)
            || full.as_deref() == Some(want)
            || self.netns.as_deref() == Some(want)
            || unprefixed == Some(want)
    }

    /// The names `--pod` accepts for this owner, the shortest first; empty when it is not a pod.
    pub fn pod_names(&self) -> Vec<String> {
        if matches!(self.role, Some(Role::Underlay | Role::Host)) {
            return Vec::new();
        }
        let mut v = Vec::new();
        if let (Some(ns), Some(p)) = (&self.pod_namespace, &self.pod) {
            v.push(format!("{ns}/{p}"));
        } else if let Some(n) = &self.netns {
            v.push(n.split_once('-').map_or(n.as_str(), |(_, rest)| rest).to_string());
        }
        v
    }
}

/// `--pod want` names the pod behind one of `owners`, or bad input (exit 2) that lists the names
/// `--pod` accepts.
pub fn check_pod<'a>(want: &str, owners: impl IntoIterator<Item = &'a Owner>) -> crate::error::Result<()> {
    let mut known = Vec::new();
    for o in owners {
        if o.matches(want) {
            return Ok(());
        }
        known.extend(o.pod_names());
    }
    known.sort();
    known.dedup();
    Err(crate::error::Error::BadArgument(format!(
        "no interface here leads to pod '{want}'; pods: {}",
        if known.is_empty() {
            "(none)".to_string()
        } else {
            known.join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(netns: &str) -> Owner {
        Owner {
            netns: Some(netns.into()),
            role: Some(Role::Pod),
            ..Owner::default()
        }
    }

    #[test]
    fn a_namespace_is_not_a_pod() {
        let ul = Owner {
            netns: Some("np-node2".into()),
            role: Some(Role::of(true, false, false, Some(4))),
            ..Owner::default()
        };
        assert_eq!(ul.role, Some(Role::Underlay));
        assert_eq!(ul.suffix(), " (underlay to np-node2)");
        assert_eq!(ul.pod_label(), None);
        assert!(!ul.matches("np-node2") && !ul.matches("node2"));
        assert!(ul.pod_names().is_empty());
        let p = pod("np-n1-pod-a");
        assert_eq!(p.pod_label(), Some("np-n1-pod-a"));
        assert_eq!(p.suffix(), " (np-n1-pod-a)");
        assert_eq!(Role::of(false, false, true, None), Role::Host);
        assert_eq!(Role::of(true, false, true, Some(4)), Role::Pod);
        assert_eq!(Role::of(true, true, false, Some(2)), Role::Pod);
        // A veth to a namespace holding only its peer: a pod, even unbridged (routed CNIs).
        assert_eq!(Role::of(true, false, false, Some(1)), Role::Pod);
    }

    #[test]
    fn pod_accepts_the_name_the_lab_shows() {
        let p = pod("np-n1-pod-a");
        for ok in ["np-n1-pod-a", "n1-pod-a"] {
            assert!(p.matches(ok), "{ok}");
        }
        for no in ["pod-a", "a", "np", "", "n1-pod-b"] {
            assert!(!p.matches(no), "{no}");
        }
        assert_eq!(p.pod_names(), vec!["n1-pod-a".to_string()]);
        let cri = Owner {
            pod: Some("web".into()),
            pod_namespace: Some("default".into()),
            ..pod("cni-1234")
        };
        assert!(cri.matches("web") && cri.matches("default/web") && cri.matches("cni-1234"));
    }
}
