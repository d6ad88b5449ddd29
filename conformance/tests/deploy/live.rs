//! The shipped units under a real systemd: systemd runs as PID 1 of new PID
//! and mount namespaces (`unshare`), with a private `/run`, and starts
//! `ekey-issuer.service` and `ekey-gateway.service` exactly as shipped —
//! DynamicUser, LoadCredential, the whole sandbox — plus one test drop-in
//! each that changes only what a test machine must: where the credentials
//! come from, the listen addresses, a local signing key instead of KMS, the
//! test Redis and a loopback JWKS URL. The config copies differ from the
//! shipped ones in two values only: the clients' key directory and the
//! gateway's Redis URL (which has no EKEY_GATEWAY_* variable).

use super::net::{free_port, http_get, https_get, tls_pair};
use super::redis_harness::RedisServer;
use super::support::{read, root, workspace_binary};
use super::unit::Unit;
use super::{GATEWAY_CONFIG, GATEWAY_UNIT, INSTALL_DIR, ISSUER_CONFIG, ISSUER_UNIT};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_PASSWORD: &str = "a-redis-password-for-the-systemd-test";
const CLIENTS_DIR: &str = "/etc/ekey/clients/";
const TEST_CLIENTS_DIR: &str = "/run/ekey-test/clients/";

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
    assert_eq!(uid, Some("0"), "this test runs systemd as PID 1 in private namespaces: run it as root");
}

fn systemd_binary() -> &'static str {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("systemd not found: install the Debian package systemd"))
}

fn signing_key() -> Vec<u8> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey").private_key_to_pem_pkcs8().expect("PEM")
}

fn secret() -> Vec<u8> {
    let mut bytes = [0u8; 48];
    openssl::rand::rand_bytes(&mut bytes).expect("random");
    openssl::base64::encode_block(&bytes).into_bytes()
}

