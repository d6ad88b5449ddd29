//! The `htu` comparison of RFC 9449 §4.3: both URLs are normalised per
//! RFC 3986 §6.2.2–6.2.3 (case, percent-encoding, dot segments, default port,
//! empty path) and compared without query and fragment.

/// Why a URL cannot be used as an `htu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtuError {
    /// Not an absolute http(s) URL with a host.
    #[error("not an absolute http(s) URL")]
    NotHttpUrl,
    /// Carries user information (`user@host`), which an `htu` never should.
    #[error("URL carries user information")]
    UserInfo,
}

/// Normalises `url` to `scheme://host[:port]/path` (query and fragment dropped).
///
/// ```
/// # use ekey_verifier::normalize_htu;
/// assert_eq!(
///     normalize_htu("HTTPS://API.Example.COM:443/a/./b/../%7euser?x=1#f").unwrap(),
///     "https://api.example.com/a/~user"
/// );
/// ```
pub fn normalize_htu(url: &str) -> Result<String, HtuError> {
    let parsed = url::Url::parse(url).map_err(|_| HtuError::NotHttpUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(HtuError::NotHttpUrl);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(HtuError::UserInfo);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(parsed.scheme());
    out.push_str("://");
    out.push_str(parsed.host_str().unwrap_or_default());
    if let Some(port) = parsed.port() {
        // `Url` already drops the scheme's default port.
        out.push(':');
        out.push_str(&port.to_string());
    }
    normalize_path(parsed.path(), &mut out);
    Ok(out)
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex
/// digits of the rest (RFC 3986 §6.2.2.1–2). Dot segments are already gone.
fn normalize_path(path: &str, out: &mut String) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    let mut rest = path;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let hex = rest.get(pos + 1..pos + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => out.push(b as char),
            Some(_) => {
                out.push('%');
                out.push_str(&rest[pos + 1..pos + 3].to_ascii_uppercase());
            }
            None => {
                // A stray '%' is kept as is; it can only equal itself.
                out.push('%');
                rest = &rest[pos + 1..];
                continue;
            }
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_forms() {
        let canonical = "https://api.example.com/payments/42";
        for form in [
            "https://api.example.com/payments/42",
            "HTTPS://API.EXAMPLE.COM/payments/42",
            "https://api.example.com:443/payments/42",
            "https://api.example.com/payments/%34%32",
            "https://api.example.com/payments/./42",
            "https://api.example.com/x/../payments/42",
            "https://api.example.com/payments/42?q=1",
            "https://api.example.com/payments/42#frag",
        ] {
            assert_eq!(normalize_htu(form).unwrap(), canonical, "{form}");
        }
        assert_eq!(normalize_htu("http://h:80").unwrap(), "http://h/");
        assert_eq!(normalize_htu("http://h:8080/a%2fb").unwrap(), "http://h:8080/a%2Fb");
        assert_eq!(normalize_htu("http://[::1]:8080/").unwrap(), "http://[::1]:8080/");
    }

    #[test]
    fn different_resources_stay_different() {
        let a = normalize_htu("https://api.example.com/payments/42").unwrap();
        for other in [
            "http://api.example.com/payments/42",
            "https://api.example.com:8443/payments/42",
            "https://api.example.org/payments/42",
            "https://api.example.com/Payments/42",
            "https://api.example.com/payments/42/",
            "https://api.example.com/payments%2F42",
        ] {
            assert_ne!(normalize_htu(other).unwrap(), a, "{other}");
        }
    }

    #[test]
    fn refuses_non_http_and_userinfo() {
        assert_eq!(normalize_htu("ftp://h/x"), Err(HtuError::NotHttpUrl));
        assert_eq!(normalize_htu("/relative"), Err(HtuError::NotHttpUrl));
        assert_eq!(normalize_htu("https://u:p@h/"), Err(HtuError::UserInfo));
        assert_eq!(normalize_htu("https://h/%zz").unwrap(), "https://h/%zz");
    }
}
