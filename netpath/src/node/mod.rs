//! The node as the kernel and the container runtime describe it: links and their veth peers
//! (rtnetlink), network namespaces, pods (CRI), what is attached to each link, and what the drop
//! tracer reads about the kernel itself (`btf`, `kallsyms`).
pub mod btf;
pub mod cri;
pub mod ifaces;
pub mod kallsyms;
pub mod netlink;
pub mod netns;
pub mod tables;
pub mod view;
