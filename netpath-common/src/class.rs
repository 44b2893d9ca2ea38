//! Traffic classes. Every frame lands in exactly one, by this precedence:
//! malformed > vxlan > arp > icmp, icmp6, tcp, udp > other_ip > other_l2.
//! A VLAN-tagged frame is classed by its payload; a VXLAN frame is `vxlan` whatever it carries
//! (unless the outer or inner headers are truncated or invalid: then it is `malformed`).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(from_name(n), Some(i as u8));
            assert_eq!(name(i as u8), *n);
        }
        assert_eq!(from_name("nope"), None);
    }
}
