//! The command line: what a person types, with help that teaches. Only this binary knows clap; the
//! library gets its own option types ([`RunArgs::invocation`], [`CaptureArgs::options`]).
use std::{fmt::Display, path::PathBuf, str::FromStr, time::Duration};

use clap::{
    builder::{PossibleValue, PossibleValuesParser, TypedValueParser},
    Args, Parser, Subcommand, ValueEnum,
};
use netpath::{
    capture::CaptureOptions,
    daemon::config::{Config, Invocation},
    datapath::attach::{IfaceSpec, Mode, TcHookChoice, TcxOrder},
    defaults,
    model::{flows::SortBy, Cidr, Output},
};

/// `--ip`: an address or a network (CIDR), parsed by the library.
fn cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s).map_err(|e| e.to_string())
}

/// `--pod`, `--ip` and `--port`, as `flows`, `stats` and `watch` take them.
#[derive(Args, Debug, Clone, Default)]
pub struct Select {
    /// Only the veths of this pod: a pod name, NAMESPACE/NAME, or the network namespace behind its
    /// veth (with or without a leading `PREFIX-`, as `cargo xtask lab status` lists them).
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,

    /// Only traffic from or to this address or network (CIDR): either endpoint, inner or outer.
    #[arg(long, value_name = "IP|CIDR", value_parser = cidr)]
    pub ip: Option<Cidr>,

    /// Only TCP and UDP traffic from or to this port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
}

#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// With --ip or --port, the counters are summed from the flow table (interfaces count no
    /// addresses or ports).
    #[command(flatten)]
    pub select: Select,
}

#[derive(Args, Debug, Clone)]
pub struct IfacesArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Only the veths of this pod (as `--pod` of `flows`).
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
}

/// A library enum as a clap value: its names (with help) listed in `--help` and in errors, parsed
/// with its own `FromStr`.
fn choice<T>(values: &'static [(&'static str, &'static str)]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    PossibleValuesParser::new(values.iter().map(|(name, help)| PossibleValue::new(*name).help(*help)))
        .try_map(|s| s.parse::<T>().map_err(|e| e.to_string()))
}

const OUTPUTS: &[(&str, &str)] = &[
    ("table", "Aligned columns for people"),
    ("json", "JSON (one document; `run` prints one JSON object per line)"),
];
const MODES: &[(&str, &str)] = &[
    (
        "auto",
        "TC on virtual devices (veth, bridge, vxlan), native XDP on physical NICs",
    ),
    ("tc", "TC ingress and egress"),
    ("xdp", "Native (driver) XDP for ingress, TC for egress"),
    ("xdp-generic", "Generic (skb) XDP for ingress, TC for egress"),
];
const TC_HOOKS: &[(&str, &str)] = &[
    ("auto", "tcx where the kernel has it (6.6+), clsact otherwise"),
    ("tcx", "tcx links"),
    ("clsact", "a clsact qdisc with netpath's own filter handle"),
];
const TCX_ORDERS: &[(&str, &str)] = &[
    (
        "first",
        "Before every other program: netpath sees frames before anyone can drop or rewrite them",
    ),
    (
        "last",
        "After every other program (it then sees only what they let through with TCX_NEXT)",
    ),
];
const EBPF_LOG_LEVELS: &[(&str, &str)] = &[
    ("off", "No records (the logging code is pruned by the verifier)"),
    ("error", "Failures only"),
    ("warn", "Failures and refused work (a full flow table, a failed pull)"),
    ("info", "Also rule actions (drop, redirect, mirror)"),
    ("debug", "More detail"),
    ("trace", "Everything the datapath logs"),
];
const SORTS: &[(&str, &str)] = &[("bytes", "Heaviest by bytes"), ("packets", "Heaviest by packets")];

