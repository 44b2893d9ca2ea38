//! The pinned rule maps behind [`crate::model::rules`]: a two-bank table published by flipping the
//! active bank (the datapath never sees a half-written table), hit counters, and the fast path's
//! MAC-to-veth entries.
use netpath_common::rule::{Rule, MAX_RULES};

use crate::error::{Error, Result};

/// The pinned rule maps: the two-bank table, its control word, hit counters, fast-path MACs.
pub struct RuleTable {
    rules: aya::maps::Array<aya::maps::MapData, Rule>,
    ctl: aya::maps::Array<aya::maps::MapData, netpath_common::rule::RuleCtl>,
    hits: aya::maps::PerCpuArray<aya::maps::MapData, netpath_common::Counter>,
    fast: aya::maps::HashMap<aya::maps::MapData, netpath_common::rule::MacKey, netpath_common::rule::FastTarget>,
}

fn map_err(what: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        what: what.to_string(),
        source,
    }
}

impl RuleTable {
    /// Take the rule maps out of a loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<RuleTable> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::MissingFromObject(format!("map {name}")))
        };
        let (r, c, h, f) = (
            take(netpath_common::rule::MAP_RULES)?,
            take(netpath_common::rule::MAP_RULE_CTL)?,
            take(netpath_common::rule::MAP_RULE_HITS)?,
            take(netpath_common::rule::MAP_FASTPATH)?,
        );
        Self::from_maps(r, c, h, f)
    }

    /// Open the rule maps pinned under `dir`.
    pub fn open_pinned(dir: &std::path::Path) -> Result<RuleTable> {
        let open = |name: &str| -> Result<aya::maps::Map> {
            let path = dir.join(name);
            if !path.exists() {
                return Err(Error::NotRunning { dir: dir.into() });
            }
            let data = aya::maps::MapData::from_pin(&path).map_err(|source| Error::Map {
                what: format!("opening {}", path.display()),
                source,
            })?;
            aya::maps::Map::from_map_data(data).map_err(|source| Error::Map {
                what: format!("opening {}", path.display()),
                source,
            })
        };
        Self::from_maps(
            open(netpath_common::rule::MAP_RULES)?,
            open(netpath_common::rule::MAP_RULE_CTL)?,
            open(netpath_common::rule::MAP_RULE_HITS)?,
            open(netpath_common::rule::MAP_FASTPATH)?,
        )
    }

    fn from_maps(r: aya::maps::Map, c: aya::maps::Map, h: aya::maps::Map, f: aya::maps::Map) -> Result<RuleTable> {
        Ok(RuleTable {
            rules: r.try_into().map_err(map_err("rule table"))?,
            ctl: c.try_into().map_err(map_err("rule control"))?,
            hits: h.try_into().map_err(map_err("rule hits"))?,
            fast: f.try_into().map_err(map_err("fast path table"))?,
        })
    }

    pub fn ctl(&self) -> Result<netpath_common::rule::RuleCtl> {
        self.ctl.get(&0, 0).map_err(map_err("reading rule control"))
    }

    /// The rules in force, in slot (priority) order.
    pub fn read(&self) -> Result<Vec<Rule>> {
        let ctl = self.ctl()?;
        let base = (ctl.bank % 2) * MAX_RULES as u32;
        (0..ctl.count.min(MAX_RULES as u32))
            .map(|i| self.rules.get(&(base + i), 0).map_err(map_err("reading a rule")))
            .collect()
    }

    /// Publish a new table: write the inactive bank, then flip to it in one word.
    pub fn publish(&mut self, rules: &[Rule]) -> Result<()> {
        if rules.len() > MAX_RULES {
            return Err(Error::BadArgument(format!(
                "the rule table is full ({MAX_RULES} rules)"
            )));
        }
        let mut ctl = self.ctl()?;
        let next = (ctl.bank + 1) % 2;
        let base = next * MAX_RULES as u32;
        for (i, r) in rules.iter().enumerate() {
            self.rules
                .set(base + i as u32, *r, 0)
                .map_err(map_err("writing a rule"))?;
        }
        // An empty slot after the last rule ends the datapath's walk early.
        if rules.len() < MAX_RULES {
            self.rules
                .set(base + rules.len() as u32, Rule::default(), 0)
                .map_err(map_err("writing a rule"))?;
        }
        ctl.bank = next;
        ctl.count = rules.len() as u32;
        self.ctl.set(0, ctl, 0).map_err(map_err("publishing the rule table"))
    }

    /// (packets, bytes) a rule matched.
    pub fn hits(&self, id: u32) -> (u64, u64) {
        match self.hits.get(&(id % netpath_common::rule::MAX_RULE_IDS), 0) {
            Ok(v) => v.iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)),
            Err(_) => (0, 0),
        }
    }

    /// Zero a rule's hit counters (a new rule reusing the slot of an old id starts at zero).
    pub fn reset_hits(&mut self, id: u32) -> Result<()> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| Error::Io(e))?;
        let zeros =
            aya::maps::PerCpuValues::try_from(vec![netpath_common::Counter::default(); n]).map_err(Error::Io)?;
        self.hits
            .set(id % netpath_common::rule::MAX_RULE_IDS, zeros, 0)
            .map_err(map_err("resetting rule hits"))
    }

    /// Enable or disable the pod-to-pod fast path of a bridge.
    pub fn set_fastpath(&mut self, bridge: Option<u32>) -> Result<()> {
        let mut ctl = self.ctl()?;
        ctl.fastpath = u32::from(bridge.is_some());
        ctl.fastpath_bridge = bridge.unwrap_or(0);
        self.ctl.set(0, ctl, 0).map_err(map_err("writing rule control"))?;
        if bridge.is_none() {
            self.sync_fastpath(&std::collections::HashMap::new())?;
        }
        Ok(())
    }

    /// Make the fast path's MAC table equal `want` (MAC -> host veth ifindex).
    pub fn sync_fastpath(&mut self, want: &std::collections::HashMap<[u8; 6], u32>) -> Result<()> {
        use netpath_common::rule::{FastTarget, MacKey};
        let have: Vec<(MacKey, FastTarget)> = self.fast.iter().filter_map(|e| e.ok()).collect();
        for (k, v) in &have {
            if want.get(&k.mac) != Some(&v.ifindex) {
                let _ = self.fast.remove(k);
            }
        }
        for (mac, ifindex) in want {
            let key = MacKey {
                mac: *mac,
                _pad: [0; 2],
            };
            if !have.iter().any(|(k, v)| k == &key && v.ifindex == *ifindex) {
                self.fast
                    .insert(key, FastTarget { ifindex: *ifindex }, 0)
                    .map_err(map_err("writing the fast path table"))?;
            }
        }
        Ok(())
    }

    /// The fast path's MAC table.
    pub fn fastpath_entries(&self) -> Vec<([u8; 6], u32)> {
        self.fast
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| (k.mac, v.ifindex))
            .collect()
    }
}
