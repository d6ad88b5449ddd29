//! A token request, from HTTP head and form body to typed parts: grant type,
//! client credentials and the capability asked for.

use super::details;
use crate::clients::{parse_basic, Credentials};
use crate::policy::CapabilityRequest;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;
use serde::Deserialize;

/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The only grant type served.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// The form parameters we read. Unknown parameters are ignored (RFC 6749
/// §3.2); a repeated one is refused by the deserializer.
#[derive(Deserialize)]
struct Form {
    grant_type: Option<String>,
    scope: Option<String>,
    authorization_details: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// A token request that parsed.
#[derive(Debug)]
pub(crate) struct TokenRequest {
    pub credentials: Credentials,
    pub capability: CapabilityRequest,
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    /// Malformed or contradictory parameters: `invalid_request`.
    #[error("{0}")]
    Invalid(String),
    /// `grant_type` other than `client_credentials`: `unsupported_grant_type`.
    #[error("grant_type {0:?} is not supported; use client_credentials")]
    GrantType(String),
    /// `scope` unusable: `invalid_scope`.
    #[error("{0}")]
    Scope(String),
    /// `authorization_details` unusable: `invalid_authorization_details`.
    #[error("{0}")]
    Details(String),
}

fn invalid(msg: impl Into<String>) -> RequestError {
    RequestError::Invalid(msg.into())
}

impl TokenRequest {
    /// Reads the request. Checks run cheapest first: media type, form,
    /// grant type, credentials' shape, capability.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, RequestError> {
        let form_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !form_type {
            return Err(invalid("Content-Type must be application/x-www-form-urlencoded"));
        }
        let form: Form =
            serde_urlencoded::from_bytes(body).map_err(|e| invalid(format!("malformed form body: {e}")))?;
        // RFC 6749 §3.2: a parameter sent without a value is omitted.
        let present = |v: Option<String>| v.filter(|s| !s.is_empty());

        match present(form.grant_type).as_deref() {
            Some(CLIENT_CREDENTIALS) => {}
            Some(other) => return Err(RequestError::GrantType(other.chars().take(64).collect())),
            None => return Err(invalid("grant_type is required")),
        }

        let credentials = credentials(
            headers,
            present(form.client_id),
            present(form.client_secret),
            present(form.client_assertion_type),
            present(form.client_assertion),
        )?;

        let capability = match (present(form.scope), present(form.authorization_details)) {
            (Some(_), Some(_)) => return Err(invalid("send either scope or authorization_details, not both")),
            (None, None) => return Err(invalid(
                "no capability requested: send authorization_details (type ekey_capability) or scope (a template name)",
            )),
            (Some(scope), None) => {
                let mut names = scope.split(' ').filter(|s| !s.is_empty());
                match (names.next(), names.next()) {
                    (Some(one), None) => CapabilityRequest::scope(one),
                    _ => return Err(RequestError::Scope("scope must name exactly one template".into())),
                }
            }
            (None, Some(json)) => details::parse(&json).map_err(RequestError::Details)?,
        };
        Ok(Self { credentials, capability })
    }
}

