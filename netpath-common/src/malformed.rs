//! Why a frame was counted as malformed (counted per CPU by reason in `NP_DIAG`, from
//! [`crate::diag::MALFORMED_BASE`], so a user can tell a truncated capture from a bad IHL).

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
