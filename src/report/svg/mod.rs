//! Inline SVG charts for the HTML reports.
//!
//! Every function returns one self-contained `<svg>` element, `640` px wide:
//!
//! - presentation attributes only: no `<style>`, no `id`s, so any number of charts can share
//!   a page without their styles or clip paths colliding;
//! - every piece of text escaped; tooltips are SVG `<title>` children of points, bars, cells;
//! - non-finite values (NaN, ±inf) are skipped and never reach a coordinate; empty input
//!   renders a "No data" placeholder; a single point or constant values never divide by zero;
//! - the colour-blind-safe Okabe–Ito [`PALETTE`] for series, a sequential yellow–green–blue
//!   scale for heatmaps;
//! - axis ticks from the "nice numbers" algorithm ([`nice_ticks`]).
//!
//! One file per chart kind (`line`, `bar`, `histogram`, `heatmap`); `ticks` holds the
//! nice-number axes and number formatting; the drawing primitives they share are here.

use std::fmt::{self, Write as _};

use super::escape;

/// Writes formatted text into a `String` (which cannot fail).
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

mod bar;
mod heatmap;
mod histogram;
mod line;
mod ticks;

pub use bar::{bar_chart, grouped_bar_chart};
pub use heatmap::heatmap;
pub use histogram::histogram;
pub use line::{line_chart, Axes, Series};
pub use ticks::{group_thousands, nice_ticks};

use ticks::{format_tick, nice_scale, normalise_range};

/// Width of every chart's viewBox, in px.
pub const WIDTH: f64 = 640.0;
/// Height of a chart's viewBox, in px. Horizontal bar charts and heatmaps with many rows
/// grow taller so that each row stays readable.
pub const HEIGHT: f64 = 360.0;
/// Tallest a growing chart gets, in px.
const MAX_HEIGHT: f64 = 2400.0;

/// Okabe & Ito's colour-blind-safe palette, in the order series get them (yellow last: it is
/// faint on white).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442",
];

const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
const INK: &str = "#1f2328";
const MUTED: &str = "#59636e";
const GRID: &str = "#e6e8eb";
const AXIS: &str = "#8c959f";
const REFERENCE: &str = "#6e7781";
const TITLE_SIZE: f64 = 15.0;
const LABEL_SIZE: f64 = 12.0;
const TICK_SIZE: f64 = 11.0;
/// Series with at most this many points get visible markers.
const VISIBLE_MARKERS: usize = 40;
/// Series with at most this many points get (invisible) hover targets with tooltips.
const MAX_POINT_TOOLTIPS: usize = 400;

// ---------------------------------------------------------------------------------------
// Drawing primitives
// ---------------------------------------------------------------------------------------

/// Finite and small enough that differences stay finite.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= 1e300
}

/// A coordinate: one decimal, clamped far outside the canvas, never NaN.
struct P(f64);

impl fmt::Display for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() {
            ((self.0.clamp(-1e5, 1e5)) * 10.0).round() / 10.0
        } else {
            0.0
        };
        if v == v.trunc() {
            write!(f, "{}", v as i64)
        } else {
            write!(f, "{v:.1}")
        }
    }
}

/// Rough rendered width of `s` at `size` px in a proportional sans-serif font.
fn text_px(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.58
}

/// `s` shortened with an ellipsis to fit `max_px`, or `None` when it fits.
fn truncated(s: &str, max_px: f64, size: f64) -> Option<String> {
    if text_px(s, size) <= max_px {
        return None;
    }
    let keep = ((max_px / (size * 0.58)).floor() as usize).max(2) - 1;
    Some(s.chars().take(keep).collect::<String>() + "\u{2026}")
}

#[derive(Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// A text element; long text is truncated with its full version as a tooltip.
struct Label<'a> {
    text: &'a str,
    x: f64,
    y: f64,
    size: f64,
    anchor: Anchor,
    fill: &'a str,
    bold: bool,
    rotate: f64,
    max_px: f64,
}

