//! The datapath's capture state (its filter config and interface set, both pinned maps): armed for
//! a capture, and switched off again whatever the way out.
use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData};
use netpath_common::{event::CaptureConfig, maps};

use super::{lock::CaptureLock, Target};
use crate::error::{Error, Result};

pub(super) fn map_err(what: String) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { what, source }
}

pub(super) fn open_pinned(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(map_err(format!("opening {}", path.display())))?;
    Map::from_map_data(data).map_err(map_err(format!("opening {}", path.display())))
}

pub(super) struct Control {
    pub(super) cfg: Array<MapData, CaptureConfig>,
    pub(super) ifaces: HashMap<MapData, u32, u8>,
}

/// Capture switched on; switched off (config first, then the interface entries it added) when
/// dropped, whatever the way out.
pub(super) struct Armed {
    ctl: Control,
    added: Vec<u32>,
    active: bool,
}

impl Control {
    /// State left behind by a capture that could not clean up (SIGKILL). Only call with the lock.
    pub(super) fn reset_stale(&mut self) -> Result<bool> {
        let cur = self.cfg.get(&0, 0).map_err(map_err("reading NP_CAPTURE_CFG".into()))?;
        let keys: Vec<u32> = self.ifaces.keys().filter_map(|k| k.ok()).collect();
        let stale = cur.enabled != 0 || !keys.is_empty();
        if cur != CaptureConfig::default() {
            self.cfg
                .set(0, CaptureConfig::default(), 0)
                .map_err(map_err("writing NP_CAPTURE_CFG".into()))?;
        }
        for k in keys {
            let _ = self.ifaces.remove(&k);
        }
        Ok(stale)
    }

    /// Program the filter: interface entries first, the config with `enabled` last.
    pub(super) fn arm(self, targets: &[Target], cfg: CaptureConfig) -> Result<Armed> {
        let mut armed = Armed {
            ctl: self,
            added: Vec::new(),
            active: true,
        };
        for t in targets {
            armed
                .ctl
                .ifaces
                .insert(t.ifindex, 1u8, 0)
                .map_err(map_err(format!("adding {} to NP_CAPTURE_IFACES", t.name)))?;
            armed.added.push(t.ifindex);
        }
        armed
            .ctl
            .cfg
            .set(0, cfg, 0)
            .map_err(map_err("writing NP_CAPTURE_CFG".into()))?;
        Ok(armed)
    }
}

impl Armed {
    pub(super) fn disarm(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let off = self
            .ctl
            .cfg
            .set(0, CaptureConfig::default(), 0)
            .map_err(map_err("switching capture off in NP_CAPTURE_CFG".into()));
        for k in self.added.drain(..) {
            let _ = self.ctl.ifaces.remove(&k);
        }
        off
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Err(e) = self.disarm() {
            log::warn!("{e}");
        }
    }
}

/// Switch off a capture left armed by a `netpath capture` that died without cleaning up (SIGKILL):
/// if no capture holds the lock, the filter must be off. The daemon calls this now and then, so an
/// abandoned capture does not make every frame pay for a copy nobody reads. Returns whether it
/// reset anything.
pub fn reset_abandoned(pin_dir: &Path) -> Result<bool> {
    let Ok(_lock) = CaptureLock::acquire(pin_dir, false) else {
        return Ok(false);
    };
    let mut ctl = Control {
        cfg: open_pinned(pin_dir, maps::CAPTURE_CFG)?
            .try_into()
            .map_err(map_err("NP_CAPTURE_CFG".into()))?,
        ifaces: open_pinned(pin_dir, maps::CAPTURE_IFACES)?
            .try_into()
            .map_err(map_err("NP_CAPTURE_IFACES".into()))?,
    };
    ctl.reset_stale()
}
