//! What the drop tracer needs from the running kernel's BTF (/sys/kernel/btf/vmlinux): the offsets
//! of the `struct sk_buff`, `struct net_device` and `struct net` fields it reads, and the names of
//! `enum skb_drop_reason` (and of any subsystem's own reasons, in the BTF of the module that owns
//! them). Both change between kernel versions and configurations, so neither is compiled in.
use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use fallible_iterator::FallibleIterator;
use netpath_common::drop::DropLayout;

use crate::{
    error::{Error, Result},
    model::drops::DropReasons,
};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const MODULES: &str = "/sys/kernel/btf";

/// The running kernel's BTF, parsed (about 0.2 s for vmlinux: do it off the startup path).
pub struct KernelBtf {
    btf: Btf,
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::Unsupported(what.into())
}

impl KernelBtf {
    pub fn load() -> Result<KernelBtf> {
        Self::from_file(Path::new(VMLINUX))
    }

    pub fn from_file(path: &Path) -> Result<KernelBtf> {
        Btf::from_file(path)
            .map(|btf| KernelBtf { btf })
            .map_err(|e| unsupported(format!("reading the kernel's BTF at {}: {e}", path.display())))
    }

    /// The first struct named `name`.
    fn named_struct(&self, name: &str) -> Result<btf_rs::Struct> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|e| unsupported(format!("struct {name} not in the kernel's BTF: {e}")))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| unsupported(format!("struct {name} not in the kernel's BTF")))
    }

    /// Bit offset of member `name` in `s`, looking through anonymous structs and unions (the
    /// kernel groups `sk_buff`'s fields in them).
    fn member_bits(&self, s: &btf_rs::Struct, name: &str, depth: u32) -> Option<u32> {
        for m in &s.members {
            let n = self.btf.resolve_name(m).unwrap_or_default();
            if n == name {
                return Some(m.bit_offset());
            }
            if n.is_empty() && depth < 4 {
                if let Ok(Type::Struct(inner) | Type::Union(inner)) = self.btf.resolve_chained_type(m) {
                    if let Some(off) = self.member_bits(&inner, name, depth + 1) {
                        return Some(m.bit_offset() + off);
                    }
                }
            }
        }
        None
    }

    /// Byte offset of `path` (a member, then members of its type) from the start of struct `root`.
    pub fn offset(&self, root: &str, path: &[&str]) -> Result<u32> {
        let mut s = self.named_struct(root)?;
        let mut bits = 0;
        for (i, name) in path.iter().enumerate() {
            let off = self
                .member_bits(&s, name, 0)
                .ok_or_else(|| unsupported(format!("struct {root} has no member {}", path[..=i].join("."))))?;
            bits += off;
            if i + 1 < path.len() {
                s = self.member_struct(&s, name)?;
            }
        }
        if bits % 8 != 0 {
            return Err(unsupported(format!("{root}.{} is a bitfield", path.join("."))));
        }
        Ok(bits / 8)
    }

    /// The struct type of member `name` of `s` (through typedefs).
    fn member_struct(&self, s: &btf_rs::Struct, name: &str) -> Result<btf_rs::Struct> {
        let m = s
            .members
            .iter()
            .find(|m| self.btf.resolve_name(*m).unwrap_or_default() == name)
            .ok_or_else(|| unsupported(format!("no member {name}")))?;
        let mut t = self
            .btf
            .resolve_chained_type(m)
            .map_err(|e| unsupported(e.to_string()))?;
        for _ in 0..8 {
            t = match t {
                Type::Struct(s) | Type::Union(s) => return Ok(s),
                Type::Typedef(td) => self
                    .btf
                    .resolve_chained_type(&td)
                    .map_err(|e| unsupported(e.to_string()))?,
                _ => break,
            };
        }
        Err(unsupported(format!("member {name} is not a struct")))
    }

    /// The enumerators of `enum name` (None when the kernel has no such enum).
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, u32)>> {
        enum_values(&self.btf, name)
    }

    /// The tracer's layout for this kernel, with `enabled` set.
    pub fn drop_layout(&self) -> Result<DropLayout> {
        let reasons = self.enum_values("skb_drop_reason").ok_or_else(|| {
            unsupported("this kernel has no enum skb_drop_reason (drop reasons need Linux 5.17 or later)")
        })?;
        let value = |n: &str| {
            reasons
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, v)| *v)
                .ok_or_else(|| unsupported(format!("enum skb_drop_reason has no {n}")))
        };
        let skb = |f: &str| self.offset("sk_buff", &[f]);
        Ok(DropLayout {
            enabled: 1,
            not_specified: value("SKB_DROP_REASON_NOT_SPECIFIED")?,
            // Absent on older kernels (there a TC or XDP drop is freed as NOT_SPECIFIED, and counted
            // once more by location): u32::MAX matches no reason.
            tc_ingress: value("SKB_DROP_REASON_TC_INGRESS").unwrap_or(u32::MAX),
            tc_egress: value("SKB_DROP_REASON_TC_EGRESS").unwrap_or(u32::MAX),
            xdp: value("SKB_DROP_REASON_XDP").unwrap_or(u32::MAX),
            skb_dev: skb("dev")?,
            skb_data: skb("data")?,
            skb_head: skb("head")?,
            skb_tail: skb("tail")?,
            skb_network_header: skb("network_header")?,
            skb_mac_header: skb("mac_header")?,
            skb_protocol: skb("protocol")?,
            skb_len: skb("len")?,
            skb_iif: skb("skb_iif")?,
            dev_ifindex: self.offset("net_device", &["ifindex"])?,
            dev_net: self.offset("net_device", &["nd_net", "net"])?,
            net_inum: self.offset("net", &["ns", "inum"])?,
            _pad: 0,
        })
    }

    /// The names of this kernel's drop reasons: `enum skb_drop_reason`, its subsystems, and the
    /// reasons of subsystems whose module is loaded (their BTF under /sys/kernel/btf/MODULE).
    pub fn drop_reasons(&self) -> DropReasons {
        let core = self.enum_values("skb_drop_reason").unwrap_or_default();
        let subsystems = self.enum_values("skb_drop_reason_subsys").unwrap_or_default();
        let mut others = Vec::new();
        for (name, id) in &subsystems {
            // SKB_DROP_REASON_SUBSYS_OPENVSWITCH -> module openvswitch, its enum ovs_drop_reason;
            // SUBSYS_MAC80211_UNUSABLE -> mac80211. Any enum named *drop_reason* in the module
            // whose values carry this subsystem's id is taken.
            let Some(sub) = name.strip_prefix("SKB_DROP_REASON_SUBSYS_") else {
                continue;
            };
            if *id == 0 || sub == "NUM" {
                continue;
            }
            let module = sub.split('_').next().unwrap_or(sub).to_ascii_lowercase();
            let path = Path::new(MODULES).join(&module);
            let Ok(m) = Btf::from_split_file(&path, &self.btf) else {
                continue;
            };
            for t in module_drop_enums(&m) {
                others.extend(
                    t.into_iter()
                        .filter(|(_, v)| v >> netpath_common::drop::SUBSYS_SHIFT == *id),
                );
            }
        }
        DropReasons::new(core, subsystems, others)
    }
}

