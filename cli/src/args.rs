//! The command line: every subcommand, flag and help text (clap derive).

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ekey_verifier::{Algorithm, MAX_LIMIT};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Values marked [-|@FILE] may be given literally, as '-' to read standard input,
or as '@FILE' to read a file. JSON goes to standard output, diagnostics to
standard error.

Exit status: 0 success; 1 refused (the issuer, verifier or API said no);
2 bad usage or input; 3 no usable answer (network, timeout, unexpected reply).

Examples:
  ekey keygen --out dpop.pem
  ekey token --issuer http://127.0.0.1:8080 --client-id payments \\
      --client-secret-file secret.txt --dpop-key dpop.pem --scope create-payment --raw > token.jwt
  ekey call --dpop-key dpop.pem --token @token.jwt --method POST \\
      --url http://127.0.0.1:3000/payments/42 --data '{\"amount\":10}'
  ekey inspect @token.jwt";

/// ekey: ephemeral, proof-bound capability tokens from the command line.
#[derive(Debug, Parser)]
#[command(name = "ekey", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Seconds to wait for each HTTP exchange (connect, send, read the reply).
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// PEM bundle of the CAs to trust for https:// URLs, instead of the
    /// system's trust store.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a DPoP key pair and write it as a PKCS#8 PEM file.
    Keygen(KeygenArgs),
    /// Get a capability token from the issuer's token endpoint.
    Token(TokenArgs),
    /// Decode a token or proof WITHOUT verifying it (debugging only).
    Inspect(InspectArgs),
    /// Print a DPoP proof for one request.
    Proof(ProofArgs),
    /// Verify a token and its proof exactly as an API would.
    Verify(VerifyArgs),
    /// Make an HTTP request with a DPoP-bound token and a fresh proof.
    Call(CallArgs),
}

