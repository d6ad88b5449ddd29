//! `ekey proof`: one DPoP proof on standard output.

use super::{htu, method, Context};
use crate::args::ProofArgs;
use crate::error::CliError;
use crate::input::{compact, private_key};
use crate::{output, timefmt};

pub fn run(args: &ProofArgs, ctx: &mut Context) -> Result<(), CliError> {
    let key = private_key(&args.dpop_key, "DPoP key")?;
    let method = method(&args.method)?;
    let htu = htu(&args.url)?;
    let token = args.token.as_deref().map(|t| compact(t, "--token", &mut ctx.stdin)).transpose()?;
    let iat = args.iat.unwrap_or_else(timefmt::now);
    let proof = key
        .proof(method.as_str(), &htu, token.as_deref(), args.nonce.as_deref(), iat)
        .map_err(|e| CliError::usage(format!("cannot sign the proof: {e}")))?;
    output::line(&proof)
}
