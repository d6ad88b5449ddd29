//! The external URL of a request — the one a DPoP proof's `htu` names — as
//! seen behind proxies.
//!
//! Three sources, in this order:
//!
//! 1. a configured public base URL (`https://api.example.com[/prefix]`)
//!    overrides everything: the request path is appended to it;
//! 2. when the TCP peer is a configured trusted proxy, `X-Forwarded-Proto`
//!    / `X-Forwarded-Host`, and — only where the embedder turns each on —
//!    `Forwarded` (RFC 7239, which then wins) and `X-Forwarded-Prefix`;
//! 3. otherwise the connection itself: the listener's scheme and the `Host`
//!    header (or the request target's authority).
//!
//! Headers from a peer that is not a trusted proxy are ignored, whatever they
//! say. Through a chain of proxies the hop that faced the client is found by
//! walking the `for=` / `X-Forwarded-For` entries from the right while they
//! name trusted proxies.
//!
//! `Forwarded` and `X-Forwarded-Prefix` stay off by default because common
//! proxies (nginx, Caddy, Traefik) pass a client's copy of them through
//! untouched unless told to overwrite it: being a trusted proxy does not
//! make every header it forwards its own. Either one changes only the
//! external URL (what the DPoP proof's `htu` must name); the capability is
//! always matched on the path the application routes.
//!
//! ```
//! use ekey_verifier::{ExternalUrl, ExternalUrlSettings, RequestOrigin};
//! let ext = ExternalUrl::new(&ExternalUrlSettings {
//!     trusted_proxies: vec!["10.0.0.0/8".into()],
//!     ..ExternalUrlSettings::default()
//! }).unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert("host", "10.0.0.7:8080".parse().unwrap());
//! headers.insert("x-forwarded-proto", "https".parse().unwrap());
//! headers.insert("x-forwarded-host", "api.example.com".parse().unwrap());
//! let from_proxy = RequestOrigin {
//!     peer: Some("10.1.2.3".parse().unwrap()),
//!     listener_scheme: "http",
//!     authority: None,
//!     path_and_query: "/payments/42",
//!     headers: &headers,
//! };
//! assert_eq!(ext.rebuild(&from_proxy).unwrap(), "https://api.example.com/payments/42");
//! // The same headers from anyone else are ignored.
//! let direct = RequestOrigin { peer: Some("192.0.2.1".parse().unwrap()), ..from_proxy };
//! assert_eq!(ext.rebuild(&direct).unwrap(), "http://10.0.0.7:8080/payments/42");
//! ```

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// Where external URLs come from. Every field documents its default.
#[derive(Debug, Clone, Default)]
pub struct ExternalUrlSettings {
    /// Peers whose forwarding headers are believed: CIDR blocks (`10.0.0.0/8`,
    /// `::1/128`) or single addresses. Defaults to none.
    pub trusted_proxies: Vec<String>,
    /// The public `scheme://host[:port][/prefix]` of the service; when set it
    /// overrides the forwarding headers and the connection. Defaults to `None`.
    pub public_base_url: Option<String>,
    /// Believe a trusted proxy's `Forwarded` header (RFC 7239 `proto` and
    /// `host`, preferred over `X-Forwarded-*`). Turn it on only when every
    /// trusted proxy overwrites or removes the client's `Forwarded`.
    /// Defaults to `false`.
    pub trust_forwarded: bool,
    /// Believe a trusted proxy's `X-Forwarded-Prefix` (the path prefix the
    /// proxy strips), which is put in front of the path of the external URL.
    /// Turn it on only when every trusted proxy sets or removes that header.
    /// It never changes the path the capability is matched on.
    /// Defaults to `false`.
    pub trust_forwarded_prefix: bool,
}

/// A setting or a request from which no external URL can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalUrlError {
    /// A `trusted_proxies` entry is neither a CIDR block nor an address.
    #[error("trusted proxy {0:?} is not an IP address or CIDR block")]
    Proxy(String),
    /// The public base URL is not `http(s)://host[:port][/path]`.
    #[error("public base URL {0:?} must be http(s)://host[:port][/path] without query, fragment or user info")]
    BaseUrl(String),
    /// No host: neither a `Host` header nor an authority in the request target.
    #[error("request has no host")]
    MissingHost,
    /// The host (from `Host`, `Forwarded` or `X-Forwarded-Host`) is not a valid authority.
    #[error("invalid host")]
    Host,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    DuplicateHost,
    /// The forwarded scheme is not `http` or `https`.
    #[error("forwarded scheme is not http or https")]
    Proto,
    /// `X-Forwarded-Prefix` is not an absolute path.
    #[error("invalid X-Forwarded-Prefix")]
    Prefix,
    /// The request target is not an absolute path (origin form).
    #[error("request target is not an absolute path")]
    Path,
    /// A header is not visible ASCII.
    #[error("header {0} is not visible ASCII")]
    NotAscii(&'static str),
}

