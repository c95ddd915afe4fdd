//! Documents: list, upload (checked by content, limited in size), download one,
//! download all as one zip, streamed.

use std::io::Write;

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::BTreeMap;

use keyhold_domain::{
    Category, DocumentId, DocumentKind, DocumentMeta, DomainError, FieldError, NewDocument, Source,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::WebError;
use crate::extract::{param, Params, Subject};
use crate::pages::{date_time, insert_errors, record_context, render, size_display};
use crate::routes::multipart::read_multipart;
use crate::routes::record::whose;
use crate::AppState;

/// The list's query: a notice after an upload, a search, and an order.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    uploaded: Option<String>,
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
}

/// How the documents in each branch of the tree are ordered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Newest,
    Oldest,
    Title,
}

impl Sort {
    fn parse(s: &str) -> Self {
        match s {
            "oldest" => Sort::Oldest,
            "title" => Sort::Title,
            _ => Sort::Newest,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Title => "title",
        }
    }
}

#[derive(Serialize)]
struct DocRow {
    id: String,
    title: String,
    filename: String,
    size_display: String,
    type_label: &'static str,
    kind_label: &'static str,
    uploaded_at: String,
    category_label: &'static str,
    source: String,
}

/// One heading (a kind of document) under an organisation.
#[derive(Serialize)]
struct Heading {
    label: &'static str,
    documents: Vec<DocRow>,
}

/// One organisation (or "Patient entered") and its headings.
#[derive(Serialize)]
struct Branch {
    source: String,
    count: usize,
    headings: Vec<Heading>,
}

/// Whether every word searched for is in the title, the file name, the kind
/// or where it came from (case-insensitive).
fn matches_search(m: &DocumentMeta, q: &str) -> bool {
    let hay = format!(
        "{} {} {} {}",
        m.title,
        m.filename,
        m.kind.label(),
        m.source.label()
    )
    .to_lowercase();
    q.split_whitespace()
        .all(|w| hay.contains(&w.to_lowercase()))
}

/// The documents as a tree: organisations by name (what the patient entered
/// last), then kinds of document in their fixed order, then documents in
/// the chosen order.
fn tree(docs: &[DocumentMeta], sort: Sort) -> Vec<Branch> {
    let mut by_source: BTreeMap<(bool, String), BTreeMap<DocumentKind, Vec<&DocumentMeta>>> =
        BTreeMap::new();
    for d in docs {
        let key = (matches!(d.source, Source::PatientEntered), d.source.label());
        by_source
            .entry(key)
            .or_default()
            .entry(d.kind)
            .or_default()
            .push(d);
    }
    by_source
        .into_iter()
        .map(|((_, source), kinds)| {
            let mut count = 0;
            let headings = kinds
                .into_iter()
                .map(|(kind, mut list)| {
                    match sort {
                        Sort::Newest => list.sort_by_key(|d| std::cmp::Reverse(d.uploaded_at)),
                        Sort::Oldest => list.sort_by_key(|d| d.uploaded_at),
                        Sort::Title => list.sort_by_key(|d| d.title.to_lowercase()),
                    }
                    count += list.len();
                    Heading {
                        label: kind.heading(),
                        documents: list.into_iter().map(row).collect(),
                    }
                })
                .collect();
            Branch {
                source,
                count,
                headings,
            }
        })
        .collect()
}