impl<'a> Label<'a> {
    fn new(text: &'a str, x: f64, y: f64) -> Self {
        Label {
            text,
            x,
            y,
            size: TICK_SIZE,
            anchor: Anchor::Start,
            fill: MUTED,
            bold: false,
            rotate: 0.0,
            max_px: f64::INFINITY,
        }
    }
    fn size(mut self, size: f64) -> Self {
        self.size = size;
        self
    }
    fn anchor(mut self, anchor: Anchor) -> Self {
        self.anchor = anchor;
        self
    }
    fn fill(mut self, fill: &'a str) -> Self {
        self.fill = fill;
        self
    }
    fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    fn rotate(mut self, degrees: f64) -> Self {
        self.rotate = degrees;
        self
    }
    fn max_px(mut self, max_px: f64) -> Self {
        self.max_px = max_px;
        self
    }

    fn draw(&self, out: &mut String) {
        if self.text.is_empty() {
            return;
        }
        let (x, y) = (P(self.x), P(self.y));
        put!(out, "<text x=\"{x}\" y=\"{y}\" font-size=\"{}\"", self.size);
        match self.anchor {
            Anchor::Start => {}
            Anchor::Middle => out.push_str(" text-anchor=\"middle\""),
            Anchor::End => out.push_str(" text-anchor=\"end\""),
        }
        put!(out, " fill=\"{}\"", self.fill);
        if self.bold {
            out.push_str(" font-weight=\"600\"");
        }
        if self.rotate != 0.0 {
            put!(out, " transform=\"rotate({} {x} {y})\"", self.rotate);
        }
        out.push('>');
        match truncated(self.text, self.max_px, self.size) {
            Some(short) => put!(
                out,
                "<title>{}</title>{}",
                escape(self.text),
                escape(&short)
            ),
            None => out.push_str(&escape(self.text)),
        }
        out.push_str("</text>");
    }
}

/// The drawing area of a chart, in viewBox px.
#[derive(Clone, Copy, Debug)]
struct Frame {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Frame {
    fn right(&self) -> f64 {
        self.x + self.w
    }
    fn bottom(&self) -> f64 {
        self.y + self.h
    }
}

/// A numeric axis: its domain and tick values.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    step: f64,
}

impl Axis {
    /// A domain fitted to `[lo, hi]` and extended to the outer nice ticks.
    fn fit(lo: f64, hi: f64, max_ticks: usize) -> Axis {
        let (ticks, step) = nice_scale(lo, hi, max_ticks);
        Axis {
            lo: ticks[0],
            hi: ticks[ticks.len() - 1],
            ticks,
            step,
        }
    }

    /// Exactly `[lo, hi]`, with the nice ticks that fall inside it.
    fn exact(lo: f64, hi: f64, max_ticks: usize) -> Axis {
        let (lo, hi) = normalise_range(lo, hi);
        let (ticks, step) = nice_scale(lo, hi, max_ticks);
        let eps = step * 1e-6;
        let ticks = ticks
            .into_iter()
            .filter(|t| *t >= lo - eps && *t <= hi + eps)
            .collect();
        Axis {
            lo,
            hi,
            ticks,
            step,
        }
    }

    /// `Axis::exact` for a usable explicit range, else `Axis::fit` on the data.
    fn choose(range: Option<(f64, f64)>, lo: f64, hi: f64, max_ticks: usize) -> Axis {
        match range {
            Some((a, b)) if usable(a) && usable(b) && a != b => Axis::exact(a, b, max_ticks),
            _ => Axis::fit(lo, hi, max_ticks),
        }
    }

    /// Position of `v` in the domain, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }

    fn label(&self, v: f64) -> String {
        format_tick(v, self.step, self.lo.abs().max(self.hi.abs()))
    }

    fn widest_label_px(&self) -> f64 {
        self.ticks
            .iter()
            .map(|t| text_px(&self.label(*t), TICK_SIZE))
            .fold(0.0, f64::max)
    }
}

