//! Connections to one Redis node or to a Redis Cluster, reused across
//! requests (multiplexed, re-established in the background).

use super::settings::{RedisStoreError, RedisStoreSettings};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, ErrorKind, IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One script call: `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`.
pub(crate) struct Eval<'a> {
    pub sha: &'a str,
    pub code: &'a str,
    pub keys: [&'a [u8]; 2],
    pub args: [&'a [u8]; 4],
}

impl Eval<'_> {
    fn cmd(&self, by_sha: bool) -> Cmd {
        let mut c = redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
        c.arg(if by_sha { self.sha } else { self.code }).arg(self.keys.len());
        for k in self.keys {
            c.arg(k);
        }
        for a in self.args {
            c.arg(a);
        }
        c
    }
}

/// rustls needs a process-wide crypto provider for `rediss://`; the redis
/// crate brings rustls without choosing one. Install ring unless the
/// application already installed a provider (then that one is used).
fn ensure_crypto_provider(s: &RedisStoreSettings) {
    if s.url.iter().chain(&s.cluster).any(|u| u.starts_with("rediss://")) {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for one node, with the settings' user, password and TLS files.
fn node_client(
    url: &str,
    field: &'static str,
    s: &RedisStoreSettings,
    password: Option<&str>,
    tls: Option<redis::TlsCertificates>,
) -> Result<redis::Client, RedisStoreError> {
    let mut info = url.into_connection_info().map_err(|e| config_err(field, e))?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(u) = &s.username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = password {
        redis_info = redis_info.set_password(p);
    }
    info = info.set_redis_settings(redis_info);
    match tls {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
    .map_err(|e| config_err(field, e))
}

/// One client per configured node (the single `url`, or every cluster
/// seed), for connections the pool does not cover, such as pub/sub.
pub(crate) fn node_clients(s: &RedisStoreSettings) -> Result<Vec<redis::Client>, RedisStoreError> {
    ensure_crypto_provider(s);
    let password = s.password()?;
    let field = if s.url.is_some() { "url" } else { "cluster" };
    s.url
        .iter()
        .chain(&s.cluster)
        .map(|u| node_client(u, field, s, password.as_deref(), s.tls_certificates()?))
        .collect()
}

/// A small pool of multiplexed connections, used round robin.
pub(crate) enum Backend {
    Single { conns: Vec<ConnectionManager>, next: AtomicUsize },
    Cluster { conns: Vec<ClusterConnection>, next: AtomicUsize },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single { conns, .. } => write!(f, "Backend::Single({} connections)", conns.len()),
            Self::Cluster { conns, .. } => write!(f, "Backend::Cluster({} connections)", conns.len()),
        }
    }
}

/// One connection of the pool (a cheap clone).
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

fn connect_err(e: impl std::fmt::Display) -> RedisStoreError {
    RedisStoreError::Connect(e.to_string())
}

fn config_err(field: &'static str, e: impl std::fmt::Display) -> RedisStoreError {
    RedisStoreError::Config { field, reason: e.to_string() }
}

impl Backend {
    pub(crate) async fn connect(s: &RedisStoreSettings) -> Result<Self, RedisStoreError> {
        ensure_crypto_provider(s);
        let password = s.password()?;
        let tls = s.tls_certificates()?;
        if let Some(url) = &s.url {
            let client = node_client(url, "url", s, password.as_deref(), tls)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(s.connect_timeout()))
                .set_response_timeout(Some(s.response_timeout()))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(500));
            let mut conns = Vec::with_capacity(s.connections);
            for _ in 0..s.connections {
                let c = tokio::time::timeout(
                    s.connect_timeout() * 2,
                    client.get_connection_manager_with_config(config.clone()),
                )
                .await
                .map_err(|_| connect_err(format!("no connection within {:?}", s.connect_timeout() * 2)))?
                .map_err(connect_err)?;
                conns.push(c);
            }
            Ok(Self::Single { conns, next: AtomicUsize::new(0) })
        } else {
            let mut infos = Vec::with_capacity(s.cluster.len());
            for u in &s.cluster {
                infos.push(u.as_str().into_connection_info().map_err(|e| config_err("cluster", e))?);
            }
            let mut b = redis::cluster::ClusterClientBuilder::new(infos)
                .retries(s.cluster_retries)
                .min_retry_wait(5)
                .max_retry_wait(100)
                .connection_timeout(s.connect_timeout())
                .response_timeout(s.response_timeout())
                .overall_response_timeout(Some(s.request_timeout()));
            if let Some(u) = &s.username {
                b = b.username(u);
            }
            if let Some(p) = &password {
                b = b.password(p);
            }
            if let Some(certs) = tls {
                b = b.certs(certs);
            }
            let client = b.build().map_err(|e| config_err("cluster", e))?;
            let mut conns = Vec::with_capacity(s.connections);
            for _ in 0..s.connections {
                let c = tokio::time::timeout(s.connect_timeout() * 2, client.get_async_connection())
                    .await
                    .map_err(|_| connect_err(format!("no cluster connection within {:?}", s.connect_timeout() * 2)))?
                    .map_err(connect_err)?;
                conns.push(c);
            }
            Ok(Self::Cluster { conns, next: AtomicUsize::new(0) })
        }
    }

    pub(crate) fn pick(&self) -> Conn {
        match self {
            Self::Single { conns, next } => {
                Conn::Single(conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone())
            }
            Self::Cluster { conns, next } => {
                Conn::Cluster(conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone())
            }
        }
    }

    /// `Some(why)` when some primary may evict keys: a `maxmemory-policy`
    /// other than `noeviction`. Every key of ours has a TTL, so `volatile-*`
    /// policies can evict them just as `allkeys-*` do.
    pub(crate) async fn eviction_risk(&self, timeout: Duration) -> Result<Option<String>, RedisError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory*");
        let per_node: Vec<(String, Value)> = match self.pick() {
            Conn::Single(mut c) => vec![("redis".into(), with_timeout(timeout, cmd.query_async(&mut c)).await?)],
            Conn::Cluster(mut c) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match with_timeout(timeout, c.route_command(cmd, routing)).await? {
                    Value::Map(pairs) => pairs
                        .into_iter()
                        .map(|(node, v)| Ok((redis::from_redis_value::<String>(node)?, v)))
                        .collect::<RedisResult<_>>()?,
                    other => return Err(unexpected(&other)),
                }
            }
        };
        let mut risks = Vec::new();
        for (node, v) in per_node {
            if let Value::ServerError(e) = v {
                return Err(RedisError::from(e));
            }
            let config: HashMap<String, String> = redis::from_redis_value(v)?;
            let policy = config.get("maxmemory-policy").map_or("?", String::as_str);
            if policy != "noeviction" {
                let max = config.get("maxmemory").map_or("?", String::as_str);
                risks.push(format!("{node}: maxmemory-policy {policy} (maxmemory {max})"));
            }
        }
        Ok((!risks.is_empty()).then(|| risks.join("; ")))
    }
}

