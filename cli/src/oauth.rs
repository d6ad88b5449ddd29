//! OAuth 2.0 client pieces for the token endpoint, as pure functions: metadata
//! location (RFC 8414), form bodies, `client_secret_basic` (RFC 6749 §2.3.1),
//! `private_key_jwt` assertions (RFC 7523), `authorization_details`
//! (RFC 9396) and error bodies (RFC 6749 §5.2).

use crate::error::{printable, CliError};
use base64::Engine as _;
use ekey_verifier::client::DpopKey;
use ekey_verifier::{b64_encode, ActionPattern};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::form_urlencoded;

/// `client_assertion_type` for RFC 7523 JWT client authentication.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 9396 `type` of an ekey capability request.
pub const CAPABILITY_TYPE: &str = "ekey_capability";
/// Lifetime of a client assertion, in seconds: long enough for clock skew,
/// short because the issuer keeps its `jti` until it expires.
pub const ASSERTION_TTL: i64 = 60;

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityRequest {
    /// A template by name (`scope`).
    Scope(String),
    /// One action (`authorization_details`).
    Action {
        /// `METHOD:/path`.
        action: String,
        /// Uses; the template's default when `None`.
        limit: Option<u32>,
        /// Further actions.
        subcap: Vec<String>,
    },
}

impl CapabilityRequest {
    /// Checks actions locally, so a typo fails before anything is sent.
    pub fn validated(self) -> Result<Self, CliError> {
        if let Self::Action { action, subcap, .. } = &self {
            for a in std::iter::once(action).chain(subcap) {
                ActionPattern::parse(a).map_err(|e| CliError::usage(format!("{:?}: {e}", printable(a))))?;
            }
        }
        if let Self::Scope(s) = &self {
            if s.trim().is_empty() {
                return Err(CliError::usage("--scope is empty"));
            }
        }
        Ok(self)
    }

    /// The form parameter carrying the request.
    fn param(&self) -> (&'static str, String) {
        match self {
            Self::Scope(s) => ("scope", s.clone()),
            Self::Action { action, limit, subcap } => {
                let mut detail = json!({ "type": CAPABILITY_TYPE, "action": action });
                if let Some(l) = limit {
                    detail["limit"] = (*l).into();
                }
                if !subcap.is_empty() {
                    detail["subcap"] = subcap.clone().into();
                }
                ("authorization_details", Value::Array(vec![detail]).to_string())
            }
        }
    }
}

/// How the client authenticates, ready to go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// The `Authorization: Basic …` header value.
    Basic(String),
    /// A signed client assertion, sent in the body.
    Assertion {
        /// `client_id`.
        client_id: String,
        /// The JWT.
        assertion: String,
    },
    /// Only `client_id`: the TLS client certificate authenticates (RFC 8705).
    ClientId(String),
}

/// The token request body (`application/x-www-form-urlencoded`).
pub fn token_form(capability: &CapabilityRequest, credentials: &ClientCredentials) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    let (name, value) = capability.param();
    form.append_pair(name, &value);
    match credentials {
        ClientCredentials::Assertion { client_id, assertion } => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_assertion_type", JWT_BEARER);
            form.append_pair("client_assertion", assertion);
        }
        ClientCredentials::ClientId(client_id) => {
            form.append_pair("client_id", client_id);
        }
        ClientCredentials::Basic(_) => {}
    }
    form.finish()
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 has
/// both form-urlencoded before the RFC 7617 encoding, so `:` and non-ASCII in
/// either survive.
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// The claims of a `private_key_jwt` assertion (RFC 7523 §3): `iss` = `sub` =
/// client id, `aud` = the token endpoint, a short `exp` and a unique `jti`.
pub fn assertion_claims(client_id: &str, token_endpoint: &str, now: i64, jti: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": now,
        "exp": now + ASSERTION_TTL,
        "jti": jti,
    })
}

/// Signs a fresh client assertion (new `jti` each call: the issuer refuses a
/// replayed one, so a retry needs a new assertion too).
pub fn client_assertion(
    key: &DpopKey,
    kid: Option<&str>,
    client_id: &str,
    token_endpoint: &str,
    now: i64,
) -> Result<String, CliError> {
    let header = json!({
        "alg": key.key_pair().algorithm().as_str(),
        "typ": "JWT",
        "kid": kid.unwrap_or(key.thumbprint()),
    });
    let claims = assertion_claims(client_id, token_endpoint, now, &random_id()?);
    key.sign_compact(&header, &claims).map_err(|e| CliError::usage(format!("cannot sign the client assertion: {e}")))
}

