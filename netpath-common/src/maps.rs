//! Names of the pinned maps (the pin file names under the bpffs directory).

pub const IFACE_STATS: &str = "NP_IFACE_STATS";
pub const FLOWS: &str = "NP_FLOWS";
pub const DIAG: &str = "NP_DIAG";
pub const CONFIG: &str = "NP_CONFIG";
pub const EVENTS: &str = "NP_EVENTS";
pub const CAPTURE: &str = "NP_CAPTURE";
pub const CAPTURE_CFG: &str = "NP_CAPTURE_CFG";
pub const CAPTURE_IFACES: &str = "NP_CAPTURE_IFACES";
pub const DROPS: &str = "NP_DROPS";
pub const VXLAN_PEERS: &str = "NP_VXLAN_PEERS";
/// Pinned so a restarted daemon, `netpath watch` and `netpath capture` find them.
pub const ALL: [&str; 10] = [
    IFACE_STATS,
    FLOWS,
    DIAG,
    CONFIG,
    EVENTS,
    CAPTURE,
    CAPTURE_CFG,
    CAPTURE_IFACES,
    DROPS,
    VXLAN_PEERS,
];

/// The production object's program names (the entry points in netpath-ebpf's main.rs). They fit the
/// kernel's 15 characters, so bpftool and `ip link` show them whole.
pub mod programs {
    pub const XDP: &str = "netpath_xdp";
    pub const TC_INGRESS: &str = "netpath_tc_in";
    pub const TC_EGRESS: &str = "netpath_tc_out";
    /// The drop tracer (`tp_btf/kfree_skb`).
    pub const DROPS: &str = "netpath_drops";
}