fn row(m: &DocumentMeta) -> DocRow {
    DocRow {
        id: m.id.to_string(),
        title: m.title.clone(),
        filename: m.filename.clone(),
        size_display: size_display(m.size),
        type_label: m.file_type.label(),
        kind_label: m.kind.label(),
        uploaded_at: date_time(m.uploaded_at),
        category_label: m.category.label(),
        source: m.source.label(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    p: &Subject,
    status: StatusCode,
    values: serde_json::Value,
    errors: &[FieldError],
    notice: Option<&str>,
    q: &str,
    sort: Sort,
) -> Result<Response, WebError> {
    let docs = state.core.documents(&p.principal, p.patient).await?;
    let header = state.core.header(&p.principal, p.patient).await?;
    let q = q.trim();
    let shown: Vec<DocumentMeta> = docs
        .iter()
        .filter(|m| matches_search(m, q))
        .cloned()
        .collect();
    let categories: Vec<_> = Category::ALL
        .into_iter()
        .map(|c| serde_json::json!({ "value": c.slug(), "label": c.label(), "hint": c.hint() }))
        .collect();
    let kinds: Vec<_> = DocumentKind::ALL
        .into_iter()
        .map(|k| serde_json::json!({ "value": k.slug(), "label": k.label() }))
        .collect();
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    ctx.insert("total", &docs.len());
    ctx.insert("shown", &shown.len());
    ctx.insert("tree", &tree(&shown, sort));
    ctx.insert("q", q);
    ctx.insert("sort", sort.slug());
    ctx.insert("categories", &categories);
    ctx.insert("kinds", &kinds);
    ctx.insert("values", &values);
    ctx.insert(
        "max_upload_display",
        &format!(
            "{} MB",
            state.core.settings().max_upload_bytes / (1024 * 1024)
        ),
    );
    if let Some(n) = notice {
        ctx.insert("notice", n);
    }
    insert_errors(&mut ctx, errors);
    render(
        state,
        &p.viewer,
        status,
        "documents.html",
        &whose(p, &header.demographics, "Your documents", "documents"),
        ctx,
    )
}

fn upload_values(title: &str, kind: &str, category: &str) -> serde_json::Value {
    serde_json::json!({ "title": title, "kind": kind, "category": category })
}

pub async fn list(
    State(state): State<AppState>,
    p: Subject,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<Response, WebError> {
    let notice = q
        .uploaded
        .is_some()
        .then_some("Your document was uploaded and stored encrypted.");
    page(
        &state,
        &p,
        StatusCode::OK,
        upload_values("", "", "general"),
        &[],
        notice,
        &q.q,
        Sort::parse(&q.sort),
    )
    .await
}

pub async fn upload(
    State(state): State<AppState>,
    p: Subject,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_multipart(&state, &p.viewer, multipart).await?;
    let (title, kind, category) = (
        form.field("title"),
        form.field("kind"),
        form.field("category"),
    );
    // No file chosen: an empty one, which the domain's check names.
    let (filename, bytes) = form
        .files
        .into_iter()
        .next()
        .map(|f| (f.filename, f.bytes))
        .unwrap_or_default();
    let values = upload_values(&title, &kind, &category);
    let mut errors = Vec::new();
    // Not choosing a kind files it under "Other documents".
    let parsed_kind = if kind.trim().is_empty() {
        Some(DocumentKind::Other)
    } else {
        DocumentKind::parse(&kind)
    };
    if parsed_kind.is_none() {
        errors.push(FieldError::new(
            "kind",
            "Select what kind of document this is",
        ));
    }
    let parsed_category = Category::parse(&category);
    if parsed_category.is_none() {
        errors.push(FieldError::new(
            "category",
            "Select who this document is for",
        ));
    }
    let (Some(kind), Some(category)) = (parsed_kind, parsed_category) else {
        return page(
            &state,
            &p,
            StatusCode::UNPROCESSABLE_ENTITY,
            values,
            &errors,
            None,
            "",
            Sort::Newest,
        )
        .await;
    };
    let new = NewDocument {
        title,
        kind,
        category,
        filename,
        bytes,
    };
    match state.core.add_document(&p.principal, p.patient, new).await {
        Ok(_) => Ok((
            StatusCode::SEE_OTHER,
            [(
                LOCATION,
                HeaderValue::from_str(&p.at("/documents?uploaded=1"))
                    .map_err(|e| WebError::Internal(e.to_string()))?,
            )],
        )
            .into_response()),
        Err(DomainError::Invalid(errors)) => {
            page(
                &state,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                values,
                &errors,
                None,
                "",
                Sort::Newest,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `attachment; filename="…"`: names are already cleaned to a safe ASCII set.
pub(crate) fn disposition(filename: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Runs a blocking producer that writes into a channel; the response streams it.
pub(crate) fn stream_from_blocking(
    produce: impl FnOnce(ChannelWriter) -> std::io::Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHANNEL_CHUNK),
        }) {
            tracing::error!(error = %e, "streaming a download failed");
            // Ends the body with an error, so the client sees a failed download
            // rather than a silently truncated file.
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

const CHANNEL_CHUNK: usize = 64 * 1024;

/// `Write` into the response body, 64 KiB at a time.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHANNEL_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHANNEL_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes a sealed file's chunks (a record document, a request's file) as
/// they are opened.
pub(crate) fn copy_document(
    doc: impl IntoIterator<Item = Result<zeroize::Zeroizing<Vec<u8>>, DomainError>>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for chunk in doc {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
        out.write_all(&chunk)?;
    }
    Ok(())
}

pub async fn download(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: DocumentId = param(&params, "id")?;
    let doc = state
        .core
        .open_document(&p.principal, p.patient, id)
        .await?;
    let headers = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static(doc.meta.file_type.content_type()),
        ),
        (CONTENT_DISPOSITION, disposition(&doc.meta.filename)),
        (CONTENT_LENGTH, HeaderValue::from(doc.meta.size)),
    ];
    let body = stream_from_blocking(move |mut w| {
        copy_document(doc, &mut w)?;
        w.flush()
    });
    Ok((headers, body).into_response())
}

/// Names inside the zip are unique: a repeated name gets " (2)", " (3)", … .
pub(crate) fn unique_name(seen: &mut std::collections::HashSet<String>, name: &str) -> String {
    if seen.insert(name.to_string()) {
        return name.to_string();
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    (2..)
        .map(|n| {
            if ext.is_empty() {
                format!("{stem} ({n})")
            } else {
                format!("{stem} ({n}).{ext}")
            }
        })
        .find(|candidate| seen.insert(candidate.clone()))
        .unwrap_or_else(|| name.to_string())
}

pub async fn zip_all(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    let docs = state
        .core
        .open_all_documents(&p.principal, p.patient)
        .await?;
    let body = stream_from_blocking(move |w| {
        let mut zip = zip::ZipWriter::new_stream(w);
        // Documents are mostly compressed already (PDF, JPEG, DOCX): store them.
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(false);
        let mut seen = std::collections::HashSet::new();
        for doc in docs {
            let name = unique_name(&mut seen, &doc.meta.filename);
            zip.start_file(name, options)
                .map_err(std::io::Error::other)?;
            copy_document(doc, &mut zip)?;
        }
        let mut w = zip.finish().map_err(std::io::Error::other)?.into_inner();
        w.flush()
    });
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/zip")),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"keyhold-documents.zip\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_in_a_zip_are_numbered() {
        let mut seen = std::collections::HashSet::new();
        assert_eq!(unique_name(&mut seen, "letter.pdf"), "letter.pdf");
        assert_eq!(unique_name(&mut seen, "letter.pdf"), "letter (2).pdf");
        assert_eq!(unique_name(&mut seen, "letter.pdf"), "letter (3).pdf");
    }
}
