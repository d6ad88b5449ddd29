//! From [`RawConfig`] to [`Config`]: defaults, ranges and cross-references,
//! each failure naming its field.

use super::raw::{RawClient, RawConfig, RawTemplate};
use super::*;
use crate::ratelimit::RateLimit;
use ekey_verifier::{ActionPattern, MAX_LIMIT, MAX_TTL_SECS};
use std::collections::HashSet;

/// Builds field names and errors; knows which fields the environment set.
pub(super) struct Fields<'a> {
    from_env: &'a [(&'static str, &'static str)],
}

impl Fields<'_> {
    pub(super) fn err(&self, field: &str, problem: impl Into<String>) -> ConfigError {
        match self.from_env.iter().find(|(f, _)| *f == field) {
            Some((_, var)) => ConfigError::invalid(format!("{field} (from {var})"), problem),
            None => ConfigError::invalid(field, problem),
        }
    }

    /// An integer in `range`, or `default` when absent.
    pub(super) fn int<T: TryFrom<i64> + Copy>(
        &self,
        field: &str,
        value: Option<i64>,
        range: std::ops::RangeInclusive<i64>,
        default: T,
        unit: &str,
    ) -> Result<T, ConfigError> {
        let Some(v) = value else { return Ok(default) };
        if v < *range.start() {
            return Err(self.err(field, format!("{v} is below the minimum of {}{unit}", range.start())));
        }
        if v > *range.end() {
            return Err(self.err(field, format!("{v} exceeds the maximum of {}{unit}", range.end())));
        }
        T::try_from(v).map_err(|_| self.err(field, format!("{v} is out of range")))
    }

    pub(super) fn secs(
        &self,
        field: &str,
        value: Option<i64>,
        max: i64,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.int(field, value, 1..=max, default, " s")?))
    }

    fn algorithms(
        &self,
        field: &str,
        value: Option<Vec<String>>,
        default: &[Algorithm],
    ) -> Result<Vec<Algorithm>, ConfigError> {
        let Some(names) = value else { return Ok(default.to_vec()) };
        if names.is_empty() {
            return Err(self.err(field, "must name at least one algorithm"));
        }
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                n.parse::<Algorithm>()
                    .map_err(|_| self.err(&format!("{field}[{i}]"), format!("unsupported algorithm {:?}", short(n))))
            })
            .collect()
    }

    pub(super) fn url(&self, field: &str, value: &str) -> Result<url::Url, ConfigError> {
        let u = url::Url::parse(value)
            .map_err(|e| self.err(field, format!("{:?} is not an absolute URL ({e})", short(value))))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
            return Err(self.err(field, format!("{:?} must be an http:// or https:// URL with a host", short(value))));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(self.err(field, "must not have a query or fragment"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(self.err(field, "must not carry user information"));
        }
        Ok(u)
    }

    fn addr(&self, field: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
        let v = value.as_deref().unwrap_or(default);
        v.parse()
            .map_err(|_| self.err(field, format!("{:?} is not an IP address and port, e.g. 0.0.0.0:8080", short(v))))
    }
}

const DEFAULT_ALGS: [Algorithm; 4] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::PS256];
const DEFAULT_ASSERTION_ALGS: [Algorithm; 5] =
    [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::PS256, Algorithm::RS256];

