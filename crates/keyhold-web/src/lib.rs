//! Keyhold's web layer: axum routes, extractors and tera pages over the domain.
//!
//! Architecture invariant: handlers never touch the store or keys; they parse
//! input into domain types, call a `Keyhold` service with the signed-in
//! principal, and render what it returns.

mod chart;
mod cookies;
mod csrf;
mod error;
mod extract;
mod headers;
mod metrics;
mod pages;
mod route_table;
mod routes;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use keyhold_domain::Keyhold;
use tokio::net::TcpListener;

pub use error::WebError;
pub use metrics::{BadMetricsToken, MetricsToken};
pub use server::ServerLimits;

/// Settings that only the web layer cares about.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Set behind TLS: cookies get `Secure` and the `__Host-` prefix, and HSTS is sent.
    pub secure_cookies: bool,
    /// Sign-in with NHS login, when configured.
    pub nhs_login: Option<Arc<keyhold_oidc::RelyingParty>>,
    /// Timeouts and the connection cap.
    pub limits: ServerLimits,
    /// `GET /metrics` answers only with this bearer token; `None`: 404.
    pub metrics_token: Option<MetricsToken>,
}

/// Shared by every handler through axum's `State`.
#[derive(Clone)]
pub struct AppState {
    pub(crate) core: Arc<Keyhold>,
    pub(crate) pages: Arc<pages::Pages>,
    pub(crate) csrf: Arc<keyhold_domain::MacKey>,
    pub(crate) config: Arc<WebConfig>,
    /// Per-request counters for `/metrics`.
    pub(crate) metrics: Arc<metrics::HttpMetrics>,
}

impl AppState {
    pub fn new(core: Arc<Keyhold>, config: WebConfig) -> Result<Self, WebError> {
        let csrf = Arc::new(core.mac_key("csrf"));
        Ok(AppState {
            core,
            pages: Arc::new(pages::Pages::load()?),
            csrf,
            config: Arc::new(config),
            metrics: Arc::new(metrics::HttpMetrics::new()),
        })
    }
}

/// The whole application as a router, apart from any socket (tests drive it
/// with `oneshot`).
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// The path of every route the server answers (with `{param}` placeholders),
/// taken from the router itself; the security sweep probes each of them.
pub fn route_paths(state: &AppState) -> Vec<String> {
    routes::table(state).paths().to_vec()
}

/// A bound, not yet running server: `build` reports the real port (bind to
/// port 0 in tests).
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
}

impl Application {
    pub async fn build(state: AppState, bind: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        Ok(Application {
            listener,
            limits: state.config.limits,
            router: router(state),
        })
    }

    /// Over a listener bound already (the caller needed its address first).
    pub fn from_std(state: AppState, listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Application {
            listener: TcpListener::from_std(listener)?,
            limits: state.config.limits,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        server::serve(self.listener, self.router, self.limits, shutdown).await
    }
}
