//! Line charts: ROC, PR, calibration, gains and lift curves, rates over time.

use super::ticks::format_value;
use super::*;

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
#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}
