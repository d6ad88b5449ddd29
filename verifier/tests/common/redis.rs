//! Real `redis-server` processes for tests: a single node or a 3-master
//! Redis Cluster on free loopback ports, each in its own temporary
//! directory, killed when dropped. Uses only std and the `redis-server` /
//! `redis-cli` binaries (Debian packages `redis-server`, `redis-tools`), so
//! any test crate can reuse it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);

fn require(binary: &str, package: &str) {
    let ok = Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        panic!(
            "{binary} not found: install the Debian package {package} \
             (apt-get install redis-server redis-tools; scripts/test does it)"
        );
    }
}

/// A loopback port that is free now (and whose cluster bus port, +10000, is
/// free too when `bus` is set).
fn free_port(bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one command in RESP and returns the raw reply (a few KiB at most).
pub fn raw_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = vec![0u8; 65_536];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// One `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// CA file when the server speaks TLS only.
    tls_ca: Option<std::path::PathBuf>,
}

/// PEM files for a TLS-only server.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Require client certificates signed by `ca`.
    pub client_auth: bool,
}

impl RedisServer {
    /// A standalone node, no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A standalone node with extra `redis-server` arguments
    /// (e.g. `["--maxmemory", "1mb"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::spawn(extra, false)
    }

    /// A node that speaks only TLS on its port (`rediss://`).
    pub fn start_tls(tls: &ServerTls) -> Self {
        Self::start_tls_with(tls, &[])
    }

    /// The same with extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_tls_with(tls: &ServerTls, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec!["--tls-cert-file".into(), tls.cert.display().to_string()];
        args.extend(["--tls-key-file".into(), tls.key.display().to_string()]);
        args.extend(["--tls-ca-cert-file".into(), tls.ca.display().to_string()]);
        args.extend(["--tls-auth-clients".into(), if tls.client_auth { "yes" } else { "no" }.into()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_inner(&args, false, Some(tls.ca.clone()))
    }

    fn spawn(extra: &[&str], cluster: bool) -> Self {
        Self::spawn_inner(extra, cluster, None)
    }

    fn spawn_inner(extra: &[&str], cluster: bool, tls_ca: Option<std::path::PathBuf>) -> Self {
        require("redis-server", "redis-server");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            let port = free_port(cluster);
            let mut s = Self {
                port,
                dir: tempfile::tempdir().unwrap(),
                args: args.clone(),
                child: None,
                tls_ca: tls_ca.clone(),
            };
            if s.launch() {
                return s;
            }
        }
        panic!("could not start redis-server on a free port after 5 attempts");
    }

    /// Starts the process on `self.port`; false if it exited (port taken).
    fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match self.tls_ca {
            Some(_) => cmd.args(["--port", "0", "--tls-port", &port]),
            None => cmd.args(["--port", &port]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            // A server with `requirepass` answers NOAUTH: up as well. A TLS
            // server is up when it accepts connections.
            let up = match self.tls_ca {
                Some(_) => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
                None => {
                    raw_command(self.port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
                }
            };
            if up {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {} did not answer PING within {START_TIMEOUT:?}: {}", self.port, self.log());
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's log file, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the process (SIGKILL: no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (data is gone: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.launch() {
            assert!(Instant::now() < deadline, "could not restart redis-server on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        require("redis-cli", "redis-tools");
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = &self.tls_ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd.args(args).output();
        let out = out.unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `n` masters, no replicas, slots spread evenly.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(n: usize) -> Self {
        require("redis-cli", "redis-tools");
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                RedisServer::spawn(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    true,
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr());
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output().unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = cluster.nodes.iter().all(|node| {
                let info = node.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{n}"))
            });
            if ready {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok after 30 s: {}",
                cluster.nodes[0].cli(&["CLUSTER", "INFO"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node that serves `key`'s slot (from `CLUSTER NODES`).
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let slot: u16 = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap();
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slot ranges…>
            let f: Vec<&str> = line.split_whitespace().collect();
            let serves = f.iter().skip(8).any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let port: u16 = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().find(|n| n.port == port).unwrap();
            }
        }
        panic!("slot {slot} not found in {nodes}");
    }
}
