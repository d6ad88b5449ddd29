//! Decoding WITHOUT verification, for debugging tools (`ekey inspect`).
//!
//! Nothing returned here has been checked: never base a decision on it.

use crate::jose::b64;
use crate::jose::jws::JwsError;
use serde_json::Value;

/// The header and payload of a compact JWS as JSON, unverified.
pub fn decode_unverified(jws: &str) -> Result<(Value, Value), JwsError> {
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::NotCompact);
    };
    let decode = |s: &str, what: &'static str| -> Result<Value, JwsError> {
        let bytes = b64::decode(s).ok_or(JwsError::Encoding(what))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| JwsError::Header(crate::jose::json::JsonError::Malformed(e.to_string())))
    };
    Ok((decode(h, "header")?, decode(p, "payload")?))
}

/// Decodes canonical base64url (for tools that take tokens apart).
pub fn decode_b64(input: &str) -> Option<Vec<u8>> {
    b64::decode(input)
}
