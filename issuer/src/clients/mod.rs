//! Registered clients and their authentication at the token endpoint:
//! `client_secret_basic`, `private_key_jwt`, `tls_client_auth` and
//! `self_signed_tls_client_auth`, exactly one per request.

mod assertion;
mod basic;
mod certificate;

pub(crate) use basic::parse_basic;
pub(crate) use certificate::{parse_dn, thumbprints, x5c_thumbprints};

use crate::config::CertificateName;
use crate::replay::ReplayKey;
use basic::SecretDigest;
use ekey_verifier::{Algorithm, KeyError, KeyHint, PublicJwk, VerifyingKey};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// How a client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic with a client secret.
    ClientSecretBasic,
    /// A signed JWT assertion (RFC 7523).
    PrivateKeyJwt,
    /// A CA-issued client certificate with the registered name (RFC 8705 §2.1).
    TlsClientAuth,
    /// A registered self-signed client certificate (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The RFC 8414 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
            Self::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }
}

/// The credentials a token request carries.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// None at all.
    None,
    /// `Authorization: Basic …`, decoded.
    Basic {
        /// The client id.
        client_id: String,
        /// The secret as presented.
        secret: String,
    },
    /// An `Authorization` header that is not valid Basic credentials.
    MalformedBasic,
    /// `client_assertion` with the jwt-bearer type.
    Assertion {
        /// The `client_id` parameter, if sent.
        client_id: Option<String>,
        /// The JWT.
        assertion: String,
    },
    /// Only `client_id`: the client authenticates with the TLS client
    /// certificate of the connection (RFC 8705).
    ClientId(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret or the assertion.
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { client_id, .. } => {
                f.debug_struct("Basic").field("client_id", client_id).finish_non_exhaustive()
            }
            Self::MalformedBasic => f.write_str("MalformedBasic"),
            Self::Assertion { client_id, .. } => {
                f.debug_struct("Assertion").field("client_id", client_id).finish_non_exhaustive()
            }
            Self::ClientId(id) => f.debug_tuple("ClientId").field(id).finish(),
        }
    }
}

/// A client that proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The client id.
    pub client_id: String,
    /// How it authenticated.
    pub method: AuthMethod,
    /// The assertion `jti` to record against replay, and until when. Recorded
    /// only once the rest of the request checked out, so that a retry after
    /// `use_dpop_nonce` can reuse the same assertion.
    pub replay: Option<(ReplayKey, i64)>,
}

/// Why a client was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No client authentication in the request.
    #[error(
        "client authentication is required (client_secret_basic, private_key_jwt, or client_id with a TLS client \
         certificate)"
    )]
    Missing,
    /// Basic credentials that are malformed or wrong (also for an unknown
    /// client id: the answer must not tell which).
    #[error("client authentication failed")]
    Basic,
    /// A client assertion that does not verify, or names no client that
    /// uses `private_key_jwt`; says why.
    #[error("{0}")]
    Assertion(String),
    /// The `client_id` parameter names another client than the assertion's
    /// `iss` and `sub` (RFC 7521 §4.2: they must identify the same client).
    #[error("client_id names another client than the client assertion's iss and sub")]
    ClientIdMismatch,
    /// The assertion's `jti` was used before.
    #[error("client assertion replayed (its jti was already used)")]
    Replayed,
    /// `client_id` of a certificate client, but the connection has no
    /// client certificate.
    #[error("client {0:?} authenticates with a TLS client certificate, and the connection has none")]
    NoCertificate(String),
    /// The certificate is not the one registered for the client (also for
    /// an unknown client id or a client of another method).
    #[error("client certificate authentication failed")]
    Certificate,
}

/// Why a client could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The id is already registered.
    #[error("duplicate client id {0:?}")]
    Duplicate(String),
    /// A key works with none of the assertion algorithms.
    #[error("key {index} supports none of the allowed assertion algorithms")]
    NoUsableAlgorithm {
        /// Its position in the client's list.
        index: usize,
    },
    /// A key was refused by the crypto library.
    #[error("key {index}: {error}")]
    Key {
        /// Its position in the client's list.
        index: usize,
        /// Why.
        error: KeyError,
    },
    /// A client with `private_key_jwt` and no key.
    #[error("no public key")]
    NoKeys,
    /// A `self_signed_tls_client_auth` client with no certificate.
    #[error("no certificate thumbprint")]
    NoCertificates,
}

