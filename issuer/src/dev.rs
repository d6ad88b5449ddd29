//! `ekey-issuer dev`: a complete issuer with no set-up, for trying ekey and
//! for tests. In-memory signing key, embedded templates (`config/dev.toml`),
//! two demo clients with credentials generated at start, plain HTTP on
//! loopback.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ekey_issuer::dev::{DevIssuer, DevOptions};
//!
//! let dev = DevIssuer::start(DevOptions { port: 0, admin_port: 0, ..DevOptions::default() }).await?;
//! let (client_id, secret) = dev.basic_client();
//! println!("{} {client_id} {secret}", dev.info().issuer);
//! dev.shutdown().await;
//! # Ok(()) }
//! ```

use crate::config::{Config, OneOrMany, RawClient, RawConfig};
use crate::server::{Server, ServerHandle, StartError};
use crate::ConfigError;
use ekey_verifier::{b64_encode, Algorithm, KeyPair};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The default audience of the demo templates.
pub const DEV_AUDIENCE: &str = "http://127.0.0.1:9090";
/// The `client_secret_basic` demo client.
pub const BASIC_CLIENT_ID: &str = "demo-basic";
/// The `private_key_jwt` demo client.
pub const JWT_CLIENT_ID: &str = "demo-jwt";

const DEV_CONFIG: &str = include_str!("../config/dev.toml");

/// How to start the development issuer.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Port of the public listener on 127.0.0.1; 0 picks one. Defaults to 8080.
    pub port: u16,
    /// Port of the admin listener on 127.0.0.1; 0 picks one. Defaults to 8081.
    pub admin_port: u16,
    /// Audience of the demo templates. Defaults to [`DEV_AUDIENCE`].
    pub audience: String,
    /// Write the `demo-jwt` client's private key to a file (in a fresh
    /// directory under the system temp directory, removed at shutdown).
    /// Defaults to true.
    pub write_key_file: bool,
    /// Where audit events go. Defaults to standard output.
    pub audit: ekey_telemetry::AuditConfig,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            port: 8080,
            admin_port: 8081,
            audience: DEV_AUDIENCE.into(),
            write_key_file: true,
            audit: ekey_telemetry::AuditConfig::default(),
        }
    }
}

/// What a script needs to use the development issuer; printed as one JSON
/// line by `ekey-issuer dev --print-json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevInfo {
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The JWKS URL.
    pub jwks_uri: String,
    /// The RFC 8414 metadata URL.
    pub metadata: String,
    /// The admin listener's base URL (`/healthz`, `/readyz`, `/metrics`).
    pub admin: String,
    /// The demo templates' audience.
    pub audience: String,
    /// The `client_secret_basic` client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The `private_key_jwt` client.
    pub jwt_client_id: String,
    /// Its private key (PKCS#8 PEM), if written.
    pub jwt_client_key_file: Option<PathBuf>,
    /// The templates, with their actions and limits.
    pub templates: Vec<DevTemplate>,
}

/// A template as shown by dev mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevTemplate {
    /// Its name (`scope`).
    pub name: String,
    /// Its actions.
    pub actions: Vec<String>,
    /// Largest limit.
    pub max_limit: u32,
    /// Token lifetime, seconds.
    pub ttl: u32,
    /// Allowed subcap actions.
    pub subcap: Vec<String>,
}

/// A running development issuer.
#[derive(Debug)]
pub struct DevIssuer {
    server: ServerHandle,
    config: Config,
    basic_secret: String,
    jwt_key: KeyPair,
    key_dir: Option<KeyDir>,
}

