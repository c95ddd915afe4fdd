//! A router that remembers the paths it was built with.
//!
//! Axum cannot list a router's routes, and the security sweep must probe
//! every route the server answers, not a list someone remembered to update.
//! Building the one router through [`Routes`] keeps the two the same by
//! construction: a route added here is probed by the next test run.

use axum::routing::MethodRouter;
use axum::Router;

use crate::AppState;

/// A [`Router`] and the path of every route in it (nesting applied).
#[must_use]
pub(crate) struct Routes {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    pub(crate) fn route(mut self, path: &str, method_router: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, method_router);
        self.paths.push(path.to_owned());
        self
    }

    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Mounts `inner` under `prefix`; its "/" becomes the prefix itself, as
    /// axum routes it.
    pub(crate) fn nest(mut self, prefix: &str, inner: Routes) -> Self {
        self.router = self.router.nest(prefix, inner.router);
        self.paths.extend(inner.paths.into_iter().map(|p| {
            if p == "/" {
                prefix.to_owned()
            } else {
                format!("{prefix}{p}")
            }
        }));
        self
    }

    /// Applies `f` (a layer, a fallback) to the routes so far; paths stay.
    pub(crate) fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub(crate) fn into_router(self) -> Router<AppState> {
        self.router
    }

    pub(crate) fn paths(&self) -> &[String] {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[test]
    fn nesting_and_merging_keep_every_path() {
        let inner = Routes::new()
            .route("/", get(|| async {}))
            .route("/a/{id}", get(|| async {}));
        let other = Routes::new().route("/b", get(|| async {}));
        let all = Routes::new()
            .route("/", get(|| async {}))
            .nest("/x", inner)
            .merge(other);
        assert_eq!(all.paths(), ["/", "/x", "/x/a/{id}", "/b"]);
    }
}
