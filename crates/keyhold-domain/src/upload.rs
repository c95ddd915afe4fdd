//! What an uploaded file is, decided by its content (magic bytes) and checked
//! against its name; and a file name made safe to store and to send back.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// The accepted document types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    Pdf,
    Tiff,
    Png,
    Bmp,
    Jpeg,
    Doc,
    Docx,
}

impl FileType {
    pub fn content_type(&self) -> &'static str {
        match self {
            FileType::Pdf => "application/pdf",
            FileType::Tiff => "image/tiff",
            FileType::Png => "image/png",
            FileType::Bmp => "image/bmp",
            FileType::Jpeg => "image/jpeg",
            FileType::Doc => "application/msword",
            FileType::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            FileType::Pdf => "PDF",
            FileType::Tiff => "TIFF image",
            FileType::Png => "PNG image",
            FileType::Bmp => "BMP image",
            FileType::Jpeg => "JPEG image",
            FileType::Doc => "Word document (DOC)",
            FileType::Docx => "Word document (DOCX)",
        }
    }

    fn extensions(&self) -> &'static [&'static str] {
        match self {
            FileType::Pdf => &["pdf"],
            FileType::Tiff => &["tif", "tiff"],
            FileType::Png => &["png"],
            FileType::Bmp => &["bmp"],
            FileType::Jpeg => &["jpg", "jpeg"],
            FileType::Doc => &["doc"],
            FileType::Docx => &["docx"],
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        let ext = ext.to_ascii_lowercase();
        [
            FileType::Pdf,
            FileType::Tiff,
            FileType::Png,
            FileType::Bmp,
            FileType::Jpeg,
            FileType::Doc,
            FileType::Docx,
        ]
        .into_iter()
        .find(|t| t.extensions().contains(&ext.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("Select a file to upload")]
    Empty,
    #[error("The selected file must be a PDF, TIFF, PNG, BMP, JPEG, DOC or DOCX")]
    UnsupportedName,
    #[error("The selected file is not a real {0}: its contents do not match its name")]
    ContentMismatch(&'static str),
}

/// Word documents are zip files; refuse archives that would expand beyond this
/// (zip bombs) or that hold an absurd number of entries.
const DOCX_MAX_EXPANDED: u64 = 256 * 1024 * 1024;
const DOCX_MAX_ENTRIES: usize = 10_000;

fn is_docx(bytes: &[u8]) -> bool {
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return false;
    };
    if zip.len() > DOCX_MAX_ENTRIES {
        return false;
    }
    let mut total = 0u64;
    let mut has_types = false;
    let mut has_body = false;
    for i in 0..zip.len() {
        let Ok(f) = zip.by_index_raw(i) else {
            return false;
        };
        total = total.saturating_add(f.size());
        match f.name().as_deref() {
            Ok("[Content_Types].xml") => has_types = true,
            Ok("word/document.xml") => has_body = true,
            _ => {}
        }
    }
    has_types && has_body && total <= DOCX_MAX_EXPANDED
}

fn is_bmp(b: &[u8]) -> bool {
    // "BM", then the DIB header size at offset 14 must be one of the known ones.
    b.len() >= 26
        && b.starts_with(b"BM")
        && matches!(
            u32::from_le_bytes([b[14], b[15], b[16], b[17]]),
            12 | 40 | 52 | 56 | 64 | 108 | 124
        )
}

fn content_is(t: FileType, b: &[u8]) -> bool {
    match t {
        FileType::Pdf => b.starts_with(b"%PDF-"),
        FileType::Tiff => b.starts_with(b"II*\0") || b.starts_with(b"MM\0*"),
        FileType::Png => b.starts_with(b"\x89PNG\r\n\x1a\n"),
        FileType::Bmp => is_bmp(b),
        FileType::Jpeg => b.starts_with(&[0xFF, 0xD8, 0xFF]),
        FileType::Doc => b.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]),
        FileType::Docx => b.starts_with(b"PK\x03\x04") && is_docx(b),
    }
}

/// The type of an upload: its name must end in an accepted extension, and its
/// content must really be that type.
pub fn sniff(filename: &str, bytes: &[u8]) -> Result<FileType, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    let ext = filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let claimed = FileType::from_extension(ext).ok_or(UploadError::UnsupportedName)?;
    if content_is(claimed, bytes) {
        Ok(claimed)
    } else {
        Err(UploadError::ContentMismatch(claimed.label()))
    }
}

