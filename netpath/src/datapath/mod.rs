//! The datapath from user space: loading the eBPF object, pinning its maps, attaching its programs
//! to interfaces (TC/tcx, XDP), and reading and writing its maps.
pub mod attach;
pub mod drops;
pub mod loader;
pub mod maps;
pub mod names;
pub mod pins;
pub mod rules;

pub use netpath_common::maps::programs::{TC_EGRESS as PROG_TC_EGRESS, TC_INGRESS as PROG_TC_INGRESS, XDP as PROG_XDP};

/// Size of the event ring buffer (as in the eBPF object).
pub const EVENTS_RING_BYTES: u32 = 1 << 20;
