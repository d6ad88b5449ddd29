//! KMS for tests: moto's server (`moto[server]`) on a free loopback port,
//! killed on drop; a stoppable TCP proxy in front of it (a KMS outage that
//! keeps moto's state); SDK clients with fixed test credentials.

use aws_sdk_kms::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use ekey_issuer::{KmsClient, KmsSettings};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// moto's server on loopback, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(str::to_owned);
        let spawn = |program: &str, pre: &[&str]| {
            Command::new(program)
                .args(pre)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let mut child = match spawn("moto_server", &[]) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => spawn("python3", &["-m", "moto.server"])
                .unwrap_or_else(|e| panic!("{}", missing(&format!("cannot run moto_server or python3 ({e})")))),
            Err(e) => panic!("{}", missing(&format!("cannot run moto_server ({e})"))),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{}", missing(&format!("the moto server exited at start ({status})")));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the moto server did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

fn missing(why: &str) -> String {
    format!(
        "{why}: these tests need moto's KMS server. Run scripts/test (it installs it) or `pip install 'moto[server]'`"
    )
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on a fixed loopback port that can be stopped (connections
/// refused, open ones cut) and started again on the same port.
/// It also counts the KMS `Sign` requests that pass through it.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<JoinSet<()>>,
    pub sign_requests: Arc<AtomicUsize>,
}

/// Copies client → server, counting requests whose `X-Amz-Target` is KMS
/// `Sign` (the marker may straddle two reads: a tail is kept).
async fn forward_counting(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, signs: Arc<AtomicUsize>) {
    const MARK: &[u8] = b"TrentService.Sign\r\n";
    let mut buf = vec![0u8; 16 * 1024];
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        window.extend_from_slice(&buf[..n]);
        let found = window.windows(MARK.len()).filter(|w| w.eq_ignore_ascii_case(MARK)).count();
        signs.fetch_add(found, Ordering::SeqCst);
        let keep = window.len().min(MARK.len() - 1);
        window.drain(..window.len() - keep);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut p = Self { addr: listener.local_addr().unwrap(), upstream, tasks: None, sign_requests: Arc::default() };
        p.serve(listener);
        p
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, signs) = (self.upstream, self.sign_requests.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let signs = signs.clone();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (client_r, mut client_w) = client.into_split();
                    let (mut server_r, server_w) = server.into_split();
                    tokio::join!(forward_counting(client_r, server_w, signs), async {
                        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                        let _ = client_w.shutdown().await;
                    });
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Closes the port and cuts every open connection (dropping the
    /// accept task drops its connection set).
    pub async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

pub fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .build()
}

pub fn client(endpoint: &str, settings: KmsSettings) -> KmsClient {
    KmsClient::from_sdk_config(&sdk_config(), KmsSettings { endpoint: Some(endpoint.to_owned()), ..settings }).unwrap()
}

/// A plain SDK client for setting moto up (CreateKey, CreateAlias).
pub fn admin_client(endpoint: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::config::Builder::from(&sdk_config())
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// CreateKey (SIGN_VERIFY) and an alias for it; returns the alias.
pub async fn create_key(endpoint: &str, spec: KeySpec, alias: &str) -> String {
    let kms = admin_client(endpoint);
    let key = kms.create_key().key_usage(KeyUsageType::SignVerify).key_spec(spec).send().await.unwrap();
    let id = key.key_metadata().unwrap().key_id().to_owned();
    let alias = format!("alias/{alias}");
    kms.create_alias().alias_name(&alias).target_key_id(id).send().await.unwrap();
    alias
}

/// Settings that make an outage show within a couple of seconds: a 2 s call
/// budget, 500 ms attempts, `max_attempts`, and a breaker that opens after
/// `breaker_failures` and tries again after 1 s.
pub fn outage_settings(max_attempts: u32, breaker_failures: u32) -> KmsSettings {
    KmsSettings {
        timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_millis(500),
        max_attempts,
        breaker_failures,
        breaker_cooldown: Duration::from_secs(1),
        ..KmsSettings::default()
    }
}
