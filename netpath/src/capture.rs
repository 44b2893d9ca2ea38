//! `netpath capture` (being written).
use crate::{cli::CaptureArgs, error::Result};

pub fn run(args: &CaptureArgs) -> Result<()> {
    let _ = args;
    Err(crate::Error::Other("capture: not implemented yet".into()))
}
