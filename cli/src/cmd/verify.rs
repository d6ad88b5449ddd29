//! `ekey verify`: the real verifier over one presented request.

use super::{discovery, htu, method, Context};
use crate::args::VerifyArgs;
use crate::error::{printable, CliError};
use crate::input::{compact, private_key, read_file};
use crate::oauth::issuer_join;
use crate::{output, timefmt};
use ekey_verifier::mtls::ClientCert;
use ekey_verifier::{
    Binding, HttpJwks, HttpJwksSettings, Jwks, KeySource, MemoryStore, PresentedRequest, Rejection, StaticKeys,
    VerifiedCapability, Verifier, VerifierSettings,
};
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
enum Outcome {
    Accepted {
        sub: String,
        trace: String,
        action: String,
        scope: Option<String>,
        template: Option<String>,
        binding: BindingOut,
        used: u32,
        remaining: u32,
        exp: i64,
    },
    Rejected {
        status: u16,
        error: Option<&'static str>,
        reason: &'static str,
        description: String,
        www_authenticate: Option<String>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum BindingOut {
    Dpop {
        jkt: String,
    },
    Mtls {
        #[serde(rename = "x5t#S256")]
        x5t_s256: String,
    },
}

impl From<VerifiedCapability> for Outcome {
    fn from(c: VerifiedCapability) -> Self {
        Self::Accepted {
            sub: c.sub,
            trace: c.trace,
            action: c.action,
            scope: c.scope,
            template: c.template,
            binding: match c.binding {
                Binding::Dpop { jkt } => BindingOut::Dpop { jkt },
                Binding::Mtls { x5t_s256 } => BindingOut::Mtls { x5t_s256 },
            },
            used: c.used,
            remaining: c.remaining,
            exp: c.exp,
        }
    }
}

pub async fn run(args: &VerifyArgs, ctx: &mut Context) -> Result<(), CliError> {
    let token = compact(&args.token, "--token", &mut ctx.stdin)?;
    let method = method(&args.method)?;
    let htu = htu(&args.url)?;
    let (proof, certificate) = match (&args.proof, &args.dpop_key, &args.client_cert) {
        (Some(p), _, _) => (Some(compact(p, "--proof", &mut ctx.stdin)?), None),
        (None, Some(k), _) => {
            let key = private_key(k, "DPoP key")?;
            let proof = key
                .proof(method.as_str(), &htu, Some(&token), None, timefmt::now())
                .map_err(|e| CliError::usage(format!("cannot sign the DPoP proof: {e}")))?;
            (Some(proof), None)
        }
        (None, None, Some(c)) => (None, Some(certificate_der(&read_file(c, "client certificate")?)?)),
        (None, None, None) => return Err(CliError::usage("give one of --proof, --dpop-key and --client-cert")),
    };
    let keys = key_source(args, ctx).await?;
    let verifier =
        Verifier::new(VerifierSettings::new(&args.issuer, &args.audience), keys, Arc::new(MemoryStore::default()));

    let scheme = if certificate.is_some() { "Bearer" } else { "DPoP" };
    let authorization = format!("{scheme} {token}");
    let certificate = certificate.map(ClientCert::Der);
    let request = PresentedRequest {
        method: method.as_str(),
        url: &args.url,
        authorization: Some(&authorization),
        dpop: proof.iter().map(String::as_str).collect(),
        client_cert: certificate.as_ref(),
        ..PresentedRequest::default()
    };
    match verifier.verify(&request).await {
        Ok(cap) => output::json(&Outcome::from(cap)),
        Err(rejection) => {
            output::json(&rejected(&verifier, &rejection))?;
            let msg = format!("rejected: {}", printable(&rejection.to_string()));
            Err(if matches!(rejection, Rejection::Unavailable(_)) {
                CliError::Unavailable(msg)
            } else {
                CliError::Refused(msg)
            })
        }
    }
}

fn rejected(verifier: &Verifier, r: &Rejection) -> Outcome {
    Outcome::Rejected {
        status: r.status().as_u16(),
        error: r.error_code(),
        reason: r.reason(),
        description: r.to_string(),
        www_authenticate: r.www_authenticate(verifier.dpop_algorithms()),
    }
}

async fn key_source(args: &VerifyArgs, ctx: &Context) -> Result<Arc<dyn KeySource>, CliError> {
    if let Some(path) = &args.jwks_file {
        let jwks = Jwks::from_json(&read_file(path, "JWKS")?)
            .map_err(|e| CliError::usage(format!("JWKS {}: {e}", path.display())))?;
        let keys = StaticKeys::new(jwks).map_err(|e| CliError::usage(format!("JWKS {}: {e}", path.display())))?;
        for skipped in keys.skipped() {
            eprintln!("ekey: warning: JWKS {}: skipped {}", path.display(), printable(&skipped.to_string()));
        }
        return Ok(Arc::new(keys));
    }
    let url = match &args.jwks_url {
        Some(u) => u.clone(),
        None => match discovery::metadata(ctx, &args.issuer).await? {
            Some(m) => m
                .jwks_uri
                .ok_or_else(|| CliError::unavailable("the issuer's metadata has no jwks_uri; give --jwks-url"))?,
            None => issuer_join(&args.issuer, ".well-known/jwks.json"),
        },
    };
    // The verifier's own JWKS client, as a service would run it: https://
    // trusting --ca (or the system's store).
    let mut settings = HttpJwksSettings::new(url);
    settings.timeout = ctx.timeout;
    settings.ca_file = ctx.transport.ca().map(ToOwned::to_owned);
    // The operator named this URL (or the issuer did, in its metadata), and
    // every other exchange of the CLI speaks plain http:// where told to.
    settings.allow_insecure_http = true;
    let keys = HttpJwks::new(settings).map_err(|e| CliError::usage(format!("JWKS: {e}")))?;
    Ok(Arc::new(keys))
}

/// A certificate file (PEM or DER) as DER.
fn certificate_der(data: &[u8]) -> Result<Vec<u8>, CliError> {
    let cert = openssl::x509::X509::from_pem(data)
        .or_else(|_| openssl::x509::X509::from_der(data))
        .map_err(|_| CliError::usage("--client-cert is not a PEM or DER X.509 certificate"))?;
    cert.to_der().map_err(|e| CliError::usage(format!("--client-cert: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_verifier::{ProofError, TokenError};
    use serde_json::json;

    #[test]
    fn outcome_shapes() {
        let cap = VerifiedCapability {
            sub: "s".into(),
            trace: "t".into(),
            action: "POST:/p/:id".into(),
            scope: None,
            template: Some("tpl".into()),
            binding: Binding::Dpop { jkt: "j".into() },
            used: 1,
            remaining: 2,
            exp: 9,
        };
        assert_eq!(
            serde_json::to_value(Outcome::from(cap)).unwrap(),
            json!({"outcome": "accepted", "sub": "s", "trace": "t", "action": "POST:/p/:id", "scope": null,
                   "template": "tpl", "binding": {"type": "dpop", "jkt": "j"}, "used": 1, "remaining": 2, "exp": 9})
        );
        let b = serde_json::to_value(BindingOut::Mtls { x5t_s256: "x".into() }).unwrap();
        assert_eq!(b, json!({"type": "mtls", "x5t#S256": "x"}));
        let verifier = Verifier::new(
            VerifierSettings::new("i", "a"),
            Arc::new(StaticKeys::default()),
            Arc::new(MemoryStore::default()),
        );
        let r = serde_json::to_value(rejected(&verifier, &Rejection::InvalidToken(TokenError::Expired))).unwrap();
        assert_eq!(r["outcome"], "rejected");
        assert_eq!((r["status"].as_u64(), r["error"].as_str()), (Some(401), Some("invalid_token")));
        assert_eq!(
            (r["reason"].as_str(), r["description"].as_str()),
            (Some("expired"), Some("invalid token: token expired"))
        );
        let r = serde_json::to_value(rejected(&verifier, &Rejection::InvalidProof(ProofError::Htm))).unwrap();
        assert_eq!(r["error"], "invalid_dpop_proof");
        let r = serde_json::to_value(rejected(&verifier, &Rejection::Unavailable("x".into()))).unwrap();
        assert_eq!(
            (r["status"].as_u64(), &r["error"], &r["www_authenticate"]),
            (Some(503), &json!(null), &json!(null))
        );
    }

    #[test]
    fn certificates_pem_or_der() {
        assert!(certificate_der(b"not a certificate").is_err());
    }
}
