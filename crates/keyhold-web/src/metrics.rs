//! `GET /metrics`: Prometheus text exposition (format 0.0.4) for the
//! operator's scraper, and the layer that counts every request for it.
//!
//! Written by hand: the format is a few lines per metric and what we count is
//! fixed. The `metrics` + `metrics-exporter-prometheus` crates would bring a
//! process-wide recorder (global state, which we keep out of the web layer),
//! an upkeep task and their dependencies for what is this one file.
//!
//! Labels never hold anything a request carried: `route` is the route
//! template axum matched (`/people/{patient}/record`, never the path with
//! its ids), `unmatched` for a path no route holds; `method` is one of a
//! fixed few; `status` is the number. So the number of series is bounded by
//! the route table, and no person, record, id or address is ever a label.
//!
//! Off unless the operator sets a token (`WebConfig::metrics_token`); then a
//! scrape needs `Authorization: Bearer <token>`, compared in constant time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyhold_domain::{ServiceMetrics, GROUP_SIZE_BOUNDS};

use crate::error::{HashingShed, NoErrorPage, WebError};
use crate::AppState;

/// The text exposition format's content type.
const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Upper bounds (seconds) of the request-latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `method` label's values; any other method counts as `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

fn method_index(m: &Method) -> usize {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .iter()
    .position(|k| k == m)
    .unwrap_or(METHODS.len() - 1)
}

/// The bearer token a scrape must present. Kept only as its SHA-256, so the
/// comparison takes the same time whatever the length of a guess.
#[derive(Clone)]
pub struct MetricsToken {
    digest: [u8; 32],
}

/// The token given was too short or not one header-safe word.
#[derive(Debug, thiserror::Error)]
#[error(
    "the metrics token must be at least {} characters of visible ASCII, no spaces (e.g. `openssl rand -hex 32`)",
    MetricsToken::MIN_CHARS
)]
pub struct BadMetricsToken;

impl MetricsToken {
    /// Shortest token accepted: long enough that guessing it is hopeless.
    pub const MIN_CHARS: usize = 32;

    pub fn new(token: &str) -> Result<Self, BadMetricsToken> {
        if token.len() < Self::MIN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadMetricsToken);
        }
        Ok(MetricsToken {
            digest: keyhold_domain::sha256(token.as_bytes()),
        })
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or("");
        keyhold_domain::constant_time_eq(
            &keyhold_domain::sha256(presented.as_bytes()),
            &self.digest,
        )
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(redacted)")
    }
}

/// One (route, method): latency buckets (not cumulative; the last is above
/// every bound) and a count per status.
#[derive(Clone, Default)]
struct Series {
    latency: [u64; LATENCY_BOUNDS.len() + 1],
    latency_nanos: u128,
    statuses: Vec<(u16, u64)>,
}

impl Series {
    fn count(&self) -> u64 {
        self.latency.iter().sum()
    }
}

type ByMethod = [Series; METHODS.len()];

