//! netpath user space: the library behind the `netpath` binary. ARCHITECTURE.md at the repository
//! root says what lives where; in short, from the bottom up:
//!
//! - [`model`]: the rows people and scripts read (stats, flows, events, rules, interfaces, status)
//!   and their tables; pure.
//! - [`node`]: the node as the kernel and the container runtime describe it: links (rtnetlink),
//!   network namespaces, pods (CRI).
//! - [`datapath`]: the eBPF object: load, pin, attach, read and write its maps.
//! - [`capture`]: packets copied in the kernel, written as pcapng.
//! - [`doctor`]: the node checks engineers make by hand, joined with what the datapath saw.
//! - [`service`]: the control API (server and client) and the Prometheus exporter.
//! - [`daemon`]: `netpath run`: configuration, the event loop that follows links and pods, and the
//!   state the services read.
pub mod caps;
pub mod capture;
pub mod daemon;
pub mod datapath;
pub mod defaults;
pub mod doctor;
pub mod error;
pub mod model;
pub mod node;
pub mod service;

pub use error::{Error, Result};
