//! `ekey keygen`: a new DPoP key, written to a private file.

use crate::args::KeygenArgs;
use crate::error::CliError;
use crate::input::write_private_file;
use crate::output;
use ekey_verifier::client::DpopKey;
use serde::Serialize;

#[derive(Serialize)]
struct Generated<'a> {
    alg: &'static str,
    jwk: serde_json::Value,
    thumbprint: &'a str,
    out: String,
}

pub fn run(args: &KeygenArgs) -> Result<(), CliError> {
    let key =
        DpopKey::generate(args.alg.into()).map_err(|e| CliError::unavailable(format!("cannot generate a key: {e}")))?;
    write_private_file(&args.out, key.key_pair().to_pem(), args.force)?;
    output::json(&Generated {
        alg: key.key_pair().algorithm().as_str(),
        jwk: key.key_pair().public_jwk().to_json(),
        thumbprint: key.thumbprint(),
        out: args.out.display().to_string(),
    })
}
