//! `KmsSigner` against a real KMS API: moto's server (`moto[server]`),
//! started on a free loopback port and killed on drop. Tokens signed through
//! KMS for each key type are checked by the real verifier; a KMS outage
//! (a proxy in front of moto stopped and restarted) gives fast 503s and a
//! not-ready issuer, and the issuer recovers without a restart.

#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::kms::*;
use common::*;
use ekey_issuer::{KmsSettings, KmsSigner, ServerHandle, Signer};
use ekey_verifier::client::DpopKey;
use ekey_verifier::{
    dangerous, Algorithm, HttpJwks, HttpJwksSettings, MemoryStore, Verifier, VerifierSettings, VerifyingKey,
};
use http::Method;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

async fn readyz(server: &ServerHandle) -> Answer {
    send(Method::GET, &format!("http://{}/readyz", server.admin_addr()), &[], None).await
}

/// RSASSA-PSS with SHA-256 and any salt length, by OpenSSL.
fn pss_verifies(jwk: &ekey_verifier::PublicJwk, msg: &[u8], sig: &[u8]) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use openssl::bn::BigNum;
    let j = jwk.to_json();
    let n = BigNum::from_slice(&URL_SAFE_NO_PAD.decode(j["n"].as_str().unwrap()).unwrap()).unwrap();
    let e = BigNum::from_slice(&URL_SAFE_NO_PAD.decode(j["e"].as_str().unwrap()).unwrap()).unwrap();
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::from_public_components(n, e).unwrap()).unwrap();
    let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    v.set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS).unwrap();
    v.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256()).unwrap();
    v.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(-2)).unwrap();
    v.verify_oneshot(sig, msg).unwrap_or(false)
}

