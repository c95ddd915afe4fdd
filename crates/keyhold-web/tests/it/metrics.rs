//! `GET /metrics`: not there without a configured token, 401 without the
//! right one; what it exposes parses as Prometheus text format 0.0.4, names
//! routes by their template and never by a path (no ids, no addresses),
//! writes histograms cumulatively, and its counters move with what happens.

use std::collections::{BTreeMap, HashSet};

use keyhold_domain::trees::AUDIT;
use keyhold_domain::{Settings, GROUP_SIZE_BOUNDS};
use keyhold_web::{route_paths, AppState, MetricsToken, WebConfig};
use reqwest::StatusCode;

use crate::helpers::{
    add_entry, bare_client, browser, csrf_token, fast, get, header, post_form, principal_of,
    signed_in, spawn_app, spawn_with, TestApp,
};

const TOKEN: &str = "scrape-0123456789abcdef0123456789abcdef";

fn with_token() -> WebConfig {
    WebConfig {
        metrics_token: Some(MetricsToken::new(TOKEN).unwrap()),
        ..Default::default()
    }
}

async fn app_with(settings: Settings) -> TestApp {
    spawn_with(settings, with_token()).await
}

/// One sample line: `name{label="value",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Reads the exposition as Prometheus would, failing on any line it would
/// refuse: every line a `# HELP`, a `# TYPE` (once per family, before its
/// samples) or a sample of a declared family with well-formed labels and a
/// number; the text ends with a newline.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "no final newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name, true), "HELP of a bad name: {line}");
            assert!(!help.is_empty(), "empty HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(is_name(name, true), "TYPE of a bad name: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "second TYPE: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line: {line:?}"
        );
        let name_end = line.find(['{', ' ']).expect(line);
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name: {line}");
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut s = inner;
            loop {
                let eq = s.find('=').expect(line);
                let key = &s[..eq];
                assert!(is_name(key, false), "bad label name {key:?}: {line}");
                s = s[eq + 1..].strip_prefix('"').expect(line);
                let mut value = String::new();
                let mut chars = s.char_indices();
                let end = loop {
                    let (i, c) = chars.next().expect(line);
                    match c {
                        '"' => break i,
                        '\\' => match chars.next().expect(line).1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("bad escape \\{c}: {line}"),
                        },
                        c => value.push(c),
                    }
                };
                assert!(
                    labels.insert(key.to_string(), value).is_none(),
                    "label twice: {line}"
                );
                s = &s[end + 1..];
                if let Some(more) = s.strip_prefix(',') {
                    s = more;
                    continue;
                }
                rest = s.strip_prefix('}').expect(line);
                break;
            }
        }
        let value = rest.strip_prefix(' ').expect(line);
        assert!(!value.contains(' '), "timestamps are not sent: {line}");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
        };
        let family = types
            .iter()
            .find(|(f, kind)| {
                name == f.as_str()
                    || (kind.as_str() == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(f.as_str())))
            })
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        if family.1 == "histogram" && name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket without le: {line}");
        }
        samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .map(|s| s.value)
}

/// A histogram's series: its family and labels (but `le`) → (le, count) per bucket.
type Buckets = BTreeMap<(String, Vec<(String, String)>), Vec<(f64, f64)>>;

/// Every histogram in `samples`: its buckets in order of `le`, never
/// decreasing (cumulative), ending at `+Inf`, which equals `_count`.
/// Returns how many histograms it checked.
fn check_histograms(samples: &[Sample]) -> usize {
    let mut series = Buckets::new();
    for s in samples {
        let Some(family) = s.name.strip_suffix("_bucket") else {
            continue;
        };
        let le: f64 = match s.label("le") {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        };
        let rest = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series
            .entry((family.to_string(), rest))
            .or_default()
            .push((le, s.value));
    }
    for ((family, labels), buckets) in &series {
        let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
        assert!(
            les.windows(2).all(|w| w[0] < w[1]),
            "{family} {labels:?}: le out of order"
        );
        assert_eq!(les.last(), Some(&f64::INFINITY), "{family}: no +Inf");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family} {labels:?}: not cumulative {buckets:?}"
        );
        let label_refs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let count = value(samples, &format!("{family}_count"), &label_refs)
            .unwrap_or_else(|| panic!("{family} {labels:?}: no _count"));
        assert_eq!(buckets.last().unwrap().1, count, "{family} {labels:?}");
        assert!(value(samples, &format!("{family}_sum"), &label_refs).is_some());
    }
    series.len()
}

