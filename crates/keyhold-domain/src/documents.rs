//! Documents: metadata sealed as one value, content sealed in 64 KiB chunks
//! that each bind their index and the chunk count (so chunks cannot be
//! reordered, dropped or moved to another document), read back one chunk at a
//! time so a download never holds a whole file in memory.

use std::sync::Arc;

use keyhold_crypto::{open, DataKey};
use keyhold_storage::{Batch, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::audit::AuditAction;
use crate::ids::KeyOwner;
use crate::policy::{Action, Principal, Resource};
use crate::records::Access;
use crate::rows::DocumentRowV1;
use crate::trees::{pair, DOCUMENTS, DOC_CHUNKS};
use crate::upload::{clean_filename, sniff, FileType};
use crate::vault::Aad;
use crate::{Category, DocumentId, DomainError, FieldError, Keyhold, PatientId, Source};

pub const CHUNK_SIZE: usize = 64 * 1024;

/// What sort of document it is: the headings of the document viewer's tree.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Letter,
    DischargeSummary,
    CarePlan,
    Referral,
    TestResult,
    ScanOrImage,
    Form,
    /// Documents stored before kinds existed read as this.
    #[default]
    Other,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 8] = [
        DocumentKind::Letter,
        DocumentKind::DischargeSummary,
        DocumentKind::CarePlan,
        DocumentKind::Referral,
        DocumentKind::TestResult,
        DocumentKind::ScanOrImage,
        DocumentKind::Form,
        DocumentKind::Other,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn slug(&self) -> &'static str {
        match self {
            DocumentKind::Letter => "letter",
            DocumentKind::DischargeSummary => "discharge_summary",
            DocumentKind::CarePlan => "care_plan",
            DocumentKind::Referral => "referral",
            DocumentKind::TestResult => "test_result",
            DocumentKind::ScanOrImage => "scan_or_image",
            DocumentKind::Form => "form",
            DocumentKind::Other => "other",
        }
    }

    /// Singular, for a form's radios.
    pub fn label(&self) -> &'static str {
        match self {
            DocumentKind::Letter => "Letter",
            DocumentKind::DischargeSummary => "Discharge summary",
            DocumentKind::CarePlan => "Care plan",
            DocumentKind::Referral => "Referral",
            DocumentKind::TestResult => "Test result",
            DocumentKind::ScanOrImage => "Scan or image",
            DocumentKind::Form => "Form",
            DocumentKind::Other => "Other document",
        }
    }

    /// Plural, for a heading of the tree.
    pub fn heading(&self) -> &'static str {
        match self {
            DocumentKind::Letter => "Letters",
            DocumentKind::DischargeSummary => "Discharge summaries",
            DocumentKind::CarePlan => "Care plans",
            DocumentKind::Referral => "Referrals",
            DocumentKind::TestResult => "Test results",
            DocumentKind::ScanOrImage => "Scans and images",
            DocumentKind::Form => "Forms",
            DocumentKind::Other => "Other documents",
        }
    }
}

/// What is known about a document besides its content. Sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMeta {
    pub id: DocumentId,
    pub title: String,
    #[serde(default)]
    pub kind: DocumentKind,
    pub filename: String,
    pub file_type: FileType,
    pub size: u64,
    pub category: Category,
    pub source: Source,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

