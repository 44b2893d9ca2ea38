//! What the read commands print: stats, flows and status, as tables or JSON.
use crate::{
    cli::Output,
    error::{Error, Result},
    flows::{self, Clock, Filter},
    ifaces,
    maps::Maps,
    stats,
};
use netpath_common::{diag, malformed};
use std::time::Duration;

pub fn iface_name(ifindex: u32) -> String {
    ifaces::name_of(ifindex).unwrap_or_else(|| format!("if{ifindex}"))
}

pub fn stats_table(maps: &Maps, elapsed: Duration) -> Result<String> {
    let counters = maps.iface_counters()?;
    let ft = maps.flow_table()?;
    Ok(format!(
        "netpath: {} elapsed, packets per class\n{}flows: {} active / {} capacity ({:.1}% full), {} evicted, {} failed inserts\n",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
        stats::table(&counters, iface_name),
        ft.active,
        ft.capacity,
        ft.fill_ratio * 100.0,
        ft.evictions,
        ft.insert_failed
    ))
}

pub fn stats_json_line(maps: &Maps) -> Result<String> {
    let rows = stats::rows(&maps.iface_counters()?, iface_name);
    let v = serde_json::json!({
        "time": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "stats": rows,
        "flow_table": maps.flow_table()?,
    });
    Ok(v.to_string())
}

pub fn stats(maps: &Maps, output: Output) -> Result<String> {
    let counters = maps.iface_counters()?;
    Ok(match output {
        Output::Table => stats::table(&counters, iface_name),
        Output::Json => serde_json::to_string_pretty(&stats::rows(&counters, iface_name)).map_err(std::io::Error::other)? + "\n",
    })
}

pub fn flows(maps: &Maps, filter: &Filter, output: Output) -> Result<String> {
    let clock = Clock::now();
    let rows = maps.flows()?.iter().map(|(k, v)| flows::row(k, v, iface_name(k.ifindex), &clock)).collect();
    let rows = flows::select(rows, filter);
    Ok(match output {
        Output::Table => flows::table(&rows),
        Output::Json => serde_json::to_string_pretty(&rows).map_err(std::io::Error::other)? + "\n",
    })
}

pub fn parse_class(name: &str) -> Result<u8> {
    netpath_common::class::from_name(name).ok_or_else(|| {
        Error::BadArgument(format!("unknown class '{name}' (one of {})", netpath_common::class::NAMES.join(", ")))
    })
}

pub fn status(maps: &Maps, output: Output) -> Result<String> {
    let ft = maps.flow_table()?;
    let d = maps.diag()?;
    let reasons: serde_json::Map<String, serde_json::Value> = (1..malformed::COUNT)
        .map(|r| (malformed::NAMES[r].to_string(), d[diag::MALFORMED_BASE as usize + r].into()))
        .collect();
    let v = serde_json::json!({
        "flow_table": ft,
        "iface_insert_failed": d[diag::IFACE_INSERT_FAILED as usize],
        "pull_failed": d[diag::PULL_FAILED as usize],
        "malformed": reasons,
    });
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(&v).map_err(std::io::Error::other)? + "\n",
        Output::Table => {
            let mut s = format!(
                "flow table: {} active / {} capacity ({:.1}% full)\n  created {}  evicted {}  failed inserts {}\ninterface table failed inserts: {}\nskb pull failures: {}\nmalformed frames by reason:\n",
                ft.active, ft.capacity, ft.fill_ratio * 100.0, ft.created, ft.evictions, ft.insert_failed,
                d[diag::IFACE_INSERT_FAILED as usize], d[diag::PULL_FAILED as usize]
            );
            for (name, n) in &reasons {
                s.push_str(&format!("  {name:<28} {n}\n"));
            }
            s
        }
    })
}