async fn with_timeout<T>(t: Duration, f: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(t, f)
        .await
        .unwrap_or_else(|_| Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))))
}

fn unexpected(v: &Value) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, "unexpected reply", format!("{v:?}")))
}

impl Conn {
    /// Runs the script by hash, and by body when this node does not have it
    /// cached (after a restart, a failover or `SCRIPT FLUSH`). On a cluster
    /// the command is routed by its first key, so the fallback is per node.
    pub(crate) async fn eval(&mut self, e: &Eval<'_>) -> RedisResult<Value> {
        match self.query(&e.cmd(true)).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => self.query(&e.cmd(false)).await,
            other => other,
        }
    }

    pub(crate) async fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// `WAIT n timeout` on the connection (and node) that holds `key`;
    /// returns how many replicas acknowledged.
    pub(crate) async fn wait_replicas(&mut self, key: &str, n: u32, timeout_ms: u64) -> RedisResult<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(n).arg(timeout_ms);
        let v = match self {
            Self::Single(c) => cmd.query_async(c).await?,
            Self::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await?
            }
        };
        match v {
            Value::Int(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }
}

/// Errors after which the same request is worth sending again: the
/// connection broke, so the script may or may not have run (the request id
/// makes a second run answer like the first) and a fresh connection may
/// work. Not a refused connection (Redis is down: answer at once) nor a
/// timeout (the time is spent).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    !e.is_connection_refusal() && !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error())
}

/// A short, stable reason for logs.
pub(crate) fn classify(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "unreachable"
    } else if e.code() == Some("BUSY") {
        "busy"
    } else if e.kind() == ErrorKind::UnexpectedReturnType {
        "unexpected reply"
    } else if e.is_cluster_error() {
        "cluster error"
    } else if e.detail().is_some_and(|d| d.contains("script")) {
        "script error"
    } else {
        "error"
    }
}
