//! Plain text to PDF: a title, a few lines under it, then headed sections,
//! wrapped and paginated on A4 with "Page N of M" at the foot. Used for the
//! disclosure compiled from a record and for the demo's letters.
//!
//! `pdf-writer` writes the file; the layout is ours. The fonts are the
//! standard Courier pair, which every reader has (nothing is embedded) and
//! which is monospaced, so a line's width is its length and wrapping is
//! exact. Text is encoded as WinAnsi: Latin-1 and common punctuation; any
//! other character is shown as `?`.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// A document of plain text: a title, a few lines under it, then sections.
pub struct TextDocument {
    pub title: String,
    /// Lines under the title (who it is about, the date range, when made).
    pub intro: Vec<String>,
    pub sections: Vec<Section>,
    /// Printed at the foot of every page beside "Page N of M".
    pub footer: String,
}

pub struct Section {
    pub heading: String,
    /// Each paragraph is wrapped to the page width; an empty one is a blank line.
    pub paragraphs: Vec<String>,
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;
/// Courier's glyphs are all 600/1000 of an em wide.
const GLYPH_EM: f32 = 0.6;
const TITLE: f32 = 16.0;
const HEADING: f32 = 12.0;
const BODY: f32 = 10.0;
const FOOT: f32 = 8.0;

/// One line as laid out.
struct Line {
    bold: bool,
    size: f32,
    text: Vec<u8>,
    /// Extra space above it (before a heading, after the title).
    gap: f32,
    /// A heading: not left last on a page.
    keep_with_next: bool,
}

/// The WinAnsi byte for `c`, or `?`.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{A0}'..='\u{FF}' => c as u32 as u8,
        '\t' | '\r' | '\n' => b' ',
        '\u{20AC}' => 0x80,
        '\u{2026}' => 0x85,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201C}' => 0x93,
        '\u{201D}' => 0x94,
        '\u{2022}' => 0x95,
        '\u{2013}' => 0x96,
        '\u{2014}' => 0x97,
        _ => b'?',
    }
}

fn chars_per_line(size: f32) -> usize {
    (((PAGE_W - 2.0 * MARGIN) / (size * GLYPH_EM)) as usize).max(1)
}

