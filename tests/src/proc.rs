//! A child process a test drives: its stderr collected line by line, started once it says it is
//! ready, and stopped (SIGINT, then SIGKILL) on drop, panic included.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// A child whose stderr is collected line by line; SIGINT then SIGKILL on drop.
pub struct Proc {
    name: &'static str,
    pub child: Option<Child>,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Spawn `cmd` (stderr piped) and wait for a stderr line containing `ready`.
    pub fn spawn(name: &'static str, mut cmd: Command, ready: &str) -> Proc {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut p = Proc {
            name,
            child: Some(child),
            lines,
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match p.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(ready) => break,
                Ok(_) => {}
                Err(_) => {
                    let (st, err) = p.kill();
                    panic!("{name} never said '{ready}' (exit {st:?}): {err}");
                }
            }
        }
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Wait up to `timeout` for the child to exit on its own; its status and whole stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?}: {}",
                    self.name,
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let err = self.log.lock().unwrap().join("\n");
        (st, err)
    }

    /// SIGINT, and wait for the exit.
    pub fn stop(self) -> (ExitStatus, String) {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(10))
    }

    pub fn kill(&mut self) -> (Option<ExitStatus>, String) {
        let st = self.child.take().and_then(|mut c| {
            let _ = c.kill();
            c.wait().ok()
        });
        (st, self.log.lock().unwrap().join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
