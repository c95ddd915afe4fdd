//! Cookies scripts cannot read and other sites do not get; behind TLS,
//! host-pinned names, `Secure`, and HSTS.

use keyhold_web::WebConfig;
use reqwest::header::{COOKIE, STRICT_TRANSPORT_SECURITY};
use reqwest::StatusCode;

use crate::helpers::{
    attributes, bare_client, browser, cookie_value, csrf_in, csrf_token, fast, header, location,
    mailed_token, post_form, set_cookie, spawn_app, spawn_with, PASSWORD,
};

fn assert_attributes(what: &str, set_cookie: &str, want: &[&str], refuse: &[&str]) {
    let attrs = attributes(set_cookie);
    for w in want {
        assert!(
            attrs.iter().any(|a| a == w),
            "{what}: {w} missing in `{set_cookie}`"
        );
    }
    for r in refuse {
        assert!(
            !attrs.iter().any(|a| a.starts_with(r)),
            "{what}: {r} in `{set_cookie}`"
        );
    }
}

#[tokio::test]
async fn session_and_csrf_cookies_are_http_only_and_same_site() {
    let app = spawn_app().await;
    let client = browser();
    let page = client.get(app.url("/signup")).send().await.unwrap();
    let csrf = set_cookie(&page, "keyhold_csrf").expect("a CSRF cookie on the first visit");
    assert_attributes(
        "csrf cookie",
        &csrf,
        &["httponly", "samesite=strict", "path=/"],
        &["domain"],
    );
    assert!(
        header(&page, STRICT_TRANSPORT_SECURITY.as_str()).is_none(),
        "HSTS only behind TLS"
    );

    let token = csrf_in(&page.text().await.unwrap()).unwrap();
    let fields = [
        ("csrf_token", token.as_str()),
        ("name", "Ann Smith"),
        ("email", "ann@example.test"),
        ("password", PASSWORD),
    ];
    let resp = post_form(&app, &client, "/signup", &fields).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        set_cookie(&resp, "keyhold_session").is_none(),
        "no session before the address is confirmed"
    );
    let confirm = format!(
        "/account/confirm/{}",
        mailed_token(&app, "ann@example.test", "/account/confirm/")
    );
    let token = csrf_token(&app, &client, &confirm).await;
    let resp = post_form(&app, &client, &confirm, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&resp, "keyhold_session").expect("a session cookie on confirming");
    assert_attributes(
        "session cookie",
        &session,
        &["httponly", "samesite=lax", "path=/"],
        &["domain", "expires", "max-age"],
    );
    assert!(
        set_cookie(&resp, "keyhold_csrf").is_none(),
        "the CSRF secret is set once, not per request"
    );
    app.stop().await;
}

#[tokio::test]
async fn behind_tls_cookies_are_host_prefixed_and_secure_and_hsts_is_sent() {
    let app = spawn_with(
        fast(),
        WebConfig {
            secure_cookies: true,
            nhs_login: None,
            ..Default::default()
        },
    )
    .await;
    // By hand: a cookie store would not keep `Secure` cookies over plain HTTP.
    let client = bare_client();
    let page = client.get(app.url("/signup")).send().await.unwrap();
    let hsts = header(&page, STRICT_TRANSPORT_SECURITY.as_str()).expect("HSTS on a page");
    assert!(hsts.contains("max-age="), "{hsts}");
    assert!(
        set_cookie(&page, "keyhold_csrf").is_none(),
        "an unprefixed name behind TLS"
    );
    let csrf = set_cookie(&page, "__Host-keyhold_csrf").expect("a __Host- CSRF cookie");
    assert_attributes(
        "csrf cookie",
        &csrf,
        &["secure", "httponly", "samesite=strict", "path=/"],
        &["domain"],
    );
    let secret = cookie_value(&csrf);
    let token = csrf_in(&page.text().await.unwrap()).unwrap();

    let fields = [
        ("csrf_token", token.as_str()),
        ("name", "Ann Smith"),
        ("email", "ann@example.test"),
        ("password", PASSWORD),
    ];
    let resp = client
        .post(app.url("/signup"))
        .header(COOKIE, format!("__Host-keyhold_csrf={secret}"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let confirm = format!(
        "/account/confirm/{}",
        mailed_token(&app, "ann@example.test", "/account/confirm/")
    );
    let resp = client
        .post(app.url(&confirm))
        .header(COOKIE, format!("__Host-keyhold_csrf={secret}"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp).as_deref(), Some("/"));
    assert!(
        header(&resp, STRICT_TRANSPORT_SECURITY.as_str()).is_some(),
        "HSTS on a redirect"
    );
    assert!(
        set_cookie(&resp, "keyhold_session").is_none(),
        "an unprefixed name behind TLS"
    );
    let session = set_cookie(&resp, "__Host-keyhold_session").expect("a __Host- session cookie");
    assert_attributes(
        "session cookie",
        &session,
        &["secure", "httponly", "samesite=lax", "path=/"],
        &["domain"],
    );

    // The prefixed cookies are the ones the server reads.
    let both = format!(
        "__Host-keyhold_csrf={secret}; __Host-keyhold_session={}",
        cookie_value(&session)
    );
    let record = client
        .get(app.url("/record"))
        .header(COOKIE, both)
        .send()
        .await
        .unwrap();
    assert_eq!(record.status(), StatusCode::OK);
    assert!(header(&record, STRICT_TRANSPORT_SECURITY.as_str()).is_some());
    let unprefixed = format!("keyhold_session={}", cookie_value(&session));
    let record = client
        .get(app.url("/record"))
        .header(COOKIE, unprefixed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        record.status(),
        StatusCode::SEE_OTHER,
        "an unprefixed session cookie is ignored"
    );
    app.stop().await;
}
