//! Suite `compare`: this build's datapath against another build's, interleaved in one process.
//!
//! Separate runs of the testrun suite cannot answer "is the new datapath slower?" on a small
//! shared VM: machine drift between runs is larger than the difference looked for (the same
//! binary's full/empty ratio varied 6.0x-8.6x between runs here). So both builds' objects are
//! loaded side by side, and every round runs, for every frame, the empty program, the parser alone
//! and the full program of both builds, old and new in alternating order. A new/old ratio is taken
//! within each round and the median over the rounds is reported. The other build is a checkout
//! built in release mode (`--against DIR`) or its objects (`--against-object FILE`).
use std::{
    fmt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::Array,
    programs::{TestRun as _, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use netpath::datapath::{loader::OBJECT, PROG_XDP};
use netpath_common::{maps, Config, DEFAULT_FLOW_TABLE_SIZE};
use netpath_tests::testrun::{BENCH_OBJECT, PROG_XDP_EMPTY, PROG_XDP_PARSE_ONLY, XDP_PASS};
use serde::Serialize;
use serde_json::json;

use super::testrun::{check_frames, frames, mem_calls};
use crate::{
    cli::CompareOpts,
    cpu::pin_to_last_cpu,
    machine::{source_state_in, DATAPATH_SOURCES},
    report::{f, Run},
    stats::{median, ratios, Stat},
};

/// "new no slower" when the full program's new/old ratio is at most this: the noise floor of an
/// interleaved A/B on this 2-CPU VM (the same build against itself), not a goal.
pub const NOISE_FLOOR: f64 = 1.02;

/// aya-log-ebpf's level global (`aya_log::LEVEL`); objects built before aya-log do not have it.
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

/// The programs timed, in the order of a round: the baseline, the parser alone, the datapath.
const PROGS: [&str; 3] = [PROG_XDP_EMPTY, PROG_XDP_PARSE_ONLY, PROG_XDP];

/// Bad arguments or a missing build: `netpath-bench` exits with status 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

// ---------------------------------------------------------------------------------------------
// The other build's objects

/// The other ("old") build: its production object and, when it has one, its benchmark object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Against {
    /// The checkout, with `--against`.
    pub dir: Option<PathBuf>,
    pub object: PathBuf,
    pub bench_object: Option<PathBuf>,
}

impl Against {
    /// The objects named on the command line, or found in the `--against` checkout.
    pub fn resolve(o: &CompareOpts) -> Result<Against, BadInput> {
        if let Some(dir) = &o.against {
            let (object, bench_object) = find_objects(dir)?;
            return Ok(Against {
                dir: Some(dir.clone()),
                object,
                bench_object,
            });
        }
        let object = o
            .against_object
            .clone()
            .ok_or_else(|| BadInput("one of --against DIR or --against-object FILE is needed".into()))?;
        for (flag, p) in [
            ("--against-object", Some(&object)),
            ("--against-bench-object", o.against_bench_object.as_ref()),
        ] {
            if let Some(p) = p.filter(|p| !p.is_file()) {
                return Err(BadInput(format!("{flag} {}: no such file", p.display())));
            }
        }
        Ok(Against {
            dir: None,
            object,
            bench_object: o.against_bench_object.clone(),
        })
    }
}

/// In a checkout built in release mode: the newest `target/release/build/netpath-*/out/netpath`,
/// and `netpath-bench` beside it if the build has one (newer builds keep the benchmark programs
/// out of the production object).
pub fn find_objects(dir: &Path) -> Result<(PathBuf, Option<PathBuf>), BadInput> {
    let build = dir.join("target/release/build");
    let hint = format!(
        "build that checkout first: `cd {} && cargo xtask build --release` (or `cargo xtask bench` there)",
        dir.display()
    );
    if !dir.is_dir() {
        return Err(BadInput(format!("--against {}: not a directory", dir.display())));
    }
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(&build) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with("netpath-") {
                continue;
            }
            let obj = e.path().join("out/netpath");
            let Ok(meta) = std::fs::metadata(&obj) else { continue };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(t, _)| mtime > *t) {
                newest = Some((mtime, obj));
            }
        }
    }
    let Some((_, object)) = newest else {
        return Err(BadInput(format!(
            "--against {}: no netpath eBPF object ({}/netpath-*/out/netpath); {hint}",
            dir.display(),
            build.display()
        )));
    };
    let bench = object.with_file_name("netpath-bench");
    Ok((object, bench.is_file().then_some(bench)))
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Where an object comes from: a file of the other build, or this build's embedded bytes.
enum Source<'a> {
    File(&'a Path),
    Embedded(&'static [u8], &'static str),
}

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded(_, n) => (*n).to_string(),
        }
    }
}