#[derive(Parser, Debug)]
#[command(
    name = "netpath",
    version,
    about = "eBPF flow observatory for Kubernetes nodes: per-pod, per-class and per-flow counters at the driver",
    long_about = "netpath attaches XDP/TC programs to a node's CNI bridge and veths, parses every frame \
(Ethernet, VLAN/QinQ, ARP, IPv4/IPv6, ICMP, TCP/UDP, VXLAN and its inner frame) and counts it per \
interface, direction, class and flow; it also counts the packets the kernel drops, where and with \
the kernel's own reason. Counters live in maps pinned under bpffs, so `netpath stats`, `netpath flows` and `netpath \
drops` read them while `netpath run` works, and a restart continues where it left off.",
    after_help = "Examples:\n  netpath run --iface cni0 --iface veth3a1f0c2e\n  netpath run --netns node1 --iface cni0 --iface ul0:xdp -o json\n  netpath stats\n  netpath flows --class icmp --top 10\n  netpath drops --pod web-0\n  netpath down"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to interfaces and print counters every interval until Ctrl-C (or --duration).
    Run(RunArgs),
    /// Per-interface, per-direction, per-class packet and byte counters.
    Stats(StatsArgs),
    /// The flow table: one row per flow, heaviest first.
    Flows(FlowsArgs),
    /// Datapath health: flow table fill, evictions, failed inserts, malformed frames by reason.
    Status(ReadArgs),
    /// Interfaces with their veth peer (its addresses and MAC), the namespace and pod behind it, and
    /// attached programs.
    Ifaces(IfacesArgs),
    /// Follow events as they happen: flows starting and ending, ARP (unanswered, conflicting),
    /// ICMP errors with the packet they quote, new VXLAN peers, malformed frames, drops.
    Watch(WatchArgs),
    /// Where and why packets died: the kernel's own drop reason (or a netpath rule), the
    /// interface, direction, network namespace and pod, and where in the kernel; heaviest first.
    #[command(long_about = DROPS_ABOUT, after_help = DROPS_EXAMPLES)]
    Drops(DropsArgs),
    /// The node checks engineers do by hand (rp_filter, forwarding, br_netfilter, MTUs, the
    /// VXLAN FDB, veths on the bridge, the FORWARD policy, conntrack, neighbours), each with the
    /// evidence and the command that fixes it; exit 1 when one fails.
    #[command(long_about = DOCTOR_ABOUT, after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
    /// This node's cluster view: its name and VTEPs, and the VXLAN packets and bytes it sent to
    /// and received from each remote VTEP (and dropped after netpath saw them), as the
    /// Prometheus rules compare them across nodes.
    Peers(ReadArgs),
    /// Capture packets in the kernel to pcapng, by interface or pod and by class; `-w -`
    /// streams to stdout (`netpath capture --pod web -w - | tshark -r -`).
    Capture(CaptureArgs),
    /// Remove what netpath pinned: maps (and their counters) and `--persist` links (which detaches
    /// those programs). Nothing else is touched.
    Down(DownArgs),
    /// Fast-path rules: pass, drop, redirect or mirror frames by interface (or pod), direction,
    /// class, CIDR, MAC and port.
    Rule(RuleArgs),
    /// The pod-to-pod fast path: frames between pods on one bridge go straight into the target
    /// pod's namespace (bpf_redirect_peer), skipping the bridge and netfilter.
    Fastpath(FastpathArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// bpffs directory holding netpath's pinned maps.
    #[arg(long, default_value = defaults::PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    #[command(flatten)]
    pub pin: PinArgs,

    /// Remove the pins even while a `netpath run` uses them (its maps go from under it).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Interface to observe; repeat for more. A bridge means the bridge and every port on it,
    /// followed as ports come and go. Globs select by name (`veth*`, quote them). `NAME:MODE`
    /// overrides --mode for one interface (e.g. `ul0:xdp`).
    #[arg(short = 'i', long = "iface", value_name = "IF[:MODE]")]
    pub ifaces: Vec<IfaceSpec>,

    /// Never attach to interfaces matching this name or glob (repeatable).
    #[arg(long, value_name = "IF")]
    pub exclude: Vec<String>,

    /// TOML file with any of these settings (keys are the long flag names with `_`); flags given
    /// on the command line win. SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Hook: `auto` uses TC on virtual devices (veth, bridge, vxlan) and native XDP on physical
    /// NICs; XDP modes observe egress with TC.
    #[arg(long, value_parser = choice::<Mode>(MODES), default_value = "auto")]
    pub mode: Mode,

    /// Enter this named network namespace (/run/netns/NAME) before attaching.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    #[arg(short = 'o', long, value_parser = choice::<Output>(OUTPUTS), default_value = "table")]
    pub output: Output,

    /// How often to print counters (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// Stop after this long (e.g. 30s); default: run until SIGINT/SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Print nothing periodically (a node agent; read it with `netpath stats` or the API).
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub pin: PinArgs,

    /// Keep maps private to this process instead of pinning them (counters die with it).
    #[arg(long)]
    pub no_pin: bool,

    /// Pin the attachments too, and leave them attached on exit: the programs keep counting
    /// while the daemon restarts, and the next daemon re-adopts them. `netpath down` removes them.
    #[arg(long)]
    pub persist: bool,

    /// Flow table capacity (LRU: the coldest flows are evicted when it is full).
    #[arg(long, default_value_t = netpath_common::DEFAULT_FLOW_TABLE_SIZE, value_name = "N")]
    pub flow_table_size: u32,

    /// UDP destination ports decoded as VXLAN (up to 4).
    #[arg(long = "vxlan-port", value_delimiter = ',', default_values_t = [netpath_common::VXLAN_PORT_FLANNEL, netpath_common::VXLAN_PORT_IANA], value_name = "PORT")]
    pub vxlan_ports: Vec<u16>,

    /// Kernel events allowed per second, per CPU and event kind (0: no limit). An ARP storm then
    /// costs the node at most this many ring-buffer records per CPU; the rest are counted as
    /// suppressed.
    #[arg(long, default_value_t = netpath_common::DEFAULT_EVENTS_PER_SEC, value_name = "N")]
    pub events_rate: u32,

    /// Burst allowed above --events-rate.
    #[arg(long, default_value_t = netpath_common::DEFAULT_EVENTS_BURST, value_name = "N")]
    pub events_burst: u32,

    /// Control API socket (HTTP/JSON); `none` disables it.
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH")]
    pub socket: PathBuf,

    /// TC mechanism: tcx links (kernel 6.6+) or a clsact qdisc with netpath's own filter handle
    /// and priority; `auto` picks tcx where the kernel has it.
    #[arg(long, value_parser = choice::<TcHookChoice>(TC_HOOKS), default_value = "auto")]
    pub tc_hook: TcHookChoice,

    /// Where netpath runs among other TC programs on the same hook (tcx: link order; clsact:
    /// filter priority 1 or 0xfff0).
    #[arg(long, value_parser = choice::<TcxOrder>(TCX_ORDERS), default_value = "first")]
    pub tcx_order: TcxOrder,

    /// Replace an XDP program that netpath did not load (otherwise refused, naming its id).
    #[arg(long)]
    pub force: bool,

    /// Prometheus exporter address (`none` to disable). Bound in the host's namespace even with
    /// --netns.
    #[arg(long, default_value = defaults::METRICS_ADDR, value_name = "ADDR")]
    pub metrics: String,

    /// Per-flow series for the N heaviest flows (by bytes).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub metrics_flows: usize,

    /// The datapath's own log records (refused flow inserts, failed skb pulls, rule actions) up to
    /// this level, logged as `netpath: ...` lines like the daemon's. `off` (the default) builds
    /// them out of the programs at load time, so they cost nothing.
    #[arg(long, value_name = "LEVEL", value_parser = choice::<log::LevelFilter>(EBPF_LOG_LEVELS), default_value = "off")]
    pub ebpf_log: log::LevelFilter,

    /// Trace the kernel's packet drops with the reason it gives (tp_btf/kfree_skb): `netpath
    /// drops`, `watch --kind drop`, per-flow drop counts and netpath_drops_total. Where the kernel
    /// cannot (no BTF, no drop reasons) the daemon says so and runs without; drops by netpath's own
    /// rules are counted either way.
    #[arg(long, value_name = "on|off", default_value = "on", action = clap::ArgAction::Set, value_parser = netpath::daemon::config::parse_on_off)]
    pub drops: bool,

    /// How often the daemon runs the doctor's checks (rp_filter, MTUs, the VXLAN FDB, ...; see
    /// `netpath doctor`) with what it observed: `netpath_doctor_status`, `/v1/doctor`, `status`,
    /// and a `doctor` event when a check changes state. `0` or `off` never runs them.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = netpath::daemon::config::parse_doctor_interval)]
    pub doctor_interval: ::std::option::Option<Duration>,

    /// Export flow records over IPFIX (RFC 7011, UDP) to these collectors: `HOST:PORT`, several
    /// separated by commas or by repeating the flag. Sent from the host's namespace even with
    /// --netns. An address that does not parse or resolve is an error (exit 2).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    pub ipfix: Vec<String>,

    /// IPFIX active timeout: a flow still going is reported this often (its packets and bytes
    /// since its previous record).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ipfix_interval: Duration,

    /// IPFIX idle timeout: a flow without a packet for this long has ended and its last record is
    /// exported (FIN or RST end it at once).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ipfix_idle_timeout: Duration,

    /// How often the IPFIX templates are sent again (UDP collectors that start later learn them).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ipfix_template_interval: Duration,
    /// This node's name in the cluster view (`netpath_node_info{node_name,vtep}`,
    /// `/v1/vxlan-peers`, `netpath peers`), which the Prometheus rules use to name node pairs.
    /// Default: the `--netns` name, else the host name.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// CRI runtime socket to name pods (default: containerd's or CRI-O's, if present).
    #[arg(long, value_name = "PATH")]
    pub cri_socket: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    #[command(flatten)]
    pub pin: PinArgs,

    /// Name interfaces as seen from this network namespace (where `run --netns` attached); only
    /// used when no daemon answers on --socket.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// A running daemon's control API; without one, the pinned maps are read directly.
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH")]
    pub socket: PathBuf,

    #[arg(short = 'o', long, value_parser = choice::<Output>(OUTPUTS), default_value = "table")]
    pub output: Output,
}

