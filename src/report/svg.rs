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

use std::fmt::{self, Write as _};

use super::escape;

/// Writes formatted text into a `String` (which cannot fail).
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

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

/// Sequential scale for heatmaps (ColorBrewer YlGnBu without its near-white first step, so
/// the lowest value still differs from an empty cell).
const SEQUENTIAL: [[u8; 3]; 8] = [
    [237, 248, 177],
    [199, 233, 180],
    [127, 205, 187],
    [65, 182, 196],
    [29, 145, 192],
    [34, 94, 168],
    [37, 52, 148],
    [8, 29, 88],
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

/// One line of a [`line_chart`]. Points are drawn in the given order; a non-finite point
/// breaks the line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// Titles and ranges of a [`line_chart`]. A range of `None` fits the data (extended to nice
/// tick values); `Some((lo, hi))` is used exactly, and data outside it is clipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Axes {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

impl Axes {
    /// Axes fitted to the data.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Axes {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            x_range: None,
            y_range: None,
        }
    }

    pub fn with_x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    pub fn with_y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }
}

// ---------------------------------------------------------------------------------------
// Nice numbers
// ---------------------------------------------------------------------------------------

/// Tick values covering `[lo, hi]`: at most `max_ticks` of them (at least 2), spaced by
/// the smallest step of the form 1, 2 or 5 times a power of ten that keeps within that
/// count, the first tick at or below `lo` and the last at or above `hi` (the "nice numbers"
/// of Heckbert's graph labels, fitted tightly). Ticks are exact decimals (`0.3`, not
/// `0.30000000000000004`). A reversed range is swapped; an empty one (`lo == hi`) is widened
/// around the value; non-finite bounds give the ticks of `[0, 1]`.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    nice_scale(lo, hi, max_ticks).0
}

/// [`nice_ticks`] and the step between them.
fn nice_scale(lo: f64, hi: f64, max_ticks: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = normalise_range(lo, hi);
    let max_ticks = max_ticks.clamp(2, 50);
    // Start a decade below the rough step and walk up 1, 2, 5, 10, 20, 50, ...
    let rough = (hi - lo) / (max_ticks - 1) as f64;
    let first = rough.log10().floor() as i32 - 1;
    let mut found = None;
    'search: for e in first..first + 8 {
        for m in [1.0, 2.0, 5.0] {
            let step = from_decimal(m, e);
            let k0 = (lo / step + 1e-9).floor();
            let k1 = (hi / step - 1e-9).ceil();
            if k1 - k0 < max_ticks as f64 {
                found = Some((m, e, step, k0, k1));
                break 'search;
            }
        }
    }
    let Some((m, e, step, k0, k1)) = found else {
        return (vec![lo, hi], hi - lo);
    };
    let mut ticks = Vec::with_capacity(max_ticks);
    let mut k = k0;
    while k <= k1 {
        // k·m is an integer, so this is the decimal k·m·10^e rounded once; +0.0 turns -0 into 0.
        ticks.push(from_decimal(k * m, e) + 0.0);
        k += 1.0;
    }
    if ticks.len() < 2 {
        ticks = vec![lo, hi];
    }
    (ticks, step)
}

