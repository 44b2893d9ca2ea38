//! The iptables FORWARD chain's policy (`forward_policy`), read with `iptables -S FORWARD`: no
//! crate reads iptables-nft and legacy tables alike, and the command is what engineers run.
use std::process::Command;

use super::Observed;
use crate::model::doctor::{Finding, Status};

/// A DROP policy drops forwarded pod traffic no rule accepts (Docker sets it; flannel and
/// kube-proxy add ACCEPT rules that must then cover every pod path).
pub fn forward_policy(observed: &Observed) -> Vec<Finding> {
    const CHECK: &str = "forward_policy";
    let out = match Command::new("iptables").args(["-S", "FORWARD"]).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return vec![Finding::bad(
                CHECK,
                Status::Warn,
                "FORWARD",
                format!(
                    "iptables -S FORWARD failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                None,
            )]
        }
        Err(_) => return vec![Finding::ok(CHECK, "FORWARD", "iptables is not installed here")],
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let policy = text
        .lines()
        .find_map(|l| l.strip_prefix("-P FORWARD "))
        .unwrap_or("ACCEPT")
        .trim()
        .to_string();
    if policy != "DROP" {
        return vec![Finding::ok(CHECK, "FORWARD", format!("policy {policy}"))];
    }
    let rules = text.lines().filter(|l| l.starts_with("-A FORWARD")).count();
    let dropped = observed.drops_of("NETFILTER_DROP", None);
    let mut evidence = format!("policy DROP, {rules} rule(s) in FORWARD");
    let status = if dropped > 0 {
        evidence.push_str(&format!(
            "; {dropped} packets dropped with reason NETFILTER_DROP {}",
            observed.since
        ));
        Status::Fail
    } else {
        Status::Warn
    };
    vec![Finding::bad(
        CHECK,
        status,
        "FORWARD",
        evidence,
        Some("iptables -P FORWARD ACCEPT".into()),
    )]
}
