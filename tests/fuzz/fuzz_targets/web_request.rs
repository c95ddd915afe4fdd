//! Whole requests through the real router (forms, multipart bodies, JSON,
//! paths, queries), over a demo store in a temporary folder, signed in as
//! the demo patient or the demo GP with a valid CSRF token in form bodies so
//! that input reaches the handlers. No request may panic or get a 500.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keyhold_domain::clock::SystemClock;
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::{Keyhold, Settings};
use keyhold_web::{route_paths, router, AppState, WebConfig};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const CSRF_SECRET: &str = "fuzzfuzzfuzzfuzzfuzzfuzz";
const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
const TYPES: [&str; 4] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ",
    "application/fhir+json",
    "text/plain",
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    paths: Vec<String>,
    /// (cookie header, CSRF token, own record id) per signed-in person.
    people: Vec<(String, String, String)>,
    _dir: tempfile::TempDir,
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = resp.status();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        init_keys(&keys).unwrap();
        let settings = Settings {
            danger_fast_hashing: true,
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let core: Arc<Keyhold> = Keyhold::open(
            &dir.path().join("data"),
            load_keys(&keys).unwrap(),
            settings,
            Arc::new(SystemClock),
        )
        .unwrap();
        let (app, paths, people) = rt.block_on(async {
            let accounts = core.seed_demo().await.unwrap();
            let state = AppState::new(core.clone(), WebConfig::default()).unwrap();
            let paths = route_paths(&state);
            let app = router(state);
            let mut people = Vec::new();
            for who in ["patient@demo.keyhold.test", "gp@demo.keyhold.test"] {
                let a = accounts.iter().find(|a| a.email == who).unwrap();
                let signed = core.sign_in(&a.email, &a.password, None).await.unwrap();
                let cookie = format!(
                    "keyhold_session={}; keyhold_csrf={CSRF_SECRET}",
                    signed.token.as_str()
                );
                let req = Request::get("/account")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .unwrap();
                let (_, html) = send(&app, req).await;
                let marker = "name=\"csrf_token\" value=\"";
                let at = html.find(marker).unwrap() + marker.len();
                let token = html[at..at + html[at..].find('"').unwrap()].to_string();
                let own = core
                    .session(&signed.token)
                    .await
                    .unwrap()
                    .and_then(|p| p.own_patient)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "00000000000000000000000000000000".into());
                people.push((cookie, token, own));
            }
            (app, paths, people)
        });
        Fixture {
            rt,
            app,
            paths,
            people,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let [m, r, t, who, rest @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()].clone();
    let (cookie, token, own) = &f.people[usize::from(*who) % f.people.len()];
    // The rest: "placeholder-or-query\nbody".
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (tail, body) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let tail: String = String::from_utf8_lossy(tail)
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let template = &f.paths[usize::from(*r) % f.paths.len()];
    let path = template
        .replace("{patient}", own)
        .replace("{resource_type}", "Observation");
    // Other placeholders and a query come from the input.
    let path = path
        .split('/')
        .map(|seg| if seg.starts_with('{') { tail.as_str() } else { seg })
        .collect::<Vec<_>>()
        .join("/");
    let uri = if tail.starts_with('?') { format!("{path}{tail}") } else { path };
    let kind = TYPES[usize::from(*t) % TYPES.len()];
    let mut payload = Vec::new();
    if kind.starts_with("application/x-www") {
        payload.extend_from_slice(format!("csrf_token={token}&").as_bytes());
    } else if kind.starts_with("multipart") {
        payload.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n")
                .as_bytes(),
        );
    }
    payload.extend_from_slice(body);
    let Ok(req) = Request::builder()
        .method(method)
        .uri(&uri)
        .header("cookie", cookie)
        .header("content-type", kind)
        .body(Body::from(payload))
    else {
        return;
    };
    let (status, page) = f.rt.block_on(send(&f.app, req));
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {page}");
});