/// A finite range with `lo < hi` that is wide enough to divide by.
fn normalise_range(lo: f64, hi: f64) -> (f64, f64) {
    if !usable(lo) || !usable(hi) {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-9 {
        let pad = if scale > 0.0 { scale * 0.1 } else { 1.0 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    }
}

/// `m · 10^e`, computed so that an integer `m` gives the closest double to the decimal.
fn from_decimal(m: f64, e: i32) -> f64 {
    if e < 0 {
        m / 10f64.powi(-e)
    } else {
        m * 10f64.powi(e)
    }
}

/// A tick label: as many decimals as the step needs; `k`/`M`/`B` when the axis reaches
/// `magnitude` (its largest absolute value) of ten thousand or more.
fn format_tick(v: f64, step: f64, magnitude: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    let (div, suffix) = if magnitude >= 1e9 {
        (1e9, "B")
    } else if magnitude >= 1e6 {
        (1e6, "M")
    } else if magnitude >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let s = step.abs() / div;
    let decimals = if s > 0.0 && s.is_finite() {
        (-(s.log10() + 1e-9)).ceil().clamp(0.0, 12.0) as usize
    } else {
        0
    };
    format!("{:.*}{suffix}", decimals, v / div)
}

/// A value for tooltips and labels: four significant digits, thousands grouped.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e15).contains(&a) {
        return format!("{v:.3e}");
    }
    if a >= 1e3 {
        return group_thousands(v.round());
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A whole number with thousands separated by commas (`-1,234,568`).
pub fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_pct(v: f64, decimals: usize) -> String {
    format!("{:.*}%", decimals, v * 100.0)
}

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

// ---------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------

/// Lines through each series' points: ROC and PR curves, calibration (with `diagonal`, the
/// dashed `y = x` reference), cumulative gains and lift, churn rate over time.
///
/// Non-finite points are skipped and break the line. Series of up to 40 points get visible
/// markers, up to 400 get invisible hover targets; every point target has a tooltip.
/// A legend appears when there is more than one entry (series or the diagonal).
pub fn line_chart(axes: &Axes, series: &[Series], diagonal: bool) -> String {
    let all = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| usable(*x) && usable(*y));
    let Some((xlo, xhi)) = extent(all.clone().map(|p| p.0)) else {
        return placeholder(&axes.title, "No data");
    };
    let (ylo, yhi) = extent(all.map(|p| p.1)).unwrap_or((0.0, 1.0));
    let xa = Axis::choose(axes.x_range, xlo, xhi, 8);
    let ya = Axis::choose(axes.y_range, ylo, yhi, 6);

    let mut items: Vec<LegendItem> = series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendItem {
            name: series_name(&s.name, i),
            colour: colour(i),
            swatch: Swatch::Line,
        })
        .collect();
    if diagonal {
        items.push(LegendItem {
            name: "y = x".to_string(),
            colour: REFERENCE,
            swatch: Swatch::Dashed,
        });
    }
    if items.len() < 2 {
        items.clear();
    }

    let left = left_margin(&ya, &axes.y_label);
    let (legend_svg, legend_h) = legend(&items, left, 42.0, WIDTH - left - 20.0);
    let top = 36.0 + legend_h + if legend_h > 0.0 { 6.0 } else { 8.0 };
    let bottom = if axes.x_label.is_empty() { 28.0 } else { 46.0 };
    let f = Frame {
        x: left,
        y: top,
        w: WIDTH - left - 20.0,
        h: HEIGHT - top - bottom,
    };

    let mut out = open(WIDTH, HEIGHT, &axes.title);
    draw_y_axis(&mut out, &f, &ya, &axes.y_label);
    draw_x_axis(&mut out, &f, &xa, &axes.x_label);
    draw_axis_lines(&mut out, &f);
    open_clip(&mut out, &f);
    if diagonal {
        let lo = xa.lo.max(ya.lo);
        let hi = xa.hi.min(ya.hi);
        if lo < hi {
            put!(
                out,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{REFERENCE}\" \
                 stroke-width=\"1.5\" stroke-dasharray=\"5 4\"><title>y = x</title></line>",
                P(x_px(&f, &xa, lo)),
                P(y_px(&f, &ya, lo)),
                P(x_px(&f, &xa, hi)),
                P(y_px(&f, &ya, hi))
            );
        }
    }
    for (i, s) in series.iter().enumerate() {
        draw_series(&mut out, &f, &xa, &ya, s, i);
    }
    out.push_str("</svg>");
    out.push_str(&legend_svg);
    close(out)
}

fn draw_series(out: &mut String, f: &Frame, xa: &Axis, ya: &Axis, s: &Series, i: usize) {
    let name = series_name(&s.name, i);
    let c = colour(i);
    let mut d = String::new();
    let mut pen_down = false;
    let mut last = String::new();
    for (x, y) in &s.points {
        if !(usable(*x) && usable(*y)) {
            pen_down = false;
            continue;
        }
        let point = format!("{} {}", P(x_px(f, xa, *x)), P(y_px(f, ya, *y)));
        if pen_down && point == last {
            continue; // same pixel as the previous point
        }
        d.push(if pen_down { 'L' } else { 'M' });
        d.push_str(&point);
        last = point;
        pen_down = true;
    }
    if d.contains('L') {
        put!(
            out,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\"><title>{}</title></path>",
            escape(&name)
        );
    }
    let finite = s
        .points
        .iter()
        .filter(|(x, y)| usable(*x) && usable(*y))
        .count();
    if finite > MAX_POINT_TOOLTIPS {
        return;
    }
    let visible = finite <= VISIBLE_MARKERS;
    for (x, y) in s.points.iter().filter(|(x, y)| usable(*x) && usable(*y)) {
        let (cx, cy) = (P(x_px(f, xa, *x)), P(y_px(f, ya, *y)));
        if visible {
            put!(
                out,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{c}\" stroke=\"#ffffff\" stroke-width=\"1\">"
            );
        } else {
            put!(
                out,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"4\" fill=\"{c}\" fill-opacity=\"0\">"
            );
        }
        put!(
            out,
            "<title>{}: x = {}, y = {}</title></circle>",
            escape(&name),
            format_value(*x),
            format_value(*y)
        );
    }
}

/// One bar per label: feature importance (`horizontal`, largest first as given), tier
/// counts, churn rate by segment. Bars start at zero (negative values go the other way);
/// values are printed on the bars when there is room. A non-finite value leaves its
/// category empty.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    value_label: &str,
    horizontal: bool,
) -> String {
    if horizontal {
        horizontal_bars(title, labels, values, value_label)
    } else {
        vertical_bars(
            title,
            labels,
            &[(String::new(), values.to_vec())],
            value_label,
            true,
        )
    }
}

/// Bars side by side within each label, one colour per group (with a legend): e.g. churn
/// rate by segment for the training and the validation window.
pub fn grouped_bar_chart(
    title: &str,
    labels: &[String],
    groups: &[(String, Vec<f64>)],
    value_label: &str,
) -> String {
    vertical_bars(title, labels, groups, value_label, false)
}

