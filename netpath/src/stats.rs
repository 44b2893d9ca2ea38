//! Per-interface, per-direction, per-class counters as rows, tables and JSON.
use netpath_common::{class, IfaceCounters, IfaceKey, DIRECTIONS};
use std::fmt::Write as _;

/// One counter row. The field names are a stable JSON contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatRow {
    pub iface: String,
    pub ifindex: u32,
    pub direction: &'static str,
    pub class: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// Rows for every non-zero class of every interface.
pub fn rows(counters: &[(IfaceKey, IfaceCounters)], name_of: impl Fn(u32) -> String) -> Vec<StatRow> {
    let mut out = Vec::new();
    for (k, c) in counters {
        let iface = name_of(k.ifindex);
        for (i, counter) in c.class.iter().enumerate() {
            if counter.packets == 0 {
                continue;
            }
            out.push(StatRow {
                iface: iface.clone(),
                ifindex: k.ifindex,
                direction: DIRECTIONS.get(k.direction as usize).copied().unwrap_or("unknown"),
                class: class::name(i as u8),
                packets: counter.packets,
                bytes: counter.bytes,
            });
        }
    }
    out
}

/// A table of packets per class, one line per interface and direction, with total bytes.
pub fn table(counters: &[(IfaceKey, IfaceCounters)], name_of: impl Fn(u32) -> String) -> String {
    let mut s = String::new();
    let _ = write!(s, "{:<16} {:>7} {:<7}", "IFACE", "IFINDEX", "DIR");
    for n in class::NAMES {
        let _ = write!(s, " {:>9}", n.to_uppercase());
    }
    let _ = writeln!(s, " {:>12}", "BYTES");
    for (k, c) in counters {
        let _ = write!(
            s,
            "{:<16} {:>7} {:<7}",
            name_of(k.ifindex),
            k.ifindex,
            DIRECTIONS.get(k.direction as usize).copied().unwrap_or("?")
        );
        for counter in c.class.iter() {
            let _ = write!(s, " {:>9}", counter.packets);
        }
        let _ = writeln!(s, " {:>12}", c.class.iter().map(|x| x.bytes).sum::<u64>());
    }
    if counters.is_empty() {
        s.push_str("(no traffic counted yet)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpath_common::Counter;

    #[test]
    fn rows_skip_zero_classes_and_name_everything() {
        let mut c = IfaceCounters::default();
        c.class[class::ICMP as usize] = Counter { packets: 3, bytes: 294 };
        c.class[class::VXLAN as usize] = Counter { packets: 1, bytes: 148 };
        let r = rows(&[(IfaceKey::new(7, 1), c)], |i| format!("if{i}"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], StatRow { iface: "if7".into(), ifindex: 7, direction: "egress", class: "icmp", packets: 3, bytes: 294 });
        assert_eq!(r[1].class, "vxlan");
        let json = serde_json::to_value(&r[0]).unwrap();
        for f in ["iface", "ifindex", "direction", "class", "packets", "bytes"] {
            assert!(json.get(f).is_some(), "missing {f}");
        }
        let t = table(&[(IfaceKey::new(7, 1), c)], |i| format!("if{i}"));
        assert!(t.contains("if7") && t.contains("442"), "{t}");
    }
}
