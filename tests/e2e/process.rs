//! A real `weft` process for the tests that need one: peak memory, exit codes, signals, logs.

use std::path::Path;
use std::time::Duration;

/// A real `weft` process (the binary built with this test), started on port 0.
pub struct WeftProcess {
    pub child: std::process::Child,
    pub addr: String,
    /// Every line it wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WeftProcess {
    /// Starts the binary with `args` on `data_dir`; returns once it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> WeftProcess {
        Self::start_with_env(data_dir, args, &[])
    }

    /// Like [`WeftProcess::start`], with extra environment variables.
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> WeftProcess {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn,weft=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn weft");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if !sent {
                    if let Some(rest) = line.split("weft listening on http://").nth(1) {
                        let addr = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                if line.contains("ERROR") || line.contains("panicked") {
                    eprintln!("weft: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("weft did not start listening");
        WeftProcess { child, addr, log }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The lines logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/{}", self.addr, doc)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for WeftProcess {
    /// A test that fails half-way must not leave its server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
