use clap::Parser as _;
use netpath::{
    caps,
    cli::{Cli, Command, LabAction},
    flows::Filter,
    loader, maps::Maps, netns, report,
};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("netpath: error: {e:#}");
        let code = e.downcast_ref::<netpath::Error>().map(|e| e.exit_code()).unwrap_or(1);
        std::process::exit(code);
    }
}

fn open(read: &netpath::cli::ReadArgs) -> anyhow::Result<Maps> {
    caps::require_read()?;
    if let Some(ns) = &read.netns {
        netns::enter(ns)?;
    }
    Ok(Maps::open_pinned(&read.pin.pin_dir)?)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => netpath::run::run(&args)?,
        Command::Stats(read) => print!("{}", report::stats(&open(&read)?, read.output)?),
        Command::Status(read) => print!("{}", report::status(&open(&read)?, read.output)?),
        Command::Flows(args) => {
            let class = args.class.as_deref().map(report::parse_class).transpose()?;
            let filter = Filter { iface: args.iface.clone(), class, top: args.top, sort: Some(args.sort) };
            print!("{}", report::flows(&open(&args.read)?, &filter, args.read.output)?);
        }
        Command::Down(pin) => {
            caps::require_read()?;
            let removed = loader::unpin_all(&pin.pin_dir)?;
            if removed.is_empty() {
                println!("nothing pinned under {}", pin.pin_dir.display());
            }
            for p in removed {
                println!("removed {}", p.display());
            }
        }
        Command::Lab(lab) => lab_cmd(lab)?,
    }
    Ok(())
}

fn lab_cmd(args: netpath::cli::LabArgs) -> anyhow::Result<()> {
    use netpath::lab::{Lab, TrafficOpts};
    caps::require_datapath()?;
    let lab = Lab::new(&args.prefix);
    let json = args.output == netpath::cli::Output::Json;
    match args.action {
        LabAction::Up => {
            let st = lab.up()?;
            if json { println!("{}", serde_json::to_string_pretty(&st)?) } else { print!("{st}") }
        }
        LabAction::Down => {
            lab.down()?;
            println!("lab '{}' removed", args.prefix);
        }
        LabAction::Status => {
            let st = lab.status()?;
            if json { println!("{}", serde_json::to_string_pretty(&st)?) } else { print!("{st}") }
        }
        LabAction::Traffic => {
            let r = lab.drive_traffic(&TrafficOpts::default())?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}
