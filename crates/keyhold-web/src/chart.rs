//! Scores over time as a server-rendered SVG: no JavaScript, no styles (the
//! CSP allows none inline; presentation attributes only), readable by screen
//! readers through `role="img"`, its `<title>` and a `<desc>` that states
//! every score in words. Pages show the same data as a table beside it.
//!
//! Layout: x is the completion dates, one evenly spaced slot per score in
//! order (so two scores on one day stay apart and every point gets its date
//! label); y runs from 0 to the questionnaire's highest total, shaded by
//! severity band with the band names at the right; the points are joined by
//! a line and each is labelled with its score. A pure function: no I/O.

use std::fmt::Write as _;

use keyhold_domain::assignments::{bands, short_name};
use keyhold_domain::questionnaires::{Questionnaire, Severity};
use time::Date;

use crate::pages::long_date;

const LEFT: f64 = 44.0;
const RIGHT: f64 = 140.0;
const TOP: f64 = 20.0;
const PLOT_HEIGHT: f64 = 240.0;
const BOTTOM: f64 = 44.0;
const MIN_PLOT_WIDTH: f64 = 480.0;
const SLOT: f64 = 60.0;
/// At most this many date labels under the axis (the table has them all).
const MAX_DATE_LABELS: usize = 8;
const TEXT: &str = "#212b32";
const LINE: &str = "#005eb8";
const GRID: &str = "#aeb7bd";

/// One questionnaire's scores, ready for a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The `<svg>` element, or `None` when there is nothing to draw.
    pub svg: Option<String>,
    /// One sentence saying what the chart shows (or that there are no scores).
    pub summary: String,
}

/// Escapes text for XML and HTML (content and attribute values alike).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short_date(d: Date) -> String {
    let month = d.month().to_string();
    let abbr: String = month.chars().take(3).collect();
    format!("{} {abbr} {}", d.day(), d.year())
}

fn band_fill(s: Severity) -> &'static str {
    match s {
        Severity::Minimal => "#edf5ee",
        Severity::Mild => "#faf5dc",
        Severity::Moderate => "#fcecd9",
        Severity::ModeratelySevere => "#fbe1dc",
        Severity::Severe => "#f5d3d3",
    }
}

/// "12 (moderate) on 3 March 2026".
fn in_words(date: Date, total: u8, band: Severity) -> String {
    format!("{total} ({}) on {}", band.label(), long_date(date))
}