fn vertical_bars(
    title: &str,
    labels: &[String],
    groups: &[(String, Vec<f64>)],
    value_label: &str,
    print_values: bool,
) -> String {
    let n = groups
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0)
        .max(labels.len());
    let Some((lo, hi)) = extent(groups.iter().flat_map(|(_, v)| v.iter().copied())) else {
        return placeholder(title, "No data");
    };
    let ya = bar_value_axis(lo, hi, 6);
    let g = groups.len();

    let items: Vec<LegendItem> = if g > 1 {
        groups
            .iter()
            .enumerate()
            .map(|(i, (name, _))| LegendItem {
                name: series_name(name, i),
                colour: colour(i),
                swatch: Swatch::Box,
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut left = left_margin(&ya, value_label);
    let mut slot = (WIDTH - left - 20.0) / n as f64;
    let mut plan = plan_category_labels(labels, slot);
    if plan.rotated {
        // The first rotated label reaches about cos(40°)·length left of its bar's centre.
        let needed = plan.max_px * 0.766 + 6.0 - slot / 2.0;
        if needed > left {
            left = needed;
            slot = (WIDTH - left - 20.0) / n as f64;
            plan = plan_category_labels(labels, slot);
        }
    }
    let width = WIDTH - left - 20.0;
    let (legend_svg, legend_h) = legend(&items, left, 42.0, width);
    let top = 36.0 + legend_h + if legend_h > 0.0 { 6.0 } else { 10.0 };
    let f = Frame {
        x: left,
        y: top,
        w: width,
        h: (HEIGHT - top - plan.band - 4.0).max(40.0),
    };
    let height = f.bottom() + plan.band + 4.0;

    let mut out = open(WIDTH, height, title);
    draw_y_axis(&mut out, &f, &ya, value_label);
    let zero = y_px(&f, &ya, 0.0);
    let group_w = slot * if g > 1 { 0.84 } else { 0.7 };
    let bar_w = (group_w / g as f64).min(80.0);
    let value_size = 10.5;
    for i in 0..n {
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let cx = f.x + (i as f64 + 0.5) * slot;
        let x0 = cx - bar_w * g as f64 / 2.0;
        for (j, (name, values)) in groups.iter().enumerate() {
            let Some(v) = values.get(i).copied().filter(|v| usable(*v)) else {
                continue;
            };
            let y = y_px(&f, &ya, v);
            let (top_y, h) = (y.min(zero), (y - zero).abs());
            let tip = if g > 1 {
                format!(
                    "{label} \u{2014} {}: {}",
                    series_name(name, j),
                    format_value(v)
                )
            } else {
                format!("{label}: {}", format_value(v))
            };
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
                P(x0 + j as f64 * bar_w + 0.5),
                P(top_y),
                P((bar_w - 1.0).max(0.5)),
                P(h.max(if v != 0.0 { 0.5 } else { 0.0 })),
                colour(j),
                escape(&tip)
            );
            if print_values {
                let text = format_value(v);
                if text_px(&text, value_size) <= slot - 2.0 {
                    let ty = if v >= 0.0 {
                        top_y - 4.0
                    } else {
                        top_y + h + 12.0
                    };
                    Label::new(&text, cx, ty)
                        .size(value_size)
                        .fill(INK)
                        .anchor(Anchor::Middle)
                        .draw(&mut out);
                }
            }
        }
    }
    if ya.lo < 0.0 {
        put!(
            out,
            "<line x1=\"{}\" y1=\"{z}\" x2=\"{}\" y2=\"{z}\" stroke=\"{AXIS}\"/>",
            P(f.x),
            P(f.right()),
            z = P(zero)
        );
    }
    draw_axis_lines(&mut out, &f);
    draw_category_labels(&mut out, &f, labels, n, &plan);
    out.push_str(&legend_svg);
    close(out)
}

fn horizontal_bars(title: &str, labels: &[String], values: &[f64], value_label: &str) -> String {
    let n = labels.len().max(values.len());
    let Some((lo, hi)) = extent(values.iter().copied()) else {
        return placeholder(title, "No data");
    };
    let xa = bar_value_axis(lo, hi, 7);
    let value_size = 10.5;
    let print_values = n <= 40;
    let widest_value = if print_values {
        values
            .iter()
            .filter(|v| usable(**v))
            .map(|v| text_px(&format_value(*v), value_size))
            .fold(0.0, f64::max)
    } else {
        0.0
    };
    let widest_label = labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let label_px = widest_label.min(200.0);
    let left = 12.0 + label_px + 8.0;
    let right = 16.0 + widest_value;
    let top = 44.0;
    let bottom = if value_label.is_empty() { 28.0 } else { 46.0 };
    let height = (top + bottom + 22.0 * n as f64).clamp(HEIGHT, MAX_HEIGHT);
    let f = Frame {
        x: left,
        y: top,
        w: WIDTH - left - right,
        h: height - top - bottom,
    };
    let slot = f.h / n as f64;
    let thickness = (slot * 0.72).min(28.0);

    let mut out = open(WIDTH, height, title);
    draw_x_axis(&mut out, &f, &xa, value_label);
    let zero = x_px(&f, &xa, 0.0);
    let every = (13.0 / slot).ceil().max(1.0) as usize;
    for i in 0..n {
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let cy = f.y + (i as f64 + 0.5) * slot;
        if i % every == 0 {
            Label::new(label, f.x - 8.0, cy + TICK_SIZE * 0.35)
                .anchor(Anchor::End)
                .fill(INK)
                .max_px(label_px)
                .draw(&mut out);
        }
        let Some(v) = values.get(i).copied().filter(|v| usable(*v)) else {
            continue;
        };
        let x = x_px(&f, &xa, v);
        let (x0, w) = (x.min(zero), (x - zero).abs());
        put!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
            P(x0),
            P(cy - thickness / 2.0),
            P(w.max(if v != 0.0 { 0.5 } else { 0.0 })),
            P(thickness),
            PALETTE[0],
            escape(&format!("{label}: {}", format_value(v)))
        );
        if print_values && slot >= 11.0 {
            // Right of the bar, or right of the zero line for negative bars.
            let tx = x.max(zero) + 4.0;
            Label::new(&format_value(v), tx, cy + value_size * 0.35)
                .size(value_size)
                .fill(INK)
                .draw(&mut out);
        }
    }
    put!(
        out,
        "<line x1=\"{z}\" y1=\"{}\" x2=\"{z}\" y2=\"{}\" stroke=\"{AXIS}\"/>",
        P(f.y),
        P(f.bottom()),
        z = P(zero)
    );
    put!(
        out,
        "<line x1=\"{}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"{AXIS}\"/>",
        P(f.x),
        P(f.right()),
        b = P(f.bottom())
    );
    close(out)
}