/// 128 random bits, base64url.
pub fn random_id() -> Result<String, CliError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| CliError::unavailable(format!("no randomness: {e}")))?;
    Ok(b64_encode(bytes))
}

/// Where RFC 8414 §3.1 puts an issuer's metadata: the well-known segment goes
/// between the host and any path of the issuer.
pub fn metadata_url(issuer: &str) -> Result<String, CliError> {
    well_known(issuer, "oauth-authorization-server")
}

fn well_known(issuer: &str, name: &str) -> Result<String, CliError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| CliError::usage(format!("--issuer {:?} is not a URL: {e}", printable(issuer))))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::usage("--issuer must not have a query or fragment (RFC 8414 §2)"));
    }
    let path = url.path().trim_end_matches('/');
    let mut out = url.clone();
    out.set_path(&format!("/.well-known/{name}{path}"));
    Ok(out.to_string())
}

/// `issuer` + `/suffix` without a doubled slash (the fallbacks when the
/// issuer publishes no metadata).
pub fn issuer_join(issuer: &str, suffix: &str) -> String {
    format!("{}/{}", issuer.trim_end_matches('/'), suffix.trim_start_matches('/'))
}

/// The metadata members ekey uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must equal the issuer asked for (RFC 8414 §3.3).
    pub issuer: Option<String>,
    /// `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `jwks_uri`.
    pub jwks_uri: Option<String>,
}