pub(super) fn validate(mut raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let from_env = std::mem::take(&mut raw.from_env);
    let f = Fields { from_env: &from_env };
    let mut warnings = Vec::new();

    let issuer = match raw.issuer.as_deref() {
        None => None,
        Some(v) => {
            let u = f.url("issuer", v)?;
            if !matches!(u.path(), "" | "/") {
                return Err(f.err("issuer", "must be an origin (scheme://host[:port]) without a path"));
            }
            if u.scheme() == "http" && !is_loopback(&u) {
                warnings.push(format!("issuer: {v} is plain http on a non-loopback host; use https in production"));
            }
            Some(u.origin().ascii_serialization())
        }
    };

    let log = LogConfig {
        level: match raw.log.level {
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(&l)
                    .map_err(|e| f.err("log.level", format!("{:?} is not a tracing filter ({e})", short(&l))))?;
                l
            }
            None => "info".into(),
        },
        format: match raw.log.format.as_deref() {
            // JSON by default: a config file means a deployment; `dev` is human.
            Some("human") => LogFormat::Human,
            None | Some("json") => LogFormat::Json,
            Some(other) => return Err(f.err("log.format", format!("{:?} is not \"human\" or \"json\"", short(other)))),
        },
    };

    let s = raw.server;
    let server = ServerConfig {
        listen: f.addr("server.listen", s.listen, "127.0.0.1:8080")?,
        admin_listen: f.addr("server.admin_listen", s.admin_listen, "127.0.0.1:8081")?,
        max_body_bytes: f.int("server.max_body_bytes", s.max_body_bytes, 1024..=1 << 20, 16 * 1024, " bytes")?,
        max_connections: f.int("server.max_connections", s.max_connections, 1..=1_000_000, 1024, "")?,
        header_read_timeout: f.secs("server.header_read_timeout", s.header_read_timeout, 300, 5)?,
        request_timeout: f.secs("server.request_timeout", s.request_timeout, 300, 10)?,
        drain_timeout: f.secs("server.drain_timeout", s.drain_timeout, 3600, 10)?,
        max_concurrent_streams: f.int("server.max_concurrent_streams", s.max_concurrent_streams, 1..=1000, 100, "")?,
        replicas: s.replicas.map(|n| f.int("server.replicas", Some(n), 1..=10_000, 1u32, "")).transpose()?,
        tls: s.tls.map(|t| tls(&f, t, base)).transpose()?,
    };
    if issuer.is_none() && !server.listen.ip().is_loopback() {
        return Err(
            f.err("issuer", "required when server.listen is not a loopback address (the public URL of this issuer)")
        );
    }
    if server.listen == server.admin_listen && server.listen.port() != 0 {
        return Err(f.err("server.admin_listen", "must differ from server.listen"));
    }

    let e = raw.endpoints;
    let endpoints = EndpointsConfig {
        token_endpoint: e.token_endpoint.map(|v| f.url("endpoints.token_endpoint", &v).map(|_| v)).transpose()?,
        jwks_uri: e.jwks_uri.map(|v| f.url("endpoints.jwks_uri", &v).map(|_| v)).transpose()?,
        jwks_max_age: f.int("endpoints.jwks_max_age", e.jwks_max_age, 0..=86_400, 300, " s")?,
    };

    let signing_key = super::signing::validate(&f, raw.signing_key, base, endpoints.jwks_max_age, &mut warnings)?;

    let d = raw.dpop;
    let nonce_secret = match (d.nonce_secret_file, d.nonce_secret_env) {
        (Some(_), Some(_)) => {
            return Err(f.err("dpop", "set either nonce_secret_file or nonce_secret_env, not both"));
        }
        (Some(p), None) => Some(SecretSource::File(base.join(p))),
        (None, Some(var)) => Some(SecretSource::Env(var)),
        (None, None) => None,
    };
    if nonce_secret.is_none() && d.nonce_window.is_some() {
        return Err(f.err("dpop.nonce_window", "set nonce_secret_file or nonce_secret_env to turn nonces on"));
    }
    let dpop = DpopConfig {
        algorithms: f.algorithms("dpop.algorithms", d.algorithms, &DEFAULT_ALGS)?,
        max_age: f.int("dpop.max_age", d.max_age, 1..=600, 60, " s")?,
        leeway: f.int("dpop.leeway", d.leeway, 0..=60, 5, " s")?,
        nonce: match nonce_secret {
            Some(secret) => {
                Some(NonceConfig { secret, window: f.int("dpop.nonce_window", d.nonce_window, 1..=3600, 60, " s")? })
            }
            None => None,
        },
    };

    let c = raw.client_auth;
    let client_auth = ClientAuthConfig {
        assertion_algorithms: f.algorithms(
            "client_auth.assertion_algorithms",
            c.assertion_algorithms,
            &DEFAULT_ASSERTION_ALGS,
        )?,
        max_assertion_lifetime: f.int(
            "client_auth.max_assertion_lifetime",
            c.max_assertion_lifetime,
            1..=3600,
            300,
            " s",
        )?,
        leeway: f.int("client_auth.leeway", c.leeway, 0..=60, 5, " s")?,
    };
    let replay = super::replay::validate(&f, raw.replay, base)?;

    let mut clients: Vec<ClientConfig> = Vec::with_capacity(raw.clients.len());
    for (i, rc) in raw.clients.into_iter().enumerate() {
        let client = client(&f, i, rc, base)?;
        if clients.iter().any(|c| c.id == client.id) {
            return Err(f.err(&format!("clients[{i}].id"), format!("duplicate client id {:?}", client.id)));
        }
        if matches!(client.auth, ClientAuthMethod::SecretBasic(_)) {
            warnings.push(format!(
                "clients[{i}]: {:?} uses client_secret_basic, meant for development; prefer private_key_jwt",
                client.id
            ));
        }
        clients.push(client);
    }

    check_client_certificates(&f, &server, &clients)?;

    let mut templates: Vec<TemplateConfig> = Vec::with_capacity(raw.templates.len());
    let mut rate_limits = BTreeMap::new();
    for (i, mut rt) in raw.templates.into_iter().enumerate() {
        let (rate, burst) = (rt.rate.take(), rt.burst.take());
        let t = template(&f, i, rt, &clients)?;
        if templates.iter().any(|o| o.name == t.name) {
            return Err(f.err(&format!("templates[{i}].name"), format!("duplicate template name {:?}", t.name)));
        }
        if let Some(limit) = rate_limit(&f, i, rate, burst)? {
            rate_limits.insert(t.name.clone(), limit);
        }
        templates.push(t);
    }
    if templates.is_empty() {
        warnings.push("templates: none configured; every token request will be refused".into());
    }
    for c in &clients {
        if !templates.iter().any(|t| t.clients.contains(&c.id)) {
            warnings.push(format!("clients: {:?} is in no template and can get no token", c.id));
        }
    }

    let certs_off = server.tls.as_ref().is_none_or(|t| t.client_auth == ClientCertMode::Off);
    if let Some(i) = templates.iter().position(|t| t.binding == BindingRequirement::Mtls) {
        if certs_off {
            return Err(f.err(
                &format!("templates[{i}].binding"),
                "\"mtls\" needs client certificates: set server.tls.client_auth to \"optional\" or \"required\"",
            ));
        }
    }

    let revocation = raw.revocation.map(|r| super::revocation::validate(&f, r, base)).transpose()?;
    warnings.extend(super::replay::fleet_warning(&server, &replay, revocation.is_some()));

    let telemetry = raw.telemetry;
    telemetry.validate().map_err(|e| telemetry_error(&f, e))?;
    let mut audit = raw.audit;
    audit.validate().map_err(|e| telemetry_error(&f, e))?;
    audit.path = audit.path.map(|p| base.join(p));

    Ok(Config {
        issuer,
        log,
        server,
        endpoints,
        signing_key,
        dpop,
        client_auth,
        replay,
        clients,
        templates,
        rate_limits,
        revocation,
        telemetry,
        audit,
        warnings,
    })
}

/// A `[telemetry]` or `[audit]` error as a config error naming the same
/// field (or `OTEL_*` variable).
fn telemetry_error(f: &Fields<'_>, e: ekey_telemetry::TelemetryError) -> ConfigError {
    match e {
        ekey_telemetry::TelemetryError::Config { field, problem } => f.err(&field, problem),
        other => ConfigError::invalid("telemetry", other.to_string()),
    }
}

