//! `netpath watch`: the daemon's events, filtered, as tcpdump-like text or JSON lines.
use std::io::Write as _;

use netpath::{
    caps,
    model::events::{self, EventFilter},
    service::api::ApiClient,
};

use crate::{
    args::{WatchArgs, WatchOutput},
    daemon,
};

pub fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let filter = EventFilter {
        iface: args.iface.clone(),
        pod: args.select.pod.clone(),
        kinds: EventFilter::parse_kinds(&args.kind)?,
        ip: args.select.ip,
        port: args.select.port,
    };
    caps::require_read()?;
    let rt = daemon::runtime()?;
    rt.block_on(async {
        let Some(client) = ApiClient::connect(&args.socket).await? else {
            anyhow::bail!(
                "no netpath daemon answers on {}: events come from the daemon (it is the ring buffer's only reader)",
                args.socket.display()
            );
        };
        let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
        let mut seen = 0u64;
        let mut stream = client.events(&filter).await?;
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, stream.next()).await.ok(),
                    None => Some(stream.next().await),
                }
            };
            let Some(item) = next.await else { break };
            let Some(row) = item? else {
                break;
            };
            let line = match args.output {
                WatchOutput::Json => serde_json::to_string(&row)?,
                WatchOutput::Text => events::text(&row),
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                break;
            }
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                break;
            }
        }
        Ok(())
    })
}
