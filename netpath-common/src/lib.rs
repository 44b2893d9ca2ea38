//! Types shared by the eBPF programs and user space, and the frame parser both run.
//!
//! Everything here is `no_std`, `#[repr(C)]` and `Copy`, with explicit padding so the kernel and
//! user space agree on every byte. The parser ([`parse`]) is generic over a [`parse::Frame`]
//! reader: the eBPF crate reads packet memory behind verifier-visible bounds checks, host tests
//! read a `&[u8]`.
//!
//! One module per concern: [`class`] and [`malformed`] (what a frame is counted as), [`counters`]
//! (per-interface counters), [`flow`] (the flow table), [`drop`] (the drop tracer), [`config`],
//! [`diag`] (health counters), [`peer`] (per-peer VXLAN counters),
//! [`maps`] (pinned map names), [`event`] (events and capture records), [`rule`] (rules and the
//! fast path), [`addr`] and [`words`] (how the datapath moves them without byte loops), and
//! [`parse`] (the frame parser, one file per layer). The types are re-exported here.
#![no_std]

#[cfg(any(test, feature = "craft"))]
extern crate std;

pub mod addr;
pub mod class;
pub mod config;
pub mod counters;
#[cfg(any(test, feature = "craft"))]
pub mod craft;
pub mod diag;
pub mod drop;
pub mod event;
pub mod flow;
pub mod malformed;
pub mod maps;
pub mod parse;
pub mod peer;
pub mod rule;
pub mod words;

pub use addr::Addr;
pub use config::{
    Config, DEFAULT_EVENTS_BURST, DEFAULT_EVENTS_PER_SEC, MAX_VXLAN_PORTS, VXLAN_PORT_FLANNEL, VXLAN_PORT_IANA,
};
pub use counters::{Counter, IfaceCounters, IfaceKey, DIRECTIONS, DIR_EGRESS, DIR_INGRESS, IFACE_TABLE_SIZE};
pub use flow::{
    FlowKey, FlowValue, DEFAULT_FLOW_TABLE_SIZE, ENCAP_NONE, ENCAP_VXLAN, FAMILY_ARP, FAMILY_IPV4, FAMILY_IPV6,
    FAMILY_NONE,
};
pub use words::{copy_words, zero_words, Words};