fn x_px(f: &Frame, ax: &Axis, v: f64) -> f64 {
    f.x + ax.frac(v) * f.w
}

fn y_px(f: &Frame, ax: &Axis, v: f64) -> f64 {
    f.bottom() - ax.frac(v) * f.h
}

/// Opens the root element with an accessible title and a white background.
fn open(width: f64, height: f64, title: &str) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let (w, h) = (P(width), P(height));
    let label = if title.is_empty() { "chart" } else { title };
    put!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
         height=\"{h}\" role=\"img\" aria-label=\"{}\" font-family=\"{FONT}\" \
         style=\"max-width:100%;height:auto\">",
        escape(label)
    );
    put!(out, "<title>{}</title>", escape(label));
    put!(out, "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>");
    Label::new(title, 12.0, 22.0)
        .size(TITLE_SIZE)
        .fill(INK)
        .bold()
        .max_px(width - 24.0)
        .draw(&mut out);
    out
}

fn close(mut out: String) -> String {
    out.push_str("</svg>");
    out
}

/// A chart with nothing to draw: the title and a message in a dashed box.
fn placeholder(title: &str, message: &str) -> String {
    let mut out = open(WIDTH, HEIGHT, title);
    put!(
        out,
        "<rect x=\"12\" y=\"40\" width=\"{}\" height=\"{}\" fill=\"#f6f8fa\" stroke=\"{AXIS}\" \
         stroke-dasharray=\"4 4\" rx=\"6\"/>",
        P(WIDTH - 24.0),
        P(HEIGHT - 52.0)
    );
    Label::new(message, WIDTH / 2.0, (HEIGHT + 40.0) / 2.0)
        .size(14.0)
        .anchor(Anchor::Middle)
        .draw(&mut out);
    close(out)
}

/// Vertical grid lines, tick labels under the frame and the x-axis title.
fn draw_x_axis(out: &mut String, f: &Frame, ax: &Axis, title: &str) {
    for t in &ax.ticks {
        let x = P(x_px(f, ax, *t));
        put!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{GRID}\"/>",
            P(f.y),
            P(f.bottom())
        );
        Label::new(&ax.label(*t), x.0, f.bottom() + 16.0)
            .anchor(Anchor::Middle)
            .draw(out);
    }
    Label::new(title, f.x + f.w / 2.0, f.bottom() + 36.0)
        .size(LABEL_SIZE)
        .fill(INK)
        .anchor(Anchor::Middle)
        .max_px(f.w)
        .draw(out);
}

/// Horizontal grid lines, tick labels left of the frame and the rotated y-axis title.
fn draw_y_axis(out: &mut String, f: &Frame, ax: &Axis, title: &str) {
    for t in &ax.ticks {
        let y = P(y_px(f, ax, *t));
        put!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{GRID}\"/>",
            P(f.x),
            P(f.right())
        );
        Label::new(&ax.label(*t), f.x - 6.0, y.0 + TICK_SIZE * 0.35)
            .anchor(Anchor::End)
            .draw(out);
    }
    Label::new(title, 16.0, f.y + f.h / 2.0)
        .size(LABEL_SIZE)
        .fill(INK)
        .anchor(Anchor::Middle)
        .rotate(-90.0)
        .max_px(f.h)
        .draw(out);
}

/// The left and bottom axis lines.
fn draw_axis_lines(out: &mut String, f: &Frame) {
    put!(
        out,
        "<path d=\"M{} {}V{}H{}\" fill=\"none\" stroke=\"{AXIS}\"/>",
        P(f.x),
        P(f.y),
        P(f.bottom()),
        P(f.right())
    );
}

/// Left margin for a y axis: its title, its widest tick label and a gap.
fn left_margin(ax: &Axis, title: &str) -> f64 {
    let title_band = if title.is_empty() { 8.0 } else { 26.0 };
    (title_band + ax.widest_label_px() + 10.0).min(WIDTH / 3.0)
}

