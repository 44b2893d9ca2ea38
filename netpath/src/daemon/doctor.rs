//! The daemon's doctor: the checks of `netpath doctor` ([`crate::doctor`]) run every
//! `--doctor-interval` in the daemon's namespace, with what the daemon observed. Kept here: the
//! last findings (for `/v1/doctor`, `netpath_doctor_status` and `status`), the unanswered ARP
//! requests counted since start, and which (check, subject) changed state between runs (the
//! `doctor` events).
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{
    model::{
        doctor::{Finding, Status},
        drops::DropRow,
        status::DoctorSummary,
    },
    service::api::ApiError,
};

/// How many (interface, target IP) pairs of unanswered ARP are remembered: an ARP scan of a /16
/// must not grow the daemon without bound. Pairs beyond are not counted (the events still flow).
pub(super) const ARP_PAIRS: usize = 1024;

/// How soon after start the first run comes (at most the interval), so readers have findings early.
pub(super) const FIRST_RUN: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(super) struct DoctorState {
    /// `--doctor-interval` (None: off).
    pub(super) interval: Option<Duration>,
    /// The last successful run's findings (None before one).
    findings: Option<Vec<Finding>>,
    /// When the last run (successful or not) finished.
    last_run: Option<Instant>,
    runs: u64,
    /// Why the last run failed (None when it did not).
    error: Option<String>,
    /// `arp_unanswered` events since the last run, by (interface, target IP).
    arp_unanswered: HashMap<(String, String), u64>,
    /// Each drop site's packets and bytes at the last run (None before the first).
    drops_seen: Option<HashMap<DropSite, (u64, u64)>>,
}

/// A drop row's site, as the drop table keys it.
type DropSite = (String, String, Option<String>, String, String);

fn site(r: &DropRow) -> DropSite {
    (
        r.iface.clone(),
        r.direction.clone(),
        r.netns.clone(),
        r.reason.clone(),
        r.location.clone(),
    )
}

impl DoctorState {
    pub(super) fn new(interval: Option<Duration>) -> DoctorState {
        DoctorState {
            interval,
            ..DoctorState::default()
        }
    }

    /// A new `--doctor-interval` (SIGHUP); switched off, the last findings go too, so readers are
    /// told the doctor is off rather than served what it found before.
    pub(super) fn set_interval(&mut self, interval: Option<Duration>) {
        self.interval = interval;
        if interval.is_none() {
            self.findings = None;
        }
    }

    /// Count one `arp_unanswered` event (at most [`ARP_PAIRS`] distinct pairs).
    pub(super) fn note_arp_unanswered(&mut self, iface: &str, target: &str) {
        let key = (iface.to_string(), target.to_string());
        if let Some(n) = self.arp_unanswered.get_mut(&key) {
            *n += 1;
        } else if self.arp_unanswered.len() < ARP_PAIRS {
            self.arp_unanswered.insert(key, 1);
        }
    }

    /// The unanswered ARP counted since the last call (the count starts again).
    pub(super) fn take_arp_unanswered(&mut self) -> HashMap<(String, String), u64> {
        std::mem::take(&mut self.arp_unanswered)
    }

    /// The drops of `rows` since the last call: each row's packets and bytes less what it held
    /// then, rows without new drops left out. The first call only takes the baseline: the
    /// pinned table may hold drops from long before this daemon.
    pub(super) fn drops_since_last_run(&mut self, rows: Vec<DropRow>) -> Vec<DropRow> {
        let now: HashMap<DropSite, (u64, u64)> = rows.iter().map(|r| (site(r), (r.packets, r.bytes))).collect();
        let Some(before) = self.drops_seen.replace(now) else {
            return Vec::new();
        };
        rows.into_iter()
            .filter_map(|mut r| {
                let (p, b) = before.get(&site(&r)).copied().unwrap_or((0, 0));
                // A site evicted and re-created counts from zero again.
                let (p, b) = if r.packets >= p {
                    (r.packets - p, r.bytes.saturating_sub(b))
                } else {
                    (r.packets, r.bytes)
                };
                (p > 0).then(|| {
                    (r.packets, r.bytes) = (p, b);
                    r
                })
            })
            .collect()
    }

