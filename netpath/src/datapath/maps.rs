//! Reading the datapath's maps, from a live loader or from the pins of a running `netpath run`,
//! and folding the per-CPU values into one view.
use std::path::Path;

use aya::{
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    Ebpf,
};
use netpath_common::{
    diag,
    drop::DropKey,
    malformed, maps,
    peer::{PeerCounters, PeerKey},
    Config, Counter, FlowKey, FlowValue, IfaceCounters, IfaceKey, DIRECTIONS,
};

use crate::{
    error::{Error, Result},
    model::status::{CaptureTotals, DropTotals, EventTotals, FlowTableStatus, StatusReport},
};

pub struct Maps {
    pub iface: PerCpuHashMap<MapData, IfaceKey, IfaceCounters>,
    pub flows: PerCpuHashMap<MapData, FlowKey, FlowValue>,
    pub diag: PerCpuArray<MapData, u64>,
    pub config: Array<MapData, Config>,
    /// Drops by site (None in a pin set from a netpath without the drop tracer).
    pub drops: Option<PerCpuHashMap<MapData, DropKey, Counter>>,
    /// VXLAN frames per peer (None in a pin set from a netpath without it).
    pub peers: Option<PerCpuHashMap<MapData, PeerKey, PeerCounters>>,
    pub flow_capacity: u32,
    /// Kernel id of the flow table (for tools and tests that inspect it).
    pub flow_map_id: u32,
}

fn map_err(what: &str) -> impl FnOnce(aya::maps::MapError) -> Error + '_ {
    move |source| Error::Map {
        what: what.to_string(),
        source,
    }
}

