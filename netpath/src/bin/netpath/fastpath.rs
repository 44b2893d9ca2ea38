//! `netpath fastpath enable|disable|status`: pod-to-pod frames straight into the target pod.
use netpath::{
    model::{self, rules::FastpathStatus},
    service::api::FastpathRequest,
};

use crate::{
    args::{FastpathAction, FastpathArgs},
    daemon,
};

pub fn run(args: FastpathArgs) -> anyhow::Result<()> {
    let rt = daemon::runtime()?;
    let c = daemon::require(&rt, &args.socket)?;
    let request = match args.action {
        FastpathAction::Enable { bridge } => Some(FastpathRequest {
            enable: true,
            bridge: Some(bridge),
        }),
        FastpathAction::Disable => Some(FastpathRequest {
            enable: false,
            bridge: None,
        }),
        FastpathAction::Status => None,
    };
    let state = daemon::answer(rt.block_on(c.fastpath(request.as_ref())))?;
    print!("{}", model::render(&state, args.output, FastpathStatus::text)?);
    Ok(())
}
