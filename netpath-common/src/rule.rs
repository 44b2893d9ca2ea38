//! Fast-path rules: a match on the parsed frame and an action (pass, drop, redirect, mirror).
//! The datapath walks the rule table in slot order (user space keeps slots sorted by priority);
//! the match logic lives here so it is tested on the host and shared with the kernel.

/// Slots in the rule table. The kernel loop is bounded by this constant; an empty slot
/// (`enabled == 0` and `id == 0`) ends the walk early.
pub const MAX_RULES: usize = 64;

/// Hit counters are indexed by `id % MAX_RULE_IDS` (a new rule resets its slot).
pub const MAX_RULE_IDS: u32 = 4096;

/// Map names (pinned beside the others).
pub const MAP_RULES: &str = "NP_RULES";
pub const MAP_RULE_CTL: &str = "NP_RULE_CTL";
pub const MAP_RULE_HITS: &str = "NP_RULE_HITS";
pub const MAP_FASTPATH: &str = "NP_FASTPATH";
pub const MAPS: [&str; 4] = [MAP_RULES, MAP_RULE_CTL, MAP_RULE_HITS, MAP_FASTPATH];
/// Pod MACs the fast path knows.
pub const FASTPATH_ENTRIES: u32 = 4096;

/// The rule table's control word (`NP_RULE_CTL[0]`): `NP_RULES` holds two banks of MAX_RULES
/// slots; user space fills the inactive one and flips `bank`, so a packet never sees a table
/// half written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCtl {
    pub bank: u32,
    /// Rules in the active bank (0: the datapath skips rule matching entirely).
    pub count: u32,
    /// 1: redirect frames between pods of `fastpath_bridge` by destination MAC.
    pub fastpath: u32,
    pub fastpath_bridge: u32,
}

/// A pod reachable by the fast path: the host-side veth in front of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastTarget {
    pub ifindex: u32,
}

/// Key of `NP_FASTPATH`: a MAC address padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

pub mod action {
    /// Accept the frame now (later rules are not consulted).
    pub const PASS: u8 = 0;
    pub const DROP: u8 = 1;
    /// Deliver to the target interface instead (TC: bpf_redirect, or bpf_redirect_peer into a
    /// veth's peer namespace).
    pub const REDIRECT: u8 = 2;
    /// Deliver a copy to the target interface and continue (TC: bpf_clone_redirect).
    pub const MIRROR: u8 = 3;
    pub const NAMES: [&str; 4] = ["pass", "drop", "redirect", "mirror"];
}

/// `Rule::direction`.
pub const DIR_ANY: u8 = 2;
/// `Rule::class`: any class.
pub const CLASS_ANY: u8 = 0xff;

/// One rule. Zero in a match field means "any" (a prefix length of 0 matches every address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// User-visible id (never 0 for a rule in use).
    pub id: u32,
    pub priority: u32,
    /// Interface the frame is seen on (0: any).
    pub ifindex: u32,
    /// Redirect / mirror target.
    pub target_ifindex: u32,
    pub enabled: u8,
    pub action: u8,
    /// DIR_INGRESS, DIR_EGRESS or DIR_ANY.
    pub direction: u8,
    /// A traffic class id, or CLASS_ANY.
    pub class: u8,
    /// 0 (any), FAMILY_IPV4 or FAMILY_IPV6; set whenever a CIDR is.
    pub family: u8,
    pub src_prefix: u8,
    pub dst_prefix: u8,
    /// 1: match `dst_mac`.
    pub match_mac: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub dst_mac: [u8; 6],
    /// Destination port (TCP/UDP) when non-zero.
    pub port: u16,
    /// 1: deliver a redirect into the target veth's peer (its pod namespace) with
    /// bpf_redirect_peer; 0: transmit on the target.
    pub peer: u8,
    /// Why the rule was disabled (see `disabled`), 0 when enabled.
    pub disabled_reason: u8,
    pub _pad: [u8; 6],
}

pub mod disabled {
    pub const NONE: u8 = 0;
    /// The redirect/mirror target (or the matched interface) was deleted; a reused ifindex must
    /// never receive another pod's traffic, so the rule stays off until replaced.
    pub const INTERFACE_GONE: u8 = 1;
    pub const BY_USER: u8 = 2;
    pub const NAMES: [&str; 3] = ["", "interface_gone", "by_user"];
}

/// What a rule is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ifindex: u32,
    pub direction: u8,
    pub class: u8,
    pub family: u8,
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub dport: u16,
    pub dst_mac: &'a [u8; 6],
}