/// Signature algorithms for locally generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (default).
    #[value(name = "ES256")]
    Es256,
    /// ECDSA P-384 with SHA-384.
    #[value(name = "ES384")]
    Es384,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<KeyAlg> for Algorithm {
    fn from(a: KeyAlg) -> Self {
        match a {
            KeyAlg::Es256 => Algorithm::ES256,
            KeyAlg::Es384 => Algorithm::ES384,
            KeyAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// `ekey keygen`
#[derive(Debug, Args)]
#[command(after_help = "\
Prints {\"alg\", \"jwk\", \"thumbprint\", \"out\"} as JSON; the thumbprint is what a
token bound to this key carries as cnf.jkt. The private key is only written to
the file (mode 0600), never printed.

Examples:
  ekey keygen --out dpop.pem
  ekey keygen --alg EdDSA --out dpop-ed25519.pem --force")]
pub struct KeygenArgs {
    /// Signature algorithm of the new key.
    #[arg(long, value_enum, default_value = "ES256", ignore_case = true)]
    pub alg: KeyAlg,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `ekey token`
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("client_auth").args(["client_secret", "client_secret_file", "client_key"])),
    group(ArgGroup::new("capability").required(true).args(["scope", "action"])),
    group(ArgGroup::new("binding").required(true).multiple(true).args(["dpop_key", "client_cert"])),
    after_help = "\
The token endpoint comes from the issuer's metadata
(/.well-known/oauth-authorization-server, RFC 8414), or is ISSUER/token when the
issuer publishes none; --token-endpoint skips discovery. Client authentication
is client_secret_basic (--client-secret, --client-secret-file, or the
EKEY_CLIENT_SECRET environment variable) or private_key_jwt (--client-key). The
request carries a DPoP proof made with --dpop-key; a use_dpop_nonce answer is
retried once with the issuer's nonce.

Over https://, --client-cert and --client-key present a TLS client
certificate. Without --client-secret*, the client then authenticates with it
(tls_client_auth or self_signed_tls_client_auth, RFC 8705), and without
--dpop-key the token is bound to the certificate (cnf x5t#S256, token_type
Bearer). --ca trusts a private CA for the issuer's certificate.

Prints the issuer's token response as JSON, or only the access token with --raw.
An OAuth error from the issuer is printed as {\"status\", \"error\",
\"error_description\"} and the exit status is 1.

Examples:
  ekey token --issuer http://127.0.0.1:8080 --client-id payments \\
      --client-secret-file secret.txt --dpop-key dpop.pem --scope create-payment
  ekey token --issuer http://127.0.0.1:8080 --client-id payments \\
      --client-key client.pem --dpop-key dpop.pem \\
      --action 'POST:/payments/42' --limit 1 --subcap 'GET:/payments/42' --raw
  ekey token --issuer https://issuer.example.com --ca ca.pem --client-id payments-api \\
      --client-cert client.crt --client-key client.key --scope payments.create --raw"
)]
pub struct TokenArgs {
    /// The issuer URL (as in the tokens' `iss`).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// Use this token endpoint instead of discovering it.
    #[arg(long, value_name = "URL")]
    pub token_endpoint: Option<String>,
    /// The OAuth client id.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// Client secret (client_secret_basic). Visible to other local users in
    /// the process list: prefer --client-secret-file or EKEY_CLIENT_SECRET.
    #[arg(long, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// File holding the client secret ('-' reads standard input); one
    /// trailing newline is ignored.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<String>,
    /// Private key (PKCS#8 PEM) that signs a private_key_jwt client
    /// assertion; with --client-cert, that certificate's private key instead.
    #[arg(long, value_name = "PEM")]
    pub client_key: Option<PathBuf>,
    /// TLS client certificate (PEM chain) to present over https://, with
    /// its key in --client-key: client authentication by certificate and,
    /// without --dpop-key, a certificate-bound token.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// `kid` of the client assertion's header. Defaults to the client key's
    /// RFC 7638 thumbprint.
    #[arg(long, value_name = "KID", requires = "client_key")]
    pub client_key_id: Option<String>,
    /// The DPoP key (PKCS#8 PEM) the token will be bound to.
    #[arg(long, value_name = "PEM")]
    pub dpop_key: Option<PathBuf>,
    /// Ask for a capability template by name (OAuth `scope`).
    #[arg(long, value_name = "TEMPLATE")]
    pub scope: Option<String>,
    /// Ask for one action, `METHOD:/path` (RFC 9396 authorization_details).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// How many uses to ask for (with --action). Defaults to the template's.
    #[arg(long, value_name = "N", conflicts_with = "scope",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIMIT)))]
    pub limit: Option<u32>,
    /// A further action the same uses may be spent on (with --action; repeatable).
    #[arg(long, value_name = "ACTION", conflicts_with = "scope")]
    pub subcap: Vec<String>,
    /// Print only the access token.
    #[arg(long)]
    pub raw: bool,
}

/// `ekey inspect`
#[derive(Debug, Args)]
#[command(after_help = "\
Prints {\"verified\": false, \"warning\", \"header\", \"claims\", \"times\",
\"expires_in\"} as JSON. Nothing is checked: signature, issuer, audience and
expiry may all be wrong. Use `ekey verify` to check a token.

Examples:
  ekey inspect eyJhbGciOi...
  ekey token ... --raw | ekey inspect -
  ekey inspect @token.jwt")]
pub struct InspectArgs {
    /// The token or proof [-|@FILE]. A leading `DPoP ` or `Bearer ` is ignored.
    #[arg(value_name = "TOKEN")]
    pub token: String,
}

/// `ekey proof`
#[derive(Debug, Args)]
#[command(after_help = "\
Prints the proof (a compact JWS) on one line, ready for a `DPoP:` header.

Examples:
  ekey proof --dpop-key dpop.pem --method POST --url http://127.0.0.1:8080/token
  ekey proof --dpop-key dpop.pem --method POST --url https://api.example.com/payments/42 \\
      --token @token.jwt --nonce \"$NONCE\"")]
pub struct ProofArgs {
    /// The DPoP private key (PKCS#8 PEM).
    #[arg(long, value_name = "PEM")]
    pub dpop_key: PathBuf,
    /// The request method (`htm`), e.g. POST.
    #[arg(long, value_name = "METHOD")]
    pub method: String,
    /// The request URL (`htu`; query and fragment are dropped).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The access token the proof goes with (sets `ath`) [-|@FILE].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A server nonce to echo (`nonce`).
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,
    /// The proof's `iat` in seconds since the epoch. Defaults to now.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub iat: Option<i64>,
}

/// `ekey verify`
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("keys").args(["jwks_url", "jwks_file"])),
    group(ArgGroup::new("binding").required(true).args(["proof", "dpop_key", "client_cert"])),
    after_help = "\
Runs the real verifier (in-memory replay store, so every run starts with no
uses spent) and prints
  {\"outcome\":\"accepted\",\"sub\",\"trace\",\"action\",\"scope\",\"template\",
   \"binding\",\"used\",\"remaining\",\"exp\"}                        exit 0, or
  {\"outcome\":\"rejected\",\"status\",\"error\",\"reason\",\"description\",
   \"www_authenticate\"}                         exit 1 (3 when status is 503).
Without --jwks-url/--jwks-file the issuer's jwks_uri is discovered from its
metadata (fallback ISSUER/.well-known/jwks.json). The set is fetched by the
verifier's own JWKS client; for https:// it trusts --ca (or the system's store).

Examples:
  ekey verify --issuer http://127.0.0.1:8080 --audience https://api.example.com \\
      --token @token.jwt --dpop-key dpop.pem --method POST --url https://api.example.com/payments/42
  ekey verify --issuer http://127.0.0.1:8080 --jwks-file jwks.json --audience https://api.example.com \\
      --token @token.jwt --proof @proof.jwt --method POST --url https://api.example.com/payments/42"
)]
pub struct VerifyArgs {
    /// The issuer URL the token's `iss` must equal.
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// Fetch the issuer's keys from this JWKS URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Read the issuer's keys from this JWKS file.
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The audience this API answers to; the token's `aud` must name it.
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: String,
    /// The access token [-|@FILE].
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The DPoP proof presented with the token [-|@FILE].
    #[arg(long, value_name = "PROOF")]
    pub proof: Option<String>,
    /// Make a fresh proof with this DPoP key (PKCS#8 PEM) instead of --proof.
    #[arg(long, value_name = "PEM")]
    pub dpop_key: Option<PathBuf>,
    /// Present the token as certificate-bound (Bearer), with this client
    /// certificate (PEM or DER).
    #[arg(long, value_name = "CERT")]
    pub client_cert: Option<PathBuf>,
    /// The request method.
    #[arg(long, value_name = "METHOD")]
    pub method: String,
    /// The URL the client addressed (the API's external URL).
    #[arg(long, value_name = "URL")]
    pub url: String,
}