impl DevIssuer {
    /// Generates the keys and credentials and starts serving.
    pub async fn start(opts: DevOptions) -> Result<Self, StartError> {
        let mut secret = [0u8; 32];
        openssl::rand::rand_bytes(&mut secret)
            .map_err(|e| ConfigError::invalid("dev", format!("no randomness: {e}")))?;
        let basic_secret = b64_encode(secret);
        let jwt_key = KeyPair::generate(Algorithm::ES256)
            .map_err(|e| ConfigError::invalid("dev", format!("cannot generate the demo client key: {e}")))?;

        let mut raw: RawConfig = toml::from_str(DEV_CONFIG).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        raw.server.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port)).to_string());
        raw.server.admin_listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.admin_port)).to_string());
        for t in &mut raw.templates {
            t.audience = Some(OneOrMany::One(opts.audience.clone()));
        }
        let digest = openssl::sha::sha256(basic_secret.as_bytes());
        raw.clients.push(RawClient {
            id: Some(BASIC_CLIENT_ID.into()),
            auth: Some("client_secret_basic".into()),
            secret_sha256: Some(digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })),
            ..RawClient::default()
        });
        raw.clients.push(RawClient {
            id: Some(JWT_CLIENT_ID.into()),
            auth: Some("private_key_jwt".into()),
            jwks: Some(vec![jwt_key.public_jwk().to_json()]),
            ..RawClient::default()
        });
        raw.audit = opts.audit.clone();
        let config = Config::from_raw(raw, Path::new("."))?;

        let key_dir = if opts.write_key_file { Some(KeyDir::write(&jwt_key)?) } else { None };
        let server = Server::start(config.clone()).await?;
        Ok(Self { server, config, basic_secret, jwt_key, key_dir })
    }

    /// The running server.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The `client_secret_basic` client: id and secret.
    pub fn basic_client(&self) -> (&str, &str) {
        (BASIC_CLIENT_ID, &self.basic_secret)
    }

    /// The `private_key_jwt` client: id and private key.
    pub fn jwt_client(&self) -> (&str, &KeyPair) {
        (JWT_CLIENT_ID, &self.jwt_key)
    }

    /// Where the `demo-jwt` private key was written, if it was.
    pub fn jwt_key_file(&self) -> Option<&Path> {
        self.key_dir.as_ref().map(|d| d.file.as_path())
    }

    /// URLs, credentials and templates.
    pub fn info(&self) -> DevInfo {
        let urls = self.server.urls();
        DevInfo {
            issuer: urls.issuer.clone(),
            token_endpoint: urls.token_endpoint.clone(),
            jwks_uri: urls.jwks_uri.clone(),
            metadata: urls.metadata.clone(),
            admin: format!("http://{}", self.server.admin_addr()),
            audience: self.config.templates.first().and_then(|t| t.audience.first()).cloned().unwrap_or_default(),
            client_id: BASIC_CLIENT_ID.into(),
            client_secret: self.basic_secret.clone(),
            jwt_client_id: JWT_CLIENT_ID.into(),
            jwt_client_key_file: self.jwt_key_file().map(Path::to_path_buf),
            templates: self
                .config
                .templates
                .iter()
                .map(|t| DevTemplate {
                    name: t.name.clone(),
                    actions: t.actions.clone(),
                    max_limit: t.max_limit,
                    ttl: t.ttl,
                    subcap: t.subcap.clone(),
                })
                .collect(),
        }
    }

    /// Stops the server (draining) and removes the key file.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        drop(self.key_dir);
    }
}

/// The suggested next commands, for the `ekey` CLI. One place to adjust
/// when the CLI's flags change.
pub fn next_steps(info: &DevInfo) -> Vec<String> {
    let issuer = &info.issuer;
    let audience = &info.audience;
    let mut steps = vec![
        "ekey keygen --out dpop.pem".to_string(),
        format!(
            "ekey token --issuer {issuer} --client-id {} --client-secret {} --dpop-key dpop.pem --scope payments.create --raw > token.jwt",
            info.client_id, info.client_secret
        ),
    ];
    if let Some(key) = &info.jwt_client_key_file {
        steps.push(format!(
            "ekey token --issuer {issuer} --client-id {} --client-key {} --dpop-key dpop.pem --action POST:/payments/42 --limit 2 --raw > token.jwt",
            info.jwt_client_id,
            key.display()
        ));
    }
    steps.push(format!(
        "ekey verify --issuer {issuer} --audience {audience} --token @token.jwt --dpop-key dpop.pem --method POST --url {audience}/payments/42"
    ));
    steps
}

