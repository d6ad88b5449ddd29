//! Keeps regenerated vectors stable: ECDSA and RSA-PSS signatures are
//! randomised, so a signature already in the previous files is reused for the
//! same signing input as long as it still verifies with the same key.

use crate::Error;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use openssl::ecdsa::EcdsaSig;
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Reads the deliberately non-canonical signatures too (padding, trailing
/// bits), so that the cases built from a good signature stay stable.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Signatures seen in earlier vector files, by signing input, in file order.
#[derive(Debug, Default)]
pub struct SignatureReuse {
    by_input: HashMap<String, Vec<Vec<u8>>>,
}

impl SignatureReuse {
    /// Collects every compact JWS found in `dir/*.json`. Files that do not
    /// parse are skipped: they are about to be overwritten anyway.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let mut reuse = Self::default();
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(reuse);
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                reuse.collect(&v);
            }
        }
        Ok(reuse)
    }

    fn collect(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Array(a) => a.iter().for_each(|x| self.collect(x)),
            Value::Object(o) => o.values().for_each(|x| self.collect(x)),
            _ => {}
        }
    }

    fn add(&mut self, s: &str) {
        // "DPoP <token>" and bare compact strings alike; spaces inside a
        // token and extra parts after the signature are case faults.
        let jws: String = s.split_once(' ').map_or(s, |(_, t)| t).chars().filter(|c| *c != ' ').collect();
        let mut parts = jws.split('.');
        let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let Ok(sig) = LENIENT.decode(sig.replace('+', "-").replace('/', "_")) else { return };
        let candidates = self.by_input.entry(format!("{h}.{p}")).or_default();
        // A DER case keeps the r‖s signature it was made from reachable.
        if let Ok(der) = EcdsaSig::from_der(&sig) {
            for n in [32, 48] {
                if let (Ok(r), Ok(s)) = (der.r().to_vec_padded(n), der.s().to_vec_padded(n)) {
                    candidates.push([r, s].concat());
                }
            }
        }
        candidates.push(sig);
    }

    /// The first earlier signature over `input` that `good` accepts (it
    /// checks the signature with the intended key).
    pub fn find(&self, input: &str, good: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        self.by_input.get(input)?.iter().find(|sig| good(sig)).cloned()
    }
}
