//! "Download everything": the whole record the viewer may export — a FHIR
//! Bundle (`record.json`) and the documents — in one zip, encrypted with a
//! passphrase of the person's choosing when they give one (age format, so
//! any age tool opens it). The domain decides and audits the export once;
//! the zip is streamed, never held whole in memory.

use std::io::Write;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyhold_domain::passphrase::passphrase_writer;
use keyhold_domain::FieldError;
use serde::{Deserialize, Serialize};

use crate::error::WebError;
use crate::extract::{csrf_field, Subject, Submitted};
use crate::pages::{insert_errors, record_context, render};
use crate::routes::documents::{copy_document, stream_from_blocking, unique_name};
use crate::AppState;

/// Short passphrases fall to guessing even under scrypt.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

#[derive(Deserialize, Serialize, Default)]
pub struct ExportForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default, skip_serializing)]
    passphrase: String,
    #[serde(default, skip_serializing, rename = "passphrase-again")]
    passphrase_again: String,
}

csrf_field!(ExportForm);

const README: &str = "Your Keyhold record\n\
===================\n\n\
record.json  Everything in your record that you downloaded, as a FHIR R4 Bundle\n\
             (the standard health records format; other services can import it).\n\
documents/   Your documents, as they were uploaded.\n\n\
This is health information. Keep it somewhere only you can open, and delete\n\
copies you no longer need.\n";

async fn page(
    state: &AppState,
    p: &Subject,
    status: StatusCode,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let header = state.core.header(&p.principal, p.patient).await?;
    if !header.standing.can.export {
        return Err(WebError::NotFound);
    }
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    ctx.insert("min_passphrase", &MIN_PASSPHRASE_CHARS);
    insert_errors(&mut ctx, errors);
    render(
        state,
        &p.viewer,
        status,
        "export.html",
        "Download everything",
        ctx,
    )
}

pub async fn export_page(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    page(&state, &p, StatusCode::OK, &[]).await
}

fn check(form: &ExportForm) -> Result<Option<String>, Vec<FieldError>> {
    let (a, b) = (form.passphrase.as_str(), form.passphrase_again.as_str());
    if a.is_empty() && b.is_empty() {
        return Ok(None);
    }
    let mut errors = Vec::new();
    if a.chars().count() < MIN_PASSPHRASE_CHARS {
        errors.push(FieldError::new(
            "passphrase",
            format!("Passphrase must be {MIN_PASSPHRASE_CHARS} characters or more, or leave both boxes empty"),
        ));
    } else if a.chars().count() > 1024 {
        errors.push(FieldError::new(
            "passphrase",
            "Passphrase must be 1,024 characters or fewer",
        ));
    } else if a != b {
        errors.push(FieldError::new(
            "passphrase-again",
            "The passphrases do not match",
        ));
    }
    if errors.is_empty() {
        Ok(Some(a.to_string()))
    } else {
        Err(errors)
    }
}

pub async fn export(
    State(state): State<AppState>,
    p: Subject,
    s: Submitted<ExportForm>,
) -> Result<Response, WebError> {
    let passphrase = match check(&s.form) {
        Ok(pass) => pass,
        Err(errors) => return page(&state, &p, StatusCode::UNPROCESSABLE_ENTITY, &errors).await,
    };
    let export = state.core.export_record(&p.principal, p.patient).await?;
    let mut seen = std::collections::HashSet::new();
    let named: Vec<_> = export
        .documents
        .into_iter()
        .map(|d| {
            (
                format!("documents/{}", unique_name(&mut seen, &d.meta.filename)),
                d,
            )
        })
        .collect();
    let metas: Vec<_> = named
        .iter()
        .map(|(name, d)| (d.meta.clone(), name.clone()))
        .collect();
    let base = crate::routes::fhir::api_base(&state);
    let bundle = keyhold_fhir::everything(
        &base,
        "collection",
        p.patient,
        &export.demographics,
        &export.entries,
        &metas,
        state.core.today(),
    );
    let json = serde_json::to_vec_pretty(&bundle).map_err(|e| WebError::Internal(e.to_string()))?;
    let encrypted = passphrase.is_some();
    let body = stream_from_blocking(move |w| {
        let write_zip = |out: &mut dyn Write| -> std::io::Result<()> {
            let mut zip = zip::ZipWriter::new_stream(out);
            // Stored: documents are mostly compressed already, and the
            // workspace builds zip without a deflate implementation.
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            let text = stored;
            zip.start_file("README.txt", text)
                .map_err(std::io::Error::other)?;
            zip.write_all(README.as_bytes())?;
            zip.start_file("record.json", text)
                .map_err(std::io::Error::other)?;
            zip.write_all(&json)?;
            for (name, doc) in named {
                zip.start_file(name, stored)
                    .map_err(std::io::Error::other)?;
                copy_document(doc, &mut zip)?;
            }
            zip.finish().map_err(std::io::Error::other)?;
            Ok(())
        };
        match passphrase {
            Some(pass) => {
                let mut sealed = passphrase_writer(&pass, w)?;
                write_zip(&mut sealed)?;
                sealed.finish()?.flush()
            }
            None => {
                let mut w = w;
                write_zip(&mut w)?;
                w.flush()
            }
        }
    });
    let (ctype, name) = if encrypted {
        ("application/octet-stream", "keyhold-record.zip.age")
    } else {
        ("application/zip", "keyhold-record.zip")
    };
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                    .map_err(|e| WebError::Internal(e.to_string()))?,
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}