/// What is known about one request: who sent it, on which listener, and its
/// head.
#[derive(Debug, Clone, Copy)]
pub struct RequestOrigin<'a> {
    /// The TCP peer's address, if known. Unknown peers are never trusted.
    pub peer: Option<IpAddr>,
    /// `http` or `https`: the scheme of the listener the request came in on.
    pub listener_scheme: &'a str,
    /// The authority of an absolute-form target or HTTP/2 `:authority`, if any;
    /// preferred over the `Host` header.
    pub authority: Option<&'a str>,
    /// The request target as the client sent it: `/path?query`.
    pub path_and_query: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// Rebuilds external URLs (see the module docs). Cheap to share.
#[derive(Debug, Clone)]
pub struct ExternalUrl {
    trusted: Vec<IpNet>,
    /// `scheme://authority` and a path prefix without a trailing `/`.
    base: Option<(String, String)>,
    forwarded: bool,
    prefix: bool,
}

impl ExternalUrl {
    /// Checks the settings.
    pub fn new(settings: &ExternalUrlSettings) -> Result<Self, ExternalUrlError> {
        let trusted = settings.trusted_proxies.iter().map(|p| parse_proxy(p)).collect::<Result<_, _>>()?;
        let base = settings.public_base_url.as_deref().map(parse_base).transpose()?;
        Ok(Self { trusted, base, forwarded: settings.trust_forwarded, prefix: settings.trust_forwarded_prefix })
    }

    /// Whether `peer` is a configured trusted proxy. IPv4-mapped IPv6
    /// addresses count as their IPv4 address.
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| {
            let p = p.to_canonical();
            self.trusted.iter().any(|net| net.contains(&p))
        })
    }

    /// Whether a public base URL is configured.
    pub fn has_public_base_url(&self) -> bool {
        self.base.is_some()
    }

    /// The absolute URL the client addressed.
    pub fn rebuild(&self, req: &RequestOrigin<'_>) -> Result<String, ExternalUrlError> {
        let path = req.path_and_query;
        // `//x` is an origin-form path with an empty first segment, not an
        // authority: it is rebuilt as it came, and refused by the verifier's
        // path rule like any other path that is not in normal form.
        if !path.starts_with('/') || !is_visible_ascii(path) {
            return Err(ExternalUrlError::Path);
        }
        if let Some((origin, prefix)) = &self.base {
            return Ok(format!("{origin}{prefix}{path}"));
        }
        let mut scheme = req.listener_scheme.to_ascii_lowercase();
        let mut host = None;
        let mut prefix = String::new();
        if self.is_trusted(req.peer) {
            let fwd = if self.forwarded { self.read_forwarded(req.headers)? } else { Forwarded::default() };
            let xf = self.read_x_forwarded(req.headers)?;
            if let Some(p) = fwd.proto.or(xf.proto) {
                scheme = p;
            }
            host = fwd.host.or(xf.host);
            if let Some(p) = xf.prefix {
                prefix = p;
            }
        }
        let host = match host {
            Some(h) => h,
            None => match req.authority {
                Some(a) => check_host(a)?,
                None => {
                    let mut all = req.headers.get_all(http::header::HOST).iter();
                    let h = all.next().ok_or(ExternalUrlError::MissingHost)?;
                    if all.next().is_some() {
                        return Err(ExternalUrlError::DuplicateHost);
                    }
                    check_host(h.to_str().map_err(|_| ExternalUrlError::NotAscii("host"))?)?
                }
            },
        };
        if scheme != "http" && scheme != "https" {
            return Err(ExternalUrlError::Proto);
        }
        Ok(format!("{scheme}://{host}{prefix}{path}"))
    }

    /// `proto` and `host` from the `Forwarded` element written by the
    /// outermost trusted hop.
    fn read_forwarded(&self, headers: &HeaderMap) -> Result<Forwarded, ExternalUrlError> {
        let mut elements = Vec::new();
        for v in headers.get_all(http::header::FORWARDED) {
            let v = v.to_str().map_err(|_| ExternalUrlError::NotAscii("forwarded"))?;
            elements.extend(split_outside_quotes(v, ','));
        }
        let Some(element) = self.outermost(&elements, |e| pair(e, "for").and_then(|f| node_ip(&f))) else {
            return Ok(Forwarded::default());
        };
        let proto = pair(element, "proto").map(|p| check_proto(&p)).transpose()?;
        let host = pair(element, "host").map(|h| check_host(&h)).transpose()?;
        Ok(Forwarded { proto, host, prefix: None })
    }

    /// The same from `X-Forwarded-*`, whose lists are walked with
    /// `X-Forwarded-For`.
    fn read_x_forwarded(&self, headers: &HeaderMap) -> Result<Forwarded, ExternalUrlError> {
        let fors = header_list(headers, "x-forwarded-for")?;
        let hops = fors.iter().rev().take_while(|f| self.is_trusted(node_ip(f))).count();
        let pick = |name: &'static str| -> Result<Option<String>, ExternalUrlError> {
            let list = header_list(headers, name)?;
            Ok(list.len().checked_sub(1).map(|last| list[last.saturating_sub(hops)].clone()))
        };
        let proto = pick("x-forwarded-proto")?.map(|p| check_proto(&p)).transpose()?;
        let host = pick("x-forwarded-host")?.map(|h| check_host(&h)).transpose()?;
        let prefix =
            if self.prefix { pick("x-forwarded-prefix")?.map(|p| check_prefix(&p)).transpose()? } else { None };
        Ok(Forwarded { proto, host, prefix })
    }

    /// The element written by the outermost trusted hop: from the right,
    /// skip elements whose `for` is itself a trusted proxy.
    fn outermost<'e>(&self, elements: &'e [&'e str], for_of: impl Fn(&str) -> Option<IpAddr>) -> Option<&'e str> {
        let mut i = elements.len().checked_sub(1)?;
        while i > 0 && self.is_trusted(for_of(elements[i])) {
            i -= 1;
        }
        Some(elements[i])
    }
}

