//! Files of a request: the documents the requester sends with the form or
//! a message, files the records team sends with a question, and the
//! disclosure. Checked by content like record documents, sealed in chunks
//! under the request's key (or, for a disclosure, the disclosure key).

use std::sync::Arc;

use keyhold_crypto::{open, DataKey};
use keyhold_storage::{Batch, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{FileView, Loaded};
use crate::ids::KeyOwner;
use crate::trees::{ACCESS_REQUEST_CHUNKS, ACCESS_REQUEST_FILES};
use crate::upload::{clean_filename, sniff, FileType};
use crate::vault::Aad;
use crate::{DomainError, FieldError, Keyhold, RequestFileId, RequestId, CHUNK_SIZE};

/// At most this many files in one upload (each within the upload limit).
pub const MAX_FILES_PER_UPLOAD: usize = 10;

/// A file as it arrived.
pub struct Upload {
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// Whose file it is, which decides its key and who may remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileRole {
    Requester,
    Team,
    Disclosure,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileMeta {
    pub name: String,
    pub label: String,
    pub file_type: FileType,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileRowV1 {
    pub role: FileRole,
    pub chunks: u32,
    /// `FileMeta`, sealed.
    pub meta: Vec<u8>,
}

fn owner(id: RequestId, role: FileRole) -> KeyOwner {
    match role {
        FileRole::Disclosure => KeyOwner::Disclosure(id),
        _ => KeyOwner::Request(id),
    }
}

pub(crate) fn file_key(id: RequestId, file: RequestFileId) -> Vec<u8> {
    crate::trees::pair(id.as_bytes(), file.as_bytes())
}

fn chunk_key(id: RequestId, file: RequestFileId, i: u32) -> Vec<u8> {
    let mut k = file_key(id, file);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// What a chunk is bound to: the file and its chunk count, so a
/// truncated file fails to open.
fn chunk_record(file: RequestFileId, chunks: u32) -> Vec<u8> {
    let mut r = file.as_bytes().to_vec();
    r.extend_from_slice(&chunks.to_be_bytes());
    r
}

/// A file opened for download; its chunks are opened as they are read.
pub struct RequestFile {
    pub name: String,
    pub size: u64,
    pub content_type: &'static str,
    request: RequestId,
    file: RequestFileId,
    chunks: u32,
    next: u32,
    dek: Arc<DataKey>,
    owner: KeyOwner,
    store: Arc<dyn Store>,
}

impl Iterator for RequestFile {
    type Item = Result<Zeroizing<Vec<u8>>, DomainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.chunks {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let record = chunk_record(self.file, self.chunks);
        let aad = Aad::access_request(self.owner, "file-chunk", &record, i);
        Some((|| {
            let sealed = self
                .store
                .get(
                    ACCESS_REQUEST_CHUNKS,
                    &chunk_key(self.request, self.file, i),
                )?
                .ok_or_else(|| DomainError::Internal("a file chunk is missing".into()))?;
            Ok(open(&self.dek, &aad.bytes(), &sealed)?)
        })())
    }
}

impl RequestFile {
    pub fn read_all(self) -> Result<Vec<u8>, DomainError> {
        let mut out = Vec::with_capacity(self.size as usize);
        for c in self {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }
}

impl Keyhold {
    /// Checks uploads: count, size and type by content; the first problem
    /// is said beside the file field.
    pub(crate) fn check_uploads(&self, uploads: &[Upload]) -> Result<Vec<FileType>, DomainError> {
        if uploads.len() > MAX_FILES_PER_UPLOAD {
            return Err(DomainError::invalid(
                "files",
                format!("Upload {MAX_FILES_PER_UPLOAD} files or fewer at a time"),
            ));
        }
        let mut types = Vec::new();
        for u in uploads {
            if u.bytes.len() > self.settings.max_upload_bytes {
                return Err(DomainError::TooLarge {
                    limit: self.settings.max_upload_bytes,
                });
            }
            let t = sniff(&u.filename, &u.bytes).map_err(|e| {
                DomainError::Invalid(vec![FieldError::new(
                    "files",
                    format!(
                        "{}: {e}",
                        clean_filename(&u.filename, FileType::Pdf).trim_end_matches(".pdf")
                    ),
                )])
            })?;
            types.push(t);
        }
        Ok(types)
    }

    /// Seals `uploads` into `batch` as files of `role` labelled `label`.
    pub(crate) fn add_files_into(
        &self,
        batch: &mut Batch,
        l: &Loaded,
        uploads: Vec<Upload>,
        role: FileRole,
        label: &str,
    ) -> Result<Vec<RequestFileId>, DomainError> {
        let types = self.check_uploads(&uploads)?;
        let mut ids = Vec::new();
        for (u, t) in uploads.into_iter().zip(types) {
            ids.push(self.file_into(
                batch,
                l.id,
                role,
                &clean_filename(&u.filename, t),
                label,
                t,
                &u.bytes,
            )?);
        }
        Ok(ids)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn file_into(
        &self,
        batch: &mut Batch,
        id: RequestId,
        role: FileRole,
        name: &str,
        label: &str,
        file_type: FileType,
        bytes: &[u8],
    ) -> Result<RequestFileId, DomainError> {
        let file = RequestFileId::new_random();
        let owner = owner(id, role);
        let dek = self.vault.key(owner)?;
        let chunks =
            u32::try_from(bytes.len().div_ceil(CHUNK_SIZE)).map_err(|_| DomainError::TooLarge {
                limit: self.settings.max_upload_bytes,
            })?;
        let record = chunk_record(file, chunks);
        for (i, chunk) in bytes.chunks(CHUNK_SIZE).enumerate() {
            let i =
                u32::try_from(i).map_err(|_| DomainError::Internal("too many chunks".into()))?;
            let sealed = self.vault.seal(
                &dek,
                &Aad::access_request(owner, "file-chunk", &record, i),
                chunk,
            )?;
            batch.put(ACCESS_REQUEST_CHUNKS, chunk_key(id, file, i), sealed);
        }
        let meta = FileMeta {
            name: name.to_string(),
            label: label.to_string(),
            file_type,
            size: bytes.len() as u64,
            uploaded_at: self.clock.now(),
        };
        let sealed = self.vault.seal(
            &dek,
            &Aad::access_request(owner, "file", file.as_bytes(), 0),
            &serde_json::to_vec(&meta)?,
        )?;
        let key = file_key(id, file);
        batch.require_absent(ACCESS_REQUEST_FILES, key.clone());
        batch.put(
            ACCESS_REQUEST_FILES,
            key,
            serde_json::to_vec(&FileRowV1 {
                role,
                chunks,
                meta: sealed,
            })?,
        );
        Ok(file)
    }

    fn file_meta(
        &self,
        id: RequestId,
        file: RequestFileId,
        row: &FileRowV1,
    ) -> Result<FileMeta, DomainError> {
        let owner = owner(id, row.role);
        let dek = self.vault.key(owner)?;
        let plain = self.vault.open(
            &dek,
            &Aad::access_request(owner, "file", file.as_bytes(), 0),
            &row.meta,
        )?;
        Ok(serde_json::from_slice(&plain)?)
    }

    /// The request's files: (the requester's and the team's, the disclosure).
    pub(crate) fn request_files(
        &self,
        l: &Loaded,
    ) -> Result<(Vec<FileView>, Vec<FileView>), DomainError> {
        let (mut sent, mut disclosed) = (Vec::new(), Vec::new());
        for item in self.store.scan(ACCESS_REQUEST_FILES, l.id.as_bytes()) {
            let (k, raw) = item?;
            let Some(file) = RequestFileId::from_bytes(&k[16..]) else {
                continue;
            };
            let row: FileRowV1 = serde_json::from_slice(&raw)?;
            let m = self.file_meta(l.id, file, &row)?;
            let v = FileView {
                id: file,
                name: m.name,
                label: m.label,
                size: m.size,
                type_label: m.file_type.label(),
                uploaded_at: m.uploaded_at,
            };
            if row.role == FileRole::Disclosure {
                disclosed.push(v)
            } else {
                sent.push(v)
            }
        }
        sent.sort_by_key(|f| f.uploaded_at);
        disclosed.sort_by(|a, b| a.uploaded_at.cmp(&b.uploaded_at).then(a.name.cmp(&b.name)));
        Ok((sent, disclosed))
    }

    pub(crate) fn file_row(
        &self,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<FileRowV1, DomainError> {
        let raw = self
            .store
            .get(ACCESS_REQUEST_FILES, &file_key(id, file))?
            .ok_or(DomainError::NotFound)?;
        Ok(serde_json::from_slice(&raw)?)
    }

    pub(crate) fn open_file(
        &self,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<RequestFile, DomainError> {
        let row = self.file_row(id, file)?;
        let meta = self.file_meta(id, file, &row)?;
        let owner = owner(id, row.role);
        Ok(RequestFile {
            name: meta.name,
            size: meta.size,
            content_type: meta.file_type.content_type(),
            request: id,
            file,
            chunks: row.chunks,
            next: 0,
            dek: self.vault.key(owner)?,
            owner,
            store: self.store.clone(),
        })
    }

    /// Adds the deletion of one file (row and chunks) to `batch`.
    pub(crate) fn delete_file_into(
        &self,
        batch: &mut Batch,
        id: RequestId,
        file: RequestFileId,
        row: &FileRowV1,
    ) {
        for i in 0..row.chunks {
            batch.delete(ACCESS_REQUEST_CHUNKS, chunk_key(id, file, i));
        }
        batch.delete(ACCESS_REQUEST_FILES, file_key(id, file));
    }

    /// The request's files of `role`, with their rows.
    pub(crate) fn files_of_role(
        &self,
        id: RequestId,
        role: FileRole,
    ) -> Result<Vec<(RequestFileId, FileRowV1)>, DomainError> {
        let mut out = Vec::new();
        for item in self.store.scan(ACCESS_REQUEST_FILES, id.as_bytes()) {
            let (k, raw) = item?;
            let Some(file) = RequestFileId::from_bytes(&k[16..]) else {
                continue;
            };
            let row: FileRowV1 = serde_json::from_slice(&raw)?;
            if row.role == role {
                out.push((file, row));
            }
        }
        Ok(out)
    }
}