/// What the web layer counts itself; the rest comes from
/// [`keyhold_domain::Keyhold::metrics`] at each scrape.
pub(crate) struct HttpMetrics {
    /// Keyed by route template: at most one entry per route, plus `unmatched`.
    requests: Mutex<HashMap<String, ByMethod>>,
    /// Requests answered 503 because the password-hashing queue was full.
    shed: AtomicU64,
    /// Unix time the process started (or, failing `/proc`, this was built).
    started: f64,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        HttpMetrics {
            requests: Mutex::new(HashMap::new()),
            shed: AtomicU64::new(0),
            started: process_start_time().unwrap_or_else(now_unix),
        }
    }

    /// Counts one answered request. The lock is held for one map look-up and
    /// three additions.
    fn record(&self, route: &str, method: usize, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        // A panic elsewhere while holding the lock leaves only counts behind.
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(route) {
            map.insert(route.to_owned(), Default::default());
        }
        let Some(series) = map.get_mut(route).and_then(|m| m.get_mut(method)) else {
            return;
        };
        series.latency[bucket] += 1;
        series.latency_nanos += elapsed.as_nanos();
        match series.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((status, 1)),
        }
    }

    /// The whole exposition: this layer's counters, then the service's.
    fn render(&self, service: &ServiceMetrics) -> String {
        let mut routes: Vec<(String, ByMethod)> = {
            let map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Exposition::default();

        out.family(
            "keyhold_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method and status.",
        );
        for (route, methods) in &routes {
            for (m, series) in methods.iter().enumerate() {
                let mut statuses = series.statuses.clone();
                statuses.sort_unstable();
                for (status, n) in statuses {
                    let status = status.to_string();
                    out.sample(
                        "keyhold_http_requests_total",
                        &[
                            ("route", route),
                            ("method", METHODS[m]),
                            ("status", &status),
                        ],
                        n,
                    );
                }
            }
        }

        out.family(
            "keyhold_http_request_duration_seconds",
            "histogram",
            "Time from a request reaching the router to its response headers (a streamed body is not included).",
        );
        for (route, methods) in &routes {
            for (m, series) in methods.iter().enumerate() {
                if series.count() == 0 {
                    continue;
                }
                let bounds: Vec<String> = LATENCY_BOUNDS.iter().map(f64::to_string).collect();
                out.histogram(
                    "keyhold_http_request_duration_seconds",
                    &[("route", route), ("method", METHODS[m])],
                    &bounds,
                    &series.latency,
                    series.latency_nanos as f64 / 1e9,
                );
            }
        }

        let store = &service.store;
        out.counter(
            "keyhold_store_batches_committed_total",
            "Write batches (each a change with its audit entry) made durable.",
            store.batches_committed,
        );
        out.counter(
            "keyhold_store_flushes_total",
            "Flushes of the store (one per commit group).",
            store.flushes,
        );
        out.family(
            "keyhold_store_group_size",
            "histogram",
            "Batches made durable by one flush.",
        );
        let bounds: Vec<String> = GROUP_SIZE_BOUNDS.iter().map(u64::to_string).collect();
        // The store's last bucket also holds any larger group: nothing is above it.
        let mut groups = store.group_sizes.to_vec();
        groups.push(0);
        // Every batch is in exactly one group, so the sum of the group sizes
        // is the number of batches.
        out.histogram(
            "keyhold_store_group_size",
            &[],
            &bounds,
            &groups,
            store.batches_committed as f64,
        );

        out.counter(
            "keyhold_dek_cache_hits_total",
            "Data keys found in the in-memory cache.",
            service.dek_cache_hits,
        );
        out.counter(
            "keyhold_dek_cache_misses_total",
            "Data keys unwrapped from the store (not in the cache).",
            service.dek_cache_misses,
        );

        out.gauge(
            "keyhold_password_hashing_waiting",
            "Requests waiting now for a password-hashing slot.",
            service.hashes_waiting,
        );
        out.gauge(
            "keyhold_password_hashing_max_waiting",
            "Requests allowed to wait for a password-hashing slot; beyond it they are answered 503.",
            service.hashing_max_waiting,
        );
        out.gauge(
            "keyhold_password_hashing_concurrency",
            "Password hashes allowed to run at once.",
            service.hashing_concurrency,
        );
        out.counter(
            "keyhold_password_hashes_started_total",
            "Password hashes (and dummy verifications) started.",
            service.hashes_started,
        );
        out.counter(
            "keyhold_password_hashing_shed_total",
            "Requests answered 503 because the password-hashing queue was full.",
            self.shed.load(Ordering::Relaxed),
        );

        if let Some(rss) = resident_memory_bytes() {
            out.gauge(
                "keyhold_process_resident_memory_bytes",
                "Resident memory of the server process, in bytes.",
                rss,
            );
        }
        out.family(
            "keyhold_process_start_time_seconds",
            "gauge",
            "When the server process started, in seconds since the Unix epoch.",
        );
        out.sample_f64("keyhold_process_start_time_seconds", &[], self.started);
        out.family(
            "keyhold_build_info",
            "gauge",
            "Always 1; the label says which version is running.",
        );
        out.sample(
            "keyhold_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        out.text
    }
}

/// The exposition text as it is written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// One histogram's samples from non-cumulative `counts` (one per bound,
    /// then the count above every bound), written cumulatively as
    /// Prometheus wants, `+Inf` being the total.
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[String],
        counts: &[u64],
        sum: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut running = 0u64;
        for (i, n) in counts.iter().enumerate() {
            running += n;
            let le = bounds.get(i).map(String::as_str).unwrap_or("+Inf");
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, running);
        }
        self.sample_f64(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, running);
    }
}

