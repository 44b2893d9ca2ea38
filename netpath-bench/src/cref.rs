//! The C reference (`netpath-bench/c/ref.c`): a hand-written XDP program doing the work of
//! netpath's full program, and its parser alone, compiled here at run time with clang and loaded
//! with aya, so that the testrun suite can time netpath against it in the same rounds. It is built
//! into `$NETPATH_BENCH_OUT/cref/`, never into netpath.
use std::{
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, PerCpuArray, PerCpuHashMap},
    programs::{Program, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use netpath_common::{class, Config, FlowKey, FlowValue, IfaceCounters, IfaceKey, DIR_INGRESS};
use netpath_tests::testrun::TEST_IFINDEX;

use crate::report::out_dir;

/// The source, embedded so that the binary builds it wherever it runs.
const SOURCE: &str = include_str!("../c/ref.c");
/// The compiler: Debian's clang-16 (`cargo xtask bench` installs it with libbpf-dev's headers).
pub const CLANG: &str = "clang-16";

pub const PROG_FULL: &str = "ref_xdp_full";
pub const PROG_PARSE: &str = "ref_xdp_parse";
const MAP_IFACE: &str = "ref_iface_stats";
const MAP_FLOWS: &str = "ref_flows";
const MAP_CONFIG: &str = "ref_config";
const MAP_SCRATCH: &str = "ref_scratch";
/// `sizeof(struct parsed)` in ref.c (asserted there); its first byte is the class.
const PARSED_SIZE: usize = 232;

/// The C compiler is not installed: a usage error (exit status 2), like a missing build.
#[derive(Debug)]
pub struct MissingCompiler;

impl fmt::Display for MissingCompiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the C reference needs the compiler `{CLANG}` (and libbpf-dev's headers), which is not on PATH: \
             `apt-get install {CLANG} libbpf-dev`, or run `sudo -E cargo xtask bench`, which installs them"
        )
    }
}

impl std::error::Error for MissingCompiler {}

/// Compile ref.c into `dir` (`clang-16 -O2 -g -target bpf -c`); returns the object's path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let src = dir.join("ref.c");
    let obj = dir.join("ref.o");
    std::fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
    // <linux/*.h> include <asm/*.h>, which Debian keeps under the multiarch directory; clang
    // targeting BPF does not search it by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let out = match Command::new(CLANG)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c"])
        .arg("-I")
        .arg(&multiarch)
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(MissingCompiler.into()),
        Err(e) => return Err(e).with_context(|| format!("running {CLANG}")),
    };
    if !out.status.success() {
        bail!(
            "{CLANG} failed on {} (are libbpf-dev's headers installed?):\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(obj)
}

/// The C reference, loaded and verified.
pub struct CRef {
    ebpf: Ebpf,
    pub object: PathBuf,
}

impl CRef {
    /// Build the object into `$NETPATH_BENCH_OUT/cref/`, load both programs through the verifier,
    /// and give it netpath's default configuration (the VXLAN ports).
    pub fn load() -> Result<CRef> {
        let object = build(&out_dir().join("cref"))?;
        let mut ebpf = Ebpf::load_file(&object).with_context(|| format!("loading {}", object.display()))?;
        for name in [PROG_FULL, PROG_PARSE] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("{name} is not in {}", object.display()))?
                .try_into()?;
            p.load()
                .with_context(|| format!("the verifier refused the C reference's {name}"))?;
        }
        let mut cfg: Array<_, Config> = Array::try_from(ebpf.map_mut(MAP_CONFIG).context(MAP_CONFIG)?)?;
        cfg.set(0, Config::default(), 0)?;
        Ok(CRef { ebpf, object })
    }

    pub fn program(&self, name: &str) -> Option<&Program> {
        self.ebpf.program(name)
    }

    /// One BPF_PROG_TEST_RUN call: (return value, kernel-reported ns per run).
    pub fn xdp(&self, name: &str, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let p: &Xdp = self.program(name).context(name.to_string())?.try_into()?;
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .with_context(|| format!("test_run {name} on a {}-byte frame", frame.len()))?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    /// Packets per class on the test interface, ingress, summed over CPUs.
    pub fn class_packets(&self) -> Result<[u64; class::COUNT]> {
        let m: PerCpuHashMap<_, IfaceKey, IfaceCounters> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_IFACE).context(MAP_IFACE)?)?;
        let mut out = [0; class::COUNT];
        if let Ok(v) = m.get(&IfaceKey::new(TEST_IFINDEX, DIR_INGRESS), 0) {
            for c in v.iter() {
                for (o, k) in out.iter_mut().zip(&c.class) {
                    *o += k.packets;
                }
            }
        }
        Ok(out)
    }

    /// Packets of the flow `key`, summed over CPUs (0 when it has no entry).
    pub fn flow_packets(&self, key: &FlowKey) -> Result<u64> {
        let m: PerCpuHashMap<_, FlowKey, FlowValue> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_FLOWS).context(MAP_FLOWS)?)?;
        Ok(m.get(key, 0).map(|v| v.iter().map(|x| x.packets).sum()).unwrap_or(0))
    }

    /// The class the parser program last wrote on this CPU.
    pub fn parsed_class(&self) -> Result<u8> {
        let m: PerCpuArray<_, [u8; PARSED_SIZE]> =
            PerCpuArray::try_from(self.ebpf.map(MAP_SCRATCH).context(MAP_SCRATCH)?)?;
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).context("sched_getcpu")?;
        let v = m.get(&0, 0)?;
        Ok(v.get(cpu).context("no scratch slot for this CPU")?[0])
    }

    /// Check that the C programs do netpath's work on `frame`: both return XDP_PASS, the full
    /// program counts it once, in netpath's class `want` and nowhere else, and accounts it to the
    /// flow netpath keys it on (`key`, ifindex and direction included); the parser finds the same
    /// class.
    pub fn check(&self, name: &str, frame: &[u8], want: u8, key: &FlowKey) -> Result<()> {
        const XDP_PASS: u32 = 2;
        let before = self.class_packets()?;
        let flow0 = self.flow_packets(key)?;
        for prog in [PROG_FULL, PROG_PARSE] {
            let (ret, _) = self.xdp(prog, frame, 1)?;
            if ret != XDP_PASS {
                bail!("C reference {prog} returned {ret} on frame {name} instead of XDP_PASS");
            }
        }
        let after = self.class_packets()?;
        let counted: Vec<String> = (0..class::COUNT)
            .filter(|&c| after[c] != before[c])
            .map(|c| format!("{} +{}", class::name(c as u8), after[c] - before[c]))
            .collect();
        if counted != [format!("{} +1", class::name(want))] {
            bail!(
                "C reference {PROG_FULL} counted frame {name} as [{}], netpath as {}: the comparison would not be \
                 of equal work",
                counted.join(", "),
                class::name(want)
            );
        }
        let flow1 = self.flow_packets(key)?;
        if flow1 != flow0 + 1 {
            bail!("C reference {PROG_FULL} did not account frame {name} to netpath's flow key {key:?}");
        }
        let parsed = self.parsed_class()?;
        if parsed != want {
            bail!(
                "C reference {PROG_PARSE} classed frame {name} as {}, netpath as {}",
                class::name(parsed),
                class::name(want)
            );
        }
        Ok(())
    }
}
