//! Probe: load each program of an eBPF object file and print its verifier cost (dev aid).
use aya::programs::{Program, SchedClassifier, Xdp};

fn main() {
    let path = std::env::args().nth(1).expect("object path");
    let mut ebpf = aya::EbpfLoader::new()
        .override_global("AYA_LOG_LEVEL", &0u8, true)
        .load_file(&path)
        .unwrap();
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    for n in names {
        let r = match ebpf.program_mut(&n).unwrap() {
            Program::Xdp(p) => Xdp::load(p),
            Program::SchedClassifier(p) => SchedClassifier::load(p),
            _ => continue,
        };
        match r {
            Ok(()) => println!(
                "{n:<20} {:?}",
                ebpf.program(&n).unwrap().info().unwrap().verified_instruction_count()
            ),
            Err(e) => println!(
                "{n}: {}",
                format!("{e:?}")
                    .chars()
                    .rev()
                    .take(600)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            ),
        }
    }
}
