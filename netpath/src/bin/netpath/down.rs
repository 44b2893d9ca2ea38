//! `netpath down`: remove what netpath pinned (maps, persisted links), nothing else.
use netpath::{caps, datapath::pins};

use crate::args::PinArgs;

pub fn run(pin: &PinArgs) -> anyhow::Result<()> {
    caps::require_read()?;
    let removed = pins::unpin_all(&pin.pin_dir)?;
    if removed.is_empty() {
        println!("nothing pinned under {}", pin.pin_dir.display());
    }
    for p in removed {
        println!("removed {}", p.display());
    }
    Ok(())
}
