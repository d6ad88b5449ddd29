//! Revocation through Redis: by trace (in the consume script), by `sub`, by
//! template and by issue time (rule set fed by pub/sub and polling), the
//! propagation delay across two verifier instances, convergence without
//! pub/sub, and fail-closed staleness.

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod common;

use common::redis::RedisServer;
use common::{Issuer, AUDIENCE, ISSUER, NOW};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    Algorithm, Claims, ManualClock, PresentedRequest, RedisRevocationFeed, RedisRevocations, RedisStore,
    RedisStoreSettings, Rejection, RevocationCheck, RevocationError, RevocationFeedSettings, RevocationRule,
    RevocationRules, StaticKeys, TokenError, Verifier, VerifierSettings,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn feed_settings() -> RevocationFeedSettings {
    RevocationFeedSettings { poll_interval_ms: 250, max_staleness_ms: 1000 }
}

struct Client {
    key: DpopKey,
}

impl Client {
    async fn call(&self, v: &Verifier, token: &str) -> Result<u32, Rejection> {
        let url = format!("{AUDIENCE}/payments/7");
        let proof = self.key.proof("POST", &url, Some(token), None, NOW).unwrap();
        let auth = format!("DPoP {token}");
        let req = PresentedRequest {
            method: "POST",
            url: &url,
            authorization: Some(&auth),
            dpop: vec![&proof],
            ..Default::default()
        };
        v.verify(&req).await.map(|c| c.used)
    }
}

fn token(issuer: &Issuer, client: &Client, sub: &str, tpl: &str, iat: i64) -> (String, Claims) {
    let mut c = issuer.claims(client.key.thumbprint(), "POST:/payments/:id", 10);
    c.sub = sub.into();
    c.tpl = Some(tpl.into());
    c.iat = iat;
    c.nbf = iat;
    (issuer.sign(&c), c)
}

