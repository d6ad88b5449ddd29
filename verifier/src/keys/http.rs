//! The issuer's JWKS fetched over HTTP, cached by `Cache-Control`/`ETag`.

use super::set::StaticKeys;
use super::{KeySource, KeySourceError};
use crate::jose::alg::Algorithm;
use crate::jose::jwk::Jwks;
use crate::jose::key::VerifyingKey;
#[cfg(feature = "metrics")]
use crate::metrics::{JwksRefresh, VerifierMetrics};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How the JWKS is fetched and cached. Every field documents its default.
#[derive(Debug, Clone)]
pub struct HttpJwksSettings {
    /// The issuer's `jwks_uri` (`http://` only in this build; put TLS in front
    /// with a local sidecar or use the issuer's plain admin listener on a
    /// private network). No default: required.
    pub url: String,
    /// Least time between two fetches caused by unknown `kid`s. Defaults to 10 s.
    pub cooldown: Duration,
    /// Freshness when the response has no `Cache-Control: max-age`. Defaults to 300 s.
    pub default_max_age: Duration,
    /// Upper bound applied to `max-age`. Defaults to 3600 s.
    pub max_max_age: Duration,
    /// How long past its freshness a set is still used while the issuer is
    /// unreachable (stale-if-error). Defaults to 3600 s.
    pub max_staleness: Duration,
    /// Per-fetch timeout. Defaults to 5 s.
    pub timeout: Duration,
    /// Largest JWKS body accepted. Defaults to 64 KiB.
    pub max_body: usize,
}

impl HttpJwksSettings {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cooldown: Duration::from_secs(10),
            default_max_age: Duration::from_secs(300),
            max_max_age: Duration::from_secs(3600),
            max_staleness: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
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
#[derive(Debug)]
pub struct HttpJwks {
    settings: HttpJwksSettings,
    uri: http::Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    #[cfg(feature = "metrics")]
    metrics: Option<VerifierMetrics>,
}

impl HttpJwks {
    /// A key source for `settings.url`; nothing is fetched until first use
    /// (call [`HttpJwks::refresh`] to fetch eagerly).
    pub fn new(settings: HttpJwksSettings) -> Result<Self, KeySourceError> {
        let uri: http::Uri = settings
            .url
            .parse()
            .map_err(|_| KeySourceError::Unavailable(format!("invalid JWKS URL {:?}", settings.url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(KeySourceError::Unavailable("JWKS URL must be http://host/… in this build".into()));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
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
                s.cached = Some(Cached { keys: Arc::new(keys), etag, fresh_until: Instant::now() + max_age });
                Ok(true)
            }
        }
    }

    async fn get(&self, etag: Option<String>) -> Result<Fetched, KeySourceError> {
        let unavailable = |e: &dyn std::fmt::Display| KeySourceError::Unavailable(format!("JWKS fetch failed: {e}"));
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
            other => return Err(unavailable(&format!("HTTP {other}"))),
        }
        let new_etag = res.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = Limited::new(res.into_body(), self.settings.max_body)
            .collect()
            .await
            .map_err(|e| unavailable(&e))?
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
