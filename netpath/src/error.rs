//! Errors of the netpath library. Each says what failed and on which interface or path, and maps
//! to the process exit code the CLI uses.
use std::path::PathBuf;

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

    #[error("pinning link {path}: {source}")]
    Pin { path: PathBuf, source: aya::pin::PinError },

    #[error("{0}")]
    Other(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Exit codes: 2 for bad input (a name that does not exist, a bad flag), 77 (EX_NOPERM) for
    /// missing privileges, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::UnknownInterface { .. } | Error::UnknownNetns { .. } | Error::BadArgument(_) => 2,
            Error::Privileges { .. } => 77,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