const DROPS_ABOUT: &str = "\
Where and why packets died: every packet the kernel frees as dropped, counted per interface, \
direction, network namespace and pod, by the kernel's own drop reason and by where in the kernel \
it was freed; heaviest first. `netpath run` traces the kfree_skb tracepoint through BTF \
(tp_btf/kfree_skb: no tracefs or debugfs) and counts netpath's own rule drops the same way.

A drop reason is the kernel's word for why it dropped a packet: the value of `enum \
skb_drop_reason` it hands to kfree_skb. NETFILTER_DROP is an iptables/nftables rule, IP_RPFILTER \
the reverse-path filter (rp_filter), NO_SOCKET a port nothing listens on, NEIGH_FAILED a next hop \
whose MAC never resolved, OTHERHOST a frame for another host's MAC. The names come from the \
running kernel (its BTF, /sys/kernel/btf/vmlinux), never from a list built into netpath: the enum \
grows and changes between kernel versions, so --reason takes this kernel's names (`netpath drops \
--reasons` lists them; any case, with or without SKB_DROP_REASON_). Reasons a subsystem defines \
(openvswitch, mac80211) show as `REASON (subsystem)`.

NOT_SPECIFIED is a drop the kernel gave no reason for: it is still counted, by LOCATION (the \
kernel function that freed the packet, `function+0xoffset` from /proc/kallsyms), so one such drop \
site can be told from another. NETPATH_RULE is a packet a netpath rule dropped (`netpath rule add \
... --drop`); its LOCATION is `rule N`, the rule's id in `netpath rule list`.

