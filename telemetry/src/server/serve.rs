//! The accept loop of one listener and the life of each connection: bounded
//! connections, HTTP/1.1 or (negotiated by ALPN on TLS) HTTP/2, header and
//! idle timeouts, and on shutdown a drain that lets in-flight requests
//! finish.
//!
//! Limits per connection:
//!
//! - HTTP/1.1: hyper's `header_read_timeout`, which also closes a
//!   keep-alive connection idle for that long; 64 headers; 64 KiB buffer.
//! - HTTP/2: at most `max_concurrent_streams` requests at once; a header
//!   list of at most 64 KiB; 64 KiB of unread body per stream and 1 MiB per
//!   connection (flow control); and, as HTTP/1.1's header timeout does, a
//!   connection with no request in progress for `header_read_timeout` is
//!   closed (`GOAWAY`), so idle or silent connections cannot hold the
//!   connection slots. Reset floods are bounded by hyper's defaults.
//!
//! Shutdown: every connection is asked to finish gracefully (HTTP/1.1
//! closes after the response in progress; HTTP/2 sends `GOAWAY` and
//! completes the streams already started); whatever is still open after
//! `drain_timeout` is aborted.

use super::{Acceptor, ConnectionInfo};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

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
    /// HTTP/2 streams in flight per connection. Defaults to 100.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
        }
    }
}

/// Most header fields in one HTTP/1.1 request head.
pub const MAX_HEADERS: usize = 64;
/// Largest request head: the HTTP/1.1 read buffer and the HTTP/2 header
/// list, bytes.
pub const MAX_HEAD_BYTES: u32 = 64 * 1024;
/// HTTP/2 flow-control windows: unread request body buffered per stream and
/// per connection.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

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
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
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
        let stop = shutdown.clone();
        connections.spawn(async move {
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
            serve_connection(name, io, info, handler, limits, stop).await;
        });
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(listener = name, connections = open, "draining");
    }
    let drained =
        tokio::time::timeout(limits.drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            connections = connections.len(),
            "drain timed out; closing the remaining connections"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection until it ends: by the peer, by an error, by the
/// idle timeout (HTTP/2) or by a graceful shutdown.
async fn serve_connection<I, H>(
    name: &'static str,
    io: I,
    info: ConnectionInfo,
    handler: Arc<H>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (peer, http2) = (info.peer, info.http2);
    let info = Arc::new(info);
    let (activity, mut idle_watch) = watch::channel(Activity { in_flight: 0, since: Instant::now() });
    let activity = Arc::new(activity);
    let service = service_fn(move |req| {
        let handler = Arc::clone(&handler);
        let info = Arc::clone(&info);
        let busy = Busy::start(Arc::clone(&activity));
        async move {
            let res = handler.handle(req, &info).await;
            drop(busy);
            Ok::<_, Infallible>(res)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(MAX_HEAD_BYTES)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    // The protocol is what ALPN chose; no guessing from the first bytes.
    let builder = if http2 { builder.http2_only() } else { builder.http1_only() };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);

    // Once closing for idleness, the connection gets one more timeout to
    // finish (a peer that ignores GOAWAY is then dropped).
    let mut closing: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle(&mut idle_watch, limits.header_read_timeout), if http2 && closing.is_none() && !stopping => {
                tracing::debug!(listener = name, %peer, "idle HTTP/2 connection closed");
                closing = Some(Instant::now() + limits.header_read_timeout);
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => return,
        }
    }
}

/// Requests in progress on a connection, and since when that number last
/// changed.
#[derive(Debug, Clone, Copy)]
struct Activity {
    in_flight: usize,
    since: Instant,
}

/// One request in progress; its end (or its cancellation, e.g. an HTTP/2
/// stream reset) is recorded on drop.
struct Busy(Arc<watch::Sender<Activity>>);

impl Busy {
    fn start(activity: Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.since = Instant::now();
        });
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            a.since = Instant::now();
        });
    }
}

/// Completes once no request has been in progress for `timeout`.
async fn idle(activity: &mut watch::Receiver<Activity>, timeout: Duration) {
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight > 0 {
            if activity.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(now.since + timeout) => return,
            changed = activity.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}

/// Completes when shutdown is asked for, or when nobody can ask any more.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
