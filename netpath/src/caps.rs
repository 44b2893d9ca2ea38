//! Privilege check before touching the kernel, so a missing capability gets a message that names
//! it instead of an EPERM from deep inside a bpf() call.
use crate::error::{Error, Result};

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Names of the capabilities in `needed` that `caps` lacks. CAP_SYS_ADMIN stands in for CAP_BPF
/// and CAP_PERFMON, as the kernel accepts.
pub fn missing_from(caps: u64, needed: &[(u32, &'static str)]) -> Vec<&'static str> {
    let has = |c: u32| caps & (1u64 << c) != 0;
    needed
        .iter()
        .filter(|(c, _)| !(has(*c) || ((*c == CAP_BPF || *c == CAP_PERFMON) && has(CAP_SYS_ADMIN))))
        .map(|(_, n)| *n)
        .collect()
}

/// Loading and attaching programs needs CAP_BPF, CAP_PERFMON (pointer arithmetic on packets) and
/// CAP_NET_ADMIN (attaching to interfaces).
pub fn require_datapath() -> Result<()> {
    require(&[
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ])
}

/// Reading pinned maps needs CAP_BPF (bpffs objects are root-owned too).
pub fn require_read() -> Result<()> {
    require(&[(CAP_BPF, "CAP_BPF")])
}

/// Reading pins and opening per-CPU perf event buffers (capture): CAP_BPF and CAP_PERFMON.
pub fn require_capture() -> Result<()> {
    require(&[(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")])
}

fn require(needed: &[(u32, &'static str)]) -> Result<()> {
    let caps = effective().unwrap_or(0);
    let missing = missing_from(caps, needed);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Privileges {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        let all = [(CAP_BPF, "CAP_BPF"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")];
        assert_eq!(missing_from(0, &all), vec!["CAP_BPF", "CAP_NET_ADMIN"]);
        assert_eq!(missing_from(1 << CAP_NET_ADMIN, &all), vec!["CAP_BPF"]);
        assert!(missing_from((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN), &all).is_empty());
    }
}
