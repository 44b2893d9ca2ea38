//! The benchmark eBPF object (`netpath_xdp_nop`, `netpath_xdp_prs`) is built with netpath's own
//! object by netpath/build.rs, which publishes its path as `links` metadata; src/testrun.rs embeds
//! it from `NETPATH_BENCH_OBJECT`.
fn main() {
    const DEP: &str = "DEP_NETPATH_DATAPATH_BENCH_OBJECT";
    println!("cargo::rerun-if-env-changed={DEP}");
    let path = std::env::var(DEP)
        .unwrap_or_else(|_| panic!("{DEP} not set: netpath/build.rs publishes it (links = \"netpath_datapath\")"));
    println!("cargo::rustc-env=NETPATH_BENCH_OBJECT={path}");
}
