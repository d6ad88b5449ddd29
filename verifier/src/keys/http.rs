//! The issuer's JWKS fetched over HTTPS (or plain HTTP on loopback), cached
//! by `Cache-Control`/`ETag`.

use super::set::StaticKeys;
use super::{tls, KeySource, KeySourceError};
use crate::jose::alg::Algorithm;
use crate::jose::jwk::Jwks;
use crate::jose::key::VerifyingKey;
#[cfg(feature = "metrics")]
use crate::metrics::{JwksRefresh, VerifierMetrics};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Default of [`HttpJwksSettings::max_staleness`]: 5 minutes, the longest
/// token lifetime.
const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(300);

/// How the JWKS is fetched and cached. Every field documents its default.
#[derive(Debug, Clone)]
pub struct HttpJwksSettings {
    /// The issuer's `jwks_uri`: `https://`, or `http://` to a loopback host
    /// (`127.0.0.0/8`, `::1`, `localhost`; other hosts need
    /// `allow_insecure_http`). No default: required.
    pub url: String,
    /// Least time between two fetches caused by unknown `kid`s. Defaults to 10 s.
    pub cooldown: Duration,
    /// Freshness when the response has no `Cache-Control: max-age`. Defaults to 300 s.
    pub default_max_age: Duration,
    /// Upper bound applied to `max-age`. Defaults to 3600 s.
    pub max_max_age: Duration,
    /// How long past its freshness a set is still used while the issuer's
    /// JWKS cannot be fetched (stale-if-error); after it, verification fails
    /// closed (503). It bounds how long a key the issuer withdrew stays
    /// trusted during an outage. Defaults to 300 s (
    /// tokens live at most 5 minutes, so an outage that short costs nothing,
    /// and a longer one is not papered over).
    pub max_staleness: Duration,
    /// Per-fetch timeout. Defaults to 5 s.
    pub timeout: Duration,
    /// Largest JWKS body accepted. Defaults to 64 KiB.
    pub max_body: usize,
    /// A PEM file of the CA certificates trusted for an `https://` URL,
    /// instead of the system's trust store. Defaults to none (the system's
    /// store).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of SubjectPublicKeyInfo (DER), base64 (standard or url-safe):
    /// when any is given, the server's leaf certificate must have one of
    /// these keys, on top of a valid chain. List the next key's pin before a
    /// certificate rotation. Defaults to none.
    pub spki_pins: Vec<String>,
    /// Allow `http://` to a host that is not loopback (the keys then travel
    /// unauthenticated: anyone on the path can substitute their own).
    /// Defaults to `false`.
    pub allow_insecure_http: bool,
}

impl HttpJwksSettings {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cooldown: Duration::from_secs(10),
            default_max_age: Duration::from_secs(300),
            max_max_age: Duration::from_secs(3600),
            max_staleness: DEFAULT_MAX_STALENESS,
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            ca_file: None,
            spki_pins: Vec::new(),
            allow_insecure_http: false,
        }
    }
}

#[derive(Debug)]
struct Cached {
    keys: Arc<StaticKeys>,
    etag: Option<String>,
    fresh_until: Instant,
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Cached>,
    last_attempt: Option<Instant>,
    fetches: u64,
}

/// A [`KeySource`] over the issuer's JWKS endpoint.
///
/// - Fresh set: served from memory.
/// - Unknown `kid`: one refetch shared by all waiting requests, at most once per
///   `cooldown` (a flood of random `kid`s costs at most one fetch per cooldown).
/// - Expired set: refetched (conditionally, with `If-None-Match`); while the
///   issuer is unreachable the last good set is used for up to `max_staleness`.
/// - Keys of a set that cannot be used are skipped (RFC 7517 §5), logged
///   once per fetched set and counted (`ekey.jwks.skipped_keys`).
#[derive(Debug)]
pub struct HttpJwks {
    settings: HttpJwksSettings,
    uri: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    #[cfg(feature = "metrics")]
    metrics: Option<VerifierMetrics>,
}