With a daemon answering on --socket, the rows are its (interfaces and pods named as it sees \
them). Without one, the pinned drop table is read: interfaces of the daemon's namespace are named \
as the daemon recorded them; drops in other network namespaces (inside a pod, a router namespace) \
show as ifN in the namespace's /run/netns name, or netns:[INODE]. JSON rows (-o json) carry iface, \
ifindex, direction, netns, pod, pod_namespace, reason, subsystem, location, packets, bytes.";

const DROPS_EXAMPLES: &str = "\
Examples:
  netpath drops                              every drop site, heaviest first
  netpath drops --pod web-0                  drops on a pod's veth or inside its namespace
  netpath drops --reason netfilter_drop      what iptables/nftables dropped, where
  netpath drops --reason NOT_SPECIFIED       drops without a reason, by kernel location
  netpath drops --iface cni0 -o json         as JSON rows
  netpath drops --reasons                    this kernel's reason names
  netpath watch --kind drop                  drops as they happen";

#[derive(Args, Debug, Clone)]
pub struct DropsArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Only drops of this pod: on its veth, or inside its network namespace (a pod name,
    /// NAMESPACE/NAME, or its network namespace, as --pod of `flows`).
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,

    /// Only drops on this interface (as the IFACE column names it).
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    /// Only drops with this reason: a name of this kernel's `enum skb_drop_reason`
    /// (NETFILTER_DROP, IP_RPFILTER, NO_SOCKET, NOT_SPECIFIED, ...) or NETPATH_RULE.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,

    /// List the drop reasons this kernel names (read from its BTF) instead of drops.
    #[arg(long, conflicts_with_all = ["pod", "iface", "reason"])]
    pub reasons: bool,
}

