//! The accept loop of one listener: bounded connections, header timeout,
//! and on shutdown a drain that lets in-flight requests finish.

use super::{Acceptor, ConnectionInfo};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Answers requests of one listener.
pub trait Handler: Send + Sync + 'static {
    /// One request to one response; errors are responses too.
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ConnectionInfo,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Connection limits of one listener. The defaults are the issuer's and the
/// gateway's defaults for their public listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog
    /// (a slot is taken before `accept`). Defaults to 1024.
    pub max_connections: usize,
    /// Time to receive a request head, counted from the moment the
    /// connection is ready for one (so an idle keep-alive connection is
    /// closed after it too). Defaults to 5 s.
    pub header_read_timeout: Duration,
    /// Time to set the connection up (the TLS handshake). Defaults to 5 s.
    pub handshake_timeout: Duration,
    /// At shutdown, how long open connections get to finish. Defaults to 10 s.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Most header fields in one request head.
pub const MAX_HEADERS: usize = 64;
/// Largest request head (and read buffer), bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `listener` until `shutdown` turns true (or its sender is dropped),
/// then stops accepting and waits up to `drain_timeout` for open connections.
/// `name` labels its log lines (`public`, `admin`).
pub async fn serve<A: Acceptor, H: Handler>(
    name: &'static str,
    listener: TcpListener,
    acceptor: A,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // Take a connection slot before accepting, so that at the limit new
        // connections wait in the kernel's backlog instead of in memory.
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = Arc::clone(&handler);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let (io, info) = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp, peer)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, %peer, error = %e, "connection setup failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = name, %peer, "connection setup timed out");
                    return;
                }
            };
            let info = Arc::new(info);
            let service = service_fn(move |req| {
                let handler = Arc::clone(&handler);
                let info = Arc::clone(&info);
                async move { Ok::<_, Infallible>(handler.handle(req, &info).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_headers(MAX_HEADERS)
                .max_buf_size(MAX_HEAD_BYTES);
            if let Err(e) = watcher.watch(builder.serve_connection(TokioIo::new(io), service)).await {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(listener = name, connections = open, "draining");
    }
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, "drain timed out; closing the remaining connections");
    }
}

/// Completes when shutdown is asked for, or when nobody can ask any more.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