/// A nested viewport that clips its content to the frame (plus a few px so markers on the
/// edge stay whole) without needing a document-wide clip-path id.
fn open_clip(out: &mut String, f: &Frame) {
    let pad = 4.0;
    let (x, y, w, h) = (
        P(f.x - pad),
        P(f.y - pad),
        P(f.w + 2.0 * pad),
        P(f.h + 2.0 * pad),
    );
    put!(
        out,
        "<svg x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" viewBox=\"{x} {y} {w} {h}\" \
         overflow=\"hidden\">"
    );
}

#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Dashed,
    Box,
}

struct LegendItem {
    name: String,
    colour: &'static str,
    swatch: Swatch,
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn series_name(name: &str, i: usize) -> String {
    if name.trim().is_empty() {
        format!("series {}", i + 1)
    } else {
        name.to_string()
    }
}

/// Lays the legend out in rows from `(x0, y0)` within `max_w`; at most three rows, then
/// "+N more". Returns the markup and the height used (0 for no items).
fn legend(items: &[LegendItem], x0: f64, y0: f64, max_w: f64) -> (String, f64) {
    let mut out = String::new();
    if items.is_empty() {
        return (out, 0.0);
    }
    let row_h = 18.0;
    let (mut x, mut row) = (x0, 0usize);
    for (i, item) in items.iter().enumerate() {
        let name_px = text_px(&item.name, LABEL_SIZE).min(180.0);
        let item_w = 18.0 + 6.0 + name_px + 18.0;
        if x > x0 && x + item_w > x0 + max_w {
            row += 1;
            x = x0;
        }
        let y = y0 + row as f64 * row_h;
        if row == 3 {
            let more = format!("+{} more", items.len() - i);
            Label::new(&more, x0, y + 4.0).draw(&mut out);
            row += 1;
            break;
        }
        let mid = P(y);
        match item.swatch {
            Swatch::Line => put!(
                out,
                "<line x1=\"{}\" y1=\"{mid}\" x2=\"{}\" y2=\"{mid}\" stroke=\"{}\" stroke-width=\"2.5\"/>",
                P(x),
                P(x + 18.0),
                item.colour
            ),
            Swatch::Dashed => put!(
                out,
                "<line x1=\"{}\" y1=\"{mid}\" x2=\"{}\" y2=\"{mid}\" stroke=\"{}\" stroke-width=\"1.5\" \
                 stroke-dasharray=\"4 3\"/>",
                P(x),
                P(x + 18.0),
                item.colour
            ),
            Swatch::Box => put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"11\" rx=\"2\" fill=\"{}\"/>",
                P(x + 2.0),
                P(y - 5.5),
                item.colour
            ),
        }
        Label::new(&item.name, x + 24.0, y + 4.0)
            .size(LABEL_SIZE)
            .fill(INK)
            .max_px(180.0)
            .draw(&mut out);
        x += item_w;
        if i + 1 == items.len() {
            row += 1;
        }
    }
    (out, row as f64 * row_h)
}

/// Where category labels go under a vertical-bar frame.
struct CategoryLabels {
    rotated: bool,
    /// Draw every n-th label only, when even rotated ones would overlap.
    every: usize,
    max_px: f64,
    /// Height they need under the frame.
    band: f64,
}

fn plan_category_labels(labels: &[String], slot: f64) -> CategoryLabels {
    let widest = labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    if widest <= slot - 4.0 {
        CategoryLabels {
            rotated: false,
            every: 1,
            max_px: slot - 4.0,
            band: 20.0,
        }
    } else {
        let max_px = widest.min(130.0);
        CategoryLabels {
            rotated: true,
            every: ((TICK_SIZE + 3.0) / slot).ceil().max(1.0) as usize,
            max_px,
            band: max_px * 0.643 + 22.0,
        }
    }
}