/// An upload as received.
pub struct NewDocument {
    pub title: String,
    pub kind: DocumentKind,
    pub category: Category,
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// Reads a document's content chunk by chunk, opening each as it goes. Holds
/// the data key only as long as it lives.
pub struct DocumentReader {
    pub meta: DocumentMeta,
    patient: PatientId,
    version: u32,
    chunks: u32,
    next: u32,
    dek: Arc<DataKey>,
    store: Arc<dyn Store>,
}

fn chunk_key(patient: PatientId, doc: DocumentId, index: u32) -> Vec<u8> {
    let mut k = pair(patient.as_bytes(), doc.as_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `record` for a chunk's AAD: document id ‖ chunk count, so truncation fails.
fn chunk_record(doc: DocumentId, chunks: u32) -> Vec<u8> {
    let mut r = doc.as_bytes().to_vec();
    r.extend_from_slice(&chunks.to_be_bytes());
    r
}

impl Iterator for DocumentReader {
    type Item = Result<Zeroizing<Vec<u8>>, DomainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.chunks {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let record = chunk_record(self.meta.id, self.chunks);
        let aad = Aad::document_chunk(self.patient, &record, self.version, i);
        Some((|| {
            let sealed = self
                .store
                .get(DOC_CHUNKS, &chunk_key(self.patient, self.meta.id, i))?
                .ok_or_else(|| DomainError::Internal("a document chunk is missing".into()))?;
            Ok(open(&self.dek, &aad.bytes(), &sealed)?)
        })())
    }
}

impl DocumentReader {
    /// Reads the whole content (for small files and tests).
    pub fn read_all(self) -> Result<Vec<u8>, DomainError> {
        let mut out = Vec::with_capacity(usize::try_from(self.meta.size).unwrap_or(0));
        for chunk in self {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

impl Keyhold {
    /// Checks an upload: title, size, and type by content.
    pub fn validate_document(&self, new: &NewDocument) -> Result<FileType, DomainError> {
        if new.bytes.len() > self.settings.max_upload_bytes {
            return Err(DomainError::TooLarge {
                limit: self.settings.max_upload_bytes,
            });
        }
        let mut errors = Vec::new();
        let title = new.title.trim();
        if title.is_empty() {
            errors.push(FieldError::new("title", "Enter a title for the document"));
        } else if title.chars().count() > crate::record::MAX_TITLE_CHARS {
            errors.push(FieldError::new(
                "title",
                "Title must be 200 characters or fewer",
            ));
        }
        let t = sniff(&new.filename, &new.bytes)
            .map_err(|e| errors.push(FieldError::new("file", e.to_string())));
        match t {
            Ok(t) if errors.is_empty() => Ok(t),
            _ => Err(DomainError::Invalid(errors)),
        }
    }

    /// Seals a document into `batch` (no audit; callers add theirs).
    pub(crate) fn document_into(
        &self,
        batch: &mut Batch,
        patient: PatientId,
        new: NewDocument,
        file_type: FileType,
        source: Source,
    ) -> Result<DocumentId, DomainError> {
        let id = DocumentId::new_random();
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let meta = DocumentMeta {
            id,
            title: new.title.trim().to_string(),
            kind: new.kind,
            filename: clean_filename(&new.filename, file_type),
            file_type,
            size: new.bytes.len() as u64,
            category: new.category,
            source,
            uploaded_at: self.clock.now(),
        };
        let chunks = u32::try_from(new.bytes.len().div_ceil(CHUNK_SIZE)).map_err(|_| {
            DomainError::TooLarge {
                limit: self.settings.max_upload_bytes,
            }
        })?;
        let record = chunk_record(id, chunks);
        for (i, chunk) in new.bytes.chunks(CHUNK_SIZE).enumerate() {
            let i =
                u32::try_from(i).map_err(|_| DomainError::Internal("too many chunks".into()))?;
            let sealed =
                self.vault
                    .seal(&dek, &Aad::document_chunk(patient, &record, 1, i), chunk)?;
            batch.put(DOC_CHUNKS, chunk_key(patient, id, i), sealed);
        }
        let sealed_meta = self.vault.seal(
            &dek,
            &Aad::document(patient, &id, 1),
            &serde_json::to_vec(&meta)?,
        )?;
        let key = pair(patient.as_bytes(), id.as_bytes());
        batch.require_absent(DOCUMENTS, key.clone());
        batch.put(
            DOCUMENTS,
            key,
            serde_json::to_vec(&DocumentRowV1 {
                version: 1,
                meta: sealed_meta,
                chunks,
            })?,
        );
        Ok(id)
    }

    /// Stores an upload by the principal: the content, the metadata and the
    /// audit entry are one atomic, durable write.
    pub async fn add_document(
        &self,
        p: &Principal,
        patient: PatientId,
        new: NewDocument,
    ) -> Result<DocumentId, DomainError> {
        let file_type = self.validate_document(&new)?;
        let access = self
            .authorize(
                p,
                Action::Contribute,
                Resource::in_category(patient, new.category),
                AuditAction::Create,
                "document",
            )
            .await?;
        let source = self.source_for(access.basis)?;
        let mut batch = Batch::new();
        let id = self.document_into(&mut batch, patient, new, file_type, source)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Create,
                patient,
                format!("document/{id}"),
            ),
        )?;
        self.store.submit(batch).await?;
        Ok(id)
    }

    fn load_document(
        &self,
        patient: PatientId,
        id: DocumentId,
        raw: &[u8],
        dek: &Arc<DataKey>,
    ) -> Result<DocumentReader, DomainError> {
        let row: DocumentRowV1 = serde_json::from_slice(raw)?;
        let plain = self
            .vault
            .open(dek, &Aad::document(patient, &id, row.version), &row.meta)?;
        Ok(DocumentReader {
            meta: serde_json::from_slice(&plain)?,
            patient,
            version: row.version,
            chunks: row.chunks,
            next: 0,
            dek: dek.clone(),
            store: self.store.clone(),
        })
    }

    pub(crate) fn visible_documents(
        &self,
        p: &Principal,
        patient: PatientId,
        access: &Access,
        action: Action,
    ) -> Result<Vec<DocumentReader>, DomainError> {
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let mut out = Vec::new();
        for item in self.store.scan(DOCUMENTS, patient.as_bytes()) {
            let (key, raw) = item?;
            let id = DocumentId::from_bytes(&key[16..])
                .ok_or_else(|| DomainError::Internal("bad document key".into()))?;
            let doc = self.load_document(patient, id, &raw, &dek)?;
            if access.allows_item(p, action, patient, doc.meta.category, &doc.meta.source) {
                out.push(doc);
            }
        }
        out.sort_by_key(|d| std::cmp::Reverse(d.meta.uploaded_at));
        Ok(out)
    }

    /// The documents the principal may see, newest first.
    pub async fn documents(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Vec<DocumentMeta>, DomainError> {
        let access = self
            .authorize(
                p,
                Action::Read,
                Resource::whole(patient),
                AuditAction::Read,
                "documents",
            )
            .await?;
        let docs: Vec<DocumentMeta> = self
            .visible_documents(p, patient, &access, Action::Read)?
            .into_iter()
            .map(|d| d.meta)
            .collect();
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, "documents".into()))
            .await?;
        Ok(docs)
    }

    /// Opens one document for download; the download is audited (durably)
    /// before the first byte can be read.
    pub async fn open_document(
        &self,
        p: &Principal,
        patient: PatientId,
        id: DocumentId,
    ) -> Result<DocumentReader, DomainError> {
        let what = format!("document/{id}");
        let doc = match self
            .store
            .get(DOCUMENTS, &pair(patient.as_bytes(), id.as_bytes()))?
        {
            Some(raw) => {
                let dek = self.vault.key(KeyOwner::Patient(patient))?;
                Some(self.load_document(patient, id, &raw, &dek)?)
            }
            None => None,
        };
        // Missing and not allowed are decided (and audited) the same way.
        let resource = match &doc {
            Some(d) => Resource::in_category(patient, d.meta.category).entered_by(&d.meta.source),
            None => Resource::whole(patient),
        };
        let access = self
            .authorize(p, Action::Export, resource, AuditAction::Export, &what)
            .await?;
        let doc = doc.ok_or(DomainError::NotFound)?;
        self.audit
            .record(&self.event(p, &access, AuditAction::Export, patient, what))
            .await?;
        Ok(doc)
    }

    /// Opens every document the principal may export (for one zip); one audit entry.
    pub async fn open_all_documents(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Vec<DocumentReader>, DomainError> {
        let access = self
            .authorize(
                p,
                Action::Export,
                Resource::whole(patient),
                AuditAction::Export,
                "documents.zip",
            )
            .await?;
        let docs = self.visible_documents(p, patient, &access, Action::Export)?;
        self.audit
            .record(&self.event(
                p,
                &access,
                AuditAction::Export,
                patient,
                "documents.zip".into(),
            ))
            .await?;
        Ok(docs)
    }
}