#[derive(Debug, Default)]
struct Forwarded {
    proto: Option<String>,
    host: Option<String>,
    prefix: Option<String>,
}

fn parse_proxy(s: &str) -> Result<IpNet, ExternalUrlError> {
    let s = s.trim();
    IpNet::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
        .map(|n| match n {
            // An IPv4 block written in mapped form still means IPv4 peers.
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len().saturating_sub(96)).map_or(n, IpNet::V4),
                None => n,
            },
            v4 => v4,
        })
        .map_err(|_| ExternalUrlError::Proxy(s.to_owned()))
}

fn parse_base(s: &str) -> Result<(String, String), ExternalUrlError> {
    let bad = || ExternalUrlError::BaseUrl(s.to_owned());
    let u = url::Url::parse(s).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none_or(str::is_empty)
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(bad());
    }
    let mut origin = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    if let Some(port) = u.port() {
        origin.push_str(&format!(":{port}"));
    }
    Ok((origin, u.path().trim_end_matches('/').to_owned()))
}

fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn check_host(h: &str) -> Result<String, ExternalUrlError> {
    let h = h.trim();
    if h.is_empty() || h.contains('@') || !is_visible_ascii(h) {
        return Err(ExternalUrlError::Host);
    }
    let a = http::uri::Authority::from_str(h).map_err(|_| ExternalUrlError::Host)?;
    if a.host().is_empty() {
        return Err(ExternalUrlError::Host);
    }
    Ok(a.as_str().to_owned())
}

fn check_proto(p: &str) -> Result<String, ExternalUrlError> {
    let p = p.trim().to_ascii_lowercase();
    if p == "http" || p == "https" {
        Ok(p)
    } else {
        Err(ExternalUrlError::Proto)
    }
}

fn check_prefix(p: &str) -> Result<String, ExternalUrlError> {
    let p = p.trim();
    if !p.starts_with('/') || p.starts_with("//") || !is_visible_ascii(p) || p.contains(['?', '#']) {
        return Err(ExternalUrlError::Prefix);
    }
    Ok(p.trim_end_matches('/').to_owned())
}

/// Every comma-separated value of every line of header `name`, trimmed.
fn header_list(headers: &HeaderMap, name: &'static str) -> Result<Vec<String>, ExternalUrlError> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        let v = v.to_str().map_err(|_| ExternalUrlError::NotAscii(name))?;
        out.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
    }
    Ok(out)
}

