//! The node as the kernel and the container runtime describe it: links and their veth peers
//! (rtnetlink), network namespaces, pods (CRI), and what is attached to each link.
pub mod cri;
pub mod ifaces;
pub mod netlink;
pub mod netns;
pub mod view;