fn draw_category_labels(
    out: &mut String,
    f: &Frame,
    labels: &[String],
    n: usize,
    plan: &CategoryLabels,
) {
    let slot = f.w / n as f64;
    for i in (0..n).step_by(plan.every) {
        let text = labels.get(i).map(String::as_str).unwrap_or("");
        let cx = f.x + (i as f64 + 0.5) * slot;
        let label = Label::new(text, cx, f.bottom() + 15.0).max_px(plan.max_px);
        if plan.rotated {
            label.anchor(Anchor::End).rotate(-40.0).draw(out);
        } else {
            label.anchor(Anchor::Middle).draw(out);
        }
    }
}

/// The extent of the usable values, or `None` when there are none.
fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| usable(*v))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// A value axis for bars: always includes zero; all-zero data gets `[0, 1]`.
fn bar_value_axis(lo: f64, hi: f64, max_ticks: usize) -> Axis {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if lo == 0.0 && hi == 0.0 {
        Axis::fit(0.0, 1.0, max_ticks)
    } else {
        Axis::fit(lo, hi, max_ticks)
    }
}

#[cfg(test)]
mod fixtures {
    pub(super) use super::super::testutil::check_markup;
    pub(super) use super::*;

    /// Named groups of values, as [`grouped_bar_chart`] and [`histogram`] take them.
    pub(super) type Groups = Vec<(String, Vec<f64>)>;
    /// Heatmap cells, rows of optional values.
    pub(super) type Cells = Vec<Vec<Option<f64>>>;

    pub(super) fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    pub(super) fn assert_well_formed(svg: &str) {
        if let Err(e) = check_markup(svg) {
            panic!("not well formed: {e}\n{svg}");
        }
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(!svg.to_ascii_lowercase().contains("<script"));
    }

    pub(super) fn roc_axes() -> Axes {
        Axes::new("ROC", "False positive rate", "True positive rate")
            .with_x_range(0.0, 1.0)
            .with_y_range(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;

    #[test]
    fn script_tags_in_titles_labels_and_series_names_come_out_escaped() {
        let evil = "<script>alert('x')</script>";
        let ev = vec![evil.to_string()];
        let charts = [
            line_chart(
                &Axes::new(evil, evil, evil),
                &[
                    Series::new(evil, vec![(0.0, 1.0)]),
                    Series::new("b", vec![(1.0, 0.0)]),
                ],
                true,
            ),
            bar_chart(evil, &ev, &[1.0], evil, false),
            bar_chart(evil, &ev, &[1.0], evil, true),
            grouped_bar_chart(
                evil,
                &ev,
                &[(evil.into(), vec![1.0]), ("b".into(), vec![2.0])],
                evil,
            ),
            histogram(
                evil,
                &[(evil.into(), vec![0.5]), ("b".into(), vec![0.2])],
                5,
                (0.0, 1.0),
                false,
            ),
            heatmap(evil, &ev, &ev, &[vec![Some(0.5)]], true),
            placeholder(evil, evil),
        ];
        for svg in &charts {
            assert_well_formed(svg);
            assert!(svg.contains("&lt;script&gt;"), "{svg}");
        }
    }

    #[test]
    fn long_labels_are_truncated_with_the_full_text_as_tooltip() {
        let long = "a_really_long_feature_name_that_goes_on_and_on_and_on_for_far_too_long_to_fit";
        let svg = bar_chart("t", &[long.to_string()], &[1.0], "", true);
        assert!(svg.contains(&format!("<title>{long}</title>")));
        assert!(svg.contains('\u{2026}'));
        assert_well_formed(&svg);
    }

    #[test]
    fn charts_use_no_ids_or_style_elements_so_they_can_share_a_page() {
        let svg = line_chart(
            &roc_axes(),
            &[Series::new("a", vec![(0.0, 0.0), (1.0, 1.0)])],
            true,
        );
        assert!(!svg.contains(" id=") && !svg.contains("<style"));
    }
}
