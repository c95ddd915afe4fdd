//! DESIGN.md, "Encryption": the store on disk holds no plaintext identifier or
//! clinical text. Seed 200 synthetic patients, then search every raw file of the
//! data folder for every value seeded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use memchr::memmem;

use crate::common::{copy_dir, field, files_under, seed_demo};

const PATIENTS: usize = 200;

/// The identity fields searched for. `given_name` on its own is deliberately
/// not among them: it is only 6+ letters, and sealed bytes are stored as base64
/// inside JSON rows, where after lower-casing each character matches a given
/// letter with probability 2/64. A 6-letter name then matches a random base64
/// position with probability 2^-30, which over ~5 MB of store and 30 names is
/// around one false alarm in ten runs. The given name is still covered: it is
/// part of `full_name` (whose space cannot occur in base64) and of `email`.
/// Family names (7+ letters in the generator, checked below to be 6+) and
/// everything else are long enough, or contain characters base64 never uses,
/// to make a chance match astronomically unlikely.
const FIELDS: &[&str] = &[
    "full_name",
    "family_name",
    "nhs_number",
    "nhs_number_formatted",
    "email",
    "date_of_birth",
    "address_line",
    "postcode",
    "phone",
    "note_phrase",
];

/// A value to look for: which kind, whose (index into the identities), and the
/// lower-cased bytes.
struct Needle {
    kind: &'static str,
    patient: usize,
    bytes: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, Hash, Clone)]
struct Hit {
    file: PathBuf,
    kind: &'static str,
    patient: usize,
}

fn needles(identities: &[serde_json::Value]) -> Vec<Needle> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in identities.iter().enumerate() {
        for kind in FIELDS {
            let value = field(p, kind).to_ascii_lowercase().into_bytes();
            assert!(
                value.len() >= 6,
                "patient {i}: `{kind}` is shorter than 6 bytes, too short to search raw files for without chance matches"
            );
            // Equal values (a shared family name) need searching only once.
            if seen.insert(value.clone()) {
                out.push(Needle {
                    kind,
                    patient: i,
                    bytes: value,
                });
            }
        }
    }
    out
}

/// Case-insensitive search of every regular file under `dir` for every needle.
fn search(dir: &Path, needles: &[Needle]) -> Vec<Hit> {
    let finders: Vec<memmem::Finder<'_>> = needles
        .iter()
        .map(|n| memmem::Finder::new(&n.bytes))
        .collect();
    let mut hits = Vec::new();
    for file in files_under(dir) {
        let mut bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        bytes.make_ascii_lowercase();
        for (needle, finder) in needles.iter().zip(&finders) {
            if finder.find(&bytes).is_some() {
                hits.push(Hit {
                    file: file.clone(),
                    kind: needle.kind,
                    patient: needle.patient,
                });
            }
        }
    }
    hits
}

/// Lists hits by file, kind and patient number: never the value itself.
fn describe(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "  {}: {} of patient #{}",
                h.file.display(),
                h.kind,
                h.patient
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn plaintext_at_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    // Outside the data folder, as the command requires.
    let identities_file = tmp.path().join("identities.json");
    crate::common::init_keys(&keys);
    let identities = seed_demo(&data, &keys, PATIENTS, &identities_file);
    assert_eq!(
        identities.len(),
        PATIENTS,
        "the identities file should list every seeded patient"
    );

    let files = files_under(&data);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    // Each patient has a dozen sealed entries and a sealed PDF letter; 2 KiB
    // each is a very low bar that an empty or unwritten store cannot reach.
    assert!(
        total > (PATIENTS as u64) * 2048,
        "the data folder holds only {total} bytes in {} files: was anything stored?",
        files.len()
    );

    let needles = needles(&identities);
    let hits = search(&data, &needles);
    assert!(
        hits.is_empty(),
        "plaintext found in the data folder ({} hits; value kinds only):\n{}",
        hits.len(),
        describe(&hits)
    );

    // Control: the same search over a copy of the folder, with two seeded values
    // planted in plain text, finds exactly those two. This proves the walk
    // reaches nested files and the whole of the big store file, and that the
    // search is case-insensitive; otherwise the assertion above could pass
    // vacuously.
    let control = tempfile::tempdir().unwrap();
    copy_dir(&data, control.path());
    let control_files = files_under(control.path());
    let biggest = control_files
        .iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().len())
        .cloned()
        .expect("the copy holds files");
    let mut bytes = std::fs::read(&biggest).unwrap();
    let planted = field(&identities[0], "note_phrase").to_ascii_uppercase();
    let at = bytes.len() / 2;
    assert!(
        bytes.len() > at + planted.len(),
        "the biggest file is too small to plant a value in"
    );
    bytes[at..at + planted.len()].copy_from_slice(planted.as_bytes());
    std::fs::write(&biggest, &bytes).unwrap();
    let nested = control.path().join("nested").join("deeper");
    std::fs::create_dir_all(&nested).unwrap();
    let scratch = nested.join("scratch.bin");
    let mut scratch_bytes = vec![0x9c_u8; 1000];
    scratch_bytes.extend_from_slice(field(&identities[0], "nhs_number_formatted").as_bytes());
    scratch_bytes.extend_from_slice(&[0xff; 1000]);
    std::fs::write(&scratch, scratch_bytes).unwrap();

    let found: HashSet<Hit> = search(control.path(), &needles).into_iter().collect();
    let expected: HashSet<Hit> = [
        Hit {
            file: biggest,
            kind: "note_phrase",
            patient: 0,
        },
        Hit {
            file: scratch,
            kind: "nhs_number_formatted",
            patient: 0,
        },
    ]
    .into_iter()
    .collect();
    assert_eq!(
        found,
        expected,
        "the control search should find exactly the two planted values; found:\n{}",
        describe(&found.iter().cloned().collect::<Vec<_>>())
    );

    // And the store really holds the patients (read through the storage layer,
    // not the keys): one row per patient and their entries.
    let store = keyhold_domain::open_store(&data).unwrap();
    let patients = store.scan(keyhold_domain::trees::PATIENTS, b"").count();
    let entries = store.scan(keyhold_domain::trees::ENTRIES, b"").count();
    drop(store);
    assert_eq!(patients, PATIENTS, "patient rows in the store");
    assert!(
        entries >= PATIENTS * 10,
        "only {entries} entry rows for {PATIENTS} patients"
    );
}
