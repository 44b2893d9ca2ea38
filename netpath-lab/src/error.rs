//! What can go wrong building, inspecting or driving a lab.

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid lab prefix {prefix:?}: {reason}")]
    InvalidPrefix { prefix: String, reason: String },

    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },

    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },

    #[error("`{cmd}` did not finish within {secs}s")]
    Timeout { cmd: String, secs: u64 },

    #[error("cannot parse the output of `{cmd}`: {reason}")]
    Parse { cmd: String, reason: String },

    #[error("lab '{prefix}' is not fully up: {}", .problems.join("; "))]
    NotUp { prefix: String, problems: Vec<String> },

    #[error("{what}")]
    Runtime { what: String },

    #[error("invalid pod name {name:?}: a DNS label (lowercase letters, digits, '-'; at most 63)")]
    InvalidPodName { name: String },

    /// A pod name that exists already (add) or not at all (del).
    #[error("{what}")]
    BadPod { what: String },

    #[error(transparent)]
    Cri(#[from] netpath_cri::CriError),

    #[error("invalid image: {0}")]
    InvalidImage(String),

    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl LabError {
    /// The caller asked for something that cannot be (exit 2), rather than something failing.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LabError::InvalidPrefix { .. }
                | LabError::InvalidPodName { .. }
                | LabError::BadPod { .. }
                | LabError::InvalidImage(_)
        )
    }
}
