//! `deploy/haproxy/haproxy.cfg` is valid for HAProxy (`haproxy -c`) with its
//! addresses from the environment, passes TLS through to the issuers, and
//! checks them the way the issuer is built to be checked: `/readyz` on the
//! admin port of the host config, marking a replica down well within its
//! drain — and it does so for real: HAProxy started with this file in front
//! of three `ekey-issuer` processes spreads TLS connections over all three
//! (each answers with its own key), takes a replica out when it shuts down,
//! and back when it returns. Needs `haproxy` (Debian package haproxy).

#[path = "deploy/net.rs"]
mod net;
#[path = "deploy/support.rs"]
mod support;

use net::{free_port, http_get, https_get, tls_pair};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{read, run, workspace_binary, HAPROXY};

const CONFIG: &str = "deploy/haproxy/haproxy.cfg";
const ISSUER_HOST_CONFIG: &str = "deploy/systemd/issuer.toml";

/// Example replica addresses, as the environment gives them.
const REPLICAS: [(&str, &str); 3] =
    [("EKEY_ISSUER_1", "10.0.1.10:8443"), ("EKEY_ISSUER_2", "10.0.1.11:8443"), ("EKEY_ISSUER_3", "10.0.1.12:8443")];

fn check(config: &Path, env: &[(&str, &str)]) -> support::Run {
    run(HAPROXY, &["-c", "-f", config.to_str().expect("UTF-8 path")], env)
}

#[test]
fn haproxy_accepts_the_config_with_addresses_from_the_environment() {
    let config = support::root().join(CONFIG);
    let result = check(&config, &REPLICAS);
    assert!(result.success, "haproxy -c refused {CONFIG}:\n{}", result.text());
    assert!(result.text().contains("Configuration file is valid"), "{}", result.text());

    // With the optional user switch, and with every address overridden.
    let mut env = REPLICAS.to_vec();
    env.extend([("EKEY_LB_USER", "haproxy"), ("EKEY_LB_BIND", "127.0.0.1:8443"), ("EKEY_ISSUER_ADMIN_PORT", "9081")]);
    let result = check(&config, &env);
    assert!(result.success, "with EKEY_LB_USER and EKEY_LB_BIND:\n{}", result.text());

    // The addresses really come from the environment: without them the
    // server lines have none.
    let result = check(&config, &[]);
    assert!(!result.success, "haproxy -c accepted {CONFIG} without replica addresses");
    assert!(result.text().contains("'server' expects <name> and <addr>"), "{}", result.text());

    // And the check can fail: a misspelt keyword is refused.
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("haproxy.cfg");
    std::fs::write(
        &broken,
        read(CONFIG).replace("on-marked-down shutdown-sessions", "on-marked-down shutdown-session"),
    )
    .expect("write");
    let result = check(&broken, &REPLICAS);
    assert!(!result.success, "haproxy -c accepted a misspelt keyword");
}

/// The config's lines, comments and blank lines dropped.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

#[test]
fn the_config_passes_tls_through_and_checks_readyz_on_the_admin_port() {
    let config = lines(&read(CONFIG));
    let has = |line: &str| config.iter().any(|l| l == line);
    assert!(has("mode tcp"), "layer 4: mode tcp");
    assert!(!config.iter().any(|l| l.starts_with("mode http")), "no mode http anywhere");
    // Passthrough: no certificate on the bind line, no TLS to the servers.
    for line in
        config.iter().filter(|l| l.starts_with("bind ") || l.starts_with("server ") || l.starts_with("default-server"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(!words.contains(&"ssl") && !words.contains(&"crt"), "TLS is passed through, not terminated: {line}");
    }
    assert!(has("option httpchk"), "HTTP health checks");
    assert!(
        config.iter().any(|l| l.starts_with("http-check send meth GET uri /readyz ")),
        "the health check asks /readyz"
    );
    assert!(has("http-check expect status 200"));
    let servers: Vec<&String> = config.iter().filter(|l| l.starts_with("server ")).collect();
    assert_eq!(servers.len(), 3, "three replicas");
    for (server, (var, _)) in servers.iter().zip(REPLICAS) {
        assert!(server.contains(&format!("\"${{{var}}}\"")), "{server}: address from {var}");
    }

    let default_server = config.iter().find(|l| l.starts_with("default-server ")).expect("a default-server line");
    let words: Vec<&str> = default_server.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).map(|i| words[i + 1]);
    assert_eq!(after("on-marked-down"), Some("shutdown-sessions"), "{default_server}");
    assert!(words.contains(&"check"), "{default_server}");

    // The checks go to the admin port of the host config.
    let issuer =
        ekey_issuer::Config::from_toml(&read(ISSUER_HOST_CONFIG), Path::new("/run/credentials/x"), &|_| Ok(None))
            .expect("the host config loads");
    let port = after("port").expect("a check port");
    assert_eq!(
        port,
        format!("\"${{EKEY_ISSUER_ADMIN_PORT-{}}}\"", issuer.server.admin_listen.port()),
        "the default check port is {ISSUER_HOST_CONFIG}'s admin port"
    );
    for (_, address) in REPLICAS {
        assert!(address.ends_with(&format!(":{}", issuer.server.listen.port())), "examples use server.listen's port");
    }

    // Marked down (inter × fall) well before the replica's drain ends.
    let seconds = |key: &str| -> u64 {
        let value = after(key).unwrap_or_else(|| panic!("{default_server}: no {key}"));
        value.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{key} {value}: whole seconds"))
    };
    let marked_down = seconds("inter") * seconds("fall");
    let drain = issuer.server.drain_timeout.as_secs();
    assert!(marked_down < drain, "marked down after {marked_down} s, but a replica drains for only {drain} s");
}

