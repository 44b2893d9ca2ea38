//! The daemon's configuration: every `netpath run` flag, from a TOML file (`--config`) with the
//! command line on top. SIGHUP re-reads the file; what can change without a restart is applied
//! (interfaces, excludes, modes, VXLAN ports, interval), the rest is reported as needing one.
use std::{path::PathBuf, time::Duration};

use netpath_common::MAX_VXLAN_PORTS;
use serde::Deserialize;

use crate::{
    datapath::attach::{IfaceSpec, Mode, TcHookChoice, TcxOrder},
    defaults,
    error::{Error, Result},
    model::Output,
};

/// The file format. Field names follow the long flags with `_` for `-`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub iface: Option<OneOrMany<String>>,
    pub exclude: Option<OneOrMany<String>>,
    pub mode: Option<String>,
    pub netns: Option<String>,
    pub output: Option<String>,
    pub interval: Option<String>,
    pub pin_dir: Option<PathBuf>,
    pub no_pin: Option<bool>,
    pub persist: Option<bool>,
    pub flow_table_size: Option<u32>,
    pub vxlan_port: Option<OneOrMany<u16>>,
    pub socket: Option<PathBuf>,
    pub tc_hook: Option<String>,
    pub tcx_order: Option<String>,
    pub force: Option<bool>,
    pub cri_socket: Option<PathBuf>,
    pub quiet: Option<bool>,
    pub duration: Option<String>,
    pub events_rate: Option<u32>,
    pub events_burst: Option<u32>,
    pub metrics: Option<String>,
    pub metrics_flows: Option<usize>,
    pub ebpf_log: Option<String>,
    pub drops: Option<String>,
    pub doctor_interval: Option<String>,
    pub ipfix: Option<OneOrMany<String>>,
    pub ipfix_interval: Option<String>,
    pub ipfix_idle_timeout: Option<String>,
    pub ipfix_template_interval: Option<String>,
    pub node_name: Option<String>,
}

/// A setting that takes one value or a list (`iface = "cni0"` or `iface = ["cni0", "ul0:xdp"]`), as
/// its flag takes one or is repeated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a value or a list of values")]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The effective configuration of a daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub ifaces: Vec<IfaceSpec>,
    pub exclude: Vec<String>,
    pub mode: Mode,
    pub netns: Option<String>,
    pub output: Output,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub pin_dir: PathBuf,
    pub no_pin: bool,
    pub persist: bool,
    pub flow_table_size: u32,
    pub vxlan_ports: Vec<u16>,
    pub socket: PathBuf,
    pub tc_hook: TcHookChoice,
    pub tcx_order: TcxOrder,
    pub force: bool,
    pub cri_socket: Option<PathBuf>,
    pub quiet: bool,
    pub events_rate: u32,
    pub events_burst: u32,
    pub metrics: String,
    pub metrics_flows: usize,
    /// The datapath's own log records (aya-log: refused inserts, failed pulls, rule actions) up to
    /// this level; `Off` leaves them out of the programs altogether.
    pub ebpf_log: log::LevelFilter,
    /// Trace the kernel's drops (`kfree_skb`) with their reasons (`--drops on|off`).
    pub drops: bool,
    /// How often the doctor's checks run (`--doctor-interval`); None: never (`0` or `off`).
    pub doctor_interval: Option<Duration>,
    /// IPFIX collectors (`--ipfix HOST:PORT[,HOST:PORT]`, as typed; resolved by
    /// [`Config::ipfix_options`]); none: no export.
    pub ipfix: Vec<String>,
    /// Active timeout, idle timeout and template re-send period of the IPFIX export.
    pub ipfix_interval: Duration,
    pub ipfix_idle_timeout: Duration,
    pub ipfix_template_interval: Duration,
    /// This node's name in the cluster view (`netpath_node_info`, `/v1/vxlan-peers`); None:
    /// the `--netns` name, else the host name ([`Config::node_name`]).
    pub node_name: Option<String>,
}

