//! The datapath from user space: loading the eBPF object, pinning its maps, attaching its programs
//! to interfaces (TC/tcx, XDP), and reading and writing its maps.
pub mod attach;
pub mod loader;
pub mod maps;
pub mod pins;
pub mod rules;

/// Program names fit the kernel's 15 characters, so bpftool and `ip link` show them whole.
pub const PROG_XDP: &str = "netpath_xdp";
pub const PROG_TC_INGRESS: &str = "netpath_tc_in";
pub const PROG_TC_EGRESS: &str = "netpath_tc_out";

/// Size of the event ring buffer (as in the eBPF object).
pub const EVENTS_RING_BYTES: u32 = 1 << 20;
