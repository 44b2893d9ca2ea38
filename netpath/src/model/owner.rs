//! Who lives behind an interface, as rows carry it.

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
}

impl Owner {
    /// ` (namespace/pod)`, ` (netns)` or nothing: what follows an interface name for people.
    pub fn suffix(&self) -> String {
        match (&self.pod_namespace, &self.pod, &self.netns) {
            (Some(ns), Some(p), _) => format!(" ({ns}/{p})"),
            (_, _, Some(n)) => format!(" ({n})"),
            _ => String::new(),
        }
    }

    /// `--pod` accepts a pod name, `namespace/name`, or the name of the netns behind the veth.
    pub fn matches(&self, want: &str) -> bool {
        let full = match (&self.pod_namespace, &self.pod) {
            (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
            _ => None,
        };
        self.pod.as_deref() == Some(want) || full.as_deref() == Some(want) || self.netns.as_deref() == Some(want)
    }
}