/// Overlaid, semi-transparent histograms over `range` with `bins` equal bins: e.g. the
/// score distribution of churners and non-churners. Values outside `range` (and
/// non-finite ones) are left out; the last bin includes its upper edge. With `density`
/// each series is scaled to area 1, so classes of very different sizes compare.
/// An unusable `range` falls back to the data's extent; `bins` is clamped to 1..=500.
pub fn histogram(
    title: &str,
    series: &[(String, Vec<f64>)],
    bins: usize,
    range: (f64, f64),
    density: bool,
) -> String {
    let (lo, hi) = if usable(range.0) && usable(range.1) && range.0 != range.1 {
        normalise_range(range.0, range.1)
    } else {
        match extent(series.iter().flat_map(|(_, v)| v.iter().copied())) {
            Some((a, b)) => normalise_range(a, b),
            None => return placeholder(title, "No data"),
        }
    };
    let bins = bins.clamp(1, 500);
    let width = (hi - lo) / bins as f64;
    let mut heights: Vec<(Vec<f64>, usize)> = Vec::with_capacity(series.len());
    for (_, values) in series {
        let mut counts = vec![0usize; bins];
        let mut n = 0usize;
        for v in values.iter().copied().filter(|v| usable(*v)) {
            if v < lo || v > hi {
                continue;
            }
            let b = (((v - lo) / width).floor() as usize).min(bins - 1);
            counts[b] += 1;
            n += 1;
        }
        let scale = if density && n > 0 {
            1.0 / (n as f64 * width)
        } else {
            1.0
        };
        heights.push((counts.iter().map(|c| *c as f64 * scale).collect(), n));
    }
    if heights.iter().all(|(_, n)| *n == 0) {
        return placeholder(title, "No data in range");
    }
    let ymax = heights
        .iter()
        .flat_map(|(h, _)| h.iter().copied())
        .fold(0.0, f64::max);
    let ya = Axis::fit(0.0, if ymax > 0.0 { ymax } else { 1.0 }, 6);
    let xa = Axis::exact(lo, hi, 8);
    let y_title = if density { "density" } else { "count" };

    let items: Vec<LegendItem> = if series.len() > 1 {
        series
            .iter()
            .zip(&heights)
            .enumerate()
            .map(|(i, ((name, _), (_, n)))| LegendItem {
                name: format!(
                    "{} (n = {})",
                    series_name(name, i),
                    group_thousands(*n as f64)
                ),
                colour: colour(i),
                swatch: Swatch::Box,
            })
            .collect()
    } else {
        Vec::new()
    };
    let left = left_margin(&ya, y_title);
    let (legend_svg, legend_h) = legend(&items, left, 42.0, WIDTH - left - 20.0);
    let top = 36.0 + legend_h + if legend_h > 0.0 { 6.0 } else { 8.0 };
    let f = Frame {
        x: left,
        y: top,
        w: WIDTH - left - 20.0,
        h: HEIGHT - top - 28.0,
    };

    let mut out = open(WIDTH, HEIGHT, title);
    draw_y_axis(&mut out, &f, &ya, y_title);
    draw_x_axis(&mut out, &f, &xa, "");
    let bin_px = f.w / bins as f64;
    for (i, ((name, _), (h, n))) in series.iter().zip(&heights).enumerate() {
        if *n == 0 {
            continue;
        }
        let c = colour(i);
        let name = series_name(name, i);
        put!(
            out,
            "<g fill=\"{c}\" fill-opacity=\"0.45\" stroke=\"{c}\" stroke-opacity=\"0.9\" stroke-width=\"1\">"
        );
        for (b, value) in h.iter().enumerate() {
            if *value <= 0.0 {
                continue;
            }
            let y = y_px(&f, &ya, *value);
            let (a, z) = (lo + b as f64 * width, lo + (b + 1) as f64 * width);
            let closing = if b + 1 == bins { ']' } else { ')' };
            let what = if density {
                format!("density {}", format_value(*value))
            } else {
                format!("{} values", group_thousands(*value))
            };
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                P(f.x + b as f64 * bin_px),
                P(y),
                P(bin_px),
                P(f.bottom() - y),
                escape(&format!(
                    "{name}: [{}, {}{closing}: {what}",
                    format_value(a),
                    format_value(z)
                ))
            );
        }
        out.push_str("</g>");
    }
    draw_axis_lines(&mut out, &f);
    out.push_str(&legend_svg);
    close(out)
}

