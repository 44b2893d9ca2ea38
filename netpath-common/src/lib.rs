//! Types shared by the eBPF programs and user space, and the frame parser both run.
//!
//! Everything here is `no_std`, `#[repr(C)]` and `Copy`, with explicit padding so the kernel and
//! user space agree on every byte. The parser ([`parse`]) is generic over a [`parse::Frame`]
//! reader: the eBPF crate reads packet memory behind verifier-visible bounds checks, host tests
//! read a `&[u8]`.
#![no_std]

#[cfg(any(test, feature = "craft"))]
extern crate std;

#[cfg(any(test, feature = "craft"))]
pub mod craft;
pub mod event;
pub mod parse;
pub mod rule;

/// Direction of a frame relative to the interface it was seen on.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;
pub const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

/// Traffic classes. Every frame lands in exactly one, by this precedence:
/// malformed > vxlan > arp > icmp, icmp6, tcp, udp > other_ip > other_l2.
/// A VLAN-tagged frame is classed by its payload; a VXLAN frame is `vxlan` whatever it carries
/// (unless the outer or inner headers are truncated or invalid: then it is `malformed`).
pub mod class {
    pub const ARP: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const ICMP6: u8 = 2;
    pub const TCP: u8 = 3;
    pub const UDP: u8 = 4;
    pub const VXLAN: u8 = 5;
    pub const OTHER_IP: u8 = 6;
    pub const OTHER_L2: u8 = 7;
    pub const MALFORMED: u8 = 8;
    pub const COUNT: usize = 9;
    pub const NAMES: [&str; COUNT] = [
        "arp",
        "icmp",
        "icmp6",
        "tcp",
        "udp",
        "vxlan",
        "other_ip",
        "other_l2",
        "malformed",
    ];

    pub fn name(class: u8) -> &'static str {
        NAMES.get(class as usize).copied().unwrap_or("unknown")
    }

    pub fn from_name(name: &str) -> Option<u8> {
        NAMES.iter().position(|n| *n == name).map(|i| i as u8)
    }
}

/// Why a frame was counted as malformed (recorded per CPU in [`ERR_*`-style] counters by
/// reason so a user can tell a truncated capture from a bad IHL).
pub mod malformed {
    pub const NONE: u8 = 0;
    pub const TRUNCATED_ETH: u8 = 1;
    pub const TRUNCATED_VLAN: u8 = 2;
    pub const TOO_MANY_VLANS: u8 = 3;
    pub const TRUNCATED_ARP: u8 = 4;
    pub const TRUNCATED_IPV4: u8 = 5;
    pub const BAD_IPV4_HEADER: u8 = 6;
    pub const TRUNCATED_IPV6: u8 = 7;
    pub const BAD_IPV6_HEADER: u8 = 8;
    pub const TOO_MANY_IPV6_EXT: u8 = 9;
    pub const TRUNCATED_L4: u8 = 10;
    pub const BAD_TCP_HEADER: u8 = 11;
    pub const TRUNCATED_VXLAN: u8 = 12;
    pub const BEYOND_PARSE_LIMIT: u8 = 13;
    pub const COUNT: usize = 14;
    pub const NAMES: [&str; COUNT] = [
        "none",
        "truncated_ethernet",
        "truncated_vlan",
        "too_many_vlan_tags",
        "truncated_arp",
        "truncated_ipv4",
        "bad_ipv4_header",
        "truncated_ipv6",
        "bad_ipv6_header",
        "too_many_ipv6_ext_headers",
        "truncated_l4",
        "bad_tcp_header",
        "truncated_vxlan",
        "beyond_parse_limit",
    ];
}