impl Maps {
    /// Take the maps out of a loaded object (the programs keep their own references).
    pub fn take(ebpf: &mut Ebpf) -> Result<Maps> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::BadArgument(format!("map {name} missing from the eBPF object")))
        };
        let (iface, flows, diag, config) = (
            take(maps::IFACE_STATS)?,
            take(maps::FLOWS)?,
            take(maps::DIAG)?,
            take(maps::CONFIG)?,
        );
        let drops = take(maps::DROPS)?;
        let peers = take(maps::VXLAN_PEERS)?;
        Self::from_maps(iface, flows, diag, config, Some(drops), Some(peers))
    }

    /// Open the maps pinned under `dir` by a running (or previous) `netpath run`.
    pub fn open_pinned(dir: &Path) -> Result<Maps> {
        if !dir.join(maps::IFACE_STATS).exists() {
            return Err(Error::NotRunning { dir: dir.into() });
        }
        let open = |name: &str| -> Result<Map> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(map_err(&format!("opening {}", path.display())))?;
            Map::from_map_data(data).map_err(map_err(&format!("opening {}", path.display())))
        };
        let optional = |name: &str| match dir.join(name).exists() {
            true => open(name).map(Some),
            false => Ok(None),
        };
        let drops = optional(maps::DROPS)?;
        let peers = optional(maps::VXLAN_PEERS)?;
        Self::from_maps(
            open(maps::IFACE_STATS)?,
            open(maps::FLOWS)?,
            open(maps::DIAG)?,
            open(maps::CONFIG)?,
            drops,
            peers,
        )
    }

    fn from_maps(
        iface: Map,
        flows: Map,
        diag: Map,
        config: Map,
        drops: Option<Map>,
        peers: Option<Map>,
    ) -> Result<Maps> {
        let (flow_capacity, flow_map_id) = match &flows {
            Map::PerCpuLruHashMap(d) | Map::PerCpuHashMap(d) => {
                d.info().map(|i| (i.max_entries(), i.id())).unwrap_or((0, 0))
            }
            _ => (0, 0),
        };
        let flows: PerCpuHashMap<MapData, FlowKey, FlowValue> = flows.try_into().map_err(map_err("flow table"))?;
        Ok(Maps {
            iface: iface.try_into().map_err(map_err("interface counters"))?,
            flows,
            diag: diag.try_into().map_err(map_err("diagnostic counters"))?,
            config: config.try_into().map_err(map_err("config map"))?,
            drops: drops.map(|d| d.try_into().map_err(map_err("drop table"))).transpose()?,
            peers: peers
                .map(|d| d.try_into().map_err(map_err("VXLAN peer table")))
                .transpose()?,
            flow_capacity,
            flow_map_id,
        })
    }

    /// Per (interface, direction) counters summed over CPUs.
    pub fn iface_counters(&self) -> Result<Vec<(IfaceKey, IfaceCounters)>> {
        let mut out = Vec::new();
        for item in self.iface.iter() {
            let (key, values) = item.map_err(map_err("reading interface counters"))?;
            let mut sum = IfaceCounters::default();
            for v in values.iter() {
                for (s, c) in sum.class.iter_mut().zip(v.class.iter()) {
                    s.packets += c.packets;
                    s.bytes += c.bytes;
                }
            }
            out.push((key, sum));
        }
        out.sort_by_key(|(k, _)| (k.ifindex, k.direction));
        Ok(out)
    }

    /// Every flow, its per-CPU values merged.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>> {
        let mut out = Vec::new();
        for item in self.flows.iter() {
            // An entry evicted between the key walk and the lookup is simply gone.
            let Ok((key, values)) = item else { continue };
            out.push((key, merge_flow(values.iter())));
        }
        Ok(out)
    }

    /// Every drop site with its packets and bytes summed over CPUs (empty without a drop table).
    pub fn drops(&self) -> Result<Vec<(DropKey, u64, u64)>> {
        let Some(t) = &self.drops else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in t.iter() {
            let (key, values) = item.map_err(map_err("reading the drop table"))?;
            let (p, b) = values.iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            out.push((key, p, b));
        }
        Ok(out)
    }

    /// Every VXLAN peer entry with its counters summed over CPUs, in key order (empty without a
    /// peer table).
    pub fn vxlan_peers(&self) -> Result<Vec<(PeerKey, PeerCounters)>> {
        let Some(t) = &self.peers else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in t.iter() {
            // An entry removed between the key walk and the lookup is simply gone.
            let Ok((key, values)) = item else { continue };
            let sum = values.iter().fold(PeerCounters::default(), |a, c| PeerCounters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                dropped_packets: a.dropped_packets + c.dropped_packets,
                dropped_bytes: a.dropped_bytes + c.dropped_bytes,
            });
            out.push((key, sum));
        }
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }

    /// The diagnostic counters summed over CPUs, indexed as `netpath_common::diag`.
    pub fn diag(&self) -> Result<Vec<u64>> {
        let mut out = vec![0u64; diag::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = self
                .diag
                .get(&(i as u32), 0)
                .map_err(map_err("reading diagnostic counters"))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    /// The flow table's numbers. `active` is the caller's count of flows still going when it has
    /// one (the daemon's last scan); without it the flows are read to count them.
    pub fn flow_table(&self, active: Option<u64>) -> Result<FlowTableStatus> {
        let d = self.diag()?;
        let entries = self.flows.keys().filter(|k| k.is_ok()).count() as u64;
        let active = match active {
            Some(n) => n,
            None => {
                let now = crate::model::flows::Clock::now().mono_now_ns();
                self.flows()?
                    .iter()
                    .filter(|(_, v)| crate::model::flows::is_active(v, now))
                    .count() as u64
            }
        };
        Ok(FlowTableStatus::new(
            self.flow_capacity,
            entries,
            active,
            d[diag::FLOWS_CREATED as usize],
            d[diag::FLOWS_DELETED as usize],
            d[diag::FLOW_INSERT_FAILED as usize],
        ))
    }

    /// An interface went away: sum what its flows counted, delete them and its interface counters
    /// (so a reused ifindex starts from zero), and record the deletions for the eviction count.
    pub fn forget_ifindex(&mut self, ifindex: u32) -> Result<Accounted> {
        let mut acc = Accounted::default();
        let doomed: Vec<(FlowKey, FlowValue)> = self
            .flows()?
            .into_iter()
            .filter(|(k, _)| k.ifindex == ifindex)
            .collect();
        for (k, v) in doomed {
            if self.flows.remove(&k).is_ok() {
                acc.flows += 1;
                acc.packets += v.packets;
                acc.bytes += v.bytes;
                acc.ended.push((k, v));
            }
        }
        for dir in 0..DIRECTIONS.len() as u8 {
            let _ = self.iface.remove(&IfaceKey::new(ifindex, dir));
        }
        if let Some(t) = &mut self.peers {
            let doomed: Vec<PeerKey> = t
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| k.ifindex == ifindex)
                .collect();
            for k in doomed {
                let _ = t.remove(&k);
            }
        }
        self.add_diag(diag::FLOWS_DELETED, acc.flows)?;
        Ok(acc)
    }

    /// Add to a user-space-maintained diagnostic counter (kept in CPU 0's slot).
    pub fn add_diag(&mut self, index: u32, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let current = self
            .diag
            .get(&index, 0)
            .map_err(map_err("reading diagnostic counters"))?;
        let mut values: Vec<u64> = current.iter().copied().collect();
        values[0] += n;
        let values = PerCpuValues::try_from(values).map_err(Error::Io)?;
        self.diag
            .set(index, values, 0)
            .map_err(map_err("writing diagnostic counters"))
    }

    /// Replace the datapath's runtime configuration (VXLAN ports).
    pub fn write_config(&mut self, c: Config) -> Result<()> {
        self.config.set(0, c, 0).map_err(map_err("writing config"))
    }
}