/// A grid of coloured cells, e.g. cohort retention (rows: signup cohorts, columns: months
/// since signup). `None` and non-finite cells stay empty. Colours run from light (lowest
/// value) to dark blue (highest) over the data's own range; values are printed in the
/// cells when they fit. With `fmt_pct` values are fractions shown as percentages
/// (`0.853` → `85.3%`).
pub fn heatmap(
    title: &str,
    row_labels: &[String],
    col_labels: &[String],
    cells: &[Vec<Option<f64>>],
    fmt_pct: bool,
) -> String {
    let nrows = row_labels.len().max(cells.len());
    let ncols = col_labels
        .len()
        .max(cells.iter().map(Vec::len).max().unwrap_or(0));
    let value = |r: usize, c: usize| -> Option<f64> {
        cells
            .get(r)
            .and_then(|row| row.get(c).copied().flatten())
            .filter(|v| usable(*v))
    };
    let Some((vmin, vmax)) = extent(cells.iter().flatten().filter_map(|v| *v)) else {
        return placeholder(title, "No data");
    };
    let fmt = |v: f64, decimals: usize| {
        if fmt_pct {
            format_pct(v, decimals)
        } else {
            format_value(v)
        }
    };
    let t_of = |v: f64| {
        if vmax > vmin {
            (v - vmin) / (vmax - vmin)
        } else {
            0.5
        }
    };

    let widest_row = row_labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let row_label_px = widest_row.min(150.0);
    let left = 12.0 + row_label_px + 8.0;
    let top = 36.0 + 20.0;
    let bottom = 40.0;
    let avail_w = WIDTH - left - 16.0;
    let cell_w = (avail_w / ncols as f64).min(110.0);
    let cell_h = ((HEIGHT - top - bottom) / nrows as f64).clamp(14.0, 34.0);
    let f = Frame {
        x: left,
        y: top,
        w: cell_w * ncols as f64,
        h: cell_h * nrows as f64,
    };
    let height = (f.bottom() + bottom).min(MAX_HEIGHT.max(f.bottom() + bottom));

    let mut out = open(WIDTH, height, title);
    // Column labels above the grid, thinned when they would overlap.
    let widest_col = col_labels
        .iter()
        .map(|l| text_px(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let col_every = ((widest_col.min(90.0) + 6.0) / cell_w).ceil().max(1.0) as usize;
    for c in (0..ncols).step_by(col_every) {
        let text = col_labels.get(c).map(String::as_str).unwrap_or("");
        Label::new(text, f.x + (c as f64 + 0.5) * cell_w, f.y - 7.0)
            .anchor(Anchor::Middle)
            .max_px((cell_w * col_every as f64 - 4.0).max(cell_w))
            .draw(&mut out);
    }
    let row_every = (13.0 / cell_h).ceil().max(1.0) as usize;
    let value_size = 10.0;
    for r in 0..nrows {
        let row_label = row_labels.get(r).map(String::as_str).unwrap_or("");
        let y = f.y + r as f64 * cell_h;
        if r % row_every == 0 {
            Label::new(row_label, f.x - 8.0, y + cell_h / 2.0 + TICK_SIZE * 0.35)
                .anchor(Anchor::End)
                .fill(INK)
                .max_px(row_label_px)
                .draw(&mut out);
        }
        for c in 0..ncols {
            let Some(v) = value(r, c) else { continue };
            let x = f.x + c as f64 * cell_w;
            let t = t_of(v);
            let col_label = col_labels.get(c).map(String::as_str).unwrap_or("");
            put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ffffff\" \
                 stroke-width=\"1\"><title>{}</title></rect>",
                P(x),
                P(y),
                P(cell_w),
                P(cell_h),
                sequential(t),
                escape(&format!("{row_label} \u{b7} {col_label}: {}", fmt(v, 1)))
            );
            if cell_h >= 13.0 {
                let mut text = fmt(v, 1);
                if text_px(&text, value_size) > cell_w - 4.0 {
                    text = fmt(v, 0);
                }
                if text_px(&text, value_size) <= cell_w - 4.0 {
                    Label::new(
                        &text,
                        x + cell_w / 2.0,
                        y + cell_h / 2.0 + value_size * 0.35,
                    )
                    .size(value_size)
                    .anchor(Anchor::Middle)
                    .fill(if t > 0.5 { "#ffffff" } else { INK })
                    .draw(&mut out);
                }
            }
        }
    }
    // Colour key under the grid: ten steps from the lowest to the highest value.
    let key_y = f.bottom() + 14.0;
    let steps = 10;
    let key_x = f.x + 8.0 + text_px(&fmt(vmin, 1), TICK_SIZE);
    Label::new(&fmt(vmin, 1), key_x - 6.0, key_y + 9.0)
        .anchor(Anchor::End)
        .draw(&mut out);
    for s in 0..steps {
        let t = s as f64 / (steps - 1) as f64;
        let v = vmin + t * (vmax - vmin);
        put!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"22\" height=\"12\" fill=\"{}\"><title>{}</title></rect>",
            P(key_x + s as f64 * 22.0),
            P(key_y),
            sequential(t),
            escape(&fmt(v, 1))
        );
    }
    Label::new(
        &fmt(vmax, 1),
        key_x + steps as f64 * 22.0 + 6.0,
        key_y + 9.0,
    )
    .draw(&mut out);
    close(out)
}

