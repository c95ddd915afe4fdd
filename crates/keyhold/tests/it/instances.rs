//! Two `keyhold serve` processes on one PostgreSQL database: a session made
//! through one works through the other, a grant stopped through one is refused
//! through the other on the very next request, under writes from both the
//! audit chain stays one valid chain (`keyhold audit verify`), which a changed
//! row breaks; a rotation through one leaves the other able to open every
//! record, and a backup through one restores into an embedded store.

use std::ffi::OsStr;
use std::process::Output;

use reqwest::StatusCode;

use crate::backup::backup_identity;
use crate::common::{
    hidden_input, init_keys, keyhold, postgres_database, run_ok, runtime, serve_env, signed_in,
};

const PASSWORD: &str = "keyhold-demo-2026";
const PATIENT: &str = "patient@demo.keyhold.test";
const CARER: &str = "carer@demo.keyhold.test";
const CARER_NAME: &str = "Sam Reid";

async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let r = client.get(url).send().await.expect("the server answers");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

/// The id of the live grant whose card names `who`.
fn grant_to(html: &str, who: &str) -> String {
    html.split("id=\"grant-")
        .skip(1)
        .find(|card| {
            card.split("id=\"grant-")
                .next()
                .is_some_and(|c| c.contains(who))
        })
        .and_then(|card| card.split('"').next())
        .unwrap_or_else(|| panic!("no grant naming {who} on the sharing page"))
        .to_string()
}

fn audit_verify(data: &std::path::Path, keys: &std::path::Path, db: &str) -> Output {
    keyhold()
        .env("KEYHOLD_DATABASE_URL", db)
        .args(["audit", "verify", "--data"])
        .arg(data)
        .arg("--keys")
        .arg(keys)
        .output()
        .expect("run keyhold audit verify")
}

