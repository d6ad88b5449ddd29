//! `ekey token`: the OAuth client-credentials flow against the issuer, with
//! DPoP and one nonce retry, or over mTLS with the client certificate.

use super::{discovery, htu, Context};
use crate::args::TokenArgs;
use crate::error::{printable, CliError};
use crate::input::{private_key, secret_file};
use crate::oauth::{
    basic_authorization, client_assertion, issuer_join, token_form, CapabilityRequest, ClientCredentials, OAuthError,
};
use crate::transport::{http_uri, Reply, MAX_ISSUER_BODY};
use crate::{output, timefmt};
use bytes::Bytes;
use ekey_verifier::client::DpopKey;
use http::{header, HeaderMap, HeaderValue, Method};
use serde::Serialize;
use serde_json::Value;

/// Environment variable read for the client secret when no other client
/// authentication is given.
pub const SECRET_ENV: &str = "EKEY_CLIENT_SECRET";

enum ClientAuth {
    Secret(String),
    Key {
        key: DpopKey,
        kid: Option<String>,
    },
    /// The TLS client certificate authenticates.
    Certificate,
}

pub async fn run(args: &TokenArgs, ctx: &mut Context) -> Result<(), CliError> {
    if args.client_id.is_empty() {
        return Err(CliError::usage("--client-id is empty"));
    }
    let capability = match (&args.scope, &args.action) {
        (Some(s), None) => CapabilityRequest::Scope(s.clone()),
        (None, Some(a)) => {
            CapabilityRequest::Action { action: a.clone(), limit: args.limit, subcap: args.subcap.clone() }
        }
        _ => return Err(CliError::usage("give exactly one of --scope and --action")),
    }
    .validated()?;
    let auth = client_auth(args, ctx)?;
    let dpop = args.dpop_key.as_deref().map(|k| private_key(k, "DPoP key")).transpose()?;
    if dpop.is_none() && args.client_cert.is_none() {
        return Err(CliError::usage("give --dpop-key (DPoP-bound token) or --client-cert (certificate-bound token)"));
    }

    let endpoint = match &args.token_endpoint {
        Some(e) => e.clone(),
        None => match discovery::metadata(ctx, &args.issuer).await? {
            Some(m) => m.token_endpoint.ok_or_else(|| {
                CliError::unavailable("the issuer's metadata has no token_endpoint; give --token-endpoint")
            })?,
            None => issuer_join(&args.issuer, "token"),
        },
    };
    let https = http_uri(&endpoint)?.scheme_str() == Some("https");
    if args.client_cert.is_some() && !https {
        return Err(CliError::usage(format!(
            "--client-cert needs an https:// token endpoint, not {}",
            printable(&endpoint)
        )));
    }
    let htu = htu(&endpoint)?;

    let mut nonce: Option<String> = None;
    loop {
        let now = timefmt::now();
        let credentials = match &auth {
            ClientAuth::Secret(s) => ClientCredentials::Basic(basic_authorization(&args.client_id, s)),
            ClientAuth::Key { key, kid } => ClientCredentials::Assertion {
                client_id: args.client_id.clone(),
                assertion: client_assertion(key, kid.as_deref(), &args.client_id, &endpoint, now)?,
            },
            ClientAuth::Certificate => ClientCredentials::ClientId(args.client_id.clone()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(dpop) = &dpop {
            let proof = dpop
                .proof("POST", &htu, None, nonce.as_deref(), now)
                .map_err(|e| CliError::usage(format!("cannot sign the DPoP proof: {e}")))?;
            headers.insert("dpop", header_value(&proof, "DPoP proof")?);
        }
        if let ClientCredentials::Basic(b) = &credentials {
            headers.insert(header::AUTHORIZATION, header_value(b, "client credentials")?);
        }
        let body = Bytes::from(token_form(&capability, &credentials));
        let reply = ctx.transport.send(Method::POST, &endpoint, headers, body, MAX_ISSUER_BODY).await?;
        if reply.status.is_success() {
            return success(&reply, args.raw, if dpop.is_some() { "DPoP" } else { "Bearer" });
        }
        let error = OAuthError::parse(&reply.body);
        if nonce.is_none() && dpop.is_some() && error.as_ref().is_some_and(|e| e.error == "use_dpop_nonce") {
            if let Some(n) = reply.header("dpop-nonce").filter(|n| !n.is_empty()) {
                eprintln!("ekey: the issuer asked for a DPoP nonce; retrying once with it");
                nonce = Some(n.to_owned());
                continue;
            }
        }
        return failure(&reply, error, args.raw, nonce.is_some());
    }
}

fn client_auth(args: &TokenArgs, ctx: &mut Context) -> Result<ClientAuth, CliError> {
    if args.client_cert.is_some() {
        if args.client_key_id.is_some() {
            return Err(CliError::usage(
                "--client-key-id goes with private_key_jwt; with --client-cert, --client-key is the certificate's key",
            ));
        }
        let secret = match (&args.client_secret, &args.client_secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(f)) => Some(secret_file(f, "client secret", &mut ctx.stdin)?),
            (None, None) => None,
        };
        return Ok(match secret {
            Some(s) if s.is_empty() => return Err(CliError::usage("the client secret is empty")),
            Some(s) => ClientAuth::Secret(s),
            None => ClientAuth::Certificate,
        });
    }
    if let Some(path) = &args.client_key {
        let key = private_key(path, "client key")?;
        return Ok(ClientAuth::Key { key, kid: args.client_key_id.clone() });
    }
    let secret = match (&args.client_secret, &args.client_secret_file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => secret_file(f, "client secret", &mut ctx.stdin)?,
        (None, None) => std::env::var(SECRET_ENV).map_err(|_| {
            CliError::usage(format!(
                "no client authentication: give --client-secret-file, --client-secret or --client-key, or set {SECRET_ENV}"
            ))
        })?,
    };
    if secret.is_empty() {
        return Err(CliError::usage("the client secret is empty"));
    }
    Ok(ClientAuth::Secret(secret))
}

fn header_value(v: &str, what: &str) -> Result<HeaderValue, CliError> {
    HeaderValue::from_str(v).map_err(|_| CliError::usage(format!("the {what} cannot be sent as an HTTP header")))
}

fn success(reply: &Reply, raw: bool, expected_type: &str) -> Result<(), CliError> {
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| CliError::unavailable(format!("the token response is not JSON: {e}")))?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::unavailable("the token response has no access_token"))?;
    match body.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case(expected_type) => {}
        other => eprintln!(
            "ekey: warning: token_type is {:?}, not {expected_type:?}: the token may not be bound as asked",
            other.map(printable)
        ),
    }
    if raw {
        output::line(token)
    } else {
        output::json(&body)
    }
}

#[derive(Serialize)]
struct Refusal<'a> {
    status: u16,
    #[serde(flatten)]
    error: &'a OAuthError,
}

fn failure(reply: &Reply, error: Option<OAuthError>, raw: bool, retried: bool) -> Result<(), CliError> {
    let status = reply.status;
    let Some(error) = error else {
        let snippet = printable(&String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]));
        return Err(CliError::unavailable(format!(
            "the token endpoint answered HTTP {status} without an OAuth error: {snippet}"
        )));
    };
    if !raw {
        output::json(&Refusal { status: status.as_u16(), error: &error })?;
    }
    let again = match (error.error.as_str(), retried) {
        ("use_dpop_nonce", true) => " (again, after the nonce retry)",
        ("use_dpop_nonce", false) => " (without a DPoP-Nonce header to retry with)",
        _ => "",
    };
    Err(CliError::Refused(format!(
        "the issuer refused the token request (HTTP {}){again}: {}",
        status.as_u16(),
        error.summary()
    )))
}