/// The sequential colour at `t` in `[0, 1]`.
fn sequential(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (SEQUENTIAL.len() - 1) as f64;
    let i = (pos.floor() as usize).min(SEQUENTIAL.len() - 2);
    let frac = pos - i as f64;
    let (a, b) = (SEQUENTIAL[i], SEQUENTIAL[i + 1]);
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * frac).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::check_markup;
    use super::*;

    /// Named groups of values, as [`grouped_bar_chart`] and [`histogram`] take them.
    type Groups = Vec<(String, Vec<f64>)>;
    /// Heatmap cells, rows of optional values.
    type Cells = Vec<Vec<Option<f64>>>;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn assert_well_formed(svg: &str) {
        if let Err(e) = check_markup(svg) {
            panic!("not well formed: {e}\n{svg}");
        }
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(!svg.to_ascii_lowercase().contains("<script"));
    }

    fn roc_axes() -> Axes {
        Axes::new("ROC", "False positive rate", "True positive rate")
            .with_x_range(0.0, 1.0)
            .with_y_range(0.0, 1.0)
    }

    #[test]
    fn nice_ticks_for_the_unit_interval_step_by_a_fifth() {
        assert_eq!(nice_ticks(0.0, 1.0, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }

    #[test]
    fn nice_ticks_round_an_awkward_maximum_up_to_a_round_one() {
        assert_eq!(
            nice_ticks(0.0, 97.0, 6),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(nice_ticks(0.0, 1234.0, 6), vec![0.0, 500.0, 1000.0, 1500.0]);
    }

    #[test]
    fn nice_ticks_straddle_zero_and_handle_small_decimals_exactly() {
        assert_eq!(nice_ticks(-3.2, 7.9, 6), vec![-5.0, 0.0, 5.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0123, 0.0456, 6),
            vec![0.01, 0.02, 0.03, 0.04, 0.05]
        );
        assert_eq!(
            nice_ticks(0.0, 1.0, 11),
            vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        );
    }

    #[test]
    fn nice_ticks_fit_the_data_tightly_instead_of_rounding_the_range_first() {
        assert_eq!(
            nice_ticks(0.0, 23.0, 8),
            vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
        );
        assert_eq!(
            nice_ticks(0.04, 0.06, 6),
            vec![0.04, 0.045, 0.05, 0.055, 0.06]
        );
        assert_eq!(nice_ticks(-1.0, 1.0, 3), vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn nice_ticks_widen_an_empty_range_and_survive_bad_input() {
        assert_eq!(nice_ticks(0.0, 0.0, 6), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        let around_five = nice_ticks(5.0, 5.0, 6);
        assert!(around_five.len() >= 2 && around_five.contains(&5.0));
        assert!(around_five.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(nice_ticks(1.0, 0.0, 6), nice_ticks(0.0, 1.0, 6));
        assert_eq!(nice_ticks(f64::NAN, 3.0, 6), nice_ticks(0.0, 1.0, 6));
        let huge = nice_ticks(-1e300, 1e300, 6);
        assert!(huge.len() >= 2 && huge.iter().all(|t| t.is_finite()));
    }

    #[test]
    fn tick_labels_use_as_many_decimals_as_the_step_needs() {
        assert_eq!(format_tick(0.2, 0.2, 1.0), "0.2");
        assert_eq!(format_tick(1.0, 0.2, 1.0), "1.0");
        assert_eq!(format_tick(0.05, 0.05, 0.1), "0.05");
        assert_eq!(format_tick(1500.0, 500.0, 1500.0), "1500");
        assert_eq!(format_tick(40000.0, 20000.0, 100000.0), "40k");
        assert_eq!(format_tick(2_500_000.0, 500_000.0, 3e6), "2.5M");
        assert_eq!(format_tick(1_000_000.0, 500_000.0, 3e6), "1.0M");
        assert_eq!(format_tick(-0.0, 1.0, 1.0), "0");
    }

    #[test]
    fn values_are_formatted_with_four_significant_digits() {
        assert_eq!(format_value(0.81234), "0.8123");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(48210.0), "48,210");
        assert_eq!(format_value(4120.0), "4,120");
        assert_eq!(format_value(-1234567.0), "-1,234,567");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(f64::NAN), "n/a");
    }

    #[test]
    fn every_line_chart_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let roc = Series::new(
            "logistic",
            (0..=50)
                .map(|i| (i as f64 / 50.0, (i as f64 / 50.0).sqrt()))
                .collect(),
        );
        let pr = Series::new("boosted", vec![(0.0, 1.0), (0.5, 0.6), (1.0, 0.1)]);
        let cases: Vec<(Axes, Vec<Series>)> = vec![
            (roc_axes(), vec![roc.clone(), pr.clone()]),
            (roc_axes(), vec![]),
            (roc_axes(), vec![Series::new("empty", vec![])]),
            (
                Axes::new("one", "x", "y"),
                vec![Series::new("one", vec![(3.0, 3.0)])],
            ),
            (
                Axes::new("flat", "x", "y"),
                vec![Series::new("flat", vec![(1.0, 2.0), (2.0, 2.0)])],
            ),
            (
                Axes::new("nan", "x", "y"),
                vec![Series::new(
                    "nan",
                    vec![
                        (f64::NAN, 1.0),
                        (0.0, f64::INFINITY),
                        (1.0, 2.0),
                        (f64::NEG_INFINITY, 0.0),
                        (2.0, 1.0),
                    ],
                )],
            ),
            (
                Axes::new("only nan", "", ""),
                vec![Series::new("nan", vec![(f64::NAN, f64::NAN)])],
            ),
            (
                Axes::new("bad ranges", "x", "y")
                    .with_x_range(f64::NAN, 1.0)
                    .with_y_range(2.0, 2.0),
                vec![roc.clone()],
            ),
            (
                Axes::new("big", "x", "y"),
                vec![Series::new(
                    "big",
                    (0..5000).map(|i| (i as f64, (i as f64).sin())).collect(),
                )],
            ),
        ];
        for (axes, series) in &cases {
            for diagonal in [false, true] {
                assert_well_formed(&line_chart(axes, series, diagonal));
            }
        }
    }

    #[test]
    fn an_empty_line_chart_says_no_data_instead_of_panicking() {
        let svg = line_chart(&roc_axes(), &[], true);
        assert!(svg.contains(">No data</text>"));
    }

    #[test]
    fn a_line_chart_draws_the_diagonal_a_legend_and_point_tooltips() {
        let svg = line_chart(
            &roc_axes(),
            &[Series::new(
                "model A",
                vec![(0.0, 0.0), (0.3, 0.8), (1.0, 1.0)],
            )],
            true,
        );
        assert!(svg.contains("stroke-dasharray=\"5 4\""));
        assert!(svg.contains(">model A</text>") && svg.contains(">y = x</text>"));
        assert!(svg.contains("<title>model A: x = 0.3, y = 0.8</title>"));
        assert!(svg.contains(">0.2</text>") && svg.contains(">1.0</text>"));
    }

    #[test]
    fn every_bar_chart_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let many: Vec<String> = (0..60).map(|i| format!("feature_number_{i}")).collect();
        let many_values: Vec<f64> = (0..60).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let cases: Vec<(Vec<String>, Vec<f64>)> = vec![
            (labels(&["low", "medium", "high"]), vec![120.0, 45.0, 12.0]),
            (vec![], vec![]),
            (labels(&["only"]), vec![7.0]),
            (labels(&["a", "b"]), vec![3.0, 3.0]),
            (labels(&["zero", "zero"]), vec![0.0, 0.0]),
            (labels(&["a", "b", "c"]), vec![f64::NAN, 2.0, f64::INFINITY]),
            (labels(&["a", "b"]), vec![f64::NAN, f64::NAN]),
            (labels(&["neg", "pos"]), vec![-0.4, 0.9]),
            (labels(&["more labels", "than", "values"]), vec![1.0]),
            (many, many_values),
        ];
        for (l, v) in &cases {
            for horizontal in [false, true] {
                assert_well_formed(&bar_chart("Bars", l, v, "customers", horizontal));
            }
        }
    }

    #[test]
    fn every_grouped_bar_chart_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let segs = labels(&["SMB", "Mid-market", "Enterprise"]);
        let cases: Vec<(Vec<String>, Groups)> = vec![
            (
                segs.clone(),
                vec![
                    ("train".into(), vec![0.12, 0.08, 0.03]),
                    ("validation".into(), vec![0.14, 0.07, 0.04]),
                ],
            ),
            (vec![], vec![]),
            (segs.clone(), vec![]),
            (labels(&["one"]), vec![("g".into(), vec![0.5])]),
            (
                segs.clone(),
                vec![
                    ("nan".into(), vec![f64::NAN, 0.1]),
                    ("short".into(), vec![]),
                ],
            ),
            (segs, vec![("all nan".into(), vec![f64::NAN; 3])]),
        ];
        for (l, g) in &cases {
            assert_well_formed(&grouped_bar_chart("Churn by segment", l, g, "churn rate"));
        }
    }

    #[test]
    fn every_histogram_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let stay: Vec<f64> = (0..500).map(|i| (i as f64 / 500.0).powi(3)).collect();
        let churn: Vec<f64> = (0..40).map(|i| 1.0 - (i as f64 / 40.0).powi(2)).collect();
        let cases: Vec<(Groups, usize, (f64, f64))> = vec![
            (
                vec![("stayed".into(), stay), ("churned".into(), churn)],
                20,
                (0.0, 1.0),
            ),
            (vec![], 20, (0.0, 1.0)),
            (vec![("empty".into(), vec![])], 20, (0.0, 1.0)),
            (vec![("one".into(), vec![0.5])], 20, (0.0, 1.0)),
            (
                vec![("same".into(), vec![0.3; 10])],
                10,
                (f64::NAN, f64::NAN),
            ),
            (
                vec![("nan".into(), vec![f64::NAN, 0.2, f64::INFINITY, 0.4])],
                0,
                (0.0, 1.0),
            ),
            (vec![("outside".into(), vec![5.0, 6.0])], 10, (0.0, 1.0)),
            (
                vec![("degenerate range".into(), vec![1.0, 2.0])],
                10,
                (1.0, 1.0),
            ),
        ];
        for (s, bins, range) in &cases {
            for density in [false, true] {
                assert_well_formed(&histogram("Scores", s, *bins, *range, density));
            }
        }
    }

    #[test]
    fn histogram_density_integrates_to_one_and_the_top_edge_is_included() {
        let svg = histogram(
            "h",
            &[("s".into(), vec![0.0, 0.5, 1.0, 1.0])],
            2,
            (0.0, 1.0),
            true,
        );
        // Bin width 0.5: [0, 0.5) holds 1 of 4 values, [0.5, 1] holds 3 -> densities 0.5 and 1.5.
        assert!(svg.contains("s: [0, 0.5): density 0.5</title>"), "{svg}");
        assert!(svg.contains("s: [0.5, 1]: density 1.5</title>"), "{svg}");
    }

    #[test]
    fn every_heatmap_is_well_formed_xml_for_normal_empty_single_and_nan_inputs() {
        let cohorts: Vec<String> = (1..=12).map(|m| format!("2024-{m:02}")).collect();
        let months: Vec<String> = (0..12).map(|m| format!("M{m}")).collect();
        let triangle: Vec<Vec<Option<f64>>> = (0..12)
            .map(|r| {
                (0..12)
                    .map(|c| (c < 12 - r).then(|| 0.97f64.powi(c)))
                    .collect()
            })
            .collect();
        let tall: Vec<Vec<Option<f64>>> = (0..200).map(|r| vec![Some(r as f64), None]).collect();
        let cases: Vec<(Vec<String>, Vec<String>, Cells)> = vec![
            (cohorts.clone(), months.clone(), triangle),
            (vec![], vec![], vec![]),
            (cohorts.clone(), months.clone(), vec![]),
            (labels(&["only"]), labels(&["cell"]), vec![vec![Some(0.5)]]),
            (
                labels(&["a", "b"]),
                labels(&["x", "y"]),
                vec![vec![Some(1.0), Some(1.0)], vec![Some(1.0), None]],
            ),
            (
                labels(&["a"]),
                labels(&["x", "y"]),
                vec![vec![Some(f64::NAN), Some(0.2), Some(f64::INFINITY)]],
            ),
            (
                labels(&["a"]),
                labels(&["x"]),
                vec![vec![None, Some(f64::NAN)]],
            ),
            (vec![], vec![], tall),
        ];
        for (rows, cols, cells) in &cases {
            for pct in [false, true] {
                assert_well_formed(&heatmap("Retention", rows, cols, cells, pct));
            }
        }
    }

    #[test]
    fn heatmap_cells_print_percentages_and_keep_none_cells_empty() {
        let svg = heatmap(
            "Retention",
            &labels(&["Jan", "Feb"]),
            &labels(&["M0", "M1"]),
            &[vec![Some(1.0), Some(0.853)], vec![Some(1.0), None]],
            true,
        );
        assert!(svg.contains(">85.3%</text>"), "{svg}");
        assert!(svg.contains("<title>Jan \u{b7} M1: 85.3%</title>"));
        assert!(!svg.contains("Feb \u{b7} M1"));
        assert_eq!(sequential(0.0), "#edf8b1");
        assert_eq!(sequential(1.0), "#081d58");
    }

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
