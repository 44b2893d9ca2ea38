//! What the benchmarks record about the machine and the source they ran on: a number means little
//! without the kernel, the CPU, the load beside it and the commit it measured.
use std::{
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

pub fn kernel_version() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let b: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    format!("{} {} {}", field(&u.sysname), field(&u.release), field(&u.machine))
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPUs this process may use (its affinity and cgroup quota), unlike `cpu::online_cpus`.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// UTC now as RFC 3339 (civil-from-days, H. Hinnant).
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The sources a datapath figure depends on: the eBPF programs and the shared parser.
pub const DATAPATH_SOURCES: &[&str] = &[":/netpath-ebpf", ":/netpath-common"];
/// The sources an end-to-end figure depends on: the datapath and netpath's user space.
pub const NETPATH_SOURCES: &[&str] = &[":/netpath-ebpf", ":/netpath-common", ":/netpath"];

/// The commit measured, and whether `paths` (git pathspecs) differ from it: a benchmark of
/// uncommitted code should say so.
pub fn source_state(paths: &[&str]) -> (Option<String>, Option<bool>) {
    source_state_in(Path::new(env!("CARGO_MANIFEST_DIR")), paths)
}

/// [`source_state`] of the checkout at `dir` (another build, for the compare suite).
pub fn source_state_in(dir: &Path, paths: &[&str]) -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let status: Vec<&str> = ["status", "--porcelain", "--"]
        .into_iter()
        .chain(paths.iter().copied())
        .collect();
    let dirty = git(&status).map(|s| !s.is_empty());
    (commit, dirty)
}
