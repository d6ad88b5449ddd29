//! The real `ekey-issuer` binary as a child process: started with a config
//! file, its addresses read from its JSON log, stopped by SIGTERM, killed on
//! drop.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `ekey-issuer serve`.
pub struct IssuerProcess {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Drop for IssuerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl IssuerProcess {
    /// `ekey-issuer serve --config CONFIG`, standard output and error to
    /// the given files (the log must be JSON: `[log] format = "json"`, the
    /// default with a config file).
    pub fn serve(config: &Path, stdout: &Path, stderr: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_ekey-issuer"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(stdout).unwrap())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, stderr: stderr.to_path_buf() }
    }

    /// The `listen` and `admin` addresses from the log line "ekey issuer serving".
    pub async fn serving_addresses(&mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            for line in log.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                if v["message"] == "ekey issuer serving" {
                    return (v["listen"].as_str().unwrap().to_owned(), v["admin"].as_str().unwrap().to_owned());
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the issuer exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "the issuer did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits (bounded by `within`) for the process to exit.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the issuer did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (bounded) for a graceful exit.
    pub fn stop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the issuer did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
