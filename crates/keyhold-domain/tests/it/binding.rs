//! A sealed value opens only where it was sealed: moved to another patient,
//! another entry, another chunk position, or altered by one byte or one
//! version number, it fails to open, and nothing of the original plaintext
//! comes back.

use base64::Engine as _;
use keyhold_domain::trees::{DOCUMENTS, DOC_CHUNKS, ENTRIES};
use keyhold_domain::{DomainError, EntryId, PatientId};
use serde_json::Value;

use crate::helpers::{get, new_document, new_entry, pair, pdf, put, Env};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

fn chunk_key(patient: &[u8; 16], doc: &[u8; 16], i: u32) -> Vec<u8> {
    let mut k = pair(patient, doc);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// The read failed because the ciphertext did not open, not because the row
/// was missing (which would mean the tampering missed its target).
fn assert_does_not_open<T>(what: &str, r: Result<T, DomainError>) {
    match r {
        Err(DomainError::Crypto(_)) => {}
        Err(e) => panic!("{what}: failed, but not by refusing to open the ciphertext: {e:?}"),
        Ok(_) => panic!("{what}: a tampered ciphertext opened"),
    }
}

#[tokio::test]
async fn an_entry_moved_to_another_patient_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let (pb, b, _) = env.patient("bob@example.test").await;
    let ea = env
        .core
        .add_entry(&pa, a, new_entry("Peanut allergy"))
        .await
        .unwrap();
    env.core
        .add_entry(&pb, b, new_entry("Hay fever"))
        .await
        .unwrap();

    // Control: both records read before any tampering.
    assert_eq!(
        env.core.entry(&pa, a, ea).await.unwrap().title,
        "Peanut allergy"
    );
    assert_eq!(env.core.record(&pb, b).await.unwrap().entries.len(), 1);

    let row = get(env.store(), ENTRIES, &pair(a.as_bytes(), ea.as_bytes()));
    put(env.store(), ENTRIES, pair(b.as_bytes(), ea.as_bytes()), row).await;

    assert_does_not_open("B reads the moved entry", env.core.entry(&pb, b, ea).await);
    assert_does_not_open("B reads their record", env.core.record(&pb, b).await);
    // A's own copy is untouched.
    assert_eq!(
        env.core.entry(&pa, a, ea).await.unwrap().title,
        "Peanut allergy"
    );
}

#[tokio::test]
async fn an_entry_copied_to_another_entry_of_the_same_patient_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let e1 = env
        .core
        .add_entry(&pa, a, new_entry("Peanut allergy"))
        .await
        .unwrap();
    let e2 = env
        .core
        .add_entry(&pa, a, new_entry("Asthma"))
        .await
        .unwrap();
    assert_eq!(env.core.entry(&pa, a, e2).await.unwrap().title, "Asthma");

    let row = get(env.store(), ENTRIES, &pair(a.as_bytes(), e1.as_bytes()));
    // Over an existing entry, and under an id that never existed.
    let fresh = EntryId::new_random();
    put(
        env.store(),
        ENTRIES,
        pair(a.as_bytes(), e2.as_bytes()),
        row.clone(),
    )
    .await;
    put(
        env.store(),
        ENTRIES,
        pair(a.as_bytes(), fresh.as_bytes()),
        row,
    )
    .await;

    assert_does_not_open(
        "copied over another entry",
        env.core.entry(&pa, a, e2).await,
    );
    assert_does_not_open("copied under a new id", env.core.entry(&pa, a, fresh).await);
    assert_eq!(
        env.core.entry(&pa, a, e1).await.unwrap().title,
        "Peanut allergy"
    );
}

#[tokio::test]
async fn a_document_moved_to_another_patient_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let (pb, b, _) = env.patient("bob@example.test").await;
    let da = env
        .core
        .add_document(&pa, a, new_document("letter", pdf(100)))
        .await
        .unwrap();
    env.core
        .add_document(&pb, b, new_document("scan", pdf(200)))
        .await
        .unwrap();
    assert_eq!(env.core.documents(&pb, b).await.unwrap().len(), 1);

    let row = get(env.store(), DOCUMENTS, &pair(a.as_bytes(), da.as_bytes()));
    let chunk = get(
        env.store(),
        DOC_CHUNKS,
        &chunk_key(a.as_bytes(), da.as_bytes(), 0),
    );
    put(
        env.store(),
        DOCUMENTS,
        pair(b.as_bytes(), da.as_bytes()),
        row,
    )
    .await;
    put(
        env.store(),
        DOC_CHUNKS,
        chunk_key(b.as_bytes(), da.as_bytes(), 0),
        chunk,
    )
    .await;

    assert_does_not_open("B lists documents", env.core.documents(&pb, b).await);
    assert_does_not_open(
        "B opens the moved document",
        env.core.open_document(&pb, b, da).await,
    );
}

