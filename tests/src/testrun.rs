//! The real eBPF object, loaded privately (no pins, no attach) and driven by BPF_PROG_TEST_RUN.
use std::time::Duration;

use aya::{
    programs::{Program, SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use netpath::datapath::{
    attach,
    loader::{self, LoadOptions},
    maps::Maps,
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};
use netpath_common::{IfaceCounters, IfaceKey};

/// The benchmark programs' object (netpath-ebpf's `netpath-bench` bin), built beside netpath's
/// own; netpath never embeds it (see build.rs).
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("NETPATH_BENCH_OBJECT"));

/// In [`BENCH_OBJECT`]: an empty XDP program (the baseline), and the parser alone.
pub const PROG_XDP_EMPTY: &str = "netpath_xdp_nop";
pub const PROG_XDP_PARSE_ONLY: &str = "netpath_xdp_prs";

pub const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1): "continue", what netpath's TC programs return.
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
/// Programs run by BPF_PROG_TEST_RUN see the loopback device of the caller's namespace.
pub const TEST_IFINDEX: u32 = 1;

pub struct Datapath {
    pub ebpf: Ebpf,
    pub maps: Maps,
    /// The benchmark programs, loaded from [`BENCH_OBJECT`].
    pub bench: Ebpf,
}

pub struct Run {
    pub ret: u32,
    pub duration: Duration,
}

impl Datapath {
    pub fn load(flow_table_size: u32) -> Datapath {
        let mut ebpf = loader::load(&LoadOptions {
            flow_table_size,
            ..LoadOptions::default()
        })
        .expect("load eBPF object");
        attach::load_programs(&mut ebpf, attach::Programs::All).expect("verifier accepts the datapath programs");
        let maps = Maps::take(&mut ebpf).expect("maps");
        Datapath::new(ebpf, maps)
    }

    /// A datapath loaded by the caller (other options), with the benchmark programs beside it.
    pub fn new(ebpf: Ebpf, maps: Maps) -> Datapath {
        let mut bench = Ebpf::load(BENCH_OBJECT).expect("load the benchmark eBPF object");
        for name in [PROG_XDP_EMPTY, PROG_XDP_PARSE_ONLY] {
            let p: &mut Xdp = bench.program_mut(name).expect(name).try_into().expect("xdp program");
            p.load().expect("load benchmark program");
        }
        Datapath { ebpf, maps, bench }
    }

    /// A program of either object, by name.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.ebpf.program(name).or_else(|| self.bench.program(name))
    }

    pub fn xdp(&self, name: &str, frame: &[u8], repeat: u32) -> Run {
        let p: &Xdp = self.program(name).expect(name).try_into().expect("xdp program");
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test_run {name} on a {}-byte frame: {e}", frame.len()));
        Run {
            ret: r.return_value,
            duration: r.duration,
        }
    }

    pub fn tc(&self, name: &str, frame: &[u8], repeat: u32) -> Run {
        let p: &SchedClassifier = self.ebpf.program(name).expect(name).try_into().expect("tc program");
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("test_run {name} on a {}-byte frame: {e}", frame.len()));
        Run {
            ret: r.return_value,
            duration: r.duration,
        }
    }

    /// Run the netpath program of a hook: "xdp", "tc-ingress" or "tc-egress".
    pub fn hook(&self, hook: &str, frame: &[u8]) -> Run {
        match hook {
            "xdp" => self.xdp(PROG_XDP, frame, 1),
            "tc-ingress" => self.tc(PROG_TC_INGRESS, frame, 1),
            "tc-egress" => self.tc(PROG_TC_EGRESS, frame, 1),
            _ => panic!("unknown hook {hook}"),
        }
    }

    pub fn counters(&self, direction: u8) -> IfaceCounters {
        self.maps
            .iface_counters()
            .expect("read counters")
            .into_iter()
            .find(|(k, _)| *k == IfaceKey::new(TEST_IFINDEX, direction))
            .map(|(_, c)| c)
            .unwrap_or_default()
    }
}
