//! The datapath's runtime configuration (`NP_CONFIG[0]`).

/// Runtime configuration read by the datapath from the single-entry `NP_CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// UDP destination ports decoded as VXLAN; 0 marks an unused slot.
    pub vxlan_ports: [u16; MAX_VXLAN_PORTS],
    /// Kernel events allowed per second, per CPU and kind (0: unlimited).
    pub events_per_sec: u32,
    /// Burst of the event token bucket.
    pub events_burst: u32,
    /// Inode of the network namespace the programs are attached in (the daemon's): the drop
    /// records of netpath's own rule drops name it, as the tracer's name the device's.
    pub netns: u32,
}

pub const DEFAULT_EVENTS_PER_SEC: u32 = 5_000;
pub const DEFAULT_EVENTS_BURST: u32 = 1_000;

pub const MAX_VXLAN_PORTS: usize = 4;
pub const VXLAN_PORT_FLANNEL: u16 = 8472;
pub const VXLAN_PORT_IANA: u16 = 4789;

impl Default for Config {
    fn default() -> Self {
        Self {
            vxlan_ports: [VXLAN_PORT_FLANNEL, VXLAN_PORT_IANA, 0, 0],
            events_per_sec: DEFAULT_EVENTS_PER_SEC,
            events_burst: DEFAULT_EVENTS_BURST,
            netns: 0,
        }
    }
}

impl Config {
    #[inline(always)]
    pub fn is_vxlan_port(&self, port: u16) -> bool {
        // Unrolled by hand: a const-bounded loop the verifier need not walk.
        port != 0
            && (port == self.vxlan_ports[0]
                || port == self.vxlan_ports[1]
                || port == self.vxlan_ports[2]
                || port == self.vxlan_ports[3])
    }
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], Copy, integers only, no padding (20 bytes, align 4).
unsafe impl aya::Pod for Config {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 20);
    }

    #[test]
    fn vxlan_ports_default_and_zero_never_matches() {
        let c = Config::default();
        assert!(c.is_vxlan_port(8472));
        assert!(c.is_vxlan_port(4789));
        assert!(!c.is_vxlan_port(0));
        assert!(!c.is_vxlan_port(53));
    }
}