/// The chart of `points` (completion date, total, band; oldest first) for
/// `q`. No points: no chart, and a sentence saying so.
pub fn scores_chart(q: Questionnaire, points: &[(Date, u8, Severity)]) -> Chart {
    let name = short_name(q);
    let max = q.max_score();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Chart {
            svg: None,
            summary: format!("There are no {name} scores yet."),
        };
    };
    let summary = if points.len() == 1 {
        format!(
            "One {name} score, out of {max}: {}.",
            in_words(first.0, first.1, first.2)
        )
    } else {
        format!(
            "{} {name} scores, out of {max}, from {} to {}. The latest is {}.",
            points.len(),
            long_date(first.0),
            long_date(last.0),
            in_words(last.0, last.1, last.2)
        )
    };
    let band_list = bands(q);
    let desc = format!(
        "{name} scores, out of {max}, oldest first: {}. Bands: {}.",
        points
            .iter()
            .map(|&(d, t, b)| in_words(d, t, b))
            .collect::<Vec<_>>()
            .join("; "),
        band_list
            .iter()
            .map(|(lo, hi, b)| format!("{lo} to {hi} {}", b.label()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let n = points.len();
    let plot_w = MIN_PLOT_WIDTH.max(SLOT * n as f64);
    let width = LEFT + plot_w + RIGHT;
    let height = TOP + PLOT_HEIGHT + BOTTOM;
    let max_f = f64::from(max.max(1));
    let y = |v: f64| TOP + PLOT_HEIGHT * (1.0 - v / max_f);
    let step = plot_w / n as f64;
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    let id = q.id();

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" \
         aria-labelledby=\"chart-{id}-title chart-{id}-desc\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" font-family=\"Frutiger W01, Arial, sans-serif\">"
    );
    let _ = write!(
        s,
        "<title id=\"chart-{id}-title\">{}</title><desc id=\"chart-{id}-desc\">{}</desc>",
        esc(&format!("{name} scores over time")),
        esc(&desc)
    );

    // Severity bands, lowest at the bottom, each named at the right. Edges
    // fall half-way between totals, so a point sits inside its own band.
    let edge = |lo: u8| (f64::from(lo) - 0.5).max(0.0);
    for (i, &(lo, _, band)) in band_list.iter().enumerate() {
        let top_value = band_list
            .get(i + 1)
            .map(|next| edge(next.0))
            .unwrap_or(max_f);
        let (y0, y1) = (y(top_value), y(edge(lo)));
        let _ = write!(
            s,
            "<rect x=\"{LEFT:.1}\" y=\"{y0:.1}\" width=\"{plot_w:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            y1 - y0,
            band_fill(band)
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{TEXT}\" dominant-baseline=\"middle\">{}</text>",
            LEFT + plot_w + 8.0,
            (y0 + y1) / 2.0,
            esc(band.label())
        );
    }
    // The y axis: 0, where each band starts, and the maximum.
    let mut ticks: Vec<u8> = band_list.iter().map(|b| b.0).collect();
    ticks.push(max);
    for t in ticks {
        let ty = y(f64::from(t));
        let _ = write!(
            s,
            "<line x1=\"{LEFT:.1}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>",
            LEFT + plot_w
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{ty:.1}\" font-size=\"12\" fill=\"{TEXT}\" text-anchor=\"end\" dominant-baseline=\"middle\">{t}</text>",
            LEFT - 6.0
        );
    }
    let base = TOP + PLOT_HEIGHT;
    let _ = write!(
        s,
        "<line x1=\"{LEFT:.1}\" y1=\"{TOP:.1}\" x2=\"{LEFT:.1}\" y2=\"{base:.1}\" stroke=\"{TEXT}\" stroke-width=\"1\"/>\
         <line x1=\"{LEFT:.1}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"{TEXT}\" stroke-width=\"1\"/>",
        LEFT + plot_w
    );

    // Dates under the axis (every k-th when there are many, and the last).
    let every = n.div_ceil(MAX_DATE_LABELS).max(1);
    for (i, &(d, _, _)) in points.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{TEXT}\" text-anchor=\"middle\">{}</text>",
                x(i),
                base + 20.0,
                esc(&short_date(d))
            );
        }
    }

    // The line, then the points over it, each labelled with its score.
    if n > 1 {
        let coords: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(f64::from(p.1))))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{LINE}\" stroke-width=\"2\" points=\"{}\"/>",
            coords.join(" ")
        );
    }
    for (i, &(_, total, _)) in points.iter().enumerate() {
        let (px, py) = (x(i), y(f64::from(total)));
        // Above the point, unless that would leave the plot.
        let ly = if py - 10.0 < TOP + 4.0 {
            py + 20.0
        } else {
            py - 10.0
        };
        let _ = write!(
            s,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"5\" fill=\"{LINE}\" stroke=\"#ffffff\" stroke-width=\"2\"/>\
             <text x=\"{px:.1}\" y=\"{ly:.1}\" font-size=\"13\" font-weight=\"bold\" fill=\"{TEXT}\" text-anchor=\"middle\">{total}</text>"
        );
    }
    s.push_str("</svg>");
    Chart {
        svg: Some(s),
        summary,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use time::macros::date;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// The value of `attr` on each element named `tag`, in order.
    fn attrs(svg: &str, tag: &str, attr: &str) -> Vec<f64> {
        svg.match_indices(&format!("<{tag} "))
            .map(|(i, _)| {
                let el = &svg[i..i + svg[i..].find('>').unwrap()];
                let at = el.find(&format!(" {attr}=\"")).unwrap() + attr.len() + 3;
                el[at..at + el[at..].find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    fn pt(d: Date, total: u8, q: Questionnaire) -> (Date, u8, Severity) {
        (d, total, q.severity(total))
    }

    #[test]
    fn no_scores_no_chart_but_a_sentence() {
        let c = scores_chart(Questionnaire::Phq9, &[]);
        assert_eq!(c.svg, None);
        assert_eq!(c.summary, "There are no PHQ-9 scores yet.");
    }

    #[test]
    fn one_score_is_a_labelled_point_without_a_line() {
        let q = Questionnaire::Phq9;
        let c = scores_chart(q, &[pt(date!(2026 - 03 - 03), 12, q)]);
        let svg = c.svg.unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-labelledby=\"chart-phq-9-title chart-phq-9-desc\""));
        assert!(svg.contains("<title id=\"chart-phq-9-title\">PHQ-9 scores over time</title>"));
        assert!(
            svg.contains("12 (moderate) on 3 March 2026"),
            "desc in words"
        );
        assert!(svg.contains("Bands: 0 to 4 minimal, 5 to 9 mild, 10 to 14 moderate, 15 to 19 moderately severe, 20 to 27 severe."));
        assert_eq!(count(&svg, "<circle "), 1);
        assert_eq!(count(&svg, "<polyline "), 0);
        assert!(svg.contains(">12</text>"), "the point is labelled");
        assert!(
            svg.contains(">3 Mar 2026</text>"),
            "the date under the axis"
        );
        // The band names, from the scoring.
        for band in [
            "minimal",
            "mild",
            ">moderate<",
            "moderately severe",
            ">severe<",
        ] {
            assert!(svg.contains(band), "{band}");
        }
        // 12 of 27 sits where the y scale puts it, inside the third
        // (moderate) band, not on an edge.
        let cy = attrs(&svg, "circle", "cy")[0];
        let want = TOP + PLOT_HEIGHT * (1.0 - 12.0 / 27.0);
        assert!((cy - want).abs() < 0.1, "{cy} vs {want}");
        let (ys, hs) = (attrs(&svg, "rect", "y"), attrs(&svg, "rect", "height"));
        assert_eq!(ys.len(), 5, "one rect per band");
        assert!(ys[2] < cy && cy < ys[2] + hs[2], "inside the moderate band");
        // A score on a band's first total is inside that band too.
        let five = scores_chart(q, &[pt(date!(2026 - 03 - 03), 5, q)])
            .svg
            .unwrap();
        let cy5 = attrs(&five, "circle", "cy")[0];
        assert!(ys[1] < cy5 && cy5 < ys[1] + hs[1], "5 is mild");
        assert_eq!(
            c.summary,
            "One PHQ-9 score, out of 27: 12 (moderate) on 3 March 2026."
        );
    }

    #[test]
    fn several_scores_are_joined_in_date_order() {
        let q = Questionnaire::Gad7;
        let points = [
            pt(date!(2026 - 01 - 10), 16, q),
            pt(date!(2026 - 02 - 10), 9, q),
            pt(date!(2026 - 03 - 10), 3, q),
        ];
        let c = scores_chart(q, &points);
        let svg = c.svg.unwrap();
        assert_eq!(count(&svg, "<circle "), 3);
        assert_eq!(count(&svg, "<polyline "), 1);
        let xs = attrs(&svg, "circle", "cx");
        let ys = attrs(&svg, "circle", "cy");
        assert!(xs[0] < xs[1] && xs[1] < xs[2], "left to right by date");
        assert!(ys[0] < ys[1] && ys[1] < ys[2], "lower scores lower down");
        for label in [">16</text>", ">9</text>", ">3</text>"] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains(
            "16 (severe) on 10 January 2026; 9 (mild) on 10 February 2026; 3 (minimal) on 10 March 2026"
        ));
        // GAD-7 has no "moderately severe" band.
        assert!(!svg.contains("moderately severe"));
        assert!(svg.contains("15 to 21 severe"));
        assert_eq!(
            c.summary,
            "3 GAD-7 scores, out of 21, from 10 January 2026 to 10 March 2026. The latest is 3 (minimal) on 10 March 2026."
        );
    }

    #[test]
    fn two_scores_on_one_day_stay_apart() {
        let q = Questionnaire::Phq9;
        let d = date!(2026 - 04 - 01);
        let c = scores_chart(q, &[pt(d, 20, q), pt(d, 20, q)]);
        let svg = c.svg.unwrap();
        let xs = attrs(&svg, "circle", "cx");
        assert_eq!(xs.len(), 2);
        assert!(xs[1] - xs[0] > 20.0, "distinct slots: {xs:?}");
        assert_eq!(count(&svg, ">1 Apr 2026</text>"), 2);
        // (20 is also a tick on the y axis, anchored at its end.)
        assert_eq!(count(&svg, "text-anchor=\"middle\">20</text>"), 2);
    }

    #[test]
    fn many_scores_widen_the_chart_and_thin_the_date_labels() {
        let q = Questionnaire::Phq9;
        let points: Vec<_> = (0..20)
            .map(|i| {
                pt(
                    date!(2025 - 01 - 01) + time::Duration::weeks(i),
                    (i % 28) as u8,
                    q,
                )
            })
            .collect();
        let svg = scores_chart(q, &points).svg.unwrap();
        assert_eq!(count(&svg, "<circle "), 20);
        let dates = count(&svg, "text-anchor=\"middle\">") - 20; // minus score labels
        assert!(dates <= MAX_DATE_LABELS + 1, "{dates} date labels");
        assert!(svg.contains(&format!("viewBox=\"0 0 {:.0} ", LEFT + 20.0 * SLOT + RIGHT)));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<b>\"Tom\" & 'Jerry'</b>"),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
        // Nothing unescaped sneaks into the chart's text.
        let q = Questionnaire::Phq9;
        let svg = scores_chart(q, &[pt(date!(2026 - 01 - 01), 0, q)])
            .svg
            .unwrap();
        let inner = &svg[svg.find('>').unwrap() + 1..svg.len() - "</svg>".len()];
        assert!(!inner.contains('&'), "no entities needed, none broken");
    }
}
