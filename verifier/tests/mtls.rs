//! Certificate-bound tokens through the public API: the certificate from
//! the connection or from a trusted proxy's header (`mtls::ClientCertSource`),
//! `PresentedRequest::client_cert`, and tokens that claim both bindings.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Issuer, AUDIENCE};
use ekey_verifier::mtls::{x5t_s256, CertHeaderFormat, ClientCert, ClientCertSource, TrustedProxies};
use ekey_verifier::{b64_encode, Binding, Confirmation, PresentedRequest, Rejection, TokenError};
use http::HeaderMap;
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509Builder, X509NameBuilder};

fn certificate(cn: &str) -> Vec<u8> {
    let key =
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

fn bound_token(issuer: &Issuer, der: &[u8], limit: u32) -> String {
    let mut claims = issuer.claims("unused", "POST:/payments/:id", limit);
    claims.cnf = Confirmation::X5tS256(x5t_s256(der));
    issuer.sign(&claims)
}

fn request<'a>(url: &'a str, authorization: &'a str, cert: Option<&'a ClientCert>) -> PresentedRequest<'a> {
    PresentedRequest {
        method: "POST",
        url,
        authorization: Some(authorization),
        client_cert: cert,
        ..Default::default()
    }
}

fn is_binding_error(r: &Result<ekey_verifier::VerifiedCapability, Rejection>) -> bool {
    matches!(r, Err(Rejection::InvalidToken(TokenError::Binding(_))))
}

#[tokio::test]
async fn certificate_from_connection_or_hash() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let (mine, other) = (certificate("mine"), certificate("other"));
    let token = bound_token(&issuer, &mine, 5);
    let url = format!("{AUDIENCE}/payments/7");
    let bearer = format!("Bearer {token}");
    let (der, other) = (ClientCert::Der(mine.clone()), ClientCert::Der(other));

    let ok = verifier.verify(&request(&url, &bearer, Some(&der))).await.unwrap();
    assert_eq!(ok.binding, Binding::Mtls { x5t_s256: x5t_s256(&mine) });
    // Envoy's Hash= alone is enough.
    let hash = ClientCert::Sha256(openssl::sha::sha256(&mine));
    assert_eq!(verifier.verify(&request(&url, &bearer, Some(&hash))).await.unwrap().used, 2);
    // The same through verify_http, with the certificate read elsewhere.
    let mut headers = HeaderMap::new();
    headers.insert("authorization", bearer.parse().unwrap());
    let via_http = verifier.verify_http(&http::Method::POST, &url, &headers, Some(&der)).await;
    assert_eq!(via_http.unwrap().used, 3);

    assert!(is_binding_error(&verifier.verify(&request(&url, &bearer, Some(&other))).await));
    assert!(is_binding_error(&verifier.verify(&request(&url, &bearer, None)).await));
    // Another scheme never downgrades the binding.
    let dpop = format!("DPoP {token}");
    assert!(is_binding_error(&verifier.verify(&request(&url, &dpop, Some(&der))).await));
    // Refusals spent nothing: two uses are left.
    assert_eq!(verifier.verify(&request(&url, &bearer, Some(&der))).await.unwrap().remaining, 1);
}

#[tokio::test]
async fn proxy_header_believed_only_from_trusted_proxies() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let mine = certificate("mine");
    let token = bound_token(&issuer, &mine, 5);
    let url = format!("{AUDIENCE}/payments/7");
    let bearer = format!("Bearer {token}");
    let hex: String = openssl::sha::sha256(&mine).iter().map(|b| format!("{b:02x}")).collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-client-cert",
        format!("By=spiffe://mesh/api;Hash={hex};Subject=\"CN=mine\"").parse().unwrap(),
    );
    let source = ClientCertSource::behind_proxy(
        TrustedProxies::parse(["10.1.0.0/16"]).unwrap(),
        "x-forwarded-client-cert",
        CertHeaderFormat::Xfcc,
    )
    .unwrap();

    let from_proxy = source.client_certificate("10.1.2.3".parse().unwrap(), &headers, None).unwrap();
    assert!(verifier.verify(&request(&url, &bearer, from_proxy.as_ref())).await.is_ok());
    let from_client = source.client_certificate("192.0.2.9".parse().unwrap(), &headers, None).unwrap();
    assert_eq!(from_client, None);
    assert!(is_binding_error(&verifier.verify(&request(&url, &bearer, from_client.as_ref())).await));
    // A malformed header from the proxy is a rejection, not "no certificate".
    headers.insert("x-forwarded-client-cert", "Hash=xyz".parse().unwrap());
    let err = source.client_certificate("10.1.2.3".parse().unwrap(), &headers, None).unwrap_err();
    assert_eq!(Rejection::from(err).error_code(), Some("invalid_token"));
}

#[tokio::test]
async fn a_token_with_both_bindings_is_rejected() {
    let issuer = Issuer::new();
    let (verifier, _) = issuer.verifier();
    let mine = certificate("mine");
    let claims = issuer.claims("jkt-thumbprint", "POST:/payments/:id", 1);
    let mut json = serde_json::to_value(&claims).unwrap();
    json["cnf"] = serde_json::json!({"jkt": "jkt-thumbprint", "x5t#S256": x5t_s256(&mine)});
    let header = serde_json::json!({"alg": "ES256", "typ": "ekey+jwt", "kid": issuer.kid()});
    let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(json.to_string()));
    let token = format!("{input}.{}", b64_encode(issuer.key.sign(input.as_bytes()).unwrap()));
    let url = format!("{AUDIENCE}/payments/7");
    let der = ClientCert::Der(mine);
    for scheme in ["Bearer", "DPoP"] {
        let auth = format!("{scheme} {token}");
        let r = verifier.verify(&request(&url, &auth, Some(&der))).await;
        assert!(matches!(r, Err(Rejection::InvalidToken(TokenError::Claims(_)))), "{scheme}: {r:?}");
    }
}
