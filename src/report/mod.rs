//! Self-contained HTML reports with inline SVG charts (no scripts, no CDN, open offline).
//!
//! A [`Report`] is a title and a list of [`Section`]s; a section is a list of blocks
//! (paragraphs, tables, key/value lists, charts, warnings). [`Report::to_html`] renders one
//! HTML file with an inline stylesheet, a table of contents and the charts as inline SVG.
//! The charts come from [`svg`]. Every piece of text passes through [`escape`]; the page
//! carries a Content-Security-Policy that forbids scripts and network loads, so the file
//! behaves the same offline, in a mail attachment or printed.
//!
//! ```
//! use churnguard::report::{svg, Report};
//!
//! let mut report = Report::new("Training report");
//! let roc = svg::line_chart(
//!     &svg::Axes::new("ROC curve", "False positive rate", "True positive rate")
//!         .with_x_range(0.0, 1.0)
//!         .with_y_range(0.0, 1.0),
//!     &[svg::Series::new("logistic", vec![(0.0, 0.0), (0.2, 0.7), (1.0, 1.0)])],
//!     true,
//! );
//! report
//!     .section("Model comparison")
//!     .paragraph("Models are compared on the out-of-time validation window.")
//!     .table(&["model", "ROC AUC"], &[vec!["logistic".into(), "0.812".into()]])
//!     .chart(roc)
//!     .reading("The further the curve bows to the top left, the better the ranking.");
//! let html = report.to_html();
//! assert!(html.contains("Model comparison") && !html.contains("<script"));
//! ```

mod html;
pub mod svg;
#[cfg(test)]
mod testutil;

use std::path::Path;

/// An HTML report: a title, an optional subtitle and sections in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    title: String,
    subtitle: Option<String>,
    sections: Vec<Section>,
}

/// One section of a [`Report`]: a heading (listed in the table of contents) and its blocks.
///
/// The builder methods return `&mut Self` so calls chain:
/// `report.section("Data").paragraph("…").table(&header, &rows)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    heading: String,
    blocks: Vec<Block>,
}

/// The content of a section, rendered in insertion order.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Paragraph(String),
    Preformatted(String),
    Reading(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    KeyValues(Vec<(String, String)>),
    /// Trusted SVG markup from [`svg`]; checked again when rendered.
    Chart(String),
    Warning(String),
}

impl Report {
    /// An empty report with this title (shown as the page title and the `<h1>`).
    pub fn new(title: &str) -> Self {
        Report {
            title: title.to_string(),
            subtitle: None,
            sections: Vec::new(),
        }
    }

    /// A line under the title, e.g. "Model v12 · trained 2024-05-01 · 48,210 customers".
    pub fn subtitle(&mut self, text: &str) -> &mut Self {
        self.subtitle = Some(text.to_string());
        self
    }

    /// Appends a new section and returns it for filling. Sections appear in the order they
    /// are added; two sections may share a heading (their anchors still differ).
    pub fn section(&mut self, heading: &str) -> &mut Section {
        let index = self.sections.len();
        self.sections.push(Section {
            heading: heading.to_string(),
            blocks: Vec::new(),
        });
        &mut self.sections[index]
    }

    /// The whole report as one self-contained HTML document.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// Writes [`Report::to_html`] to `path` atomically: a temporary file next to it, then a
    /// rename, so a failed run never leaves a truncated report over a previous one.
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        crate::fsutil::write_atomic(path, self.to_html().as_bytes())
    }
}

impl Section {
    /// A paragraph of plain text (escaped; no markup is interpreted; line breaks kept).
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.to_string()));
        self
    }

    /// Monospaced text with its spacing and indentation kept, e.g. a decision tree's rules
    /// or a configuration excerpt (escaped).
    pub fn preformatted(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Preformatted(text.to_string()));
        self
    }

    /// The one-line "what this chart shows / how to read it" note. Placed right after
    /// [`Section::chart`], it becomes that chart's caption.
    pub fn reading(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Reading(text.to_string()));
        self
    }

    /// A table. Every cell is escaped; numeric-looking cells (`1,234`, `-0.5`, `12.3%`,
    /// `$40`, `2.1x`, `1e-3`) are right-aligned with tabular digits, and so is the header of
    /// a column whose cells are all numeric. Ragged rows are padded with empty cells.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> &mut Self {
        self.blocks.push(Block::Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: rows.to_vec(),
        });
        self
    }

    /// A two-column list of labelled values, e.g. the headline metrics of a model.
    pub fn key_values(&mut self, kv: &[(&str, String)]) -> &mut Self {
        self.blocks.push(Block::KeyValues(
            kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        ));
        self
    }

    /// An inline SVG chart, normally from one of the [`svg`] functions. The markup is
    /// inserted as is, so it must be trusted; anything that is not an `<svg>` element or that
    /// carries script (`<script`, `on…=` handlers, `javascript:`, `<foreignObject`) is
    /// replaced by a warning when the report is rendered.
    pub fn chart(&mut self, svg: String) -> &mut Self {
        self.blocks.push(Block::Chart(svg));
        self
    }

    /// A highlighted caveat ("validation window has only 41 churners", "drift above
    /// threshold"). Marked in the table of contents too.
    pub fn warning(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Warning(text.to_string()));
        self
    }
}

