//! `ekey call`: one API request with a DPoP-bound token, a fresh proof, and
//! one retry when the server asks for a nonce (RFC 9449 §9); or with a
//! certificate-bound token as Bearer over mTLS (RFC 8705).

use super::{htu, method, Context};
use crate::args::CallArgs;
use crate::error::{printable, CliError};
use crate::input::{compact, private_key, value_bytes};
use crate::transport::{http_uri, Reply, MAX_CALL_BODY};
use crate::{output, timefmt};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Headers the command sets itself (or that would break the framing).
const RESERVED: [&str; 6] = ["authorization", "dpop", "content-length", "transfer-encoding", "connection", "te"];
/// Reply headers left out of the output: framing and per-exchange noise.
const NOISE: [&str; 5] = ["date", "content-length", "connection", "keep-alive", "transfer-encoding"];

#[derive(Serialize)]
struct Called {
    status: u16,
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<Value>,
    nonce_retry: bool,
}

pub async fn run(args: &CallArgs, ctx: &mut Context) -> Result<(), CliError> {
    let key = args.dpop_key.as_deref().map(|k| private_key(k, "DPoP key")).transpose()?;
    let token = compact(&args.token, "--token", &mut ctx.stdin)?;
    let method = method(&args.method)?;
    http_uri(&args.url)?;
    let htu = htu(&args.url)?;
    let mut extra = parse_headers(&args.headers)?;
    let body = match &args.data {
        Some(d) => {
            if !extra.contains_key(header::CONTENT_TYPE) {
                extra.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Bytes::from(value_bytes(d, "--data", &mut ctx.stdin)?)
        }
        None => Bytes::new(),
    };
    let scheme = if key.is_some() { "DPoP" } else { "Bearer" };
    let authorization = HeaderValue::try_from(format!("{scheme} {token}"))
        .map_err(|_| CliError::usage("--token cannot be sent as an HTTP header"))?;

    let mut nonce: Option<String> = None;
    loop {
        let mut headers = extra.clone();
        headers.insert(header::AUTHORIZATION, authorization.clone());
        if let Some(key) = &key {
            let proof = key
                .proof(method.as_str(), &htu, Some(&token), nonce.as_deref(), timefmt::now())
                .map_err(|e| CliError::usage(format!("cannot sign the DPoP proof: {e}")))?;
            headers.insert(
                "dpop",
                HeaderValue::try_from(proof).map_err(|_| CliError::usage("the proof cannot be sent as a header"))?,
            );
        }
        let reply = ctx.transport.send(method.clone(), &args.url, headers, body.clone(), MAX_CALL_BODY).await?;
        if nonce.is_none() && key.is_some() {
            if let Some(n) = nonce_requested(&reply) {
                eprintln!("ekey: the server asked for a DPoP nonce; retrying once with it");
                nonce = Some(n);
                continue;
            }
        }
        return report(&reply, args.raw, nonce.is_some(), &args.url);
    }
}

/// `Name: value` pairs from `-H`, refusing the headers `call` owns.
fn parse_headers(raw: &[String]) -> Result<HeaderMap, CliError> {
    let mut map = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| CliError::usage(format!("-H {:?}: expected 'Name: value'", printable(h))))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| CliError::usage(format!("-H {:?}: invalid header name", printable(h))))?;
        if RESERVED.contains(&name.as_str()) {
            return Err(CliError::usage(format!("-H {name}: ekey call sets this header itself")));
        }
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| CliError::usage(format!("-H {:?}: invalid header value", printable(h))))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The nonce to retry with, when the reply is a `use_dpop_nonce` challenge
/// (in `WWW-Authenticate`, or as a JSON error body) carrying `DPoP-Nonce`.
fn nonce_requested(reply: &Reply) -> Option<String> {
    let nonce = reply.header("dpop-nonce").filter(|n| !n.is_empty())?;
    let in_challenge = reply
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("use_dpop_nonce"));
    let in_body = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .is_some_and(|b| b.get("error").and_then(Value::as_str) == Some("use_dpop_nonce"));
    ((reply.status == 401 && in_challenge) || in_body).then(|| nonce.to_owned())
}

fn report(reply: &Reply, raw: bool, nonce_retry: bool, url: &str) -> Result<(), CliError> {
    if raw {
        output::bytes(&reply.body)?;
    } else {
        output::json(&summary(reply, nonce_retry))?;
    }
    if reply.status.is_success() {
        return Ok(());
    }
    let challenge = reply.header("www-authenticate").map(|c| format!(": {}", printable(c))).unwrap_or_default();
    Err(CliError::Refused(format!("{} answered HTTP {}{challenge}", printable(url), reply.status)))
}

fn summary(reply: &Reply, nonce_retry: bool) -> Called {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &reply.headers {
        if NOISE.contains(&name.as_str()) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.entry(name.as_str().to_owned()).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    let is_json = reply.header("content-type").is_some_and(|ct| {
        let ct = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        ct == "application/json" || ct.ends_with("+json")
    });
    let (body, body_base64) = match std::str::from_utf8(&reply.body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&reply.body))),
    };
    let json = if is_json { serde_json::from_slice(&reply.body).ok() } else { None };
    Called { status: reply.status.as_u16(), headers, body, body_base64, json, nonce_retry }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use serde_json::json;

    fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Reply { status: StatusCode::from_u16(status).unwrap(), headers: map, body: Bytes::copy_from_slice(body) }
    }

    #[test]
    fn header_arguments() {
        let h = parse_headers(&["X-A: 1".into(), "x-a:2".into(), "Idempotency-Key:  k ".into()]).unwrap();
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h["idempotency-key"], "k");
        for bad in ["NoColon", "Bad Name: x", "Authorization: DPoP x", "DPoP: p", "Content-Length: 1", "X: a\u{1}b"] {
            assert!(parse_headers(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn nonce_challenges() {
        let www = ("www-authenticate", r#"DPoP algs="ES256", error="use_dpop_nonce", error_description="x""#);
        assert_eq!(nonce_requested(&reply(401, &[www, ("dpop-nonce", "n1")], b"")), Some("n1".into()));
        assert_eq!(nonce_requested(&reply(401, &[www], b"")), None, "no nonce header");
        assert_eq!(nonce_requested(&reply(401, &[("dpop-nonce", "n1")], b"")), None, "no challenge");
        let invalid = ("www-authenticate", r#"DPoP error="invalid_token""#);
        assert_eq!(nonce_requested(&reply(401, &[invalid, ("dpop-nonce", "n1")], b"")), None);
        let body = br#"{"error":"use_dpop_nonce"}"#;
        assert_eq!(nonce_requested(&reply(400, &[("dpop-nonce", "n2")], body)), Some("n2".into()));
        assert_eq!(nonce_requested(&reply(200, &[("dpop-nonce", "n3")], b"{}")), None);
    }

    #[test]
    fn reply_summaries() {
        let r = reply(
            200,
            &[("content-type", "application/json; charset=utf-8"), ("date", "x"), ("x-m", "1"), ("x-m", "2")],
            br#"{"ok":true}"#,
        );
        let s = serde_json::to_value(summary(&r, true)).unwrap();
        assert_eq!(
            s,
            json!({"status": 200, "headers": {"content-type": "application/json; charset=utf-8", "x-m": "1, 2"},
                   "body": "{\"ok\":true}", "json": {"ok": true}, "nonce_retry": true})
        );
        let s = serde_json::to_value(summary(&reply(500, &[], &[0xff, 0]), false)).unwrap();
        assert_eq!(s, json!({"status": 500, "headers": {}, "body_base64": "/wA=", "nonce_retry": false}));
    }
}