/// Load an object privately: logging off (the level global, when the object has one), the default
/// flow table size and the default runtime configuration, as the daemon would.
fn load_object(src: &Source) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.override_global(AYA_LOG_LEVEL, &0u8, false);
    loader.map_max_entries(maps::FLOWS, DEFAULT_FLOW_TABLE_SIZE);
    let mut ebpf = match src {
        Source::File(p) => loader.load_file(p),
        Source::Embedded(bytes, _) => loader.load(bytes),
    }
    .with_context(|| format!("loading {}", src.name()))?;
    if let Some(m) = ebpf.map_mut(maps::CONFIG) {
        let mut cfg: Array<_, Config> = Array::try_from(m).with_context(|| {
            format!(
                "{}: its {} map does not hold this build's Config ({} bytes): the builds are not comparable",
                src.name(),
                maps::CONFIG,
                size_of::<Config>()
            )
        })?;
        cfg.set(0, Config::default(), 0)
            .with_context(|| format!("{}: writing {}", src.name(), maps::CONFIG))?;
    }
    Ok(ebpf)
}

/// One build's objects (production first, then the benchmark object when there is one) and which
/// of them runs each program of [`PROGS`].
struct Build {
    label: &'static str,
    objects: Vec<(&'static str, String, Ebpf)>,
    at: [usize; 3],
}

#[derive(Serialize)]
struct ProgInfo {
    name: &'static str,
    /// "production" or "bench": the object it was loaded from.
    object: &'static str,
    xlated_insns: Option<u32>,
    jited_bytes: u32,
    verified_insns: Option<u32>,
    /// Calls to the byte-loop mem* subprograms (bpftool; None without it).
    mem_calls: Option<u32>,
}

impl Build {
    fn load(label: &'static str, production: Source, bench: Option<Source>) -> Result<Build> {
        let mut objects = vec![("production", production.name(), load_object(&production)?)];
        if let Some(b) = bench {
            objects.push(("bench", b.name(), load_object(&b)?));
        }
        let mut at = [0; 3];
        for (k, name) in PROGS.into_iter().enumerate() {
            // The datapath from the production object only; the baselines from the benchmark
            // object first (newer builds), else the production object (older builds).
            let order: Vec<usize> = if name == PROG_XDP {
                vec![0]
            } else {
                (0..objects.len()).rev().collect()
            };
            let Some(i) = order.into_iter().find(|i| objects[*i].2.program(name).is_some()) else {
                let looked: Vec<&str> = objects.iter().map(|o| o.1.as_str()).collect();
                return Err(BadInput(format!(
                    "{label} build: no program {name} in {}{}",
                    looked.join(" or "),
                    if name != PROG_XDP && objects.len() == 1 {
                        " (newer builds keep it in their netpath-bench object: pass --against-bench-object FILE)"
                    } else {
                        ""
                    }
                ))
                .into());
            };
            let p: &mut Xdp = objects[i]
                .2
                .program_mut(name)
                .context(name)?
                .try_into()
                .with_context(|| format!("{label} build: {name} is not an XDP program"))?;
            p.load()
                .with_context(|| format!("{label} build: the verifier refused {name} of {}", objects[i].1))?;
            at[k] = i;
        }
        Ok(Build { label, objects, at })
    }

