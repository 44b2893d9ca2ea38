//! `cargo xtask lab`: the two-node lab of netpath-lab, driven directly (no netpath build needed).
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use netpath_lab::{Lab, LabStatus, TrafficOpts, TrafficReport};

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

#[derive(Subcommand, Debug, Clone, Copy)]
pub enum LabAction {
    /// Build the lab (idempotent).
    Up,
    /// Remove everything the lab made.
    Down,
    /// List what exists.
    Status,
    /// Drive ping, arping, TCP and UDP traffic through the lab.
    Traffic,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

pub fn run(args: &LabArgs) -> Result<()> {
    let lab = Lab::new(&args.prefix);
    let json = args.output == Output::Json;
    match args.action {
        LabAction::Up => print_status(&lab.up()?, json)?,
        LabAction::Status => print_status(&lab.status()?, json)?,
        LabAction::Down => {
            lab.down()?;
            println!("lab '{}' removed", args.prefix);
        }
        LabAction::Traffic => print!("{}", traffic(&lab.drive_traffic(&TrafficOpts::default())?, json)?),
    }
    Ok(())
}

fn print_status(st: &LabStatus, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(st)?);
    } else {
        print!("{st}");
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