const DOCTOR_ABOUT: &str = "\
The checks engineers make one by one on a node when pods cannot talk, each as rows of CHECK, \
STATUS (ok, warn, fail), SUBJECT (an interface, a peer, a table), EVIDENCE and FIX, the exact \
command that fixes it. The exit status is 1 when a check fails, 0 otherwise.

Checks: rp_filter (strict reverse-path filtering, effective max(all, interface)), ip_forward, \
br_netfilter (loaded, bridge-nf-call-iptables=1), mtu (pod veths <= cni0 <= flannel.1 = underlay \
- 50), vxlan_fdb (each peer subnet's VTEP: neighbour MAC and FDB entry, VXLAN traffic to it), \
veth_bridge (pod veths up and on the bridge), forward_policy (iptables FORWARD policy DROP), \
conntrack (warn 90%, fail 95% full), neigh_table (against gc_thresh3), arp_unanswered and drops \
(what the datapath saw).

Evidence joins state and traffic: strict rp_filter is a warning until packets die of it \
(IP_RPFILTER drops on that interface), then a failure. With a daemon answering on --socket (and \
no --netns), its last run is shown, with every traffic fact it has; otherwise the checks run here, \
in --netns when given, with the drops and flows of the pinned maps when there are some.";

const DOCTOR_EXAMPLES: &str = "\
Examples:
  netpath doctor                             every check (from the daemon when one answers)
  netpath doctor --netns np-node1            the checks inside a node's namespace
  netpath doctor --check rp_filter,mtu       two checks
  netpath doctor -o json                     as JSON rows (check, status, subject, evidence, fix)";

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Only these checks (comma-separated or repeated): rp_filter, ip_forward, br_netfilter, mtu,
    /// vxlan_fdb, veth_bridge, forward_policy, conntrack, neigh_table, arp_unanswered, drops.
    #[arg(long = "check", value_name = "ID,...")]
    pub checks: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// bpffs directory of the maps (used when no daemon answers on --socket).
    #[arg(long, default_value = defaults::PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// The daemon's control API (events come through it; it is the ring buffer's one reader).
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH")]
    pub socket: PathBuf,

    /// Only events on this interface.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    #[command(flatten)]
    pub select: Select,

    /// Only these kinds: flow_new, flow_end, arp, arp_unanswered, arp_conflict, icmp_error,
    /// vxlan_peer, malformed, drop (a packet the kernel or a netpath rule dropped, with the
    /// reason; rate-limited like the others), doctor (a `netpath doctor` check changed state).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub kind: Vec<String>,

    /// `text` (tcpdump-like lines) or `json` (one object per line).
    #[arg(short = 'o', long, value_enum, default_value_t = WatchOutput::Text)]
    pub output: WatchOutput,

    /// Stop after COUNT events.
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,

    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchOutput {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Capture on this interface (repeatable).
    #[arg(long, value_name = "IF")]
    pub iface: Vec<String>,

    /// Capture on the veth of this pod (name, namespace/name, or netns name).
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,

    /// Only these traffic classes (arp, icmp, icmp6, tcp, udp, vxlan, other_ip, other_l2, malformed).
    #[arg(long, value_delimiter = ',', value_name = "CLASS,...")]
    pub kind: Vec<String>,

    /// Bytes of each packet to keep.
    #[arg(short = 's', long, default_value_t = 65535, value_name = "N")]
    pub snaplen: u32,

    /// Stop after COUNT packets.
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,

    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// pcapng file to write, or `-` for stdout.
    #[arg(short = 'w', long, value_name = "FILE")]
    pub write: String,

    /// bpffs directory of the maps.
    #[arg(long, default_value = defaults::PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// The daemon's control API (to find a pod's interface).
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH")]
    pub socket: PathBuf,

    /// Network namespace the interfaces live in (where the daemon attached).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Only flows seen on this interface.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    /// Only flows of this class (arp, icmp, icmp6, tcp, udp, vxlan, other_ip).
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,

    /// Show at most N flows.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    #[arg(long, value_parser = choice::<SortBy>(SORTS), default_value = "bytes")]
    pub sort: SortBy,

    #[command(flatten)]
    pub select: Select,

    /// Only flows still going: a packet in the last 30 s and no FIN or RST seen (ended flows stay
    /// in the table until the LRU needs their room).
    #[arg(long)]
    pub active: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    #[command(subcommand)]
    pub action: RuleAction,

    /// The daemon's control API (rules are managed by the daemon).
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH", global = true)]
    pub socket: PathBuf,

    #[arg(short = 'o', long, value_parser = choice::<Output>(OUTPUTS), default_value = "table", global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RuleAction {
    /// Add a rule, e.g. `rule add --iface vethA --class icmp --redirect vethB`.
    Add(Box<RuleAddArgs>),
    /// The rules in evaluation order, with hit counters.
    List,
    /// Delete a rule by id.
    Del {
        /// The rule's id (from `rule list`).
        id: u32,
    },
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["pass", "drop", "redirect", "mirror"])))]
pub struct RuleAddArgs {
    /// Match frames seen on this interface (or the veth of this pod); any interface if absent.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Match frames of this pod (name, namespace/name or netns name): its veth.
    #[arg(long, value_name = "POD", conflicts_with = "iface")]
    pub pod: Option<String>,
    /// ingress, egress or any.
    #[arg(long, value_name = "DIR")]
    pub direction: Option<String>,
    /// arp, icmp, icmp6, vxlan, tcp, udp, ... or any.
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    #[arg(long, value_name = "CIDR")]
    pub src: Option<String>,
    #[arg(long, value_name = "CIDR")]
    pub dst: Option<String>,
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<String>,
    /// TCP/UDP destination port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Lower runs first (default 1000).
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// Accept matching frames (no later rule applies).
    #[arg(long)]
    pub pass: bool,
    /// Drop matching frames (counted).
    #[arg(long)]
    pub drop: bool,
    /// Deliver matching frames to IF instead (into its pod when IF is a pod's veth).
    #[arg(long, value_name = "IF")]
    pub redirect: Option<String>,
    /// Send a copy of matching frames to IF.
    #[arg(long, value_name = "IF")]
    pub mirror: Option<String>,
    /// Accept a drop or redirect that matches every frame (no --class, --src, --dst, --dst-mac or
    /// --port): it cuts all traffic of the interface (or node) off.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FastpathArgs {
    #[command(subcommand)]
    pub action: FastpathAction,

