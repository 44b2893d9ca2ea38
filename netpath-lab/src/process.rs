//! Running the iproute2 tools the lab is built with, and the processes it leaves in namespaces:
//! every command bounded by `timeout`, every spawned tree in a process group of its own.
use std::{
    os::unix::process::CommandExt,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::LabError;

/// Upper bound for any single setup/inspection command.
const CMD_TIMEOUT_SECS: u64 = 20;

pub(crate) fn shell_join(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a command under `timeout`, returning its stdout; a non-zero exit is an error carrying the
/// command line and its stderr.
pub(crate) fn run(args: &[&str]) -> Result<String, LabError> {
    let out = run_with(args, CMD_TIMEOUT_SECS, &[], None)?;
    String::from_utf8(out).map_err(|e| LabError::Parse {
        cmd: shell_join(args),
        reason: e.to_string(),
    })
}

/// [`run`] with its own time bound, extra environment and optional stdin; stdout as bytes.
pub(crate) fn run_with(
    args: &[&str],
    secs: u64,
    env: &[(&str, &std::ffi::OsStr)],
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, LabError> {
    let cmd = shell_join(args);
    let mut c = Command::new("timeout");
    c.args(["-k", "2", &secs.to_string()])
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| LabError::Spawn {
        cmd: cmd.clone(),
        source,
    };
    let mut child = c.spawn().map_err(spawn_err)?;
    if let Some(input) = stdin {
        // Written from a thread: a child that writes a lot before reading would otherwise block
        // on a full stdout pipe while we block on its full stdin.
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write as _;
            // A child that exits early closes the pipe: its exit status tells what went wrong.
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.code() == Some(124) || out.status.code() == Some(137) {
        return Err(LabError::Timeout { cmd, secs });
    }
    if !out.status.success() {
        return Err(LabError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Run a shell snippet inside a namespace (for /proc/sys writes).
pub(crate) fn ns_sh(ns: &str, script: &str) -> Result<String, LabError> {
    run(&["ip", "netns", "exec", ns, "sh", "-c", script])
}

pub(crate) fn list_netns() -> Result<Vec<String>, LabError> {
    let args = ["ip", "-j", "netns", "list"];
    let s = run(&args)?;
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| LabError::Parse {
        cmd: args.join(" "),
        reason: e.to_string(),
    })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect())
}

/// Terminate what still runs inside a lab namespace: SIGTERM, up to 1 s grace, then SIGKILL.
pub(crate) fn kill_netns_processes(ns: &str) {
    let pids = |ns: &str| -> Vec<i32> {
        run(&["ip", "netns", "pids", ns])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter(|&p: &i32| p > 1)
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = pids(ns);
    if first.is_empty() {
        return;
    }
    for &p in &first {
        // SAFETY: plain kill(2) on pids found in the lab's own namespace.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if pids(ns).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pids(ns) {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

pub(crate) fn bounded_command(ns: &str, secs: f64, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "1", &format!("{secs:.1}"), "ip", "netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        // Own process group, so the whole tree can be signalled (timeout does the same itself).
        .process_group(0);
    c
}

/// Run a traffic command inside `ns`, at most `secs` seconds.
pub(crate) fn run_bounded(ns: &str, secs: f64, args: &[&str]) -> Result<Output, String> {
    bounded_command(ns, secs, args)
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", shell_join(args)))
}

/// Stop a child started in a process group of its own (and everything it spawned): SIGTERM, then
/// SIGKILL after 1.5 s, then reap it.
pub fn stop_process_group(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        // The child has not been reaped, so its pid (our process group id) cannot be reused.
        let pgid = child.id() as i32;
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }
}
