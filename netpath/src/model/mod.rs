//! The rows netpath shows people and scripts, and their tables: counters ([`stats`]), flows,
//! events, rules, interfaces and status. Typed rows are what the control API serves, the CLI prints
//! and the metrics exporter reads; their JSON field names are a stable contract. Pure: nothing
//! here touches the kernel.
use std::{fmt, str::FromStr};

use crate::error::{Error, Result};

pub mod events;
pub mod flows;
pub mod ifaces;
pub mod inline;
pub mod owner;
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