    /// Take in a run's outcome; answers the findings whose state changed (for `doctor` events).
    /// A failed run keeps the previous findings and changes nothing.
    pub(super) fn finish(&mut self, outcome: Result<Vec<Finding>, String>, now: Instant) -> Vec<Finding> {
        self.runs += 1;
        self.last_run = Some(now);
        match outcome {
            Ok(found) => {
                self.error = None;
                let changed = changes(self.findings.as_deref().unwrap_or_default(), &found);
                self.findings = Some(found);
                changed
            }
            Err(e) => {
                self.error = Some(e);
                Vec::new()
            }
        }
    }

    /// The last findings of `checks` (every check when empty; the server validated the ids).
    pub(super) fn findings(&self, checks: &[String]) -> Result<Vec<Finding>, ApiError> {
        let Some(all) = &self.findings else {
            return Err(match (&self.interval, &self.error) {
                (_, Some(e)) => ApiError::Internal(format!("the doctor's checks failed: {e}")),
                (None, None) => ApiError::NotFound("the doctor is off (--doctor-interval off)".into()),
                (Some(_), None) => ApiError::NotFound(format!(
                    "the doctor has not run yet (its first run is {} s after start)",
                    FIRST_RUN.as_secs()
                )),
            });
        };
        Ok(all
            .iter()
            .filter(|f| checks.is_empty() || checks.contains(&f.check))
            .cloned()
            .collect())
    }

    pub(super) fn summary(&self, now: Instant) -> DoctorSummary {
        let count = |s: Status| self.findings.iter().flatten().filter(|f| f.status == s).count();
        DoctorSummary {
            interval_s: self.interval.map(|i| i.as_secs()),
            runs: self.runs,
            last_run_s_ago: self.last_run.map(|t| now.saturating_duration_since(t).as_secs()),
            ok: count(Status::Ok),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
            error: self.error.clone(),
        }
    }
}

