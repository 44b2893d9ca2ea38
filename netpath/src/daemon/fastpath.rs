//! The pod-to-pod fast path: which pod MAC sits behind which veth of the bridge (learnt from the
//! bridge's forwarding database), published to the datapath's fast-path table.
use netpath_common::diag;

use super::state::{internal, Shared};
use crate::{
    datapath::attach::Mode,
    model::rules::{self, FastpathEntry, FastpathStatus},
    service::api::{ApiError, FastpathRequest},
};

impl Shared {
    /// The fast path's state; with a request, change it first (an invalid one changes nothing).
    pub(super) fn fastpath_state(&self, request: Option<FastpathRequest>) -> Result<FastpathStatus, ApiError> {
        if let Some(req) = request {
            let bridge = match (&req.bridge, req.enable) {
                (Some(b), true) => {
                    let view = self.view.lock().unwrap();
                    let link = view.links.values().find(|l| &l.name == b).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "no interface '{b}' here (interfaces: {})",
                            view.links
                                .values()
                                .map(|l| l.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    if link.kind.as_deref() != Some("bridge") {
                        return Err(ApiError::BadRequest(format!("{b} is not a bridge")));
                    }
                    if !view.attached.contains_key(&link.ifindex) {
                        return Err(ApiError::BadRequest(format!(
                            "netpath does not observe {b}: run it with --iface {b} so its ports carry the fast path"
                        )));
                    }
                    Some((b.clone(), link.ifindex))
                }
                _ => None,
            };
            {
                let mut guard = self.rules.lock().unwrap();
                let table = guard
                    .as_mut()
                    .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
                table.set_fastpath(bridge.as_ref().map(|b| b.1)).map_err(internal)?;
            }
            *self.fastpath_bridge.lock().unwrap() = bridge.map(|b| b.0);
            self.learn_fastpath();
        }
        let guard = self.rules.lock().unwrap();
        let table = guard
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("no rule table".into()))?;
        let view = self.view.lock().unwrap();
        let entries: Vec<FastpathEntry> = table
            .fastpath_entries()
            .iter()
            .map(|(mac, i)| {
                let o = view.owner(*i);
                FastpathEntry {
                    mac: mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                    iface: view.name(*i),
                    ifindex: *i,
                    netns: o.netns,
                    pod: o.pod,
                    pod_namespace: o.pod_namespace,
                }
            })
            .collect();
        drop(view);
        let d = self.maps.lock().unwrap().diag().map_err(internal)?;
        let bridge = self.fastpath_bridge.lock().unwrap().clone();
        Ok(FastpathStatus {
            enabled: bridge.is_some(),
            bridge,
            redirected: d.get(diag::FASTPATH_REDIRECTED as usize).copied().unwrap_or(0),
            entries,
        })
    }

    /// Learn which pod MAC sits behind which bridge port from the bridge's forwarding database
    /// (dynamic entries: the MACs pods sent from), restricted to ports netpath observes with TC.
    pub(super) fn learn_fastpath(&self) {
        let Some(bridge) = self.fastpath_bridge.lock().unwrap().clone() else {
            return;
        };
        let Ok(out) = std::process::Command::new("bridge")
            .args(["-j", "fdb", "show", "br", &bridge])
            .output()
        else {
            return;
        };
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut want = std::collections::HashMap::new();
        {
            let view = self.view.lock().unwrap();
            for e in &entries {
                let is_self = e["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "self"));
                if e["state"] == "permanent" || is_self {
                    continue;
                }
                let (Some(mac), Some(dev)) = (e["mac"].as_str(), e["ifname"].as_str()) else {
                    continue;
                };
                let Some(port) = view
                    .links
                    .values()
                    .find(|l| l.name == dev && l.kind.as_deref() == Some("veth"))
                else {
                    continue;
                };
                let tc = view.attached.get(&port.ifindex).is_some_and(|a| a.mode == Mode::Tc);
                if let (true, Ok(mac)) = (tc, rules::parse_mac(mac)) {
                    want.insert(mac, port.ifindex);
                }
            }
        }
        if let Some(table) = self.rules.lock().unwrap().as_mut() {
            if let Err(e) = table.sync_fastpath(&want) {
                log::warn!("fast path table: {e}");
            }
        }
    }
}
