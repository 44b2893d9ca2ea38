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
        .map(|m| {
            m.ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.as_str().replace('_', "-"))
                .collect()
        })
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
                Some(c) => report::render_stats(
                    &serde_json::from_value::<Vec<netpath::stats::StatRow>>(rt.block_on(c.stats())?)?,
                    read.output,
                )?,
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
            let filter = Filter {
                iface: args.iface.clone(),
                class,
                top: args.top,
                sort: Some(args.sort),
            };
            let rt = runtime()?;
            let out = match daemon(&args.read, &rt)? {
                Some(c) => report::render_flows(
                    &serde_json::from_value::<Vec<netpath::flows::FlowRow>>(rt.block_on(c.flows(&filter))?)?,
                    args.read.output,
                )?,
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
        Command::Rule(args) => rule_cmd(args)?,
        Command::Fastpath(args) => fastpath_cmd(args)?,
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
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?)
            } else {
                print!("{st}")
            }
        }
        LabAction::Down => {
            lab.down()?;
            println!("lab '{}' removed", args.prefix);
        }
        LabAction::Status => {
            let st = lab.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?)
            } else {
                print!("{st}")
            }
        }
        LabAction::Traffic => {
            let r = lab.drive_traffic(&TrafficOpts::default())?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

/// The daemon, or a clear error: rules and the fast path need its view of the node.
fn require_daemon(rt: &tokio::runtime::Runtime, socket: &std::path::Path) -> anyhow::Result<ApiClient> {
    caps::require_read()?;
    rt.block_on(ApiClient::connect(socket))?.ok_or_else(|| {
        anyhow::anyhow!(
            "no netpath daemon answers on {}: rules and the fast path are managed by `netpath run`",
            socket.display()
        )
    })
}

fn api_err(e: netpath::api::ApiError) -> anyhow::Error {
    match e {
        netpath::api::ApiError::Daemon { status, message } if (400..500).contains(&status) => {
            netpath::Error::BadArgument(message).into()
        }
        e => e.into(),
    }
}

fn rule_cmd(args: netpath::cli::RuleArgs) -> anyhow::Result<()> {
    use netpath::{cli::RuleAction, rules};
    let rt = runtime()?;
    let c = require_daemon(&rt, &args.socket)?;
    let rows: Vec<rules::RuleRow> = match args.action {
        RuleAction::List => serde_json::from_value(rt.block_on(c.get("/v1/rules")).map_err(api_err)?)?,
        RuleAction::Del { id } => vec![serde_json::from_value(
            rt.block_on(c.delete(&format!("/v1/rules/{id}"))).map_err(api_err)?,
        )?],
        RuleAction::Add(a) => {
            let (action, target) = match (a.pass, a.drop, a.redirect, a.mirror) {
                (true, ..) => ("pass", None),
                (_, true, ..) => ("drop", None),
                (_, _, Some(t), _) => ("redirect", Some(t)),
                (_, _, _, Some(t)) => ("mirror", Some(t)),
                _ => unreachable!("clap requires one verdict"),
            };
            let spec = rules::RuleSpec {
                iface: a.iface.or(a.pod),
                direction: a.direction,
                class: a.class,
                src: a.src,
                dst: a.dst,
                dst_mac: a.dst_mac,
                port: a.port,
                action: action.into(),
                target,
                priority: a.priority,
            };
            vec![serde_json::from_value(
                rt.block_on(c.post("/v1/rules", serde_json::to_value(&spec)?))
                    .map_err(api_err)?,
            )?]
        }
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print!("{}", rules::table(&rows)),
    }
    Ok(())
}

fn fastpath_cmd(args: netpath::cli::FastpathArgs) -> anyhow::Result<()> {
    use netpath::cli::FastpathAction;
    let rt = runtime()?;
    let c = require_daemon(&rt, &args.socket)?;
    let v = match args.action {
        FastpathAction::Enable { bridge } => {
            rt.block_on(c.post("/v1/fastpath", serde_json::json!({ "enable": true, "bridge": bridge })))
        }
        FastpathAction::Disable => rt.block_on(c.post("/v1/fastpath", serde_json::json!({ "enable": false }))),
        FastpathAction::Status => rt.block_on(c.get("/v1/fastpath")),
    }
    .map_err(api_err)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => {
            println!(
                "fast path: {}{}, {} frames redirected",
                if v["enabled"] == true { "on" } else { "off" },
                v["bridge"].as_str().map(|b| format!(" on {b}")).unwrap_or_default(),
                v["redirected"]
            );
            for e in v["entries"].as_array().map(Vec::as_slice).unwrap_or_default() {
                println!(
                    "  {} -> {} ({})",
                    e["mac"].as_str().unwrap_or("?"),
                    e["iface"].as_str().unwrap_or("?"),
                    e["netns"].as_str().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}
