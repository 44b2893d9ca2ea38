//! What `netpath run` prints every interval (unless `--quiet`).
use std::{io::Write as _, time::Duration};

use super::state::Shared;
use crate::model::{stats, status::FlowTableStatus, Output};

/// The periodic table of `netpath run`.
pub fn tick_table(rows: &[stats::StatRow], ft: &FlowTableStatus, elapsed: Duration) -> String {
    format!(
        "netpath: {} elapsed, packets per class\n{}flows: {} active, {} entries / {} capacity ({:.1}% full), {} evicted, {} failed inserts\n",
        humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
        stats::table(rows),
        ft.active,
        ft.entries,
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

pub(super) fn print_tick(shared: &Shared, output: Output, elapsed: Duration) {
    let rows = shared.stat_rows();
    let ft = shared
        .maps
        .lock()
        .unwrap()
        .flow_table(*shared.flows_active.lock().unwrap());
    let (rows, ft) = match (rows, ft) {
        (Ok(r), Ok(f)) => (r, f),
        (Err(e), _) | (_, Err(e)) => {
            log::warn!("reading counters: {e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    match output {
        Output::Table => {
            if std::io::IsTerminal::is_terminal(&out) {
                let _ = write!(out, "\x1b[H\x1b[2J");
            }
            let _ = write!(out, "{}", tick_table(&rows, &ft, elapsed));
        }
        Output::Json => {
            let _ = writeln!(out, "{}", tick_json(&rows, &ft));
        }
    }
    let _ = out.flush();
}
