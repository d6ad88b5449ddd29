//! The TEST-ONLY keys and certificates the vectors are signed with: loaded
//! from `<vectors>/keys/`, created there once when missing.
//!
//! They are published on purpose so that anyone can regenerate the vectors
//! and get the same `kid`s and thumbprints. Each file says so in its first
//! lines; never use them for anything but these vectors.

use crate::Error;
use ekey_verifier::{Algorithm, KeyPair, PublicJwk, VerifyingKey};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use std::fs;
use std::path::Path;

const WARNING: &str = "# TEST-ONLY KEY MATERIAL for the ekey conformance vectors.\n\
# Published on purpose: anyone may sign with it. Never trust it anywhere.\n";

/// A private key the generator signs with.
#[derive(Debug)]
pub enum SigningKey {
    /// ES256, ES384 or EdDSA (the verifier's own [`KeyPair`]).
    Local(KeyPair),
    /// RSA, for PS256 and RS256 (OpenSSL directly: `KeyPair` has no RSA).
    Rsa {
        /// The private key.
        pkey: PKey<Private>,
        /// Its public JWK.
        public: PublicJwk,
    },
}

impl SigningKey {
    /// The public half as a JWK (no `kid`, no `alg`).
    pub fn public_jwk(&self) -> &PublicJwk {
        match self {
            Self::Local(k) => k.public_jwk(),
            Self::Rsa { public, .. } => public,
        }
    }

    /// RFC 7638 thumbprint (the `kid` of issuer keys, `cnf.jkt` of client keys).
    pub fn thumbprint(&self) -> &str {
        self.public_jwk().thumbprint()
    }

    /// The algorithm this key signs with by default.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Local(k) => k.algorithm(),
            Self::Rsa { .. } => Algorithm::PS256,
        }
    }

    /// Signs `input` with `alg`. Local keys always use their own algorithm
    /// (a header may still claim another one: that is the point of some cases).
    pub fn sign(&self, alg: Algorithm, input: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            Self::Local(k) => Ok(k.sign(input)?),
            Self::Rsa { pkey, .. } => rsa_sign(pkey, alg, input),
        }
    }

    /// A verifier for `alg`, to tell whether an old signature is still good.
    pub fn verifier(&self, alg: Algorithm) -> Option<VerifyingKey> {
        VerifyingKey::new(self.public_jwk(), alg).ok()
    }

    /// The SubjectPublicKeyInfo PEM (what a naive HS256 verifier might use as secret).
    pub fn public_pem(&self) -> Result<Vec<u8>, Error> {
        let pkey = match self {
            Self::Local(k) => PKey::private_key_from_pem(k.to_pem())?,
            Self::Rsa { pkey, .. } => pkey.clone(),
        };
        Ok(pkey.public_key_to_pem()?)
    }
}

/// Every key and certificate the vectors use.
#[derive(Debug)]
pub struct TestKeys {
    /// Issuer, ES256 (the default token key).
    pub issuer_es256: SigningKey,
    /// Issuer, ES384.
    pub issuer_es384: SigningKey,
    /// Issuer, EdDSA (Ed25519).
    pub issuer_eddsa: SigningKey,
    /// Issuer, RSA 2048 (PS256; RS256 only to show it is refused).
    pub issuer_rsa: SigningKey,
    /// A key the issuer does not have (tokens "signed by someone else").
    pub rogue_es256: SigningKey,
    /// Client DPoP key, ES256 (the default proof key).
    pub client_es256: SigningKey,
    /// Client DPoP key, ES384.
    pub client_es384: SigningKey,
    /// Client DPoP key, EdDSA.
    pub client_eddsa: SigningKey,
    /// Client DPoP key, RSA 2048 (PS256).
    pub client_rsa: SigningKey,
    /// Another client's DPoP key (proofs made with the wrong key).
    pub other_client_es256: SigningKey,
    /// A 1024-bit RSA DPoP key: too weak, must be refused (so it has no
    /// [`PublicJwk`]; see [`rsa_public_json`]).
    pub weak_rsa1024: PKey<Private>,
    /// The mTLS client certificate (DER) tokens are bound to.
    pub client_cert: Vec<u8>,
    /// Another client's certificate (DER).
    pub other_cert: Vec<u8>,
}

impl TestKeys {
    /// Loads the keys from `dir`, creating any that are missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            issuer_es256: local(dir, "issuer-es256.pem", Algorithm::ES256)?,
            issuer_es384: local(dir, "issuer-es384.pem", Algorithm::ES384)?,
            issuer_eddsa: local(dir, "issuer-eddsa.pem", Algorithm::EdDSA)?,
            issuer_rsa: rsa(dir, "issuer-rsa2048.pem", 2048)?,
            rogue_es256: local(dir, "rogue-es256.pem", Algorithm::ES256)?,
            client_es256: local(dir, "client-es256.pem", Algorithm::ES256)?,
            client_es384: local(dir, "client-es384.pem", Algorithm::ES384)?,
            client_eddsa: local(dir, "client-eddsa.pem", Algorithm::EdDSA)?,
            client_rsa: rsa(dir, "client-rsa2048.pem", 2048)?,
            other_client_es256: local(dir, "other-client-es256.pem", Algorithm::ES256)?,
            weak_rsa1024: rsa_pkey(dir, "weak-rsa1024.pem", 1024)?,
            client_cert: cert(dir, "mtls-client.crt.pem", "ekey conformance client (TEST-ONLY)")?,
            other_cert: cert(dir, "mtls-other.crt.pem", "ekey conformance other client (TEST-ONLY)")?,
        })
    }
}