/// A 16-byte network address as the datapath stores it: IPv6, or IPv4 in the first 4 bytes with
/// the other 12 zero ([`Addr::v4`]). It derefs to the bytes, so user space reads it like the
/// `[u8; 16]` it replaces.
///
/// Why a newtype, and why 8-byte aligned: LLVM's BPF backend never inlines `memset` or `memmove`.
/// It calls compiler_builtins' generic subprograms, which loop one byte per iteration (about 5
/// instructions a byte). An assignment or zeroing of a `[u8; 16]` (alignment 1) becomes such a
/// call. With alignment 8 the datapath moves an address as two u64 words instead ([`Addr::set`],
/// [`Addr::set_v4`], [`Addr::clear`]). Every address field of the shared types already sat at an
/// 8-byte aligned offset, so the alignment changes no offset and no size.
#[repr(C, align(8))]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    pub const ZERO: Addr = Addr([0; 16]);

    /// The IPv4 address `a` in the first 4 bytes, the rest zero (host code and constants; the
    /// datapath writes in place with [`Addr::set_v4`]).
    #[inline(always)]
    pub const fn v4(a: [u8; 4]) -> Addr {
        Addr([a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    #[inline(always)]
    fn words(&mut self) -> *mut u64 {
        self as *mut Addr as *mut u64
    }

    /// `*self = Addr::v4(a)` as two word stores.
    #[inline(always)]
    pub fn set_v4(&mut self, a: [u8; 4]) {
        // The first 4 bytes in memory order, whatever the endianness, in the first word.
        let lo = u32::from_ne_bytes(a) as u64;
        #[cfg(target_endian = "big")]
        let lo = lo << 32;
        let w = self.words();
        // SAFETY: `Addr` is 16 bytes, 8-byte aligned: two u64 words. The zero word is a volatile
        // store so that LLVM cannot merge it with neighbouring zero stores into a `memset` call.
        unsafe {
            w.write(lo);
            w.add(1).write_volatile(0);
        }
    }

    /// `*self = *src` as two word loads and stores.
    #[inline(always)]
    pub fn set(&mut self, src: &Addr) {
        let s = src as *const Addr as *const u64;
        let d = self.words();
        // SAFETY: both are 16 bytes, 8-byte aligned, without padding. Scalar loads and stores:
        // LLVM turns only aggregate copies back into memcpy/memmove.
        unsafe {
            d.write(s.read());
            d.add(1).write(s.add(1).read());
        }
    }

    /// `*self = Addr::ZERO` as two word stores.
    #[inline(always)]
    pub fn clear(&mut self) {
        let w = self.words();
        // SAFETY: as in `set_v4`; volatile, so never merged into a `memset` call.
        unsafe {
            w.write_volatile(0);
            w.add(1).write_volatile(0);
        }
    }
}

impl core::ops::Deref for Addr {
    type Target = [u8; 16];
    #[inline(always)]
    fn deref(&self) -> &[u8; 16] {
        &self.0
    }
}

impl core::ops::DerefMut for Addr {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8; 16] {
        &mut self.0
    }
}

impl From<[u8; 16]> for Addr {
    #[inline(always)]
    fn from(a: [u8; 16]) -> Addr {
        Addr(a)
    }
}

impl From<Addr> for [u8; 16] {
    #[inline(always)]
    fn from(a: Addr) -> [u8; 16] {
        a.0
    }
}

impl PartialEq<[u8; 16]> for Addr {
    fn eq(&self, other: &[u8; 16]) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Addr> for [u8; 16] {
    fn eq(&self, other: &Addr) -> bool {
        *self == other.0
    }
}

/// Debug as the bytes, as before the newtype.
impl core::fmt::Debug for Addr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// Types the datapath zeroes as whole u64 words ([`zero_words`]), and, when they have no padding,
/// copies as words ([`copy_words`]).
///
/// Why: LLVM's BPF backend lowers every `memset`/`memmove` (a struct assignment it cannot prove
/// non-overlapping, `Default::default()`, `[0; N]`, `ptr::write_bytes`, or several neighbouring
/// zero stores that LLVM merges into one `memset`) to a call into a byte-at-a-time loop. Volatile
/// u64 stores are never merged back into such a call, and the constant-bounded loop below is
/// fully unrolled.
///
/// # Safety
/// `Self` is 8-byte aligned, its size is a multiple of 8, and all-zero bytes are a valid value.
pub unsafe trait Words: Copy {}

/// `*dst = zeroed` as `size_of::<T>() / 8` u64 stores.
///
/// # Safety
/// `dst` is valid for writes of a `T`.
#[inline(always)]
pub unsafe fn zero_words<T: Words>(dst: *mut T) {
    const { assert!(core::mem::align_of::<T>() >= 8 && core::mem::size_of::<T>() % 8 == 0) };
    let p = dst as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds and aligned (checked above); all-zero is a valid T (trait contract).
        unsafe { p.add(i).write_volatile(0) };
        i += 1;
    }
}

/// `*dst = *src` as `size_of::<T>() / 8` u64 loads and stores.
///
/// # Safety
/// `dst` is valid for writes and `src` for reads of a `T`, and `T` has no padding bytes (every
/// byte is initialised, so reading it as u64 words is defined).
#[inline(always)]
pub unsafe fn copy_words<T: Words>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::align_of::<T>() >= 8 && core::mem::size_of::<T>() % 8 == 0) };
    let (d, s) = (dst as *mut u64, src as *const u64);
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: see the function's contract. The store is volatile so that LLVM cannot
        // recognise the loop as a memcpy/memmove idiom.
        unsafe { d.add(i).write_volatile(s.add(i).read()) };
        i += 1;
    }
}

