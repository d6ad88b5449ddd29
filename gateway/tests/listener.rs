//! The gateway's listeners, over real TCP on loopback: a peer that never
//! finishes its request head (slowloris) or sits idle on a keep-alive
//! connection is cut off after `server.header_read_timeout`, and no more
//! than `server.max_connections` connections are served at once (the rest
//! wait, and are served when a slot frees).

// Test code panics on failure by design.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};
use support::{Gateway, GatewayOptions, Issuer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const AUDIENCE: &str = "https://api.test";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

async fn gateway(server: &str) -> Gateway {
    let issuer = Issuer::new().unwrap();
    let opts = GatewayOptions { server: server.into(), ..GatewayOptions::new(AUDIENCE, &["127.0.0.1/32"]) };
    Gateway::start(&issuer, &opts).await.unwrap()
}

/// Reads until the peer closes (EOF or reset) or `limit` passes; how long
/// that took, or `None` if the connection was still open.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closing = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closing).await.ok().map(|()| started.elapsed())
}

/// The first response's status line on `tcp`, if one arrives within `limit`.
async fn status_line(tcp: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let reading = async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, reading).await.ok()?;
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().filter(|l| !l.is_empty()).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_finishes_is_cut_off_after_the_timeout() {
    let gw = gateway("header_read_timeout = 1\n").await;
    for (name, addr) in [("authz", gw.addr), ("admin", gw.admin)] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n").await.unwrap();
        // Drip a header byte every 200 ms, never ending the head.
        let (mut read, mut write) = tcp.into_split();
        let drip = tokio::spawn(async move {
            write.write_all(b"X-Slow: ").await.ok();
            while write.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let cut = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408, if any, then the close
                }
            }
        })
        .await;
        drip.abort();
        let took = started.elapsed();
        assert!(cut.is_ok(), "{name}: a slowloris peer was still connected after 10 s");
        assert!(took >= Duration::from_millis(800), "{name}: cut off after {took:?}, before the timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let gw = gateway("header_read_timeout = 1\n").await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(HEALTHZ).await.unwrap();
    assert_eq!(status_line(&mut tcp, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200 OK"));
    let took = closed_within(&mut tcp, Duration::from_secs(10)).await;
    let took = took.unwrap_or_else(|| panic!("an idle keep-alive connection was still open after 10 s"));
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let gw = gateway("max_connections = 2\nheader_read_timeout = 30\n").await;
    // Two kept-alive connections, each served once: both slots taken.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(HEALTHZ).await.unwrap();
        assert_eq!(status_line(&mut tcp, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200 OK"));
        held.push(tcp);
    }
    // A third connects (the kernel's backlog takes it) but is not served.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    assert_eq!(status_line(&mut third, Duration::from_millis(800)).await, None, "a third connection was served");
    // The admin listener has its own slots: /readyz still answers.
    let ready = support::send(gw.admin, "GET", "/healthz", &[]).await.unwrap();
    assert_eq!(ready.status, 200);
    // One held connection goes away: the third is served.
    drop(held.remove(0));
    assert_eq!(status_line(&mut third, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200 OK"));
}