#[tokio::test]
async fn swapped_document_chunks_do_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let bytes = pdf(200_000);
    let doc = env
        .core
        .add_document(&pa, a, new_document("scan", bytes.clone()))
        .await
        .unwrap();

    let chunks = env
        .store()
        .scan(DOC_CHUNKS, &pair(a.as_bytes(), doc.as_bytes()))
        .count();
    assert_eq!(chunks, 4, "200 000 bytes in 64 KiB chunks");
    let reader = env.core.open_document(&pa, a, doc).await.unwrap();
    assert_eq!(
        reader.read_all().unwrap(),
        bytes,
        "control: the document reads back"
    );

    let k0 = chunk_key(a.as_bytes(), doc.as_bytes(), 0);
    let k1 = chunk_key(a.as_bytes(), doc.as_bytes(), 1);
    let (c0, c1) = (
        get(env.store(), DOC_CHUNKS, &k0),
        get(env.store(), DOC_CHUNKS, &k1),
    );
    assert_ne!(c0, c1);
    put(env.store(), DOC_CHUNKS, k0, c1).await;
    put(env.store(), DOC_CHUNKS, k1, c0).await;

    let reader = env.core.open_document(&pa, a, doc).await.unwrap();
    assert_does_not_open("swapped chunks", reader.read_all());
}

#[tokio::test]
async fn a_document_with_a_changed_chunk_count_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let doc = env
        .core
        .add_document(&pa, a, new_document("scan", pdf(200_000)))
        .await
        .unwrap();
    let key = pair(a.as_bytes(), doc.as_bytes());
    let mut row: Value = serde_json::from_slice(&get(env.store(), DOCUMENTS, &key)).unwrap();
    assert_eq!(row["chunks"], 4);

    // Truncation: the row claims fewer chunks, so the tail would be dropped.
    row["chunks"] = 3.into();
    put(
        env.store(),
        DOCUMENTS,
        key,
        serde_json::to_vec(&row).unwrap(),
    )
    .await;
    let reader = env.core.open_document(&pa, a, doc).await.unwrap();
    assert_does_not_open("a truncated document", reader.read_all());
}

/// Rewrites the stored row of entry `e`: splits the compact row
/// (`0x01 ‖ version ‖ sealed`), lets `change` alter the version and the sealed
/// bytes, and re-encodes. With a `change` that does nothing, the entry must
/// still read, so a failure after a real change is that change's doing and not
/// the re-encoding's.
async fn rewrite_entry_row(
    env: &Env,
    a: PatientId,
    e: EntryId,
    change: impl Fn(&mut u32, &mut Vec<u8>),
) {
    let key = pair(a.as_bytes(), e.as_bytes());
    let raw = get(env.store(), ENTRIES, &key);
    assert_eq!(raw[0], 0x01, "not a compact entry row");
    let mut version = u32::from_be_bytes(raw[1..5].try_into().unwrap());
    let mut sealed = raw[5..].to_vec();
    change(&mut version, &mut sealed);
    let mut row = vec![0x01];
    row.extend_from_slice(&version.to_be_bytes());
    row.extend_from_slice(&sealed);
    put(env.store(), ENTRIES, key, row).await;
}

/// Schema 1 stored entry rows as JSON with the sealed bytes in base64; a store
/// of that schema opened by this build still reads them.
#[tokio::test]
async fn an_entry_row_stored_as_json_by_schema_1_still_reads() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let e = env
        .core
        .add_entry(&pa, a, new_entry("Peanut allergy"))
        .await
        .unwrap();
    let key = pair(a.as_bytes(), e.as_bytes());
    let raw = get(env.store(), ENTRIES, &key);
    let version = u32::from_be_bytes(raw[1..5].try_into().unwrap());
    let json = serde_json::json!({ "version": version, "sealed": B64.encode(&raw[5..]) });
    put(
        env.store(),
        ENTRIES,
        key,
        serde_json::to_vec(&json).unwrap(),
    )
    .await;
    assert_eq!(
        env.core.entry(&pa, a, e).await.unwrap().title,
        "Peanut allergy"
    );
    assert_eq!(env.core.record(&pa, a).await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_entry_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let e = env
        .core
        .add_entry(&pa, a, new_entry("Peanut allergy"))
        .await
        .unwrap();
    let key = pair(a.as_bytes(), e.as_bytes());
    let original = get(env.store(), ENTRIES, &key);
    let len = original.len() - 5;

    // The nonce, the middle of the ciphertext, the last byte of the tag.
    for at in [0, len / 2, len - 1] {
        put(env.store(), ENTRIES, key.clone(), original.clone()).await;
        rewrite_entry_row(&env, a, e, |_, _| {}).await;
        let control = env.core.entry(&pa, a, e).await.unwrap();
        assert_eq!(control.title, "Peanut allergy");

        rewrite_entry_row(&env, a, e, |_, sealed| sealed[at] ^= 0x01).await;
        let what = format!("byte {at} of {len} flipped");
        assert_does_not_open(&what, env.core.entry(&pa, a, e).await);
        assert_does_not_open("the record holding it", env.core.record(&pa, a).await);
    }
}

#[tokio::test]
async fn a_changed_row_version_does_not_open() {
    let env = Env::new();
    let (pa, a, _) = env.patient("ann@example.test").await;
    let e = env
        .core
        .add_entry(&pa, a, new_entry("Peanut allergy"))
        .await
        .unwrap();
    rewrite_entry_row(&env, a, e, |_, _| {}).await;
    assert_eq!(
        env.core.entry(&pa, a, e).await.unwrap().title,
        "Peanut allergy"
    );

    rewrite_entry_row(&env, a, e, |version, _| {
        assert_eq!(*version, 1);
        *version = 2;
    })
    .await;
    assert_does_not_open("version 1 changed to 2", env.core.entry(&pa, a, e).await);
}
