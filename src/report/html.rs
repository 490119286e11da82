//! Rendering a [`Report`] as one self-contained HTML document.

use std::fmt::Write as _;

use super::{escape, Block, Report, Section};

/// Writes formatted text into a `String` (which cannot fail).
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// No scripts, no network: the page renders from its own bytes only.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLESHEET: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: #1f2328;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.page { max-width: 980px; margin: 0 auto; padding: 32px 24px 56px; }
header h1 { font-size: 28px; line-height: 1.25; margin: 0 0 4px; }
header .subtitle { color: #59636e; margin: 0; }
nav.toc { background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px;
  padding: 12px 20px 12px 16px; margin: 24px 0 8px; }
nav.toc .toc-title { font-size: 12px; font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; color: #59636e; margin: 0 0 4px; }
nav.toc ol { margin: 0; padding-left: 24px; columns: 2 260px; column-gap: 32px; }
nav.toc li { break-inside: avoid; }
nav.toc a { color: #0b5cad; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
.toc-warn { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 8px;
  background: #fff8c5; border: 1px solid #d4a72c; color: #7d4e00; font-size: 11px; }
section { margin-top: 36px; }
h2 { font-size: 21px; line-height: 1.3; margin: 0 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid #d8dee4; scroll-margin-top: 12px; }
p { margin: 10px 0; max-width: 75ch; white-space: pre-line; }
pre { margin: 12px 0; padding: 10px 14px; overflow-x: auto; background: #f6f8fa;
  border: 1px solid #d8dee4; border-radius: 6px; font-size: 13px; line-height: 1.45;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
figure.chart { margin: 16px 0 20px; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
.reading { margin: 6px 0 16px; padding: 4px 10px; max-width: 75ch; font-size: 14px;
  color: #424a53; background: #f6f8fa; border-left: 3px solid #0072b2; }
.table-wrap { overflow-x: auto; margin: 12px 0 16px; }
table { border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; text-align: left; vertical-align: top;
  border-bottom: 1px solid #e6e8eb; }
thead th { background: #f6f8fa; font-weight: 600; border-bottom: 2px solid #d0d7de; }
tbody tr:nth-child(even) { background: #fafbfc; }
th.num, td.num { text-align: right; white-space: nowrap; }
td.empty { color: #59636e; font-style: italic; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 24px;
  margin: 12px 0 16px; }
dl.kv dt { color: #59636e; }
dl.kv dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.warning { margin: 12px 0; padding: 8px 12px; max-width: 75ch; border: 1px solid #d4a72c;
  border-left: 4px solid #9a6700; border-radius: 4px; background: #fff8c5; }
.warning strong { color: #7d4e00; }
footer { margin-top: 48px; padding-top: 8px; border-top: 1px solid #d8dee4;
  color: #59636e; font-size: 12px; }
@page { margin: 14mm; }
@media print {
  body { font-size: 10.5pt; }
  .page { max-width: none; padding: 0; }
  nav.toc { background: none; }
  nav.toc a { color: inherit; }
  h2 { break-after: avoid; }
  figure.chart, .table-wrap, dl.kv, .warning, .reading { break-inside: avoid; }
  pre { white-space: pre-wrap; overflow: visible; }
  .table-wrap { overflow: visible; }
  thead { display: table-header-group; }
  tbody tr:nth-child(even) { background: none; }
  a { color: inherit; text-decoration: none; }
}
"#;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::with_capacity(
        16 * 1024
            + report
                .sections
                .iter()
                .flat_map(|s| &s.blocks)
                .map(|b| match b {
                    Block::Chart(svg) => svg.len(),
                    _ => 256,
                })
                .sum::<usize>(),
    );
    let title = escape(&report.title);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    put!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n",
        escape(CSP)
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    put!(
        out,
        "<meta name=\"generator\" content=\"churnguard {}\">\n",
        env!("CARGO_PKG_VERSION")
    );
    put!(
        out,
        "<title>{title}</title>\n<style>{STYLESHEET}</style>\n</head>\n"
    );
    out.push_str("<body>\n<div class=\"page\">\n<header>\n");
    put!(out, "<h1>{title}</h1>\n");
    if let Some(subtitle) = &report.subtitle {
        put!(out, "<p class=\"subtitle\">{}</p>\n", escape(subtitle));
    }
    out.push_str("</header>\n");

    if !report.sections.is_empty() {
        out.push_str("<nav class=\"toc\" aria-label=\"Contents\">\n<p class=\"toc-title\">Contents</p>\n<ol>\n");
        for (i, section) in report.sections.iter().enumerate() {
            put!(
                out,
                "<li><a href=\"#{}\">{}</a>",
                section_id(i, &section.heading),
                escape(&heading_or_default(section, i))
            );
            let warnings = section
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::Warning(_)))
                .count();
            if warnings > 0 {
                put!(
                    out,
                    "<span class=\"toc-warn\" title=\"{warnings} warning{}\">warning</span>",
                    if warnings == 1 { "" } else { "s" }
                );
            }
            out.push_str("</li>\n");
        }
        out.push_str("</ol>\n</nav>\n");
    }

    out.push_str("<main>\n");
    for (i, section) in report.sections.iter().enumerate() {
        render_section(&mut out, i, section);
    }
    out.push_str("</main>\n");
    put!(
        out,
        "<footer>Generated by churnguard {}. Self-contained: no scripts, no external resources.</footer>\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("</div>\n</body>\n</html>\n");
    out
}

fn heading_or_default(section: &Section, index: usize) -> String {
    if section.heading.trim().is_empty() {
        format!("Section {}", index + 1)
    } else {
        section.heading.clone()
    }
}

/// A stable, unique anchor: `s{n}-{slug}`, the slug made of ASCII letters and digits.
fn section_id(index: usize, heading: &str) -> String {
    let mut slug = String::new();
    for c in heading.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("s{}", index + 1)
    } else {
        format!("s{}-{slug}", index + 1)
    }
}

fn render_section(out: &mut String, index: usize, section: &Section) {
    let id = section_id(index, &section.heading);
    put!(
        out,
        "<section id=\"{id}\">\n<h2>{}</h2>\n",
        escape(&heading_or_default(section, index))
    );
    let mut blocks = section.blocks.iter().peekable();
    while let Some(block) = blocks.next() {
        match block {
            Block::Paragraph(text) => put!(out, "<p>{}</p>\n", escape(text)),
            Block::Preformatted(text) => put!(out, "<pre>{}</pre>\n", escape(text)),
            Block::Reading(text) => put!(out, "<p class=\"reading\">{}</p>\n", escape(text)),
            Block::Table { header, rows } => render_table(out, header, rows),
            Block::KeyValues(kv) => render_key_values(out, kv),
            Block::Warning(text) => render_warning(out, text),
            Block::Chart(svg) => {
                if !is_safe_svg(svg) {
                    render_warning(
                        out,
                        "Chart omitted: the markup was not a plain SVG element (it was empty, \
                         not SVG, or carried script).",
                    );
                    continue;
                }
                out.push_str("<figure class=\"chart\">\n");
                out.push_str(svg.trim());
                out.push('\n');
                if let Some(Block::Reading(text)) = blocks.peek() {
                    put!(
                        out,
                        "<figcaption class=\"reading\">{}</figcaption>\n",
                        escape(text)
                    );
                    blocks.next();
                }
                out.push_str("</figure>\n");
            }
        }
    }
    out.push_str("</section>\n");
}

fn cell(row: &[String], c: usize) -> &str {
    row.get(c).map(String::as_str).unwrap_or("")
}

fn render_warning(out: &mut String, text: &str) {
    put!(
        out,
        "<div class=\"warning\" role=\"note\"><strong>Warning:</strong> {}</div>\n",
        escape(text)
    );
}

fn render_key_values(out: &mut String, kv: &[(String, String)]) {
    if kv.is_empty() {
        return;
    }
    out.push_str("<dl class=\"kv\">\n");
    for (k, v) in kv {
        put!(out, "<dt>{}</dt><dd>{}</dd>\n", escape(k), escape(v));
    }
    out.push_str("</dl>\n");
}

fn render_table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let ncols = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(header.len());
    if ncols == 0 {
        return;
    }
    // A column is numeric when it has numbers and every other cell is a placeholder.
    let numeric_column: Vec<bool> = (0..ncols)
        .map(|c| {
            let mut values = rows
                .iter()
                .map(|r| cell(r, c))
                .filter(|s| !is_placeholder(s))
                .peekable();
            values.peek().is_some() && values.all(looks_numeric)
        })
        .collect();
    out.push_str("<div class=\"table-wrap\">\n<table>\n");
    if !header.is_empty() {
        out.push_str("<thead><tr>");
        for (c, numeric) in numeric_column.iter().enumerate() {
            let h = header.get(c).map(String::as_str).unwrap_or("");
            if *numeric {
                put!(out, "<th class=\"num\">{}</th>", escape(h));
            } else {
                put!(out, "<th>{}</th>", escape(h));
            }
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    if rows.is_empty() {
        put!(
            out,
            "<tr><td class=\"empty\" colspan=\"{ncols}\">No rows</td></tr>\n"
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for (c, numeric) in numeric_column.iter().enumerate() {
            let v = cell(row, c);
            if looks_numeric(v) || (*numeric && !v.trim().is_empty()) {
                put!(out, "<td class=\"num\">{}</td>", escape(v));
            } else {
                put!(out, "<td>{}</td>", escape(v));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

/// Whether a table cell reads as a number: an optional sign and currency symbol, digits
/// with optional `,`/`_` grouping, a decimal part or exponent, and an optional unit suffix
/// (`%`, `pp`, `x`, `×`, `k`, `M`, `B`).
pub(super) fn looks_numeric(s: &str) -> bool {
    let mut t = s.trim();
    for sign in ["+", "-", "\u{2212}", "\u{b1}"] {
        if let Some(rest) = t.strip_prefix(sign) {
            t = rest.trim_start();
            break;
        }
    }
    for currency in ["$", "\u{20ac}", "\u{a3}", "\u{a5}"] {
        if let Some(rest) = t.strip_prefix(currency) {
            t = rest.trim_start();
            break;
        }
    }
    for suffix in ["%", "pp", "x", "\u{d7}", "k", "K", "M", "B"] {
        if let Some(rest) = t.strip_suffix(suffix) {
            t = rest.trim_end();
            break;
        }
    }
    let digits: String = t.chars().filter(|c| *c != ',' && *c != '_').collect();
    !digits.is_empty()
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && digits.parse::<f64>().is_ok()
}

/// An empty or "no value" cell, neutral when deciding whether a column is numeric.
fn is_placeholder(s: &str) -> bool {
    matches!(
        s.trim(),
        "" | "-"
            | "\u{2013}"
            | "\u{2014}"
            | "n/a"
            | "N/A"
            | "NA"
            | "NaN"
            | "null"
            | "none"
            | "None"
    )
}

/// Chart markup goes into the page verbatim, so accept only a single `<svg>` element with
/// nothing script-like in it (the page's CSP would block scripts anyway).
fn is_safe_svg(svg: &str) -> bool {
    let t = svg.trim();
    let lower = t.to_ascii_lowercase();
    if !lower.starts_with("<svg") || !lower.ends_with("</svg>") {
        return false;
    }
    if lower.contains("<script")
        || lower.contains("javascript:")
        || lower.contains("<foreignobject")
        || lower.contains("<iframe")
    {
        return false;
    }
    // Event-handler attributes (`on…=`), looked for only inside tags and outside quoted
    // values, so chart text such as "online = 30%" is not mistaken for one.
    let b = lower.as_bytes();
    let (mut in_tag, mut quote) = (false, None::<u8>);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match (in_tag, quote) {
            (false, _) => in_tag = c == b'<',
            (true, Some(q)) => {
                if c == q {
                    quote = None;
                }
            }
            (true, None) => match c {
                b'"' | b'\'' => quote = Some(c),
                b'>' => in_tag = false,
                b'o' if b[i - 1].is_ascii_whitespace() && b.get(i + 1) == Some(&b'n') => {
                    let mut j = i + 2;
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
                        j += 1;
                    }
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j > i + 2 && b.get(j) == Some(&b'=') {
                        return false;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_currencies_and_percentages_look_numeric() {
        for s in [
            "0",
            "1,234",
            "-0.5",
            "+3",
            "12.3%",
            "$40",
            "€1,200.50",
            "2.1x",
            "1e-3",
            "48_210",
            " 7 ",
            ".5",
            "3.5 pp",
            "−2",
            "1.2M",
        ] {
            assert!(looks_numeric(s), "{s:?} should look numeric");
        }
    }

    #[test]
    fn words_dates_and_ranges_do_not_look_numeric() {
        for s in [
            "",
            "-",
            "n/a",
            "NaN",
            "inf",
            "abc",
            "2024-01-01",
            "0.1–0.2",
            "x",
            "%",
            "e5",
            "v12",
            "1.2.3",
            "Gold",
        ] {
            assert!(!looks_numeric(s), "{s:?} should not look numeric");
        }
    }

    #[test]
    fn event_handlers_in_chart_markup_are_detected() {
        assert!(is_safe_svg(
            "<svg viewBox=\"0 0 1 1\"><g font-size=\"11\"></g></svg>"
        ));
        assert!(!is_safe_svg("<svg><g onclick = \"x()\"></g></svg>"));
        assert!(!is_safe_svg("<svg><a href=\"javascript:x()\"></a></svg>"));
        assert!(!is_safe_svg(""));
        assert!(is_safe_svg("<svg><text x=\"1\">online = 30%</text></svg>"));
    }

    #[test]
    fn section_anchors_are_slugs_with_an_index() {
        assert_eq!(
            section_id(0, "Model comparison (validation)"),
            "s1-model-comparison-validation"
        );
        assert_eq!(section_id(4, "<>"), "s5");
    }
}
