//! A simulated two-node Kubernetes pod network built from network namespaces, for exercising
//! netpath against the shapes it meets on real nodes: pod veths named like CNI plugins name them,
//! a `cni0` bridge per node, and a flannel-style VXLAN overlay (`flannel.1`, UDP 8472) riding an
//! underlay link.
//!
//! ```text
//!  {p}-n1-pod-a/b/c (eth0 10.244.0.2-4)        {p}-n2-pod-a/b (eth0 10.244.1.2-3)
//!        | vethXXXXXXXX                               | vethXXXXXXXX
//!  {p}-node1: cni0 10.244.0.1/24                {p}-node2: cni0 10.244.1.1/24
//!             flannel.1 10.244.0.0/32 (vxlan 1)            flannel.1 10.244.1.0/32
//!             ul0 172.27.0.11/20 ------------- veth ------ ul0 172.27.16.10/20
//! ```
//!
//! Why it is built the way it is:
//! - Every link is created directly inside the namespace that owns it (`ip -n NODE link add ...
//!   peer name eth0 netns POD`), never created in the root namespace and moved: the lab must not
//!   touch, even briefly, the interfaces of the machine it runs on, and a name created in the root
//!   namespace could collide with (or be mistaken for) a real interface there.
//! - Namespace names derive from a prefix (`np` by default) so tests can run private copies side by
//!   side; [`Lab::down`] deletes exactly the names of the plan, never "everything starting with
//!   the prefix" (prefix `np` must not remove a test's `npt123-...` namespaces).
//! - Host veth names are `veth` + 8 hex digits, as CNI plugins name them, but derived from an FNV-1a
//!   hash of prefix and pod name instead of randomness, so a rebuilt lab has the same names and
//!   [`Lab::up`] can recognise a lab that is already complete and leave it alone.
//! - MACs are fixed too (pods `0a:58:` + IP, as the CNI bridge plugin assigns them; `flannel.1`
//!   `0e:6e:70:66:00:0N`), so the static FDB/neighbour entries flannel would program can be written
//!   before the peer exists, and flow records are reproducible.
//! - The two underlay addresses are deliberately in different /20s (172.27.0.0/20 and
//!   172.27.16.0/20), like nodes in different subnets; a host route on each side makes the peer
//!   reachable over `ul0`.
//! - Node namespaces forward IPv4 (they route between `cni0` and `flannel.1`), and
//!   `bridge-nf-call-*` is switched off there when br_netfilter is loaded, so the host's iptables
//!   rules never see bridged pod traffic.
//! - Everything is driven by the `ip`, `bridge` and `sh` binaries (iproute2), each wrapped in
//!   `timeout` so a stuck command cannot hang a test. Traffic generation only ever addresses lab
mod error;
pub mod image;
mod process;
mod topology;
mod traffic;

pub use error::LabError;
pub use process::stop_process_group;
pub use topology::{Lab, LabStatus, PodInfo, POD_MTU, UNDERLAY_MTU, VXLAN_PORT};
pub use traffic::{TrafficOpts, TrafficReport};
