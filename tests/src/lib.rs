//! Harness for netpath's root tests: guards that remove every namespace, pin directory and process
//! they made, even when the test panics, and helpers to drive the real `netpath` binary.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod fake_cri;
pub mod proc;
pub mod testrun;

pub fn require_root() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (BPF, netns); run them with `cargo xtask test`"
    );
}

/// A short name unique to this process and call: `{tag}{pid}{n}`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The netpath binary under test (`cargo xtask test` sets NETPATH_BIN).
pub fn netpath_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETPATH_BIN") {
        return p.into();
    }
    // target/debug/deps/<test> -> target/debug/netpath
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("netpath")
}

/// Run a command, panic with its output unless it succeeds.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted (with any process left in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Run a command inside the namespace (only for traffic tools: `ip netns exec` remounts /sys).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: killing a leftover test process inside our namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Two namespaces joined by a veth pair `a` (10.77.0.1/24, fd77::1/64) <-> `b` (10.77.0.2/24).
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub const PAIR_A_IP: &str = "10.77.0.1";
pub const PAIR_B_IP: &str = "10.77.0.2";

impl Pair {
    pub fn new() -> Pair {
        let (a, b) = (Netns::new("npa"), Netns::new("npb"));
        a.ip(&[
            "link", "add", "name", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", &b.name,
        ]);
        a.ip(&["addr", "add", &format!("{PAIR_A_IP}/24"), "dev", "veth-a"]);
        b.ip(&["addr", "add", &format!("{PAIR_B_IP}/24"), "dev", "veth-b"]);
        // No IPv6 on the link: router solicitations and DAD would add icmp6 noise to exact counts.
        for (ns, dev) in [(&a, "veth-a"), (&b, "veth-b")] {
            let _ = ns.exec(&[
                "sh",
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        Pair { a, b }
    }

    pub fn ping_from_a(&self, count: u32) {
        let out = self
            .a
            .exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", PAIR_B_IP]);
        assert!(
            out.status.success(),
            "ping failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

/// A private bpffs pin directory and control socket, removed on drop. `args()` gives both flags,
/// so reads go through the test's daemon while it runs and to the pins after.
pub struct PinDir {
    pub path: PathBuf,
    pub socket: PathBuf,
}

impl PinDir {
    pub fn new() -> PinDir {
        let name = unique("netpath-test-");
        PinDir {
            path: PathBuf::from("/sys/fs/bpf").join(&name),
            socket: std::env::temp_dir().join(format!("{name}.sock")),
        }
    }
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }
    pub fn sock(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }
    /// `--pin-dir DIR --socket SOCK`.
    pub fn args(&self) -> [&str; 4] {
        ["--pin-dir", self.arg(), "--socket", self.sock()]
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = netpath::datapath::pins::unpin_all(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A running `netpath run`, stopped with SIGINT (then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    /// The daemon's stderr lines after the ones `start` waited for.
    lines: std::sync::mpsc::Receiver<String>,
}

impl Daemon {
    /// `netpath run` on the pair's `veth-a` (in namespace a), with the pin directory and socket of
    /// `pins`, then `extra`; started once attached.
    pub fn on_veth_a(pair: &Pair, pins: &PinDir, extra: &[&str]) -> Daemon {
        let args: Vec<&str> = ["--netns", pair.a.name.as_str(), "--iface", "veth-a"]
            .into_iter()
            .chain(pins.args())
            .chain(extra.iter().copied())
            .collect();
        Self::start(&args)
    }

    /// Start `netpath run ARGS` and wait until it reports every `--iface` attached.
    pub fn start(args: &[&str]) -> Daemon {
        let want = args.iter().filter(|a| **a == "--iface" || **a == "-i").count();
        Self::start_expecting(args, want)
    }

    /// Start `netpath run ARGS` and wait for `want` "attached to" lines. Without `--metrics` in
    /// ARGS the exporter is off, so test daemons never compete for its port.
    pub fn start_expecting(args: &[&str], want: usize) -> Daemon {
        let metrics_off: &[&str] = if args.contains(&"--metrics") {
            &[]
        } else {
            &["--metrics", "none"]
        };
        let mut child = Command::new(netpath_bin())
            .arg("run")
            .args(args)
            .args(metrics_off)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netpath run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[netpath] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut attached = 0;
        while attached < want {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains("attached to") => attached += 1,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let st = child.wait();
                    panic!("netpath run {args:?} did not attach ({attached}/{want}); exit {st:?}");
                }
            }
        }
        Daemon {
            child: Some(child),
            lines: rx,
        }
    }

    /// The first stderr line (from now on) that contains every one of `needles`, within `timeout`.
    pub fn wait_for_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            if needles.iter().all(|n| l.contains(n)) {
                return Some(l);
            }
        }
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGINT and wait; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.stop_inner().expect("daemon running")
    }

    fn stop_inner(&mut self) -> Option<std::process::ExitStatus> {
        stop_child(self.child.take()?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A loopback `ADDR:PORT` nobody listens on right now (for a daemon's `--metrics`).
pub fn free_local_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}

/// Run `netpath ARGS` to completion.
pub fn netpath(args: &[&str]) -> Output {
    Command::new(netpath_bin()).args(args).output().expect("run netpath")
}

/// `netpath ARGS -o json`, parsed; panics unless it succeeds.
pub fn netpath_json(args: &[&str]) -> serde_json::Value {
    let mut v = args.to_vec();
    v.extend(["-o", "json"]);
    let out = netpath(&v);
    assert!(
        out.status.success(),
        "netpath {v:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "netpath {v:?} printed bad JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Sum of `packets` over stats rows matching iface/direction/class.
pub fn stat(rows: &serde_json::Value, iface: &str, direction: &str, class: &str, field: &str) -> u64 {
    rows.as_array()
        .expect("stats rows")
        .iter()
        .filter(|r| r["iface"] == iface && r["direction"] == direction && r["class"] == class)
        .filter_map(|r| r[field].as_u64())
        .sum()
}

/// Run `f` on a thread that has entered the network namespace `ns` (only the network namespace:
/// the bpffs mount stays visible).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            netpath::node::netns::enter(ns).expect("enter netns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Names of the programs attached to `dev` in `ns`: tcx ingress/egress (queried through the
/// kernel's multi-prog API) and XDP (from `ip -d link`).
pub fn attached_programs(ns: &Netns, dev: &str) -> Vec<String> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let mut names: Vec<String> = in_netns(&ns.name, || {
        let mut v = Vec::new();
        for (dir, t) in [
            ("tcx-ingress", TcAttachType::Ingress),
            ("tcx-egress", TcAttachType::Egress),
        ] {
            if let Ok((_, progs)) = SchedClassifier::query_tcx(dev, t) {
                v.extend(
                    progs
                        .iter()
                        .map(|p| format!("{dir}:{}", p.name_as_str().unwrap_or("?"))),
                );
            }
        }
        v
    });
    let link = ns.ip(&["-d", "link", "show", "dev", dev]);
    if let Some(id) = link
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
    {
        let info: serde_json::Value =
            serde_json::from_str(&sh(&["bpftool", "-j", "prog", "show", "id", id])).expect("bpftool json");
        names.push(format!("xdp:{}", info["name"].as_str().unwrap_or("?")));
    }
    names.sort();
    names
}

/// A running `netpath watch -o json`, collecting events; killed on drop.
pub struct Watch {
    child: Child,
    pub events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Watch {
    pub fn start(socket: &str, extra: &[&str]) -> Watch {
        let mut child = Command::new(netpath_bin())
            .args(["watch", "--socket", socket, "-o", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start netpath watch");
        let out = child.stdout.take().expect("stdout");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&events);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("watch printed bad JSON ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        // The stream is live once the daemon accepted it; give the request a moment.
        std::thread::sleep(Duration::from_millis(300));
        Watch { child, events }
    }

    /// Wait until an event satisfies `pred` (or panic after `timeout`, listing what came).
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.events.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self.events.lock().unwrap().iter().map(|v| v.to_string()).collect();
                panic!(
                    "no {what} event within {timeout:?}; saw {} events:\n{}",
                    seen.len(),
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tears a lab down when the test ends, including by panic.
pub struct LabGuard(pub netpath_lab::Lab);

impl LabGuard {
    /// A private lab (`tag` + a unique suffix), brought up.
    pub fn up(tag: &str) -> LabGuard {
        let g = LabGuard(netpath_lab::Lab::new(&unique(tag)));
        g.0.up().expect("lab up");
        g
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("cleaning up lab '{}': {e}", self.0.prefix);
        }
    }
}

/// SIGINT a child (a `netpath run`, say), wait up to 10 s for it to exit on its own, then SIGKILL.
pub fn stop_child(mut child: Child) -> Option<std::process::ExitStatus> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.0 GET (no chunked encoding, the server closes): status, lower-cased headers, body.
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, headers.to_ascii_lowercase(), body.to_string()))
}

/// A private temporary directory, removed (with all in it) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("netpath-test-"));
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}
