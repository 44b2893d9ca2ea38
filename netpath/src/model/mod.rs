//! The rows netpath shows people and scripts, and their tables: counters ([`stats`]), flows,
//! events, rules, interfaces and status. Typed rows are what the control API serves, the CLI prints
//! and the metrics exporter reads; their JSON field names are a stable contract. Pure: nothing
//! here touches the kernel.
use std::{fmt, str::FromStr};

use crate::error::{Error, Result};

pub mod doctor;
pub mod drops;
pub mod events;
pub mod flows;
pub mod ifaces;
pub mod inline;
pub mod ipfix;
pub mod owner;
pub mod peers;
pub mod rules;
pub mod stats;
pub mod status;

/// How a command prints what it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON (one document; `run` prints one JSON object per line).
    Json,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Output::Table => "table",
            Output::Json => "json",
        })
    }
}

impl FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Output::Table),
            "json" => Ok(Output::Json),
            _ => Err(format!("unknown output '{s}' (table, json)")),
        }
    }
}

/// Rows as a table (`table` renders them) or as pretty JSON.
pub fn render<T: serde::Serialize + ?Sized>(
    rows: &T,
    output: Output,
    table: impl FnOnce(&T) -> String,
) -> Result<String> {
    Ok(match output {
        Output::Table => table(rows),
        Output::Json => serde_json::to_string_pretty(rows).map_err(std::io::Error::other)? + "\n",
    })
}

/// Text columns as wide as their widest cell, header included: a long interface or pod name widens
/// its column instead of pushing the rest of its line out of step.
pub(crate) struct Columns {
    /// Header and whether the column is right-aligned (numbers).
    heads: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Columns {
    /// `heads`: names; one starting with '>' is right-aligned (the '>' is not printed).
    pub(crate) fn new<S: AsRef<str>>(heads: &[S]) -> Columns {
        Columns {
            heads: heads
                .iter()
                .map(|h| match h.as_ref().strip_prefix('>') {
                    Some(h) => (h.to_string(), true),
                    None => (h.as_ref().to_string(), false),
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.heads.len());
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let widths: Vec<usize> = self
            .heads
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = String::new();
        let heads: Vec<String> = self.heads.iter().map(|(h, _)| h.clone()).collect();
        for cells in std::iter::once(&heads).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let (w, right) = (widths[i], self.heads[i].1);
                if i > 0 {
                    line.push(' ');
                }
                let _ = if right {
                    write!(line, "{cell:>w$}")
                } else {
                    write!(line, "{cell:<w$}")
                };
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// `--ip`: an address (all of its bits) or a network, as in `10.244.1.0/24` or `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    len: u8,
}

impl Cidr {
    /// An address or a network without host bits (`10.244.0.2/24` is refused, as in rules).
    pub fn parse(s: &str) -> Result<Cidr> {
        let (_, _, len) = rules::parse_cidr(s)?;
        let addr = s.split('/').next().unwrap_or(s).parse().expect("parse_cidr checked it");
        Ok(Cidr { addr, len })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let (a, b, bits) = match (self.addr, ip) {
            (V4(n), V4(i)) => (u128::from(n.to_bits()) << 96, u128::from(i.to_bits()) << 96, 32),
            (V6(n), V6(i)) => (n.to_bits(), i.to_bits(), 128),
            (V4(n), V6(i)) => match i.to_ipv4_mapped() {
                Some(i) => (u128::from(n.to_bits()) << 96, u128::from(i.to_bits()) << 96, 32),
                None => return false,
            },
            (V6(_), V4(_)) => return false,
        };
        let len = u32::from(self.len.min(bits));
        len == 0 || (a ^ b) >> (128 - len) == 0
    }

    /// Whether the address written in `s` (`10.244.0.2`, or `10.244.0.2/24` as interfaces carry
    /// theirs) is inside.
    pub fn contains_str(&self, s: &str) -> bool {
        s.split('/')
            .next()
            .unwrap_or(s)
            .parse()
            .is_ok_and(|ip| self.contains(ip))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `--port`: is `port` one of a row's ports? Only TCP and UDP have ports (ICMP's `sport` is the
/// echo id, ARP's is nothing).
pub(crate) fn port_matches(proto: Option<&str>, sport: Option<u16>, dport: Option<u16>, port: u16) -> bool {
    matches!(proto, Some("tcp" | "udp")) && (sport == Some(port) || dport == Some(port))
}

/// `ingress` or `egress` for a datapath direction number (`unknown` for anything else).
pub fn direction_name(direction: u8) -> &'static str {
    netpath_common::DIRECTIONS
        .get(direction as usize)
        .copied()
        .unwrap_or("unknown")
}

/// A traffic class by name (`tcp`, `arp`, ...), or an error listing the names.
pub fn parse_class(name: &str) -> Result<u8> {
    netpath_common::class::from_name(name).ok_or_else(|| {
        Error::BadArgument(format!(
            "unknown class '{name}' (one of {})",
            netpath_common::class::NAMES.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_filters_addresses_of_its_family() {
        let net = Cidr::parse("10.244.1.0/24").unwrap();
        assert!(net.contains_str("10.244.1.7") && net.contains_str("10.244.1.1/24"));
        assert!(!net.contains_str("10.244.2.7") && !net.contains_str("fd00::1") && !net.contains_str("?"));
        assert!(net.contains_str("::ffff:10.244.1.9"));
        let one = Cidr::parse("10.244.1.7").unwrap();
        assert!(one.contains_str("10.244.1.7") && !one.contains_str("10.244.1.8"));
        assert_eq!(one.to_string(), "10.244.1.7/32");
        assert!(Cidr::parse("fd00::/64").unwrap().contains_str("fd00::5"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains_str("1.2.3.4"));
        for bad in ["10.244.1.7/24", "10.0.0.0/33", "nope", "10.0.0.0/x"] {
            assert_eq!(Cidr::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn columns_widen_for_long_cells_and_stay_aligned() {
        let mut c = Columns::new(&["IFACE", ">PACKETS", "POD"]);
        c.row(vec!["veth0".into(), "5".into(), "-".into()]);
        c.row(vec![
            "a-very-long-interface-name (default/pod)".into(),
            "123456".into(),
            "x".into(),
        ]);
        let t = c.render();
        let lines: Vec<&str> = t.lines().collect();
        // The last column starts at the same offset on every line, however long the first cell.
        let pod = lines[0].find("POD").unwrap();
        assert_eq!(lines[1].rfind('-').unwrap(), pod, "{t}");
        assert_eq!(lines[2].rfind('x').unwrap(), pod, "{t}");
        // Numbers are right-aligned: their last digit under the header's last letter.
        let end = lines[0].find("PACKETS").unwrap() + "PACKETS".len() - 1;
        assert_eq!(lines[1].find('5').unwrap(), end, "{t}");
        assert_eq!(lines[2].find("123456").unwrap() + 5, end, "{t}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t}");
    }
}