/// `ekey call`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("binding").required(true).multiple(true).args(["dpop_key", "client_cert"])),
          after_help = "\
Sends `Authorization: DPoP <token>` and a fresh `DPoP` proof; when the server
answers 401 use_dpop_nonce with a DPoP-Nonce header, retries once with that
nonce. With --client-cert/--client-key and no --dpop-key, sends
`Authorization: Bearer <token>` over an https:// connection presenting that
certificate (a certificate-bound token). Prints {\"status\", \"headers\", \"body\" (or \"body_base64\"), \"json\" (when
the reply is JSON), \"nonce_retry\"}, or only the body with --raw. Exit status
0 for a 2xx reply, 1 otherwise.

Examples:
  ekey call --dpop-key dpop.pem --token @token.jwt --url http://127.0.0.1:3000/payments/42
  ekey call --dpop-key dpop.pem --token @token.jwt --method POST \\
      --url http://127.0.0.1:3000/payments/42 -H 'Idempotency-Key: 7' --data @payment.json
  ekey call --client-cert client.crt --client-key client.key --ca ca.pem --token @token.jwt \\
      --method POST --url https://api.example.com/payments/42")]
pub struct CallArgs {
    /// The DPoP private key (PKCS#8 PEM) the token is bound to.
    #[arg(long, value_name = "PEM")]
    pub dpop_key: Option<PathBuf>,
    /// TLS client certificate (PEM chain) to present over https://; without
    /// --dpop-key the token is sent as Bearer (certificate-bound).
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The access token [-|@FILE].
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The request method.
    #[arg(long, short = 'X', value_name = "METHOD", default_value = "GET")]
    pub method: String,
    /// The URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Request body [-|@FILE]. Content-Type defaults to application/json.
    #[arg(long, short = 'd', value_name = "BODY")]
    pub data: Option<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Print only the response body.
    #[arg(long)]
    pub raw: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ekey").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keygen_defaults_and_alg_names() {
        let Command::Keygen(k) = parse(&["keygen", "--out", "k.pem"]).unwrap().command else { panic!() };
        assert_eq!((k.alg, k.force), (KeyAlg::Es256, false));
        let Command::Keygen(k) = parse(&["keygen", "--alg", "eddsa", "--out", "k.pem"]).unwrap().command else {
            panic!()
        };
        assert_eq!(Algorithm::from(k.alg), Algorithm::EdDSA);
        assert_eq!(parse(&["keygen", "--alg", "RS256", "--out", "k"]).unwrap_err().kind(), ErrorKind::InvalidValue);
        assert_eq!(parse(&["keygen"]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
    }

    const TOKEN: [&str; 7] = ["token", "--issuer", "http://i", "--client-id", "c", "--dpop-key", "d.pem"];

    #[test]
    fn token_needs_exactly_one_capability_and_at_most_one_client_auth() {
        let with = |extra: &[&str]| parse(&[&TOKEN[..], extra].concat());
        assert!(with(&["--scope", "t", "--client-secret", "s"]).is_ok());
        assert!(with(&["--action", "POST:/p", "--limit", "2", "--subcap", "GET:/p", "--subcap", "GET:/q"]).is_ok());
        assert_eq!(with(&["--client-secret", "s"]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(with(&["--scope", "t", "--action", "POST:/p"]).unwrap_err().kind(), ErrorKind::ArgumentConflict);
        assert_eq!(
            with(&["--scope", "t", "--client-secret", "s", "--client-key", "k.pem"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(with(&["--scope", "t", "--limit", "2"]).unwrap_err().kind(), ErrorKind::ArgumentConflict);
        assert_eq!(with(&["--scope", "t", "--subcap", "GET:/p"]).unwrap_err().kind(), ErrorKind::ArgumentConflict);
        assert_eq!(with(&["--limit", "2"]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(with(&["--action", "POST:/p", "--limit", "0"]).unwrap_err().kind(), ErrorKind::ValueValidation);
        assert_eq!(
            with(&["--action", "POST:/p", "--limit", "1000001"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            with(&["--scope", "t", "--client-key-id", "k"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let mtls = ["token", "--issuer", "https://i", "--client-id", "c", "--scope", "t", "--client-cert", "c.pem"];
        assert_eq!(parse(&mtls).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        assert!(parse(&[&mtls[..], &["--client-key", "k.pem"]].concat()).is_ok());
        let no_binding = ["token", "--issuer", "https://i", "--client-id", "c", "--scope", "t"];
        assert_eq!(parse(&no_binding).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        let Command::Token(t) = with(&["--action", "POST:/p", "--subcap", "GET:/p"]).unwrap().command else { panic!() };
        assert_eq!((t.limit, t.subcap, t.raw), (None, vec!["GET:/p".to_owned()], false));
    }

    #[test]
    fn verify_needs_one_binding_and_at_most_one_key_source() {
        let base = ["verify", "--issuer", "http://i", "--audience", "a", "--token", "t", "--method", "GET"];
        let with = |extra: &[&str]| parse(&[&base[..], &["--url", "http://a/"], extra].concat());
        assert!(with(&["--proof", "p"]).is_ok());
        assert!(with(&["--dpop-key", "k.pem", "--jwks-file", "j.json"]).is_ok());
        assert_eq!(with(&[]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(with(&["--proof", "p", "--dpop-key", "k"]).unwrap_err().kind(), ErrorKind::ArgumentConflict);
        assert_eq!(
            with(&["--proof", "p", "--jwks-file", "j", "--jwks-url", "http://j"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn call_defaults_and_repeated_headers() {
        let args = ["call", "--dpop-key", "k", "--token", "t", "--url", "http://a/", "-H", "A: 1", "-H", "B: 2"];
        let Command::Call(c) = parse(&args).unwrap().command else { panic!() };
        assert_eq!((c.method.as_str(), c.headers.len(), c.data, c.raw), ("GET", 2, None, false));
        // A binding is required: a DPoP key, or a client certificate with its key.
        let base = ["call", "--token", "t", "--url", "https://a/"];
        assert_eq!(parse(&base).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        let cert_only = [&base[..], &["--client-cert", "c.pem"]].concat();
        assert_eq!(parse(&cert_only).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
        let mtls = [&base[..], &["--client-cert", "c.pem", "--client-key", "k.pem", "--ca", "ca.pem"]].concat();
        let cli = parse(&mtls).unwrap();
        let Command::Call(c) = cli.command else { panic!() };
        assert_eq!((c.dpop_key, cli.ca), (None, Some(PathBuf::from("ca.pem"))));
    }

    #[test]
    fn proof_accepts_negative_iat_and_global_timeout() {
        let args = ["proof", "--dpop-key", "k", "--method", "GET", "--url", "http://a/", "--iat", "-5"];
        let cli = parse(&[&args[..], &["--timeout", "3"]].concat()).unwrap();
        let Command::Proof(p) = cli.command else { panic!() };
        assert_eq!((p.iat, cli.timeout), (Some(-5), 3));
        assert_eq!(parse(&[&args[..], &["--timeout", "0"]].concat()).unwrap_err().kind(), ErrorKind::ValueValidation);
    }
}