fn credentials(
    headers: &HeaderMap,
    client_id: Option<String>,
    client_secret: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
) -> Result<Credentials, RequestError> {
    if client_secret.is_some() {
        return Err(invalid("client_secret in the body (client_secret_post) is not supported; use HTTP Basic"));
    }
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let basic = match (auth.next(), auth.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(invalid("more than one Authorization header")),
        (Some(v), None) => {
            let v = v.to_str().unwrap_or_default();
            let is_basic = v.trim_start().get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic "));
            if !is_basic {
                return Err(invalid("the Authorization header must use the Basic scheme at the token endpoint"));
            }
            Some(match parse_basic(v) {
                Some((client_id, secret)) => Credentials::Basic { client_id, secret },
                None => Credentials::MalformedBasic,
            })
        }
    };
    let assertion = match (assertion_type, assertion) {
        (None, None) => None,
        (Some(t), Some(a)) if t == JWT_BEARER => Some(a),
        (Some(t), Some(_)) => {
            return Err(invalid(format!(
                "client_assertion_type {:?} is not supported; use {JWT_BEARER}",
                t.chars().take(96).collect::<String>()
            )))
        }
        (Some(_), None) => return Err(invalid("client_assertion_type without client_assertion")),
        (None, Some(_)) => return Err(invalid("client_assertion without client_assertion_type")),
    };
    match (basic, assertion) {
        (Some(_), Some(_)) => Err(invalid("use exactly one client authentication method, not Basic and an assertion")),
        (Some(Credentials::Basic { client_id: basic_id, secret }), None) => {
            if client_id.as_ref().is_some_and(|id| *id != basic_id) {
                return Err(invalid("client_id does not match the Basic credentials"));
            }
            Ok(Credentials::Basic { client_id: basic_id, secret })
        }
        (Some(other), None) => Ok(other),
        (None, Some(assertion)) => Ok(Credentials::Assertion { client_id, assertion }),
        (None, None) => Ok(client_id.map_or(Credentials::None, Credentials::ClientId)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RequestedVia;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"));
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    fn basic() -> String {
        format!("Basic {}", STANDARD.encode("demo:s3cret"))
    }

    fn parse(auth: Option<&str>, body: &str) -> Result<TokenRequest, RequestError> {
        TokenRequest::parse(&headers(auth), body.as_bytes())
    }

    #[test]
    fn basic_with_scope() {
        let r = parse(Some(&basic()), "grant_type=client_credentials&scope=payments.create&unknown=1").unwrap();
        assert_eq!(r.credentials, Credentials::Basic { client_id: "demo".into(), secret: "s3cret".into() });
        assert_eq!(r.capability, CapabilityRequest::scope("payments.create"));
    }

    #[test]
    fn assertion_with_details() {
        let details = serde_urlencoded::to_string([(
            "authorization_details",
            r#"[{"type":"ekey_capability","action":"POST:/payments/1"}]"#,
        )])
        .unwrap();
        let body = format!(
            "grant_type=client_credentials&client_id=c&client_assertion_type={}&client_assertion=a.b.c&{details}",
            JWT_BEARER.replace(':', "%3A")
        );
        let r = parse(None, &body).unwrap();
        assert_eq!(r.credentials, Credentials::Assertion { client_id: Some("c".into()), assertion: "a.b.c".into() });
        assert_eq!(r.capability.via, RequestedVia::AuthorizationDetails);
    }

    #[test]
    fn refusals() {
        let b = basic();
        let cases: &[(Option<&str>, &str, RequestError)] = &[
            (Some(&b), "scope=x", invalid("grant_type is required")),
            (Some(&b), "grant_type=password&scope=x", RequestError::GrantType("password".into())),
            (Some(&b), "grant_type=client_credentials", invalid("no capability requested: send authorization_details (type ekey_capability) or scope (a template name)")),
            (Some(&b), "grant_type=client_credentials&scope=a%20b", RequestError::Scope("scope must name exactly one template".into())),
            (Some(&b), "grant_type=client_credentials&scope=a&authorization_details=[]", invalid("send either scope or authorization_details, not both")),
            (Some(&b), "grant_type=client_credentials&scope=a&client_id=other", invalid("client_id does not match the Basic credentials")),
            (None, "grant_type=client_credentials&scope=a&client_secret=s", invalid("client_secret in the body (client_secret_post) is not supported; use HTTP Basic")),
            (Some("Bearer x"), "grant_type=client_credentials&scope=a", invalid("the Authorization header must use the Basic scheme at the token endpoint")),
            (None, "grant_type=client_credentials&scope=a&client_assertion=x", invalid("client_assertion without client_assertion_type")),
        ];
        for (auth, body, expected) in cases {
            assert_eq!(parse(*auth, body).unwrap_err(), *expected, "{body}");
        }
        let both =
            format!("grant_type=client_credentials&scope=a&client_assertion_type={JWT_BEARER}&client_assertion=x");
        assert!(parse(Some(&b), &both).unwrap_err().to_string().contains("exactly one client authentication"));
        let dup = parse(Some(&b), "grant_type=client_credentials&scope=a&scope=b").unwrap_err();
        assert!(dup.to_string().contains("duplicate field"), "{dup}");
        let details = parse(Some(&b), "grant_type=client_credentials&authorization_details=%7B%7D").unwrap_err();
        assert!(matches!(details, RequestError::Details(_)));
        let mut json = headers(None);
        json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(TokenRequest::parse(&json, b"{}").unwrap_err().to_string().contains("Content-Type"));
    }

    #[test]
    fn empty_values_count_as_absent_and_malformed_basic_is_kept() {
        let r = parse(Some("Basic !!"), "grant_type=client_credentials&scope=a&client_id=").unwrap();
        assert_eq!(r.credentials, Credentials::MalformedBasic);
        let r = parse(None, "grant_type=client_credentials&scope=a&client_assertion_type=&client_assertion=").unwrap();
        assert_eq!(r.credentials, Credentials::None);
    }
}
