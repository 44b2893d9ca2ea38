//! Errors of the netpath library. Each says what failed and on which interface or path, and maps
//! to the process exit code the CLI uses.
//!
//! Subsystems with errors of their own join them here with `#[from]`, keeping them as the source:
//! rtnetlink ([`NetlinkError`]) and the CRI runtime ([`CriError`]) directly; the services (control
//! API, metrics exporter), which are built on this type, through [`Error::Service`] (their modules
//! implement the conversion, so no module cycle runs through this one).
use std::path::PathBuf;

use crate::node::{cri::CriError, netlink::NetlinkError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interface '{name}' not found{ns}; interfaces here: {available}")]
    UnknownInterface {
        name: String,
        ns: String,
        available: String,
    },

    #[error("network namespace '{name}' not found (looked for {path}); named namespaces: {available}")]
    UnknownNetns {
        name: String,
        path: PathBuf,
        available: String,
    },

    #[error("cannot enter network namespace '{name}': {source}")]
    EnterNetns { name: String, source: std::io::Error },

    #[error("missing privileges: {missing} (run as root, or grant them with `setcap` / a container securityContext)")]
    Privileges { missing: String },

    #[error(
        "{iface} already has XDP program {prog_id} ({prog_name}) that netpath did not load; refusing to replace it (use --force, or --mode tc for this interface)"
    )]
    ForeignXdp {
        iface: String,
        prog_id: u32,
        prog_name: String,
    },

    #[error("bad argument: {0}")]
    BadArgument(String),

    #[error("bpffs: {what} at {path}: {source}")]
    Bpffs {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "pinned map {name} at {path} does not match this build ({detail}); `netpath down --pin-dir {dir}` removes the old pins (their counters are lost)"
    )]
    IncompatiblePin {
        name: &'static str,
        path: PathBuf,
        dir: PathBuf,
        detail: String,
    },

    /// One daemon per pin directory: two would count every packet twice.
    #[error(
        "another `netpath run`{holder} uses the pin directory {}: two daemons on the same maps would count every packet twice; stop it first, or give this one another --pin-dir",
        dir.display()
    )]
    PinDirBusy { dir: PathBuf, holder: String },

    /// `netpath down` under a running daemon would pull its maps from under it.
    #[error(
        "a `netpath run`{holder} is using the pins under {}: stop it first (its counters stay pinned), or `netpath down --force` to remove them from under it",
        dir.display()
    )]
    PinsInUse { dir: PathBuf, holder: String },

    #[error("no pinned netpath maps under {dir}: is `netpath run` running, or was it given another --pin-dir?")]
    NotRunning { dir: PathBuf },

    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),

    #[error("{what}: {source}")]
    Program {
        what: String,
        source: aya::programs::ProgramError,
    },

    #[error("{what}: {source}")]
    Map { what: String, source: aya::maps::MapError },

    #[error("{what}: {source}")]
    Tc {
        what: String,
        source: aya::programs::tc::TcError,
    },

    #[error("{what}: {source}")]
    Link {
        what: String,
        source: aya::programs::links::LinkError,
    },

    #[error("pinning link {path}: {source}")]
    Pin { path: PathBuf, source: aya::pin::PinError },

    #[error(transparent)]
    Netlink(#[from] NetlinkError),

    #[error(transparent)]
    Cri(#[from] CriError),

    #[error("reading the datapath's log records (--ebpf-log): {0}")]
    EbpfLog(#[from] aya_log::Error),

    /// The control API or the metrics exporter failed.
    #[error(transparent)]
    Service(#[from] ServiceError),

    /// One capture at a time: the filter and the perf buffers are shared.
    #[error(
        "another `netpath capture`{holder} is already capturing from the datapath pinned at {}: only one capture at a time is possible (the filter and the perf buffers are shared); stop it first",
        pin_dir.display()
    )]
    CaptureBusy { holder: String, pin_dir: PathBuf },

    #[error("opening the perf buffer of CPU {cpu}: {source}")]
    PerfBuffer {
        cpu: u32,
        source: aya::maps::perf::PerfBufferError,
    },

    /// Something netpath needs is missing from the eBPF object (a map, a program).
    #[error("{0} missing from the eBPF object")]
    MissingFromObject(String),

    /// The running kernel lacks what a feature needs (its BTF, a type, a field): says what.
    #[error("{0}")]
    Unsupported(String),

    /// A capture, an event stream or a notification feed stopped or failed.
    #[error("{0}")]
    Stopped(String),

    #[error("{what}: {source}")]
    IoAt { what: String, source: std::io::Error },

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Exit codes: 2 for bad input (a name that does not exist, a bad flag), 77 (EX_NOPERM) for
    /// missing privileges, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::UnknownInterface { .. }
            | Error::UnknownNetns { .. }
            | Error::BadArgument(_)
            | Error::PinDirBusy { .. }
            | Error::PinsInUse { .. } => 2,
            Error::Privileges { .. } => 77,
            Error::Service(e) => e.exit_code,
            _ => 1,
        }
    }
}

/// A service's own error, standing for it transparently (same message, same source chain), with the
/// exit code that service gives it (a 4xx answer of the daemon is bad input: 2).
#[derive(Debug)]
pub struct ServiceError {
    pub exit_code: i32,
    pub error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Error {
    /// An I/O failure, saying what was being done (`opening /path`, `writing the capture`).
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::IoAt { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
