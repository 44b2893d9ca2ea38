//! netpath's root integration tests as one test binary, a module per area: one link instead of one
//! per file saves minutes of build on a 2-core machine. Test names are `module::test`, so a filter
//! such as `cargo xtask test lab` still selects every test whose name contains it.
mod api;
mod capture;
mod cluster;
mod containerd;
mod cri;
mod daemon;
mod daemonset;
mod doctor;
mod drops;
mod events;
mod image;
mod ipfix;
mod lab;
mod lab_flows;
mod metrics;
mod naming;
mod netlink;
mod netns;
mod rules;
mod testrun;
mod tshark;