/// Serves the issuer's JWKS over plain HTTP on loopback, fetched from the
/// issuer's TLS listener per request: the gateway's `jwks_url` in the test.
fn jwks_relay(issuer_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let answer = match https_get(&format!("127.0.0.1:{issuer_port}"), "/.well-known/jwks.json") {
                Some((200, body)) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                _ => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// systemd in its namespaces; killed (with everything in them) on drop.
struct Systemd {
    unshare: Child,
    dir: PathBuf,
}

impl Systemd {
    /// The PID (in our namespace) of the namespaces' PID 1.
    fn pid(&self) -> Option<u32> {
        let parent = self.unshare.id();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid …
            let ppid: u32 = stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
    }

    /// `systemctl ARGS` inside the namespaces.
    fn systemctl(&self, args: &[&str]) -> String {
        let pid = self.pid().expect("systemd is running").to_string();
        let output = Command::new("nsenter")
            .args(["-t", &pid, "-m", "-p", "systemctl"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("nsenter (util-linux): {e}"));
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // unshare --kill-child: its child, systemd, gets SIGKILL too, and
        // with PID 1 gone the kernel kills the rest of the namespace.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Polls `check` until it is true or the deadline passes.
fn wait_for(what: &str, deadline: Instant, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen in time:\n{}", context());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The service processes started from the built binaries: their
/// `/proc/PID/status` lines that show the sandbox.
fn sandbox_of(binary: &Path) -> Option<String> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.starts_with(binary.to_str()?) || !cmdline.contains("/run/credentials/") {
            return None;
        }
        std::fs::read_to_string(entry.path().join("status")).ok()
    })
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(field)).map(str::trim).unwrap_or("")
}

/// Writes a service's credential sources and its test drop-in; returns the
/// drop-in text.
fn prepare(unit: &Unit, sources: &Path, files: &[(&str, Vec<u8>)], extra: &[&str], logs: &Path, name: &str) -> String {
    std::fs::create_dir_all(sources).expect("credential dir");
    for (file, content) in files {
        std::fs::write(sources.join(file), content).expect("write a credential source");
    }
    let mut drop_in = String::from("[Unit]\nDefaultDependencies=no\n\n[Service]\nLoadCredential=\n");
    let mut ids: Vec<String> = unit.credentials().into_iter().map(|(id, _)| id).collect();
    ids.extend(files.iter().map(|(f, _)| f.to_string()).filter(|f| !unit.credentials().iter().any(|(id, _)| id == f)));
    for id in ids {
        let source = sources.join(&id);
        assert!(source.is_file(), "the test prepares every credential of {name}: {id}");
        drop_in.push_str(&format!("LoadCredential={id}:{}\n", source.display()));
    }
    for line in extra {
        drop_in.push_str(line);
        drop_in.push('\n');
    }
    drop_in.push_str(&format!("StandardOutput=file:{}\n", logs.join(format!("{name}.out")).display()));
    drop_in.push_str(&format!("StandardError=file:{}\n", logs.join(format!("{name}.err")).display()));
    drop_in
}

pub fn run_units_under_systemd(timeout: Duration) {
    require_root();
    let systemd = systemd_binary();
    let redis = RedisServer::start_with(&["--requirepass", REDIS_PASSWORD]);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path();
    let issuer_binary = workspace_binary("ekey-issuer");
    let gateway_binary = workspace_binary("ekey-gateway");
    let (issuer_port, issuer_admin, gateway_port, gateway_admin) = (free_port(), free_port(), free_port(), free_port());
    let relay = jwks_relay(issuer_port);

    // The issuer.
    let issuer_unit_text = read(ISSUER_UNIT);
    let issuer_unit = Unit::parse(&[&issuer_unit_text]);
    let (tls_key, tls_cert) = tls_pair();
    let issuer_config = read(ISSUER_CONFIG).replace(CLIENTS_DIR, TEST_CLIENTS_DIR);
    let issuer_drop_in = prepare(
        &issuer_unit,
        &dir.join("issuer"),
        &[
            ("issuer.toml", issuer_config.into_bytes()),
            ("tls.crt", tls_cert),
            ("tls.key", tls_key),
            ("dpop-nonce-secret", secret()),
            ("admin-token", secret()),
            ("redis-password", REDIS_PASSWORD.into()),
            ("signing.pem", signing_key()),
        ],
        &[
            "Environment=EKEY_SIGNING_KEY_FILE=%d/signing.pem",
            &format!("Environment=EKEY_REVOCATION_REDIS_URL={}", redis.url()),
            &format!("Environment=EKEY_LISTEN=127.0.0.1:{issuer_port}"),
            &format!("Environment=EKEY_ADMIN_LISTEN=127.0.0.1:{issuer_admin}"),
        ],
        dir,
        "issuer",
    );

    // The gateway.
    let gateway_unit_text = read(GATEWAY_UNIT);
    let gateway_unit = Unit::parse(&[&gateway_unit_text]);
    let shipped = read(GATEWAY_CONFIG);
    let gateway_config = shipped.replace("rediss://redis.example.internal:6379", &redis.url());
    assert_ne!(gateway_config, shipped, "{GATEWAY_CONFIG} names the example Redis URL");
    let gateway_drop_in = prepare(
        &gateway_unit,
        &dir.join("gateway"),
        &[("gateway.toml", gateway_config.into_bytes()), ("redis-password", REDIS_PASSWORD.into())],
        &[
            &format!("Environment=EKEY_GATEWAY_JWKS_URL=http://127.0.0.1:{relay}/.well-known/jwks.json"),
            &format!("Environment=EKEY_GATEWAY_LISTEN=127.0.0.1:{gateway_port}"),
            &format!("Environment=EKEY_GATEWAY_ADMIN_LISTEN=127.0.0.1:{gateway_admin}"),
        ],
        dir,
        "gateway",
    );

    // Unit files for systemd's /run/systemd/system: the shipped ones with
    // the built binaries, their drop-ins, and a target that wants both.
    // network-online.target is masked: the host's network belongs to the
    // host, and nothing of it may be started from the test's systemd.
    let units = dir.join("units");
    for (name, text, drop_in) in [
        ("ekey-issuer.service", &issuer_unit_text, &issuer_drop_in),
        ("ekey-gateway.service", &gateway_unit_text, &gateway_drop_in),
    ] {
        let text = text
            .replace(&format!("{INSTALL_DIR}ekey-issuer"), issuer_binary.to_str().expect("UTF-8"))
            .replace(&format!("{INSTALL_DIR}ekey-gateway"), gateway_binary.to_str().expect("UTF-8"));
        std::fs::create_dir_all(units.join(format!("{name}.d"))).expect("drop-in dir");
        std::fs::write(units.join(name), text).expect("unit");
        std::fs::write(units.join(format!("{name}.d/test.conf")), drop_in).expect("drop-in");
    }
    std::fs::write(
        units.join("ekey-test.target"),
        "[Unit]\nDefaultDependencies=no\nWants=ekey-issuer.service ekey-gateway.service\n",
    )
    .expect("target");
    let clients = root().join("deploy/kubernetes/base/issuer/clients");
    let script = format!(
        "set -e\n\
         mount -t tmpfs tmpfs /run\n\
         mount --make-rshared /\n\
         mkdir -p /run/systemd/system {TEST_CLIENTS_DIR}\n\
         cp -r {units}/. /run/systemd/system/\n\
         ln -s /dev/null /run/systemd/system/network-online.target\n\
         cp {clients}/*.jwks.json {TEST_CLIENTS_DIR}\n\
         chmod -R a+rX /run/ekey-test\n\
         exec env container=ekey-test {systemd} --system --unit=ekey-test.target\n",
        units = units.display(),
        clients = clients.display(),
    );
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation", "private", "sh", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("unshare (util-linux): {e}"));
    let sd = Systemd { unshare, dir: dir.to_path_buf() };
    let deadline = Instant::now() + timeout;
    let logs = || format!("issuer:\n{}\ngateway:\n{}", sd.log("issuer.err"), sd.log("gateway.err"));

    // Both ready: the issuer signs (local key) and reaches Redis with the
    // password credential; the gateway reaches Redis and has the issuer's keys.
    wait_for(
        "issuer /readyz 200",
        deadline,
        || http_get(&format!("127.0.0.1:{issuer_admin}"), "/readyz").is_some_and(|(s, _)| s == 200),
        logs,
    );
    let (status, jwks) = https_get(&format!("127.0.0.1:{issuer_port}"), "/.well-known/jwks.json")
        .expect("the issuer's TLS listener answers");
    assert_eq!(status, 200, "JWKS over TLS");
    assert!(jwks.contains("\"kid\""), "{jwks}");
    wait_for(
        "gateway /readyz 200",
        deadline,
        || http_get(&format!("127.0.0.1:{gateway_admin}"), "/readyz").is_some_and(|(s, _)| s == 200),
        logs,
    );

    // The sandbox is real: a dynamic, non-root user, no capabilities, no
    // new privileges, a seccomp filter.
    for binary in [&issuer_binary, &gateway_binary] {
        let status = sandbox_of(binary).unwrap_or_else(|| panic!("no process of {}", binary.display()));
        let uid = status_field(&status, "Uid:").split_whitespace().next().unwrap_or("");
        assert_ne!(uid, "0", "{}: runs as root", binary.display());
        assert_eq!(status_field(&status, "CapEff:"), "0000000000000000", "{}: capabilities", binary.display());
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{}: NoNewPrivs", binary.display());
        assert_eq!(status_field(&status, "Seccomp:"), "2", "{}: seccomp filter", binary.display());
    }

    // Stop: SIGTERM, drain, exit 0, well within TimeoutStopSec.
    let started = Instant::now();
    let out = sd.systemctl(&["stop", "ekey-issuer.service", "ekey-gateway.service"]);
    let stop_time = started.elapsed();
    for unit in ["ekey-issuer.service", "ekey-gateway.service"] {
        let show = sd.systemctl(&["show", "-p", "Result", "-p", "ExecMainStatus", unit]);
        assert!(
            show.contains("Result=success") && show.contains("ExecMainStatus=0"),
            "{unit}: {show}{out}\n{}",
            logs()
        );
    }
    assert!(sd.log("issuer.err").contains("SIGTERM received"), "{}", logs());
    assert!(stop_time < Duration::from_secs(25), "stopping took {stop_time:?}");
}
