//! Where things live unless told otherwise: shared by the daemon, the CLI and the services, so none
//! of them has to import another for a default.

/// Where bpffs is mounted (netpath mounts it when absent).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// netpath's pins: maps (counters survive restarts) and, with `--persist`, links.
pub const PIN_DIR: &str = "/sys/fs/bpf/netpath";

/// The daemon's control API (HTTP/JSON on a unix socket, mode 0600).
pub const SOCKET: &str = "/run/netpath/netpath.sock";

/// The Prometheus exporter's address.
pub const METRICS_ADDR: &str = "127.0.0.1:9464";

/// Named network namespaces (`ip netns add NAME`) are bind mounts here.
pub const NETNS_RUN_DIR: &str = "/run/netns";
