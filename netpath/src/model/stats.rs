//! Per-interface, per-direction, per-class counters as rows, tables and JSON.

use netpath_common::{class, IfaceCounters, IfaceKey, DIRECTIONS};

use super::owner::Owner;

/// One counter row. The field names are a stable JSON contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatRow {
    pub iface: String,
    pub ifindex: u32,
    pub direction: String,
    pub class: String,
    pub packets: u64,
    pub bytes: u64,
    /// The namespace and pod behind the interface (`netns`, `pod`, `pod_namespace`), when known.
    #[serde(flatten)]
    pub owner: Owner,
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
                direction: super::direction_name(k.direction).into(),
                class: class::name(i as u8).into(),
                packets: counter.packets,
                bytes: counter.bytes,
                owner: Owner::default(),
            });
        }
    }
    out
}

/// Counter rows summed from flow rows (`stats --ip/--port`: interfaces count no addresses or
/// ports, the flow table does): per interface, direction and class, with the interface's owner.
pub fn from_flows(flows: &[super::flows::FlowRow]) -> Vec<StatRow> {
    let mut sums: std::collections::BTreeMap<(u32, String, u8), StatRow> = Default::default();
    for f in flows {
        let c = super::flows::class_of_row(f);
        let row = sums
            .entry((f.ifindex, f.direction.clone(), c))
            .or_insert_with(|| StatRow {
                iface: f.iface.clone(),
                ifindex: f.ifindex,
                direction: f.direction.clone(),
                class: class::name(c).into(),
                packets: 0,
                bytes: 0,
                owner: f.owner.clone(),
            });
        row.packets += f.packets;
        row.bytes += f.bytes;
    }
    sums.into_values().collect()
}

#[cfg(test)]
mod from_flows_tests {
    use super::*;

    #[test]
    fn flows_sum_per_interface_direction_and_class() {
        let flow = |iface: &str, ifindex: u32, proto: &str, packets: u64| super::super::flows::FlowRow {
            iface: iface.into(),
            ifindex,
            direction: "ingress".into(),
            family: "ipv4".into(),
            src: "10.244.0.2".into(),
            dst: "10.244.1.2".into(),
            proto: proto.into(),
            sport: 1,
            dport: 2,
            packets,
            bytes: packets * 100,
            active: true,
            class: 0,
            ..Default::default()
        };
        let rows = from_flows(&[
            flow("veth1", 5, "tcp", 2),
            flow("veth1", 5, "tcp", 3),
            flow("veth1", 5, "udp", 1),
            flow("cni0", 3, "tcp", 7),
        ]);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.iface.as_str(), r.class.as_str(), r.packets, r.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cni0", "tcp", 7, 700),
                ("veth1", "tcp", 5, 500),
                ("veth1", "udp", 1, 100)
            ]
        );
    }
}

/// A table of packets per class, one line per interface and direction (with the pod behind it
/// when known), and total bytes.
pub fn table(rows: &[StatRow]) -> String {
    use std::collections::BTreeMap;
    let mut lines: BTreeMap<(u32, usize), (String, [u64; class::COUNT], u64)> = BTreeMap::new();
    for r in rows {
        let dir = DIRECTIONS
            .iter()
            .position(|d| *d == r.direction)
            .unwrap_or(DIRECTIONS.len());
        let name = format!("{}{}", r.iface, r.owner.suffix());
        let e = lines
            .entry((r.ifindex, dir))
            .or_insert_with(|| (name, [0; class::COUNT], 0));
        if let Some(c) = class::from_name(&r.class) {
            e.1[c as usize] += r.packets;
        }
        e.2 += r.bytes;
    }
    let mut heads: Vec<String> = ["IFACE", ">IFINDEX", "DIR"].map(String::from).to_vec();
    heads.extend(class::NAMES.iter().map(|n| format!(">{}", n.to_uppercase())));
    heads.push(">BYTES".into());
    let mut t = super::Columns::new(&heads);
    for ((ifindex, dir), (name, packets, bytes)) in &lines {
        let mut row = vec![
            name.clone(),
            ifindex.to_string(),
            DIRECTIONS.get(*dir).copied().unwrap_or("?").to_string(),
        ];
        row.extend(packets.iter().map(u64::to_string));
        row.push(bytes.to_string());
        t.row(row);
    }
    let mut s = t.render();
    if lines.is_empty() {
        s.push_str("(no traffic counted yet)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use netpath_common::Counter;

    use super::*;

    #[test]
    fn rows_skip_zero_classes_and_name_everything() {
        let mut c = IfaceCounters::default();
        c.class[class::ICMP as usize] = Counter { packets: 3, bytes: 294 };
        c.class[class::VXLAN as usize] = Counter { packets: 1, bytes: 148 };
        let r = rows(&[(IfaceKey::new(7, 1), c)], |i| format!("if{i}"));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            StatRow {
                iface: "if7".into(),
                ifindex: 7,
                direction: "egress".into(),
                class: "icmp".into(),
                packets: 3,
                bytes: 294,
                owner: Owner::default(),
            }
        );
        assert_eq!(r[1].class, "vxlan");
        let json = serde_json::to_value(&r[0]).unwrap();
        for f in ["iface", "ifindex", "direction", "class", "packets", "bytes"] {
            assert!(json.get(f).is_some(), "missing {f}");
        }
        let t = table(&r);
        assert!(t.contains("if7") && t.contains("442"), "{t}");
        let back: Vec<StatRow> = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
