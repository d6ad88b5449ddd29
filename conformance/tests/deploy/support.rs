//! What the deploy tests share: the repository root, reading its files, and
//! running the external tools they check with (kubectl, kubernetes-validate,
//! systemd-analyze, haproxy). A missing tool fails the test with the command
//! that installs it; nothing is skipped.

#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the conformance crate is inside the workspace").to_path_buf()
}

/// A file of the repository, as text.
pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// An external program and how to install it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub install: &'static str,
}

pub const KUBECTL: Tool = Tool {
    program: "kubectl",
    install: "install kubectl, which has kustomize built in (Debian package kubectl from pkgs.k8s.io)",
};
pub const KUBERNETES_VALIDATE: Tool =
    Tool { program: "kubernetes-validate", install: "python3 -m pip install kubernetes-validate (scripts/test does)" };
pub const SYSTEMD_ANALYZE: Tool =
    Tool { program: "systemd-analyze", install: "install the Debian package systemd (scripts/test does)" };
pub const HAPROXY: Tool =
    Tool { program: "haproxy", install: "install the Debian package haproxy (scripts/test does)" };

/// What a tool run produced.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output and standard error, for messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Longest any tool may run before the test fails (no hang blocks CI).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `tool` with `args` (and `env`) in the repository root, bounded in
/// time. Fails the test when the tool is not installed.
pub fn run(tool: Tool, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(tool.program);
    command.args(args).current_dir(root()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{} not found: {}", tool.program, tool.install),
        Err(e) => panic!("cannot run {}: {e}", tool.program),
    };
    // Read both pipes while waiting, so a large output cannot block the tool.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{} {} did not finish within {TOOL_TIMEOUT:?}", tool.program, args.join(" "));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {}: {e}", tool.program),
        }
    };
    Run {
        success: status.success(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `tool` and fails the test when it refuses.
pub fn run_ok(tool: Tool, args: &[&str], env: &[(&str, &str)]) -> Run {
    let run = run(tool, args, env);
    assert!(run.success, "{} {} failed:\n{}", tool.program, args.join(" "), run.text());
    run
}

/// A binary of this workspace (`ekey-issuer`, `ekey-gateway`), built next to
/// this test: `cargo test --workspace` builds them with the tests that need
/// them. Fails with the build command when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} not built: run `cargo build -p {name}` first (`cargo test --workspace` builds it)",
        binary.display()
    );
    binary
}