/// What the flows of a departed interface had counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounted {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The flows removed, with their final counts.
    pub ended: Vec<(FlowKey, FlowValue)>,
}

/// Fold per-CPU flow values: sums, earliest first_seen, latest last_seen, OR of flags.
pub fn merge_flow<'a>(values: impl Iterator<Item = &'a FlowValue>) -> FlowValue {
    let mut m = FlowValue::default();
    // Times of a flow the datapath saw only as drops (the tracer creates such entries).
    let (mut drop_first, mut drop_last) = (u64::MAX, 0);
    for v in values {
        if v.drop_packets != 0 {
            m.drop_packets += v.drop_packets;
            m.drop_bytes += v.drop_bytes;
            if v.drop_last_seen >= m.drop_last_seen {
                m.drop_last_seen = v.drop_last_seen;
                m.drop_reason = v.drop_reason;
            }
            drop_first = drop_first.min(v.first_seen);
            drop_last = drop_last.max(v.last_seen);
        }
        if v.packets == 0 {
            continue;
        }
        if m.packets == 0 || v.first_seen < m.first_seen {
            m.first_seen = v.first_seen;
        }
        m.last_seen = m.last_seen.max(v.last_seen);
        m.packets += v.packets;
        m.bytes += v.bytes;
        m.tcp_flags |= v.tcp_flags;
        if m.outer_family == 0 && v.outer_family != 0 {
            m.outer_family = v.outer_family;
            m.outer_src = v.outer_src;
            m.outer_dst = v.outer_dst;
        }
    }
    if m.packets == 0 && m.drop_packets != 0 {
        m.first_seen = drop_first;
        m.last_seen = drop_last;
    }
    m
}

impl Maps {
    /// Datapath health from the maps alone: flow table, insert and pull failures, events, capture,
    /// malformed frames by reason.
    /// `active`: as for [`Maps::flow_table`].
    pub fn status(&self, active: Option<u64>) -> Result<StatusReport> {
        let d = self.diag()?;
        let at = |i: u32| d[i as usize];
        Ok(StatusReport {
            flow_table: self.flow_table(active)?,
            events: EventTotals {
                emitted: at(diag::EVENTS_EMITTED),
                delivered: at(diag::EVENTS_DELIVERED),
                lost: at(diag::EVENTS_LOST),
                suppressed: at(diag::EVENTS_SUPPRESSED),
                pending: None,
                by_kind: None,
            },
            capture: CaptureTotals {
                captured: at(diag::CAPTURED),
                lost: at(diag::CAPTURE_LOST),
            },
            drops: DropTotals {
                counted: at(diag::DROPS_COUNTED),
                table_full: at(diag::DROP_INSERT_FAILED),
            },
            iface_insert_failed: at(diag::IFACE_INSERT_FAILED),
            peer_insert_failed: at(diag::PEER_INSERT_FAILED),
            pull_failed: at(diag::PULL_FAILED),
            malformed: (1..malformed::COUNT)
                .map(|r| (malformed::NAMES[r].to_string(), d[diag::MALFORMED_BASE as usize + r]))
                .collect(),
            daemon: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_takes_extremes_and_sums() {
        let a = FlowValue {
            packets: 2,
            bytes: 200,
            first_seen: 50,
            last_seen: 90,
            tcp_flags: 0x02,
            ..Default::default()
        };
        let b = FlowValue {
            packets: 1,
            bytes: 60,
            first_seen: 40,
            last_seen: 70,
            tcp_flags: 0x10,
            outer_family: 4,
            ..Default::default()
        };
        let zero = FlowValue::default();
        let m = merge_flow([a, zero, b].iter());
        assert_eq!(
            (
                m.packets,
                m.bytes,
                m.first_seen,
                m.last_seen,
                m.tcp_flags,
                m.outer_family
            ),
            (3, 260, 40, 90, 0x12, 4)
        );
    }

    #[test]
    fn evictions_are_created_minus_active() {
        let s = FlowTableStatus::new(100, 100, 90, 300, 0, 0);
        assert_eq!(s.evictions, 200);
        assert_eq!(FlowTableStatus::new(100, 50, 50, 300, 20, 0).evictions, 230);
        assert!((s.fill_ratio - 1.0).abs() < 1e-9);
    }
}