async fn scrape(app: &TestApp) -> (String, Vec<Sample>) {
    let resp = bare_client()
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn without_a_token_configured_metrics_is_an_unknown_page() {
    let app = spawn_app().await;
    let client = browser();
    let (status, unknown) = get(&app, &client, "/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for auth in [None, Some(TOKEN)] {
        let mut req = client.get(app.url("/metrics"));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(header(&resp, "www-authenticate").is_none());
        // The same page as any path no route holds: nothing says it exists.
        assert_eq!(resp.text().await.unwrap(), unknown);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_scrape_needs_the_bearer_token_and_is_not_audited() {
    let app = app_with(fast()).await;
    let client = bare_client();
    let wrong = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    for auth in [
        None,
        Some(format!("Bearer {wrong}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
    ] {
        let mut req = client.get(app.url("/metrics"));
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            header(&resp, "www-authenticate").as_deref(),
            Some("Bearer"),
            "{auth:?}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        // For a program: no error page, no site around it.
        let ct = header(&resp, "content-type").unwrap_or_default();
        assert!(!ct.starts_with("text/html"), "{auth:?}: {ct}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("<html"), "{auth:?}: {body}");
        assert!(!body.contains("keyhold_"), "{auth:?}: {body}");
    }

    let audited = app.rows(AUDIT);
    let (text, samples) = scrape(&app).await;
    assert!(!text.contains("<html"));
    assert!(value(&samples, "keyhold_build_info", &[]).is_some());
    assert!(value(&samples, "keyhold_process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(value(&samples, "keyhold_process_start_time_seconds", &[]).unwrap() > 1.6e9);
    assert_eq!(app.rows(AUDIT), audited, "a scrape wrote to the audit log");
    app.stop().await;
}

#[tokio::test]
async fn requests_are_counted_under_their_route_template_never_their_path() {
    let app = app_with(fast()).await;
    let email = "ann.metrics@example.test";
    let ann = signed_in(&app, email).await;
    let entry = add_entry(&app, &ann, "Peanut allergy").await;
    let patient = principal_of(&app, email)
        .await
        .own_patient
        .unwrap()
        .to_string();
    let anyone = browser();
    for _ in 0..2 {
        assert_eq!(get(&app, &anyone, "/healthz").await.0, StatusCode::OK);
    }
    for path in [
        format!("/record/entries/{entry}"),
        format!("/people/{patient}/record"),
        format!("/people/{patient}/record/entries/{entry}"),
        format!("/fhir/R4/Patient/{patient}"),
        // No route holds these; the FHIR one falls to its router's fallback.
        format!("/no-such-page/{patient}"),
        format!("/fhir/R4/Observation/{entry}/{patient}/x"),
    ] {
        let status = get(&app, &ann, &path).await.0;
        assert!(status.as_u16() < 500, "{path}: {status}");
    }

    let (text, samples) = scrape(&app).await;
    // Nothing a request carried: no ids, no address, not even the domain.
    for secret in [patient.as_str(), entry.as_str(), email, "example.test"] {
        assert!(!text.contains(secret), "{secret} is in the metrics");
    }
    let healthz = value(
        &samples,
        "keyhold_http_requests_total",
        &[("route", "/healthz"), ("method", "GET"), ("status", "200")],
    )
    .unwrap();
    assert!(healthz >= 2.0, "/healthz counted {healthz}");
    for route in [
        "/record/entries/{id}",
        "/people/{patient}/record",
        "/people/{patient}/record/entries/{id}",
        "/fhir/R4/Patient/{id}",
        "unmatched",
    ] {
        assert!(
            value(&samples, "keyhold_http_requests_total", &[("route", route)]).is_some(),
            "no requests counted for {route}:\n{text}"
        );
    }
    let unmatched = value(
        &samples,
        "keyhold_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
    )
    .unwrap();
    assert!(unmatched >= 2.0, "{unmatched}");
    // Every route label is a template of the route table, so the labels
    // are as few as the routes.
    let state = AppState::new(app.core.clone(), WebConfig::default()).unwrap();
    let templates: HashSet<String> = route_paths(&state).into_iter().collect();
    for s in samples
        .iter()
        .filter(|s| s.name.starts_with("keyhold_http_"))
    {
        let route = s.label("route");
        assert!(
            route == "unmatched" || templates.contains(route),
            "route label {route:?} is not a template"
        );
        assert!(
            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"]
                .contains(&s.label("method")),
            "{s:?}"
        );
    }
    assert!(check_histograms(&samples) >= 5);
    // The latency of /healthz: two requests, in some bucket.
    assert_eq!(
        value(
            &samples,
            "keyhold_http_request_duration_seconds_count",
            &[("route", "/healthz"), ("method", "GET")],
        ),
        Some(healthz)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_group_size_histogram_is_the_stores_made_cumulative() {
    let app = app_with(fast()).await;
    signed_in(&app, "ann@example.test").await;
    // Batches queued at once, so that flushes may carry more than one.
    let tree = keyhold_storage::TreeName::new("metrics_test");
    let tickets: Vec<_> = (0u32..64)
        .map(|i| {
            let mut batch = keyhold_storage::Batch::new();
            batch.put(tree, i.to_be_bytes().to_vec(), b"x".to_vec());
            app.core.store().submit(batch)
        })
        .collect();
    for t in tickets {
        t.await.unwrap();
    }
    let (_, samples) = scrape(&app).await;
    let stats = app.core.store().stats();
    let bucket = |le: &str| {
        value(&samples, "keyhold_store_group_size_bucket", &[("le", le)])
            .unwrap_or_else(|| panic!("no bucket le={le}"))
    };
    let mut running = 0;
    for (i, bound) in GROUP_SIZE_BOUNDS.iter().enumerate() {
        running += stats.group_sizes[i];
        assert_eq!(bucket(&bound.to_string()), running as f64, "le={bound}");
    }
    let count = value(&samples, "keyhold_store_group_size_count", &[]).unwrap();
    assert!(count > 0.0);
    assert_eq!(bucket("+Inf"), count);
    assert_eq!(count, stats.flushes as f64);
    assert_eq!(
        value(&samples, "keyhold_store_flushes_total", &[]),
        Some(stats.flushes as f64)
    );
    assert_eq!(
        value(&samples, "keyhold_store_group_size_sum", &[]),
        Some(stats.batches_committed as f64)
    );
    assert_eq!(
        value(&samples, "keyhold_store_batches_committed_total", &[]),
        Some(stats.batches_committed as f64)
    );
    assert!(check_histograms(&samples) >= 1);
    app.stop().await;
}

#[tokio::test]
async fn reading_a_record_counts_data_key_cache_hits_and_misses() {
    let hits = |s: &[Sample]| value(s, "keyhold_dek_cache_hits_total", &[]).unwrap();
    let misses = |s: &[Sample]| value(s, "keyhold_dek_cache_misses_total", &[]).unwrap();

    // Keys are cached when made: reading twice finds them there.
    let app = app_with(fast()).await;
    let ann = signed_in(&app, "ann@example.test").await;
    let entry = add_entry(&app, &ann, "Peanut allergy").await;
    let (_, before) = scrape(&app).await;
    for _ in 0..2 {
        let (status, _) = get(&app, &ann, &format!("/record/entries/{entry}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, after) = scrape(&app).await;
    assert!(
        hits(&after) >= hits(&before) + 2.0,
        "hits {} then {}",
        hits(&before),
        hits(&after)
    );
    assert_eq!(
        misses(&after),
        misses(&before),
        "a cached key counted as a miss"
    );
    app.stop().await;

    // A cache of one key: the account's and the record's keys evict each
    // other, so reading the record unwraps keys again.
    let app = app_with(Settings {
        dek_cache_size: 1,
        ..fast()
    })
    .await;
    let ann = signed_in(&app, "ann@example.test").await;
    let entry = add_entry(&app, &ann, "Peanut allergy").await;
    let (_, before) = scrape(&app).await;
    for _ in 0..2 {
        let (status, _) = get(&app, &ann, &format!("/record/entries/{entry}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, after) = scrape(&app).await;
    assert!(
        misses(&after) > misses(&before),
        "misses {} then {}",
        misses(&before),
        misses(&after)
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_ins_shed_for_a_full_hashing_queue_are_counted() {
    // No room to wait: every password check is shed.
    let app = app_with(Settings {
        hashing_max_waiting: 0,
        ..fast()
    })
    .await;
    let (_, before) = scrape(&app).await;
    assert_eq!(
        value(&before, "keyhold_password_hashing_shed_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&before, "keyhold_password_hashing_max_waiting", &[]),
        Some(0.0)
    );
    assert!(value(&before, "keyhold_password_hashing_concurrency", &[]).unwrap() >= 1.0);
    let client = browser();
    let token = csrf_token(&app, &client, "/signin").await;
    let resp = post_form(
        &app,
        &client,
        "/signin",
        &[
            ("csrf_token", &token),
            ("email", "nobody@example.test"),
            ("password", "not the password at all"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&resp, "retry-after").is_some());

    let (_, after) = scrape(&app).await;
    assert_eq!(
        value(&after, "keyhold_password_hashing_shed_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "keyhold_http_requests_total",
            &[("route", "/signin"), ("method", "POST"), ("status", "503")],
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "keyhold_password_hashing_waiting", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "keyhold_password_hashes_started_total", &[]),
        Some(0.0)
    );
    app.stop().await;
}
