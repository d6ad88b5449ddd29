//! Whether a requested action stays inside a template's action.

/// Whether `requested` equals `granted` or narrows it: the same method and
/// number of segments; each literal segment of `granted` repeated exactly;
/// each `:param` segment of `granted` matched by a literal (narrowing) or by
/// another `:param` (the name of a parameter does not change what it matches).
///
/// Both must already have passed [`ekey_verifier::ActionPattern::parse`]:
/// then every literal segment is in normal form, so comparing octets is
/// comparing resources, and a literal that would narrow a `:param` while a
/// router reads it as several segments (`42%2F..%2Fadmin`) never gets here.
pub(crate) fn narrows(requested: &str, granted: &str) -> bool {
    let (Some((rm, rp)), Some((gm, gp))) = (requested.split_once(':'), granted.split_once(':')) else {
        return false;
    };
    if rm != gm {
        return false;
    }
    let mut r = segments(rp);
    let mut g = segments(gp);
    loop {
        match (r.next(), g.next()) {
            (None, None) => return true,
            (Some(_), Some(gs)) if gs.starts_with(':') => {}
            (Some(rs), Some(gs)) if rs == gs => {}
            _ => return false,
        }
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::narrows;

    #[test]
    fn equal_or_narrower_only() {
        let t = "POST:/payments/:id";
        assert!(narrows("POST:/payments/:id", t));
        assert!(narrows("POST:/payments/42", t));
        assert!(narrows("POST:/payments/:pid", t));
        assert!(!narrows("GET:/payments/42", t));
        assert!(!narrows("POST:/payments", t));
        assert!(!narrows("POST:/payments/42/refund", t));
        assert!(!narrows("POST:/refunds/42", t));
        // A literal in the template cannot be widened to a parameter.
        assert!(!narrows("POST:/:kind/42", t));
        assert!(narrows("GET:/", "GET:/"));
        assert!(!narrows("GET:/x", "GET:/"));
        assert!(narrows("GET:/a/b/c", "GET:/:x/b/:y"));
        assert!(!narrows("GET:/a/c/c", "GET:/:x/b/:y"));
    }
}
