//! `netpath drops`: where and why packets died, heaviest first; `--reasons` lists the names the
//! running kernel gives its drop reasons.
use netpath::model::{
    self,
    drops::{self, DropFilter, DropReasons},
    Output,
};

use crate::{args::DropsArgs, daemon};

pub fn run(args: &DropsArgs) -> anyhow::Result<()> {
    if args.reasons {
        print!("{}", reasons(&daemon::drop_reasons(), args.read.output)?);
        return Ok(());
    }
    let filter = DropFilter {
        pod: args.pod.clone(),
        iface: args.iface.clone(),
        reason: args.reason.clone(),
    };
    let rt = daemon::runtime()?;
    let rows = daemon::drop_rows(&args.read, &filter, &rt)?;
    print!("{}", model::render(&rows, args.read.output, |r| drops::table(r))?);
    Ok(())
}

/// One of the kernel's drop reasons, as `--reasons -o json` prints it.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReasonRow {
    /// The name `--reason` takes and rows show (without `SKB_DROP_REASON_`).
    pub reason: String,
    /// Its value in `enum skb_drop_reason` (the subsystem in the high 16 bits).
    pub value: u32,
    pub subsystem: String,
}

/// This kernel's reasons, by value, as a table or JSON.
pub fn reasons(r: &DropReasons, output: Output) -> anyhow::Result<String> {
    if r.is_empty() && output == Output::Table {
        anyhow::bail!(
            "this kernel names no drop reasons (no BTF at /sys/kernel/btf/vmlinux, or no enum skb_drop_reason)"
        );
    }
    let rows: Vec<ReasonRow> = r
        .all()
        .into_iter()
        .map(|(value, reason)| ReasonRow {
            reason,
            value,
            subsystem: r.subsystem(value),
        })
        .collect();
    Ok(model::render(&rows, output, |rows| reason_table(rows))?)
}

fn reason_table(rows: &[ReasonRow]) -> String {
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|r| [r.reason.clone(), format!("{:#x}", r.value), r.subsystem.clone()])
        .collect();
    let w: [usize; 3] = std::array::from_fn(|i| {
        cells
            .iter()
            .map(|c| c[i].len())
            .chain([["REASON", "VALUE", "SUBSYSTEM"][i].len()])
            .max()
            .unwrap_or(0)
    });
    let mut s = format!("{:<a$} {:>b$} SUBSYSTEM\n", "REASON", "VALUE", a = w[0], b = w[1]);
    for [reason, value, sub] in &cells {
        s.push_str(&format!("{reason:<a$} {value:>b$} {sub}\n", a = w[0], b = w[1]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> DropReasons {
        DropReasons::new(
            [
                ("SKB_CONSUMED".to_string(), 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED".into(), 2),
                ("SKB_DROP_REASON_NETFILTER_DROP".into(), 12),
            ],
            [
                ("SKB_DROP_REASON_SUBSYS_CORE".to_string(), 0),
                ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH".into(), 2),
            ],
            [("OVS_DROP_LAST_ACTION".to_string(), 0x2_0001)],
        )
    }

    #[test]
    fn reasons_list_the_kernels_names_with_netpaths_own() {
        let t = reasons(&kernel(), Output::Table).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["REASON", "VALUE", "SUBSYSTEM"]
        );
        assert!(
            lines[1].starts_with("NOT_SPECIFIED ") && lines[1].ends_with(" core"),
            "{t}"
        );
        assert!(
            t.contains("OVS_DROP_LAST_ACTION") && t.contains("0x20001 openvswitch"),
            "{t}"
        );
        assert!(lines.last().unwrap().starts_with("NETPATH_RULE"), "{t}");
        assert!(!t.contains("CONSUMED"), "{t}");
        // Columns line up.
        let at = lines[0].find("VALUE").unwrap() + "VALUE".len();
        assert!(lines.iter().all(|l| l.as_bytes().get(at) == Some(&b' ')), "{t}");
        let j: serde_json::Value = serde_json::from_str(&reasons(&kernel(), Output::Json).unwrap()).unwrap();
        assert_eq!(
            j[1],
            serde_json::json!({ "reason": "NETFILTER_DROP", "value": 12, "subsystem": "core" })
        );
        assert!(reasons(&DropReasons::default(), Output::Table).is_err());
    }
}
