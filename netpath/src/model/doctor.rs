//! `netpath doctor`: the node checks engineers do by hand, as rows: one per check and subject,
//! with the evidence and the command that fixes it.
use crate::error::{Error, Result};

/// A check's verdict. As a metric value (`netpath_doctor_status`): 0, 1, 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    pub fn value(self) -> u8 {
        self as u8
    }
}

/// One finding: a check about one subject (an interface, a peer, a table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub subject: String,
    /// What was seen: the state, and the traffic that shows its effect when there is some.
    pub evidence: String,
    /// The exact command that fixes it (none when ok, or when no command can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &str, subject: impl Into<String>, evidence: impl Into<String>) -> Finding {
        Finding {
            check: check.to_string(),
            status: Status::Ok,
            subject: subject.into(),
            evidence: evidence.into(),
            fix: None,
        }
    }

    pub fn bad(
        check: &str,
        status: Status,
        subject: impl Into<String>,
        evidence: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            check: check.to_string(),
            status,
            subject: subject.into(),
            evidence: evidence.into(),
            fix,
        }
    }
}

/// The checks, by id, with what each looks at.
pub const CHECKS: [(&str, &str); 11] = [
    (
        "rp_filter",
        "strict reverse-path filtering (effective value max(all, interface)) on the underlay or a pod path",
    ),
    ("ip_forward", "IPv4 forwarding on"),
    (
        "br_netfilter",
        "br_netfilter loaded and bridge-nf-call-iptables=1, as kube-proxy needs",
    ),
    (
        "mtu",
        "MTUs chain: pod eth0 <= cni0 <= flannel.1 = underlay - 50 (VXLAN)",
    ),
    (
        "vxlan_fdb",
        "every peer VTEP has an FDB entry and a neighbour MAC on the VXLAN device, and traffic",
    ),
    ("veth_bridge", "every pod veth is up and enslaved to the bridge"),
    ("forward_policy", "the iptables FORWARD policy is not DROP"),
    ("conntrack", "the conntrack table is not near full (warn 90%, fail 95%)"),
    ("neigh_table", "the neighbour table is not near gc_thresh3"),
    ("arp_unanswered", "ARP requests without a reply (from the events)"),
    (
        "drops",
        "the kernel's top drop reasons right now (from the drop tracer)",
    ),
];

/// The ids `--check` names (comma-separated, repeatable), every check when empty; an unknown id is
/// bad input listing the ids.
pub fn parse_checks(given: &[String]) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for id in given
        .iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match CHECKS.iter().find(|(c, _)| *c == id) {
            Some((c, _)) if !out.contains(c) => out.push(*c),
            Some(_) => {}
            None => {
                return Err(Error::BadArgument(format!(
                    "unknown check '{id}'; checks: {}",
                    CHECKS.map(|(c, _)| c).join(", ")
                )));
            }
        }
    }
    if out.is_empty() {
        out = CHECKS.map(|(c, _)| c).to_vec();
    }
    Ok(out)
}

/// The process exit code of a doctor run: 1 when a check fails, else 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.status == Status::Fail))
}

pub fn table(findings: &[Finding]) -> String {
    let mut t = super::Columns::new(&["CHECK", "STATUS", "SUBJECT", "EVIDENCE", "FIX"]);
    for f in findings {
        t.row(vec![
            f.check.clone(),
            f.status.name().to_string(),
            f.subject.clone(),
            f.evidence.clone(),
            f.fix.clone().unwrap_or_default(),
        ]);
    }
    let mut s = t.render();
    if findings.is_empty() {
        s.push_str("(no findings)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_and_unknown_ones_are_bad_input() {
        assert_eq!(parse_checks(&[]).unwrap().len(), CHECKS.len());
        assert_eq!(
            parse_checks(&["mtu,rp_filter".into(), "mtu".into()]).unwrap(),
            vec!["mtu", "rp_filter"]
        );
        let e = parse_checks(&["mtu,nope".into()]).unwrap_err();
        assert!(
            matches!(&e, Error::BadArgument(m) if m.contains("'nope'") && m.contains("vxlan_fdb")),
            "{e}"
        );
    }

    #[test]
    fn a_fail_is_exit_1_and_the_table_shows_the_fix() {
        let ok = Finding::ok("ip_forward", "node", "net.ipv4.ip_forward=1");
        let bad = Finding::bad(
            "rp_filter",
            Status::Fail,
            "ul0",
            "rp_filter=1 on ul0",
            Some("sysctl -w net.ipv4.conf.ul0.rp_filter=2".into()),
        );
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), bad.clone()]), 1);
        let t = table(&[ok, bad]);
        assert!(
            t.contains("sysctl -w net.ipv4.conf.ul0.rp_filter=2") && t.contains("fail"),
            "{t}"
        );
        assert_eq!(Status::Fail.value(), 2);
        assert_eq!(serde_json::to_value(Status::Warn).unwrap(), "warn");
    }
}
