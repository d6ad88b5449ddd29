//! A request as the verifier sees it, and the one place that reads it from
//! an HTTP head: the tower layer, the gateway, [`Verifier::verify_http`] and
//! the issuer's token endpoint all go through here, so a rule about a
//! header is written once.
//!
//! [`Verifier::verify_http`]: crate::Verifier::verify_http

use crate::dpop::ProofError;
use crate::error::Rejection;
use crate::jose::jws::JwsError;
use crate::mtls::ClientCert;
use crate::path::{raw_path_of_url, without_query};
use crate::token::TokenError;
use http::{HeaderMap, Method};

/// One request as the verifier sees it. Header values are passed as they
/// arrived; `url` is the *external* URL the client used.
///
/// ```
/// use ekey_verifier::PresentedRequest;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "DPoP eyJhbGc.eyJzdWIi.c2ln".parse().unwrap());
/// headers.insert("dpop", "eyJ0eXAi.eyJqdGki.c2ln".parse().unwrap());
/// let req = PresentedRequest::from_http(&http::Method::POST, "https://api.example.com/v1/payments/42", &headers, None)
///     .unwrap()
///     // Behind a proxy that strips /v1, the application routes this path.
///     .with_path("/payments/42");
/// assert_eq!(req.routed_path(), "/payments/42");
/// assert_eq!(req.dpop, ["eyJ0eXAi.eyJqdGki.c2ln"]);
///
/// headers.append("authorization", "DPoP again".parse().unwrap());
/// assert!(PresentedRequest::from_http(&http::Method::POST, "https://api.example.com/", &headers, None).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct PresentedRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The absolute URL the client addressed (scheme, host, port, path): what
    /// a DPoP proof's `htu` names, compared after RFC 3986 normalisation.
    pub url: &'a str,
    /// The path the application routes, exactly as it arrived (not decoded,
    /// not normalised), without the query: the capability is matched on it,
    /// and it must be in normal form. Defaults to `None`: the path of `url`
    /// as written, which is right unless a proxy or a public base URL adds
    /// a prefix the application does not route.
    pub path: Option<&'a str>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header value (must be exactly one for DPoP-bound tokens).
    pub dpop: Vec<&'a str>,
    /// The client's TLS certificate, as the connection or a trusted proxy's
    /// header gave it (see [`crate::mtls::ClientCertSource`]), for
    /// certificate-bound tokens.
    pub client_cert: Option<&'a ClientCert>,
}

impl<'a> PresentedRequest<'a> {
    /// Reads `Authorization` and `DPoP` from a request head. Refuses more
    /// than one `Authorization` header, and any `Authorization` or `DPoP`
    /// value that is not visible ASCII. `external_url` is the URL the client
    /// used ([`crate::ExternalUrl::rebuild`] builds it behind proxies).
    pub fn from_http(
        method: &'a Method,
        external_url: &'a str,
        headers: &'a HeaderMap,
        client_cert: Option<&'a ClientCert>,
    ) -> Result<Self, Rejection> {
        let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
        let authorization = match (all.next(), all.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().map_err(|_| TokenError::Binding("Authorization header is not ASCII"))?),
            (Some(_), Some(_)) => return Err(TokenError::Binding("more than one Authorization header").into()),
        };
        Ok(Self {
            method: method.as_str(),
            url: external_url,
            path: None,
            authorization,
            dpop: Self::dpop_headers(headers)?,
            client_cert,
        })
    }

    /// Every `DPoP` header value, in order, as text; a value that is not
    /// visible ASCII is a malformed proof. How many there may be is the
    /// proof check's business ([`crate::ProofVerifier::verify`] wants exactly
    /// one), so the token endpoint reads them here too.
    pub fn dpop_headers(headers: &HeaderMap) -> Result<Vec<&str>, ProofError> {
        headers
            .get_all("dpop")
            .iter()
            .map(|v| v.to_str().map_err(|_| ProofError::Malformed(JwsError::NotCompact)))
            .collect()
    }

    /// The path the application routes: a request target (`/path?query`)
    /// as it arrived; the query is dropped.
    pub fn with_path(mut self, target: &'a str) -> Self {
        self.path = Some(target);
        self
    }

    /// The path the capability is matched on: [`PresentedRequest::path`]
    /// without its query, else the path of `url` as written.
    pub fn routed_path(&self) -> &'a str {
        match self.path {
            Some(target) => without_query(target),
            None => raw_path_of_url(self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_refusals() {
        let m = Method::POST;
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_bytes(b"DPoP \xff").unwrap());
        let e = PresentedRequest::from_http(&m, "https://h/", &h, None).unwrap_err();
        assert_eq!(e, Rejection::InvalidToken(TokenError::Binding("Authorization header is not ASCII")));
        let mut h = HeaderMap::new();
        h.insert("dpop", HeaderValue::from_bytes(b"\xfe").unwrap());
        let e = PresentedRequest::from_http(&m, "https://h/", &h, None).unwrap_err();
        assert_eq!(e, Rejection::InvalidProof(ProofError::Malformed(JwsError::NotCompact)));
        let mut h = HeaderMap::new();
        h.append("dpop", HeaderValue::from_static("a"));
        h.append("dpop", HeaderValue::from_static("b"));
        let r = PresentedRequest::from_http(&m, "https://h/", &h, None).unwrap();
        assert_eq!((r.dpop, r.authorization), (vec!["a", "b"], None));
    }

    #[test]
    fn routed_path() {
        let r = PresentedRequest { url: "https://h/v1/a/../b?q", ..Default::default() };
        assert_eq!(r.routed_path(), "/v1/a/../b");
        assert_eq!(r.with_path("/b?x=1").routed_path(), "/b");
    }
}
