//! `netpath status` and `GET /v1/status`: datapath health (flow table, events, capture, malformed
//! frames by reason) and, from a daemon, what the daemon itself knows.
use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use super::ifaces::ProgramRef;

/// Datapath health. The daemon adds `daemon` and the live parts of `events`; read from the pins
/// alone, those are absent. Field names are a stable JSON contract.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StatusReport {
    pub flow_table: FlowTableStatus,
    pub events: EventTotals,
    pub capture: CaptureTotals,
    #[serde(default)]
    pub drops: DropTotals,
    pub iface_insert_failed: u64,
    /// VXLAN frames the per-peer table had no room for (a new peer in a full table).
    pub peer_insert_failed: u64,
    pub pull_failed: u64,
    /// Malformed frames by reason name (every reason, zero or not).
    pub malformed: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EventTotals {
    pub emitted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub suppressed: u64,
    /// Emitted but not yet read (only a daemon knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Events this daemon delivered, by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_kind: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CaptureTotals {
    pub captured: u64,
    pub lost: u64,
}

/// The drop table: drops counted (kernel and rules), and those counted only here because the
/// table was full when their site was new.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DropTotals {
    pub counted: u64,
    pub table_full: u64,
}

/// What a running daemon adds to the status.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DaemonStatus {
    pub pid: u32,
    pub uptime_s: u64,
    pub pin_dir: Option<PathBuf>,
    pub persist: bool,
    pub attached_interfaces: usize,
    pub programs: Vec<ProgramRef>,
    pub departed: Departed,
    pub attach_latency_ms: Latency,
    /// `--iface` globs that match no interface (the daemon observes nothing through them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched_ifaces: Vec<String>,
    /// The drop tracer: `on`, `starting`, `off` (`--drops off`), or `unavailable: WHY`.
    #[serde(default)]
    pub drop_tracer: String,
    /// The periodic doctor (`--doctor-interval`); absent from daemons without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor: Option<DoctorSummary>,
    /// The IPFIX exporter (`--ipfix`); absent when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfix: Option<super::ipfix::IpfixStatus>,
}

/// The daemon's doctor at a glance: its last run's findings by status (`netpath doctor` and
/// `/v1/doctor` have them one by one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DoctorSummary {
    /// Seconds between runs; None when the doctor is off.
    pub interval_s: Option<u64>,
    /// Runs so far (failed ones included).
    pub runs: u64,
    /// Seconds since the last run finished; None before the first.
    pub last_run_s_ago: Option<u64>,
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    /// Why the last run failed (its findings are then the run's before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DoctorSummary {
    /// `doctor: 2 fail, 1 warn (last run 12 s ago)`, without the `doctor: `.
    pub fn text(&self) -> String {
        if self.interval_s.is_none() && self.runs == 0 {
            return "off (--doctor-interval off)".into();
        }
        let Some(ago) = self.last_run_s_ago else {
            return "not run yet".into();
        };
        let mut s = if self.fail + self.warn == 0 {
            format!("all {} ok", self.ok)
        } else {
            let mut parts = Vec::new();
            if self.fail > 0 {
                parts.push(format!("{} fail", self.fail));
            }
            if self.warn > 0 {
                parts.push(format!("{} warn", self.warn));
            }
            parts.join(", ")
        };
        let _ = write!(s, " (last run {ago} s ago)");
        if let Some(e) = &self.error {
            let _ = write!(s, "; the last run failed: {e}");
        }
        s
    }
}

/// Interfaces that went away while the daemon watched: what was counted on them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Departed {
    pub interfaces: u64,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Hot-plug attach latency (link seen to attached), in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Latency {
    pub fn of(samples: &[f64]) -> Latency {
        let mut lat = samples.to_vec();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * p).round() as usize]);
        Latency {
            count: lat.len(),
            p50: pct(0.5),
            p99: pct(0.99),
        }
    }
}