fn tls(f: &Fields<'_>, t: super::raw::RawTls, base: &Path) -> Result<TlsConfig, ConfigError> {
    let cert = t.cert.ok_or_else(|| f.err("server.tls.cert", "missing: the PEM certificate chain"))?;
    let key = t.key.ok_or_else(|| f.err("server.tls.key", "missing: the PEM private key"))?;
    let client_auth = match t.client_auth.as_deref() {
        None | Some("off") => ClientCertMode::Off,
        Some("optional") => ClientCertMode::Optional,
        Some("required") => ClientCertMode::Required,
        Some(other) => {
            return Err(f.err(
                "server.tls.client_auth",
                format!("{:?} is not \"off\", \"optional\" or \"required\"", short(other)),
            ))
        }
    };
    if client_auth == ClientCertMode::Off && t.client_ca.is_some() {
        return Err(f.err("server.tls.client_ca", "set, but client_auth is \"off\": set client_auth too"));
    }
    let interval = f.int("server.tls.reload_interval", t.reload_interval, 0..=86_400, 30u64, " s")?;
    Ok(TlsConfig {
        cert: base.join(cert),
        key: base.join(key),
        client_ca: t.client_ca.map(|p| base.join(p)),
        client_auth,
        tls12: t.tls12.unwrap_or(false),
        chacha20: t.chacha20.unwrap_or(false),
        reload_interval: (interval > 0).then(|| Duration::from_secs(interval)),
        http2: t.http2.unwrap_or(true),
    })
}

/// A template's `rate` and `burst`: both absent, or a rate with an
/// optional burst.
fn rate_limit(
    f: &Fields<'_>,
    i: usize,
    rate: Option<String>,
    burst: Option<i64>,
) -> Result<Option<RateLimit>, ConfigError> {
    let burst_field = format!("templates[{i}].burst");
    let burst = burst
        .map(|b| f.int(&burst_field, Some(b), 1..=i64::from(crate::ratelimit::MAX_COUNT), 1u32, ""))
        .transpose()?;
    match rate {
        None if burst.is_some() => Err(f.err(&burst_field, "set rate too, e.g. rate = \"50/s\"")),
        None => Ok(None),
        Some(r) => RateLimit::parse(&r, burst).map(Some).map_err(|e| {
            let field = if e.starts_with("burst") { burst_field } else { format!("templates[{i}].rate") };
            f.err(&field, e)
        }),
    }
}

/// Certificate clients need client certificates on the listener, and
/// `tls_client_auth` needs a CA to trust.
fn check_client_certificates(
    f: &Fields<'_>,
    server: &ServerConfig,
    clients: &[ClientConfig],
) -> Result<(), ConfigError> {
    let tls = server.tls.as_ref().filter(|t| t.client_auth != ClientCertMode::Off);
    for (i, c) in clients.iter().enumerate() {
        let (needs_ca, name) = match &c.auth {
            ClientAuthMethod::TlsClientAuth(_) => (true, "tls_client_auth"),
            ClientAuthMethod::SelfSignedTlsClientAuth(_) => (false, "self_signed_tls_client_auth"),
            _ => continue,
        };
        match tls {
            None => {
                return Err(f.err(
                    &format!("clients[{i}].auth"),
                    format!("{name} needs [server.tls] with client_auth = \"optional\" or \"required\""),
                ))
            }
            Some(t) if needs_ca && t.client_ca.is_none() => {
                return Err(f.err(&format!("clients[{i}].auth"), "tls_client_auth needs server.tls.client_ca"))
            }
            Some(_) => {}
        }
    }
    if let Some(t) = tls {
        let self_signed = clients.iter().any(|c| matches!(c.auth, ClientAuthMethod::SelfSignedTlsClientAuth(_)));
        if t.client_ca.is_none() && !self_signed {
            return Err(f.err(
                "server.tls.client_ca",
                "missing: client certificates are asked for but no CA is trusted and no self-signed client is registered",
            ));
        }
    }
    Ok(())
}

