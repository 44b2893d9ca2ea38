//! netpath user space: loading and attaching the datapath, reading its maps, and the CLI.
pub mod api;
pub mod attach;
pub mod caps;
pub mod capture;
pub mod cli;
pub mod config;
pub mod cri;
pub mod daemon;
pub mod error;
pub mod events;
pub mod flows;
pub mod ifaces;
pub mod lab;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod node;
pub mod report;
pub mod rules;
pub mod run;
pub mod select;
pub mod stats;

pub use error::{Error, Result};
