//! `netpath down`: remove what netpath pinned (maps, persisted links), nothing else.
use netpath::{caps, datapath::pins};

use crate::args::DownArgs;

pub fn run(args: &DownArgs) -> anyhow::Result<()> {
    caps::require_read()?;
    let dir = &args.pin.pin_dir;
    if let Some(pid) = pins::daemon_holder(dir) {
        if !args.force {
            return Err(netpath::Error::PinsInUse {
                dir: dir.clone(),
                holder: pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            }
            .into());
        }
        log::warn!("removing the pins of a running daemon (--force)");
    }
    let removed = pins::unpin_all(dir)?;
    if removed.is_empty() {
        println!("nothing pinned under {}", dir.display());
    }
    for p in removed {
        println!("removed {}", p.display());
    }
    Ok(())
}