    /// The daemon's control API.
    #[arg(long, default_value = defaults::SOCKET, value_name = "PATH", global = true)]
    pub socket: PathBuf,

    #[arg(short = 'o', long, value_parser = choice::<Output>(OUTPUTS), default_value = "table", global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug, Clone)]
pub enum FastpathAction {
    /// Redirect pod-to-pod frames on this bridge straight into the target pod.
    Enable {
        #[arg(long, value_name = "BRIDGE")]
        bridge: String,
    },
    /// Back to the plain bridge.
    Disable,
    /// Whether it is on, the pods it knows, and how many frames took it.
    Status,
}

impl RunArgs {
    /// What the daemon needs to know of this command line; `given` names the flags typed (they win
    /// over the config file).
    pub fn invocation(&self, given: Vec<String>) -> Invocation {
        Invocation {
            flags: Config {
                ifaces: self.ifaces.clone(),
                exclude: self.exclude.clone(),
                mode: self.mode,
                netns: self.netns.clone(),
                output: self.output,
                interval: self.interval,
                duration: self.duration,
                pin_dir: self.pin.pin_dir.clone(),
                no_pin: self.no_pin,
                persist: self.persist,
                flow_table_size: self.flow_table_size,
                vxlan_ports: self.vxlan_ports.clone(),
                socket: self.socket.clone(),
                tc_hook: self.tc_hook,
                tcx_order: self.tcx_order,
                force: self.force,
                cri_socket: self.cri_socket.clone(),
                quiet: self.quiet,
                events_rate: self.events_rate,
                events_burst: self.events_burst,
                metrics: self.metrics.clone(),
                metrics_flows: self.metrics_flows,
                ebpf_log: self.ebpf_log,
                drops: self.drops,
                doctor_interval: self.doctor_interval,
                ipfix: self.ipfix.clone(),
                ipfix_interval: self.ipfix_interval,
                ipfix_idle_timeout: self.ipfix_idle_timeout,
                ipfix_template_interval: self.ipfix_template_interval,
                node_name: self.node_name.clone(),
            },
            config_file: self.config.clone(),
            given,
        }
    }
}

impl CaptureArgs {
    pub fn options(&self) -> CaptureOptions {
        CaptureOptions {
            ifaces: self.iface.clone(),
            pod: self.pod.clone(),
            kinds: self.kind.clone(),
            snaplen: self.snaplen,
            count: self.count,
            duration: self.duration,
            write: self.write.clone(),
            pin_dir: self.pin_dir.clone(),
            socket: self.socket.clone(),
            netns: self.netns.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A flag's default and the daemon's default for the same setting agree, so a setting taken
    /// from neither the command line nor the file means the same thing either way.
    #[test]
    fn flag_defaults_are_the_daemon_defaults() {
        let Command::Run(args) = Cli::parse_from(["netpath", "run"]).command else {
            unreachable!()
        };
        assert_eq!(args.invocation(Vec::new()).flags, Config::default());
    }

    /// The names `--help` lists are the names the library parses, and print back the same.
    #[test]
    fn every_listed_choice_is_a_library_value() {
        fn check<T: FromStr + Display>(values: &[(&str, &str)])
        where
            T::Err: Display,
        {
            for (name, _) in values {
                let v = name.parse::<T>().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(v.to_string().to_lowercase(), *name);
            }
        }
        check::<Output>(OUTPUTS);
        check::<Mode>(MODES);
        check::<TcHookChoice>(TC_HOOKS);
        check::<TcxOrder>(TCX_ORDERS);
        check::<SortBy>(SORTS);
        check::<log::LevelFilter>(EBPF_LOG_LEVELS);
    }

    #[test]
    fn doctor_interval_takes_a_duration_or_off() {
        let run = |v: &str| match Cli::try_parse_from(["netpath", "run", "--doctor-interval", v]).map(|c| c.command) {
            Ok(Command::Run(a)) => Ok(a.doctor_interval),
            Ok(_) => unreachable!(),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(run("1m"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(run("off"), Ok(None));
        assert_eq!(run("0"), Ok(None));
        let e = run("often").unwrap_err();
        assert!(e.contains("--doctor-interval") && e.contains("often"), "{e}");
    }

    #[test]
    fn drops_take_the_read_options_and_their_filters() {
        let Command::Drops(d) = Cli::parse_from([
            "netpath",
            "drops",
            "--pod",
            "web-0",
            "--iface",
            "cni0",
            "--reason",
            "NO_SOCKET",
            "-o",
            "json",
            "--socket",
            "/tmp/s",
            "--pin-dir",
            "/tmp/p",
        ])
        .command
        else {
            unreachable!()
        };
        assert_eq!(
            (d.pod.as_deref(), d.iface.as_deref(), d.reason.as_deref(), d.reasons),
            (Some("web-0"), Some("cni0"), Some("NO_SOCKET"), false)
        );
        assert_eq!((d.read.output, d.read.socket.to_str()), (Output::Json, Some("/tmp/s")));
        let Command::Drops(d) = Cli::parse_from(["netpath", "drops", "--reasons", "-o", "json"]).command else {
            unreachable!()
        };
        assert!(d.reasons);
        assert!(Cli::try_parse_from(["netpath", "drops", "--reasons", "--reason", "X"]).is_err());
        // The help teaches reasons: the kernel's names, NOT_SPECIFIED by location, NETPATH_RULE.
        let help = Cli::command()
            .find_subcommand_mut("drops")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "enum skb_drop_reason",
            "kernel versions",
            "NOT_SPECIFIED",
            "NETPATH_RULE",
            "--reasons",
            "Examples:",
        ] {
            assert!(help.contains(needle), "{needle}:\n{help}");
        }
    }

    #[test]
    fn watch_takes_the_drop_kind() {
        let Command::Watch(w) = Cli::parse_from(["netpath", "watch", "--kind", "drop,arp"]).command else {
            unreachable!()
        };
        assert_eq!(
            netpath::model::events::EventFilter::parse_kinds(&w.kind).unwrap(),
            ["drop", "arp"]
        );
        let help = Cli::command()
            .find_subcommand_mut("watch")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("drop"), "{help}");
    }

    #[test]
    fn library_values_parse_and_unknown_ones_list_the_choices() {
        let Command::Run(args) = Cli::parse_from([
            "netpath",
            "run",
            "--mode",
            "xdp-generic",
            "--tc-hook",
            "clsact",
            "-o",
            "json",
        ])
        .command
        else {
            unreachable!()
        };
        assert_eq!(
            (args.mode, args.tc_hook, args.output),
            (Mode::XdpGeneric, TcHookChoice::Clsact, Output::Json)
        );
        let e = Cli::try_parse_from(["netpath", "run", "--mode", "fast"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auto") && e.contains("xdp-generic"), "{e}");
    }
}
