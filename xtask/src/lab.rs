//! `cargo xtask lab`: the two-node lab of netpath-lab, driven directly (no netpath build needed).
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use netpath_lab::{Lab, LabStatus, TrafficOpts};

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
        LabAction::Traffic => {
            // One JSON line whatever -o says: scripts (and the demo's log) read the report as is.
            let r = lab.drive_traffic(&TrafficOpts::default())?;
            println!("{}", serde_json::to_string(&r)?);
        }
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