/// Reads `dir/name`, or writes `create()` there first (with the warning).
fn read_or_create(dir: &Path, name: &str, create: impl FnOnce() -> Result<Vec<u8>, Error>) -> Result<Vec<u8>, Error> {
    let path = dir.join(name);
    if !path.exists() {
        let mut text = WARNING.as_bytes().to_vec();
        text.extend_from_slice(&create()?);
        fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    // Keep only the PEM: the warning lines come before it.
    let start =
        text.windows(10).position(|w| w == b"-----BEGIN").ok_or_else(|| Error::Key(format!("{name}: no PEM")))?;
    Ok(text[start..].to_vec())
}

fn local(dir: &Path, name: &str, alg: Algorithm) -> Result<SigningKey, Error> {
    let pem = read_or_create(dir, name, || Ok(KeyPair::generate(alg)?.to_pem().to_vec()))?;
    let key = KeyPair::from_pem(&pem)?;
    if key.algorithm() != alg {
        return Err(Error::Key(format!("{name}: expected a {alg} key")));
    }
    Ok(SigningKey::Local(key))
}

fn rsa_pkey(dir: &Path, name: &str, bits: u32) -> Result<PKey<Private>, Error> {
    let pem = read_or_create(dir, name, || Ok(PKey::from_rsa(Rsa::generate(bits)?)?.private_key_to_pem_pkcs8()?))?;
    let pkey = PKey::private_key_from_pem(&pem)?;
    if pkey.rsa()?.size() * 8 != bits {
        return Err(Error::Key(format!("{name}: expected an RSA {bits} key")));
    }
    Ok(pkey)
}

fn rsa(dir: &Path, name: &str, bits: u32) -> Result<SigningKey, Error> {
    let pkey = rsa_pkey(dir, name, bits)?;
    let public = PublicJwk::from_json(rsa_public_json(&pkey)?.to_string().as_bytes())
        .map_err(|e| Error::Key(format!("{name}: {e}")))?;
    Ok(SigningKey::Rsa { pkey, public })
}

/// `{"kty":"RSA","n":…,"e":…}` for an RSA key.
pub fn rsa_public_json(pkey: &PKey<Private>) -> Result<serde_json::Value, Error> {
    let rsa = pkey.rsa()?;
    let b64 = ekey_verifier::b64_encode;
    Ok(serde_json::json!({"kty": "RSA", "n": b64(rsa.n().to_vec()), "e": b64(rsa.e().to_vec())}))
}

/// Whether `sig` is a good PS256/RS256 signature by `pkey` (any error: no).
pub fn rsa_verify(pkey: &PKey<Private>, alg: Algorithm, input: &[u8], sig: &[u8]) -> bool {
    let check = || -> Result<bool, openssl::error::ErrorStack> {
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), pkey)?;
        if alg == Algorithm::RS256 {
            v.set_rsa_padding(Padding::PKCS1)?;
        } else {
            v.set_rsa_padding(Padding::PKCS1_PSS)?;
            v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            v.set_rsa_mgf1_md(MessageDigest::sha256())?;
        }
        v.update(input)?;
        v.verify(sig)
    };
    check().unwrap_or(false)
}

/// RSASSA-PSS (PS256, salt = hash length) or PKCS#1 v1.5 (RS256) over SHA-256.
pub fn rsa_sign(pkey: &PKey<Private>, alg: Algorithm, input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut s = Signer::new(MessageDigest::sha256(), pkey)?;
    if alg == Algorithm::RS256 {
        s.set_rsa_padding(Padding::PKCS1)?;
    } else {
        s.set_rsa_padding(Padding::PKCS1_PSS)?;
        s.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
        s.set_rsa_mgf1_md(MessageDigest::sha256())?;
    }
    s.update(input)?;
    Ok(s.sign_to_vec()?)
}

/// A self-signed P-256 certificate; only its DER matters to the vectors.
fn cert(dir: &Path, name: &str, cn: &str) -> Result<Vec<u8>, Error> {
    let pem = read_or_create(dir, name, || {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let subject = subject.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(&subject)?;
        b.set_pubkey(&key)?;
        // 2025-01-01 .. 2045-01-01: covers every vector time.
        let (not_before, not_after) = (Asn1Time::from_unix(1_735_689_600)?, Asn1Time::from_unix(2_366_841_600)?);
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(b.build().to_pem()?)
    })?;
    Ok(X509::from_pem(&pem)?.to_der()?)
}