/// Waits until `rules` revokes `claims`; returns how long that took.
async fn until_revoked(rules: &RevocationRules, claims: &Claims, bound: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        match rules.check(claims) {
            Err(RevocationError::Revoked) => return t0.elapsed(),
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(t0.elapsed() < bound, "not revoked within {bound:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_by_trace_sub_template_and_time() {
    let server = RedisServer::start();
    let settings = RedisStoreSettings::single(server.url());
    let admin = RedisRevocations::connect(settings.clone()).await.unwrap();
    let feed = RedisRevocationFeed::start(settings.clone(), feed_settings()).await.unwrap();
    let issuer = Issuer::new();
    let v = Verifier::with_clock(
        VerifierSettings::new(ISSUER, AUDIENCE),
        Arc::new(StaticKeys::new(issuer.jwks()).unwrap()),
        Arc::new(RedisStore::connect(settings).await.unwrap()),
        Arc::new(ManualClock::new(NOW)),
    )
    .with_revocation(feed.rules());
    let client = Client { key: DpopKey::generate(Algorithm::ES256).unwrap() };
    let revoked = |r: Result<u32, Rejection>| matches!(r, Err(Rejection::InvalidToken(TokenError::Revoked)));

    // One trace: in the consume script, at once.
    let (t1, c1) = token(&issuer, &client, "alice", "pay", NOW);
    let (t2, _) = token(&issuer, &client, "alice", "pay", NOW);
    assert_eq!(client.call(&v, &t1).await, Ok(1));
    admin.revoke_trace(&c1.jti, unix_now() + 60).await.unwrap();
    assert!(revoked(client.call(&v, &t1).await));
    assert_eq!(client.call(&v, &t2).await, Ok(1), "another trace of the same sub is untouched");

    // Every token of a sub issued until now; later ones still work.
    let (bob_old, bob_claims) = token(&issuer, &client, "bob", "pay", NOW - 10);
    let (bob_new, _) = token(&issuer, &client, "bob", "pay", NOW + 1);
    admin.add_rule(&RevocationRule::sub("bob", NOW)).await.unwrap();
    until_revoked(&feed.rules(), &bob_claims, Duration::from_secs(1)).await;
    assert!(revoked(client.call(&v, &bob_old).await));
    assert_eq!(client.call(&v, &bob_new).await, Ok(1));

    // A template.
    let (read, read_claims) = token(&issuer, &client, "carol", "read", NOW);
    let (pay, _) = token(&issuer, &client, "carol", "pay", NOW);
    admin.add_rule(&RevocationRule::template("read", NOW)).await.unwrap();
    until_revoked(&feed.rules(), &read_claims, Duration::from_secs(1)).await;
    assert!(revoked(client.call(&v, &read).await));
    assert_eq!(client.call(&v, &pay).await, Ok(1));

    // Everything issued before T.
    let (old, old_claims) = token(&issuer, &client, "dave", "pay", NOW - 5);
    let (new, _) = token(&issuer, &client, "dave", "pay", NOW + 2);
    assert_eq!(admin.add_rule(&RevocationRule::all(NOW - 1)).await.unwrap(), 3);
    until_revoked(&feed.rules(), &old_claims, Duration::from_secs(1)).await;
    assert!(revoked(client.call(&v, &old).await));
    assert_eq!(client.call(&v, &new).await, Ok(1));

    // Rules expire with the tokens they could match: the set carries a TTL.
    let ttl: i64 = server.cli(&["TTL", admin.rules_key()]).parse().unwrap();
    assert!(ttl > 0, "{ttl}");
    // An already expired rule is not even written.
    assert_eq!(admin.add_rule(&RevocationRule::all(unix_now() - 3600)).await.unwrap(), 0);
}

/// Two verifier instances, each with its own feed: the delay from the write
/// until both enforce it, with pub/sub, and when the subscriber was
/// disconnected just before (the message is lost; a poll or the
/// re-subscription catches up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_delay_across_two_verifiers() {
    let server = RedisServer::start();
    let settings = RedisStoreSettings::single(server.url());
    let admin = RedisRevocations::connect(settings.clone()).await.unwrap();
    let feeds = [
        RedisRevocationFeed::start(settings.clone(), feed_settings()).await.unwrap(),
        RedisRevocationFeed::start(settings.clone(), feed_settings()).await.unwrap(),
    ];
    let rules = [feeds[0].rules(), feeds[1].rules()];
    let issuer = Issuer::new();
    let client = Client { key: DpopKey::generate(Algorithm::ES256).unwrap() };
    // Let both subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delays = Vec::new();
    for round in 0..5 {
        let sub = format!("user{round}");
        let (_, claims) = token(&issuer, &client, &sub, "pay", NOW);
        let t0 = Instant::now();
        admin.add_rule(&RevocationRule::sub(&sub, NOW)).await.unwrap();
        let (a, b) = tokio::join!(
            until_revoked(&rules[0], &claims, Duration::from_secs(1)),
            until_revoked(&rules[1], &claims, Duration::from_secs(1))
        );
        delays.push(t0.elapsed().max(a).max(b));
    }
    let worst = delays.iter().max().unwrap();
    println!("revocation propagation to 2 verifiers (pub/sub): {delays:?}, worst {worst:?}");
    assert!(*worst < Duration::from_millis(250), "pub/sub should beat the poll: {delays:?}");

    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let (_, claims) = token(&issuer, &client, "after-kill", "pay", NOW);
    let t0 = Instant::now();
    admin.add_rule(&RevocationRule::sub("after-kill", NOW)).await.unwrap();
    let (a, b) = tokio::join!(
        until_revoked(&rules[0], &claims, Duration::from_secs(1)),
        until_revoked(&rules[1], &claims, Duration::from_secs(1))
    );
    println!("after the subscribers were disconnected: {:?}", t0.elapsed().max(a).max(b));
}

/// A feed that may not subscribe (ACL without channels) never gets a
/// message, and still converges by polling within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_by_polling_alone() {
    let server = RedisServer::start();
    server.cli(&["ACL", "SETUSER", "poller", "on", ">poller-pw", "~*", "resetchannels", "+@all"]);
    let admin = RedisRevocations::connect(RedisStoreSettings::single(server.url())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "poller-pw").unwrap();
    let poller = RedisStoreSettings {
        username: Some("poller".into()),
        password_file: Some(dir.path().join("pw")),
        ..RedisStoreSettings::single(server.url())
    };
    let feed = RedisRevocationFeed::start(poller, feed_settings()).await.unwrap();
    let issuer = Issuer::new();
    let client = Client { key: DpopKey::generate(Algorithm::ES256).unwrap() };
    let mut worst = Duration::ZERO;
    for round in 0..4 {
        let sub = format!("p{round}");
        let (_, claims) = token(&issuer, &client, &sub, "pay", NOW);
        let t0 = Instant::now();
        admin.add_rule(&RevocationRule::sub(&sub, NOW)).await.unwrap();
        until_revoked(&feed.rules(), &claims, Duration::from_secs(1)).await;
        worst = worst.max(t0.elapsed());
        // Spread the writes over the poll period.
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    println!("revocation by polling alone (poll 250 ms): worst {worst:?}");
    assert!(worst >= Duration::from_millis(20), "a message got through: {worst:?}");
}

/// Redis gone: once the rules are older than `max_staleness_ms`, every
/// request is refused with 503; when Redis is back, they are fresh again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_rules_fail_closed_and_recover() {
    let mut server = RedisServer::start();
    let settings = RedisStoreSettings::single(server.url());
    let feed = RedisRevocationFeed::start(settings, feed_settings()).await.unwrap();
    let issuer = Issuer::new();
    let client = Client { key: DpopKey::generate(Algorithm::ES256).unwrap() };
    let (_, claims) = token(&issuer, &client, "erin", "pay", NOW);
    assert_eq!(feed.rules().check(&claims), Ok(()));
    server.kill();
    let t0 = Instant::now();
    loop {
        match feed.rules().check(&claims) {
            Ok(()) => assert!(t0.elapsed() < Duration::from_millis(1500), "still answering after {:?}", t0.elapsed()),
            Err(RevocationError::Stale(age)) => {
                assert!(age <= Duration::from_millis(1500));
                let r: Rejection = RevocationError::Stale(age).into();
                assert_eq!(r.status(), 503);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.restart();
    let t0 = Instant::now();
    while feed.rules().check(&claims).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(5), "rules did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
