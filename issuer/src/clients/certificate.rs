//! Client authentication by TLS certificate (RFC 8705 §2): a CA-issued
//! certificate matched by its subject DN or one SAN (`tls_client_auth`), or
//! a self-signed one matched by its SHA-256 thumbprint
//! (`self_signed_tls_client_auth`). The certificate is the one the TLS
//! handshake verified; nothing in the request body names it.

use crate::config::CertificateName;
use std::net::IpAddr;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid2abbrev, oid_registry};
use x509_parser::prelude::FromDer;

/// One attribute of a distinguished name, normalised for comparison: type
/// upper-cased (`CN`, `O`, or the dotted OID), value with runs of spaces
/// collapsed and ASCII letters lower-cased (RFC 4517 caseIgnoreMatch for
/// the common attribute types).
type Attribute = (String, String);

fn normalise(kind: &str, value: &str) -> Attribute {
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let kind = match kind.to_ascii_uppercase().as_str() {
        "EMAILADDRESS" | "E" => "EMAILADDRESS".to_owned(),
        "SERIALNUMBER" => "SERIALNUMBER".to_owned(),
        "S" => "ST".to_owned(),
        other => other.to_owned(),
    };
    (kind, value)
}

/// Parses an RFC 4514 string (`CN=api,O=Example\, Inc.,C=DE`) into its
/// attributes, sorted: the comparison ignores attribute order, since tools
/// disagree on whether to print the RDN sequence forwards or backwards.
pub(crate) fn parse_dn(dn: &str) -> Result<Vec<Attribute>, String> {
    let mut attrs = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    let push = |part: &str, attrs: &mut Vec<Attribute>| -> Result<(), String> {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("{:?} is not type=value", short(part)))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
            return Err(format!("{:?} is not an attribute type", short(k)));
        }
        attrs.push(normalise(k, v.trim()));
        Ok(())
    };
    // Escapes are resolved into `current`; a separator is only an unescaped
    // ',' or '+'. An escaped '=' inside a value is kept by marking it.
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or("dangling backslash")?;
                let ch = if next.is_ascii_hexdigit() {
                    let lo = chars.next().filter(char::is_ascii_hexdigit).ok_or("bad \\XX escape")?;
                    let byte = u8::from_str_radix(&format!("{next}{lo}"), 16).map_err(|e| e.to_string())?;
                    char::from(byte)
                } else {
                    next
                };
                // Keep an escaped '=' from splitting type and value.
                current.push(if ch == '=' { '\u{1}' } else { ch });
            }
            ',' | '+' => {
                push(&current, &mut attrs)?;
                current.clear();
            }
            c => {
                current.push(c);
            }
        }
    }
    if !current.trim().is_empty() || attrs.is_empty() {
        push(&current, &mut attrs)?;
    }
    for a in &mut attrs {
        a.1 = a.1.replace('\u{1}', "=");
    }
    attrs.sort();
    Ok(attrs)
}

/// The subject of a certificate as sorted normalised attributes.
fn subject_attributes(cert: &X509Certificate<'_>) -> Result<Vec<Attribute>, String> {
    let mut attrs = Vec::new();
    for rdn in cert.subject().iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type();
            let kind = oid2abbrev(oid, oid_registry()).map(str::to_owned).unwrap_or_else(|_| oid.to_id_string());
            let value = atv.as_str().map_err(|_| "a subject attribute is not a string".to_owned())?;
            attrs.push(normalise(&kind, value));
        }
    }
    attrs.sort();
    Ok(attrs)
}

/// Whether the certificate `der` carries `name`.
pub(crate) fn matches(der: &[u8], name: &CertificateName) -> Result<bool, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("client certificate does not parse: {e}"))?;
    if let CertificateName::SubjectDn(dn) = name {
        return Ok(parse_dn(dn)? == subject_attributes(&cert)?);
    }
    let san = cert.subject_alternative_name().map_err(|e| format!("client certificate SAN does not parse: {e}"))?;
    let Some(san) = san else { return Ok(false) };
    Ok(san.value.general_names.iter().any(|g| match (g, name) {
        (GeneralName::DNSName(d), CertificateName::SanDns(want)) => d.eq_ignore_ascii_case(want),
        (GeneralName::URI(u), CertificateName::SanUri(want)) => u == want,
        (GeneralName::RFC822Name(e), CertificateName::SanEmail(want)) => email_eq(e, want),
        (GeneralName::IPAddress(bytes), CertificateName::SanIp(want)) => ip_of(bytes) == Some(*want),
        _ => false,
    }))
}

/// Local part exact, domain case-insensitive.
fn email_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Decodes base64url SHA-256 thumbprints (`x5t#S256`).
pub(crate) fn thumbprints(list: &[String]) -> Result<Vec<[u8; 32]>, String> {
    use base64::Engine as _;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim())
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| format!("[{i}] is not a base64url SHA-256 thumbprint"))
        })
        .collect()
}

