//! The real eBPF object, loaded privately (no pins, no attach) and driven by BPF_PROG_TEST_RUN.
use std::time::Duration;

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use netpath::datapath::{
    attach,
    loader::{self, LoadOptions},
    maps::Maps,
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, PROG_XDP_EMPTY, PROG_XDP_PARSE_ONLY,
};
use netpath_common::{IfaceCounters, IfaceKey};

pub const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (-1): "continue", what netpath's TC programs return.
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
/// Programs run by BPF_PROG_TEST_RUN see the loopback device of the caller's namespace.
pub const TEST_IFINDEX: u32 = 1;

pub struct Datapath {
    pub ebpf: Ebpf,
    pub maps: Maps,
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
        attach::load_programs(&mut ebpf).expect("verifier accepts the datapath programs");
        for name in [PROG_XDP_EMPTY, PROG_XDP_PARSE_ONLY] {
            let p: &mut Xdp = ebpf.program_mut(name).expect(name).try_into().expect("xdp program");
            p.load().expect("load benchmark program");
        }
        let maps = Maps::take(&mut ebpf).expect("maps");
        Datapath { ebpf, maps }
    }

    pub fn xdp(&self, name: &str, frame: &[u8], repeat: u32) -> Run {
        let p: &Xdp = self.ebpf.program(name).expect(name).try_into().expect("xdp program");
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
