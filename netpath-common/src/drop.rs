//! The drop tracer's shared types: the `NP_DROPS` table (where and why the kernel freed packets it
//! did not deliver), the kernel layout user space reads from BTF for it, and the reason netpath's
//! own rule drops carry.

/// One row of `NP_DROPS`: a drop site as the tracer attributes it. The value is a
/// [`Counter`](crate::Counter).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropKey {
    /// Inode of the network namespace of the device (0 when the skb had no device).
    pub netns: u32,
    /// The device the skb was on, in `netns` (its input device when none).
    pub ifindex: u32,
    /// The kernel's `enum skb_drop_reason` value (subsystem in the high 16 bits), or
    /// [`REASON_NETPATH_RULE`].
    pub reason: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
    /// The kernel address that freed the skb (`kfree_skb`'s `location`), or the rule id for
    /// [`REASON_NETPATH_RULE`].
    pub location: u64,
}

/// Drop sites kept (an LRU table: the coldest site makes room for a new one).
pub const DROP_TABLE_SIZE: u32 = 4096;

/// The reason of a frame a netpath rule dropped (`DropKey::location` holds the rule id). Outside
/// anything the kernel reports: subsystem 0xffff does not exist.
pub const REASON_NETPATH_RULE: u32 = 0xffff_0001;
pub const NETPATH_RULE: &str = "NETPATH_RULE";

/// `enum skb_drop_reason` encodes a subsystem in its high bits (`SKB_DROP_REASON_SUBSYS_SHIFT`).
pub const SUBSYS_SHIFT: u32 = 16;

/// Where the tracer finds what it reads in kernel memory, and which reasons it treats specially,
/// as user space read them from the running kernel's BTF (`NP_DROP_LAYOUT[0]`). Aya's Rust eBPF
/// has no CO-RE relocations, so offsets cannot be compiled in: `struct sk_buff` changes between
/// kernel versions and configurations. Offsets are in bytes; `0` in `enabled` keeps the tracer
/// idle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropLayout {
    pub enabled: u32,
    /// `SKB_DROP_REASON_NOT_SPECIFIED`: reasons below it are not drops.
    pub not_specified: u32,
    /// `SKB_DROP_REASON_TC_INGRESS` / `TC_EGRESS` / `XDP`: how the kernel frees what a TC program
    /// shot or (generic) XDP dropped, which netpath already counted as `NETPATH_RULE` when its
    /// rule did it (`u32::MAX` where this kernel has no such reason).
    pub tc_ingress: u32,
    pub tc_egress: u32,
    pub xdp: u32,
    /// `struct sk_buff`: `dev`, `head`, `data`, `tail` (an offset from head on 64-bit kernels),
    /// `network_header`, `mac_header`, `protocol`, `len`, `skb_iif`.
    pub skb_dev: u32,
    pub skb_data: u32,
    pub skb_head: u32,
    pub skb_tail: u32,
    pub skb_network_header: u32,
    pub skb_mac_header: u32,
    pub skb_protocol: u32,
    pub skb_len: u32,
    pub skb_iif: u32,
    /// `struct net_device`: `ifindex`, `nd_net.net`; `struct net`: `ns.inum`.
    pub dev_ifindex: u32,
    pub dev_net: u32,
    pub net_inum: u32,
    pub _pad: u32,
}

/// Bytes of a dropped packet's headers the tracer copies (from the network header on) and parses.
pub const DROP_COPY: usize = 192;

/// A frame a netpath rule just dropped, per CPU (`NP_DROP_PENDING[0]`): the kernel frees the skb
/// right after the program returns (TC; XDP in generic mode, where 6.18 gives no reason), and the
/// tracer skips that free (already counted as `NETPATH_RULE`). Only a free on the same interface within
/// [`PENDING_NS`] of `at` matches, so a mark nobody consumed (native XDP frees no skb) never
/// swallows a later, unrelated drop.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropPending {
    pub ifindex: u32,
    /// 1 while set.
    pub set: u32,
    /// `bpf_ktime_get_ns` when the rule dropped the frame.
    pub at: u64,
}

/// How soon after a rule drop the kernel's free of the same skb comes: it follows the program's
/// return on the same CPU, in microseconds.
pub const PENDING_NS: u64 = 1_000_000;

// SAFETY (Words): 8-byte aligned (its u64), 24 bytes, integers and byte arrays only, explicit
// padding. The datapath zeroes a key as words before filling it: `_pad = [0; 3]` becomes a call
// into the BPF backend's byte-loop memset.
unsafe impl crate::Words for DropKey {}

// The layouts user space and the kernel share.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<DropKey>() == 24 && align_of::<DropKey>() == 8);
    assert!(size_of::<DropLayout>() == 72);
    assert!(size_of::<DropPending>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers and byte arrays only, explicit padding.
    unsafe impl aya::Pod for super::DropKey {}
    unsafe impl aya::Pod for super::DropLayout {}
    unsafe impl aya::Pod for super::DropPending {}
}