    fn xdp(&self, k: usize) -> Result<&Xdp> {
        let obj = &self.objects[self.at[k]].2;
        Ok(obj.program(PROGS[k]).context(PROGS[k])?.try_into()?)
    }

    /// Kernel-reported ns per run of program `k` on `frame`.
    fn ns(&self, k: usize, frame: &[u8], repeat: u32) -> Result<f64> {
        let r = self
            .xdp(k)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .with_context(|| format!("{} build: test_run {}", self.label, PROGS[k]))?;
        if r.return_value != XDP_PASS {
            bail!(
                "{} build: {} returned {} instead of XDP_PASS",
                self.label,
                PROGS[k],
                r.return_value
            );
        }
        Ok(r.duration.as_nanos() as f64)
    }

    fn programs(&self) -> Vec<ProgInfo> {
        let mut out = Vec::new();
        for (k, name) in PROGS.into_iter().enumerate() {
            let (kind, _, obj) = &self.objects[self.at[k]];
            if let Some(i) = obj.program(name).and_then(|p| p.info().ok()) {
                out.push(ProgInfo {
                    name,
                    object: kind,
                    xlated_insns: i.size_translated().map(|b| b / 8),
                    jited_bytes: i.size_jitted(),
                    verified_insns: i.verified_instruction_count(),
                    mem_calls: mem_calls(i.id()),
                });
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// One build's figures for a frame (ns per run, over the rounds).
#[derive(Serialize)]
struct Side {
    empty_ns: Stat,
    parse_ns: Stat,
    full_ns: Stat,
    parse_over_empty: Stat,
    full_over_empty: Stat,
}

impl Side {
    fn of(e: Vec<f64>, p: Vec<f64>, f: Vec<f64>) -> Side {
        Side {
            parse_over_empty: Stat::of(ratios(&p, &e)),
            full_over_empty: Stat::of(ratios(&f, &e)),
            empty_ns: Stat::of(e),
            parse_ns: Stat::of(p),
            full_ns: Stat::of(f),
        }
    }
}

#[derive(Serialize)]
struct FrameCompare {
    name: &'static str,
    layers: &'static str,
    bytes: usize,
    old: Side,
    new: Side,
    /// new / old within each round, medians over the rounds.
    empty_new_old: Stat,
    parse_new_old: Stat,
    full_new_old: Stat,
    verdict: &'static str,
}

/// The per-frame verdict on the full program's median new/old ratio.
pub fn verdict(full_new_old: f64) -> &'static str {
    if !full_new_old.is_finite() {
        "N/A"
    } else if full_new_old <= NOISE_FLOOR {
        "new no slower"
    } else {
        "NEW SLOWER"
    }
}

/// Per frame, per round: [empty, parse, full] of old and new, as [old, new] pairs.
type Rounds = [[Vec<f64>; 2]; 3];

fn frame_result(name: &'static str, layers: &'static str, bytes: usize, r: Rounds) -> FrameCompare {
    let [[eo, en], [po, pn], [fo, fn_]] = r;
    let full_new_old = Stat::of(ratios(&fn_, &fo));
    FrameCompare {
        name,
        layers,
        bytes,
        empty_new_old: Stat::of(ratios(&en, &eo)),
        parse_new_old: Stat::of(ratios(&pn, &po)),
        verdict: verdict(full_new_old.median),
        full_new_old,
        old: Side::of(eo, po, fo),
        new: Side::of(en, pn, fn_),
    }
}

fn opt(n: Option<u32>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
}

pub fn run(o: &CompareOpts, against: &Against) -> Result<()> {
    let run = Run::start("compare", o.quick);
    let pinned = pin_to_last_cpu();
    let (old_commit, old_dirty) = match &against.dir {
        Some(d) => source_state_in(d, DATAPATH_SOURCES),
        None => (None, None),
    };
    println!(
        "  old: {}",
        match &against.dir {
            Some(d) => format!(
                "{} (commit {}{})",
                d.display(),
                old_commit.as_deref().unwrap_or("unknown"),
                if old_dirty == Some(true) {
                    " + uncommitted datapath changes"
                } else {
                    ""
                }
            ),
            None => "objects given on the command line".into(),
        }
    );
    println!("       {}", against.object.display());
    if let Some(b) = &against.bench_object {
        println!("       {}", b.display());
    }
    println!("  new: this build (netpath's embedded object and the tests crate's benchmark object)");
    println!(
        "  BPF_PROG_TEST_RUN (XDP), kernel-reported ns/packet; repeat {} per call; {} rounds, each running every frame's \
         empty, parse and full programs of both builds (order alternating); {}",
        o.repeat,
        o.rounds,
        match pinned {
            Some(c) => format!("pinned to CPU {c}"),
            None => "not pinned".into(),
        }
    );
    println!();

    let old = Build::load(
        "old",
        Source::File(&against.object),
        against.bench_object.as_deref().map(Source::File),
    )?;
    let new = Build::load(
        "new",
        Source::Embedded(OBJECT, "this build's production object"),
        Some(Source::Embedded(BENCH_OBJECT, "this build's benchmark object")),
    )?;
    let (po, pn) = (old.programs(), new.programs());
    println!("Programs (after the verifier; old -> new):");
    println!(
        "  {:<16} {:>16} {:>18} {:>22} {:>10}",
        "program", "xlated insns", "jited bytes", "verified insns", "mem* calls"
    );
    for (a, b) in po.iter().zip(&pn) {
        println!(
            "  {:<16} {:>16} {:>18} {:>22} {:>10}",
            a.name,
            format!("{} -> {}", opt(a.xlated_insns), opt(b.xlated_insns)),
            format!("{} -> {}", a.jited_bytes, b.jited_bytes),
            format!("{} -> {}", opt(a.verified_insns), opt(b.verified_insns)),
            format!("{} -> {}", opt(a.mem_calls), opt(b.mem_calls)),
        );
    }
    for (label, p) in [("old", &po), ("new", &pn)] {
        let from: Vec<String> = p.iter().map(|i| format!("{} ({})", i.name, i.object)).collect();
        println!("  {label}: {}", from.join(", "));
    }
    println!();

    let fr = frames();
    check_frames(&fr)?;
    // Warm up caches and predictors, and create each frame's flow entry in both builds (so `full`
    // is the hot-flow path).
    for b in &fr {
        for k in 0..PROGS.len() {
            for build in [&old, &new] {
                build.ns(k, &b.frame, (o.repeat / 10).max(1))?;
            }
        }
    }
    let mut rounds: Vec<Rounds> = fr.iter().map(|_| Default::default()).collect();
    for round in 0..o.rounds {
        eprint!("\r  round {}/{}", round + 1, o.rounds);
        for (i, b) in fr.iter().enumerate() {
            // Alternate which build goes first, so neither always runs on the warmer cache.
            let old_first = (round + i) % 2 == 0;
            for (k, pair) in rounds[i].iter_mut().enumerate() {
                let (x, y) = if old_first {
                    (old.ns(k, &b.frame, o.repeat)?, new.ns(k, &b.frame, o.repeat)?)
                } else {
                    let y = new.ns(k, &b.frame, o.repeat)?;
                    (old.ns(k, &b.frame, o.repeat)?, y)
                };
                pair[0].push(x);
                pair[1].push(y);
            }
        }
    }
    eprintln!();
    let results: Vec<FrameCompare> = fr
        .iter()
        .zip(rounds)
        .map(|(b, r)| frame_result(b.name, b.what, b.frame.len(), r))
        .collect();

    println!(
        "Per frame (ns/packet, medians of {} rounds; new/old = median of the per-round ratios):",
        o.rounds
    );
    println!(
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10} {:>9} {:>7}",
        "frame", "empty.o", "empty.n", "parse.o", "parse.n", "full.o", "full.n", "parse n/o", "full n/o", "spread"
    );
    for r in &results {
        println!(
            "  {:<12} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>10.3} {:>9.3} {:>6.1}%",
            r.name,
            r.old.empty_ns.median,
            r.new.empty_ns.median,
            r.old.parse_ns.median,
            r.new.parse_ns.median,
            r.old.full_ns.median,
            r.new.full_ns.median,
            r.parse_new_old.median,
            r.full_new_old.median,
            r.full_new_old.spread_pct()
        );
    }
    // Every frame's per-round ratios together: one figure for "the datapath", less noisy than any
    // one frame's.
    let pooled =
        |g: fn(&FrameCompare) -> &Stat| Stat::of(results.iter().flat_map(|r| g(r).rounds.iter().copied()).collect());
    let (all_parse, all_full) = (pooled(|r| &r.parse_new_old), pooled(|r| &r.full_new_old));
    println!(
        "  {:<12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10.3} {:>9.3} {:>6.1}%",
        "all frames",
        "",
        "",
        "",
        "",
        "",
        "",
        all_parse.median,
        all_full.median,
        all_full.spread_pct()
    );
    println!("  (.o = old build, .n = new build; spread = (max - min) / median of the per-round full n/o ratios;");
    println!("   all frames = median of every frame's per-round ratios together)");
    let full_ns = median(results.iter().map(|r| r.new.full_ns.median));
    let parse_ns = median(results.iter().map(|r| r.new.parse_ns.median));
    println!(
        "  the kernel reports whole ns: at ~{} ns (full) and ~{} ns (parse) one ns is ~{}% and ~{}% of a ratio",
        f(full_ns, 0),
        f(parse_ns, 0),
        f(100.0 / full_ns, 0),
        f(100.0 / parse_ns, 0)
    );
    println!();
    println!(
        "Verdict per frame (full new/old <= {NOISE_FLOOR}: \"new no slower\"; {NOISE_FLOOR} is the noise floor of this \
         interleaved A/B measured on this 2-CPU VM, not a goal):"
    );
    for r in &results {
        println!(
            "  {:<12} {:<14} full new/old {:.3}, parse new/old {:.3}",
            r.name, r.verdict, r.full_new_old.median, r.parse_new_old.median
        );
    }
    println!(
        "  {:<12} {:<14} full new/old {:.3}, parse new/old {:.3}",
        "all frames",
        verdict(all_full.median),
        all_full.median,
        all_parse.median
    );
    let slower: Vec<&str> = results
        .iter()
        .filter(|r| r.verdict != "new no slower")
        .map(|r| r.name)
        .collect();
    println!(
        "  {}",
        if slower.is_empty() {
            format!("new no slower on all {} frames", results.len())
        } else {
            format!("over the noise floor: {}", slower.join(", "))
        }
    );

    let mut doc = run.doc();
    doc["method"] =
        "BPF_PROG_TEST_RUN on XDP programs of two builds loaded in one process; every round runs, per frame, \
                     the empty, parser-only and full programs of both builds (which build goes first alternates); \
                     ns/packet is the kernel-reported average duration (integer ns); new/old ratios are taken within \
                     a round, medians over rounds"
            .into();
    doc["pinned_cpu"] = json!(pinned);
    doc["repeat"] = o.repeat.into();
    doc["rounds"] = o.rounds.into();
    doc["noise_floor"] = NOISE_FLOOR.into();
    doc["against"] = json!({
        "dir": against.dir,
        "commit": old_commit,
        "datapath_dirty": old_dirty,
        "object": against.object,
        "bench_object": against.bench_object,
    });
    doc["programs"] = json!({ "old": po, "new": pn });
    doc["frames"] = serde_json::to_value(&results)?;
    doc["all_frames"] = json!({
        "parse_new_old": all_parse,
        "full_new_old": all_full,
        "verdict": verdict(all_full.median),
    });
    run.finish(doc, None)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!("netpath-bench-compare-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn file(&self, rel: &str, age_secs: u64) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let file = fs::File::create(&p).unwrap();
            file.set_modified(SystemTime::now() - std::time::Duration::from_secs(age_secs))
                .unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_the_newest_object_and_its_bench_object() {
        let s = Scratch::new("found");
        let b = "target/release/build";
        s.file(&format!("{b}/netpath-aaaa/out/netpath"), 3600);
        s.file(&format!("{b}/netpath-aaaa/out/netpath-bench"), 3600);
        let newest = s.file(&format!("{b}/netpath-bbbb/out/netpath"), 10);
        fs::create_dir_all(s.0.join(format!("{b}/netpath-tests-cccc/out"))).unwrap();
        s.file(&format!("{b}/other-dddd/out/netpath"), 0);
        // A directory named like the object is not one.
        fs::create_dir_all(s.0.join(format!("{b}/netpath-eeee/out/netpath"))).unwrap();
        assert_eq!(find_objects(&s.0).unwrap(), (newest.clone(), None));
        let bench = s.file(&format!("{b}/netpath-bbbb/out/netpath-bench"), 10);
        assert_eq!(find_objects(&s.0).unwrap(), (newest, Some(bench)));
    }

    #[test]
    fn a_missing_build_says_how_to_make_it() {
        let s = Scratch::new("missing");
        let e = find_objects(&s.0).unwrap_err().to_string();
        assert!(e.contains("no netpath eBPF object"), "{e}");
        assert!(e.contains("cargo xtask build --release"), "{e}");
        fs::create_dir_all(s.0.join("target/release/build/netpath-aaaa/out")).unwrap();
        assert!(find_objects(&s.0).is_err());
        let e = find_objects(&s.0.join("nope")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn resolve_objects_given_directly() {
        let s = Scratch::new("direct");
        let obj = s.file("old.o", 0);
        let opts = |object: &Path, bench: Option<&Path>| CompareOpts {
            quick: true,
            against: None,
            against_object: Some(object.to_path_buf()),
            against_bench_object: bench.map(Path::to_path_buf),
            repeat: 1,
            rounds: 1,
        };
        assert_eq!(
            Against::resolve(&opts(&obj, None)).unwrap(),
            Against {
                dir: None,
                object: obj.clone(),
                bench_object: None
            }
        );
        let e = Against::resolve(&opts(&obj, Some(&s.0.join("nope.o"))))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--against-bench-object") && e.ends_with("no such file"),
            "{e}"
        );
        let e = Against::resolve(&opts(&s.0.join("nope.o"), None))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--against-object"), "{e}");
    }

    #[test]
    fn ratios_within_rounds_and_verdicts() {
        // Drift moves both builds together between rounds; the per-round ratios stay put while
        // the ratio of the medians would not.
        let r: Rounds = [
            [vec![5.0, 6.0, 5.0], vec![5.0, 6.0, 6.0]],
            [vec![17.0, 20.0, 18.0], vec![16.0, 19.0, 17.0]],
            [vec![50.0, 60.0, 100.0], vec![50.0, 61.0, 101.0]],
        ];
        let c = frame_result("udp4", "eth/ipv4/udp", 43, r);
        assert_eq!(c.full_new_old.rounds, vec![1.0, 61.0 / 60.0, 1.01]);
        assert_eq!(c.full_new_old.median, 1.01);
        assert_eq!(c.parse_new_old.median, 17.0 / 18.0);
        assert_eq!(c.empty_new_old.median, 1.0);
        assert_eq!((c.old.full_ns.median, c.new.full_ns.median), (60.0, 61.0));
        assert_eq!(c.new.full_over_empty.rounds, vec![10.0, 61.0 / 6.0, 101.0 / 6.0]);
        assert_eq!(c.verdict, "new no slower");
        assert_eq!(verdict(NOISE_FLOOR), "new no slower");
        assert_eq!(verdict(1.03), "NEW SLOWER");
        assert_eq!(verdict(f64::NAN), "N/A");
    }
}