/// Address families in a [`FlowKey`].
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_ARP: u8 = 1;
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// Packets and bytes. Bytes are the L2 frame as on the wire: Ethernet header and every VLAN tag,
/// no FCS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Key of the per-interface counters: one entry per (interface, direction) holds every class, so
/// the datapath does one hash lookup per frame for them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub direction: u8,
    pub _pad: [u8; 3],
}

impl IfaceKey {
    pub const fn new(ifindex: u32, direction: u8) -> Self {
        Self {
            ifindex,
            direction,
            _pad: [0; 3],
        }
    }

    /// The same key as [`IfaceKey::new`], built for the datapath as two u32 stores: written
    /// field by field, `_pad` (and, for ingress, the zero `direction`) becomes a `memset` call
    /// into the BPF backend's byte loop (see [`Words`]).
    #[inline(always)]
    pub fn new_words(ifindex: u32, direction: u8) -> Self {
        let mut k = core::mem::MaybeUninit::<IfaceKey>::uninit();
        let p = k.as_mut_ptr() as *mut u32;
        // SAFETY: IfaceKey is two u32 words (repr(C), align 4, size 8): `ifindex`, then
        // `direction` and the three `_pad` bytes, in memory order. Both are written, so the value
        // is initialised.
        unsafe {
            p.write_volatile(ifindex);
            p.add(1).write_volatile(u32::from_ne_bytes([direction, 0, 0, 0]));
            k.assume_init()
        }
    }
}

/// Per-class counters of one (interface, direction), indexed by [`class`] id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub class: [Counter; class::COUNT],
}

/// One flow: the 5-tuple and its context. For ICMP and ICMPv6, `sport` holds the echo identifier
/// (0 for other types) and `dport` is 0, as conntrack does. For ARP, `src`/`dst` are the sender and
/// target protocol addresses and `arp_op` the operation. For VXLAN, the key is the inner flow plus
/// `vni`; the outer (underlay) addresses live in the [`FlowValue`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub vni: u32,
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    /// Outermost VLAN id (0 when untagged).
    pub vlan: u16,
    pub direction: u8,
    pub family: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub arp_op: u8,
    /// [`ENCAP_VXLAN`] for the inner flow of a VXLAN frame: VNI 0 is a valid VNI, so `vni` alone
    /// cannot tell a tunnelled flow from a native one.
    pub encap: u8,
    pub _pad: [u8; 3],
}

pub const ENCAP_NONE: u8 = 0;
pub const ENCAP_VXLAN: u8 = 1;

/// Per-CPU flow state. `first_seen` and `last_seen` are `bpf_ktime_get_coarse_ns` nanoseconds:
/// CLOCK_MONOTONIC_COARSE, the same base as CLOCK_MONOTONIC (and as the events' precise
/// `bpf_ktime_get_ns`), but advancing once per jiffy (4 ms at HZ=250), and up to one jiffy behind
/// the precise clock. The coarse read costs about 3 ns per packet against about 22 for the precise
/// one in a VM, and a flow's times need no finer resolution. Two packets within one jiffy get
/// the same stamp.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Underlay addresses of a VXLAN flow (zero otherwise).
    pub outer_src: Addr,
    pub outer_dst: Addr,
    pub outer_family: u8,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    pub _pad: [u8; 6],
}

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
    pub _pad: [u8; 4],
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
            _pad: [0; 4],
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

/// Indices of the per-CPU datapath health counters in `NP_DIAG`.
pub mod diag {
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
    /// Malformed frames by reason start here: `MALFORMED_BASE + malformed::*`.
    pub const MALFORMED_BASE: u32 = 16;
    pub const COUNT: u32 = MALFORMED_BASE + super::malformed::COUNT as u32;
}

