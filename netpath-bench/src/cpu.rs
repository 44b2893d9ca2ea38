//! Where the benchmarks run and what CPU time they take: pinning keeps per-CPU map slots and
//! caches the same from run to run, and CPU time (unlike the wall clock) leaves out the time other
//! work on a shared machine held the CPU.
use anyhow::{anyhow, bail, Context as _, Result};

/// Online CPUs (sysconf: unlike `available_parallelism` it ignores this thread's affinity).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// Restrict the calling thread (and what it spawns later) to `cpus`. false if the kernel refused.
pub fn set_affinity(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE.
        unsafe { libc::CPU_SET(*c, &mut set) };
    }
    // SAFETY: valid pointer and size; pid 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Pin this thread to the last CPU: every TEST_RUN then runs on the same CPU (and the same per-CPU
/// slots of the maps), away from CPU 0, which takes most device interrupts.
pub fn pin_to_last_cpu() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET reads the set.
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .rev()
        .find(|c| unsafe { libc::CPU_ISSET(*c, &set) })?;
    set_affinity(&[cpu]).then_some(cpu)
}

/// Undo the testrun suite's pinning (threads and child processes inherit the affinity).
pub fn unpin() {
    let all: Vec<usize> = (0..online_cpus()).collect();
    set_affinity(&all);
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    thread_cpu_ns() as f64 * 1e-9
}

/// Busy and total time of one /proc/stat line, in USER_HZ ticks.
#[derive(Clone, Copy, Default)]
pub struct Ticks {
    pub busy: u64,
    pub total: u64,
}

impl Ticks {
    pub fn busy_fraction_since(&self, before: &Ticks) -> f64 {
        (self.busy - before.busy) as f64 / (self.total - before.total).max(1) as f64
    }

    /// The idle share (idle and iowait) since `before`; None when no tick passed.
    pub fn idle_fraction_since(&self, before: &Ticks) -> Option<f64> {
        let total = self.total.checked_sub(before.total).filter(|t| *t > 0)?;
        let idle = (self.total - self.busy) - (before.total - before.busy);
        Some(idle as f64 / total as f64)
    }
}

/// The whole machine (`cpu`) and each CPU (`cpuN`).
pub struct CpuStat {
    pub all: Ticks,
    pub per_cpu: Vec<Ticks>,
}

impl CpuStat {
    pub fn cpu(&self, n: usize) -> Ticks {
        self.per_cpu.get(n).copied().unwrap_or_default()
    }
}

pub fn cpu_ticks() -> Result<CpuStat> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let mut all = None;
    let mut per_cpu = Vec::new();
    for line in s.lines().filter(|l| l.starts_with("cpu")) {
        let mut it = line.split_whitespace();
        let name = it.next().unwrap_or_default();
        let f: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        if f.len() < 8 {
            bail!("unexpected /proc/stat line {line:?}");
        }
        // user nice system idle iowait irq softirq steal (guest time is already in user)
        let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
        let t = Ticks {
            busy,
            total: busy + f[3] + f[4],
        };
        match name
            .strip_prefix("cpu")
            .filter(|n| !n.is_empty())
            .map(str::parse::<usize>)
        {
            None => all = Some(t),
            Some(Ok(n)) => {
                if per_cpu.len() <= n {
                    per_cpu.resize(n + 1, Ticks::default());
                }
                per_cpu[n] = t;
            }
            Some(Err(_)) => {}
        }
    }
    Ok(CpuStat {
        all: all.ok_or_else(|| anyhow!("/proc/stat has no cpu line"))?,
        per_cpu,
    })
}

/// Ticks of one CPU, None when /proc/stat does not list it.
pub fn cpu_ticks_of(cpu: usize) -> Option<Ticks> {
    cpu_ticks().ok()?.per_cpu.get(cpu).copied()
}

/// ns per USER_HZ tick.
pub fn tick_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e9 / if hz > 0 { hz as f64 } else { 100.0 }
}