/// The layer (outermost, so the time and status are the client's) that
/// counts every request under its route template.
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Cloning a `MatchedPath` clones an `Arc`; no allocation per request.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let method = method_index(req.method());
    let resp = next.run(req).await;
    // A catch-all (a nested router's fallback) matched nothing of ours.
    let route = matched
        .as_ref()
        .map(MatchedPath::as_str)
        .filter(|r| !r.contains("{*"))
        .unwrap_or(UNMATCHED);
    state
        .metrics
        .record(route, method, resp.status().as_u16(), started.elapsed());
    if resp.extensions().get::<HashingShed>().is_some() {
        state.metrics.shed.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

/// `GET /metrics`. Without a configured token it is not there (the same
/// 404 as any unknown path); with one, a request without it gets 401 and
/// nothing else. Reads counters only: no patient data, nothing audited.
pub(crate) async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.config.metrics_token else {
        return WebError::NotFound.into_response();
    };
    if !token.admits(&headers) {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            "401 Unauthorized\n",
        )
            .into_response();
        // For a scraper, not a person: no error page around it.
        resp.extensions_mut().insert(NoErrorPage);
        return resp;
    }
    let body = state.metrics.render(&state.core.metrics());
    (
        [(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_0_0_4))],
        body,
    )
        .into_response()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `VmRSS` from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The process's start (Linux): boot time from `/proc/stat` plus field 22 of
/// `/proc/self/stat`, in clock ticks, which the kernel reports to user space
/// at 100 per second (`USER_HZ`).
fn process_start_time() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2, the command name, may hold spaces and ')': count from the last ')'.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    // `after` starts at field 3, so field 22 is its 20th.
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot as f64 + ticks as f64 / USER_HZ)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole_and_never_printed() {
        let t = MetricsToken::new("0123456789abcdef0123456789abcdef").unwrap();
        let ask = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            t.admits(&h)
        };
        assert!(ask("Bearer 0123456789abcdef0123456789abcdef"));
        assert!(ask("bearer 0123456789abcdef0123456789abcdef"));
        assert!(!ask("Bearer 0123456789abcdef0123456789abcdeF"));
        assert!(!ask("Bearer 0123456789abcdef0123456789abcde"));
        assert!(!ask("Basic 0123456789abcdef0123456789abcdef"));
        assert!(!ask("0123456789abcdef0123456789abcdef"));
        assert!(!t.admits(&HeaderMap::new()));
        assert!(!format!("{t:?}").contains("0123"));
        assert!(MetricsToken::new("short").is_err());
        assert!(MetricsToken::new("0123456789abcdef 0123456789abcdef").is_err());
    }

    #[test]
    fn histograms_are_written_cumulatively() {
        let mut out = Exposition::default();
        out.histogram(
            "h",
            &[("a", "b\"c")],
            &["1".into(), "2".into()],
            &[3, 0, 2],
            7.5,
        );
        assert_eq!(
            out.text,
            "h_bucket{a=\"b\\\"c\",le=\"1\"} 3\nh_bucket{a=\"b\\\"c\",le=\"2\"} 3\n\
             h_bucket{a=\"b\\\"c\",le=\"+Inf\"} 5\nh_sum{a=\"b\\\"c\"} 7.5\nh_count{a=\"b\\\"c\"} 5\n"
        );
    }

    #[test]
    fn methods_outside_the_known_few_share_one_label() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(METHODS[method_index(&odd)], "other");
    }

    #[test]
    fn this_process_has_a_start_time_and_memory() {
        let started = process_start_time().unwrap();
        let now = now_unix();
        assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0);
        assert!(resident_memory_bytes().unwrap() > 0);
    }
}
