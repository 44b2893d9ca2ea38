//! Which links the daemon observes: names and globs from `--iface`, a bridge pulling in every port
//! it has (the way a CNI bridge gains and loses pod veths), minus `--exclude`. Pure, so it is
//! recomputed from the link table on every netlink event and tested on the host.
use std::collections::BTreeMap;

use crate::{
    datapath::attach::{IfaceSpec, Mode},
    node::netlink::LinkInfo,
};

fn matches(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern)
        .map(|p| p.matches(name))
        .unwrap_or(pattern == name)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// ifindex -> (name, mode) of every link to observe.
pub fn desired(
    links: &[LinkInfo],
    specs: &[IfaceSpec],
    exclude: &[String],
    default_mode: Mode,
) -> BTreeMap<u32, (String, Mode)> {
    let mut out = BTreeMap::new();
    let excluded = |name: &str| exclude.iter().any(|p| matches(p, name));
    for spec in specs {
        for l in links.iter().filter(|l| matches(&spec.name, &l.name)) {
            if excluded(&l.name) {
                continue;
            }
            let mode = spec.mode.unwrap_or(default_mode);
            out.entry(l.ifindex).or_insert_with(|| (l.name.clone(), mode));
            if l.kind.as_deref() == Some("bridge") {
                for port in links
                    .iter()
                    .filter(|p| p.master == Some(l.ifindex) && !excluded(&p.name))
                {
                    out.entry(port.ifindex)
                        .or_insert_with(|| (port.name.clone(), default_mode));
                }
            }
        }
    }
    out
}

/// Plain names (not globs) that match no link: bad input at start-up.
pub fn missing_names<'a>(links: &[LinkInfo], specs: &'a [IfaceSpec]) -> Vec<&'a str> {
    specs
        .iter()
        .filter(|s| !is_glob(&s.name) && !links.iter().any(|l| l.name == s.name))
        .map(|s| s.name.as_str())
        .collect()
}

/// Globs that match no link (yet): not an error, since pods come later, but worth a warning, since a
/// mistyped glob otherwise observes nothing in silence.
pub fn unmatched_globs(links: &[LinkInfo], specs: &[IfaceSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|s| is_glob(&s.name) && !links.iter().any(|l| matches(&s.name, &l.name)))
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str, kind: Option<&str>, master: Option<u32>) -> LinkInfo {
        LinkInfo {
            ifindex,
            name: name.into(),
            kind: kind.map(String::from),
            master,
            mac: None,
            mtu: Some(1500),
            up: true,
            peer_ifindex: None,
            link_netnsid: None,
            addresses: vec![],
            vxlan_local: None,
        }
    }

    fn spec(s: &str) -> IfaceSpec {
        s.parse().unwrap()
    }

    fn node() -> Vec<LinkInfo> {
        vec![
            link(1, "lo", None, None),
            link(2, "ul0", Some("veth"), None),
            link(3, "cni0", Some("bridge"), None),
            link(4, "veth1111aaaa", Some("veth"), Some(3)),
            link(5, "veth2222bbbb", Some("veth"), Some(3)),
            link(6, "vethloose", Some("veth"), None),
            link(7, "flannel.1", Some("vxlan"), None),
        ]
    }

    #[test]
    fn bridge_brings_its_ports() {
        let d = desired(&node(), &[spec("cni0")], &[], Mode::Auto);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn globs_excludes_and_per_interface_modes() {
        let d = desired(
            &node(),
            &[spec("veth*"), spec("ul0:xdp")],
            &["veth2222*".into()],
            Mode::Tc,
        );
        assert_eq!(d.get(&2), Some(&("ul0".to_string(), Mode::Xdp)));
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), [2, 4, 6]);
        assert_eq!(d[&4].1, Mode::Tc);
        // An excluded port stays out even when its bridge is in.
        let d = desired(&node(), &[spec("cni0")], &["veth1111aaaa".into()], Mode::Auto);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), [3, 5]);
    }

    #[test]
    fn missing_plain_names_are_reported_globs_are_not() {
        let specs = [spec("cni0"), spec("nope0"), spec("veth9*")];
        assert_eq!(missing_names(&node(), &specs), ["nope0"]);
        assert_eq!(unmatched_globs(&node(), &specs), ["veth9*"]);
        assert!(unmatched_globs(&node(), &[spec("veth*"), spec("nope0")]).is_empty());
    }
}