/// A name safe to store and to put in a Content-Disposition header: the last
/// path component, letters, digits and ` ._()-` only, at most 100 characters,
/// ending in the detected type's extension.
pub fn clean_filename(raw: &str, t: FileType) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let (stem, ext) = match base.rsplit_once('.') {
        Some((s, e)) if t.extensions().contains(&e.to_ascii_lowercase().as_str()) => {
            (s, e.to_ascii_lowercase())
        }
        _ => (base, t.extensions()[0].to_string()),
    };
    let mut cleaned = String::with_capacity(stem.len());
    let mut last_sep = false;
    for c in stem.chars() {
        let ok = c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '(' | ')' | '-');
        let c = if ok { c } else { '_' };
        let sep = c == '_' || c == ' ';
        if sep && last_sep {
            continue;
        }
        last_sep = sep;
        cleaned.push(c);
    }
    let trimmed: String = cleaned
        .trim_matches(|c: char| c == '.' || c == ' ' || c == '_' || c == '-')
        .chars()
        .take(100 - ext.len() - 1)
        .collect();
    let stem = if trimmed.is_empty() {
        "document".to_string()
    } else {
        trimmed
    };
    format!("{stem}.{ext}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn docx(with_body: bool) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            z.start_file("[Content_Types].xml", o).unwrap();
            z.write_all(b"<Types/>").unwrap();
            if with_body {
                z.start_file("word/document.xml", o).unwrap();
                z.write_all(b"<w:document/>").unwrap();
            }
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn each_type_is_recognised_by_content() {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 12]);
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 8]);
        let cases: Vec<(&str, Vec<u8>, FileType)> = vec![
            ("a.pdf", b"%PDF-1.7\n...".to_vec(), FileType::Pdf),
            ("a.TIF", b"II*\0rest".to_vec(), FileType::Tiff),
            ("a.tiff", b"MM\0*rest".to_vec(), FileType::Tiff),
            ("a.png", b"\x89PNG\r\n\x1a\nrest".to_vec(), FileType::Png),
            ("a.bmp", bmp, FileType::Bmp),
            ("a.jpeg", vec![0xFF, 0xD8, 0xFF, 0xE0, 0], FileType::Jpeg),
            ("a.jpg", vec![0xFF, 0xD8, 0xFF, 0xE1, 0], FileType::Jpeg),
            (
                "a.doc",
                vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0],
                FileType::Doc,
            ),
            ("a.docx", docx(true), FileType::Docx),
        ];
        for (name, bytes, t) in cases {
            assert_eq!(sniff(name, &bytes), Ok(t), "{name}");
        }
    }

    #[test]
    fn names_and_contents_that_disagree_are_refused() {
        assert_eq!(
            sniff("x.pdf", b"<html><script>"),
            Err(UploadError::ContentMismatch("PDF"))
        );
        assert_eq!(
            sniff("x.png", b"%PDF-1.4"),
            Err(UploadError::ContentMismatch("PNG image"))
        );
        assert_eq!(sniff("x.exe", b"MZ"), Err(UploadError::UnsupportedName));
        assert_eq!(sniff("pdf", b"%PDF-1.4"), Err(UploadError::UnsupportedName));
        assert_eq!(sniff("x.pdf", b""), Err(UploadError::Empty));
        // A zip that is not a Word document, and a truncated one.
        assert!(sniff("x.docx", &docx(false)).is_err());
        assert!(sniff("x.docx", &docx(true)[..30]).is_err());
        assert!(sniff("x.bmp", b"BM\0\0").is_err());
    }

    #[test]
    fn file_names_are_cleaned() {
        assert_eq!(
            clean_filename("../../etc/passwd.pdf", FileType::Pdf),
            "passwd.pdf"
        );
        assert_eq!(
            clean_filename("C:\\Users\\ann\\Letter 1.PDF", FileType::Pdf),
            "Letter 1.pdf"
        );
        assert_eq!(
            clean_filename("a\u{0}b\r\n<script>.pdf", FileType::Pdf),
            "a_b_script.pdf"
        );
        assert_eq!(clean_filename("....pdf", FileType::Pdf), "document.pdf");
        assert_eq!(clean_filename("scan", FileType::Jpeg), "scan.jpg");
        assert_eq!(clean_filename("x.pdf.exe", FileType::Pdf), "x.pdf.exe.pdf");
        let long = format!("{}.pdf", "a".repeat(500));
        assert_eq!(clean_filename(&long, FileType::Pdf).len(), 100);
        assert_eq!(
            clean_filename("rapport-médical.pdf", FileType::Pdf),
            "rapport-m_dical.pdf"
        );
    }
}
