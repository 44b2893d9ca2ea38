//! Loading the embedded eBPF object: map sizes, pins under bpffs (so counters survive a restart),
//! and the runtime configuration the datapath reads.
use std::path::PathBuf;

use aya::{maps::Array, Ebpf, EbpfLoader};
use netpath_common::{maps, Config};

use super::{
    pins::{check_pins, ensure_bpffs, pinned_maps},
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
};
use crate::{
    error::{Error, Result},
    model::ifaces::ProgramRef,
};

/// The eBPF object built by netpath/build.rs for this exact version of the shared types.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpath"));

/// aya-log-ebpf's level global in the object's `.rodata` (0xff, everything, as built).
const AYA_LOG_LEVEL: &str = aya_log::LEVEL;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pin (or re-adopt) the maps here; None keeps them private to this process.
    pub pin_dir: Option<PathBuf>,
    pub flow_table_size: u32,
    pub config: Config,
    /// The most verbose aya-log level the datapath reports (its rare paths: refused inserts,
    /// failed pulls, rule actions), as `log::Level as u8`: 1 error, 2 warn, 3 info, 4 debug,
    /// 5 trace; 0 (the default) turns it off. Fixed at load time: the verifier prunes the
    /// disabled statements, so logging off costs the programs nothing. The records go to the
    /// object's `AYA_LOGS` ring buffer, for `aya_log::EbpfLogger` to drain.
    pub ebpf_log: u8,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pin_dir: None,
            flow_table_size: netpath_common::DEFAULT_FLOW_TABLE_SIZE,
            config: Config::default(),
            ebpf_log: 0,
        }
    }
}

/// Load the object; with a pin directory, re-adopt the maps pinned there or create and pin them.
pub fn load(opts: &LoadOptions) -> Result<Ebpf> {
    if opts.flow_table_size == 0 {
        return Err(Error::BadArgument("--flow-table-size must be at least 1".into()));
    }
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(maps::FLOWS, opts.flow_table_size);
    // Without an override the object's own value (everything) would turn all logging on.
    loader.override_global(AYA_LOG_LEVEL, &opts.ebpf_log, true);
    let pins: Vec<(&'static str, PathBuf)>;
    if let Some(dir) = &opts.pin_dir {
        ensure_bpffs(dir)?;
        check_pins(dir, opts.flow_table_size)?;
        pins = pinned_maps().map(|n| (n, dir.join(n))).collect();
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
    }
    let mut ebpf = loader.load(OBJECT)?;
    let mut config: Array<_, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG)
            .ok_or_else(|| Error::BadArgument(format!("map {} missing from object", maps::CONFIG)))?,
    )
    .map_err(|source| Error::Map {
        what: "opening config map".into(),
        source,
    })?;
    config.set(0, opts.config, 0).map_err(|source| Error::Map {
        what: "writing config".into(),
        source,
    })?;
    Ok(ebpf)
}

/// Ids of netpath's loaded programs, for `status` and `ifaces`.
pub fn program_ids(ebpf: &Ebpf) -> Vec<ProgramRef> {
    [
        (PROG_XDP, "xdp"),
        (PROG_TC_INGRESS, "tc-ingress"),
        (PROG_TC_EGRESS, "tc-egress"),
    ]
    .iter()
    .filter_map(|(name, hook)| {
        let info = ebpf.program(name)?.info().ok()?;
        Some(ProgramRef {
            program: name.to_string(),
            hook: hook.to_string(),
            id: info.id(),
        })
    })
    .collect()
}