#[test]
fn two_instances_share_sessions_revocations_and_one_audit_chain() {
    let Some(db) = postgres_database("instances") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    init_keys(&keys);
    let env = [("KEYHOLD_DATABASE_URL", db.as_str())];
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = serve_env(&data_a, &keys, &["--demo"], &env);
    let b = serve_env(&data_b, &keys, &[], &env);
    assert!(
        !data_a.join("store").exists() && !data_b.join("store").exists(),
        "an instance made an embedded store beside the database"
    );
    let (ua, ub) = (a.base_url(), b.base_url());

    runtime().block_on(async {
        // Signed in through A only; B knows the session from the database.
        let patient = signed_in(&ua, PATIENT, PASSWORD).await.unwrap();
        let (status, _) = get(&patient, &format!("{ub}/record")).await;
        assert_eq!(status, StatusCode::OK, "B did not know A's session");
        let anonymous = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (status, _) = get(&anonymous, &format!("{ub}/record")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "B shows /record to anyone");

        // The carer signs in through B and reads the record through A.
        let carer = signed_in(&ub, CARER, PASSWORD).await.unwrap();
        let (_, people) = get(&carer, &format!("{ub}/people")).await;
        let record = people
            .split("href=\"")
            .filter_map(|s| s.split('"').next())
            .find(|h| h.starts_with("/people/") && h.ends_with("/record"))
            .expect("the carer acts for the demo patient")
            .to_string();
        let (status, _) = get(&carer, &format!("{ua}{record}")).await;
        assert_eq!(status, StatusCode::OK, "A refused B's session");

        // The patient stops sharing through A; the carer's next request to B is refused.
        let (_, sharing) = get(&patient, &format!("{ua}/record/sharing")).await;
        let grant = grant_to(&sharing, CARER_NAME);
        let csrf = hidden_input(&sharing, "csrf_token").unwrap();
        let stopped = patient
            .post(format!("{ua}/record/sharing/{grant}/stop"))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(stopped.status(), StatusCode::SEE_OTHER);
        let (status, html) = get(&carer, &format!("{ub}{record}")).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "B still shows a stopped grant"
        );
        assert!(html.contains("You cannot see this record"), "{html}");

        // Audited reads and new entries through both at once.
        let (_, account) = get(&patient, &format!("{ua}/account")).await;
        let csrf = hidden_input(&account, "csrf_token").unwrap();
        let mut tasks = Vec::new();
        for (n, base) in [ua.clone(), ub.clone(), ua.clone(), ub.clone()]
            .into_iter()
            .enumerate()
        {
            let (client, csrf) = (patient.clone(), csrf.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..15 {
                    let (status, _) = get(&client, &format!("{base}/record")).await;
                    assert_eq!(status, StatusCode::OK);
                    let r = client
                        .post(format!("{base}/record/entries"))
                        .form(&[
                            ("csrf_token", csrf.as_str()),
                            ("kind", "note"),
                            ("title", &format!("Note {n}-{i}")),
                            ("date-day", "3"),
                            ("date-month", "12"),
                            ("date-year", "2026"),
                            ("category", "general"),
                            ("details", "Written while two instances serve."),
                        ])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::SEE_OTHER, "an entry was refused");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (_, record) = get(&patient, &format!("{ub}/record")).await;
        for n in 0..4 {
            assert!(
                record.contains(&format!("Note {n}-14")),
                "a write is missing"
            );
        }
    });

    // A rotation through A: B reads the keys folder again when a data key
    // is wrapped under the new master key, so someone B never served signs in.
    let rotated = keyhold()
        .env("KEYHOLD_DATABASE_URL", &db)
        .args(["keys", "rotate", "--keys"])
        .arg(&keys)
        .arg("--data")
        .arg(&data_a)
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    runtime().block_on(async {
        let other = signed_in(&ub, "sensitive@demo.keyhold.test", PASSWORD)
            .await
            .expect("B signs in a patient whose keys were re-wrapped through A");
        let (status, _) = get(&other, &format!("{ub}/record")).await;
        assert_eq!(status, StatusCode::OK, "B cannot open a re-wrapped record");
    });

    // A backup through B's control socket: a snapshot of the database, which
    // restores into an embedded store whose chain verifies.
    let (identity, recipient) = backup_identity(dir.path());
    let file = dir.path().join("backup.age");
    let backed_up = keyhold()
        .env("KEYHOLD_DATABASE_URL", &db)
        .args(["backup", "--data"])
        .arg(&data_b)
        .arg("--keys")
        .arg(&keys)
        .arg("--to")
        .arg(&file)
        .args(["--recipient", &recipient])
        .output()
        .unwrap();
    assert!(
        backed_up.status.success(),
        "{}",
        String::from_utf8_lossy(&backed_up.stderr)
    );
    assert!(
        String::from_utf8_lossy(&backed_up.stdout).contains("from the running server"),
        "{}",
        String::from_utf8_lossy(&backed_up.stdout)
    );
    drop((a, b));
    let restored = dir.path().join("restored");
    run_ok([
        OsStr::new("restore"),
        OsStr::new("--from"),
        file.as_os_str(),
        OsStr::new("--identity"),
        identity.as_os_str(),
        OsStr::new("--data"),
        restored.as_os_str(),
    ]);
    let sled_verified = run_ok([
        OsStr::new("audit"),
        OsStr::new("verify"),
        OsStr::new("--data"),
        restored.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
    ]);
    assert!(
        sled_verified.stdout.contains("audit chain intact"),
        "{}",
        sled_verified.describe()
    );

    let verified = audit_verify(&data_a, &keys, &db);
    assert!(
        verified.status.success(),
        "the chain written by both is not valid:\n{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // It read the database's chain: 60 audited reads and 60 entries at least.
    let out = String::from_utf8_lossy(&verified.stdout).to_string();
    let entries: u64 = out
        .split("audit chain intact: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in {out}"));
    assert!(entries >= 120, "only {entries} audit entries: {out}");

    // And one changed byte breaks it.
    let url = db.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let changed = c
            .execute(
                "UPDATE shared_rows SET value = set_byte(value, 40, (get_byte(value, 40) + 1) % 256) \
                 WHERE tree = 'audit' AND key = (SELECT key FROM shared_rows WHERE tree = 'audit' \
                 ORDER BY key OFFSET 20 LIMIT 1)",
                &[],
            )
            .unwrap();
        assert_eq!(changed, 1);
    })
    .join()
    .unwrap();
    let broken = audit_verify(&data_a, &keys, &db);
    assert!(
        !broken.status.success(),
        "a changed audit row went unnoticed:\n{}",
        String::from_utf8_lossy(&broken.stdout)
    );
}
