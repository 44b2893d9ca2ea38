//! The drop tracer from user space: the layout it reads kernel memory with, which pod namespaces
//! lead to which veth (so drops inside a pod count on the pod's flow), and loading and attaching
//! it at `tp_btf/kfree_skb`.
use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{Array, HashMap, MapData},
    programs::BtfTracePoint,
    Btf, Ebpf,
};
use netpath_common::{drop::DropLayout, maps::programs};

use crate::{
    error::{Error, Result},
    model::ifaces::ProgramRef,
};

/// The tracer's maps that only the daemon writes (never pinned: rebuilt at every start).
pub struct DropMaps {
    layout: Array<MapData, DropLayout>,
    netns: HashMap<MapData, u32, u32>,
    /// What `netns` holds now.
    written: StdHashMap<u32, u32>,
}

fn map_err(what: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        what: what.to_string(),
        source,
    }
}

impl DropMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<DropMaps> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::MissingFromObject(format!("map {name}")))
        };
        Ok(DropMaps {
            layout: take("NP_DROP_LAYOUT")?
                .try_into()
                .map_err(map_err("drop tracer layout"))?,
            netns: take("NP_DROP_NETNS")?
                .try_into()
                .map_err(map_err("drop tracer namespaces"))?,
            written: StdHashMap::new(),
        })
    }

    /// Make the pod namespaces map hold exactly `want` (netns inode -> host veth ifindex). Gone
    /// namespaces are removed first, so a full map makes room for new ones.
    pub fn set_pod_namespaces(&mut self, want: &StdHashMap<u32, u32>) -> Result<()> {
        let gone: Vec<u32> = self.written.keys().filter(|k| !want.contains_key(k)).copied().collect();
        for ns in gone {
            self.written.remove(&ns);
            match self.netns.remove(&ns) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(Error::Map {
                        what: format!("removing namespace {ns} from the drop tracer's pod namespaces"),
                        source,
                    })
                }
            }
        }
        for (ns, ifindex) in want {
            if self.written.get(ns) != Some(ifindex) {
                self.netns
                    .insert(ns, ifindex, 0)
                    .map_err(map_err("writing the drop tracer's pod namespaces"))?;
                self.written.insert(*ns, *ifindex);
            }
        }
        Ok(())
    }
}

/// Write `layout`, then load the tracer (verified against `btf`, the kernel's) and attach it.
pub fn start_tracer(ebpf: &mut Ebpf, maps: &mut DropMaps, layout: &DropLayout, btf: &Btf) -> Result<ProgramRef> {
    maps.layout
        .set(0, *layout, 0)
        .map_err(map_err("writing the drop tracer's layout"))?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(programs::DROPS)
        .ok_or_else(|| Error::MissingFromObject(format!("program {}", programs::DROPS)))?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {}", programs::DROPS),
            source,
        })?;
    let what = |w: &str| format!("{w} the drop tracer ({} at tp_btf/kfree_skb)", programs::DROPS);
    prog.load("kfree_skb", btf).map_err(|source| Error::Program {
        what: what("loading"),
        source,
    })?;
    prog.attach().map_err(|source| Error::Program {
        what: what("attaching"),
        source,
    })?;
    let id = prog.info().map(|i| i.id()).unwrap_or(0);
    Ok(ProgramRef {
        program: programs::DROPS.to_string(),
        hook: "tp_btf/kfree_skb".to_string(),
        id,
    })
}