impl HttpJwks {
    /// A key source for `settings.url`; nothing is fetched until first use
    /// (call [`HttpJwks::refresh`] to fetch eagerly). Fails, naming the
    /// setting, on a URL that is not `https://` (or `http://` to loopback,
    /// unless `allow_insecure_http`), an unreadable `ca_file`, a pin that is
    /// not a base64 SHA-256, or no trusted CA in the system's store.
    pub fn new(settings: HttpJwksSettings) -> Result<Self, KeySourceError> {
        let config = |problem: String| KeySourceError::Config { field: "url", problem };
        let uri: http::Uri = settings.url.parse().map_err(|_| config(format!("{:?} is not a URL", settings.url)))?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| config("the URL has no host".into()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if settings.allow_insecure_http || is_loopback(host) => {}
            Some("http") => {
                return Err(config(format!(
                    "plain http:// to {host:?}, which is not loopback: use https://, or set allow_insecure_http"
                )))
            }
            _ => return Err(config(format!("{:?} is not an https:// URL", settings.url))),
        }
        let tls = if uri.scheme_str() == Some("https") {
            tls::client_config(settings.ca_file.as_deref(), &settings.spki_pins)?
        } else {
            // No TLS is spoken, but the connector needs a configuration;
            // the settings are still checked, so a typo fails here.
            for pin in &settings.spki_pins {
                tls::parse_pin(pin)?;
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| config(format!("TLS: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            settings,
            uri,
            client,
            state: RwLock::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// Counts every fetch in `ekey.jwks.refreshes` by result: `updated` (a
    /// new set installed), `not_modified` (304) or `error` (the held set, if
    /// any, stays).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: VerifierMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How many HTTP fetches were made (conditional ones included).
    pub fn fetch_count(&self) -> u64 {
        self.read().fetches
    }

    /// Whether a set is held that lookups would still use: fetched, and not
    /// past its freshness by more than `max_staleness` (a readiness check:
    /// false means verification answers 503 until a fetch succeeds).
    pub fn has_usable_set(&self) -> bool {
        self.read().cached.as_ref().is_some_and(|c| Instant::now() <= c.fresh_until + self.settings.max_staleness)
    }

    /// Fetches now (single-flight), keeping the old set on failure.
    pub async fn refresh(&self) -> Result<(), KeySourceError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the cache says now: the set, and whether it is still fresh.
    fn snapshot(&self) -> (Option<(Arc<StaticKeys>, bool)>, Option<Instant>) {
        let s = self.read();
        let now = Instant::now();
        (s.cached.as_ref().map(|c| (Arc::clone(&c.keys), now < c.fresh_until)), s.last_attempt)
    }

    async fn fetch(&self) -> Result<(), KeySourceError> {
        let result = self.fetch_once().await;
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.record_jwks_refresh(match &result {
                Ok(true) => JwksRefresh::Updated,
                Ok(false) => JwksRefresh::NotModified,
                Err(_) => JwksRefresh::Error,
            });
        }
        result.map(drop)
    }

    /// One fetch; `Ok(true)` when a new set was installed, `Ok(false)` on 304.
    async fn fetch_once(&self) -> Result<bool, KeySourceError> {
        let etag = {
            let mut s = self.write();
            s.last_attempt = Some(Instant::now());
            s.fetches += 1;
            s.cached.as_ref().and_then(|c| c.etag.clone())
        };
        let result = tokio::time::timeout(self.settings.timeout, self.get(etag)).await;
        let fetched = match result {
            Ok(r) => r?,
            Err(_) => return Err(KeySourceError::Unavailable("JWKS fetch timed out".into())),
        };
        let mut s = self.write();
        match fetched {
            Fetched::NotModified(max_age) => {
                if let Some(c) = s.cached.as_mut() {
                    c.fresh_until = Instant::now() + max_age;
                }
                Ok(false)
            }
            Fetched::New { keys, etag, max_age } => {
                drop(s);
                self.report_skipped(&keys);
                let mut s = self.write();
                s.cached = Some(Cached { keys: Arc::new(keys), etag, fresh_until: Instant::now() + max_age });
                Ok(true)
            }
        }
    }

    /// Once per fetched set (not per 304): the keys left out, and why.
    fn report_skipped(&self, keys: &StaticKeys) {
        let skipped = keys.skipped();
        if skipped.is_empty() {
            return;
        }
        let list: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        tracing::warn!(
            url = %self.uri,
            skipped = skipped.len(),
            usable = keys.jwks().keys().len(),
            keys = %list.join("; "),
            "JWKS keys this verifier cannot use were skipped"
        );
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.record_jwks_skipped(skipped.len());
        }
    }

    async fn get(&self, etag: Option<String>) -> Result<Fetched, KeySourceError> {
        let unavailable = |e: &dyn std::error::Error| {
            KeySourceError::Unavailable(format!("JWKS fetch from {} failed: {}", self.uri, chain(e)))
        };
        let mut req = http::Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/jwk-set+json, application/json");
        if let Some(tag) = &etag {
            req = req.header(http::header::IF_NONE_MATCH, tag);
        }
        let req = req.body(Empty::new()).map_err(|e| unavailable(&e))?;
        let res = self.client.request(req).await.map_err(|e| unavailable(&e))?;
        let max_age = self.max_age(res.headers());
        match res.status() {
            http::StatusCode::NOT_MODIFIED if etag.is_some() => return Ok(Fetched::NotModified(max_age)),
            http::StatusCode::OK => {}
            other => {
                return Err(KeySourceError::Unavailable(format!("JWKS fetch from {} answered HTTP {other}", self.uri)))
            }
        }
        let new_etag = res.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = Limited::new(res.into_body(), self.settings.max_body)
            .collect()
            .await
            .map_err(|e| unavailable(&*e))?
            .to_bytes();
        let jwks = Jwks::from_json(&body).map_err(|e| unavailable(&e))?;
        Ok(Fetched::New { keys: StaticKeys::new(jwks)?, etag: new_etag, max_age })
    }

    fn max_age(&self, headers: &http::HeaderMap) -> Duration {
        headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|d| d.trim().strip_prefix("max-age=").and_then(|n| n.trim_matches('"').parse::<u64>().ok()))
            .map_or(self.settings.default_max_age, Duration::from_secs)
            .min(self.settings.max_max_age)
    }

    /// Refetches once for everyone waiting, unless another task just did or
    /// the cooldown has not passed; then reports what the cache holds.
    async fn refetch(&self, started: Option<Instant>, respect_cooldown: bool) -> Result<(), KeySourceError> {
        let _guard = self.fetch_lock.lock().await;
        let last = self.read().last_attempt;
        if last != started {
            return Ok(()); // someone else fetched while we waited
        }
        if respect_cooldown && last.is_some_and(|t| t.elapsed() < self.settings.cooldown) {
            return Ok(());
        }
        self.fetch().await
    }
}

/// Whether `host` (from a URL: IPv6 in brackets) is on this machine.
fn is_loopback(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// An error and its sources, `: `-separated (hyper's own message says only
/// "client error (Connect)"; the TLS reason is further down).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

enum Fetched {
    NotModified(Duration),
    New { keys: StaticKeys, etag: Option<String>, max_age: Duration },
}

#[async_trait::async_trait]
impl KeySource for HttpJwks {
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<VerifyingKey>, KeySourceError> {
        let (cached, last_attempt) = self.snapshot();
        match cached {
            Some((keys, true)) if keys.has_kid(kid) => return keys.key(kid, alg).await,
            Some((_, false)) => {
                // Expired: refresh regardless of cooldown; errors are handled
                // by the staleness rule below.
                let _ = self.refetch(last_attempt, false).await;
            }
            _ => {
                let result = self.refetch(last_attempt, true).await;
                let empty = self.read().cached.is_none();
                if empty {
                    return Err(result.err().unwrap_or(KeySourceError::Unavailable("no JWKS fetched yet".into())));
                }
            }
        }
        let keys = {
            let s = self.read();
            let Some(c) = s.cached.as_ref() else {
                return Err(KeySourceError::Unavailable("no JWKS fetched yet".into()));
            };
            if Instant::now() > c.fresh_until + self.settings.max_staleness {
                return Err(KeySourceError::Unavailable(
                    "JWKS stale beyond max_staleness and the issuer is unreachable".into(),
                ));
            }
            Arc::clone(&c.keys)
        };
        keys.key(kid, alg).await
    }
}
