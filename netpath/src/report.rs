//! What the read commands print: stats, flows and status, as tables or JSON.
use std::time::Duration;

use netpath_common::{diag, malformed};

use crate::{
    cli::Output,
    error::{Error, Result},
    flows::{self, Clock, Filter},
    ifaces,
    maps::{FlowTableStatus, Maps},
    stats,
};

pub fn iface_name(ifindex: u32) -> String {
    ifaces::name_of(ifindex).unwrap_or_else(|| format!("if{ifindex}"))
}

/// The periodic table of `netpath run`.
pub fn tick_table(rows: &[stats::StatRow], ft: &FlowTableStatus, elapsed: Duration) -> String {
    format!(
        "netpath: {} elapsed, packets per class\n{}flows: {} active / {} capacity ({:.1}% full), {} evicted, {} failed inserts\n",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
        stats::table(rows),
        ft.active,
        ft.capacity,
        ft.fill_ratio * 100.0,
        ft.evictions,
        ft.insert_failed
    )
}

/// One JSON object per interval for `run -o json`.
pub fn tick_json(rows: &[stats::StatRow], ft: &FlowTableStatus) -> String {
    serde_json::json!({
        "time": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "stats": rows,
        "flow_table": ft,
    })
    .to_string()
}

pub fn stats(maps: &Maps, output: Output) -> Result<String> {
    render_stats(&stats::rows(&maps.iface_counters()?, iface_name), output)
}

pub fn flows(maps: &Maps, filter: &Filter, output: Output) -> Result<String> {
    let clock = Clock::now();
    let rows = maps
        .flows()?
        .iter()
        .map(|(k, v)| flows::row(k, v, iface_name(k.ifindex), &clock))
        .collect();
    render_flows(&flows::select(rows, filter), output)
}

pub fn render_stats(rows: &[stats::StatRow], output: Output) -> Result<String> {
    Ok(match output {
        Output::Table => stats::table(rows),
        Output::Json => serde_json::to_string_pretty(rows).map_err(std::io::Error::other)? + "\n",
    })
}

pub fn render_flows(rows: &[flows::FlowRow], output: Output) -> Result<String> {
    Ok(match output {
        Output::Table => flows::table(rows),
        Output::Json => serde_json::to_string_pretty(rows).map_err(std::io::Error::other)? + "\n",
    })
}

pub fn parse_class(name: &str) -> Result<u8> {
    netpath_common::class::from_name(name).ok_or_else(|| {
        Error::BadArgument(format!(
            "unknown class '{name}' (one of {})",
            netpath_common::class::NAMES.join(", ")
        ))
    })
}

/// Datapath health as JSON: flow table, insert failures, pull failures, malformed by reason.
pub fn status_json(maps: &Maps) -> Result<serde_json::Value> {
    let d = maps.diag()?;
    let reasons: serde_json::Map<String, serde_json::Value> = (1..malformed::COUNT)
        .map(|r| {
            (
                malformed::NAMES[r].to_string(),
                d[diag::MALFORMED_BASE as usize + r].into(),
            )
        })
        .collect();
    Ok(serde_json::json!({
        "flow_table": maps.flow_table()?,
        "events": {
            "emitted": d[diag::EVENTS_EMITTED as usize],
            "delivered": d[diag::EVENTS_DELIVERED as usize],
            "lost": d[diag::EVENTS_LOST as usize],
            "suppressed": d[diag::EVENTS_SUPPRESSED as usize],
        },
        "capture": {
            "captured": d[diag::CAPTURED as usize],
            "lost": d[diag::CAPTURE_LOST as usize],
        },
        "iface_insert_failed": d[diag::IFACE_INSERT_FAILED as usize],
        "pull_failed": d[diag::PULL_FAILED as usize],
        "malformed": reasons,
    }))
}

/// `netpath status` as text (from the JSON, so both outputs say the same thing).
pub fn status_text(v: &serde_json::Value) -> String {
    let ft = &v["flow_table"];
    let mut s = format!(
        "flow table: {} active / {} capacity ({:.1}% full)\n  created {}  evicted {}  deleted {}  failed inserts {}\ninterface table failed inserts: {}\nskb pull failures: {}\nmalformed frames by reason:\n",
        ft["active"],
        ft["capacity"],
        ft["fill_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        ft["created"],
        ft["evictions"],
        ft["deleted"],
        ft["insert_failed"],
        v["iface_insert_failed"],
        v["pull_failed"],
    );
    let ev = &v["events"];
    s.push_str(&format!(
        "events: emitted {}  delivered {}  lost {}  suppressed by the rate limit {}{}\ncapture: captured {}  lost {}\n",
        ev["emitted"],
        ev["delivered"],
        ev["lost"],
        ev["suppressed"],
        ev.get("pending").map(|p| format!("  pending {p}")).unwrap_or_default(),
        v["capture"]["captured"],
        v["capture"]["lost"],
    ));
    if let Some(m) = v["malformed"].as_object() {
        for (name, n) in m {
            s.push_str(&format!("  {name:<28} {n}\n"));
        }
    }
    if let Some(d) = v.get("daemon") {
        s.push_str(&format!(
            "daemon: pid {}, up {} s, {} interface(s) attached, persist {}\n  departed interfaces {} ({} flows, {} packets)\n  attach latency p50 {} ms, p99 {} ms over {} hot-plugs\n",
            d["pid"],
            d["uptime_s"],
            d["attached_interfaces"],
            d["persist"],
            d["departed"]["interfaces"],
            d["departed"]["flows"],
            d["departed"]["packets"],
            d["attach_latency_ms"]["p50"],
            d["attach_latency_ms"]["p99"],
            d["attach_latency_ms"]["count"],
        ));
    }
    s
}

pub fn render_status(v: &serde_json::Value, output: Output) -> Result<String> {
    Ok(match output {
        Output::Json => serde_json::to_string_pretty(v).map_err(std::io::Error::other)? + "\n",
        Output::Table => status_text(v),
    })
}
