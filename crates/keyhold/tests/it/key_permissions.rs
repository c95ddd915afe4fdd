//! DESIGN.md, "Encryption": key files are mode 0600 and the server refuses a
//! group- or world-readable key file, naming it.

use std::os::unix::fs::PermissionsExt;

use crate::common::{assert_healthy, init_keys, serve, serve_refused};

#[test]
fn key_file_permissions_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);

    for file in ["master-1.key", "index.key", "audit-signing.key"] {
        let path = keys.join(file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "`keyhold init` should create {file} with mode 0600, not {mode:o}"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = serve_refused(&data, &keys);
        assert!(
            refused.stderr.contains(file),
            "with {file} at mode 0640 the refusal should name that file:\n{}",
            refused.describe()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // With every file back at 0600 the same folders serve: the refusals above
    // were about the modes, nothing else.
    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "with every key file at 0600");
    server.stop();
}
