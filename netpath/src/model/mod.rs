//! The rows netpath shows people and scripts, and their tables: counters ([`stats`]), flows,
//! events, rules, interfaces and status. Typed rows are what the control API serves, the CLI prints
//! and the metrics exporter reads; their JSON field names are a stable contract. Pure: nothing
//! here touches the kernel.
use std::{fmt, str::FromStr};

use crate::error::{Error, Result};

pub mod events;
pub mod flows;
pub mod ifaces;
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