#[tokio::test]
async fn tokens_signed_through_kms_verify_for_each_key_type() {
    bounded(async {
        let moto = Moto::start();
        let kms = client(&moto.endpoint, KmsSettings::default());
        let cases = [
            (KeySpec::EccNistP256, None, Algorithm::ES256),
            (KeySpec::EccNistP384, None, Algorithm::ES384),
            (KeySpec::Rsa2048, None, Algorithm::PS256),
            (KeySpec::Rsa2048, Some(Algorithm::RS256), Algorithm::RS256),
        ];
        for (i, (spec, asked, alg)) in cases.into_iter().enumerate() {
            let alias = create_key(&moto.endpoint, spec.clone(), &format!("ekey-{i}")).await;
            let signer = Arc::new(KmsSigner::connect(kms.clone(), &alias, asked).await.unwrap());
            assert_eq!(signer.algorithm(), alg, "{spec:?}");
            assert_eq!(signer.kid(), signer.public_jwk().thumbprint());
            // The alias is resolved once (real KMS answers the ARN, moto the key id).
            assert!(!signer.key_arn().contains("alias/") && !signer.key_arn().is_empty(), "{}", signer.key_arn());

            let sig = signer.sign(b"header.payload").await.unwrap();
            if alg == Algorithm::PS256 {
                // moto 5 signs RSASSA_PSS_SHA_256 with the longest salt, where
                // real KMS (and RFC 7518 §3.5) use a 32-byte one, so JOSE
                // verifiers refuse moto's PS256 signatures. Check what can be
                // checked here: a valid RSASSA-PSS/SHA-256 signature by this key.
                assert!(pss_verifies(signer.public_jwk(), b"header.payload", &sig));
                assert!(!pss_verifies(signer.public_jwk(), b"header.payloaX", &sig));
                continue;
            }
            // The raw signature verifies with the published key (DER → r‖s for ECDSA).
            let vk = VerifyingKey::new(signer.public_jwk(), alg).unwrap();
            assert!(vk.verify(b"header.payload", &sig), "{alg}");
            assert!(!vk.verify(b"header.payloaX", &sig), "{alg}");

            // A whole token through the issuer, accepted by the verifier
            // (RS256 is not in its default allow-list: allow it here).
            let audience = "https://api.example";
            let server = issuer_with_signer(signer.clone(), audience).await;
            let key = DpopKey::generate(Algorithm::ES256).unwrap();
            let res = worker_token(&server, &key).await;
            assert_eq!(res.status, 200, "{alg}: {:?}", res.body);
            let token = res.json()["access_token"].as_str().unwrap().to_owned();
            let (header, _) = dangerous::decode_unverified(&token).unwrap();
            assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some(alg.as_str()), Some(signer.kid())));
            let mut settings = VerifierSettings::new(&server.urls().issuer, audience);
            settings.token.algorithms.push(Algorithm::RS256);
            let keys = HttpJwks::new(HttpJwksSettings::new(&server.urls().jwks_uri)).unwrap();
            let verifier = Verifier::new(settings, Arc::new(keys), Arc::new(MemoryStore::default()));
            let url = format!("{audience}/payments/7");
            let mut headers = http::HeaderMap::new();
            headers.insert("authorization", format!("DPoP {token}").parse().unwrap());
            headers.insert("dpop", key.proof("POST", &url, Some(&token), None, now()).unwrap().parse().unwrap());
            let cap = verifier.verify_http(&Method::POST, &url, &headers, None).await.unwrap();
            assert_eq!((cap.sub.as_str(), cap.action.as_str()), ("worker", "POST:/payments/7"));
            assert_eq!(readyz(&server).await.status, 200);
            server.shutdown().await;
        }

        // Keys that cannot sign JOSE tokens are refused at start, by name.
        let raw = admin_client(&moto.endpoint);
        let enc = raw.create_key().key_usage(KeyUsageType::EncryptDecrypt).send().await.unwrap();
        let enc_id = enc.key_metadata().unwrap().key_id().to_owned();
        let err = KmsSigner::connect(kms.clone(), &enc_id, None).await.unwrap_err().to_string();
        assert!(err.contains("SIGN_VERIFY"), "{err}");
        let p256 = create_key(&moto.endpoint, KeySpec::EccNistP256, "ekey-mismatch").await;
        let err = KmsSigner::connect(kms.clone(), &p256, Some(Algorithm::PS256)).await.unwrap_err().to_string();
        assert!(err.contains("cannot sign PS256"), "{err}");
        let err = KmsSigner::connect(kms.clone(), "alias/no-such-key", None).await.unwrap_err().to_string();
        assert!(err.contains("GetPublicKey"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn kms_outage_gives_fast_503s_and_not_ready_then_recovers_without_restart() {
    bounded(async {
        let moto = Moto::start();
        let mut proxy = Proxy::start(&moto.endpoint).await;
        let settings = outage_settings(2, 3);
        let alias = create_key(&moto.endpoint, KeySpec::EccNistP256, "ekey-outage").await;
        let signer =
            Arc::new(KmsSigner::connect(client(&proxy.endpoint(), settings.clone()), &alias, None).await.unwrap());
        let api = api_listener().await;
        let server = issuer_with_signer(signer.clone(), &api.origin).await;
        let api = api.serve(&server.urls().issuer, &server.urls().jwks_uri);
        let key = DpopKey::generate(Algorithm::ES256).unwrap();

        // Exactly one KMS Sign per token, and none for readiness.
        let before = proxy.sign_requests.load(Ordering::SeqCst);
        for _ in 0..5 {
            let res = worker_token(&server, &key).await;
            assert_eq!(res.status, 200, "{:?}", res.body);
        }
        assert_eq!(readyz(&server).await.status, 200);
        assert_eq!(proxy.sign_requests.load(Ordering::SeqCst) - before, 5);
        // Concurrent signing through the SDK client: all verify.
        let vk = VerifyingKey::new(signer.public_jwk(), Algorithm::ES256).unwrap();
        let mut calls = JoinSet::new();
        for i in 0..32 {
            let signer = signer.clone();
            calls.spawn(async move {
                let m = format!("header.payload{i}");
                (signer.sign(m.as_bytes()).await.unwrap(), m)
            });
        }
        while let Some(done) = calls.join_next().await {
            let (sig, m) = done.unwrap();
            assert!(vk.verify(m.as_bytes(), &sig));
        }

        proxy.stop().await;
        // Every request answers 503 temporarily_unavailable with Retry-After
        // within the signing timeout; no token is issued some other way.
        let mut times = Vec::new();
        for _ in 0..6 {
            let started = Instant::now();
            let res = worker_token(&server, &key).await;
            times.push(started.elapsed());
            assert_eq!(res.status, 503, "{:?}", res.body);
            assert_eq!(res.error(), "temporarily_unavailable");
            let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
            assert!(retry >= 1);
            assert!(res.json().get("access_token").is_none());
        }
        assert!(times.iter().all(|t| *t < settings.timeout + Duration::from_millis(500)), "{times:?}");
        // After breaker_failures failures the circuit is open: no call, fast answer.
        assert!(times[3..].iter().all(|t| *t < Duration::from_millis(250)), "circuit open: {times:?}");
        let ready = readyz(&server).await;
        assert_eq!(ready.status, 503);
        assert!(String::from_utf8_lossy(&ready.body).contains("KMS circuit open"), "{:?}", ready.body);
        // While open, requests do not reach KMS at all.
        proxy.restart().await;
        let before = proxy.sign_requests.load(Ordering::SeqCst);
        assert_eq!(worker_token(&server, &key).await.status, 503);
        assert_eq!(proxy.sign_requests.load(Ordering::SeqCst), before, "no Sign while the circuit is open");
        proxy.stop().await;

        // KMS back on the same address: after the cooldown one probe goes
        // through and the same issuer signs again.
        proxy.restart().await;
        tokio::time::sleep(settings.breaker_cooldown + Duration::from_millis(100)).await;
        let res = worker_token(&server, &key).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let token = res.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(api.call(&key, &token, Method::POST, "/payments/7").await.status, 200);
        assert_eq!(readyz(&server).await.status, 200);

        // Down again, then readiness alone (a GetPublicKey probe, no
        // signing) notices the recovery.
        proxy.stop().await;
        for _ in 0..3 {
            assert_eq!(worker_token(&server, &key).await.status, 503);
        }
        assert_eq!(readyz(&server).await.status, 503);
        proxy.restart().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while readyz(&server).await.status != 200 {
            assert!(Instant::now() < deadline, "readiness did not recover");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(worker_token(&server, &key).await.status, 200);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn keys_command_reads_kms_keys_through_the_standard_credential_chain() {
    bounded(async {
        let moto = Moto::start();
        let active = create_key(&moto.endpoint, KeySpec::EccNistP256, "ekey-active").await;
        let next = create_key(&moto.endpoint, KeySpec::EccNistP384, "ekey-next").await;
        let old = ekey_verifier::KeyPair::generate(Algorithm::ES256).unwrap();
        let dir = TempDir::new("kms-keys");
        dir.write("old.pem", old.to_pem());
        let hour_ago = now() - 3600;
        let two_days_ago = now() - 2 * 86_400;
        let fmt = |t: i64| {
            aws_sdk_kms::primitives::DateTime::from_secs(t)
                .fmt(aws_sdk_kms::primitives::DateTimeFormat::DateTime)
                .unwrap()
        };
        let config = format!(
            r#"
            [signing_key]
            kms_key_id = "{active}"
            published_at = "{}"
            [signing_key.kms]
            endpoint = "{}"
            region = "us-east-1"
            [[signing_key.next]]
            kms_key_id = "{next}"
            published_at = "{}"
            [[signing_key.previous]]
            file = "old.pem"
            retired_at = "{}"
            "#,
            fmt(two_days_ago),
            moto.endpoint,
            fmt(hour_ago),
            fmt(hour_ago)
        );
        let path = dir.write("issuer.toml", config.as_bytes());
        let run = |extra: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_ekey-issuer"))
                .arg("keys")
                .arg("--config")
                .arg(&path)
                .args(extra)
                // The standard chain: credentials from the environment.
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env_remove("AWS_PROFILE")
                .env("AWS_CONFIG_FILE", dir.0.join("none"))
                .env("AWS_SHARED_CREDENTIALS_FILE", dir.0.join("none"))
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap()
        };
        let out = run(&[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines[0].starts_with("active ") && lines[0].contains("ES256"), "{stdout}");
        assert!(
            lines[1].starts_with("next ") && lines[1].contains("ES384") && lines[1].contains("may become active now"),
            "{stdout}"
        );
        assert!(lines[2].starts_with("previous ") && lines[2].contains(old.thumbprint()), "{stdout}");
        assert!(lines[2].contains("keep published until"), "{stdout}");

        let out = run(&["--jwks"]);
        assert!(out.status.success());
        let jwks = ekey_verifier::Jwks::from_json(&out.stdout).unwrap();
        assert_eq!(jwks.keys().len(), 3);
        assert!(jwks.get(old.thumbprint()).is_some());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("\"d\""));

        // Making the next key active too early is refused, with the time it may sign.
        let early = config.replace(&fmt(two_days_ago), &fmt(now() - 10));
        assert_ne!(early, config);
        let path2 = dir.write("early.toml", early.as_bytes());
        let out = Command::new(env!("CARGO_BIN_EXE_ekey-issuer"))
            .args(["keys", "--config"])
            .arg(&path2)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("signing_key.published_at") && stderr.contains("may not sign before"), "{stderr}");
    })
    .await;
}
