//! Reaching the daemon from the read commands: its API when one answers, else the pins.
use std::cell::RefCell;

use netpath::{
    caps,
    datapath::{
        maps::Maps,
        names::{Names, Recorded},
    },
    model::{
        flows::{self, Clock, Filter, FlowRow},
        owner::check_pod,
    },
    node::{ifaces, netns},
    service::api::{ApiClient, ApiError},
};

use crate::args::ReadArgs;

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The daemon's API when one answers on the socket; None means read the pins.
pub fn connect(socket: &std::path::Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Option<ApiClient>> {
    Ok(rt.block_on(ApiClient::connect(socket))?)
}

/// The pinned maps, named from `--netns` when given.
pub fn open_pins(read: &ReadArgs) -> anyhow::Result<Maps> {
    caps::require_read()?;
    if let Some(ns) = &read.netns {
        netns::enter(ns)?;
    }
    Ok(Maps::open_pinned(&read.pin.pin_dir)?)
}

/// Names for ifindexes read from the pins: what the daemon recorded with them.
pub struct PinNames {
    names: Names,
    reader_netns: Option<String>,
    unknown: RefCell<Vec<u32>>,
}

impl PinNames {
    pub fn read(read: &ReadArgs) -> PinNames {
        PinNames {
            names: Names::read(&read.pin.pin_dir),
            reader_netns: read.netns.clone(),
            unknown: RefCell::default(),
        }
    }

    pub fn get(&self, ifindex: u32) -> Recorded {
        self.names
            .name(ifindex, self.reader_netns.as_deref(), &mut self.unknown.borrow_mut())
    }

    /// Who is behind each recorded interface: what `--pod` is checked against without a daemon.
    pub fn owners(&self) -> Vec<netpath::model::owner::Owner> {
        self.names.by_ifindex.values().map(|r| r.owner.clone()).collect()
    }

    /// Say which interfaces could not be named (on stderr: the rows stay what scripts parse).
    pub fn warn_unknown(&self) {
        if let Some(note) = self.names.unknown_note(&self.unknown.borrow()) {
            log::warn!("{note}");
        }
    }
}

/// Flow rows after `filter`, from the daemon when one answers (it checks the names), else from the
/// pins named as the daemon recorded them (an unknown `--iface` or `--pod` is bad input here too).
pub fn flow_rows(read: &ReadArgs, filter: &Filter, rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<FlowRow>> {
    if let Some(c) = connect(&read.socket, rt)? {
        let mut rows = rt.block_on(c.flows(filter))?;
        for r in &mut rows {
            r.class = flows::class_of_row(r);
        }
        return Ok(rows);
    }
    let clock = Clock::now();
    let pinned = open_pins(read)?.flows()?;
    let names = PinNames::read(read);
    let rows: Vec<_> = pinned
        .iter()
        .map(|(k, v)| {
            let n = names.get(k.ifindex);
            let mut r = flows::row(k, v, n.iface, &clock);
            r.owner = n.owner;
            r
        })
        .collect();
    names.warn_unknown();
    // A name with flows is known (even if its link is gone); one without must exist.
    if let Some(name) = &filter.iface {
        if !rows.iter().any(|r| &r.iface == name) {
            ifaces::resolve(name, read.netns.as_deref())?;
        }
    }
    if let Some(pod) = &filter.pod {
        let mut owners = names.owners();
        owners.extend(rows.iter().map(|r| r.owner.clone()));
        check_pod(pod, &owners)?;
    }
    Ok(flows::select(rows, filter))
}

/// The daemon, or a clear error: rules and the fast path need its view of the node.
pub fn require(rt: &tokio::runtime::Runtime, socket: &std::path::Path) -> anyhow::Result<ApiClient> {
    caps::require_read()?;
    connect(socket, rt)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no netpath daemon answers on {}: rules and the fast path are managed by `netpath run`",
            socket.display()
        )
    })
}

/// For the commands that change the daemon (`rule`, `fastpath`): its 4xx answer is bad input (exit 2)
/// and says what is wrong in its own words. The read commands pass the daemon's answer on as it is.
pub fn answer<T>(r: Result<T, ApiError>) -> anyhow::Result<T> {
    r.map_err(|e| match e {
        ApiError::Daemon { status, message } if (400..500).contains(&status) => {
            netpath::Error::BadArgument(message).into()
        }
        e => netpath::Error::from(e).into(),
    })
}
