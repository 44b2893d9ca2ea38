//! `cargo xtask lab`: the two-node lab of netpath-lab, driven directly (no netpath build needed).
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use netpath_lab::{
    containerd::{CriPod, DEFAULT_PODS},
    Lab, LabStatus, TrafficOpts, TrafficReport,
};

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,

    /// Prefix of the lab's namespace names (so several labs can coexist).
    #[arg(long, default_value = "np", global = true)]
    pub prefix: String,

    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LabAction {
    /// Build the lab (idempotent).
    Up {
        /// `containerd` also runs containerd (its CRI plugin, the CNI bridge plugin on cni0,
        /// host-local IPAM in 10.244.0.100-199) inside node 1's namespace, with its own root,
        /// state and socket under /var/lib/netpath-lab/PREFIX and /run/netpath-lab/PREFIX, and
        /// creates the pods web-0 and db-0 through CRI RunPodSandbox.
        #[arg(long, value_enum, default_value_t = Runtime::None)]
        runtime: Runtime,
    },
    /// Remove everything the lab made (containerd and its pods too).
    Down,
    /// List what exists.
    Status,
    /// Drive ping, arping, TCP and UDP traffic through the lab.
    Traffic,
    /// Pods of the lab's containerd (after `lab up --runtime containerd`), through CRI.
    Pod {
        #[command(subcommand)]
        action: PodAction,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum PodAction {
    /// Create a pod (RunPodSandbox) in Kubernetes namespace `default`, labelled app=NAME without
    /// its ordinal (web-0: app=web).
    Add {
        /// A DNS label, e.g. web-1.
        name: String,
    },
    /// Delete a pod (StopPodSandbox, RemovePodSandbox): its veth and namespace go.
    Del { name: String },
    /// List the pods containerd runs for this lab.
    List,
}

/// Which pods node 1 has besides the simulated ones.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Only the simulated pods (namespaces and veths made by the lab).
    None,
    /// containerd with its CRI plugin and the CNI bridge plugin on node 1.
    Containerd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

pub fn run(args: &LabArgs) -> Result<()> {
    let lab = Lab::new(&args.prefix);
    let json = args.output == Output::Json;
    let progress = |m: &str| eprintln!("lab: {m}");
    match &args.action {
        LabAction::Up { runtime } => {
            eprintln!("lab: building lab '{}' (two nodes, VXLAN)", args.prefix);
            let st = lab.up()?;
            let pods = match runtime {
                Runtime::None => None,
                Runtime::Containerd => Some(containerd_up(&lab, &progress)?),
            };
            print_status(&st, pods.as_deref(), json)?;
        }
        LabAction::Status => {
            let cri = lab.containerd();
            let pods = match cri.pid() {
                Some(_) => Some(cri.pods()?),
                None => None,
            };
            print_status(&lab.status()?, pods.as_deref(), json)?;
        }
        LabAction::Down => {
            lab.down()?;
            println!("lab '{}' removed", args.prefix);
        }
        LabAction::Traffic => print!("{}", traffic(&lab.drive_traffic(&TrafficOpts::default())?, json)?),
        LabAction::Pod { action } => pod(&lab, action, json)?,
    }
    Ok(())
}

/// Start containerd on node 1 and create the default pods that are missing.
fn containerd_up(lab: &Lab, progress: &dyn Fn(&str)) -> Result<Vec<CriPod>> {
    let cri = lab.containerd();
    cri.start(progress)?;
    let v = cri.version()?;
    progress(&format!(
        "{} {} answers CRI {} on {}",
        v.runtime_name,
        v.runtime_version,
        v.runtime_api_version,
        cri.socket().display()
    ));
    let have = cri.pods()?;
    for name in DEFAULT_PODS {
        if !have.iter().any(|p| p.name == *name) {
            progress(&format!("RunPodSandbox {name}"));
            cri.add_pod(name)?;
        }
    }
    Ok(cri.pods()?)
}

fn pod(lab: &Lab, action: &PodAction, json: bool) -> Result<()> {
    if let PodAction::Add { name } = action {
        netpath_lab::containerd::validate_pod_name(name)?;
    }
    let cri = lab.containerd();
    if cri.pid().is_none() {
        anyhow::bail!(
            "lab '{}' runs no containerd: start it with `cargo xtask lab up --runtime containerd`",
            lab.prefix
        );
    }
    match action {
        PodAction::Add { name } => {
            let p = cri.add_pod(name)?;
            print_pods(std::slice::from_ref(&p), json)?;
        }
        PodAction::Del { name } => {
            cri.del_pod(name)?;
            println!("pod {}/{name} deleted", netpath_lab::containerd::POD_NAMESPACE);
        }
        PodAction::List => print_pods(&cri.pods()?, json)?,
    }
    Ok(())
}

fn print_pods(pods: &[CriPod], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(pods)?);
    } else {
        print!("{}", pods_table(pods));
    }
    Ok(())
}

/// The CRI pods for people: one line each.
fn pods_table(pods: &[CriPod]) -> String {
    let mut s = format!(
        "{:<12} {:<10} {:<16} {:<13} {}\n",
        "POD", "NAMESPACE", "IP", "HOST VETH", "NETNS"
    );
    for p in pods {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        s += &format!(
            "{:<12} {:<10} {:<16} {:<13} {}\n",
            p.name,
            p.namespace,
            dash(&p.ip),
            dash(&p.host_veth),
            dash(&p.netns)
        );
    }
    s
}

fn print_status(st: &LabStatus, cri_pods: Option<&[CriPod]>, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(st)?;
        if let Some(p) = cri_pods {
            v["cri_pods"] = serde_json::to_value(p)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{st}");
        if let Some(p) = cri_pods {
            println!("containerd pods (node 1, through CRI):");
            print!("{}", pods_table(p));
        }
    }
    Ok(())
}

/// The traffic report as `-o` asks: a line per kind for people, JSON for scripts.
fn traffic(r: &TrafficReport, json: bool) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(r)? + "\n"
    } else {
        r.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_honours_the_output_flag() {
        let r = TrafficReport {
            tcp_ok: true,
            errors: vec!["udp: iperf3 timed out".into()],
            ..TrafficReport::default()
        };
        let v: serde_json::Value = serde_json::from_str(&traffic(&r, true).unwrap()).unwrap();
        assert_eq!(v["tcp_ok"], true);
        let t = traffic(&r, false).unwrap();
        assert!(!t.contains('{'), "{t}");
        assert!(t.lines().any(|l| l.starts_with("tcp") && l.ends_with("ok")), "{t}");
        assert!(t.lines().any(|l| l.starts_with("udp") && l.ends_with("FAILED")), "{t}");
        assert!(t.contains("iperf3 timed out"), "{t}");
    }
}
