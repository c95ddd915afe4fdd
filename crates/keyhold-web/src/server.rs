//! The accept loop. `axum::serve` gives hyper no timer, so hyper's
//! header-read timeout never fires, and it accepts without limit: a client
//! that opens connections and drips header bytes (slow-loris) would hold
//! them, and the memory behind them, for ever. Here every connection holds
//! a permit from a fixed pool, headers must arrive within
//! [`ServerLimits::header_read_timeout`], and shutdown waits (bounded) for
//! the requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer;

/// How much any one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From a connection's first byte (or the end of its last request) to
    /// the end of the next request's headers.
    pub header_read_timeout: Duration,
    /// From the request's headers to the response's: a handler, and the
    /// body it reads, get no longer (408). Downloads stream after this.
    pub request_timeout: Duration,
    /// The same for an upload, whose body may be the whole upload limit.
    pub upload_timeout: Duration,
    /// Open connections at once; the next waits in the kernel's backlog.
    pub max_connections: usize,
    /// Requests in flight at once on one HTTP/2 connection (advertised in
    /// its SETTINGS), so the connection cap bounds requests too.
    pub max_streams_per_connection: u32,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(600),
            max_connections: 1024,
            max_streams_per_connection: 32,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = Extension(ConnectInfo::<SocketAddr>(addr)).layer(router.clone());
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams_per_connection.max(1))
            // Pings find dead peers that hold streams open.
            .keep_alive_interval(limits.header_read_timeout)
            .keep_alive_timeout(limits.header_read_timeout);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away or times out is not the server's error.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still running after the grace period were dropped");
    }
    Ok(())
}
