//! Whether a path is already in normal form: the rule for the path a request
//! routes and for the literal segments of an action pattern.
//!
//! Routers disagree on how to read a path that is not in normal form: one
//! resolves `..` (in some spelling) or decodes `%2F` and routes elsewhere,
//! another routes the octets as they are, a third strips `;` parameters.
//! A capability matched on one reading and a request routed on another is
//! an authorization bypass, so such a path is never matched at all: it is
//! refused. What is left has exactly one spelling, so comparing octets is
//! comparing resources. A path is in normal form when it
//!
//! - starts with `/` and has no empty segment (`//`); a trailing `/` is
//!   allowed (it is a path of its own, `/payments/42/` ≠ `/payments/42`);
//! - has no `.` or `..` segment in any spelling (`%2e`, `%2E`, `.%2e`, and
//!   with a `;` parameter, `..;x`, which some servers read as `..`);
//! - has no `\`, no `%2F` or `%5C` (encoded separators), no control
//!   character raw or encoded (`%00`–`%1F`, `%7F`);
//! - percent-encodes nothing that needs no encoding: no `%41` for `A`, no
//!   `%7E` for `~` (RFC 3986 §6.2.2.2);
//! - writes every percent-encoding with two upper-case hex digits
//!   (RFC 3986 §6.2.2.1), and leaves no `%` without them;
//! - holds raw only the characters RFC 3986 allows in a path segment
//!   (unreserved, sub-delims, `:` and `@`).
//!
//! The query is not part of the path; callers pass the path without it.

/// The reason a path is not in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("it does not start with '/'")]
    NotAbsolute,
    /// Two `/` in a row: an empty segment that routers merge or keep.
    #[error("it has an empty segment ('//')")]
    EmptySegment,
    /// A `.` or `..` segment, in any spelling.
    #[error("it has a '.' or '..' segment (in some spelling)")]
    DotSegment,
    /// A raw backslash, which some servers read as `/`.
    #[error("it has a backslash")]
    Backslash,
    /// `%2F` or `%5C`: an encoded `/` or `\`.
    #[error("it has an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    /// A control character, raw or percent-encoded (`%00`–`%1F`, `%7F`).
    #[error("it has a control character, raw or percent-encoded")]
    Control,
    /// A percent-encoded unreserved character (`%41`, `%2E`, `%7E`, …).
    #[error("it percent-encodes a character that needs no encoding")]
    EncodedUnreserved,
    /// A `%` without two hex digits, or hex digits in lower case.
    #[error("it has a malformed or lower-case percent-encoding (write %XX with upper-case hex)")]
    Encoding,
    /// A character that must be percent-encoded in a path (space, `"`, `<`,
    /// `#`, `?`, non-ASCII, …).
    #[error("it has a character that must be percent-encoded")]
    Character,
}

/// Checks that `path` (without the query) is in normal form.
pub(crate) fn check_path(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(if path.starts_with('\\') { PathError::Backslash } else { PathError::NotAbsolute });
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        // Only the last segment may be empty: the root `/` or a trailing `/`.
        if segment.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
        check_segment(segment)?;
    }
    Ok(())
}

/// Checks one segment (between two `/`, which it does not hold).
pub(crate) fn check_segment(segment: &str) -> Result<(), PathError> {
    if is_dot_segment(segment) {
        return Err(PathError::DotSegment);
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => (hi, lo),
                _ => return Err(PathError::Encoding),
            };
            let octet = (hex(hi) << 4) | hex(lo);
            if octet == b'/' || octet == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            if octet.is_ascii_control() {
                return Err(PathError::Control);
            }
            if is_unreserved(octet) {
                return Err(PathError::EncodedUnreserved);
            }
            if hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                return Err(PathError::Encoding);
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(PathError::Backslash),
            _ if b.is_ascii_control() => return Err(PathError::Control),
            _ if is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@' => {}
            _ => return Err(PathError::Character),
        }
        i += 1;
    }
    Ok(())
}

