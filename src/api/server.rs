//! The accept loop: hyper's HTTP/1 server with a header read timeout (axum::serve has none, so a
//! slowloris client could hold a connection and its task forever), and graceful shutdown with a
//! deadline.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// in-flight requests, at most `drain`. Connections that do not deliver a request's headers
/// within `header_read_timeout` (including idle keep-alive connections) are closed.
pub async fn run<F>(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    drain: Duration,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let service = router.map_request(|r: axum::http::Request<Incoming>| r.map(Body::new));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (what axum::serve does).
                tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // No upgrades: the API has no websockets.
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    // A client trickling a 40 MiB body may hold its request for the whole body timeout; the
    // platform kills the process after its own timeout. Past `drain`, stop waiting: the caller
    // flushes next, and every acknowledged write is already in the WAL. Connections still open
    // end when the runtime does.
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_secs = drain.as_secs_f64(),
            "requests still in flight after the shutdown drain deadline; not waiting for them"
        );
    }
    Ok(())
}