impl StatusReport {
    /// `netpath status` for people: the same numbers as the JSON, one section after the other.
    pub fn text(&self) -> String {
        let ft = &self.flow_table;
        let mut s = String::new();
        let _ = write!(
            s,
            "flow table: {} active, {} entries / {} capacity ({:.1}% full)\n  created {}  evicted {}  deleted {}  failed inserts {}\ninterface table failed inserts: {}\nVXLAN peer table failed inserts: {}\nskb pull failures: {}\nmalformed frames by reason:\n",
            ft.active,
            ft.entries,
            ft.capacity,
            ft.fill_ratio * 100.0,
            ft.created,
            ft.evictions,
            ft.deleted,
            ft.insert_failed,
            self.iface_insert_failed,
            self.peer_insert_failed,
            self.pull_failed,
        );
        for (name, n) in &self.malformed {
            let _ = writeln!(s, "  {name:<28} {n}");
        }
        let ev = &self.events;
        let _ = write!(
            s,
            "events: emitted {}  delivered {}  lost {}  suppressed by the rate limit {}{}\ncapture: captured {}  lost {}\ndrops: counted {}  not in the table (full) {}\n",
            ev.emitted,
            ev.delivered,
            ev.lost,
            ev.suppressed,
            ev.pending.map(|p| format!("  pending {p}")).unwrap_or_default(),
            self.capture.captured,
            self.capture.lost,
            self.drops.counted,
            self.drops.table_full,
        );
        if let Some(d) = &self.daemon {
            let latency = match (d.attach_latency_ms.p50, d.attach_latency_ms.p99) {
                (Some(p50), Some(p99)) => format!(
                    "p50 {p50:.1} ms, p99 {p99:.1} ms over {} hot-plugs",
                    d.attach_latency_ms.count
                ),
                _ => "no hot-plugs yet".into(),
            };
            let _ = write!(
                s,
                "daemon: pid {}, up {} s, {} interface(s) attached, persist {}\n  departed interfaces {} ({} flows, {} packets)\n  attach latency: {latency}\n",
                d.pid,
                d.uptime_s,
                d.attached_interfaces,
                if d.persist { "on" } else { "off" },
                d.departed.interfaces,
                d.departed.flows,
                d.departed.packets,
            );
            if !d.drop_tracer.is_empty() {
                let _ = writeln!(s, "  drop tracer: {}", d.drop_tracer);
            }
            if let Some(doc) = &d.doctor {
                let _ = writeln!(s, "  doctor: {}", doc.text());
            }
            if let Some(ipfix) = &d.ipfix {
                s.push_str(&ipfix.text());
            }
            for glob in &d.unmatched_ifaces {
                let _ = writeln!(s, "  warning: --iface '{glob}' matches no interface");
            }
        }
        s
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FlowTableStatus {
    pub capacity: u32,
    /// Entries in the table, ended flows included.
    pub entries: u64,
    /// Flows still going: a packet within the idle timeout and no FIN or RST seen
    /// (`model::flows::is_active`).
    pub active: u64,
    pub created: u64,
    /// Flows the LRU pushed out to make room: created minus still present minus those netpath
    /// deleted itself (when their interface went away).
    pub evictions: u64,
    pub deleted: u64,
    pub insert_failed: u64,
    pub fill_ratio: f64,
}

impl FlowTableStatus {
    pub fn new(capacity: u32, entries: u64, active: u64, created: u64, deleted: u64, insert_failed: u64) -> Self {
        let fill_ratio = if capacity == 0 {
            0.0
        } else {
            entries as f64 / f64::from(capacity)
        };
        Self {
            capacity,
            entries,
            active,
            created,
            evictions: created.saturating_sub(entries).saturating_sub(deleted),
            deleted,
            insert_failed,
            fill_ratio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_has_its_sections_in_order_and_no_null() {
        let r = StatusReport {
            malformed: [("ip_truncated".to_string(), 3), ("vlan_too_deep".to_string(), 0)].into(),
            events: EventTotals {
                pending: Some(0),
                ..EventTotals::default()
            },
            daemon: Some(DaemonStatus {
                pid: 7,
                doctor: Some(DoctorSummary {
                    interval_s: Some(30),
                    runs: 3,
                    last_run_s_ago: Some(12),
                    ok: 9,
                    warn: 1,
                    fail: 2,
                    error: None,
                }),
                ..DaemonStatus::default()
            }),
            ..StatusReport::default()
        };
        let t = r.text();
        assert!(!t.contains("null"), "{t}");
        let at = |what: &str| t.find(what).unwrap_or_else(|| panic!("no '{what}' in:\n{t}"));
        let order = [
            "flow table:",
            "malformed frames by reason:",
            "ip_truncated",
            "vlan_too_deep",
            "events:",
            "capture:",
            "daemon:",
            "attach latency: no hot-plugs yet",
            "doctor: 2 fail, 1 warn (last run 12 s ago)",
        ];
        for w in order.windows(2) {
            assert!(at(w[0]) < at(w[1]), "'{}' should come before '{}':\n{t}", w[0], w[1]);
        }
    }

    #[test]
    fn the_doctor_summary_says_off_not_yet_all_ok_or_what_is_wrong() {
        let off = DoctorSummary::default();
        assert_eq!(off.text(), "off (--doctor-interval off)");
        let mut d = DoctorSummary {
            interval_s: Some(30),
            ..DoctorSummary::default()
        };
        assert_eq!(d.text(), "not run yet");
        (d.runs, d.last_run_s_ago, d.ok) = (1, Some(3), 11);
        assert_eq!(d.text(), "all 11 ok (last run 3 s ago)");
        (d.warn, d.error) = (2, Some("netlink: EPERM".into()));
        assert_eq!(
            d.text(),
            "2 warn (last run 3 s ago); the last run failed: netlink: EPERM"
        );
        // JSON under `daemon`, `error` only when there is one.
        let j = serde_json::to_value(DaemonStatus {
            doctor: Some(DoctorSummary {
                error: None,
                ..d.clone()
            }),
            ..DaemonStatus::default()
        })
        .unwrap();
        assert_eq!(j["doctor"]["warn"], 2);
        assert_eq!(j["doctor"]["interval_s"], 30);
        assert!(j["doctor"].get("error").is_none(), "{j}");
        assert!(serde_json::to_value(DaemonStatus::default())
            .unwrap()
            .get("doctor")
            .is_none());
    }
}