/// Escapes text for HTML and XML content and attribute values: `& < > " '` become
/// entities, and characters XML 1.0 forbids (most ASCII control characters, lone
/// surrogates cannot occur in `str`, U+FFFE/U+FFFF) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => {
                out.push(c)
            }
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::testutil::check_markup;
    use super::*;

    fn sample_report() -> Report {
        let mut r = Report::new("Training report <v2>");
        r.subtitle("model 12 & friends");
        r.section("Data summary")
            .paragraph("48,210 customers, 6.1% churned.")
            .key_values(&[
                ("customers", "48,210".into()),
                ("churn rate", "6.1%".into()),
            ]);
        r.section("Model comparison")
            .table(
                &["model", "ROC AUC", "log loss"],
                &[
                    vec!["logistic".into(), "0.812".into(), "0.201".into()],
                    vec!["boosted <trees>".into(), "0.845".into(), "0.187".into()],
                ],
            )
            .chart(svg::bar_chart(
                "ROC AUC by model",
                &["logistic".to_string(), "boosted".to_string()],
                &[0.812, 0.845],
                "ROC AUC",
                false,
            ))
            .reading("Higher is better; the boosted model ranks churners best.");
        r.section("Caveats")
            .warning("Only 41 churners in the validation window.");
        r
    }

    #[test]
    fn the_report_html_contains_every_section_heading_and_no_script() {
        let html = sample_report().to_html();
        for heading in ["Data summary", "Model comparison", "Caveats"] {
            assert!(
                html.contains(&format!(">{heading}</h2>")),
                "missing heading {heading}"
            );
            assert!(
                html.contains(&format!(">{heading}</a>")),
                "missing toc entry"
            );
        }
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn the_report_html_is_well_formed_and_escapes_the_title_and_cells() {
        let html = sample_report().to_html();
        check_markup(&html).unwrap();
        assert!(html.contains("Training report &lt;v2&gt;"));
        assert!(html.contains("model 12 &amp; friends"));
        assert!(html.contains("boosted &lt;trees&gt;"));
    }

    #[test]
    fn the_table_of_contents_links_to_unique_section_anchors() {
        let mut r = Report::new("t");
        r.section("Same");
        r.section("Same");
        let html = r.to_html();
        assert!(html.contains("href=\"#s1-same\"") && html.contains("id=\"s1-same\""));
        assert!(html.contains("href=\"#s2-same\"") && html.contains("id=\"s2-same\""));
    }

    #[test]
    fn a_reading_right_after_a_chart_becomes_its_caption() {
        let html = sample_report().to_html();
        assert!(html.contains("<figcaption class=\"reading\">Higher is better"));
    }

    #[test]
    fn numeric_looking_cells_are_right_aligned_and_text_cells_are_not() {
        let mut r = Report::new("t");
        r.section("s").table(
            &["name", "value"],
            &[
                vec!["alpha".into(), "1,234.5".into()],
                vec!["beta".into(), "-7%".into()],
            ],
        );
        let html = r.to_html();
        assert!(html.contains("<td class=\"num\">1,234.5</td>"));
        assert!(html.contains("<td class=\"num\">-7%</td>"));
        assert!(html.contains("<td>alpha</td>"));
        assert!(html.contains("<th class=\"num\">value</th>"));
    }

    #[test]
    fn a_numeric_column_with_placeholders_stays_right_aligned() {
        let mut r = Report::new("t");
        r.section("s").table(
            &["model", "lift"],
            &[
                vec!["baseline".into(), "\u{2014}".into()],
                vec!["boosted".into(), "2.4x".into()],
            ],
        );
        let html = r.to_html();
        assert!(html.contains("<th class=\"num\">lift</th>"));
        assert!(html.contains("<td class=\"num\">\u{2014}</td>"));
        assert!(html.contains("<th>model</th>"));
    }

    #[test]
    fn preformatted_text_keeps_its_indentation_and_is_escaped() {
        let mut r = Report::new("t");
        r.section("Rules")
            .preformatted("if tenure < 3:\n    churn (p = 0.4)\nelse:\n    stay");
        let html = r.to_html();
        assert!(html.contains("<pre>if tenure &lt; 3:\n    churn (p = 0.4)\nelse:\n    stay</pre>"));
        check_markup(&html).unwrap();
    }

    #[test]
    fn a_chart_carrying_script_is_replaced_by_a_warning() {
        let mut r = Report::new("t");
        r.section("s")
            .chart(
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".into(),
            )
            .chart("<svg onload=\"alert(1)\"></svg>".into())
            .chart("not svg at all".into());
        let html = r.to_html();
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(!html.contains("onload"));
        assert_eq!(html.matches("Chart omitted").count(), 3);
        check_markup(&html).unwrap();
    }

    #[test]
    fn an_empty_report_still_renders_a_valid_page() {
        let html = Report::new("").to_html();
        check_markup(&html).unwrap();
        let mut r = Report::new("t");
        r.section("").table(&[], &[]).key_values(&[]);
        check_markup(&r.to_html()).unwrap();
    }

    #[test]
    fn escape_turns_markup_and_control_characters_into_safe_text() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "a\u{FFFD}b\u{FFFD}c\td");
        assert_eq!(escape("naïve – ok"), "naïve – ok");
    }

    #[test]
    fn save_writes_the_html_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        sample_report().save(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, sample_report().to_html());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.html"], "no temporary file is left");
    }
}
