//! Probe: load each datapath program and print its verifier cost (dev aid).
use std::time::Instant;

use aya::programs::{Program, SchedClassifier, Xdp};
use netpath::datapath::loader::{self, LoadOptions};

fn main() {
    let lvl: u8 = std::env::var("EBPF_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut ebpf = loader::load(&LoadOptions {
        ebpf_log: lvl,
        ..LoadOptions::default()
    })
    .unwrap();
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    for n in names {
        let t = Instant::now();
        let r = match ebpf.program_mut(&n).unwrap() {
            Program::Xdp(p) => Xdp::load(p),
            Program::SchedClassifier(p) => SchedClassifier::load(p),
            _ => continue,
        };
        let el = t.elapsed();
        match r {
            Ok(()) => {
                let info = ebpf.program(&n).unwrap().info().unwrap();
                println!(
                    "{n:<20} {:>9?} verified  {:>6.0} ms",
                    info.verified_instruction_count(),
                    el.as_secs_f64() * 1e3
                );
            }
            Err(e) => println!("{n}: {e:?}"),
        }
    }
}
