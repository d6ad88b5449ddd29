//! `EKEY_*` environment overrides for the scalar settings. One table, so the
//! code, the error messages and `docs/configuration.md` list the same names.

use super::raw::RawConfig;
use super::ConfigError;
use std::path::PathBuf;

/// Looks up one environment variable: `Ok(None)` when unset, an error when
/// set but unusable (not UTF-8).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ConfigError>;

/// The process environment.
pub fn process_env(name: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::invalid(name, "is not valid UTF-8")),
    }
}

type Setter = fn(&mut RawConfig, String) -> Result<(), String>;

/// `(variable, field it sets, setter)`.
const OVERRIDES: &[(&str, &str, Setter)] = &[
    ("EKEY_ISSUER", "issuer", |c, v| {
        c.issuer = Some(v);
        Ok(())
    }),
    ("EKEY_LOG", "log.level", |c, v| {
        c.log.level = Some(v);
        Ok(())
    }),
    ("EKEY_LOG_FORMAT", "log.format", |c, v| {
        c.log.format = Some(v);
        Ok(())
    }),
    ("EKEY_LISTEN", "server.listen", |c, v| {
        c.server.listen = Some(v);
        Ok(())
    }),
    ("EKEY_ADMIN_LISTEN", "server.admin_listen", |c, v| {
        c.server.admin_listen = Some(v);
        Ok(())
    }),
    ("EKEY_MAX_BODY_BYTES", "server.max_body_bytes", |c, v| {
        c.server.max_body_bytes = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_MAX_CONNECTIONS", "server.max_connections", |c, v| {
        c.server.max_connections = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_HEADER_READ_TIMEOUT", "server.header_read_timeout", |c, v| {
        c.server.header_read_timeout = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_REQUEST_TIMEOUT", "server.request_timeout", |c, v| {
        c.server.request_timeout = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_DRAIN_TIMEOUT", "server.drain_timeout", |c, v| {
        c.server.drain_timeout = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_MAX_CONCURRENT_STREAMS", "server.max_concurrent_streams", |c, v| {
        c.server.max_concurrent_streams = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_REPLICAS", "server.replicas", |c, v| {
        c.server.replicas = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_TLS_CERT", "server.tls.cert", |c, v| {
        c.server.tls.get_or_insert_with(Default::default).cert = Some(PathBuf::from(v));
        Ok(())
    }),
    ("EKEY_TLS_KEY", "server.tls.key", |c, v| {
        c.server.tls.get_or_insert_with(Default::default).key = Some(PathBuf::from(v));
        Ok(())
    }),
    ("EKEY_TLS_CLIENT_CA", "server.tls.client_ca", |c, v| {
        c.server.tls.get_or_insert_with(Default::default).client_ca = Some(PathBuf::from(v));
        Ok(())
    }),
    ("EKEY_TLS_CLIENT_AUTH", "server.tls.client_auth", |c, v| {
        c.server.tls.get_or_insert_with(Default::default).client_auth = Some(v);
        Ok(())
    }),
    ("EKEY_TLS_HTTP2", "server.tls.http2", |c, v| {
        c.server.tls.get_or_insert_with(Default::default).http2 = Some(boolean(&v)?);
        Ok(())
    }),
    ("EKEY_TOKEN_ENDPOINT", "endpoints.token_endpoint", |c, v| {
        c.endpoints.token_endpoint = Some(v);
        Ok(())
    }),
    ("EKEY_JWKS_URI", "endpoints.jwks_uri", |c, v| {
        c.endpoints.jwks_uri = Some(v);
        Ok(())
    }),
    ("EKEY_JWKS_MAX_AGE", "endpoints.jwks_max_age", |c, v| {
        c.endpoints.jwks_max_age = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_SIGNING_KEY_FILE", "signing_key.file", |c, v| {
        // A key named in the environment replaces the file's key.
        c.signing_key.file = Some(PathBuf::from(v));
        c.signing_key.generate = None;
        c.signing_key.kms_key_id = None;
        Ok(())
    }),
    ("EKEY_SIGNING_KMS_KEY_ID", "signing_key.kms_key_id", |c, v| {
        c.signing_key.kms_key_id = Some(v);
        c.signing_key.file = None;
        c.signing_key.generate = None;
        Ok(())
    }),
    ("EKEY_KMS_REGION", "signing_key.kms.region", |c, v| {
        c.signing_key.kms.region = Some(v);
        Ok(())
    }),
    ("EKEY_KMS_ENDPOINT", "signing_key.kms.endpoint", |c, v| {
        c.signing_key.kms.endpoint = Some(v);
        Ok(())
    }),
    ("EKEY_SIGNING_KEY_GENERATE", "signing_key.generate", |c, v| {
        c.signing_key.generate = Some(boolean(&v)?);
        Ok(())
    }),
    ("EKEY_SIGNING_KEY_ALGORITHM", "signing_key.algorithm", |c, v| {
        c.signing_key.algorithm = Some(v);
        Ok(())
    }),
    ("EKEY_SIGNING_TIMEOUT", "signing_key.timeout", |c, v| {
        c.signing_key.timeout = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_DPOP_MAX_AGE", "dpop.max_age", |c, v| {
        c.dpop.max_age = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_DPOP_LEEWAY", "dpop.leeway", |c, v| {
        c.dpop.leeway = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_DPOP_NONCE_SECRET_FILE", "dpop.nonce_secret_file", |c, v| {
        c.dpop.nonce_secret_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("EKEY_DPOP_NONCE_WINDOW", "dpop.nonce_window", |c, v| {
        c.dpop.nonce_window = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_MAX_ASSERTION_LIFETIME", "client_auth.max_assertion_lifetime", |c, v| {
        c.client_auth.max_assertion_lifetime = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_CLIENT_AUTH_LEEWAY", "client_auth.leeway", |c, v| {
        c.client_auth.leeway = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_REPLAY_CAPACITY", "replay.capacity", |c, v| {
        c.replay.capacity = Some(int(&v)?);
        Ok(())
    }),
    ("EKEY_REPLAY_REDIS_URL", "replay.redis.url", |c, v| {
        c.replay.redis.get_or_insert_with(Default::default).url = Some(v);
        Ok(())
    }),
    ("EKEY_REVOCATION_ADMIN_TOKEN_FILE", "revocation.admin_token_file", |c, v| {
        c.revocation.get_or_insert_with(Default::default).admin_token_file = Some(PathBuf::from(v));
        Ok(())
    }),
    ("EKEY_REVOCATION_REDIS_URL", "revocation.redis.url", |c, v| {
        let r = c.revocation.get_or_insert_with(Default::default);
        r.redis.get_or_insert_with(Default::default).url = Some(v);
        Ok(())
    }),
    ("EKEY_OTLP", "telemetry.otlp", |c, v| {
        c.telemetry.otlp = ekey_telemetry::OtlpMode::try_from(v.trim().to_owned()).map_err(unprefixed)?;
        Ok(())
    }),
    ("EKEY_OTLP_ENDPOINT", "telemetry.otlp_endpoint", |c, v| {
        c.telemetry.otlp_endpoint = Some(v);
        Ok(())
    }),
    ("EKEY_OTLP_PROTOCOL", "telemetry.otlp_protocol", |c, v| {
        c.telemetry.otlp_protocol =
            Some(ekey_telemetry::OtlpProtocol::try_from(v.trim().to_owned()).map_err(unprefixed)?);
        Ok(())
    }),
    ("EKEY_METRICS_INTERVAL_MS", "telemetry.metrics_interval_ms", |c, v| {
        let ms = int(&v)?;
        c.telemetry.metrics_interval_ms = Some(u64::try_from(ms).map_err(|_| format!("{ms} is below 0"))?);
        Ok(())
    }),
    ("EKEY_AUDIT_SINK", "audit.sink", |c, v| {
        let sink = ekey_telemetry::AuditSinkKind::try_from(v.trim().to_owned()).map_err(unprefixed)?;
        c.audit.sink = sink;
        // A sink named in the environment replaces the file's, path included.
        if sink != ekey_telemetry::AuditSinkKind::File {
            c.audit.path = None;
        }
        Ok(())
    }),
    ("EKEY_AUDIT_PATH", "audit.path", |c, v| {
        c.audit.path = Some(PathBuf::from(v));
        Ok(())
    }),
];

/// Every variable read, with the field it overrides (for docs and `--help`).
pub fn variables() -> impl Iterator<Item = (&'static str, &'static str)> {
    OVERRIDES.iter().map(|(var, field, _)| (*var, *field))
}

/// Applies every variable that is set. An unparsable value is an error naming
/// the variable.
pub(crate) fn apply(raw: &mut RawConfig, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    for (var, field, set) in OVERRIDES {
        if let Some(value) = env(var)? {
            set(raw, value).map_err(|problem| ConfigError::invalid(*var, problem))?;
            raw.from_env.push((field, var));
        }
    }
    Ok(())
}

fn int(v: &str) -> Result<i64, String> {
    v.trim().parse().map_err(|_| format!("expected a whole number, got {:?}", short(v)))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true or false, got {:?}", short(other))),
    }
}

/// The telemetry crate's parse errors start with the field name; the
/// variable is named instead.
fn unprefixed(e: String) -> String {
    match e.split_once(": ") {
        Some((field, rest)) if field.contains('.') && !field.contains(' ') => rest.to_owned(),
        _ => e,
    }
}

fn short(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| Ok(map.get(name).cloned())
    }

    #[test]
    fn sets_fields_and_remembers_the_variable() {
        let mut raw = RawConfig::default();
        let env = lookup(&[("EKEY_LISTEN", "0.0.0.0:9000"), ("EKEY_JWKS_MAX_AGE", "60")]);
        apply(&mut raw, &env).unwrap();
        assert_eq!(raw.server.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(raw.endpoints.jwks_max_age, Some(60));
        assert!(raw.from_env.contains(&("server.listen", "EKEY_LISTEN")));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut raw = RawConfig::default();
        let err = apply(&mut raw, &lookup(&[("EKEY_JWKS_MAX_AGE", "soon")])).unwrap_err();
        assert_eq!(err.to_string(), "EKEY_JWKS_MAX_AGE: expected a whole number, got \"soon\"");
        let err = apply(&mut raw, &lookup(&[("EKEY_SIGNING_KEY_GENERATE", "yes")])).unwrap_err();
        assert!(err.to_string().starts_with("EKEY_SIGNING_KEY_GENERATE: "), "{err}");
    }

    #[test]
    fn telemetry_and_audit_variables() {
        let mut raw = RawConfig::default();
        raw.audit.path = Some(PathBuf::from("from-file.jsonl"));
        let env = lookup(&[("EKEY_OTLP", "on"), ("EKEY_OTLP_PROTOCOL", "grpc"), ("EKEY_AUDIT_SINK", "off")]);
        apply(&mut raw, &env).unwrap();
        assert_eq!(raw.telemetry.otlp, ekey_telemetry::OtlpMode::On);
        assert_eq!(raw.telemetry.otlp_protocol, Some(ekey_telemetry::OtlpProtocol::Grpc));
        assert_eq!((raw.audit.sink, raw.audit.path.as_deref()), (ekey_telemetry::AuditSinkKind::Off, None));
        let env = lookup(&[("EKEY_AUDIT_SINK", "file"), ("EKEY_AUDIT_PATH", "/var/log/a.jsonl")]);
        apply(&mut raw, &env).unwrap();
        assert_eq!(raw.audit.path.as_deref(), Some(std::path::Path::new("/var/log/a.jsonl")));
        let err = apply(&mut raw, &lookup(&[("EKEY_AUDIT_SINK", "syslog")])).unwrap_err().to_string();
        assert!(err.starts_with("EKEY_AUDIT_SINK: expected \"stdout\""), "{err}");
        let err = apply(&mut raw, &lookup(&[("EKEY_OTLP", "yes")])).unwrap_err().to_string();
        assert!(err.starts_with("EKEY_OTLP: expected \"auto\""), "{err}");
        let err = apply(&mut raw, &lookup(&[("EKEY_METRICS_INTERVAL_MS", "-1")])).unwrap_err().to_string();
        assert!(err.starts_with("EKEY_METRICS_INTERVAL_MS: "), "{err}");
    }

    #[test]
    fn key_file_replaces_generate() {
        let mut raw = RawConfig::default();
        raw.signing_key.generate = Some(true);
        apply(&mut raw, &lookup(&[("EKEY_SIGNING_KEY_FILE", "k.pem")])).unwrap();
        assert_eq!(raw.signing_key.generate, None);
        assert!(raw.signing_key.file.is_some());
        apply(&mut raw, &lookup(&[("EKEY_SIGNING_KMS_KEY_ID", "alias/k"), ("EKEY_KMS_REGION", "eu-west-1")])).unwrap();
        assert_eq!((raw.signing_key.file.as_deref(), raw.signing_key.kms_key_id.as_deref()), (None, Some("alias/k")));
        assert_eq!(raw.signing_key.kms.region.as_deref(), Some("eu-west-1"));
        assert!(raw.from_env.contains(&("signing_key.kms.region", "EKEY_KMS_REGION")));
    }
}
