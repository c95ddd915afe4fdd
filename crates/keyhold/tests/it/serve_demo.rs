//! `keyhold serve --demo` on an empty folder: creates the keys, seeds demo data,
//! prints the sign-ins, and the printed sign-in works in the web front end.

use std::os::unix::fs::PermissionsExt;

use reqwest::header::LOCATION;
use reqwest::StatusCode;

use crate::common::{assert_healthy, hidden_input, runtime, serve};

const EMAIL: &str = "patient@demo.keyhold.test";
const PASSWORD: &str = "keyhold-demo-2026";

/// Every demo sign-in `serve --demo` prints, in order, with a word from its
/// description: the patients first, then the consent demo's people.
const SIGNINS: [(&str, &str); 6] = [
    (EMAIL, "full record"),
    ("sensitive@demo.keyhold.test", "sensitive"),
    ("gp-admin@demo.keyhold.test", "administrator"),
    ("gp@demo.keyhold.test", "GP"),
    ("doctor@demo.keyhold.test", "emergency access"),
    ("carer@demo.keyhold.test", "carer"),
];

/// Rows of data (`<td>`) inside the page's table bodies.
fn table_cells(html: &str) -> usize {
    html.split("<tbody")
        .skip(1)
        .map(|body| {
            body.split("</tbody>")
                .next()
                .unwrap_or("")
                .matches("<td")
                .count()
        })
        .sum()
}

#[test]
fn serve_demo_on_an_empty_folder_creates_keys_and_prints_signins() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    assert!(!keys.exists() && !data.exists());

    let mut server = serve(&data, &keys, &["--demo"]);
    let line = server.wait_for_line(EMAIL, |l| l.contains(EMAIL));
    assert!(
        line.contains(PASSWORD),
        "the demo sign-in line should give the password: {line:?}"
    );
    // One line per account, in the order given, each with the password.
    let mut at = Vec::new();
    for (email, what) in SIGNINS {
        let prefix = format!("  {email}  password: {PASSWORD}  (");
        let line = server.wait_for_line(email, |l| l.starts_with(&prefix));
        assert!(
            line.ends_with(')') && line.contains(what),
            "the sign-in line of {email} should say who it is ({what}): {line:?}"
        );
        at.push(server.seen.iter().position(|l| *l == line).unwrap());
    }
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "the demo sign-ins should be printed patients first, in order: {:?}",
        server.seen
    );
    for f in ["master-1.key", "index.key", "audit-signing.key"] {
        let meta = std::fs::metadata(keys.join(f))
            .unwrap_or_else(|e| panic!("serve --demo should create {f}: {e}"));
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{f} should be mode 0600"
        );
    }
    assert_healthy(&server, "serve --demo");

    let base = server.base_url();
    runtime().block_on(async {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();

        // Not signed in: the record is not shown.
        let anonymous = client.get(format!("{base}/record")).send().await.unwrap();
        let anonymous_status = anonymous.status();
        let anonymous_body = anonymous.text().await.unwrap();
        assert!(
            anonymous_status != StatusCode::OK && !anonymous_body.contains("Your health record"),
            "GET /record without signing in gave {anonymous_status} with the record page"
        );

        let page = client.get(format!("{base}/signin")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "GET /signin");
        let csrf = hidden_input(&page.text().await.unwrap(), "csrf_token").unwrap();
        assert!(
            !csrf.is_empty(),
            "the sign-in form carries an empty csrf_token"
        );

        let signed_in = client
            .post(format!("{base}/signin"))
            .form(&[
                ("email", EMAIL),
                ("password", PASSWORD),
                ("csrf_token", csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = signed_in.status();
        let location = signed_in
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap_or("").to_string());
        // Straight to the record, or to the start page, which sends a
        // patient on to their record.
        let location = match location.as_deref() {
            Some("/") if status == StatusCode::SEE_OTHER => {
                let home = client.get(format!("{base}/")).send().await.unwrap();
                let status = home.status();
                let next = home
                    .headers()
                    .get(LOCATION)
                    .map(|v| v.to_str().unwrap_or("").to_string());
                assert_eq!(status, StatusCode::SEE_OTHER, "GET / when signed in");
                next
            }
            _ => location,
        };
        assert_eq!(
            (status, location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/record")),
            "signing in with the printed demo sign-in should lead to /record; body:\n{}",
            signed_in.text().await.unwrap_or_default()
        );

        let record = client.get(format!("{base}/record")).send().await.unwrap();
        assert_eq!(
            record.status(),
            StatusCode::OK,
            "GET /record after signing in"
        );
        let html = record.text().await.unwrap();
        assert!(
            html.contains("<h1>Your health record</h1>"),
            "the record page has no heading:\n{html}"
        );
        let cells = table_cells(&html);
        assert!(cells > 0, "the record page shows no entries:\n{html}");
        assert!(
            html.contains("Note for my care team"),
            "the seeded note is not among the entries shown:\n{html}"
        );
    });
    server.stop();

    // Again on the same folder: nothing is seeded twice, and the sign-ins are
    // still named.
    let mut again = serve(&data, &keys, &["--demo"]);
    let line = again.wait_for_line("the note that data exists", |l| {
        l.contains("already holds data")
    });
    assert!(
        line.contains(EMAIL) && line.contains(PASSWORD),
        "the second start should still give the patient's sign-in: {line:?}"
    );
    let others = again.wait_for_line("the other demo sign-ins", |l| {
        l.contains("carer@demo.keyhold.test")
    });
    for (email, _) in &SIGNINS[1..] {
        assert!(
            others.contains(email),
            "the second start should mention {email}: {others:?}"
        );
    }
    assert!(
        !again.seen.iter().any(|l| l.contains("demo data seeded")),
        "the second start should not seed again: {:?}",
        again.seen
    );
    again.stop();
}

#[test]
fn a_bad_server_limit_stops_serve_before_it_creates_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    for (name, value) in [
        ("KEYHOLD_MAX_CONNECTIONS", "lots"),
        ("KEYHOLD_HEADER_TIMEOUT_SECS", "0"),
        ("KEYHOLD_REQUEST_TIMEOUT_SECS", "99999"),
    ] {
        let out = crate::common::keyhold()
            .env(name, value)
            .args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--keys")
            .arg(&keys)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}={value}: the message names it: {stderr}"
        );
        assert!(
            !keys.exists() && !data.exists(),
            "{name}={value}: nothing created"
        );
    }
}