fn client(f: &Fields<'_>, i: usize, rc: RawClient, base: &Path) -> Result<ClientConfig, ConfigError> {
    let field = |name: &str| format!("clients[{i}].{name}");
    let id = rc.id.ok_or_else(|| f.err(&field("id"), "missing"))?;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(f.err(&field("id"), "must be 1..=128 visible ASCII characters"));
    }
    let secrets = [rc.secret_sha256.is_some(), rc.secret_file.is_some(), rc.secret_env.is_some()];
    let keys = [rc.jwks_file.is_some(), rc.jwks.is_some()];
    let cert_fields = [
        rc.tls_client_auth_subject_dn.is_some(),
        rc.tls_client_auth_san_dns.is_some(),
        rc.tls_client_auth_san_uri.is_some(),
        rc.tls_client_auth_san_ip.is_some(),
        rc.tls_client_auth_san_email.is_some(),
        rc.certificate_thumbprints.is_some(),
    ];
    if matches!(rc.auth.as_deref(), Some("client_secret_basic" | "private_key_jwt")) && cert_fields.iter().any(|c| *c) {
        return Err(f.err(
            &field("auth"),
            "tls_client_auth_* and certificate_thumbprints belong to tls_client_auth / self_signed_tls_client_auth clients",
        ));
    }
    let auth = match rc.auth.as_deref() {
        Some("client_secret_basic") => {
            if keys.iter().any(|k| *k) {
                return Err(f.err(&field("auth"), "client_secret_basic takes a secret, not jwks/jwks_file"));
            }
            let source = match (rc.secret_sha256, rc.secret_file, rc.secret_env) {
                (Some(hex), None, None) => SecretSource::Sha256(
                    sha256_hex(&hex)
                        .ok_or_else(|| f.err(&field("secret_sha256"), "must be 64 hex digits (SHA-256)"))?,
                ),
                (None, Some(p), None) => SecretSource::File(base.join(p)),
                (None, None, Some(var)) => SecretSource::Env(var),
                _ if secrets.iter().all(|s| !s) => {
                    return Err(
                        f.err(&field("auth"), "client_secret_basic needs secret_sha256, secret_file or secret_env")
                    )
                }
                _ => return Err(f.err(&field("auth"), "set only one of secret_sha256, secret_file, secret_env")),
            };
            ClientAuthMethod::SecretBasic(source)
        }
        Some("private_key_jwt") => {
            if secrets.iter().any(|s| *s) {
                return Err(f.err(&field("auth"), "private_key_jwt takes public keys (jwks/jwks_file), not a secret"));
            }
            let source = match (rc.jwks_file, rc.jwks) {
                (Some(p), None) => JwksSource::File(base.join(p)),
                (None, Some(list)) => {
                    if list.is_empty() {
                        return Err(f.err(&field("jwks"), "must hold at least one public key"));
                    }
                    let keys = list
                        .iter()
                        .enumerate()
                        .map(|(k, v)| {
                            serde_json::to_vec(v)
                                .map_err(|e| e.to_string())
                                .and_then(|json| PublicJwk::from_json(&json).map_err(|e| e.to_string()))
                                .map_err(|e| f.err(&format!("clients[{i}].jwks[{k}]"), e))
                        })
                        .collect::<Result<_, _>>()?;
                    JwksSource::Inline(keys)
                }
                (None, None) => return Err(f.err(&field("auth"), "private_key_jwt needs jwks or jwks_file")),
                (Some(_), Some(_)) => return Err(f.err(&field("auth"), "set either jwks or jwks_file, not both")),
            };
            ClientAuthMethod::PrivateKeyJwt(source)
        }
        Some("tls_client_auth") => {
            if secrets.iter().any(|s| *s) || keys.iter().any(|k| *k) || rc.certificate_thumbprints.is_some() {
                return Err(f.err(&field("auth"), "tls_client_auth takes one tls_client_auth_* name, nothing else"));
            }
            let mut names = Vec::new();
            if let Some(v) = rc.tls_client_auth_subject_dn {
                names.push(("tls_client_auth_subject_dn", CertificateName::SubjectDn(v)));
            }
            if let Some(v) = rc.tls_client_auth_san_dns {
                names.push(("tls_client_auth_san_dns", CertificateName::SanDns(v)));
            }
            if let Some(v) = rc.tls_client_auth_san_uri {
                names.push(("tls_client_auth_san_uri", CertificateName::SanUri(v)));
            }
            if let Some(v) = rc.tls_client_auth_san_ip {
                let ip = v.parse().map_err(|_| {
                    f.err(&field("tls_client_auth_san_ip"), format!("{:?} is not an IP address", short(&v)))
                })?;
                names.push(("tls_client_auth_san_ip", CertificateName::SanIp(ip)));
            }
            if let Some(v) = rc.tls_client_auth_san_email {
                names.push(("tls_client_auth_san_email", CertificateName::SanEmail(v)));
            }
            match names.pop() {
                Some((name, value)) if names.is_empty() => {
                    let empty = match &value {
                        CertificateName::SubjectDn(v)
                        | CertificateName::SanDns(v)
                        | CertificateName::SanUri(v)
                        | CertificateName::SanEmail(v) => v.trim().is_empty() || v.len() > 1024,
                        CertificateName::SanIp(_) => false,
                    };
                    if empty {
                        return Err(f.err(&field(name), "must be 1..=1024 characters"));
                    }
                    if let CertificateName::SubjectDn(dn) = &value {
                        crate::clients::parse_dn(dn).map_err(|e| f.err(&field(name), e))?;
                    }
                    ClientAuthMethod::TlsClientAuth(value)
                }
                _ => {
                    return Err(f.err(
                        &field("auth"),
                        "tls_client_auth needs exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, \
                         tls_client_auth_san_uri, tls_client_auth_san_ip, tls_client_auth_san_email",
                    ))
                }
            }
        }
        Some("self_signed_tls_client_auth") => {
            if secrets.iter().any(|s| *s) || rc.jwks.is_some() {
                return Err(f.err(
                    &field("auth"),
                    "self_signed_tls_client_auth takes certificate_thumbprints or jwks_file (keys with x5c)",
                ));
            }
            match (rc.certificate_thumbprints, rc.jwks_file) {
                (Some(list), None) => {
                    if list.is_empty() {
                        return Err(f.err(&field("certificate_thumbprints"), "must list at least one thumbprint"));
                    }
                    for (k, t) in list.iter().enumerate() {
                        let ok =
                            t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if !ok {
                            return Err(f.err(
                                &format!("clients[{i}].certificate_thumbprints[{k}]"),
                                "must be a base64url SHA-256 (43 characters), as in x5t#S256",
                            ));
                        }
                    }
                    ClientAuthMethod::SelfSignedTlsClientAuth(SelfSignedSource::Thumbprints(list))
                }
                (None, Some(p)) => ClientAuthMethod::SelfSignedTlsClientAuth(SelfSignedSource::JwksFile(base.join(p))),
                _ => {
                    return Err(f.err(
                        &field("auth"),
                        "self_signed_tls_client_auth needs either certificate_thumbprints or jwks_file",
                    ))
                }
            }
        }
        Some(other) => {
            return Err(f.err(
                &field("auth"),
                format!(
                    "{:?} is not supported (client_secret_basic, private_key_jwt, tls_client_auth, \
                     self_signed_tls_client_auth)",
                    short(other)
                ),
            ))
        }
        None => {
            return Err(f.err(
                &field("auth"),
                "missing (client_secret_basic, private_key_jwt, tls_client_auth or self_signed_tls_client_auth)",
            ))
        }
    };

    Ok(ClientConfig { id, auth })
}

