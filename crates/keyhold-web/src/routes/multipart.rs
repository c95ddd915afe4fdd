//! Upload forms: a multipart body read with its CSRF token first, so nothing
//! of a forged upload is buffered, and a file over the limit read to the end
//! (and dropped) so the browser gets the 413 page, not a reset connection.

use std::collections::BTreeMap;

use axum::extract::Multipart;
use axum::http::StatusCode;
use keyhold_domain::access_requests::Upload;

use crate::error::WebError;
use crate::extract::Viewer;
use crate::AppState;

/// A multipart form: its text fields and its files (fields `file` or `files`).
pub(crate) struct MultipartForm {
    pub fields: BTreeMap<String, String>,
    pub files: Vec<Upload>,
}

impl MultipartForm {
    pub fn field(&self, name: &str) -> String {
        self.fields.get(name).cloned().unwrap_or_default()
    }
}

/// The request body may exceed the file limit by the multipart framing and the
/// other fields. Past the file limit we keep reading (and discarding) up to this
/// cap, so the browser gets our 413 page instead of a reset connection.
pub fn upload_body_cap(max_file: usize) -> usize {
    max_file.saturating_mul(2).saturating_add(1024 * 1024)
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> WebError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::TooLarge { limit }
    } else {
        WebError::BadRequest(e.body_text())
    }
}

/// Reads the form; every file must be within the upload limit. A file
/// input left empty (no name, no bytes) is not a file.
pub(crate) async fn read_multipart(
    state: &AppState,
    viewer: &Viewer,
    mut multipart: Multipart,
) -> Result<MultipartForm, WebError> {
    let limit = state.core.settings().max_upload_bytes;
    let mut csrf_ok = false;
    let mut too_large = false;
    let mut out = MultipartForm {
        fields: BTreeMap::new(),
        files: Vec::new(),
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        if !csrf_ok {
            if name != "csrf_token" {
                return Err(WebError::Csrf);
            }
            let token = field.text().await.map_err(|e| multipart_error(e, limit))?;
            viewer.check_csrf(state, &token)?;
            csrf_ok = true;
            continue;
        }
        if name == "file" || name == "files" {
            let filename = field.file_name().unwrap_or("").to_string();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                if too_large || bytes.len() + chunk.len() > limit {
                    too_large = true;
                    bytes = Vec::new();
                    continue;
                }
                bytes.extend_from_slice(&chunk);
            }
            let empty = filename.is_empty() && bytes.is_empty();
            if !too_large && !empty {
                out.files.push(Upload { filename, bytes });
            }
        } else if !name.is_empty() {
            let text = field.text().await.map_err(|e| multipart_error(e, limit))?;
            if text.len() > 64 * 1024 {
                return Err(WebError::FormTooLarge);
            }
            out.fields.insert(name, text);
        }
    }
    if !csrf_ok {
        return Err(WebError::Csrf);
    }
    if too_large {
        return Err(WebError::TooLarge { limit });
    }
    Ok(out)
}
