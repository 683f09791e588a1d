//! The HTTP accept loop, with the timeouts `axum::serve` does not expose.
//!
//! A client that opens connections and sends request headers a byte at a
//! time (slowloris) would otherwise hold each connection, and its file
//! descriptor, for as long as it likes: a half-sent request stayed open for
//! over a minute. Here every connection is served by hyper-util's
//! auto builder with HTTP/1's `header_read_timeout`: a connection waiting
//! for a request's headers, a fresh one or one kept alive after a response,
//! is closed once the timeout passes without a complete head (hyper starts
//! the timer whenever it waits for a request, so this also bounds idle
//! keep-alive connections). Everything else matches `axum::serve`:
//! `TCP_NODELAY` on every accepted socket, `ConnectInfo<SocketAddr>` for
//! the handlers, WebSocket upgrades, and a graceful shutdown that stops
//! accepting, lets requests in progress finish and then returns.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a graceful shutdown waits for requests in progress.
const DRAIN_PATIENCE: Duration = Duration::from_secs(8);

/// Serves `app` on `listener` until `shutdown`, then drains connections.
pub async fn serve(listener: TcpListener, app: Router, header_read_timeout: Duration, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(true);
    // Each connection task holds a clone; when all are dropped, every
    // connection has finished.
    let (alive, mut all_done) = mpsc::channel::<Infallible>(1);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::error!("accept failed: {e}");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        // Nagle off: chat frames are small and written back to back, and
        // with Nagle each would wait ~40 ms for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let service = app.clone().map_request(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(peer, result),
                _ = shutdown.cancelled() => {
                    // Finish the request in progress (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(DRAIN_PATIENCE, conn.as_mut()).await {
                        Ok(result) => log_connection_end(peer, result),
                        Err(_) => tracing::debug!(%peer, "connection still busy at shutdown; closed"),
                    }
                }
            }
        });
    }
    drop(alive);
    // `None` once every connection task has dropped its sender.
    let _ = all_done.recv().await;
}

/// Errors from one client's connection, not from the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

fn log_connection_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        // Timeouts and clients that go away are routine: debug level.
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