/// The human summary printed at start.
pub fn banner(info: &DevInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "ekey-issuer dev: development issuer (in-memory key, demo clients). Not for production.");
    let _ = writeln!(s);
    let _ = writeln!(s, "  issuer          {}", info.issuer);
    let _ = writeln!(s, "  token endpoint  {}", info.token_endpoint);
    let _ = writeln!(s, "  JWKS            {}", info.jwks_uri);
    let _ = writeln!(s, "  metadata        {}", info.metadata);
    let _ = writeln!(s, "  admin           {0}/healthz  {0}/readyz  {0}/metrics", info.admin);
    let _ = writeln!(s, "  audience        {}", info.audience);
    let _ = writeln!(s);
    let _ = writeln!(s, "  templates");
    let width = info.templates.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let actions_width = info.templates.iter().map(|t| t.actions.join(" ").len()).max().unwrap_or(0);
    for t in &info.templates {
        let actions = t.actions.join(" ");
        let _ = write!(s, "    {:width$}  {actions:actions_width$}  limit <= {}  ttl {} s", t.name, t.max_limit, t.ttl);
        if !t.subcap.is_empty() {
            let _ = write!(s, "  subcap {}", t.subcap.join(" "));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  clients");
    let _ = writeln!(s, "    {}  client_secret_basic  secret {}", info.client_id, info.client_secret);
    match &info.jwt_client_key_file {
        Some(p) => {
            let _ = writeln!(s, "    {}    private_key_jwt      key    {}", info.jwt_client_id, p.display());
        }
        None => {
            let _ = writeln!(s, "    {}    private_key_jwt      (key kept in memory)", info.jwt_client_id);
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  next steps");
    for step in next_steps(info) {
        let _ = writeln!(s, "    {step}");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Ctrl-C stops the issuer and removes the key file.");
    s
}

/// A private directory holding the demo client's key, removed on drop.
#[derive(Debug)]
struct KeyDir {
    dir: PathBuf,
    file: PathBuf,
}

impl KeyDir {
    fn write(key: &KeyPair) -> Result<Self, ConfigError> {
        let mut tag = [0u8; 6];
        openssl::rand::rand_bytes(&mut tag).map_err(|e| ConfigError::invalid("dev", e.to_string()))?;
        let dir = std::env::temp_dir().join(format!("ekey-dev-{}-{}", std::process::id(), b64_encode(tag)));
        let fail = |e: std::io::Error| ConfigError::invalid("dev", format!("cannot write the demo key: {e}"));
        let mut builder = std::fs::DirBuilder::new();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            builder.mode(0o700);
            options.mode(0o600);
        }
        builder.create(&dir).map_err(fail)?;
        let this = Self { file: dir.join(format!("{JWT_CLIENT_ID}.pem")), dir };
        let mut f = options.open(&this.file).map_err(fail)?;
        std::io::Write::write_all(&mut f, key.to_pem()).map_err(fail)?;
        Ok(this)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_is_valid() {
        let mut raw: RawConfig = toml::from_str(DEV_CONFIG).unwrap();
        for id in [BASIC_CLIENT_ID, JWT_CLIENT_ID] {
            raw.clients.push(RawClient {
                id: Some(id.into()),
                auth: Some("client_secret_basic".into()),
                secret_env: Some("UNUSED".into()),
                ..RawClient::default()
            });
        }
        let c = Config::from_raw(raw, Path::new(".")).unwrap();
        let p = c.template("payments.create").unwrap();
        assert_eq!((p.actions[0].as_str(), p.max_limit), ("POST:/payments/:id", 3));
        assert_eq!(c.template("reports.read").unwrap().actions, vec!["GET:/reports/:id".to_string()]);
    }

    #[tokio::test]
    async fn starts_on_free_ports_and_cleans_up() {
        let dev = DevIssuer::start(DevOptions { port: 0, admin_port: 0, ..DevOptions::default() }).await.unwrap();
        let info = dev.info();
        assert!(info.issuer.starts_with("http://127.0.0.1:") && !info.issuer.ends_with(":0"));
        assert_eq!(info.token_endpoint, format!("{}/token", info.issuer));
        let key_file = info.jwt_client_key_file.clone().unwrap();
        let pem = std::fs::read(&key_file).unwrap();
        assert_eq!(KeyPair::from_pem(&pem).unwrap().thumbprint(), dev.jwt_client().1.thumbprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["client_id"], BASIC_CLIENT_ID);
        assert_eq!(json["client_secret"], dev.basic_client().1);
        let text = banner(&info);
        assert!(text.contains(&info.client_secret) && text.contains("ekey token --issuer"));
        assert!(next_steps(&info).iter().any(|s| s.contains(&key_file.display().to_string())));
        dev.shutdown().await;
        assert!(!key_file.exists());
    }
}
