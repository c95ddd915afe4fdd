//! Hostile clients on loopback, bounded in time: a slow-loris that drips
//! header bytes over every connection the server allows does not keep an
//! honest client out for longer than the header timeout; a body that never
//! finishes gets 408; and no route reads a body past its limit.

use std::time::Duration;

use keyhold_web::{route_paths, AppState, ServerLimits, WebConfig};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{fast, is_html, signed_in, spawn_with, TestApp};

const CONNECTIONS: usize = 6;
const STREAMS: u32 = 3;

async fn app() -> TestApp {
    spawn_with(
        fast(),
        WebConfig {
            limits: ServerLimits {
                header_read_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(2),
                upload_timeout: Duration::from_secs(4),
                max_connections: CONNECTIONS,
                max_streams_per_connection: STREAMS,
                shutdown_grace: Duration::from_secs(5),
            },
            ..Default::default()
        },
    )
    .await
}

/// Opens a connection and drips a request's headers at a byte every
/// 200 ms, never finishing; returns when the server closes it.
async fn slow_loris(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut r, mut w) = s.into_split();
        let drip = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if w.write_all(b"X").await.is_err() {
                    break;
                }
            }
        };
        let closed = async {
            let mut buf = [0u8; 1024];
            // Closed (0 bytes), reset, or an error status then close.
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! { () = drip => {}, () = closed => {} }
    })
}

#[tokio::test]
async fn a_slow_loris_holding_every_connection_is_cut_off_and_honest_clients_get_in() {
    let app = app().await;
    let mut attackers = Vec::new();
    for _ in 0..CONNECTIONS {
        attackers.push(slow_loris(&app).await);
    }
    // Every slot is taken; the server cuts each dripper off at the header
    // timeout (generous bound: a hang fails the test, it does not time it).
    for a in attackers {
        tokio::time::timeout(Duration::from_secs(15), a)
            .await
            .expect("the server closed the slow connection")
            .unwrap();
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let resp = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // And while a fresh wave drips, an honest request queued behind them
    // is answered once the wave is cut off.
    let mut wave = Vec::new();
    for _ in 0..CONNECTIONS {
        wave.push(slow_loris(&app).await);
    }
    let resp = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for a in wave {
        a.abort();
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_the_timeout_page() {
    let app = app().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        b"POST /signin HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\nemail=a",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(7).any(|w| w == b"</html>") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("an answer before the test's bound");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("Your request took too long to arrive"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_route_reads_a_form_past_its_limit() {
    let app = app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let state = AppState::new(app.core.clone(), WebConfig::default()).unwrap();
    let big = format!("csrf_token=x&title={}", "a".repeat(200 * 1024));
    let mut refused = 0;
    for template in route_paths(&state) {
        // Uploads take more, up to their own cap (tests in input.rs and
        // access_requests.rs): documents, a request's messages and disclosure.
        if ["/documents", "/messages", "/disclosure"]
            .iter()
            .any(|u| template.ends_with(u))
        {
            continue;
        }
        let path = template
            .replace("{patient}", "00000000000000000000000000000000")
            .replace(['{', '}'], "");
        let resp = client
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            continue;
        }
        // The FHIR API refuses a caller without a token before any body.
        if path.starts_with("/fhir/R4") {
            assert!(status.is_client_error(), "POST {path}: {status}");
            continue;
        }
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "POST {path}");
        assert!(is_html(&resp), "POST {path}: a page");
        refused += 1;
    }
    assert!(refused > 30, "only {refused} routes checked");
    app.stop().await;
}

#[tokio::test]
async fn an_upload_over_a_slow_link_gets_the_upload_timeout_not_the_request_timeout() {
    use futures_util::StreamExt;

    let app = app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let token = crate::helpers::csrf_token(&app, &client, "/record/documents").await;
    let head = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nSlow scan\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\ngeneral\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    );
    // The file arrives over about 3 s: past the 2 s request timeout, within
    // the 4 s upload timeout.
    let mut pieces: Vec<Vec<u8>> = vec![head.into_bytes()];
    let pdf = crate::helpers::pdf("slow");
    let step = pdf.len().div_ceil(6);
    pieces.extend(pdf.chunks(step).map(<[u8]>::to_vec));
    pieces.push(b"\r\n--XyZ--\r\n".to_vec());
    let body = futures_util::stream::iter(pieces).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok::<_, std::io::Error>(p)
    });
    let resp = client
        .post(app.url("/record/documents"))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "the slow upload is kept"
    );
    assert_eq!(app.rows(keyhold_domain::trees::DOCUMENTS), 1);
    app.stop().await;
}

/// HTTP/2 (cleartext, prior knowledge) multiplexes requests on one
/// connection, so the connection cap alone would not bound them: the server
/// advertises its per-connection stream limit in its SETTINGS, and requests
/// up to it are answered on one connection.
#[tokio::test]
async fn http2_connections_advertise_and_keep_a_stream_limit() {
    use std::future::Future as _;
    let app = app().await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    // Drive the connection by hand until the server's SETTINGS are in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let advertised = loop {
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut conn).poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        let n = conn.max_concurrent_send_streams();
        if n == STREAMS as usize || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        advertised, STREAMS as usize,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    tokio::spawn(conn);
    let mut client = client;
    let mut pending = Vec::new();
    for _ in 0..STREAMS {
        client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{}/healthz", app.addr))
            .body(())
            .unwrap();
        pending.push(client.send_request(req, true).unwrap().0);
    }
    for resp in pending {
        let r = tokio::time::timeout(Duration::from_secs(5), resp)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
