//! Indices of the per-CPU datapath health counters in `NP_DIAG`.

/// New flows inserted into the flow table.
pub const FLOWS_CREATED: u32 = 0;
/// Flow inserts the kernel refused (other than a racing insert of the same key).
pub const FLOW_INSERT_FAILED: u32 = 1;
/// Interface counter entries that could not be created (table full).
pub const IFACE_INSERT_FAILED: u32 = 2;
/// `bpf_skb_pull_data` failures: the headers stayed non-linear and were parsed as far as seen.
pub const PULL_FAILED: u32 = 3;
/// Flows user space removed (their interface went away); written by user space only, so
/// evictions = created - active - deleted.
pub const FLOWS_DELETED: u32 = 4;
/// Events submitted to the ring buffer, and reserves that failed (buffer full): user space
/// checks delivered + lost == emitted.
pub const EVENTS_EMITTED: u32 = 5;
pub const EVENTS_LOST: u32 = 6;
/// Events the per-CPU rate limit suppressed (never emitted).
pub const EVENTS_SUPPRESSED: u32 = 7;
/// Capture records lost to a full perf buffer, as the reader (`netpath capture`) saw them:
/// aya's perf output() does not return the helper's error, so the kernel cannot count them.
pub const CAPTURE_LOST: u32 = 8;
/// Capture copies the datapath attempted.
pub const CAPTURED: u32 = 9;
/// Events user space read from the ring buffer (written by the daemon, so it survives
/// restarts like the kernel's counts do).
pub const EVENTS_DELIVERED: u32 = 10;
/// Frames the pod-to-pod fast path delivered straight into a pod (bpf_redirect_peer).
pub const FASTPATH_REDIRECTED: u32 = 11;
/// Frames a rule dropped, redirected or mirrored (hits per rule are in NP_RULE_HITS).
pub const RULE_ACTIONS: u32 = 12;
/// The highest rule id the daemon has handed out (written by user space only): pinned with the
/// rule table, so ids are never reused, across restarts too.
pub const RULE_IDS_ISSUED: u32 = 13;
/// Drop sites the drop tracer could not add to `NP_DROPS` (table full): their drops are counted
/// here only.
pub const DROP_INSERT_FAILED: u32 = 14;
/// Drops the tracer counted (kernel frees with a reason, and netpath's own rule drops).
pub const DROPS_COUNTED: u32 = 15;
/// VXLAN frames `NP_VXLAN_PEERS` had no room for (a new peer in a full table): counted here
/// only.
pub const PEER_INSERT_FAILED: u32 = 16;
/// Malformed frames by reason start here: `MALFORMED_BASE + malformed::*`.
pub const MALFORMED_BASE: u32 = 17;
pub const COUNT: u32 = MALFORMED_BASE + crate::malformed::COUNT as u32;