/// Wraps `text` at spaces into lines of at most `width` characters; a
/// word longer than a line is broken.
fn wrap(text: &str, width: usize) -> Vec<Vec<u8>> {
    let bytes: Vec<u8> = text.chars().map(win_ansi).collect();
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    for word in bytes.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
        let mut word = word;
        loop {
            let needed = if line.is_empty() {
                word.len()
            } else {
                line.len() + 1 + word.len()
            };
            if needed <= width {
                if !line.is_empty() {
                    line.push(b' ');
                }
                line.extend_from_slice(word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // An empty line and a word longer than it: break the word.
            let (head, tail) = word.split_at(width);
            lines.push(head.to_vec());
            word = tail;
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn lay_out(doc: &TextDocument) -> Vec<Line> {
    let mut out = Vec::new();
    let mut push = |bold, size, text: &str, gap, keep| {
        for (i, l) in wrap(text, chars_per_line(size)).into_iter().enumerate() {
            out.push(Line {
                bold,
                size,
                text: l,
                gap: if i == 0 { gap } else { 0.0 },
                keep_with_next: keep,
            });
        }
    };
    push(true, TITLE, &doc.title, 0.0, false);
    for (i, l) in doc.intro.iter().enumerate() {
        push(false, BODY, l, if i == 0 { 8.0 } else { 0.0 }, false);
    }
    for s in &doc.sections {
        push(true, HEADING, &s.heading, 14.0, true);
        for p in &s.paragraphs {
            push(false, BODY, p, 0.0, false);
        }
    }
    out
}

fn height(l: &Line) -> f32 {
    l.gap + l.size * 1.3
}

/// Splits lines into pages; a heading that would end a page starts the next.
fn paginate(lines: Vec<Line>) -> Vec<Vec<Line>> {
    let usable = PAGE_H - 2.0 * MARGIN;
    let mut pages: Vec<Vec<Line>> = vec![Vec::new()];
    let mut used = 0.0;
    let mut iter = lines.into_iter().peekable();
    while let Some(line) = iter.next() {
        let mut need = height(&line);
        if line.keep_with_next {
            need += iter.peek().map(height).unwrap_or(0.0);
        }
        let page_has_lines = pages.last().is_some_and(|p| !p.is_empty());
        if used + need > usable && page_has_lines {
            pages.push(Vec::new());
            used = 0.0;
        }
        used += height(&line);
        if let Some(p) = pages.last_mut() {
            p.push(line);
        }
    }
    pages
}

/// The PDF file's bytes.
pub fn render(doc: &TextDocument) -> Vec<u8> {
    let pages = paginate(lay_out(doc));
    let total = pages.len();
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..total)
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(total as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Courier-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&doc.title))
        .producer(TextStr("Keyhold"));
    let footer: Vec<u8> = doc.footer.chars().map(win_ansi).collect();
    for (n, lines) in pages.iter().enumerate() {
        let page_id = page_ids[n];
        let content_id = Ref::new(page_id.get() + 1);
        let mut content = Content::new();
        let mut y = PAGE_H - MARGIN;
        for line in lines {
            y -= height(line);
            content
                .begin_text()
                .set_font(Name(if line.bold { b"F2" } else { b"F1" }), line.size)
                .next_line(MARGIN, y)
                .show(Str(&line.text))
                .end_text();
        }
        let label = format!("Page {} of {total}", n + 1);
        let max_footer = chars_per_line(FOOT).saturating_sub(label.len() + 2);
        content
            .begin_text()
            .set_font(Name(b"F1"), FOOT)
            .next_line(MARGIN, MARGIN / 2.0)
            .show(Str(&footer[..footer.len().min(max_footer)]))
            .end_text();
        content
            .begin_text()
            .set_font(Name(b"F1"), FOOT)
            .next_line(
                PAGE_W - MARGIN - label.len() as f32 * FOOT * GLYPH_EM,
                MARGIN / 2.0,
            )
            .show(Str(label.as_bytes()))
            .end_text();
        pdf.stream(content_id, &content.finish());
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree)
            .contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
        fonts.finish();
        resources.finish();
        page.finish();
    }
    pdf.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn doc(sections: Vec<Section>) -> TextDocument {
        TextDocument {
            title: "Health records".into(),
            intro: vec!["Patient: Ada Test".into()],
            sections,
            footer: "KH-TEST".into(),
        }
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn a_short_document_is_one_valid_page_with_its_text() {
        let out = render(&doc(vec![Section {
            heading: "1 March 2026 - Allergy".into(),
            paragraphs: vec!["Penicillin: rash".into(), "café".into()],
        }]));
        assert!(out.starts_with(b"%PDF-"));
        assert!(out.trim_ascii_end().ends_with(b"%%EOF"));
        assert_eq!(count(&out, b"Page 1 of 1"), 1);
        assert!(count(&out, b"Penicillin: rash") == 1);
        // Non-ASCII text is written as a hex string of its WinAnsi bytes.
        assert_eq!(
            count(&out.to_ascii_lowercase(), b"<636166e9>"),
            1,
            "café as WinAnsi"
        );
        assert_eq!(
            crate::upload::sniff("records.pdf", &out).unwrap(),
            crate::upload::FileType::Pdf
        );
    }

    #[test]
    fn long_documents_get_pages_each_numbered_of_the_total() {
        let sections = (0..500)
            .map(|i| Section {
                heading: format!("Entry {i}"),
                paragraphs: vec![format!("Line of entry {i}")],
            })
            .collect();
        let out = render(&doc(sections));
        let total = count(&out, b"/Type /Page") - count(&out, b"/Type /Pages");
        assert!(total > 5, "{total} pages");
        for n in 1..=total {
            assert_eq!(
                count(&out, format!("(Page {n} of {total})").as_bytes()),
                1,
                "page {n}"
            );
        }
    }

    #[test]
    fn lines_wrap_at_words_and_long_words_break() {
        let width = chars_per_line(BODY);
        let long = "x".repeat(300);
        let lines = wrap(&format!("short words then {long} end"), width);
        assert!(lines.iter().all(|l| l.len() <= width));
        assert_eq!(lines[0], b"short words then".to_vec());
        assert_eq!(
            lines
                .iter()
                .map(|l| l.iter().filter(|b| **b == b'x').count())
                .sum::<usize>(),
            300
        );
        assert!(
            lines.last().unwrap().ends_with(b"x end"),
            "the rest of the word, then the next"
        );
        assert_eq!(
            wrap("", width),
            vec![Vec::<u8>::new()],
            "an empty paragraph is a blank line"
        );
        assert_eq!(wrap("\u{4E2D} \u{2019}", width), vec![b"? \x92".to_vec()]);
    }

    #[test]
    fn a_heading_is_never_the_last_line_of_a_page() {
        // Fill a page with body lines, then see where each heading lands,
        // for every amount of filler around the page boundary.
        for filler in 40..70 {
            let mut sections = vec![Section {
                heading: "Start".into(),
                paragraphs: vec!["body".into(); filler],
            }];
            sections.push(Section {
                heading: "Next heading".into(),
                paragraphs: vec!["its first line".into()],
            });
            let pages = paginate(lay_out(&doc(sections)));
            for p in &pages {
                let last = p.last().unwrap();
                assert!(
                    !last.keep_with_next,
                    "a heading ends a page with {filler} lines of filler"
                );
            }
        }
    }
}
