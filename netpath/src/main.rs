use clap::{parser::ValueSource, CommandFactory as _, FromArgMatches as _};
use netpath::{
    api::ApiClient,
    caps,
    cli::{Cli, Command, LabAction, Output, ReadArgs},
    flows::Filter,
    loader,
    maps::Maps,
    netns, report,
};

fn main() {
    let matches = Cli::command().get_matches();
    let given: Vec<String> = matches
        .subcommand_matches("run")
        .map(|m| m.ids().filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine)).map(|id| id.as_str().replace('_', "-")).collect())
        .unwrap_or_default();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = dispatch(cli, given) {
        eprintln!("netpath: error: {e:#}");
        let code = e.downcast_ref::<netpath::Error>().map(|e| e.exit_code()).unwrap_or(1);
        std::process::exit(code);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The daemon's API when one answers on the socket; None means read the pins.
fn daemon(read: &ReadArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<Option<ApiClient>> {
    Ok(rt.block_on(ApiClient::connect(&read.socket))?)
}

fn open(read: &ReadArgs) -> anyhow::Result<Maps> {
    caps::require_read()?;
    if let Some(ns) = &read.netns {
        netns::enter(ns)?;
    }
    Ok(Maps::open_pinned(&read.pin.pin_dir)?)
}

fn dispatch(cli: Cli, given: Vec<String>) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => netpath::run::run(&args, given)?,
        Command::Stats(read) => {
            let rt = runtime()?;
            let out = match daemon(&read, &rt)? {
                Some(c) => report::render_stats(&serde_json::from_value::<Vec<netpath::stats::StatRow>>(rt.block_on(c.stats())?)?, read.output)?,
                None => report::stats(&open(&read)?, read.output)?,
            };
            print!("{out}");
        }
        Command::Status(read) => {
            let rt = runtime()?;
            let v = match daemon(&read, &rt)? {
                Some(c) => rt.block_on(c.status())?,
                None => report::status_json(&open(&read)?)?,
            };
            print!("{}", report::render_status(&v, read.output)?);
        }
        Command::Flows(args) => {
            let class = args.class.as_deref().map(report::parse_class).transpose()?;
            let filter = Filter { iface: args.iface.clone(), class, top: args.top, sort: Some(args.sort) };
            let rt = runtime()?;
            let out = match daemon(&args.read, &rt)? {
                Some(c) => report::render_flows(&serde_json::from_value::<Vec<netpath::flows::FlowRow>>(rt.block_on(c.flows(&filter))?)?, args.read.output)?,
                None => report::flows(&open(&args.read)?, &filter, args.read.output)?,
            };
            print!("{out}");
        }
        Command::Ifaces(read) => {
            let rt = runtime()?;
            let v = match daemon(&read, &rt)? {
                Some(c) => rt.block_on(c.ifaces())?,
                None => {
                    caps::require_read()?;
                    if let Some(ns) = &read.netns {
                        netns::enter(ns)?;
                    }
                    // A fresh runtime after setns, so its threads are in the namespace.
                    runtime()?.block_on(netpath::node::collect())?
                }
            };
            match read.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => print!("{}", netpath::node::table(&v)),
            }
        }
        Command::Watch(args) => netpath::events::watch(&args)?,
        Command::Capture(args) => netpath::capture::run(&args)?,
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