/// `private_key_jwt` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    /// Assertion algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Latest `exp` accepted, in seconds from now.
    pub max_lifetime: u32,
    /// Clock skew allowed, in seconds.
    pub leeway: u32,
}

#[derive(Debug)]
enum Registered {
    Secret(SecretDigest),
    /// Indexes into `ClientRegistry::keys`.
    Keys(Vec<usize>),
    Certificate(CertificateName),
    SelfSigned(Vec<[u8; 32]>),
}

#[derive(Debug)]
struct ClientKey {
    client: Arc<str>,
    /// What an assertion's `kid` may say: the JWK's `kid` and its thumbprint.
    names: Vec<String>,
    verifiers: Vec<Arc<VerifyingKey>>,
}

/// The registered clients, with verifiers for their keys built once.
#[derive(Debug)]
pub struct ClientRegistry {
    settings: AssertionSettings,
    clients: HashMap<String, Registered>,
    keys: Vec<ClientKey>,
    /// Compared against when the client id is unknown, so that an unknown
    /// id costs the same as a wrong secret.
    decoy: SecretDigest,
}

impl ClientRegistry {
    /// An empty registry.
    pub fn new(settings: AssertionSettings) -> Self {
        Self { settings, clients: HashMap::new(), keys: Vec::new(), decoy: SecretDigest::of(b"ekey decoy secret") }
    }

    /// Registers a `client_secret_basic` client by its secret (only its
    /// SHA-256 is kept).
    pub fn add_secret(&mut self, id: &str, secret: &[u8]) -> Result<(), RegistryError> {
        self.add(id, Registered::Secret(SecretDigest::of(secret)))
    }

    /// Registers a `client_secret_basic` client by the SHA-256 of its secret.
    pub fn add_secret_sha256(&mut self, id: &str, digest: [u8; 32]) -> Result<(), RegistryError> {
        self.add(id, Registered::Secret(SecretDigest::from_digest(digest)))
    }

    /// Registers a `private_key_jwt` client with its public keys.
    pub fn add_keys(&mut self, id: &str, keys: &[PublicJwk]) -> Result<(), RegistryError> {
        if keys.is_empty() {
            return Err(RegistryError::NoKeys);
        }
        let client: Arc<str> = Arc::from(id);
        let mut built = Vec::with_capacity(keys.len());
        for (index, jwk) in keys.iter().enumerate() {
            let verifiers = self
                .settings
                .algorithms
                .iter()
                .filter(|a| jwk.allows(**a))
                .map(|a| VerifyingKey::new(jwk, *a).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| RegistryError::Key { index, error })?;
            if verifiers.is_empty() {
                return Err(RegistryError::NoUsableAlgorithm { index });
            }
            built.push((jwk, verifiers));
        }
        let indexes = (self.keys.len()..self.keys.len() + built.len()).collect();
        self.add(id, Registered::Keys(indexes))?;
        for (jwk, verifiers) in built {
            let mut names = vec![jwk.thumbprint().to_owned()];
            names.extend(jwk.kid().filter(|k| *k != jwk.thumbprint()).map(str::to_owned));
            self.keys.push(ClientKey { client: Arc::clone(&client), names, verifiers });
        }
        Ok(())
    }

    /// Registers a `tls_client_auth` client by the name its CA-issued
    /// certificate carries.
    pub fn add_certificate_name(&mut self, id: &str, name: CertificateName) -> Result<(), RegistryError> {
        self.add(id, Registered::Certificate(name))
    }

    /// Registers a `self_signed_tls_client_auth` client by the SHA-256 of
    /// its certificates' DER.
    pub fn add_self_signed(&mut self, id: &str, thumbprints: Vec<[u8; 32]>) -> Result<(), RegistryError> {
        if thumbprints.is_empty() {
            return Err(RegistryError::NoCertificates);
        }
        self.add(id, Registered::SelfSigned(thumbprints))
    }

