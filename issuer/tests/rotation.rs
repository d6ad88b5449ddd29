//! Key rotation under load: clients keep getting tokens from the issuer and
//! using them at a verifier while the key set moves A → (A, next B) →
//! (B, previous A) → B. Every stage is a new config and a new issuer process
//! (in-process server) behind the same address, as in a rolling restart.
//! No token request may fail and no verification may fail; afterwards a
//! token signed by the removed key is rejected.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ekey_issuer::{Config, Providers, Server, ServerHandle};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    dangerous, Algorithm, HttpJwks, HttpJwksSettings, KeyPair, MemoryStore, Rejection, TokenError, Verifier,
    VerifierSettings,
};
use http::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const AUDIENCE: &str = "https://api.example";
/// `endpoints.jwks_max_age`: short, so the test runs in seconds. The rules
/// scale with it.
const MAX_AGE: u64 = 1;

/// The stable address clients and verifiers use; each stage's issuer sits
/// behind it (a layer-4 load balancer in miniature).
struct Front {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(addr));
        let target = upstream.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let to = *target.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, upstream, task }
    }

    fn switch_to(&self, server: &ServerHandle) {
        *self.upstream.lock().unwrap() = server.public_addr();
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rfc3339(t: i64) -> String {
    aws_sdk_kms::primitives::DateTime::from_secs(t).fmt(aws_sdk_kms::primitives::DateTimeFormat::DateTime).unwrap()
}

/// One issuer with `signing` as its `[signing_key]` body.
async fn stage(front: &Front, dir: &TempDir, signing: &str) -> ServerHandle {
    stage_with_max_age(front, dir, signing, MAX_AGE).await
}

async fn stage_with_max_age(front: &Front, dir: &TempDir, signing: &str, max_age: u64) -> ServerHandle {
    let config = Config::from_toml(
        &format!(
            r#"
            issuer = "http://{}"
            [server]
            listen = "127.0.0.1:0"
            admin_listen = "127.0.0.1:0"
            [endpoints]
            jwks_max_age = {max_age}
            [signing_key]
            {signing}
            {}
            "#,
            front.addr,
            worker_toml(AUDIENCE)
        ),
        &dir.0,
        &|_| Ok(None),
    )
    .unwrap();
    let providers = Providers::from_config(&config).await.unwrap();
    let server = Server::start_with(config, providers).await.unwrap();
    front.switch_to(&server);
    server
}

/// Takes the previous stage's issuer out as a load balancer would: no new
/// connections go to it (the front already points at the new one), a
/// deregistration delay lets connections already on their way reach it,
/// then it drains and stops.
async fn retire(old: ServerHandle) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.shutdown().await;
}

async fn token(front: SocketAddr, key: &DpopKey) -> Result<String, String> {
    let endpoint = format!("http://{front}/token");
    let proof = key.proof("POST", &endpoint, None, None, now()).unwrap();
    let details = json!([{"type": "ekey_capability", "action": "POST:/payments/1"}]).to_string();
    let res = token_request(
        &endpoint,
        Auth::Basic("worker", WORKER_SECRET),
        Some(proof),
        &[("authorization_details", &details)],
    )
    .await;
    if res.status != 200 {
        return Err(format!("{} {:?}", res.status, res.body));
    }
    Ok(res.json()["access_token"].as_str().unwrap().to_owned())
}

async fn verify(verifier: &Verifier, key: &DpopKey, token: &str) -> Result<(), Rejection> {
    let url = format!("{AUDIENCE}/payments/1");
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("DPoP {token}").parse().unwrap());
    headers.insert("dpop", key.proof("POST", &url, Some(token), None, now()).unwrap().parse().unwrap());
    verifier.verify_http(&Method::POST, &url, &headers, None).await.map(drop)
}

fn kid(token: &str) -> String {
    dangerous::decode_unverified(token).unwrap().0["kid"].as_str().unwrap().to_owned()
}

