//! The generator: every vector file, built from the fixed keys and times.

mod binding;
mod capability;
mod fixture;
mod happy;
mod htu;
mod nonce;
mod proof;
mod request_path;
mod token_claims;
mod token_format;
mod usage;

use crate::format::{Case, VectorFile, FORMAT};
use crate::keys::TestKeys;
use crate::reuse::SignatureReuse;
use crate::Error;
use fixture::Gen;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The verifier's tests refuse to run on fewer cases than this.
pub const MIN_CASES: usize = 60;

type Builder = fn(&Gen) -> Result<Vec<Case>, Error>;

/// File stem, description and cases of each file, in README order.
const FILES: [(&str, &str, Builder); 10] = [
    ("token-format", token_format::DESCRIPTION, token_format::cases),
    ("token-claims", token_claims::DESCRIPTION, token_claims::cases),
    ("dpop-proof", proof::DESCRIPTION, proof::cases),
    ("dpop-htu", htu::DESCRIPTION, htu::cases),
    ("dpop-nonce", nonce::DESCRIPTION, nonce::cases),
    ("binding", binding::DESCRIPTION, binding::cases),
    ("capability", capability::DESCRIPTION, capability::cases),
    ("request-path", request_path::DESCRIPTION, request_path::cases),
    ("usage", usage::DESCRIPTION, usage::cases),
    ("happy-path", happy::DESCRIPTION, happy::cases),
];

/// Builds every file; `(stem, file)` pairs.
pub fn generate(keys: &TestKeys, reuse: &SignatureReuse) -> Result<Vec<(String, VectorFile)>, Error> {
    let g = Gen::new(keys, reuse);
    let mut files = Vec::new();
    for (stem, description, build) in FILES {
        let cases = build(&g)?;
        files.push((stem.to_owned(), VectorFile { format: FORMAT.into(), description: description.into(), cases }));
    }
    validate(&files)?;
    Ok(files)
}

fn validate(files: &[(String, VectorFile)]) -> Result<(), Error> {
    let mut ids = HashSet::new();
    let mut total = 0;
    for (stem, file) in files {
        for case in &file.cases {
            total += 1;
            if !case.id.starts_with(&format!("{stem}/")) || !ids.insert(case.id.as_str()) {
                return Err(Error::Invalid(format!("case id {:?} is duplicated or in the wrong file", case.id)));
            }
            let well_formed = !case.steps.is_empty()
                && case.steps.iter().all(|s| {
                    matches!((&s.revoke, &s.request, &s.expect), (Some(_), None, None) | (None, Some(_), Some(_)))
                });
            if !well_formed {
                return Err(Error::Invalid(format!("case {:?}: each step is a request + expect or a revoke", case.id)));
            }
        }
    }
    if total < MIN_CASES {
        return Err(Error::Invalid(format!("{total} cases, fewer than {MIN_CASES}")));
    }
    Ok(())
}

/// What [`write`] did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files written, with their number of cases.
    pub files: Vec<(PathBuf, usize)>,
    /// Cases per `check`.
    pub checks: BTreeMap<String, usize>,
    /// Stale `*.json` files removed from the output directory.
    pub removed: Vec<PathBuf>,
}

/// Regenerates `out/*.json` (keys from `out/keys/`, created when missing).
/// Signatures of the previous files are reused while they verify, and
/// `*.json` files this generator no longer writes are removed.
pub fn write(out: &Path) -> Result<Summary, Error> {
    let keys = TestKeys::load_or_create(&out.join("keys"))?;
    let reuse = SignatureReuse::from_dir(out)?;
    let files = generate(&keys, &reuse)?;
    let mut summary = Summary::default();
    let mut written = HashSet::new();
    for (stem, file) in &files {
        let path = out.join(format!("{stem}.json"));
        let mut text = serde_json::to_string_pretty(file)?;
        text.push('\n');
        fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        for case in &file.cases {
            *summary.checks.entry(case.check.clone()).or_default() += 1;
        }
        summary.files.push((path.clone(), file.cases.len()));
        written.insert(path);
    }
    for entry in fs::read_dir(out).map_err(|e| Error::io(out, e))?.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") && !written.contains(&path) {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            summary.removed.push(path);
        }
    }
    Ok(summary)
}