// ---------------------------------------------------------------------------
// HAProxy with this file in front of three real issuers.

/// A child process with its output in a file; killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd or Kubernetes stop a replica.
    fn terminate(&mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "the replica did not exit after SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One issuer replica on its own loopback address (127.0.0.N), with the
/// same ports as its peers, TLS on, a key generated at start (so each
/// replica publishes its own `kid`).
fn replica(dir: &Path, n: u8, port: u16, admin: u16) -> Process {
    let config = dir.join("issuer.toml");
    if !config.exists() {
        std::fs::write(&config, "[signing_key]\ngenerate = true\n").expect("config");
    }
    let mut command = Command::new(workspace_binary("ekey-issuer"));
    command
        .args(["serve", "--config", config.to_str().expect("UTF-8 path")])
        .env("EKEY_LISTEN", format!("127.0.0.{n}:{port}"))
        .env("EKEY_ADMIN_LISTEN", format!("127.0.0.{n}:{admin}"))
        .env("EKEY_TLS_CERT", dir.join("tls.crt"))
        .env("EKEY_TLS_KEY", dir.join("tls.key"))
        .env("EKEY_LOG", "warn");
    let process = Process::spawn(&mut command, dir.join(format!("issuer{n}.log")));
    let ready = || http_get(&format!("127.0.0.{n}:{admin}"), "/readyz").is_some_and(|(status, _)| status == 200);
    wait_for(&format!("replica {n} ready"), Duration::from_secs(30), ready, || process.log());
    process
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `kid`s of the JWKS answers to `count` fresh TLS connections through
/// the balancer; every answer must be 200.
fn kids_through(balancer: &str, count: usize) -> BTreeSet<String> {
    let mut kids = BTreeSet::new();
    for _ in 0..count {
        let (status, body) = https_get(balancer, "/.well-known/jwks.json").expect("a TLS answer through HAProxy");
        assert_eq!(status, 200, "{body}");
        let jwks: serde_json::Value = serde_json::from_str(&body).expect("JWKS JSON");
        kids.insert(jwks["keys"][0]["kid"].as_str().expect("a kid").to_string());
    }
    kids
}

#[test]
fn haproxy_spreads_tls_over_the_replicas_and_follows_readyz() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, cert) = tls_pair();
    std::fs::write(dir.path().join("tls.key"), key).expect("key");
    std::fs::write(dir.path().join("tls.crt"), cert).expect("cert");
    let (port, admin, lb) = (free_port(), free_port(), free_port());
    let mut replicas: Vec<Process> = (1..=3).map(|n| replica(dir.path(), n, port, admin)).collect();

    let balancer = format!("127.0.0.1:{lb}");
    let replica_env: Vec<(String, String)> =
        (1..=3).map(|n| (format!("EKEY_ISSUER_{n}"), format!("127.0.0.{n}:{port}"))).collect();
    let mut command = Command::new(HAPROXY.program);
    command
        .args(["-db", "-f", support::root().join(CONFIG).to_str().expect("UTF-8 path")])
        .env("EKEY_LB_BIND", &balancer)
        .env("EKEY_ISSUER_ADMIN_PORT", admin.to_string())
        .envs(replica_env);
    let haproxy = Process::spawn(&mut command, dir.path().join("haproxy.log"));
    let log = || haproxy.log();
    wait_for("HAProxy listening", Duration::from_secs(10), || std::net::TcpStream::connect(&balancer).is_ok(), log);

    // TLS goes through to the issuers (the handshake is theirs), and new
    // connections reach all three.
    let all = kids_through(&balancer, 12);
    assert_eq!(all.len(), 3, "connections reached {} replicas:\n{}", all.len(), haproxy.log());

    // Replica 2 shuts down: HAProxy marks it down and every request still
    // gets an answer, from the other two.
    replicas[1].terminate();
    wait_for("issuer2 marked DOWN", Duration::from_secs(15), || log().contains("issuer2 is DOWN"), log);
    let remaining = kids_through(&balancer, 12);
    assert_eq!(remaining.len(), 2, "{remaining:?}");
    assert!(remaining.is_subset(&all), "{remaining:?} ⊄ {all:?}");

    // Back (with a new key): marked up again, and used.
    replicas[1] = replica(dir.path(), 2, port, admin);
    wait_for("issuer2 marked UP", Duration::from_secs(15), || log().contains("issuer2 is UP"), log);
    let again = kids_through(&balancer, 12);
    assert_eq!(again.len(), 3, "{again:?}:\n{}", haproxy.log());
}