fn enum_values(btf: &Btf, name: &str) -> Option<Vec<(String, u32)>> {
    let types = btf.resolve_types_by_name(name).ok()?;
    types.into_iter().find_map(|t| match t {
        Type::Enum(e) => Some(
            e.members
                .iter()
                .map(|m| (btf.resolve_name(m).unwrap_or_default(), m.val()))
                .collect(),
        ),
        Type::Enum64(e) => Some(
            e.members
                .iter()
                .map(|m| (btf.resolve_name(m).unwrap_or_default(), m.val() as u32))
                .collect(),
        ),
        _ => None,
    })
}

/// The enumerators of every enum of a module's split BTF whose name says it holds drop reasons.
fn module_drop_enums(m: &Btf) -> Vec<Vec<(String, u32)>> {
    let mut out = Vec::new();
    // The module's own types only (its split section), not vmlinux's again.
    let Some(own) = m.split() else { return out };
    let mut types = own.type_iter();
    while let Ok(Some(t)) = types.next() {
        if let Type::Enum(e) = &t {
            let name = e
                .get_name_offset()
                .and_then(|_| m.resolve_name(e).ok())
                .unwrap_or_default();
            if name.contains("drop_reason") {
                out.push(
                    e.members
                        .iter()
                        .map(|x| (m.resolve_name(x).unwrap_or_default(), x.val()))
                        .collect(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's layout: offsets inside the structs, and the reasons the tracer
    /// compares against. Skipped (with the reason) on a kernel without BTF.
    #[test]
    fn layout_and_reasons_of_the_running_kernel() {
        let btf = match KernelBtf::load() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let l = btf.drop_layout().unwrap();
        assert_eq!(l.enabled, 1);
        assert!(l.not_specified >= 1);
        assert!(l.skb_head > 0 && l.skb_head < 256 && l.skb_data > l.skb_head);
        assert!(l.skb_network_header > 0 && l.skb_len > 0 && l.dev_ifindex > 0);
        let r = btf.drop_reasons();
        assert_eq!(r.name(l.not_specified), "NOT_SPECIFIED");
        assert_eq!(r.parse("NETFILTER_DROP").map(|v| r.name(v)).unwrap(), "NETFILTER_DROP");
        assert!(btf.offset("sk_buff", &["no_such_field"]).is_err());
    }
}