/// Splits on `sep` outside quoted strings (RFC 7230 quoted-string with `\` escapes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|e| !e.is_empty());
    out
}

/// The value of parameter `name` in one `Forwarded` element, unquoted.
fn pair(element: &str, name: &str) -> Option<String> {
    split_outside_quotes(element, ';').into_iter().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        Some(match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => v.to_owned(),
        })
    })
}

/// The address of a `for=` node or `X-Forwarded-For` entry: `1.2.3.4`,
/// `1.2.3.4:80`, `[::1]:80`, `::1`; `unknown` and obfuscated names have none.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    node.parse().ok().or_else(|| node.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every forwarding header believed from `trusted`.
    fn ext(trusted: &[&str], base: Option<&str>) -> ExternalUrl {
        ExternalUrl::new(&ExternalUrlSettings {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            public_base_url: base.map(str::to_owned),
            trust_forwarded: true,
            trust_forwarded_prefix: true,
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn rebuild(e: &ExternalUrl, peer: &str, h: &HeaderMap) -> Result<String, ExternalUrlError> {
        e.rebuild(&RequestOrigin {
            peer: Some(peer.parse().unwrap()),
            listener_scheme: "http",
            authority: None,
            path_and_query: "/a/b?q=1",
            headers: h,
        })
    }

    #[test]
    fn connection_when_not_trusted() {
        let e = ext(&["10.0.0.1"], None);
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "proto=https;host=evil.example"),
        ]);
        assert_eq!(rebuild(&e, "10.0.0.2", &h).unwrap(), "http://internal:8080/a/b?q=1");
        assert_eq!(rebuild(&e, "10.0.0.2", &HeaderMap::new()), Err(ExternalUrlError::MissingHost));
        let two = headers(&[("host", "a"), ("host", "b")]);
        assert_eq!(rebuild(&e, "10.0.0.2", &two), Err(ExternalUrlError::DuplicateHost));
        assert_eq!(rebuild(&e, "10.0.0.2", &headers(&[("host", "u@h")])), Err(ExternalUrlError::Host));
    }

    #[test]
    fn forwarded_headers_from_trusted_peer() {
        let e = ext(&["10.0.0.0/8", "::1"], None);
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-prefix", "/v1/"),
        ]);
        assert_eq!(rebuild(&e, "10.9.9.9", &h).unwrap(), "https://api.example.com/v1/a/b?q=1");
        assert_eq!(rebuild(&e, "::ffff:10.1.1.1", &h).unwrap(), "https://api.example.com/v1/a/b?q=1");
        assert_eq!(rebuild(&e, "::1", &h).unwrap(), "https://api.example.com/v1/a/b?q=1");
        // Forwarded wins over X-Forwarded-*; the prefix still comes from X-Forwarded-Prefix.
        let h = headers(&[
            ("host", "internal"),
            ("forwarded", "for=192.0.2.1;proto=https;host=\"api.example.com:8443\""),
            ("x-forwarded-host", "other"),
        ]);
        assert_eq!(rebuild(&e, "10.0.0.1", &h).unwrap(), "https://api.example.com:8443/a/b?q=1");
        // Only the proto forwarded: host from the Host header.
        let h = headers(&[("host", "internal:81"), ("x-forwarded-proto", "https")]);
        assert_eq!(rebuild(&e, "10.0.0.1", &h).unwrap(), "https://internal:81/a/b?q=1");
    }

    #[test]
    fn forwarded_and_prefix_only_when_turned_on() {
        let h = headers(&[
            ("host", "internal"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example.com"),
            ("forwarded", "for=192.0.2.1;proto=http;host=evil.example"),
            ("x-forwarded-prefix", "/payments"),
        ]);
        let with = |trust_forwarded, trust_forwarded_prefix| {
            let e = ExternalUrl::new(&ExternalUrlSettings {
                trusted_proxies: vec!["10.0.0.1".into()],
                trust_forwarded,
                trust_forwarded_prefix,
                ..Default::default()
            })
            .unwrap();
            rebuild(&e, "10.0.0.1", &h).unwrap()
        };
        assert_eq!(with(false, false), "https://api.example.com/a/b?q=1");
        assert_eq!(with(true, false), "http://evil.example/a/b?q=1");
        assert_eq!(with(false, true), "https://api.example.com/payments/a/b?q=1");
        // A malformed header that is not believed is not read either.
        let bad = headers(&[("host", "h"), ("forwarded", "proto=gopher"), ("x-forwarded-prefix", "v1")]);
        let e =
            ExternalUrl::new(&ExternalUrlSettings { trusted_proxies: vec!["10.0.0.1".into()], ..Default::default() })
                .unwrap();
        assert_eq!(rebuild(&e, "10.0.0.1", &bad).unwrap(), "http://h/a/b?q=1");
    }

    #[test]
    fn chain_of_proxies_uses_outermost_trusted_hop() {
        let e = ext(&["10.0.0.0/8"], None);
        // client 192.0.2.1 -> 10.0.0.5 (wrote host=api) -> 10.0.0.6 (wrote host=mid) -> us
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.1;host=spoofed, for=192.0.2.1;proto=https;host=api.example.com, for=10.0.0.5;host=mid",
        )]);
        assert_eq!(rebuild(&e, "10.0.0.6", &h).unwrap(), "https://api.example.com/a/b?q=1");
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1, 192.0.2.1, 10.0.0.5"),
            ("x-forwarded-host", "spoofed, api.example.com, mid"),
            ("x-forwarded-proto", "http, https, http"),
        ]);
        assert_eq!(rebuild(&e, "10.0.0.6", &h).unwrap(), "https://api.example.com/a/b?q=1");
        // A client cannot pose as a trusted hop by writing its address first.
        let h = headers(&[("forwarded", "for=10.0.0.9;host=spoofed"), ("forwarded", "for=192.0.2.1;host=real")]);
        assert_eq!(rebuild(&e, "10.0.0.6", &h).unwrap(), "http://real/a/b?q=1");
    }

    #[test]
    fn bad_forwarded_values_are_errors() {
        let e = ext(&["127.0.0.1"], None);
        for (k, v, err) in [
            ("x-forwarded-proto", "ftp", ExternalUrlError::Proto),
            ("x-forwarded-host", "a b", ExternalUrlError::Host),
            ("x-forwarded-host", "user@h", ExternalUrlError::Host),
            ("x-forwarded-prefix", "v1", ExternalUrlError::Prefix),
            ("x-forwarded-prefix", "/v1?x", ExternalUrlError::Prefix),
            ("forwarded", "proto=gopher", ExternalUrlError::Proto),
        ] {
            assert_eq!(rebuild(&e, "127.0.0.1", &headers(&[("host", "h"), (k, v)])), Err(err), "{k}: {v}");
        }
    }

    #[test]
    fn public_base_url_overrides() {
        let e = ext(&["127.0.0.1"], Some("https://API.example.com:443/svc/"));
        let h = headers(&[("host", "internal"), ("x-forwarded-host", "other")]);
        assert_eq!(rebuild(&e, "127.0.0.1", &h).unwrap(), "https://api.example.com/svc/a/b?q=1");
        assert_eq!(rebuild(&e, "192.0.2.1", &HeaderMap::new()).unwrap(), "https://api.example.com/svc/a/b?q=1");
        for bad in ["ftp://h", "https://u@h", "https://h/?q", "/rel", "https://h/#f"] {
            let s = ExternalUrlSettings { public_base_url: Some(bad.into()), ..Default::default() };
            assert!(matches!(ExternalUrl::new(&s), Err(ExternalUrlError::BaseUrl(_))), "{bad}");
        }
        let s = ExternalUrlSettings { trusted_proxies: vec!["10.0.0.0/33".into()], ..Default::default() };
        assert_eq!(ExternalUrl::new(&s).unwrap_err(), ExternalUrlError::Proxy("10.0.0.0/33".into()));
    }

    #[test]
    fn path_must_be_origin_form() {
        let e = ext(&[], None);
        let h = headers(&[("host", "h")]);
        for bad in ["", "*", "http://x/", "/a b", "/a\u{7f}"] {
            let r = e.rebuild(&RequestOrigin {
                peer: None,
                listener_scheme: "http",
                authority: None,
                path_and_query: bad,
                headers: &h,
            });
            assert_eq!(r, Err(ExternalUrlError::Path), "{bad:?}");
        }
        let r = e.rebuild(&RequestOrigin {
            peer: None,
            listener_scheme: "https",
            authority: Some("h2.example"),
            path_and_query: "/",
            headers: &h,
        });
        assert_eq!(r.unwrap(), "https://h2.example/");
        let r = e.rebuild(&RequestOrigin {
            peer: None,
            listener_scheme: "http",
            authority: None,
            path_and_query: "//x/y",
            headers: &h,
        });
        assert_eq!(r.unwrap(), "http://h//x/y");
        assert!(!e.is_trusted(None));
    }
}