impl Metadata {
    /// Parses metadata and checks its `issuer` against the one asked for
    /// (a trailing `/` aside), so one issuer's metadata cannot point to
    /// another's endpoints.
    pub fn parse(body: &[u8], issuer: &str) -> Result<Self, CliError> {
        let m: Self = serde_json::from_slice(body)
            .map_err(|e| CliError::unavailable(format!("the issuer's metadata is not valid JSON: {e}")))?;
        match &m.issuer {
            Some(i) if i.trim_end_matches('/') == issuer.trim_end_matches('/') => Ok(m),
            Some(i) => Err(CliError::unavailable(format!(
                "the metadata names issuer {:?}, not {:?} (RFC 8414 §3.3); check --issuer",
                printable(i),
                printable(issuer)
            ))),
            None => Err(CliError::unavailable("the issuer's metadata has no \"issuer\" member")),
        }
    }
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The error code.
    pub error: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl OAuthError {
    /// Parses an error body, if it is one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// `code: description` for a terminal.
    pub fn summary(&self) -> String {
        match &self.error_description {
            Some(d) => format!("{}: {}", printable(&self.error), printable(d)),
            None => printable(&self.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::{verify_compact_jws, Algorithm, VerifyingKey};
    use std::sync::Arc;

    fn decode_form(body: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(body.as_bytes()).into_owned().collect()
    }

    #[test]
    fn scope_form() {
        let body =
            token_form(&CapabilityRequest::Scope("create payment".into()), &ClientCredentials::Basic("x".into()));
        assert_eq!(body, "grant_type=client_credentials&scope=create+payment");
    }

    #[test]
    fn authorization_details_form() {
        let cap = CapabilityRequest::Action { action: "POST:/payments/42".into(), limit: Some(1), subcap: vec![] };
        let body = token_form(&cap, &ClientCredentials::Basic("x".into()));
        assert!(body.starts_with("grant_type=client_credentials&authorization_details=%5B%7B"), "{body}");
        let form = decode_form(&body);
        assert_eq!(form.len(), 2);
        let details: Value = serde_json::from_str(&form[1].1).unwrap();
        assert_eq!(details, json!([{"type": "ekey_capability", "action": "POST:/payments/42", "limit": 1}]));

        let cap = CapabilityRequest::Action { action: "POST:/p".into(), limit: None, subcap: vec!["GET:/p".into()] };
        let form = decode_form(&token_form(&cap, &ClientCredentials::Basic("x".into())));
        let details: Value = serde_json::from_str(&form[1].1).unwrap();
        assert_eq!(details, json!([{"type": "ekey_capability", "action": "POST:/p", "subcap": ["GET:/p"]}]));
    }

    #[test]
    fn assertion_form_carries_client_fields() {
        let creds = ClientCredentials::Assertion { client_id: "a b&c".into(), assertion: "h.p.s".into() };
        let form = decode_form(&token_form(&CapabilityRequest::Scope("t".into()), &creds));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("client_id"), Some("a b&c"));
        assert_eq!(get("client_assertion_type"), Some(JWT_BEARER));
        assert_eq!(get("client_assertion"), Some("h.p.s"));
        assert_eq!(get("grant_type"), Some("client_credentials"));
    }

    #[test]
    fn basic_header_form_encodes_id_and_secret() {
        // RFC 6749 §2.3.1: form-urlencode, then Basic.
        let h = basic_authorization("my client:1", "p@ss:w%rd+é");
        let b64 = h.strip_prefix("Basic ").unwrap();
        let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(raw, "my+client%3A1:p%40ss%3Aw%25rd%2B%C3%A9");
        assert_eq!(basic_authorization("c", "s"), "Basic Yzpz");
    }

    #[test]
    fn capability_validation() {
        let ok = CapabilityRequest::Action { action: "POST:/p/1".into(), limit: None, subcap: vec!["GET:/p".into()] };
        assert!(ok.validated().is_ok());
        let bad = CapabilityRequest::Action { action: "post /p".into(), limit: None, subcap: vec![] };
        assert!(bad.validated().unwrap_err().to_string().contains("METHOD:/path"));
        let bad_sub = CapabilityRequest::Action { action: "POST:/p".into(), limit: None, subcap: vec!["x".into()] };
        assert!(bad_sub.validated().is_err());
        assert!(CapabilityRequest::Scope(" ".into()).validated().is_err());
    }

    #[test]
    fn assertion_is_signed_with_the_client_key_and_has_rfc7523_claims() {
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let now = 1_700_000_000;
        let jwt = client_assertion(&key, None, "client-1", "http://i/token", now).unwrap();
        let vk = Arc::new(VerifyingKey::new(key.key_pair().public_jwk(), Algorithm::ES256).unwrap());
        let v = verify_compact_jws::<Value>(&jwt, 8192, &[Algorithm::ES256], Some("JWT"), |_, kid| {
            (kid == Some(key.thumbprint())).then(|| vk.clone())
        })
        .unwrap();
        let c = v.payload;
        assert_eq!((c["iss"].as_str(), c["sub"].as_str()), (Some("client-1"), Some("client-1")));
        assert_eq!(c["aud"], "http://i/token");
        assert_eq!((c["iat"].as_i64(), c["exp"].as_i64()), (Some(now), Some(now + ASSERTION_TTL)));
        assert_eq!(c["jti"].as_str().map(str::len), Some(22));
        let again = client_assertion(&key, Some("my-kid"), "client-1", "http://i/token", now).unwrap();
        let (h, c2) = ekey_verifier::dangerous::decode_unverified(&again).unwrap();
        assert_eq!(h["kid"], "my-kid");
        assert_ne!(c2["jti"], c["jti"], "every assertion has a fresh jti");
    }

    #[test]
    fn metadata_location() {
        let url = |i| metadata_url(i).unwrap();
        assert_eq!(url("http://127.0.0.1:8080"), "http://127.0.0.1:8080/.well-known/oauth-authorization-server");
        assert_eq!(url("http://h/"), "http://h/.well-known/oauth-authorization-server");
        assert_eq!(url("http://h/tenant/a"), "http://h/.well-known/oauth-authorization-server/tenant/a");
        assert!(metadata_url("not a url").is_err());
        assert!(metadata_url("http://h/?x=1").is_err());
        assert_eq!(issuer_join("http://h/", "/token"), "http://h/token");
        assert_eq!(issuer_join("http://h/t", "token"), "http://h/t/token");
    }

    #[test]
    fn metadata_issuer_must_match() {
        let body = br#"{"issuer":"http://h","token_endpoint":"http://h/t","jwks_uri":"http://h/j"}"#;
        let m = Metadata::parse(body, "http://h/").unwrap();
        assert_eq!((m.token_endpoint.as_deref(), m.jwks_uri.as_deref()), (Some("http://h/t"), Some("http://h/j")));
        assert!(Metadata::parse(body, "http://evil").unwrap_err().to_string().contains("RFC 8414"));
        assert!(Metadata::parse(br#"{"token_endpoint":"x"}"#, "http://h").is_err());
        assert!(Metadata::parse(b"<html>", "http://h").is_err());
    }

    #[test]
    fn oauth_errors() {
        let e = OAuthError::parse(br#"{"error":"invalid_client","error_description":"bad\nsecret"}"#).unwrap();
        assert_eq!(e.summary(), "invalid_client: bad\\nsecret");
        assert_eq!(OAuthError::parse(br#"{"error":"use_dpop_nonce"}"#).unwrap().summary(), "use_dpop_nonce");
        assert!(OAuthError::parse(b"Internal Server Error").is_none());
    }
}