/// The SHA-256 of the first `x5c` certificate of each key of a JWK set
/// file (RFC 8705 §2.2: the client registers its self-signed certificates
/// in its JWKS). Keys without `x5c` are refused: they could never match.
pub(crate) fn x5c_thumbprints(path: &std::path::Path) -> Result<Vec<[u8; 32]>, String> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        ekey_verifier::from_json_strict(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let keys = value.get("keys").and_then(|k| k.as_array()).ok_or("a JWK set needs a \"keys\" array")?;
    if keys.is_empty() {
        return Err("the JWK set has no keys".into());
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let first = k
                .get("x5c")
                .and_then(|x| x.as_array())
                .and_then(|x| x.first())
                .and_then(|c| c.as_str())
                .ok_or_else(|| format!("keys[{i}] has no x5c certificate"))?;
            // x5c is standard base64 with padding (RFC 7517 §4.7).
            let der = base64::engine::general_purpose::STANDARD
                .decode(first)
                .map_err(|_| format!("keys[{i}].x5c[0] is not base64"))?;
            X509Certificate::from_der(&der).map_err(|_| format!("keys[{i}].x5c[0] is not an X.509 certificate"))?;
            Ok(openssl::sha::sha256(&der))
        })
        .collect()
}

fn short(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &[(rcgen::DnType, &str)], sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (k, v) in subject {
            params.distinguished_name.push(k.clone(), *v);
        }
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn dn_parsing() {
        assert_eq!(
            parse_dn("CN=api, O=Example\\, Inc.,c=DE").unwrap(),
            vec![("C".into(), "de".into()), ("CN".into(), "api".into()), ("O".into(), "example, inc.".into())]
        );
        assert_eq!(parse_dn("CN=a\\3Db").unwrap(), vec![("CN".into(), "a=b".into())]);
        assert!(parse_dn("").is_err());
        assert!(parse_dn("CN").is_err());
        assert!(parse_dn("C N=x").is_err());
        assert!(parse_dn("CN=x\\").is_err());
    }

    #[test]
    fn registered_thumbprints() {
        use base64::Engine as _;
        let der = cert(&[(rcgen::DnType::CommonName, "device")], vec![]);
        let digest = openssl::sha::sha256(&der);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(thumbprints(&[b64url]).unwrap(), vec![digest]);
        assert!(thumbprints(&["AAAA".into()]).unwrap_err().starts_with("[0]"));

        let dir = tempfile::tempdir().unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der);
        let path = dir.path().join("jwks.json");
        let write = |v: serde_json::Value| std::fs::write(&path, v.to_string()).unwrap();
        write(serde_json::json!({"keys": [{"kty": "EC", "x5c": [x5c]}]}));
        assert_eq!(x5c_thumbprints(&path).unwrap(), vec![digest]);
        write(serde_json::json!({"keys": [{"kty": "EC"}]}));
        assert!(x5c_thumbprints(&path).unwrap_err().contains("no x5c"));
        write(serde_json::json!({"keys": [{"x5c": ["AAAA"]}]}));
        assert!(x5c_thumbprints(&path).unwrap_err().contains("not an X.509"));
        write(serde_json::json!({"keys": []}));
        assert!(x5c_thumbprints(&path).is_err());
        assert!(x5c_thumbprints(&dir.path().join("missing.json")).unwrap_err().starts_with("cannot read"));
    }

    #[test]
    fn names_match() {
        use rcgen::{DnType, SanType};
        let der = cert(
            &[(DnType::CountryName, "DE"), (DnType::OrganizationName, "Example"), (DnType::CommonName, "payments")],
            vec![
                SanType::URI("spiffe://example.org/ns/payments/sa/api".try_into().unwrap()),
                SanType::DnsName("api.payments.example.org".try_into().unwrap()),
                SanType::Rfc822Name("ops@Example.org".try_into().unwrap()),
                SanType::IpAddress("10.1.2.3".parse().unwrap()),
            ],
        );
        let yes = |n: CertificateName| assert!(matches(&der, &n).unwrap(), "{n:?}");
        let no = |n: CertificateName| assert!(!matches(&der, &n).unwrap(), "{n:?}");
        yes(CertificateName::SubjectDn("CN=payments,O=Example,C=DE".into()));
        yes(CertificateName::SubjectDn("c=de, o=example, cn=Payments".into()));
        no(CertificateName::SubjectDn("CN=payments,O=Example".into()));
        no(CertificateName::SubjectDn("CN=payments,O=Example,C=DE,OU=x".into()));
        yes(CertificateName::SanUri("spiffe://example.org/ns/payments/sa/api".into()));
        no(CertificateName::SanUri("spiffe://example.org/ns/payments/sa/API".into()));
        no(CertificateName::SanUri("spiffe://example.org/ns/payments".into()));
        yes(CertificateName::SanDns("API.payments.example.org".into()));
        no(CertificateName::SanDns("payments.example.org".into()));
        yes(CertificateName::SanEmail("ops@example.org".into()));
        no(CertificateName::SanEmail("Ops@example.org".into()));
        yes(CertificateName::SanIp("10.1.2.3".parse().unwrap()));
        no(CertificateName::SanIp("10.1.2.4".parse().unwrap()));
        // A DNS name is not a URI.
        no(CertificateName::SanUri("api.payments.example.org".into()));
        assert!(matches(b"junk", &CertificateName::SanDns("x".into())).is_err());
    }
}