impl Default for Config {
    /// What `netpath run` does when a setting is given neither as a flag nor in the file.
    fn default() -> Self {
        Config {
            ifaces: Vec::new(),
            exclude: Vec::new(),
            mode: Mode::Auto,
            netns: None,
            output: Output::Table,
            interval: Duration::from_secs(1),
            duration: None,
            pin_dir: defaults::PIN_DIR.into(),
            no_pin: false,
            persist: false,
            flow_table_size: netpath_common::DEFAULT_FLOW_TABLE_SIZE,
            vxlan_ports: vec![netpath_common::VXLAN_PORT_FLANNEL, netpath_common::VXLAN_PORT_IANA],
            socket: defaults::SOCKET.into(),
            tc_hook: TcHookChoice::Auto,
            tcx_order: TcxOrder::First,
            force: false,
            cri_socket: None,
            quiet: false,
            events_rate: netpath_common::DEFAULT_EVENTS_PER_SEC,
            events_burst: netpath_common::DEFAULT_EVENTS_BURST,
            metrics: defaults::METRICS_ADDR.into(),
            metrics_flows: 100,
            ebpf_log: log::LevelFilter::Off,
            drops: true,
            doctor_interval: Some(DOCTOR_INTERVAL),
            ipfix: Vec::new(),
            ipfix_interval: crate::service::ipfix::DEFAULT_INTERVAL,
            ipfix_idle_timeout: crate::service::ipfix::DEFAULT_IDLE_TIMEOUT,
            ipfix_template_interval: crate::service::ipfix::DEFAULT_TEMPLATE_INTERVAL,
            node_name: None,
        }
    }
}

/// How `netpath run` was started: the settings its flags give (typed or defaulted), the config file,
/// and which flags were typed (those win over the file). SIGHUP resolves it again.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub flags: Config,
    pub config_file: Option<PathBuf>,
    /// Long names (with `-`) of the flags typed on the command line.
    pub given: Vec<String>,
}

impl Invocation {
    /// The effective configuration: the file (if any) read now, under the typed flags.
    pub fn resolve(&self) -> Result<Config> {
        let file = match &self.config_file {
            Some(p) => Some((p.as_path(), read_file(p)?)),
            None => None,
        };
        Config::resolve(&self.flags, file, &|flag| self.given.iter().any(|g| g == flag))
    }
}

fn bad(file: &std::path::Path, what: impl std::fmt::Display) -> Error {
    Error::BadArgument(format!("config {}: {what}", file.display()))
}

pub fn read_file(path: &std::path::Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    toml::from_str(&text).map_err(|e| bad(path, e.to_string().trim_end()))
}