/// Do the first `prefix` bits of `a` and `b` agree? Const-bounded for the verifier.
#[inline(always)]
pub fn prefix_eq(a: &[u8; 16], b: &[u8; 16], prefix: u8) -> bool {
    let mut bits = prefix as u32;
    let mut i = 0;
    while i < 16 {
        if bits == 0 {
            return true;
        }
        let mask: u8 = if bits >= 8 { 0xff } else { !(0xffu8 >> bits) };
        if (a[i] ^ b[i]) & mask != 0 {
            return false;
        }
        bits = bits.saturating_sub(8);
        i += 1;
    }
    true
}

#[inline(always)]
pub fn matches(r: &Rule, p: &Packet) -> bool {
    if r.enabled == 0 {
        return false;
    }
    if r.ifindex != 0 && r.ifindex != p.ifindex {
        return false;
    }
    if r.direction != DIR_ANY && r.direction != p.direction {
        return false;
    }
    if r.class != CLASS_ANY && r.class != p.class {
        return false;
    }
    if r.family != 0 {
        if r.family != p.family {
            return false;
        }
        if !prefix_eq(&r.src, p.src, r.src_prefix) || !prefix_eq(&r.dst, p.dst, r.dst_prefix) {
            return false;
        }
    }
    if r.port != 0 && r.port != p.dport {
        return false;
    }
    if r.match_mac != 0 && r.dst_mac != *p.dst_mac {
        return false;
    }
    true
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], Copy, integers and byte arrays, explicit padding.
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::RuleCtl {}
    unsafe impl aya::Pod for super::FastTarget {}
    unsafe impl aya::Pod for super::MacKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{class, parse::v4_mapped, DIR_EGRESS, DIR_INGRESS, FAMILY_IPV4};

    fn pkt<'a>(src: &'a [u8; 16], dst: &'a [u8; 16], mac: &'a [u8; 6]) -> Packet<'a> {
        Packet {
            ifindex: 5,
            direction: DIR_INGRESS,
            class: class::ICMP,
            family: FAMILY_IPV4,
            src,
            dst,
            dport: 0,
            dst_mac: mac,
        }
    }

    #[test]
    fn layout() {
        // 4 u32 + 8 u8 + 2 addresses + MAC + port + 2 u8 + 6 padding: no implicit padding.
        assert_eq!(size_of::<Rule>(), 72);
    }

    #[test]
    fn prefixes() {
        let a = v4_mapped([10, 244, 0, 2]);
        let b = v4_mapped([10, 244, 1, 2]);
        assert!(prefix_eq(&a, &b, 0));
        assert!(prefix_eq(&a, &b, 16));
        assert!(prefix_eq(&a, &b, 23));
        assert!(!prefix_eq(&a, &b, 24));
        assert!(prefix_eq(&a, &a, 128));
    }

    #[test]
    fn fields_narrow_the_match() {
        let (s, d, mac) = (
            v4_mapped([10, 244, 0, 2]),
            v4_mapped([10, 244, 0, 3]),
            [2, 0, 0, 0, 0, 3],
        );
        let p = pkt(&s, &d, &mac);
        let any = Rule {
            id: 1,
            enabled: 1,
            direction: DIR_ANY,
            class: CLASS_ANY,
            ..Rule::default()
        };
        assert!(matches(&any, &p));
        assert!(!matches(&Rule { enabled: 0, ..any }, &p), "disabled rules never match");
        assert!(matches(
            &Rule {
                ifindex: 5,
                class: class::ICMP,
                ..any
            },
            &p
        ));
        assert!(!matches(&Rule { ifindex: 6, ..any }, &p));
        assert!(!matches(
            &Rule {
                direction: DIR_EGRESS,
                ..any
            },
            &p
        ));
        assert!(!matches(
            &Rule {
                class: class::TCP,
                ..any
            },
            &p
        ));
        let cidr = Rule {
            family: FAMILY_IPV4,
            dst: v4_mapped([10, 244, 0, 0]),
            dst_prefix: 24,
            ..any
        };
        assert!(matches(&cidr, &p));
        assert!(!matches(
            &Rule {
                dst: v4_mapped([10, 244, 1, 0]),
                ..cidr
            },
            &p
        ));
        assert!(!matches(
            &Rule {
                family: crate::FAMILY_IPV6,
                ..cidr
            },
            &p
        ));
        assert!(!matches(&Rule { port: 80, ..any }, &p));
        assert!(matches(
            &Rule {
                match_mac: 1,
                dst_mac: mac,
                ..any
            },
            &p
        ));
        assert!(!matches(
            &Rule {
                match_mac: 1,
                dst_mac: [2, 0, 0, 0, 0, 9],
                ..any
            },
            &p
        ));
    }
}