/// Names of the pinned maps (the pin file names under the bpffs directory).
pub mod maps {
    pub const IFACE_STATS: &str = "NP_IFACE_STATS";
    pub const FLOWS: &str = "NP_FLOWS";
    pub const DIAG: &str = "NP_DIAG";
    pub const CONFIG: &str = "NP_CONFIG";
    pub const EVENTS: &str = "NP_EVENTS";
    pub const CAPTURE: &str = "NP_CAPTURE";
    pub const CAPTURE_CFG: &str = "NP_CAPTURE_CFG";
    pub const CAPTURE_IFACES: &str = "NP_CAPTURE_IFACES";
    /// Pinned so a restarted daemon, `netpath watch` and `netpath capture` find them.
    pub const ALL: [&str; 8] = [
        IFACE_STATS,
        FLOWS,
        DIAG,
        CONFIG,
        EVENTS,
        CAPTURE,
        CAPTURE_CFG,
        CAPTURE_IFACES,
    ];
}

// SAFETY (Words): 8-byte aligned (an Addr or a u64 inside), sizes multiples of 8, integers and
// byte arrays only (all-zero is valid), explicit padding fields (so `copy_words` reads no padding).
unsafe impl Words for Addr {}
unsafe impl Words for FlowKey {}
unsafe impl Words for FlowValue {}

// The byte layouts user space and the kernel share: the Addr newtype and its alignment must change
// none of them.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Addr>() == 16 && align_of::<Addr>() == 8);
    assert!(size_of::<FlowKey>() == 56 && align_of::<FlowKey>() == 8);
    assert!(offset_of!(FlowKey, src) == 8 && offset_of!(FlowKey, dst) == 24 && offset_of!(FlowKey, sport) == 40);
    assert!(offset_of!(FlowKey, encap) == 52 && offset_of!(FlowKey, _pad) == 53);
    assert!(size_of::<FlowValue>() == 72 && align_of::<FlowValue>() == 8);
    assert!(offset_of!(FlowValue, outer_src) == 32 && offset_of!(FlowValue, outer_dst) == 48);
    assert!(offset_of!(FlowValue, outer_family) == 64 && offset_of!(FlowValue, _pad) == 66);
    assert!(size_of::<IfaceKey>() == 8 && align_of::<IfaceKey>() == 4);
};

pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
pub const IFACE_TABLE_SIZE: u32 = 16_384;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, made only of integers, byte arrays and `Addr`
    // (a repr(C) byte array), and have explicit padding fields so that every byte is initialised.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceKey {}
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<IfaceKey>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<IfaceCounters>(), 16 * class::COUNT);
        // 4 + 4 + 16 + 16 + 2*3 + 7*1 + 3 padding = 56
        assert_eq!(size_of::<FlowKey>(), 56);
        assert_eq!(size_of::<FlowValue>(), 32 + 32 + 8);
        assert_eq!(size_of::<Config>(), 20);
    }

    #[test]
    fn addr_word_helpers_match_the_byte_forms() {
        let mut a = Addr([0xff; 16]);
        a.set_v4([10, 244, 0, 2]);
        assert_eq!(a, Addr::v4([10, 244, 0, 2]));
        assert_eq!(a, [10, 244, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&a[..4], &[10, 244, 0, 2]);
        let v6 = Addr(core::array::from_fn(|i| i as u8 + 1));
        a.set(&v6);
        assert_eq!(a, v6);
        a.clear();
        assert_eq!(a, Addr::ZERO);
        assert_eq!(
            std::format!("{:?}", Addr::v4([1, 2, 3, 4])),
            std::format!("{:?}", [1u8, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    #[test]
    fn word_zeroing_and_copying() {
        let mut k = FlowKey {
            ifindex: 7,
            vni: 9,
            src: Addr([3; 16]),
            dst: Addr([4; 16]),
            sport: 1,
            dport: 2,
            vlan: 3,
            direction: 1,
            family: 6,
            proto: 17,
            icmp_type: 1,
            icmp_code: 2,
            arp_op: 3,
            encap: 1,
            _pad: [5; 3],
        };
        let mut c = FlowKey::default();
        // SAFETY: valid, distinct FlowKeys.
        unsafe { copy_words(&mut c, &k) };
        assert_eq!(c, k);
        // SAFETY: as above.
        unsafe { zero_words(&mut k) };
        assert_eq!(k, FlowKey::default());
        for (i, d) in [(1, DIR_INGRESS), (0xdead_beef, DIR_EGRESS)] {
            assert_eq!(IfaceKey::new_words(i, d), IfaceKey::new(i, d));
        }
    }

    #[test]
    fn class_names_round_trip() {
        for (i, n) in class::NAMES.iter().enumerate() {
            assert_eq!(class::from_name(n), Some(i as u8));
            assert_eq!(class::name(i as u8), *n);
        }
        assert_eq!(class::from_name("nope"), None);
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