#[derive(Default)]
struct Tally {
    issued: AtomicUsize,
    token_failures: Mutex<Vec<String>>,
    verify_failures: Mutex<Vec<String>>,
    kids: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_under_load_without_a_failed_request() {
    bounded(async {
        let dir = TempDir::new("rotation");
        let a = KeyPair::generate(Algorithm::ES256).unwrap();
        let b = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write("a.pem", a.to_pem());
        dir.write("b.pem", b.to_pem());
        let front = Front::start().await;

        // Stage 1: A alone.
        let mut current = stage(&front, &dir, "file = \"a.pem\"").await;

        // A verifier as a service would run it: JWKS cached per max-age,
        // refetch on an unknown kid at most once a minute (so only the
        // pre-publication can make B known in time).
        let mut jwks = HttpJwksSettings::new(format!("http://{}/.well-known/jwks.json", front.addr));
        jwks.cooldown = Duration::from_secs(60);
        let verifier = Arc::new(Verifier::new(
            VerifierSettings::new(format!("http://{}", front.addr), AUDIENCE),
            Arc::new(HttpJwks::new(jwks).unwrap()),
            Arc::new(MemoryStore::default()),
        ));
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let kept_a = token(front.addr, &key).await.unwrap();
        assert_eq!(kid(&kept_a), a.thumbprint());
        verify(&verifier, &key, &token(front.addr, &key).await.unwrap()).await.unwrap();

        // Load: workers get a token and use it, in a loop.
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (stop, tally, verifier) = (stop.clone(), tally.clone(), verifier.clone());
            let addr = front.addr;
            workers.push(tokio::spawn(async move {
                let key = DpopKey::generate(Algorithm::ES256).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    match token(addr, &key).await {
                        Err(e) => tally.token_failures.lock().unwrap().push(e),
                        Ok(t) => {
                            tally.issued.fetch_add(1, Ordering::SeqCst);
                            tally.kids.lock().unwrap().push(kid(&t));
                            if let Err(r) = verify(&verifier, &key, &t).await {
                                tally.verify_failures.lock().unwrap().push(format!("{r:?}"));
                            }
                        }
                    }
                }
            }));
        }
        let kids_now = |tally: &Tally| tally.kids.lock().unwrap().clone();
        tokio::time::sleep(Duration::from_millis(400)).await;

        // Stage 2: B published as next. Old issuer drains after the switch.
        let b_published = now();
        let next = stage(
            &front,
            &dir,
            &format!("file = \"a.pem\"\n[[signing_key.next]]\nfile = \"b.pem\"\npublished_at = \"{}\"", rfc3339(b_published)),
        )
        .await;
        retire(std::mem::replace(&mut current, next)).await;
        // Making B active now is refused: it has not been published for a max-age.
        let early = Config::from_toml(
            &format!(
                "[endpoints]\njwks_max_age = 300\n[signing_key]\nfile = \"b.pem\"\npublished_at = \"{}\"\n\
                 [[signing_key.previous]]\nfile = \"a.pem\"\nretired_at = \"{}\"",
                rfc3339(b_published),
                rfc3339(now())
            ),
            &dir.0,
            &|_| Ok(None),
        )
        .unwrap();
        let refused = Providers::from_config(&early).await.unwrap_err().to_string();
        assert!(refused.starts_with("signing_key.published_at: "), "{refused}");
        tokio::time::sleep(Duration::from_millis(MAX_AGE * 1000 + 1200)).await;
        let seen = kids_now(&tally);
        assert!(seen.iter().all(|k| k == a.thumbprint()), "only A signs while B is next");

        // Stage 3: B active, A previous.
        let swapped = stage(
            &front,
            &dir,
            &format!(
                "file = \"b.pem\"\npublished_at = \"{}\"\n[[signing_key.previous]]\nfile = \"a.pem\"\nretired_at = \"{}\"",
                rfc3339(b_published),
                rfc3339(now())
            ),
        )
        .await;
        retire(std::mem::replace(&mut current, swapped)).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let before_removal = kids_now(&tally).len();

        // Stage 4: A removed (in production: after previous_retention).
        let alone =
            stage(&front, &dir, &format!("file = \"b.pem\"\npublished_at = \"{}\"", rfc3339(b_published))).await;
        retire(std::mem::replace(&mut current, alone)).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.await.unwrap();
        }

        let seen = kids_now(&tally);
        let by_b = seen.iter().filter(|k| *k == b.thumbprint()).count();
        let by_a = seen.len() - by_b;
        assert!(tally.token_failures.lock().unwrap().is_empty(), "{:?}", tally.token_failures.lock().unwrap());
        assert!(tally.verify_failures.lock().unwrap().is_empty(), "{:?}", tally.verify_failures.lock().unwrap());
        assert!(by_a >= 10 && by_b >= 10, "tokens by A {by_a}, by B {by_b}");
        assert!(seen.len() > before_removal, "load went on after A was removed");
        eprintln!("rotation: {} tokens issued and verified ({by_a} by A, {by_b} by B), 0 failures", seen.len());

        // The removed key's tokens are refused once the verifier's cache
        // has refreshed (max-age), although the token has not expired.
        tokio::time::sleep(Duration::from_millis(MAX_AGE * 1000 + 200)).await;
        let rejected = verify(&verifier, &key, &kept_a).await.unwrap_err();
        assert!(matches!(rejected, Rejection::InvalidToken(TokenError::UnknownKey)), "{rejected:?}");
        current.shutdown().await;
    })
    .await;
}

/// The control: the same swap without publishing B first (a config the
/// schedule check cannot catch, since it does not list A as previous) makes
/// verifiers refuse B's tokens until their cached JWKS expires. This is what
/// the rotation above avoids, and shows this harness would see it.
#[tokio::test]
async fn swapping_without_pre_publication_fails_verification() {
    bounded(async {
        let dir = TempDir::new("rotation-control");
        let a = KeyPair::generate(Algorithm::ES256).unwrap();
        let b = KeyPair::generate(Algorithm::ES256).unwrap();
        dir.write("a.pem", a.to_pem());
        dir.write("b.pem", b.to_pem());
        let front = Front::start().await;
        let first = stage_with_max_age(&front, &dir, "file = \"a.pem\"", 30).await;
        let mut jwks = HttpJwksSettings::new(format!("http://{}/.well-known/jwks.json", front.addr));
        jwks.cooldown = Duration::from_secs(60);
        let verifier = Verifier::new(
            VerifierSettings::new(format!("http://{}", front.addr), AUDIENCE),
            Arc::new(HttpJwks::new(jwks).unwrap()),
            Arc::new(MemoryStore::default()),
        );
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        verify(&verifier, &key, &token(front.addr, &key).await.unwrap()).await.unwrap();

        let second = stage_with_max_age(&front, &dir, "file = \"b.pem\"", 30).await;
        retire(first).await;
        let by_b = token(front.addr, &key).await.unwrap();
        assert_eq!(kid(&by_b), b.thumbprint());
        let refused = verify(&verifier, &key, &by_b).await.unwrap_err();
        assert!(matches!(refused, Rejection::InvalidToken(TokenError::UnknownKey)), "{refused:?}");
        second.shutdown().await;
    })
    .await;
}