/// `.` or `..`, with any of its dots spelled `%2e`/`%2E`, and with or
/// without a `;` parameter after it.
fn is_dot_segment(segment: &str) -> bool {
    let bare = segment.split(';').next().unwrap_or_default();
    let mut dots = 0;
    let mut rest = bare;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.get(..3).filter(|p| p.eq_ignore_ascii_case("%2e")).map(|_| &rest[3..]) {
            rest = r;
        } else {
            return false;
        }
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

fn hex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2.
fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// The path of an absolute URL exactly as written (no normalisation), up to
/// the query or fragment; `/` when it has none. The authority ends at the
/// first `/`, `\`, `?` or `#`, so a `\` there is left in the path (and
/// refused by [`check_path`]) rather than read as a separator.
pub(crate) fn raw_path_of_url(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let start = after_scheme.find(['/', '\\', '?', '#']).unwrap_or(after_scheme.len());
    let from_path = &after_scheme[start..];
    let path = &from_path[..from_path.find(['?', '#']).unwrap_or(from_path.len())];
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// The path part of a request target (`/path?query`).
pub(crate) fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths() {
        for p in [
            "/",
            "/payments/42",
            "/payments/42/",
            "/a:b@c!$&'()*+,;=",
            "/caf%C3%A9",
            "/a%20b",
            "/a%2Cb",
            "/a%25b",
            "/.well-known/jwks.json",
            "/...",
            "/.x",
            "/x.",
            "/..x",
            "/a;b=c",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn every_non_normal_spelling_is_refused() {
        use PathError::*;
        for (p, why) in [
            ("", NotAbsolute),
            ("payments", NotAbsolute),
            ("*", NotAbsolute),
            ("\\payments", Backslash),
            ("//payments", EmptySegment),
            ("/a//b", EmptySegment),
            ("/a///", EmptySegment),
            ("/.", DotSegment),
            ("/..", DotSegment),
            ("/a/./b", DotSegment),
            ("/a/../b", DotSegment),
            ("/a/..", DotSegment),
            ("/a/%2e", DotSegment),
            ("/a/%2E%2E", DotSegment),
            ("/a/.%2e/b", DotSegment),
            ("/a/%2E./b", DotSegment),
            ("/a/..;/b", DotSegment),
            ("/a/.;x=1/b", DotSegment),
            ("/a/%2e%2e;x/b", DotSegment),
            ("/a\\b", Backslash),
            ("/a%2Fb", EncodedSeparator),
            ("/a%2fb", EncodedSeparator),
            ("/a%5Cb", EncodedSeparator),
            ("/a%5cb", EncodedSeparator),
            ("/a%00b", Control),
            ("/a%0a", Control),
            ("/a%1F", Control),
            ("/a%7F", Control),
            ("/a\tb", Control),
            ("/a\u{7f}", Control),
            ("/%34%32", EncodedUnreserved),
            ("/a%2Eb", EncodedUnreserved),
            ("/a%7E", EncodedUnreserved),
            ("/a%7e", EncodedUnreserved),
            ("/a%41", EncodedUnreserved),
            ("/a%", Encoding),
            ("/a%2", Encoding),
            ("/a%zz", Encoding),
            ("/a%c3%a9", Encoding),
            ("/a%C3%a9", Encoding),
            ("/a b", Character),
            ("/a\"b", Character),
            ("/a<b>", Character),
            ("/a{b}", Character),
            ("/a|b", Character),
            ("/a^b", Character),
            ("/a`b", Character),
            ("/a[b]", Character),
            ("/a#b", Character),
            ("/a?b", Character),
            ("/café", Character),
        ] {
            assert_eq!(check_path(p), Err(why), "{p:?}");
        }
    }

    #[test]
    fn raw_paths_of_urls() {
        for (url, path) in [
            ("https://h/a/../b?q=1#f", "/a/../b"),
            ("https://h:8443/%34%32", "/%34%32"),
            ("https://h", "/"),
            ("https://h?x", "/"),
            ("https://h#x", "/"),
            ("HTTPS://H/A", "/A"),
            ("https://h\\a/b", "\\a/b"),
            ("https://h//a", "//a"),
        ] {
            assert_eq!(raw_path_of_url(url), path, "{url}");
        }
        assert_eq!(without_query("/a?b?c"), "/a");
        assert_eq!(without_query("/a"), "/a");
    }
}