impl Config {
    /// Merge: a flag given on the command line wins over the file, the file over defaults.
    /// `given` tells which flags the user actually typed.
    pub fn resolve(
        flags: &Config,
        file: Option<(&std::path::Path, FileConfig)>,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<Config> {
        let mut c = flags.clone();
        if let Some((path, f)) = file {
            macro_rules! take {
                ($flag:literal, $field:ident, $value:expr) => {
                    take!($flag, $field, $field, $value)
                };
                ($flag:literal, $file:ident, $field:ident, $value:expr) => {
                    if !given($flag) {
                        if let Some(v) = f.$file.clone() {
                            let value = ($value)(v)?;
                            c.$field = value;
                        }
                    }
                };
            }
            take!("iface", iface, ifaces, |v: OneOrMany<String>| v
                .into_vec()
                .iter()
                .map(|s| s.parse::<IfaceSpec>().map_err(|e| bad(path, format!("iface: {e}"))))
                .collect::<Result<Vec<_>>>());
            take!("exclude", exclude, |v: OneOrMany<String>| Ok::<_, Error>(v.into_vec()));
            take!("mode", mode, |v: String| v.parse::<Mode>().map_err(|e| bad(path, e)));
            take!("netns", netns, |v: String| Ok::<_, Error>(Some(v)));
            take!("output", output, |v: String| v
                .parse::<Output>()
                .map_err(|e| bad(path, e)));
            take!("interval", interval, |v: String| humantime::parse_duration(&v)
                .map_err(|e| bad(path, format!("interval: {e}"))));
            take!("pin-dir", pin_dir, |v: PathBuf| Ok::<_, Error>(v));
            take!("no-pin", no_pin, |v: bool| Ok::<_, Error>(v));
            take!("persist", persist, |v: bool| Ok::<_, Error>(v));
            take!("flow-table-size", flow_table_size, |v: u32| Ok::<_, Error>(v));
            take!(
                "vxlan-port",
                vxlan_port,
                vxlan_ports,
                |v: OneOrMany<u16>| Ok::<_, Error>(v.into_vec())
            );
            take!("socket", socket, |v: PathBuf| Ok::<_, Error>(v));
            take!("tc-hook", tc_hook, |v: String| v
                .parse::<TcHookChoice>()
                .map_err(|e| bad(path, e)));
            take!("tcx-order", tcx_order, |v: String| v
                .parse::<TcxOrder>()
                .map_err(|e| bad(path, e)));
            take!("force", force, |v: bool| Ok::<_, Error>(v));
            take!("cri-socket", cri_socket, |v: PathBuf| Ok::<_, Error>(Some(v)));
            take!("quiet", quiet, |v: bool| Ok::<_, Error>(v));
            take!("duration", duration, |v: String| humantime::parse_duration(&v)
                .map(Some)
                .map_err(|e| bad(path, format!("duration: {e}"))));
            take!("metrics", metrics, |v: String| Ok::<_, Error>(v));
            take!("events-rate", events_rate, |v: u32| Ok::<_, Error>(v));
            take!("events-burst", events_burst, |v: u32| Ok::<_, Error>(v));
            take!("metrics-flows", metrics_flows, |v: usize| Ok::<_, Error>(v));
            take!("ebpf-log", ebpf_log, |v: String| v.parse::<log::LevelFilter>().map_err(
                |_| bad(path, format!("ebpf_log '{v}' (off, error, warn, info, debug, trace)"))
            ));
            take!("drops", drops, |v: String| parse_on_off(&v)
                .map_err(|e| bad(path, format!("drops: {e}"))));
            take!("doctor-interval", doctor_interval, |v: String| parse_doctor_interval(
                &v
            )
            .map_err(|e| bad(path, format!("doctor_interval: {e}"))));
            take!("ipfix", ipfix, |v: OneOrMany<String>| Ok::<_, Error>(v.into_vec()));
            take!("ipfix-interval", ipfix_interval, |v: String| humantime::parse_duration(
                &v
            )
            .map_err(|e| bad(path, format!("ipfix_interval: {e}"))));
            take!("ipfix-idle-timeout", ipfix_idle_timeout, |v: String| {
                humantime::parse_duration(&v).map_err(|e| bad(path, format!("ipfix_idle_timeout: {e}")))
            });
            take!("ipfix-template-interval", ipfix_template_interval, |v: String| {
                humantime::parse_duration(&v).map_err(|e| bad(path, format!("ipfix_template_interval: {e}")))
            });
            take!("node-name", node_name, |v: String| Ok::<_, Error>(Some(v)));
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.ifaces.is_empty() {
            return Err(Error::BadArgument(
                "no interface to observe: give --iface (or `iface = [...]` in the config file)".into(),
            ));
        }
        if self.interval.is_zero() {
            return Err(Error::BadArgument("interval must be positive".into()));
        }
        if self.persist && self.no_pin {
            return Err(Error::BadArgument(
                "--persist keeps programs attached through pinned links; it cannot go with --no-pin".into(),
            ));
        }
        if self.persist && self.tc_hook == TcHookChoice::Clsact {
            return Err(Error::BadArgument(
                "--persist needs tcx or XDP links (bpffs-pinnable); clsact filters cannot be pinned".into(),
            ));
        }
        for p in self
            .ifaces
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.exclude.iter().map(String::as_str))
        {
            glob::Pattern::new(p).map_err(|e| Error::BadArgument(format!("bad interface pattern '{p}': {e}")))?;
        }
        if let Some(n) = &self.node_name {
            if n.is_empty() || n.chars().any(char::is_control) {
                return Err(Error::BadArgument(format!(
                    "--node-name {n:?}: give a non-empty name without control characters"
                )));
            }
        }
        self.datapath_config()?;
        self.ipfix_options()?;
        Ok(())
    }

    /// The IPFIX export this configuration asks for (None without `--ipfix`): the collectors
    /// resolved now. A bad address or a duration under 1 s is bad input (exit 2).
    pub fn ipfix_options(&self) -> Result<Option<crate::service::ipfix::IpfixOptions>> {
        let collectors = crate::service::ipfix::parse_collectors(&self.ipfix)?;
        if collectors.is_empty() {
            return Ok(None);
        }
        let o = crate::service::ipfix::IpfixOptions {
            collectors,
            interval: self.ipfix_interval,
            idle_timeout: self.ipfix_idle_timeout,
            template_interval: self.ipfix_template_interval,
            ..Default::default()
        };
        o.validate()?;
        Ok(Some(o))
    }

    /// This node's name in the cluster view: `--node-name`, else the `--netns` name (a lab's
    /// nodes share one host), else the host name.
    pub fn node_name(&self) -> String {
        match self.node_name.as_ref().or(self.netns.as_ref()) {
            Some(n) => n.clone(),
            None => host_name(),
        }
    }

    /// The runtime configuration the datapath reads (`NP_CONFIG`), for programs attached in the
    /// calling thread's network namespace.
    pub fn datapath_config(&self) -> Result<netpath_common::Config> {
        let mut c = vxlan_config(&self.vxlan_ports)?;
        c.events_per_sec = self.events_rate;
        c.events_burst = self.events_burst;
        // Inode numbers of namespaces fit 32 bits (the kernel's `ns_common.inum` is an unsigned int).
        c.netns = crate::node::netns::own_inode().unwrap_or(0) as u32;
        Ok(c)
    }

    /// Settings that a SIGHUP cannot change in a running daemon.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.netns != new.netns {
            v.push("netns");
        }
        if self.pin_dir != new.pin_dir || self.no_pin != new.no_pin {
            v.push("pin-dir");
        }
        if self.flow_table_size != new.flow_table_size {
            v.push("flow-table-size");
        }
        if self.socket != new.socket {
            v.push("socket");
        }
        if self.persist != new.persist {
            v.push("persist");
        }
        if self.metrics != new.metrics {
            v.push("metrics");
        }
        if self.ebpf_log != new.ebpf_log {
            v.push("ebpf-log");
        }
        if self.drops != new.drops {
            v.push("drops");
        }
        if self.ipfix != new.ipfix
            || self.ipfix_interval != new.ipfix_interval
            || self.ipfix_idle_timeout != new.ipfix_idle_timeout
            || self.ipfix_template_interval != new.ipfix_template_interval
        {
            v.push("ipfix");
        }
        if self.node_name != new.node_name {
            v.push("node-name");
        }
        v
    }
}