fn template(
    f: &Fields<'_>,
    i: usize,
    rt: RawTemplate,
    clients: &[ClientConfig],
) -> Result<TemplateConfig, ConfigError> {
    let field = |name: &str| format!("templates[{i}].{name}");
    let name = rt.name.ok_or_else(|| f.err(&field("name"), "missing"))?;
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(f.err(&field("name"), "must be 1..=64 characters of A-Z a-z 0-9 . _ - :"));
    }
    // Range errors first: they are the most common mistake and their
    // message is the clearest.
    let ttl = match rt.ttl {
        Some(t) if t > MAX_TTL_SECS => {
            return Err(f.err(&field("ttl"), format!("{t} exceeds the {MAX_TTL_SECS} s cap")));
        }
        other => f.int(&field("ttl"), other, 1..=MAX_TTL_SECS, 60u32, " s")?,
    };
    let max_limit = f.int(&field("max_limit"), rt.max_limit, 1..=i64::from(MAX_LIMIT), 1u32, "")?;
    let default_limit = f.int(&field("default_limit"), rt.default_limit, 1..=i64::from(MAX_LIMIT), 1u32, "")?;
    if default_limit > max_limit {
        return Err(f.err(&field("default_limit"), format!("{default_limit} exceeds max_limit ({max_limit})")));
    }

    let allowed = rt.clients.ok_or_else(|| f.err(&field("clients"), "missing: list the client ids allowed"))?;
    if allowed.is_empty() {
        return Err(f.err(&field("clients"), "must name at least one client"));
    }
    for (k, c) in allowed.iter().enumerate() {
        if !clients.iter().any(|known| known.id == *c) {
            return Err(f.err(&format!("templates[{i}].clients[{k}]"), format!("unknown client {:?}", short(c))));
        }
    }

    let actions = rt.actions.ok_or_else(|| f.err(&field("actions"), "missing, e.g. [\"POST:/payments/:id\"]"))?;
    if actions.is_empty() || actions.len() > 64 {
        return Err(f.err(&field("actions"), "must list 1..=64 actions"));
    }
    check_actions(f, &field("actions"), &actions)?;
    let subcap = rt.subcap.unwrap_or_default();
    if subcap.len() > 16 {
        return Err(f.err(&field("subcap"), "at most 16 actions"));
    }
    check_actions(f, &field("subcap"), &subcap)?;

    let audience = rt
        .audience
        .map(|a| a.into_vec())
        .ok_or_else(|| f.err(&field("audience"), "missing: the API origin(s) the tokens are for"))?;
    if audience.is_empty() || audience.len() > 16 {
        return Err(f.err(&field("audience"), "must name 1..=16 audiences"));
    }
    let mut seen = HashSet::new();
    for (k, a) in audience.iter().enumerate() {
        f.url(&format!("templates[{i}].audience[{k}]"), a)?;
        if !seen.insert(a) {
            return Err(f.err(&format!("templates[{i}].audience[{k}]"), "duplicate audience"));
        }
    }

    let binding = match rt.binding.as_deref() {
        None | Some("any") => BindingRequirement::Any,
        Some("dpop") => BindingRequirement::Dpop,
        Some("mtls") => BindingRequirement::Mtls,
        Some(other) => {
            return Err(f.err(&field("binding"), format!("{:?} is not \"dpop\", \"mtls\" or \"any\"", short(other))))
        }
    };
    if let Some(s) = &rt.scope {
        // RFC 6749 §3.3 scope-token characters, space-separated.
        if s.is_empty()
            || s.len() > 256
            || !s.bytes().all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\'))
        {
            return Err(f.err(&field("scope"), "must be 1..=256 characters of RFC 6749 scope tokens"));
        }
    }
    Ok(TemplateConfig {
        name,
        clients: allowed,
        actions,
        subcap,
        max_limit,
        default_limit,
        ttl,
        audience,
        binding,
        scope: rt.scope,
    })
}

fn check_actions(f: &Fields<'_>, field: &str, actions: &[String]) -> Result<(), ConfigError> {
    for (k, a) in actions.iter().enumerate() {
        ActionPattern::parse(a).map_err(|e| f.err(&format!("{field}[{k}]"), format!("{:?}: {e}", short(a))))?;
    }
    Ok(())
}

