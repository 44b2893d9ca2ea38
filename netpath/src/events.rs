//! Events (being written).
use crate::{cli::WatchArgs, error::Result};

pub fn watch(args: &WatchArgs) -> Result<()> {
    let _ = args;
    Err(crate::Error::Other("watch: not implemented yet".into()))
}