/// The host name (`unknown` if the kernel gives none).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer and its length; the name is NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match rc {
        0 if end > 0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "unknown".into(),
    }
}

/// The default of `--doctor-interval`.
pub const DOCTOR_INTERVAL: Duration = Duration::from_secs(30);

/// `--doctor-interval`: a duration (`30s`, `2m`), or `0` / `off` for no periodic doctor.
pub fn parse_doctor_interval(v: &str) -> std::result::Result<Option<Duration>, String> {
    match v.trim() {
        "off" | "0" => Ok(None),
        t => match humantime::parse_duration(t) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) if d < Duration::from_secs(1) => Err(format!(
                "'{v}' is shorter than a second (the checks read the node's tables; 0 or off disables them)"
            )),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(format!("'{v}' is not a duration (30s, 2m) nor 0 or off: {e}")),
        },
    }
}

/// `on` or `off` (also `true`/`false`), for switches like `--drops`.
pub fn parse_on_off(v: &str) -> std::result::Result<bool, String> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("'{v}' is neither on nor off")),
    }
}

/// The datapath's VXLAN ports (`--vxlan-port`): at most MAX_VXLAN_PORTS, none of them 0.
pub fn vxlan_config(ports: &[u16]) -> Result<netpath_common::Config> {
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(Error::BadArgument(format!(
            "at most {MAX_VXLAN_PORTS} --vxlan-port values"
        )));
    }
    if ports.contains(&0) {
        return Err(Error::BadArgument("--vxlan-port 0 is not a port".into()));
    }
    let mut c = netpath_common::Config {
        vxlan_ports: [0; MAX_VXLAN_PORTS],
        ..netpath_common::Config::default()
    };
    c.vxlan_ports[..ports.len()].copy_from_slice(ports);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(names: &[&str]) -> Vec<IfaceSpec> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    /// `--iface cni0` and the TOML `text` as `/x.toml`, resolved.
    fn resolve_file(text: &str) -> Result<Config> {
        let f: FileConfig = toml::from_str(text).unwrap();
        Config::resolve(
            &Config {
                ifaces: iface(&["cni0"]),
                ..Config::default()
            },
            Some((std::path::Path::new("/x.toml"), f)),
            &|_| false,
        )
    }

    #[test]
    fn doctor_interval_is_a_duration_or_off() {
        assert_eq!(parse_doctor_interval("30s"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(parse_doctor_interval("2m"), Ok(Some(Duration::from_secs(120))));
        for off in ["0", "off", "0s"] {
            assert_eq!(parse_doctor_interval(off), Ok(None), "{off}");
        }
        for bad_value in ["soon", "-1s", "100ms", ""] {
            assert!(parse_doctor_interval(bad_value).is_err(), "{bad_value}");
        }
        assert_eq!(Config::default().doctor_interval, Some(DOCTOR_INTERVAL));
        let file = resolve_file;
        assert_eq!(file("doctor_interval = \"off\"").unwrap().doctor_interval, None);
        assert_eq!(
            file("doctor_interval = \"1m\"").unwrap().doctor_interval,
            Some(Duration::from_secs(60))
        );
        let e = file("doctor_interval = \"often\"").unwrap_err();
        assert!(
            matches!(&e, Error::BadArgument(m) if m.contains("doctor_interval") && m.contains("/x.toml")),
            "{e}"
        );
    }

    #[test]
    fn ipfix_collectors_come_from_flags_or_the_file_and_bad_ones_are_exit_2() {
        let file = resolve_file;
        let c = file(
            "ipfix = [\"127.0.0.1:4739\", \"[::1]:4739\"]\nipfix_interval = \"10s\"\nipfix_idle_timeout = \"2s\"\n",
        )
        .unwrap();
        let o = c.ipfix_options().unwrap().unwrap();
        assert_eq!(o.collectors.len(), 2);
        assert_eq!(
            (o.interval, o.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!(o.template_interval, crate::service::ipfix::DEFAULT_TEMPLATE_INTERVAL);
        assert!(file("").unwrap().ipfix_options().unwrap().is_none());
        for bad in [
            "ipfix = \"nowhere\"",
            "ipfix = \"127.0.0.1:4739\"\nipfix_interval = \"0s\"",
            "ipfix = \"127.0.0.1:4739\"\nipfix_idle_timeout = \"500ms\"",
        ] {
            let e = file(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        let a = file("ipfix = \"127.0.0.1:4739\"").unwrap();
        let b = file("ipfix = \"127.0.0.1:4740\"").unwrap();
        assert_eq!(a.needs_restart(&b), ["ipfix"]);
    }

    #[test]
    fn vxlan_ports_are_validated() {
        assert_eq!(vxlan_config(&[8472]).unwrap().vxlan_ports, [8472, 0, 0, 0]);
        assert!(vxlan_config(&[1, 2, 3, 4, 5]).is_err());
        assert!(vxlan_config(&[0]).is_err());
    }

    #[test]
    fn file_fills_what_flags_leave_and_flags_win() {
        let f: FileConfig = toml::from_str(
            "iface = [\"cni0\", \"veth*\"]\nexclude = [\"veth0\"]\nmode = \"tc\"\ninterval = \"5s\"\nflow_table_size = 1024\nvxlan_port = [4789]\n",
        )
        .unwrap();
        let a = Config {
            interval: Duration::from_secs(2),
            ..Config::default()
        };
        let given = |flag: &str| flag == "interval";
        let c = Config::resolve(&a, Some((std::path::Path::new("/x.toml"), f)), &given).unwrap();
        assert_eq!(
            c.ifaces.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["cni0", "veth*"]
        );
        assert_eq!(c.exclude, ["veth0"]);
        assert_eq!(c.mode, Mode::Tc);
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.flow_table_size, 1024);
        assert_eq!(c.vxlan_ports, [4789]);
    }

    #[test]
    fn lists_may_be_written_as_one_value() {
        let f: FileConfig = toml::from_str("iface = \"cni0\"\nexclude = \"veth0*\"\nvxlan_port = 4789\n").unwrap();
        let c = Config::resolve(&Config::default(), Some((std::path::Path::new("/x.toml"), f)), &|_| {
            false
        })
        .unwrap();
        assert_eq!(c.ifaces, iface(&["cni0"]));
        assert_eq!(c.exclude, ["veth0*"]);
        assert_eq!(c.vxlan_ports, [4789]);
        let e = toml::from_str::<FileConfig>("iface = 3").unwrap_err().to_string();
        assert!(e.contains("a value or a list"), "{e}");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(toml::from_str::<FileConfig>("ifacez = []")
            .unwrap_err()
            .to_string()
            .contains("ifacez"));
        let f: FileConfig = toml::from_str("iface = [\"a\"]\nmode = \"fast\"").unwrap();
        let e = Config::resolve(&Config::default(), Some((std::path::Path::new("/x.toml"), f)), &|_| {
            false
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("fast") && e.to_string().contains("/x.toml"),
            "{e}"
        );
        let e = Config::resolve(&Config::default(), None, &|_| false).unwrap_err();
        assert!(e.to_string().contains("--iface"), "{e}");
        let flags = Config {
            ifaces: iface(&["a"]),
            persist: true,
            no_pin: true,
            ..Config::default()
        };
        let e = Config::resolve(&flags, None, &|_| false).unwrap_err();
        assert!(e.to_string().contains("--persist"), "{e}");
        let flags = Config {
            ifaces: iface(&["veth["]),
            no_pin: true,
            ..Config::default()
        };
        let e = Config::resolve(&flags, None, &|_| false).unwrap_err();
        assert!(e.to_string().contains("pattern"), "{e}");
        let flags = Config {
            ifaces: iface(&["a"]),
            node_name: Some(String::new()),
            ..Config::default()
        };
        let e = Config::resolve(&flags, None, &|_| false).unwrap_err();
        assert!(e.to_string().contains("--node-name"), "{e}");
    }

    #[test]
    fn node_name_is_the_flag_else_the_netns_else_the_host_name() {
        let c = |node_name: Option<&str>, netns: Option<&str>| Config {
            node_name: node_name.map(String::from),
            netns: netns.map(String::from),
            ..Config::default()
        };
        assert_eq!(c(Some("worker-1"), Some("np-node1")).node_name(), "worker-1");
        assert_eq!(c(None, Some("np-node1")).node_name(), "np-node1");
        let host = c(None, None).node_name();
        assert!(!host.is_empty() && host != "np-node1", "{host}");
        let f: FileConfig = toml::from_str("node_name = \"worker-2\"").unwrap();
        assert_eq!(f.node_name.as_deref(), Some("worker-2"));
    }
}