/// The findings of `after` whose (check, subject) changed status since `before` (a subject seen
/// for the first time counts as having been ok), and for every (check, subject) that was not ok
/// and is no longer reported, an ok finding saying so.
pub(super) fn changes(before: &[Finding], after: &[Finding]) -> Vec<Finding> {
    let key = |f: &Finding| (f.check.clone(), f.subject.clone());
    let was: HashMap<(String, String), Status> = before.iter().map(|f| (key(f), f.status)).collect();
    let now: HashMap<(String, String), Status> = after.iter().map(|f| (key(f), f.status)).collect();
    let mut out: Vec<Finding> = after
        .iter()
        .filter(|f| was.get(&key(f)).copied().unwrap_or(Status::Ok) != f.status)
        .cloned()
        .collect();
    out.extend(
        before
            .iter()
            .filter(|f| f.status != Status::Ok && !now.contains_key(&key(f)))
            .map(|f| Finding::ok(&f.check, f.subject.clone(), "no longer reported")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(check: &str, subject: &str, status: Status) -> Finding {
        Finding::bad(check, status, subject, format!("{check} on {subject}"), None)
    }

    #[test]
    fn changes_are_new_trouble_a_changed_status_and_trouble_gone() {
        let first = vec![
            Finding::ok("ip_forward", "node", "on"),
            bad("rp_filter", "ul0", Status::Fail),
            bad("mtu", "cni0", Status::Warn),
        ];
        // First run: only what is not ok.
        let c = changes(&[], &first);
        assert_eq!(
            c.iter().map(|f| (f.check.as_str(), f.status)).collect::<Vec<_>>(),
            [("rp_filter", Status::Fail), ("mtu", Status::Warn)]
        );
        // Same again: nothing.
        assert!(changes(&first, &first).is_empty());
        let second = vec![
            Finding::ok("ip_forward", "node", "on"),
            Finding::ok("rp_filter", "ul0", "rp_filter=2 on ul0"),
            bad("veth_bridge", "vethX", Status::Fail),
        ];
        let c = changes(&first, &second);
        let got: Vec<_> = c
            .iter()
            .map(|f| (f.check.as_str(), f.subject.as_str(), f.status))
            .collect();
        assert_eq!(
            got,
            [
                ("rp_filter", "ul0", Status::Ok),
                ("veth_bridge", "vethX", Status::Fail),
                ("mtu", "cni0", Status::Ok),
            ]
        );
        assert_eq!(c[2].evidence, "no longer reported");
    }

    #[test]
    fn state_keeps_the_last_good_findings_and_filters_by_check() {
        let mut d = DoctorState::new(Some(Duration::from_secs(30)));
        let e = d.findings(&[]).unwrap_err();
        assert_eq!(e.http_status(), 404);
        assert!(e.to_string().contains("not run yet"), "{e}");
        let t0 = Instant::now();
        let changed = d.finish(
            Ok(vec![
                bad("rp_filter", "ul0", Status::Fail),
                Finding::ok("mtu", "cni0", "1450"),
            ]),
            t0,
        );
        assert_eq!(changed.len(), 1);
        assert_eq!(d.findings(&["mtu".into()]).unwrap().len(), 1);
        assert_eq!(d.findings(&[]).unwrap().len(), 2);
        // A failed run keeps them, and says so.
        assert!(d.finish(Err("netlink: EPERM".into()), t0).is_empty());
        assert_eq!(d.findings(&[]).unwrap().len(), 2);
        let s = d.summary(t0);
        assert_eq!((s.runs, s.ok, s.warn, s.fail), (2, 1, 0, 1));
        assert_eq!(s.error.as_deref(), Some("netlink: EPERM"));
        assert_eq!((s.interval_s, s.last_run_s_ago), (Some(30), Some(0)));

        let off = DoctorState::new(None);
        assert!(off.findings(&[]).unwrap_err().to_string().contains("off"));
        // Switched off by a reload: the old findings are not served any more.
        let mut was_on = DoctorState::new(Some(Duration::from_secs(30)));
        was_on.finish(Ok(vec![bad("mtu", "cni0", Status::Fail)]), t0);
        assert!(was_on.findings(&[]).is_ok());
        was_on.set_interval(None);
        assert!(was_on.findings(&[]).unwrap_err().to_string().contains("off"));
        assert_eq!(off.summary(t0).last_run_s_ago, None);
    }

    #[test]
    fn unanswered_arp_is_counted_per_pair_bounded_and_between_runs() {
        let mut d = DoctorState::default();
        d.note_arp_unanswered("cni0", "10.244.0.9");
        d.note_arp_unanswered("cni0", "10.244.0.9");
        for i in 0..2 * ARP_PAIRS {
            d.note_arp_unanswered("cni0", &format!("10.0.{}.{}", i / 256, i % 256));
        }
        d.note_arp_unanswered("cni0", "10.244.0.9");
        let run = d.take_arp_unanswered();
        assert_eq!(run.len(), ARP_PAIRS);
        assert_eq!(run[&("cni0".into(), "10.244.0.9".into())], 3);
        assert!(d.take_arp_unanswered().is_empty(), "the next run counts afresh");
    }

    #[test]
    fn drops_are_what_happened_since_the_last_run() {
        let row = |reason: &str, packets: u64| DropRow {
            iface: "rc".into(),
            reason: reason.into(),
            packets,
            bytes: packets * 100,
            ..DropRow::default()
        };
        let mut d = DoctorState::default();
        assert!(
            d.drops_since_last_run(vec![row("NETFILTER_DROP", 5)]).is_empty(),
            "a baseline first"
        );
        let now = d.drops_since_last_run(vec![row("NETFILTER_DROP", 7), row("NO_SOCKET", 1)]);
        assert_eq!(
            now.iter()
                .map(|r| (r.reason.as_str(), r.packets, r.bytes))
                .collect::<Vec<_>>(),
            [("NETFILTER_DROP", 2, 200), ("NO_SOCKET", 1, 100)]
        );
        assert!(d
            .drops_since_last_run(vec![row("NETFILTER_DROP", 7), row("NO_SOCKET", 1)])
            .is_empty());
        // A site evicted and counted again from zero.
        let again = d.drops_since_last_run(vec![row("NETFILTER_DROP", 3)]);
        assert_eq!(again[0].packets, 3);
    }
}
