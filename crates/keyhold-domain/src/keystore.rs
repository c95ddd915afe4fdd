//! The key files in the keys folder: creation (mode 0600), the refusal to use a
//! key file others can read, and loading.
//!
//! - `master-N.key`: an age X25519 identity, the key-encryption key; the highest
//!   N is the newest and wraps new data keys; older ones stay until rotation has
//!   re-wrapped everything.
//! - `index.key`: 32 bytes (hex) for blind indexes and derived MAC keys.
//! - `audit-signing.key`: an Ed25519 PKCS#8 key (base64) that signs audit
//!   checkpoints; `audit-signing.pub` is its public half (hex), safe to share.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use keyhold_crypto::{AuditSigningKey, IndexKey, MasterKey, MasterKeyring};

use crate::DomainError;

pub const INDEX_FILE: &str = "index.key";
pub const AUDIT_FILE: &str = "audit-signing.key";
pub const AUDIT_PUB_FILE: &str = "audit-signing.pub";

/// The keys a running service holds.
pub struct LoadedKeys {
    pub keyring: MasterKeyring,
    pub index: IndexKey,
    pub audit: AuditSigningKey,
    /// The master key files, oldest first (for rotation's report).
    pub master_files: Vec<PathBuf>,
}

fn keys_err(msg: String) -> DomainError {
    DomainError::Keys(msg)
}

fn write_secret(path: &Path, contents: &[u8]) -> Result<(), DomainError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| keys_err(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|e| keys_err(format!("cannot write {}: {e}", path.display())))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Master key files present, as (N, path), sorted by N.
fn master_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, DomainError> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| {
        keys_err(format!(
            "cannot read the keys folder {}: {e}",
            dir.display()
        ))
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| keys_err(format!("cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("master-")
            .and_then(|r| r.strip_suffix(".key"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn new_master_file(dir: &Path, n: u32) -> Result<PathBuf, DomainError> {
    let key = MasterKey::generate();
    let path = dir.join(format!("master-{n}.key"));
    let text = format!(
        "# Keyhold master key-encryption key {n} (age X25519 identity).\n# public key: {}\n{}\n",
        key.recipient(),
        key.to_secret_string().as_str()
    );
    write_secret(&path, text.as_bytes())?;
    Ok(path)
}

/// Creates whichever key files are missing; returns the paths it created.
/// Never overwrites a key.
pub fn init_keys(dir: &Path) -> Result<Vec<PathBuf>, DomainError> {
    fs::create_dir_all(dir)
        .map_err(|e| keys_err(format!("cannot create {}: {e}", dir.display())))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let mut created = Vec::new();
    if master_files(dir)?.is_empty() {
        created.push(new_master_file(dir, 1)?);
    }
    let index = dir.join(INDEX_FILE);
    if !index.exists() {
        let k = IndexKey::generate()?;
        write_secret(&index, format!("{}\n", k.to_hex().as_str()).as_bytes())?;
        created.push(index);
    }
    let audit = dir.join(AUDIT_FILE);
    if !audit.exists() {
        let der = AuditSigningKey::generate_pkcs8()?;
        let key = AuditSigningKey::from_pkcs8(&der)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_slice());
        write_secret(&audit, format!("{b64}\n").as_bytes())?;
        created.push(audit);
        let public = dir.join(AUDIT_PUB_FILE);
        fs::write(&public, format!("{}\n", hex::encode(key.public_key())))
            .map_err(|e| keys_err(format!("cannot write {}: {e}", public.display())))?;
        created.push(public);
    }
    sync_dir(dir);
    Ok(created)
}

/// Adds `master-(N+1).key` for a rotation; returns its path.
pub fn add_master_key(dir: &Path) -> Result<PathBuf, DomainError> {
    let next = master_files(dir)?.last().map(|(n, _)| n + 1).unwrap_or(1);
    let p = new_master_file(dir, next)?;
    sync_dir(dir);
    Ok(p)
}

/// Refuses a key file that its group or others can read or write.
fn check_private(path: &Path) -> Result<(), DomainError> {
    let meta =
        fs::metadata(path).map_err(|e| keys_err(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(keys_err(format!(
            "refusing to use {}: it is readable or writable by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

fn read_secret(path: &Path) -> Result<String, DomainError> {
    check_private(path)?;
    fs::read_to_string(path).map_err(|e| keys_err(format!("cannot read {}: {e}", path.display())))
}

/// Loads every key, refusing any key file with group or other permissions.
pub fn load_keys(dir: &Path) -> Result<LoadedKeys, DomainError> {
    let masters = master_files(dir)?;
    if masters.is_empty() {
        return Err(keys_err(format!(
            "no master key (master-N.key) in {}; run `keyhold init --keys {}`",
            dir.display(),
            dir.display()
        )));
    }
    let mut keys = Vec::new();
    for (_, path) in &masters {
        let text = read_secret(path)?;
        keys.push(
            MasterKey::parse(&text).map_err(|e| keys_err(format!("{}: {e}", path.display())))?,
        );
    }
    let index_path = dir.join(INDEX_FILE);
    let index = IndexKey::from_hex(&read_secret(&index_path)?)
        .map_err(|e| keys_err(format!("{}: {e}", index_path.display())))?;
    let audit_path = dir.join(AUDIT_FILE);
    let der = base64::engine::general_purpose::STANDARD
        .decode(read_secret(&audit_path)?.trim())
        .map_err(|_| keys_err(format!("{}: not base64", audit_path.display())))?;
    let audit = AuditSigningKey::from_pkcs8(&der)
        .map_err(|e| keys_err(format!("{}: {e}", audit_path.display())))?;
    Ok(LoadedKeys {
        keyring: MasterKeyring::new(keys)?,
        index,
        audit,
        master_files: masters.into_iter().map(|(_, p)| p).collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_private_files_and_load_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let created = init_keys(dir.path()).unwrap();
        assert_eq!(created.len(), 4);
        for p in &created {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            if p.extension().and_then(|e| e.to_str()) == Some("pub") {
                continue;
            }
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert!(
            init_keys(dir.path()).unwrap().is_empty(),
            "init overwrote or re-created keys"
        );
        let keys = load_keys(dir.path()).unwrap();
        assert_eq!(keys.keyring.len(), 1);
    }

    #[test]
    fn a_group_readable_key_file_is_refused_by_name() {
        for file in ["master-1.key", INDEX_FILE, AUDIT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            init_keys(dir.path()).unwrap();
            let p = dir.path().join(file);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
            match load_keys(dir.path()) {
                Err(DomainError::Keys(msg)) => assert!(msg.contains(file), "{msg}"),
                Err(e) => panic!("{file}: wrong error {e}"),
                Ok(_) => panic!("{file}: group-readable key accepted"),
            }
        }
    }

    #[test]
    fn rotation_adds_a_newer_master_key() {
        let dir = tempfile::tempdir().unwrap();
        init_keys(dir.path()).unwrap();
        let p = add_master_key(dir.path()).unwrap();
        assert!(p.ends_with("master-2.key"));
        let keys = load_keys(dir.path()).unwrap();
        assert_eq!(keys.keyring.len(), 2);
        assert_eq!(keys.master_files.last().unwrap(), &p);
    }
}