fn sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn short(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        issuer = "https://issuer.example.com"
        [signing_key]
        generate = true
        [[clients]]
        id = "worker"
        auth = "client_secret_basic"
        secret_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        [[clients]]
        id = "batch"
        auth = "private_key_jwt"
        jwks = [{ kty = "EC", crv = "P-256", x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }]
    "#;

    fn with_template(t: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!(
            "{BASE}\n[[templates]]\nname = \"ok\"\nclients = [\"worker\"]\nactions = [\"GET:/a\"]\naudience = \"https://api\"\n[[templates]]\n{t}"
        ))
    }

    fn error(t: &str) -> String {
        with_template(t).unwrap_err().to_string()
    }

    const GOOD: &str = "name = \"t\"\nclients = [\"worker\", \"batch\"]\nactions = [\"POST:/payments/:id\"]\naudience = \"https://api.example.com\"";

    #[test]
    fn defaults() {
        let c = with_template(GOOD).unwrap();
        let t = c.template("t").unwrap();
        assert_eq!((t.ttl, t.max_limit, t.default_limit, t.binding), (60, 1, 1, BindingRequirement::Any));
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.max_body_bytes, 16 * 1024);
        assert_eq!(c.endpoints.jwks_max_age, 300);
        assert_eq!(c.issuer.as_deref(), Some("https://issuer.example.com"));
        assert!(matches!(c.signing_key.source, SigningKeySource::Generate(Algorithm::ES256)));
        assert_eq!(c.dpop.nonce, None);
        assert!(c.warnings.iter().any(|w| w.contains("client_secret_basic")));
    }

    #[test]
    fn template_errors_name_the_field() {
        assert_eq!(error(&format!("{GOOD}\nttl = 900")), "templates[1].ttl: 900 exceeds the 300 s cap");
        assert_eq!(error(&format!("{GOOD}\nttl = 0")), "templates[1].ttl: 0 is below the minimum of 1 s");
        assert_eq!(
            error(&format!("{GOOD}\nmax_limit = 2\ndefault_limit = 3")),
            "templates[1].default_limit: 3 exceeds max_limit (2)"
        );
        assert_eq!(
            error(&GOOD.replace("\"batch\"", "\"nobody\"")),
            "templates[1].clients[1]: unknown client \"nobody\""
        );
        assert!(error(&GOOD.replace("POST:/payments/:id", "post /payments")).starts_with("templates[1].actions[0]: "));
        let hostile = error(&GOOD.replace("POST:/payments/:id", "POST:/payments/%2e%2e/admin"));
        assert!(hostile.starts_with("templates[1].actions[0]: ") && hostile.contains("normal form"), "{hostile}");
        assert!(error(&format!("{GOOD}\nbinding = \"tls\"")).starts_with("templates[1].binding: "));
        assert!(error(&GOOD.replace("https://api.example.com", "api.example.com"))
            .starts_with("templates[1].audience[0]: "));
        assert_eq!(error(&GOOD.replace("\"t\"", "\"ok\"")), "templates[1].name: duplicate template name \"ok\"");
        assert!(error("name = \"x\"").starts_with("templates[1].clients: missing"));
    }

    #[test]
    fn rate_limits_name_their_field() {
        let c = with_template(&format!("{GOOD}\nrate = \"50/s\"")).unwrap();
        let l = c.rate_limit("t").unwrap();
        assert_eq!((l.count, l.period, l.burst), (50, Duration::from_secs(1), 50));
        assert!(c.rate_limit("ok").is_none());
        let l = *with_template(&format!("{GOOD}\nrate = \"10/m\"\nburst = 3")).unwrap().rate_limit("t").unwrap();
        assert_eq!((l.count, l.burst), (10, 3));
        assert!(error(&format!("{GOOD}\nrate = \"fast\"")).starts_with("templates[1].rate: "));
        assert!(error(&format!("{GOOD}\nrate = \"5/d\"")).starts_with("templates[1].rate: unit \"d\""));
        assert!(error(&format!("{GOOD}\nrate = 5")).contains("rate"));
        assert_eq!(error(&format!("{GOOD}\nburst = 3")), "templates[1].burst: set rate too, e.g. rate = \"50/s\"");
        assert_eq!(
            error(&format!("{GOOD}\nrate = \"1/s\"\nburst = 0")),
            "templates[1].burst: 0 is below the minimum of 1"
        );
        assert!(error(&format!("{GOOD}\nrate = \"1/h\"\nburst = 100"))
            .starts_with("templates[1].burst: burst 100 at 1 per 3600 s"));
    }

    #[test]
    fn http2_settings() {
        let c = with_template(GOOD).unwrap();
        assert_eq!((c.server.max_concurrent_streams, c.server.replicas), (100, None));
        let c = Config::from_toml_str(TLS).unwrap();
        assert!(c.server.tls.unwrap().http2);
        let c = Config::from_toml_str(&format!("{TLS}http2 = false")).unwrap();
        assert!(!c.server.tls.unwrap().http2);
        let e =
            Config::from_toml_str("[signing_key]\ngenerate = true\n[server]\nmax_concurrent_streams = 0").unwrap_err();
        assert_eq!(e.to_string(), "server.max_concurrent_streams: 0 is below the minimum of 1");
        let env = |name: &str| {
            Ok(match name {
                "EKEY_MAX_CONCURRENT_STREAMS" => Some("8".to_string()),
                "EKEY_REPLICAS" => Some("3".to_string()),
                _ => None,
            })
        };
        let c = Config::from_toml("[signing_key]\ngenerate = true", Path::new("."), &env).unwrap();
        assert_eq!((c.server.max_concurrent_streams, c.server.replicas), (8, Some(3)));
        let env = |name: &str| Ok((name == "EKEY_TLS_HTTP2").then(|| "maybe".to_string()));
        let e = Config::from_toml(TLS, Path::new("."), &env).unwrap_err();
        assert!(e.to_string().starts_with("EKEY_TLS_HTTP2: expected true or false"), "{e}");
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let e = error(&format!("{GOOD}\nmax_limt = 3"));
        assert!(e.contains("max_limt"), "{e}");
        let e = error(&format!("{GOOD}\nttl = \"60\""));
        assert!(e.contains("ttl"), "{e}");
    }

    #[test]
    fn client_errors_name_the_field() {
        let cfg = |c: &str| {
            Config::from_toml_str(&format!("[signing_key]\ngenerate = true\n[[clients]]\n{c}")).unwrap_err().to_string()
        };
        assert_eq!(
            cfg("id = \"a\""),
            "clients[0].auth: missing (client_secret_basic, private_key_jwt, tls_client_auth or \
             self_signed_tls_client_auth)"
        );
        assert_eq!(
            cfg("id = \"a\"\nauth = \"client_secret_basic\"\nsecret_sha256 = \"abc\""),
            "clients[0].secret_sha256: must be 64 hex digits (SHA-256)"
        );
        assert!(cfg("id = \"a\"\nauth = \"client_secret_basic\"\nsecret_env = \"A\"\nsecret_file = \"f\"")
            .starts_with("clients[0].auth: set only one"));
        assert!(cfg("id = \"a\"\nauth = \"private_key_jwt\"\njwks = [{ kty = \"oct\", k = \"AAAA\" }]")
            .starts_with("clients[0].jwks[0]: "));
        assert!(cfg("id = \"a b\"\nauth = \"private_key_jwt\"\njwks_file = \"k.json\"").starts_with("clients[0].id: "));
        // RSA client keys: 2048 ..= 4096 bits, odd exponent of at least 3.
        let rsa = |top: u8, len: usize, e: &str| {
            let mut n = vec![0xabu8; len];
            n[0] = top;
            cfg(&format!(
                "id = \"a\"\nauth = \"private_key_jwt\"\njwks = [{{ kty = \"RSA\", n = \"{}\", e = \"{e}\" }}]",
                ekey_verifier::b64_encode(&n)
            ))
        };
        assert_eq!(
            rsa(0x01, 513, "AQAB"),
            "clients[0].jwks[0]: RSA modulus of 4097 bits: ekey accepts 2048 to 4096 bits"
        );
        assert_eq!(
            rsa(0x7f, 256, "AQAB"),
            "clients[0].jwks[0]: RSA modulus of 2047 bits: ekey accepts 2048 to 4096 bits"
        );
        assert_eq!(rsa(0xc1, 256, "AQ"), "clients[0].jwks[0]: RSA public exponent must be odd and at least 3");
        assert_eq!(rsa(0xc1, 256, "AQAA"), "clients[0].jwks[0]: RSA public exponent must be odd and at least 3");
    }

    const TLS: &str = "[signing_key]\ngenerate = true\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";

    #[test]
    fn tls_section() {
        let c = Config::from_toml(TLS, Path::new("etc"), &|_| Ok(None)).unwrap();
        let t = c.server.tls.unwrap();
        assert_eq!((t.cert, t.key), (PathBuf::from("etc/c.pem"), PathBuf::from("etc/k.pem")));
        assert_eq!((t.client_auth, t.tls12, t.chacha20), (ClientCertMode::Off, false, false));
        assert_eq!(t.reload_interval, Some(Duration::from_secs(30)));
        let with = |extra: &str| Config::from_toml_str(&format!("{TLS}{extra}"));
        let t = with("client_auth = \"required\"\nclient_ca = \"ca.pem\"\ntls12 = true\nreload_interval = 0")
            .unwrap()
            .server
            .tls
            .unwrap();
        assert_eq!((t.client_auth, t.tls12, t.reload_interval), (ClientCertMode::Required, true, None));
        let err = |extra: &str| with(extra).unwrap_err().to_string();
        assert!(err("client_auth = \"maybe\"").starts_with("server.tls.client_auth: "));
        assert!(err("client_ca = \"ca.pem\"").starts_with("server.tls.client_ca: set, but client_auth"));
        assert!(err("client_auth = \"optional\"").starts_with("server.tls.client_ca: missing"));
        assert!(err("tls13 = true").contains("tls13"));
        let e = Config::from_toml_str("[signing_key]\ngenerate = true\n[server.tls]\ncert = \"c.pem\"").unwrap_err();
        assert!(e.to_string().starts_with("server.tls.key: missing"), "{e}");
        // The environment can turn TLS on, and its errors name the variable.
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| Ok(vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
        };
        let vars = env(&[("EKEY_TLS_CERT", "/tls/c.pem"), ("EKEY_TLS_KEY", "/tls/k.pem")]);
        let c = Config::from_toml("[signing_key]\ngenerate = true", Path::new("."), &vars).unwrap();
        assert_eq!(c.server.tls.unwrap().cert, PathBuf::from("/tls/c.pem"));
        let vars = env(&[("EKEY_TLS_CERT", "c"), ("EKEY_TLS_KEY", "k"), ("EKEY_TLS_CLIENT_AUTH", "sometimes")]);
        let e = Config::from_toml("[signing_key]\ngenerate = true", Path::new("."), &vars).unwrap_err();
        assert!(e.to_string().starts_with("server.tls.client_auth (from EKEY_TLS_CLIENT_AUTH): "), "{e}");
    }

    #[test]
    fn certificate_clients() {
        let spiffe = "[[clients]]\nid = \"w\"\nauth = \"tls_client_auth\"\n\
                      tls_client_auth_san_uri = \"spiffe://example.org/w\"\n";
        let certs_on = format!("{TLS}client_auth = \"optional\"\nclient_ca = \"ca.pem\"\n");
        let c = Config::from_toml_str(&format!("{certs_on}{spiffe}")).unwrap();
        assert_eq!(
            c.clients[0].auth,
            ClientAuthMethod::TlsClientAuth(CertificateName::SanUri("spiffe://example.org/w".into()))
        );
        let err = |text: String| Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(err(format!("{TLS}{spiffe}")).starts_with("clients[0].auth: tls_client_auth needs [server.tls]"));
        assert!(err(format!("[signing_key]\ngenerate = true\n{spiffe}")).contains("needs [server.tls]"));
        assert!(err(format!("{certs_on}{spiffe}tls_client_auth_san_dns = \"x\"")).contains("exactly one of"));
        assert!(err(format!(
            "{certs_on}[[clients]]\nid = \"d\"\nauth = \"tls_client_auth\"\ntls_client_auth_subject_dn = \"CN\""
        ))
        .starts_with("clients[0].tls_client_auth_subject_dn: "));
        assert!(err(format!(
            "{certs_on}[[clients]]\nid = \"d\"\nauth = \"tls_client_auth\"\ntls_client_auth_san_ip = \"x\""
        ))
        .starts_with("clients[0].tls_client_auth_san_ip: "));
        let self_signed = |v: &str| {
            format!(
                "{TLS}client_auth = \"required\"\n[[clients]]\nid = \"s\"\nauth = \"self_signed_tls_client_auth\"\n{v}"
            )
        };
        let thumb = "certificate_thumbprints = [\"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo\"]";
        assert!(Config::from_toml_str(&self_signed(thumb)).is_ok());
        assert!(err(self_signed("certificate_thumbprints = [\"abc\"]"))
            .starts_with("clients[0].certificate_thumbprints[0]: "));
        assert!(err(self_signed("")).contains("needs either certificate_thumbprints or jwks_file"));
        let basic_with_san = "[[clients]]\nid = \"b\"\nauth = \"client_secret_basic\"\nsecret_env = \"X\"\n\
                              tls_client_auth_san_dns = \"x\"";
        assert!(err(format!("{certs_on}{basic_with_san}")).contains("belong to tls_client_auth"));
        // An mTLS template needs client certificates on the listener.
        let template = "[[templates]]\nname = \"m\"\nclients = [\"w\"]\nactions = [\"GET:/a\"]\n\
                        audience = \"https://api\"\nbinding = \"mtls\"";
        assert!(Config::from_toml_str(&format!("{certs_on}{spiffe}{template}")).is_ok());
        let basic = "[[clients]]\nid = \"w\"\nauth = \"client_secret_basic\"\nsecret_env = \"X\"\n";
        assert!(err(format!("[signing_key]\ngenerate = true\n{basic}{template}"))
            .starts_with("templates[0].binding: \"mtls\" needs client certificates"));
    }

    #[test]
    fn scalar_errors_name_the_field_or_variable() {
        let e = Config::from_toml_str("issuer = \"https://i/x\"\n[signing_key]\ngenerate = true").unwrap_err();
        assert_eq!(e.to_string(), "issuer: must be an origin (scheme://host[:port]) without a path");
        let e = Config::from_toml_str("[signing_key]\nfile = \"k.pem\"\ngenerate = true").unwrap_err();
        assert!(e.to_string().starts_with("signing_key: "), "{e}");
        let e = Config::from_toml_str("").unwrap_err();
        assert!(e.to_string().starts_with("signing_key: no key"), "{e}");
        let env = |name: &str| Ok((name == "EKEY_LISTEN").then(|| "localhost".to_string()));
        let e = Config::from_toml("[signing_key]\ngenerate = true", Path::new("."), &env).unwrap_err();
        assert!(e.to_string().starts_with("server.listen (from EKEY_LISTEN): "), "{e}");
        let e =
            Config::from_toml_str("[signing_key]\ngenerate = true\n[endpoints]\njwks_max_age = 100000").unwrap_err();
        assert_eq!(e.to_string(), "endpoints.jwks_max_age: 100000 exceeds the maximum of 86400 s");
        let e = Config::from_toml_str("[signing_key]\ngenerate = true\nalgorithm = \"PS256\"").unwrap_err();
        assert!(e.to_string().starts_with("signing_key.algorithm: "), "{e}");
        let e = Config::from_toml_str("[signing_key]\ngenerate = true\n[dpop]\nalgorithms = [\"ES256\", \"HS256\"]")
            .unwrap_err();
        assert_eq!(e.to_string(), "dpop.algorithms[1]: unsupported algorithm \"HS256\"");
    }

    #[test]
    fn telemetry_and_audit_sections() {
        let key = "[signing_key]\ngenerate = true\n";
        let c = Config::from_toml_str(key).unwrap();
        assert_eq!(c.telemetry, ekey_telemetry::TelemetryConfig::default());
        assert_eq!(c.audit.sink, ekey_telemetry::AuditSinkKind::Stdout);
        let c = Config::from_toml(
            &format!("{key}[telemetry]\notlp = \"off\"\nmetrics_interval_ms = 500\n[audit]\nsink = \"file\"\npath = \"audit.jsonl\""),
            Path::new("/etc/ekey"),
            &|_| Ok(None),
        )
        .unwrap();
        assert_eq!(c.telemetry.otlp, ekey_telemetry::OtlpMode::Off);
        assert_eq!(c.audit.path.as_deref(), Some(Path::new("/etc/ekey/audit.jsonl")));
        let err = |t: &str| Config::from_toml_str(&format!("{key}{t}")).unwrap_err().to_string();
        assert_eq!(err("[audit]\nsink = \"file\""), "audit.path: required when audit.sink = \"file\"");
        assert!(
            err("[telemetry]\nmetrics_interval_ms = 1").starts_with("telemetry.metrics_interval_ms: 1 is out of range")
        );
        assert!(err("[telemetry]\notlp_endpoint = \"collector:4317\"").starts_with("telemetry.otlp_endpoint: "));
        assert!(err("[telemetry]\nendpoint = \"x\"").contains("unknown field"));
        assert!(err("[audit]\nsink = \"syslog\"").contains("audit.sink: expected"));
        let env = |name: &str| Ok((name == "EKEY_AUDIT_SINK").then(|| "file".to_string()));
        let e = Config::from_toml(key, Path::new("."), &env).unwrap_err();
        assert_eq!(e.to_string(), "audit.path: required when audit.sink = \"file\"");
    }

    #[test]
    fn example_config_is_valid() {
        let c = Config::from_toml(include_str!("../../config/example.toml"), Path::new("cfg"), &|_| Ok(None)).unwrap();
        assert_eq!(c.issuer.as_deref(), Some("https://issuer.example.com"));
        assert_eq!(c.templates.len(), 2);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            c.signing_key.source,
            SigningKeySource::PemFile { path: PathBuf::from("cfg/keys/issuer-signing.pem"), expect: None }
        );
        assert_eq!(c.template("reports.read").unwrap().audience.len(), 2);
        assert_eq!(c.rate_limit("payments.create").unwrap().to_string(), "20/s, burst 40");
        // Listening off loopback with the replay cache in memory: the fleet warning.
        assert!(c.warnings.iter().any(|w| w.starts_with("replay: ")), "{:?}", c.warnings);
    }

    #[test]
    fn issuer_is_required_off_loopback() {
        let e =
            Config::from_toml_str("[server]\nlisten = \"0.0.0.0:8080\"\n[signing_key]\ngenerate = true").unwrap_err();
        assert!(e.to_string().starts_with("issuer: required"), "{e}");
    }

    #[test]
    fn issuer_is_normalised_to_its_origin() {
        let c = Config::from_toml_str("issuer = \"HTTPS://Issuer.Example.com:443/\"\n[signing_key]\ngenerate = true")
            .unwrap();
        assert_eq!(c.issuer.as_deref(), Some("https://issuer.example.com"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c =
            Config::from_toml("[signing_key]\nfile = \"keys/k.pem\"", Path::new("/etc/ekey"), &|_| Ok(None)).unwrap();
        assert_eq!(
            c.signing_key.source,
            SigningKeySource::PemFile { path: PathBuf::from("/etc/ekey/keys/k.pem"), expect: None }
        );
    }
}
