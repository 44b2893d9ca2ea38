//! What the daemon knew about the interfaces it counted, kept with the pins, so that `stats` and
//! `flows` read from the pins after it exits name them as it did, not by whatever the reader's
//! namespace has at those ifindexes now.
//!
//! bpffs holds no regular files, but it holds directories and symlinks: each record is a symlink
//! in `PIN_DIR/names/` whose target is a line of JSON (`netns` for the namespace the daemon ran
//! in, one per ifindex for the links), replaced atomically by a rename.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Result},
    model::owner::Owner,
};

/// The directory inside the pin directory.
pub const NAMES_DIR: &str = "names";
const NETNS: &str = "netns";

/// One interface as the daemon saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub iface: String,
    #[serde(flatten)]
    pub owner: Owner,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Namespace {
    netns: Option<String>,
}

fn bpffs_err(what: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Bpffs { what, path, source }
}

fn put(dir: &Path, name: &str, json: &str) -> Result<()> {
    let path = dir.join(name);
    // bpffs refuses dots in names (reserved); a name that is no ifindex is never read back.
    let tmp = dir.join(format!("{name}-new"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(json, &tmp).map_err(bpffs_err("recording interface names", tmp.clone()))?;
    std::fs::rename(&tmp, &path).map_err(bpffs_err("recording interface names", path))
}

fn get<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(std::fs::read_link(path).ok()?.to_str()?).ok()
}

/// The records of one daemon: it starts them, and keeps them as its view changes.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    written: HashMap<u32, Recorded>,
}

impl Recorder {
    /// Start the records in `pin_dir` for a daemon in `netns` (None: the host's namespace).
    /// Records of an earlier daemon in another namespace are dropped: their ifindexes mean other
    /// links here.
    pub fn start(pin_dir: &Path, netns: Option<&str>) -> Result<Recorder> {
        let dir = pin_dir.join(NAMES_DIR);
        let before: Option<Namespace> = get(&dir.join(NETNS));
        if before.is_some_and(|b| b.netns.as_deref() != netns) {
            remove(pin_dir)?;
        }
        std::fs::create_dir_all(&dir).map_err(bpffs_err("creating the names directory", dir.clone()))?;
        let ns = serde_json::to_string(&Namespace {
            netns: netns.map(String::from),
        })
        .expect("serialising a name");
        put(&dir, NETNS, &ns)?;
        Ok(Recorder {
            dir,
            written: HashMap::new(),
        })
    }

    /// Record `ifindex` as `r`, unless it is recorded so already.
    pub fn record(&mut self, ifindex: u32, r: &Recorded) -> Result<()> {
        if self.written.get(&ifindex) == Some(r) {
            return Ok(());
        }
        put(
            &self.dir,
            &ifindex.to_string(),
            &serde_json::to_string(r).expect("serialising a name"),
        )?;
        self.written.insert(ifindex, r.clone());
        Ok(())
    }
}

/// The records read back: how `stats` and `flows` name ifindexes without a daemon.
#[derive(Debug, Default)]
pub struct Names {
    /// None: no daemon recorded anything here (pins of an older netpath, or none).
    pub daemon_netns: Option<Option<String>>,
    pub by_ifindex: HashMap<u32, Recorded>,
}

impl Names {
    pub fn read(pin_dir: &Path) -> Names {
        let dir = pin_dir.join(NAMES_DIR);
        let daemon_netns = get::<Namespace>(&dir.join(NETNS)).map(|n| n.netns);
        let by_ifindex = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let ifindex: u32 = e.file_name().to_str()?.parse().ok()?;
                Some((ifindex, get(&e.path())?))
            })
            .collect();
        Names {
            daemon_netns,
            by_ifindex,
        }
    }

    /// The name and owner of `ifindex` as the daemon knew them; else the link's name here when the
    /// reader is in the daemon's namespace (`reader_netns`); else `ifN` and no owner, and the
    /// ifindex goes into `unknown` so the caller can say so.
    pub fn name(&self, ifindex: u32, reader_netns: Option<&str>, unknown: &mut Vec<u32>) -> Recorded {
        if let Some(r) = self.by_ifindex.get(&ifindex) {
            return r.clone();
        }
        let live = match &self.daemon_netns {
            Some(ns) if ns.as_deref() == reader_netns => crate::node::ifaces::name_of(ifindex),
            _ => None,
        };
        if live.is_none() && !unknown.contains(&ifindex) {
            unknown.push(ifindex);
        }
        Recorded {
            iface: live.unwrap_or_else(|| format!("if{ifindex}")),
            owner: Owner::default(),
        }
    }

    /// What to tell people about `unknown` ifindexes.
    pub fn unknown_note(&self, unknown: &[u32]) -> Option<String> {
        if unknown.is_empty() {
            return None;
        }
        let list = unknown.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        Some(match &self.daemon_netns {
            None => format!(
                "no daemon recorded interface names with these pins: ifindex {list} shown as ifN (the links here may be others)"
            ),
            Some(ns) => format!(
                "the daemon ran in {} and did not record ifindex {list}: shown as ifN",
                ns.as_deref().map_or("the host's network namespace".to_string(), |n| format!("network namespace '{n}'"))
            ),
        })
    }
}

/// Remove the records (`netpath down`, or a daemon in another namespace).
pub fn remove(pin_dir: &Path) -> Result<Option<PathBuf>> {
    let dir = pin_dir.join(NAMES_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    for e in rd.filter_map(|e| e.ok()) {
        std::fs::remove_file(e.path()).map_err(bpffs_err("removing a name record", e.path()))?;
    }
    std::fs::remove_dir(&dir).map_err(bpffs_err("removing the names directory", dir.clone()))?;
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ifindexes_are_named_by_number_and_reported() {
        let names = Names {
            daemon_netns: Some(Some("np-node1".into())),
            by_ifindex: HashMap::from([(
                3,
                Recorded {
                    iface: "cni0".into(),
                    owner: Owner::default(),
                },
            )]),
        };
        let mut unknown = Vec::new();
        assert_eq!(names.name(3, None, &mut unknown).iface, "cni0");
        // The reader is in the host's namespace, the daemon was not: no live lookup.
        assert_eq!(names.name(1, None, &mut unknown).iface, "if1");
        assert_eq!(unknown, vec![1]);
        let note = names.unknown_note(&unknown).unwrap();
        assert!(note.contains("'np-node1'") && note.contains("ifindex 1"), "{note}");
    }
}