    /// Every registered self-signed certificate thumbprint: the TLS listener
    /// accepts these certificates without a CA.
    pub fn self_signed_thumbprints(&self) -> Vec<[u8; 32]> {
        self.clients
            .values()
            .filter_map(|r| match r {
                Registered::SelfSigned(t) => Some(t.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn add(&mut self, id: &str, r: Registered) -> Result<(), RegistryError> {
        if self.clients.contains_key(id) {
            return Err(RegistryError::Duplicate(id.chars().take(64).collect()));
        }
        self.clients.insert(id.to_owned(), r);
        Ok(())
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.clients.contains_key(id)
    }

    /// The assertion settings.
    pub fn assertion_settings(&self) -> &AssertionSettings {
        &self.settings
    }

    /// Checks `credentials`. `audiences` are the values an assertion's `aud`
    /// may name (the token endpoint URL and the issuer URL);
    /// `peer_certificate` is the DER of the TLS client certificate the
    /// handshake verified, if any.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        audiences: &[&str],
        peer_certificate: Option<&[u8]>,
        now: i64,
    ) -> Result<Authenticated, AuthError> {
        match credentials {
            Credentials::ClientId(client_id) => {
                let registered = self.clients.get(client_id);
                let Some(der) = peer_certificate else {
                    return Err(match registered {
                        Some(Registered::Certificate(_) | Registered::SelfSigned(_)) => {
                            AuthError::NoCertificate(client_id.clone())
                        }
                        _ => AuthError::Missing,
                    });
                };
                let method = match registered {
                    Some(Registered::Certificate(name)) => match certificate::matches(der, name) {
                        Ok(true) => AuthMethod::TlsClientAuth,
                        Ok(false) => return Err(AuthError::Certificate),
                        Err(why) => {
                            tracing::debug!(client = %client_id, error = %why, "client certificate unusable");
                            return Err(AuthError::Certificate);
                        }
                    },
                    Some(Registered::SelfSigned(thumbprints)) => {
                        let digest = openssl::sha::sha256(der);
                        if !thumbprints.iter().any(|t| openssl::memcmp::eq(t, &digest)) {
                            return Err(AuthError::Certificate);
                        }
                        AuthMethod::SelfSignedTlsClientAuth
                    }
                    _ => return Err(AuthError::Certificate),
                };
                Ok(Authenticated { client_id: client_id.clone(), method, replay: None })
            }
            Credentials::None => Err(AuthError::Missing),
            Credentials::MalformedBasic => Err(AuthError::Basic),
            Credentials::Basic { client_id, secret } => {
                let ok = match self.clients.get(client_id) {
                    Some(Registered::Secret(digest)) => digest.matches(secret),
                    _ => {
                        let _ = self.decoy.matches(secret);
                        false
                    }
                };
                if !ok {
                    return Err(AuthError::Basic);
                }
                Ok(Authenticated { client_id: client_id.clone(), method: AuthMethod::ClientSecretBasic, replay: None })
            }
            Credentials::Assertion { client_id, assertion } => {
                let v = assertion::verify(self, assertion, client_id.as_deref(), audiences, now)?;
                Ok(Authenticated { client_id: v.client_id, method: AuthMethod::PrivateKeyJwt, replay: Some(v.replay) })
            }
        }
    }

    /// The one key that can verify an assertion, read from its unverified
    /// header and claims: the client is its `iss`, which must equal `sub`
    /// (RFC 7523 §3) and the `client_id` parameter when sent (RFC 7521 §4.2);
    /// the key is that client's key for `alg`, chosen by `kid` when there is
    /// one (the JWK's `kid` or its RFC 7638 thumbprint).
    fn assertion_key(
        &self,
        client_id: Option<&str>,
        hint: &KeyHint<'_>,
    ) -> Result<(usize, Arc<VerifyingKey>), AuthError> {
        let client = match (hint.unverified_iss, hint.unverified_sub) {
            (Some(iss), Some(sub)) if iss == sub => iss,
            _ => return Err(AuthError::Assertion("iss and sub must both be the client id".into())),
        };
        if client_id.is_some_and(|id| id != client) {
            return Err(AuthError::ClientIdMismatch);
        }
        let Some(Registered::Keys(indexes)) = self.clients.get(client) else {
            let shown: String = client.chars().take(64).collect();
            return Err(AuthError::Assertion(format!("client {shown:?} is not registered for private_key_jwt")));
        };
        let mut found = indexes.iter().filter_map(|i| {
            let k = self.keys.get(*i)?;
            if hint.kid.is_some_and(|kid| !k.names.iter().any(|n| n == kid)) {
                return None;
            }
            k.verifiers.iter().find(|v| v.algorithm() == hint.alg).map(|v| (*i, Arc::clone(v)))
        });
        let first = found.next().ok_or_else(|| {
            AuthError::Assertion("no registered key of this client matches the assertion's kid and alg".into())
        })?;
        if found.next().is_some() {
            return Err(AuthError::Assertion(
                "the client has more than one key for this alg; send a kid (the key's kid or thumbprint)".into(),
            ));
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::{b64_encode, KeyPair};
    use serde_json::json;

    const TOKEN_URL: &str = "https://issuer.example.com/token";
    const NOW: i64 = 1_700_000_000;

    fn settings() -> AssertionSettings {
        AssertionSettings { algorithms: vec![Algorithm::ES256, Algorithm::EdDSA], max_lifetime: 300, leeway: 5 }
    }

    fn sign(key: &KeyPair, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(claims.to_string()));
        format!("{input}.{}", b64_encode(key.sign(input.as_bytes()).unwrap()))
    }

    fn claims(client: &str) -> serde_json::Value {
        json!({"iss": client, "sub": client, "aud": TOKEN_URL, "exp": NOW + 60, "iat": NOW, "jti": "j-1"})
    }

    fn header(key: &KeyPair) -> serde_json::Value {
        json!({"alg": key.algorithm().as_str(), "typ": "JWT", "kid": key.thumbprint()})
    }

    fn registry() -> (ClientRegistry, KeyPair, KeyPair) {
        let a = KeyPair::generate(Algorithm::ES256).unwrap();
        let b = KeyPair::generate(Algorithm::EdDSA).unwrap();
        let mut r = ClientRegistry::new(settings());
        r.add_secret("basic", b"0123456789abcdef").unwrap();
        r.add_keys("jwt-a", &[a.public_jwk().clone()]).unwrap();
        r.add_keys("jwt-b", &[b.public_jwk().clone()]).unwrap();
        (r, a, b)
    }

    fn assertion(r: &ClientRegistry, client_id: Option<&str>, jwt: String) -> Result<Authenticated, AuthError> {
        let creds = Credentials::Assertion { client_id: client_id.map(str::to_owned), assertion: jwt };
        r.authenticate(&creds, &[TOKEN_URL, "https://issuer.example.com"], None, NOW)
    }

    #[test]
    fn basic_secret() {
        let (r, _, _) = registry();
        let basic = |id: &str, s: &str| Credentials::Basic { client_id: id.into(), secret: s.into() };
        let ok = r.authenticate(&basic("basic", "0123456789abcdef"), &[], None, NOW).unwrap();
        assert_eq!((ok.client_id.as_str(), ok.method, ok.replay), ("basic", AuthMethod::ClientSecretBasic, None));
        assert_eq!(r.authenticate(&basic("basic", "wrong"), &[], None, NOW), Err(AuthError::Basic));
        assert_eq!(r.authenticate(&basic("nobody", "0123456789abcdef"), &[], None, NOW), Err(AuthError::Basic));
        // A key client cannot log in with a secret.
        assert_eq!(r.authenticate(&basic("jwt-a", ""), &[], None, NOW), Err(AuthError::Basic));
        assert_eq!(r.authenticate(&Credentials::None, &[], None, NOW), Err(AuthError::Missing));
        assert!(!format!("{:?}", basic("basic", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn assertion_by_kid_with_or_without_client_id() {
        let (r, a, b) = registry();
        let ok = assertion(&r, None, sign(&a, header(&a), claims("jwt-a"))).unwrap();
        assert_eq!((ok.client_id.as_str(), ok.method), ("jwt-a", AuthMethod::PrivateKeyJwt));
        assert_eq!(ok.replay.unwrap(), (ReplayKey::assertion("jwt-a", "j-1"), NOW + 65));
        assert!(assertion(&r, Some("jwt-b"), sign(&b, header(&b), claims("jwt-b"))).is_ok());
        // Without kid, client_id picks the key.
        let no_kid = json!({"alg": "EdDSA"});
        assert!(assertion(&r, Some("jwt-b"), sign(&b, no_kid.clone(), claims("jwt-b"))).is_ok());
        // Without either, iss and sub name the client.
        assert!(assertion(&r, None, sign(&b, no_kid, claims("jwt-b"))).is_ok());
    }

    #[test]
    fn assertion_identifies_its_client_by_iss_and_sub() {
        let (mut r, a, b) = registry();
        // Without client_id and without kid: iss = sub names the client, whose one key verifies.
        let no_kid = |k: &KeyPair| json!({"alg": k.algorithm().as_str(), "typ": "JWT"});
        let ok = assertion(&r, None, sign(&a, no_kid(&a), claims("jwt-a"))).unwrap();
        assert_eq!((ok.client_id.as_str(), ok.method), ("jwt-a", AuthMethod::PrivateKeyJwt));
        assert_eq!(assertion(&r, None, sign(&b, no_kid(&b), claims("jwt-b"))).unwrap().client_id, "jwt-b");
        // A key registered by two clients: iss and sub say which one signs.
        r.add_keys("shares-a", &[a.public_jwk().clone()]).unwrap();
        for client in ["jwt-a", "shares-a"] {
            assert_eq!(assertion(&r, None, sign(&a, header(&a), claims(client))).unwrap().client_id, client);
        }
        // The named client's key must verify: another client's key does not.
        let why = |res: Result<Authenticated, AuthError>| match res {
            Err(AuthError::Assertion(why)) => why,
            other => panic!("accepted or wrong error: {other:?}"),
        };
        assert!(why(assertion(&r, None, sign(&b, header(&b), claims("jwt-a")))).contains("no registered key"));
        assert!(why(assertion(&r, None, sign(&b, no_kid(&b), claims("jwt-a")))).contains("no registered key"));
        // iss and sub disagree, or are missing: nothing identifies the client.
        let mut c = claims("jwt-a");
        c["sub"] = "jwt-b".into();
        assert!(why(assertion(&r, None, sign(&a, header(&a), c))).contains("iss and sub"));
        let mut c = claims("jwt-a");
        c.as_object_mut().unwrap().remove("iss");
        assert!(why(assertion(&r, None, sign(&a, header(&a), c))).contains("iss and sub"));
        let mut c = claims("jwt-a");
        c["iss"] = serde_json::Value::Null;
        assert!(why(assertion(&r, None, sign(&a, header(&a), c))).contains("null"));
        // A client nobody registered, or one that does not use private_key_jwt.
        for client in ["nobody", "basic"] {
            let e = why(assertion(&r, None, sign(&a, header(&a), claims(client))));
            assert!(e.contains("not registered for private_key_jwt"), "{client}: {e}");
        }
        // client_id names another client than the assertion.
        assert_eq!(
            assertion(&r, Some("jwt-b"), sign(&a, header(&a), claims("jwt-a"))),
            Err(AuthError::ClientIdMismatch)
        );
        assert_eq!(assertion(&r, Some("jwt-a"), sign(&a, header(&a), claims("jwt-a"))).unwrap().client_id, "jwt-a");
        // Two keys for the alg and no kid: the client must say which.
        let a2 = KeyPair::generate(Algorithm::ES256).unwrap();
        r.add_keys("two-keys", &[a.public_jwk().clone(), a2.public_jwk().clone()]).unwrap();
        assert!(why(assertion(&r, None, sign(&a2, no_kid(&a2), claims("two-keys")))).contains("send a kid"));
        assert_eq!(assertion(&r, None, sign(&a2, header(&a2), claims("two-keys"))).unwrap().client_id, "two-keys");
    }

    #[test]
    fn assertion_claims_may_not_be_null() {
        let (r, a, _) = registry();
        for member in ["nbf", "iat", "exp", "jti", "aud"] {
            let mut c = claims("jwt-a");
            c[member] = serde_json::Value::Null;
            match assertion(&r, None, sign(&a, header(&a), c)) {
                Err(AuthError::Assertion(why)) => assert!(why.starts_with("malformed assertion"), "{member}: {why}"),
                other => panic!("{member}: null accepted or wrong error: {other:?}"),
            }
        }
    }

    #[test]
    fn assertion_refusals() {
        let (r, a, b) = registry();
        let refuse =
            |client_id: Option<&str>, key: &KeyPair, h: serde_json::Value, c: serde_json::Value| match assertion(
                &r,
                client_id,
                sign(key, h, c),
            ) {
                Err(AuthError::Assertion(why)) => why,
                other => panic!("accepted or wrong error: {other:?}"),
            };
        // Signed by another client's key, or claiming another client.
        assert!(refuse(Some("jwt-a"), &b, header(&b), claims("jwt-a")).contains("no registered key"));
        assert!(refuse(None, &a, header(&a), claims("jwt-b")).contains("no registered key"));
        let mut c = claims("jwt-a");
        c["sub"] = "other".into();
        assert!(refuse(None, &a, header(&a), c).contains("iss and sub"));
        let mut c = claims("jwt-a");
        c["aud"] = "https://elsewhere".into();
        assert!(refuse(None, &a, header(&a), c).contains("aud"));
        let mut c = claims("jwt-a");
        c["exp"] = (NOW - 10).into();
        assert!(refuse(None, &a, header(&a), c).contains("expired"));
        let mut c = claims("jwt-a");
        c["exp"] = (NOW + 3600).into();
        assert!(refuse(None, &a, header(&a), c).contains("future"));
        let mut c = claims("jwt-a");
        c.as_object_mut().unwrap().remove("exp");
        assert!(refuse(None, &a, header(&a), c).contains("exp is required"));
        let mut c = claims("jwt-a");
        c.as_object_mut().unwrap().remove("jti");
        assert!(refuse(None, &a, header(&a), c).contains("jti"));
        let mut c = claims("jwt-a");
        c["exp"] = serde_json::Value::from(1e300);
        assert!(refuse(None, &a, header(&a), c).contains("malformed"));
        let mut c = claims("jwt-a");
        c["aud"] = json!(["x", TOKEN_URL]);
        assert!(assertion(&r, None, sign(&a, header(&a), c)).is_ok());
        // A key-carrying header is never honoured.
        let mut h = header(&a);
        h["jwk"] = a.public_jwk().to_json();
        assert!(refuse(None, &a, h, claims("jwt-a")).contains("malformed"));
        // Tampered signature.
        let jwt = sign(&a, header(&a), claims("jwt-a"));
        let tampered = format!("{}AAAA", &jwt[..jwt.len() - 4]);
        assert!(matches!(assertion(&r, None, tampered), Err(AuthError::Assertion(_))));
    }

    #[test]
    fn certificate_clients() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI("spiffe://example.org/w".try_into().unwrap())];
        let spiffe = params.self_signed(&key).unwrap().der().to_vec();
        let other = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap().self_signed(&key).unwrap();
        let other = other.der().to_vec();
        let (mut r, _, _) = registry();
        r.add_certificate_name("w", CertificateName::SanUri("spiffe://example.org/w".into())).unwrap();
        r.add_self_signed("s", vec![openssl::sha::sha256(&other)]).unwrap();
        assert_eq!(r.add_self_signed("none", vec![]), Err(RegistryError::NoCertificates));
        assert_eq!(r.self_signed_thumbprints(), vec![openssl::sha::sha256(&other)]);
        let auth = |id: &str, der: Option<&[u8]>| r.authenticate(&Credentials::ClientId(id.into()), &[], der, NOW);
        assert_eq!(auth("w", Some(&spiffe)).unwrap().method, AuthMethod::TlsClientAuth);
        assert_eq!(auth("s", Some(&other)).unwrap().method, AuthMethod::SelfSignedTlsClientAuth);
        assert_eq!(auth("w", Some(&other)), Err(AuthError::Certificate));
        assert_eq!(auth("s", Some(&spiffe)), Err(AuthError::Certificate));
        assert_eq!(auth("w", None), Err(AuthError::NoCertificate("w".into())));
        // Other clients and unknown ids cannot authenticate by certificate.
        assert_eq!(auth("basic", Some(&spiffe)), Err(AuthError::Certificate));
        assert_eq!(auth("nobody", Some(&spiffe)), Err(AuthError::Certificate));
        assert_eq!(auth("basic", None), Err(AuthError::Missing));
    }

    #[test]
    fn registration_errors() {
        let (mut r, a, _) = registry();
        assert_eq!(r.add_secret("basic", b"x"), Err(RegistryError::Duplicate("basic".into())));
        assert_eq!(r.add_keys("none", &[]), Err(RegistryError::NoKeys));
        let es384 = KeyPair::generate(Algorithm::ES384).unwrap();
        assert_eq!(
            r.add_keys("p384", &[es384.public_jwk().clone()]),
            Err(RegistryError::NoUsableAlgorithm { index: 0 })
        );
        assert!(!r.contains("p384"));
        assert!(r.add_keys("again", &[a.public_jwk().clone()]).is_ok());
        // Now two clients share a key: iss and sub say which one signed.
        assert_eq!(assertion(&r, None, sign(&a, header(&a), claims("jwt-a"))).unwrap().client_id, "jwt-a");
        assert_eq!(assertion(&r, None, sign(&a, header(&a), claims("again"))).unwrap().client_id, "again");
        assert!(assertion(&r, Some("jwt-a"), sign(&a, header(&a), claims("jwt-a"))).is_ok());
    }
}
